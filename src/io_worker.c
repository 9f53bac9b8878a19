/*
** io_worker.c — the background threads of io_worker.h and the "qmig.IoJob"
** userdata (liolib.c pattern: a metatable, __gc, __tostring).
**
** Ownership: a submitted job's userdata sits in the registry table
** PENDING_KEY until io_collect hands it back, so the collector cannot free
** memory the worker is using; its __gc (only reached at lua_close then)
** waits for the worker to finish with it.
*/
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "io_worker.h"

#define IO_JOB "qmig.IoJob"

static const char PENDING_KEY = 'p';  /* lightuserdata(IoJob*) -> userdata */

typedef struct Box {
  IoJob job;
  int submitted;
  /* payload follows, aligned like the struct */
} Box;

/* Several threads, so that fsyncs of different files overlap (the file
** system commits them together); a job goes to the thread its affinity
** key picks, so the jobs of one file still run in submission order. */
#define NWORKERS 4

typedef struct Worker {
  pthread_t thread;
  pthread_cond_t work_ready;
  IoJob *queue_head, *queue_tail;  /* submitted, not run yet */
} Worker;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work_done = PTHREAD_COND_INITIALIZER;
static Worker workers[NWORKERS];
static IoJob *done_head, *done_tail;     /* run, not collected yet */
static void (*notify_fn)(void);
static int pending_count;
static int stopping;
static int started;
static pid_t owner_pid;                  /* a forked child has no worker to stop */

static void append(IoJob **head, IoJob **tail, IoJob *job) {
  job->next = NULL;
  if (*tail) (*tail)->next = job;
  else *head = job;
  *tail = job;
}

static void *worker_main(void *arg) {
  Worker *w = arg;
  pthread_mutex_lock(&lock);
  for (;;) {
    while (w->queue_head == NULL && !stopping) pthread_cond_wait(&w->work_ready, &lock);
    IoJob *job = w->queue_head;
    if (job == NULL) break;  /* stopping, and every queued job is done */
    w->queue_head = job->next;
    if (w->queue_head == NULL) w->queue_tail = NULL;
    pthread_mutex_unlock(&lock);
    int err = job->run(job);
    pthread_mutex_lock(&lock);
    job->err = err;
    job->finished = 1;
    append(&done_head, &done_tail, job);
    pthread_cond_broadcast(&work_done);
    /* under the lock: once io_set_notify(NULL) returns, no call is left
    ** in flight (the poll it wakes may be going away at exit) */
    if (notify_fn) notify_fn();
  }
  pthread_mutex_unlock(&lock);
  return NULL;
}

/* At exit: queued jobs still run (each is a step of an atomic write that
** is harmless to finish), then the thread ends. */
static void stop_workers(void) {
  if (!started || getpid() != owner_pid) return;
  pthread_mutex_lock(&lock);
  stopping = 1;
  for (int i = 0; i < started; i++) pthread_cond_signal(&workers[i].work_ready);
  pthread_mutex_unlock(&lock);
  for (int i = 0; i < started; i++) pthread_join(workers[i].thread, NULL);
  started = 0;
}

/* Called with the lock held.  0, or the errno of a thread that would not
** start (then the threads started so far do all the work). */
static int start_workers(void) {
  if (started) return 0;
  owner_pid = getpid();
  for (int i = 0; i < NWORKERS; i++) {
    pthread_cond_init(&workers[i].work_ready, NULL);
    int err = pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]);
    if (err) {
      if (started == 0) return err;
      break;
    }
    started++;
  }
  atexit(stop_workers);
  return 0;
}

IoJob *io_job_new(lua_State *L, io_fn run, size_t extra, int anchor) {
  if (anchor) anchor = lua_absindex(L, anchor);
  Box *b = lua_newuserdatauv(L, sizeof(Box) + extra, 1);
  memset(b, 0, sizeof(Box) + extra);
  b->job.run = run;
  b->job.arg = b + 1;
  luaL_setmetatable(L, IO_JOB);
  if (anchor) {
    lua_pushvalue(L, anchor);
    lua_setiuservalue(L, -2, 1);
  }
  return &b->job;
}

void *io_job_payload(IoJob *job) {
  return job->arg;
}

