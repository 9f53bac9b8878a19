/*
** lfs.c — qmig.fs: the file-system helpers a project folder needs.
** Names that come from the source system are hostile; safe_name() and
** is_within() are what keeps them from ever escaping the project folder.
** I/O failures return nil, "<path>: <strerror>", errno (luaL_fileresult);
** only programming mistakes raise.  "qmig.Lock" is the project lock.
*/
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <openssl/evp.h>

#include <lua.h>
#include <lauxlib.h>

#include "io_worker.h"
#include "qmig.h"

#define FS_LOCK  "qmig.Lock"
#define FS_FDBOX "qmig.FdBox"

/* mkstemp + close-on-exec: no child process should inherit the handle. */
static int mkstemp_cloexec(char *tmpl) {
  int fd = mkstemp(tmpl);
  if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

/* {====== a box that closes a descriptor if an error unwinds past it */

typedef struct FdBox {
  int fd;
  DIR *dir;
} FdBox;

static int box_gc(lua_State *L) {
  FdBox *b = (FdBox *)luaL_checkudata(L, 1, FS_FDBOX);
  if (b->fd >= 0) close(b->fd);
  if (b->dir) closedir(b->dir);
  b->fd = -1;
  b->dir = NULL;
  return 0;
}

static FdBox *newbox(lua_State *L) {
  FdBox *b = (FdBox *)lua_newuserdatauv(L, sizeof(FdBox), 0);
  b->fd = -1;
  b->dir = NULL;
  luaL_setmetatable(L, FS_FDBOX);
  return b;
}
/* }====== */

/* A path argument.  A NUL inside would silently cut the path short at the
** C boundary (a hostile "x\0/../.." names a different file), so it is
** refused as the bug it is. */
static const char *checkpath(lua_State *L, int arg) {
  size_t len;
  const char *p = luaL_checklstring(L, arg, &len);
  luaL_argcheck(L, strlen(p) == len, arg, "path contains a NUL byte");
  return p;
}

static mode_t optmode(lua_State *L, int arg, mode_t def) {
  lua_Integer m = luaL_optinteger(L, arg, (lua_Integer)def);
  luaL_argcheck(L, m >= 0 && m <= 07777, arg, "mode out of range");
  return (mode_t)m;
}

static int push_true(lua_State *L) {
  lua_pushboolean(L, 1);
  return 1;
}

/* {====== plain file-system calls */

static int f_mkdir(lua_State *L) {
  const char *path = checkpath(L, 1);
  if (mkdir(path, optmode(L, 2, 0755)) != 0) return luaL_fileresult(L, 0, path);
  return push_true(L);
}

/* fs.mkdirs(path [, mode]): like mkdir -p; an existing folder is fine. */
static int f_mkdirs(lua_State *L) {
  size_t len;
  const char *path = luaL_checklstring(L, 1, &len);
  luaL_argcheck(L, strlen(path) == len, 1, "path contains a NUL byte");
  mode_t mode = optmode(L, 2, 0755);
  luaL_argcheck(L, len > 0 && len < PATH_MAX, 1, "bad path length");
  char buf[PATH_MAX];
  memcpy(buf, path, len + 1);
  for (size_t i = 1; i <= len; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char c = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, mode) != 0) {
      int err = errno;
      struct stat st;
      if (err != EEXIST || stat(buf, &st) != 0 || !S_ISDIR(st.st_mode)) {
        errno = err == EEXIST ? ENOTDIR : err;
        return luaL_fileresult(L, 0, buf);
      }
    }
    buf[i] = c;
  }
  return push_true(L);
}

/* fs.exists(path): something is at path (a dangling symlink counts, as
** the name is taken). */
static int f_exists(lua_State *L) {
  struct stat st;
  lua_pushboolean(L, lstat(checkpath(L, 1), &st) == 0);
  return 1;
}

/* fs.stat(path): lstat, so a symlink is reported as "link". */
static int f_stat(lua_State *L) {
  const char *path = checkpath(L, 1);
  struct stat st;
  if (lstat(path, &st) != 0) return luaL_fileresult(L, 0, path);
  lua_createtable(L, 0, 4);
  lua_pushstring(L, S_ISREG(st.st_mode) ? "file" : S_ISDIR(st.st_mode) ? "directory"
                    : S_ISLNK(st.st_mode) ? "link" : "other");
  lua_setfield(L, -2, "type");
  lua_pushinteger(L, (lua_Integer)st.st_size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, (lua_Integer)(st.st_mode & 07777));
  lua_setfield(L, -2, "mode");
  lua_pushnumber(L, (lua_Number)st.st_mtim.tv_sec + (lua_Number)st.st_mtim.tv_nsec / 1e9);
  lua_setfield(L, -2, "mtime");
  return 1;
}

