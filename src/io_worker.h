/*
** io_worker.h — blocking file work (fsync, rename) done on one background
** thread while the event loop keeps driving transfers.
**
** An fsync takes from a fraction of a millisecond to tens of them; made
** on the loop's thread it stalls every transfer in flight, and the
** project folder's crash safety needs several per item (downloaded
** files, atomic writes).  Inside a scheduler task such work becomes an
** "qmig.IoJob": the task yields it like a request, http.poll() hands it
** back when the worker is done, and the task resumes with the result.
** A few threads, one FIFO each; the jobs of one file go to the same
** thread, so two writes of one file land in the order the tasks made them.
** The workers and their done list are process-wide and serve one Lua
** state (the host has one; its coroutines share it).
*/
#ifndef QMIG_IO_WORKER_H
#define QMIG_IO_WORKER_H

#include <lua.h>

typedef struct IoJob IoJob;

/* Runs on the worker thread; returns 0 or an errno value. */
typedef int (*io_fn)(IoJob *job);

struct IoJob {
  io_fn run;
  void *arg;          /* the job's own data, owned by its creator */
  int err;            /* run's result, valid once finished */
  int finished;
  IoJob *next;
};

/* Pushes a new "qmig.IoJob" userdata holding an IoJob with `extra` bytes
** of zeroed payload after it (io_job_payload); `anchor` (a stack index,
** or 0) is kept alive as the job's user value while the worker may use
** it.  [-0, +1, m] */
IoJob *io_job_new(lua_State *L, io_fn run, size_t extra, int anchor);
void *io_job_payload(IoJob *job);

/* Hands the job at stack index idx to the workers.  Jobs with the same
** affinity (a file's path) run one after another in submission order;
** others may overlap.  [-0, +0, m] */
void io_job_submit(lua_State *L, int idx, const char *affinity);

/* Submits the job on top of the stack (see io_job_submit) and yields the
** task to the scheduler until it ends; the job stays on the stack for k,
** which resumes with ctx.  Call as `return io_job_await(...)`. */
int io_job_await(lua_State *L, const char *affinity, lua_KContext ctx, lua_KFunction k);

/* The IoJob at idx, or NULL when it is something else. */
IoJob *io_job_test(lua_State *L, int idx);

/* Appends every finished job's userdata to the table at list_idx (main
** thread).  Returns how many it appended. */
int io_collect(lua_State *L, int list_idx);

/* Sets the function the worker calls after each job (from its thread,
** under the worker's lock: it must be short and must not call back in),
** e.g. curl_multi_wakeup so that a poll waiting for sockets returns. */
void io_set_notify(void (*notify)(void));

/* Jobs submitted and not collected yet. */
int io_pending(void);

/* Registers the IoJob metatable.  [-0, +0, m] */
void io_worker_open(lua_State *L);

#endif