void io_job_submit(lua_State *L, int idx, const char *affinity) {
  idx = lua_absindex(L, idx);
  Box *b = luaL_checkudata(L, idx, IO_JOB);
  lua_rawgetp(L, LUA_REGISTRYINDEX, &PENDING_KEY);
  lua_pushvalue(L, idx);
  lua_rawsetp(L, -2, &b->job);
  lua_pop(L, 1);
  pthread_mutex_lock(&lock);
  int err = start_workers();
  if (err) {
    pthread_mutex_unlock(&lock);
    /* no thread: run it here, as it would have run before this worker */
    b->job.err = b->job.run(&b->job);
    b->job.finished = 1;
    pthread_mutex_lock(&lock);
    append(&done_head, &done_tail, &b->job);
  } else {
    unsigned long h = 5381;  /* djb2 */
    for (const char *p = affinity ? affinity : ""; *p; p++) h = h * 33 + (unsigned char)*p;
    Worker *w = &workers[h % (unsigned long)started];
    append(&w->queue_head, &w->queue_tail, &b->job);
    pthread_cond_signal(&w->work_ready);
  }
  b->submitted = 1;
  pending_count++;
  pthread_mutex_unlock(&lock);
}

int io_job_await(lua_State *L, const char *affinity, lua_KContext ctx, lua_KFunction k) {
  io_job_submit(L, -1, affinity);
  lua_pushvalue(L, -1);  /* the yielded copy is consumed; the job stays */
  return lua_yieldk(L, 1, ctx, k);
}

IoJob *io_job_test(lua_State *L, int idx) {
  Box *b = luaL_testudata(L, idx, IO_JOB);
  return b ? &b->job : NULL;
}

int io_collect(lua_State *L, int list_idx) {
  list_idx = lua_absindex(L, list_idx);
  pthread_mutex_lock(&lock);
  IoJob *job = done_head;
  done_head = done_tail = NULL;
  pthread_mutex_unlock(&lock);
  if (job == NULL) return 0;
  int n = 0;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &PENDING_KEY);
  while (job) {
    IoJob *next = job->next;
    lua_rawgetp(L, -1, job);
    lua_rawseti(L, list_idx, (lua_Integer)lua_rawlen(L, list_idx) + 1);
    lua_pushnil(L);
    lua_rawsetp(L, -2, job);
    pthread_mutex_lock(&lock);
    pending_count--;
    pthread_mutex_unlock(&lock);
    n++;
    job = next;
  }
  lua_pop(L, 1);
  return n;
}

void io_set_notify(void (*notify)(void)) {
  pthread_mutex_lock(&lock);
  notify_fn = notify;
  pthread_mutex_unlock(&lock);
}

int io_pending(void) {
  pthread_mutex_lock(&lock);
  int n = pending_count;
  pthread_mutex_unlock(&lock);
  return n;
}

static int job_gc(lua_State *L) {
  Box *b = luaL_checkudata(L, 1, IO_JOB);
  pthread_mutex_lock(&lock);
  while (b->submitted && !b->job.finished) pthread_cond_wait(&work_done, &lock);
  /* a finished job not collected yet must leave the done list before
  ** its memory goes */
  IoJob **link = &done_head, *prev = NULL;
  while (*link && *link != &b->job) {
    prev = *link;
    link = &(*link)->next;
  }
  if (*link) {
    *link = b->job.next;
    if (done_tail == &b->job) done_tail = prev;
    pending_count--;
  }
  b->submitted = 0;
  pthread_mutex_unlock(&lock);
  return 0;
}

static int job_tostring(lua_State *L) {
  Box *b = luaL_checkudata(L, 1, IO_JOB);
  lua_pushfstring(L, "qmig.IoJob (%s)", b->job.finished ? "done" : b->submitted ? "running" : "new");
  return 1;
}

void io_worker_open(lua_State *L) {
  static const luaL_Reg meta[] = {
    {"__gc", job_gc},
    {"__tostring", job_tostring},
    {NULL, NULL}
  };
  if (luaL_newmetatable(L, IO_JOB)) luaL_setfuncs(L, meta, 0);
  lua_pop(L, 1);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &PENDING_KEY) != LUA_TTABLE) {
    lua_newtable(L);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &PENDING_KEY);
  }
  lua_pop(L, 1);
}