static int cmp_names(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* fs.dir(path) -> sorted array of names (byte order), without . and .. */
static int f_dir(lua_State *L) {
  const char *path = checkpath(L, 1);
  FdBox *box = newbox(L);
  box->dir = opendir(path);
  if (box->dir == NULL) return luaL_fileresult(L, 0, path);
  lua_newtable(L);  /* names, unsorted */
  int n = 0;
  struct dirent *e;
  errno = 0;
  /* cppcheck-suppress readdirCalled ; readdir_r is the deprecated one */
  while ((e = readdir(box->dir)) != NULL) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    lua_pushstring(L, e->d_name);
    lua_rawseti(L, -2, ++n);
  }
  int err = errno;
  closedir(box->dir);
  box->dir = NULL;
  if (err != 0) {
    errno = err;
    return luaL_fileresult(L, 0, path);
  }
  /* The strings stay alive in the unsorted table while C sorts pointers. */
  const char **v = (const char **)lua_newuserdatauv(L, sizeof(char *) * (size_t)(n + 1), 0);
  for (int i = 0; i < n; i++) {
    lua_rawgeti(L, -2, i + 1);
    v[i] = lua_tostring(L, -1);
    lua_pop(L, 1);
  }
  qsort(v, (size_t)n, sizeof *v, cmp_names);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) {
    lua_pushstring(L, v[i]);
    lua_rawseti(L, -2, i + 1);
  }
  return 1;
}

static int f_remove(lua_State *L) {
  const char *path = checkpath(L, 1);
  return luaL_fileresult(L, remove(path) == 0, path);
}

static int f_rename(lua_State *L) {
  const char *from = checkpath(L, 1);
  const char *to = checkpath(L, 2);
  return luaL_fileresult(L, rename(from, to) == 0, from);
}

static int f_chmod(lua_State *L) {
  const char *path = checkpath(L, 1);
  lua_Integer m = luaL_checkinteger(L, 2);
  luaL_argcheck(L, m >= 0 && m <= 07777, 2, "mode out of range");
  return luaL_fileresult(L, chmod(path, (mode_t)m) == 0, path);
}

static int f_realpath(lua_State *L) {
  const char *path = checkpath(L, 1);
  char buf[PATH_MAX];
  if (realpath(path, buf) == NULL) return luaL_fileresult(L, 0, path);
  lua_pushstring(L, buf);
  return 1;
}

/* fs.process_alive(pid): false only when no such process exists; the
** cache uses it to tell a crashed run from one still going. */
static int f_process_alive(lua_State *L) {
  lua_Integer pid = luaL_checkinteger(L, 1);
  luaL_argcheck(L, pid > 0 && pid <= INT_MAX, 1, "bad pid");
  lua_pushboolean(L, kill((pid_t)pid, 0) == 0 || errno != ESRCH);
  return 1;
}
/* }====== */

/* {====== whole files */

static int f_read_file(lua_State *L) {
  const char *path = checkpath(L, 1);
  FdBox *box = newbox(L);
  box->fd = open(path, O_RDONLY | O_CLOEXEC);
  if (box->fd < 0) return luaL_fileresult(L, 0, path);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  for (;;) {
    /* NOLINTBEGIN(bugprone-sizeof-expression): Lua's own LUAL_BUFFERSIZE */
    char *p = luaL_prepbuffer(&b);
    ssize_t r = read(box->fd, p, LUAL_BUFFERSIZE);
    /* NOLINTEND(bugprone-sizeof-expression) */
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return luaL_fileresult(L, 0, path);
    if (r == 0) break;
    luaL_addsize(&b, (size_t)r);
  }
  close(box->fd);
  box->fd = -1;
  luaL_pushresult(&b);
  return 1;
}

static int write_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* The folder part of path ("." when there is none), into buf. */
static void dir_of(const char *path, char *buf, size_t size) {
  const char *slash = strrchr(path, '/');
  if (slash == NULL) snprintf(buf, size, ".");
  else if (slash == path) snprintf(buf, size, "/");
  else snprintf(buf, size, "%.*s", (int)(slash - path), path);
}

static int fsync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return -1;
  int r = fsync(fd);
  int err = errno;
  close(fd);
  errno = err;
  return r;
}

/* An atomic write's work, on the worker thread or inline: the paths are
** copies, the data is kept alive by the job's user value. */
typedef struct AtomicWrite {
  char path[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX];
  const char *data;
  size_t len;
  mode_t mode;
  const char *failed;  /* which of the paths the error is about */
} AtomicWrite;

/* Write to a temporary file beside the target, fsync it, rename it over
** the target and fsync the folder: after a crash the target holds either
** the old or the new content, never a torn mix.  0 or errno. */
static int write_atomic(AtomicWrite *w) {
  int fd = mkstemp_cloexec(w->tmp);
  w->failed = w->tmp;
  if (fd < 0) return errno;
  if (fchmod(fd, w->mode) != 0 || write_all(fd, w->data, w->len) != 0 || fsync(fd) != 0) goto fail;
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  w->failed = w->path;
  if (rename(w->tmp, w->path) != 0) goto fail;
  w->failed = w->dir;
  return fsync_dir(w->dir) != 0 ? errno : 0;
fail: {
    int err = errno;
    if (fd >= 0) close(fd);
    unlink(w->tmp);
    return err;
  }
}

static int write_atomic_job(IoJob *job) {
  return write_atomic(io_job_payload(job));
}

/* true, or nil, "<path>: <strerror(err)>", err */
static int err_result(lua_State *L, const char *path, int err) {
  if (err == 0) return push_true(L);
  errno = err;
  return luaL_fileresult(L, 0, path);
}

static int write_atomic_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  IoJob *job = io_job_test(L, (int)ctx);
  return err_result(L, ((AtomicWrite *)io_job_payload(job))->failed, job->err);
}

/* Inside a scheduler task the write is an IoJob the task waits for (the
** fsyncs do not stall other tasks' transfers); elsewhere it runs here. */
static int write_atomic_lua(lua_State *L, const char *path, int data_idx, mode_t mode) {
  AtomicWrite local, *w = &local;
  int in_task = qmig_in_task(L);
  if (in_task) w = io_job_payload(io_job_new(L, write_atomic_job, sizeof(AtomicWrite), data_idx));
  else memset(w, 0, sizeof *w);
  w->data = lua_tolstring(L, data_idx, &w->len);
  w->mode = mode;
  dir_of(path, w->dir, sizeof w->dir);
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  if (strlen(path) >= sizeof w->path ||
      snprintf(w->tmp, sizeof w->tmp, "%s/.%.100s.tmp-XXXXXX", w->dir, base) >= (int)sizeof w->tmp) {
    errno = ENAMETOOLONG;
    return luaL_fileresult(L, 0, path);
  }
  memcpy(w->path, path, strlen(path) + 1);
  if (!in_task) {
    int err = write_atomic(w);
    return err_result(L, w->failed, err);
  }
  return io_job_await(L, w->path, (lua_KContext)lua_gettop(L), write_atomic_k);
}

/* fs.sync(path) -> true | nil, msg, errno: fsync of the file (any
** descriptor of it: fsync flushes the file, not the descriptor), e.g. the
** cache's WAL after a commit made with synchronous=NORMAL.  Inside a
** scheduler task it runs on the I/O worker and the task waits. */
typedef struct SyncFile {
  char path[PATH_MAX];
} SyncFile;

static int sync_file(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = fsync(fd) != 0 ? errno : 0;
  close(fd);
  return err;
}

static int sync_job(IoJob *job) {
  return sync_file(((SyncFile *)io_job_payload(job))->path);
}

static int sync_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status;
  IoJob *job = io_job_test(L, (int)ctx);
  return err_result(L, ((SyncFile *)io_job_payload(job))->path, job->err);
}

static int f_sync(lua_State *L) {
  const char *path = checkpath(L, 1);
  if (!qmig_in_task(L)) return err_result(L, path, sync_file(path));
  if (strlen(path) >= PATH_MAX) {
    errno = ENAMETOOLONG;
    return luaL_fileresult(L, 0, path);
  }
  SyncFile *f = io_job_payload(io_job_new(L, sync_job, sizeof(SyncFile), 0));
  memcpy(f->path, path, strlen(path) + 1);
  return io_job_await(L, f->path, (lua_KContext)lua_gettop(L), sync_k);
}

static mode_t current_umask(void) {
  mode_t m = umask(077);
  umask(m);
  return m;
}

/* fs.write_file(path, data [, {mode=0644, atomic=true, append=false}])
** An explicit mode is applied exactly (0600 for secrets must mean 0600);
** the default one is reduced by the umask.  append creates the file with
** mode if it is missing and adds to its end (never atomic). */
static int f_write_file(lua_State *L) {
  const char *path = checkpath(L, 1);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  mode_t mode = 0644 & ~current_umask();
  int atomic = 1, append = 0;
  if (!lua_isnoneornil(L, 3)) {
    luaL_checktype(L, 3, LUA_TTABLE);
    if (lua_getfield(L, 3, "mode") != LUA_TNIL) mode = optmode(L, -1, mode);
    if (lua_getfield(L, 3, "atomic") != LUA_TNIL) atomic = lua_toboolean(L, -1);
    if (lua_getfield(L, 3, "append") != LUA_TNIL) append = lua_toboolean(L, -1);
    lua_pop(L, 3);
  }
  if (atomic && !append) return write_atomic_lua(L, path, 2, mode);
  int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (append ? O_APPEND : O_TRUNC), mode);
  if (fd < 0) return luaL_fileresult(L, 0, path);
  int ok = write_all(fd, data, len) == 0;
  int err = errno;
  if (close(fd) != 0 && ok) {
    ok = 0;
    err = errno;
  }
  errno = err;
  return luaL_fileresult(L, ok, path);
}

/* fs.tmpname(dir [, prefix]) -> path of a new, empty 0600 file; creating
** it is what makes the name safe from a concurrent taker. */
static int f_tmpname(lua_State *L) {
  const char *dir = checkpath(L, 1);
  const char *prefix = luaL_optstring(L, 2, "tmp");
  luaL_argcheck(L, strchr(prefix, '/') == NULL, 2, "prefix must not contain '/'");
  char buf[PATH_MAX];
  if (snprintf(buf, sizeof buf, "%s/%s-XXXXXX", dir, prefix) >= (int)sizeof buf) {
    errno = ENAMETOOLONG;
    return luaL_fileresult(L, 0, dir);
  }
  int fd = mkstemp_cloexec(buf);
  if (fd < 0) return luaL_fileresult(L, 0, dir);
  close(fd);
  lua_pushstring(L, buf);
  return 1;
}
/* }====== */

/* {====== path strings */

/* fs.join(a, b, ...): joins with single slashes.  A later absolute part
** does NOT restart the path (unlike Python's os.path.join): a name from
** the source beginning with "/" must stay under the folder it joins. */
static int f_join(lua_State *L) {
  int n = lua_gettop(L);
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int have = 0, last_slash = 0;
  for (int i = 1; i <= n; i++) {
    size_t len;
    const char *s = luaL_checklstring(L, i, &len);
    if (len == 0) continue;
    size_t start = 0;
    if (have) {
      while (start < len && s[start] == '/') start++;
      if (start == len) continue;
      if (!last_slash) luaL_addchar(&b, '/');
    }
    luaL_addlstring(&b, s + start, len - start);
    last_slash = s[len - 1] == '/';
    have = 1;
  }
  luaL_pushresult(&b);
  return 1;
}

/* POSIX dirname: "a/b" -> "a", "a" -> ".", "/a" -> "/", "a/b/" -> "a". */
static int f_dirname(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  while (len > 1 && p[len - 1] == '/') len--;
  while (len > 0 && p[len - 1] != '/') len--;
  if (len == 0) {
    lua_pushliteral(L, ".");
    return 1;
  }
  while (len > 1 && p[len - 1] == '/') len--;
  lua_pushlstring(L, p, len);
  return 1;
}

/* POSIX basename: "a/b/" -> "b", "/" -> "/", "" -> "". */
static int f_basename(lua_State *L) {
  size_t len;
  const char *p = luaL_checklstring(L, 1, &len);
  while (len > 1 && p[len - 1] == '/') len--;
  size_t start = len;
  while (start > 0 && p[start - 1] != '/') start--;
  if (start == len && len > 0) start = len - 1;  /* only "/" is left */
  lua_pushlstring(L, p + start, len - start);
  return 1;
}

/* fs.is_within(root, path): where would the kernel land?  Walks path one
** component at a time from the real root: existing components are
** resolved with realpath (symlinks included, so a link pointing out is
** caught), ".." goes to the real parent, and once a component does not
** exist the rest is applied lexically.  A dangling symlink counts as
** outside, since creating through it would write wherever it points. */
static int f_is_within(lua_State *L) {
  const char *root = checkpath(L, 1);
  const char *path = checkpath(L, 2);
  char rroot[PATH_MAX], cur[PATH_MAX], cand[PATH_MAX];
  if (realpath(root, rroot) == NULL) return luaL_fileresult(L, 0, root);
  if (path[0] == '/') snprintf(cur, sizeof cur, "/");
  else if (getcwd(cur, sizeof cur) == NULL) return luaL_fileresult(L, 0, ".");
  int exists = 1;
  const char *p = path;
  while (*p) {
    while (*p == '/') p++;
    if (*p == '\0') break;
    size_t n = strcspn(p, "/");
    if (n == 1 && p[0] == '.') {
      p += n;
      continue;
    }
    if (n == 2 && p[0] == '.' && p[1] == '.') {
      char *slash = strrchr(cur, '/');
      if (slash == cur) cur[1] = '\0';
      else if (slash) *slash = '\0';
      p += n;
      continue;
    }
    size_t cl = strlen(cur);
    if (cl + 1 + n + 1 > sizeof cand) {
      lua_pushboolean(L, 0);
      return 1;
    }
    if (strcmp(cur, "/") == 0) cl = 0;
    memcpy(cand, cur, cl);
    cand[cl] = '/';
    memcpy(cand + cl + 1, p, n);
    cand[cl + 1 + n] = '\0';
    p += n;
    if (exists) {
      struct stat st;
      if (lstat(cand, &st) == 0) {
        if (realpath(cand, cur) == NULL) {  /* dangling or looping symlink */
          lua_pushboolean(L, 0);
          return 1;
        }
        continue;
      }
      exists = 0;
    }
    memcpy(cur, cand, strlen(cand) + 1);
  }
  size_t rl = strlen(rroot);
  int inside = strcmp(rroot, "/") == 0 ||
               (strncmp(cur, rroot, rl) == 0 && (cur[rl] == '\0' || cur[rl] == '/'));
  lua_pushboolean(L, inside);
  return 1;
}
/* }====== */

/* {====== safe_name */

/* Decodes one UTF-8 sequence at s (n bytes left); returns its length and
** sets *cp, or 0 when it is not valid (overlong, surrogate, > U+10FFFF). */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned long *cp) {
  unsigned long c;
  size_t len;
  if (s[0] < 0x80) {
    *cp = s[0];
    return 1;
  } else if (s[0] >= 0xC2 && s[0] <= 0xDF) {
    c = s[0] & 0x1F;
    len = 2;
  } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
    c = s[0] & 0x0F;
    len = 3;
  } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
    c = s[0] & 0x07;
    len = 4;
  } else {
    return 0;
  }
  if (n < len) return 0;
  for (size_t i = 1; i < len; i++) {
    if ((s[i] & 0xC0) != 0x80) return 0;
    c = (c << 6) | (s[i] & 0x3F);
  }
  if ((len == 3 && c < 0x800) || (len == 4 && c < 0x10000) || c > 0x10FFFF ||
      (c >= 0xD800 && c <= 0xDFFF))
    return 0;
  *cp = c;
  return len;
}

/* Non-ASCII code points kept: letters and marks of the world's scripts.
** Without a Unicode database this is a deny-list of the blocks that hold
** controls, spaces, format characters (bidi overrides, zero-width),
** punctuation and symbols (slash look-alikes such as U+2215, U+FF0F),
** private use, emoji and noncharacters. */
static int keep_codepoint(unsigned long c) {
  static const unsigned long deny[][2] = {
    {0x80, 0xBF}, {0xD7, 0xD7}, {0xF7, 0xF7}, {0x2B9, 0x2FF}, {0x37E, 0x37E},
    {0x387, 0x387}, {0x55A, 0x55F}, {0x589, 0x58A}, {0x600, 0x60F}, {0x61B, 0x61F},
    {0x66A, 0x66D}, {0x6D4, 0x6D4}, {0x6DD, 0x6DD}, {0x70F, 0x70F}, {0x964, 0x965},
    {0x1680, 0x1680}, {0x180E, 0x180E}, {0x2000, 0x2BFF}, {0x2E00, 0x2E7F},
    {0x3000, 0x303F}, {0xD800, 0xF8FF}, {0xFD3E, 0xFD3F}, {0xFDD0, 0xFDEF},
    {0xFE00, 0xFE6F}, {0xFEFF, 0xFEFF}, {0xFF00, 0xFF20}, {0xFF3B, 0xFF40},
    {0xFF5B, 0xFF65}, {0xFFF0, 0xFFFF}, {0x1F000, 0x1FFFF}, {0xE0000, 0x10FFFF},
  };
  if ((c & 0xFFFE) == 0xFFFE) return 0;  /* noncharacters of every plane */
  for (size_t i = 0; i < sizeof deny / sizeof deny[0]; i++)
    if (c >= deny[i][0] && c <= deny[i][1]) return 0;
  return 1;
}

static int keep_ascii(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         c == ' ' || c == '-' || c == '_' || c == '.' || c == '(' || c == ')';
}

/* Device names Windows refuses whatever the extension (CON, CON.txt). */
static int windows_reserved(const char *s, size_t len) {
  static const char *const names[] = {"CON", "PRN", "AUX", "NUL", NULL};
  size_t stem = 0;
  while (stem < len && s[stem] != '.') stem++;
  while (stem > 0 && s[stem - 1] == ' ') stem--;
  char up[5];
  if (stem < 3 || stem > 4) return 0;
  for (size_t i = 0; i < stem; i++) up[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
  up[stem] = '\0';
  if (stem == 3) {
    for (int i = 0; names[i]; i++)
      if (strcmp(up, names[i]) == 0) return 1;
    return 0;
  }
  return (strncmp(up, "COM", 3) == 0 || strncmp(up, "LPT", 3) == 0) && up[3] >= '1' && up[3] <= '9';
}

/* "-xxxxxxxx" at the end: the shape of our own suffix. */
static int has_hash_suffix(const char *s, size_t len) {
  if (len < 9 || s[len - 9] != '-') return 0;
  for (size_t i = len - 8; i < len; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
  return 1;
}

/* fs.safe_name(s [, maxlen=120]) -> a file name that is safe anywhere.
** Kept: ASCII letters, digits, space and -_.(), and non-ASCII letters
** (see keep_codepoint); anything else becomes "_".  Leading dots and
** dashes, trailing dots and spaces, and Windows device names count as
** changes too.  A changed (or truncated) name gets "-" and 8 hex digits of
** sha256(original), so different originals do not collide.  A name that
** already ends in such a suffix is treated as changed, or a crafted name
** could mimic another's cleaned form. */
static int f_safe_name(lua_State *L) {
  size_t len;
  const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
  lua_Integer maxlen = luaL_optinteger(L, 2, 120);
  luaL_argcheck(L, maxlen >= 16 && maxlen <= 255, 2, "maxlen must be 16..255");
  size_t limit = (size_t)maxlen;
  luaL_Buffer b;
  /* "_" never outgrows what it replaces; room for the suffix on top */
  char *out = luaL_buffinitsize(L, &b, len + 16);
  size_t o = 0;
  int changed = 0;
  for (size_t i = 0; i < len;) {
    unsigned long cp;
    size_t n = utf8_decode(s + i, len - i, &cp);
    if (n == 0) {  /* invalid byte: replace it and resynchronise */
      out[o++] = '_';
      changed = 1;
      i++;
    } else if (n == 1 ? keep_ascii(s[i]) : keep_codepoint(cp)) {
      memcpy(out + o, s + i, n);
      o += n;
      i += n;
    } else {
      out[o++] = '_';
      changed = 1;
      i += n;
    }
  }
  for (size_t i = 0; i < o && (out[i] == '.' || out[i] == '-'); i++) {
    out[i] = '_';
    changed = 1;
  }
  for (size_t i = o; i > 0 && (out[i - 1] == '.' || out[i - 1] == ' '); i--) {
    out[i - 1] = '_';
    changed = 1;
  }
  if (o == 0) {
    out[o++] = '_';
    changed = 1;
  }
  if (windows_reserved(out, o) || has_hash_suffix(out, o)) changed = 1;
  if (changed || o > limit) {
    size_t keep = o < limit - 9 ? o : limit - 9;
    while (keep > 0 && keep < o && ((unsigned char)out[keep] & 0xC0) == 0x80) keep--;
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(s, len, md, &mdlen, EVP_sha256(), NULL)) return luaL_error(L, "sha256 failed");
    o = keep + (size_t)snprintf(out + keep, 10, "-%02x%02x%02x%02x", md[0], md[1], md[2], md[3]);
  }
  luaL_pushresultsize(&b, o);
  return 1;
}
/* }====== */

/* {====== the project lock */

typedef struct LLock {
  int fd;  /* -1 once unlocked */
} LLock;

#define tolock(L) ((LLock *)luaL_checkudata(L, 1, FS_LOCK))

/* fs.lock(path) -> lock | nil, "<path> is locked by another process",
** "locked".  flock() belongs to the open file description: the kernel
** drops it when the holder dies, however it dies, so a killed run never
** leaves a stale lock.  O_CLOEXEC keeps child processes from inheriting
** (and so prolonging) it.  The file is never removed: unlinking a lock
** file lets two processes lock two different inodes of the same name. */
static int f_lock(lua_State *L) {
  const char *path = checkpath(L, 1);
  LLock *lk = (LLock *)lua_newuserdatauv(L, sizeof(LLock), 0);
  lk->fd = -1;
  luaL_setmetatable(L, FS_LOCK);
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return luaL_fileresult(L, 0, path);
  if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    close(fd);
    if (err == EWOULDBLOCK) {
      lua_pushfstring(L, "%s is locked by another process", path);
      return qmig_fail(L, lua_tostring(L, -1), "locked");
    }
    errno = err;
    return luaL_fileresult(L, 0, path);
  }
  lk->fd = fd;
  char pid[32];
  int n = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
  /* The pid is a courtesy for humans; the lock holds without it. */
  if (ftruncate(fd, 0) == 0 && pwrite(fd, pid, (size_t)n, 0) < 0) { /* ignored */ }
  return 1;
}

static void lock_release(LLock *lk) {
  if (lk->fd >= 0) {
    if (ftruncate(lk->fd, 0) != 0) { /* a stale pid is harmless */ }
    close(lk->fd);  /* releases the flock */
    lk->fd = -1;
  }
}

static int lock_unlock(lua_State *L) {
  lock_release(tolock(L));
  return push_true(L);
}

static int lock_gc(lua_State *L) {
  lock_release(tolock(L));
  return 0;
}

static int lock_tostring(lua_State *L) {
  LLock *lk = tolock(L);
  lua_pushstring(L, lk->fd >= 0 ? "qmig.Lock (held)" : "qmig.Lock (released)");
  return 1;
}
/* }====== */

static const luaL_Reg fslib[] = {
  {"mkdir", f_mkdir},
  {"mkdirs", f_mkdirs},
  {"exists", f_exists},
  {"stat", f_stat},
  {"dir", f_dir},
  {"remove", f_remove},
  {"rename", f_rename},
  {"chmod", f_chmod},
  {"read_file", f_read_file},
  {"write_file", f_write_file},
  {"sync", f_sync},
  {"realpath", f_realpath},
  {"join", f_join},
  {"dirname", f_dirname},
  {"basename", f_basename},
  {"is_within", f_is_within},
  {"safe_name", f_safe_name},
  {"lock", f_lock},
  {"tmpname", f_tmpname},
  {"process_alive", f_process_alive},
  {NULL, NULL}
};

static const luaL_Reg lockmeth[] = {
  {"unlock", lock_unlock},
  {NULL, NULL}
};

static const luaL_Reg lockmeta[] = {
  {"__index", NULL},  /* placeholder */
  {"__gc", lock_gc},
  {"__close", lock_gc},
  {"__tostring", lock_tostring},
  {NULL, NULL}
};

int luaopen_qmig_fs(lua_State *L) {
  io_worker_open(L);
  luaL_newlib(L, fslib);
  luaL_newmetatable(L, FS_LOCK);
  luaL_setfuncs(L, lockmeta, 0);
  luaL_newlibtable(L, lockmeth);
  luaL_setfuncs(L, lockmeth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  luaL_newmetatable(L, FS_FDBOX);
  lua_pushcfunction(L, box_gc);
  lua_setfield(L, -2, "__gc");
  lua_pop(L, 1);
  return 1;
}
