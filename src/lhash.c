/*
** lhash.c — qmig.hash: SHA-256 and HMAC-SHA-256 through OpenSSL's EVP
** interface, as lowercase hex.  Files are hashed in fixed-size chunks, so
** a multi-GB app export costs no more memory than a small one.
** "qmig.Sha256" is an incremental hash.
*/
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <lua.h>
#include <lauxlib.h>

#include "qmig.h"

#define HASH_SHA256 "qmig.Sha256"
#define CHUNK 65536

static void push_hex(lua_State *L, const unsigned char *md, unsigned int n) {
  static const char digits[] = "0123456789abcdef";
  char hex[2 * EVP_MAX_MD_SIZE];
  for (size_t i = 0; i < n; i++) {
    hex[2 * i] = digits[md[i] >> 4];
    hex[2 * i + 1] = digits[md[i] & 0x0f];
  }
  lua_pushlstring(L, hex, 2 * (size_t)n);
}

/* hash.sha256(s) -> hex */
static int h_sha256(lua_State *L) {
  size_t len;
  const char *s = luaL_checklstring(L, 1, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(s, len, md, &n, EVP_sha256(), NULL)) return luaL_error(L, "sha256 failed");
  push_hex(L, md, n);
  return 1;
}

/* hash.sha256_file(path) -> hex, size | nil, msg, errno */
static int h_sha256_file(lua_State *L) {
  size_t plen;
  const char *path = luaL_checklstring(L, 1, &plen);
  luaL_argcheck(L, strlen(path) == plen, 1, "path contains a NUL byte");
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return luaL_fileresult(L, 0, path);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  int ok = ctx != NULL && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
  unsigned char buf[CHUNK];
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  lua_Integer size = 0;
  int err = 0;
  while (ok) {
    ssize_t r = read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      err = errno;
      break;
    }
    if (r == 0) {
      ok = EVP_DigestFinal_ex(ctx, md, &n);
      break;
    }
    size += r;
    ok = EVP_DigestUpdate(ctx, buf, (size_t)r);
  }
  EVP_MD_CTX_free(ctx);
  close(fd);
  if (err != 0) {
    errno = err;
    return luaL_fileresult(L, 0, path);
  }
  if (!ok) return luaL_error(L, "sha256 failed");
  push_hex(L, md, n);
  lua_pushinteger(L, size);
  return 2;
}

/* hash.hmac_sha256(key, s) -> hex */
static int h_hmac_sha256(lua_State *L) {
  size_t klen, len;
  const char *key = luaL_checklstring(L, 1, &klen);
  const char *s = luaL_checklstring(L, 2, &len);
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (HMAC(EVP_sha256(), key, (int)klen, (const unsigned char *)s, len, md, &n) == NULL)
    return luaL_error(L, "hmac-sha256 failed");
  push_hex(L, md, n);
  return 1;
}

/* {====== incremental hash */

typedef struct LSha {
  EVP_MD_CTX *ctx;
} LSha;

#define tosha(L) ((LSha *)luaL_checkudata(L, 1, HASH_SHA256))

static LSha *checksha(lua_State *L) {
  LSha *h = tosha(L);
  if (h->ctx == NULL) luaL_error(L, "attempt to use a freed hash");
  return h;
}

/* hash.sha256_new() -> h */
static int h_sha256_new(lua_State *L) {
  LSha *h = (LSha *)lua_newuserdatauv(L, sizeof(LSha), 0);
  h->ctx = NULL;
  luaL_setmetatable(L, HASH_SHA256);
  h->ctx = EVP_MD_CTX_new();
  if (h->ctx == NULL || !EVP_DigestInit_ex(h->ctx, EVP_sha256(), NULL))
    return luaL_error(L, "sha256 failed");
  return 1;
}

/* h:update(s) -> h, so calls chain */
static int sha_update(lua_State *L) {
  LSha *h = checksha(L);
  size_t len;
  const char *s = luaL_checklstring(L, 2, &len);
  if (!EVP_DigestUpdate(h->ctx, s, len)) return luaL_error(L, "sha256 failed");
  lua_settop(L, 1);
  return 1;
}

/* h:hex() -> the digest so far; works on a copy, so h can keep growing. */
static int sha_hex(lua_State *L) {
  LSha *h = checksha(L);
  EVP_MD_CTX *copy = EVP_MD_CTX_new();
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  int ok = copy != NULL && EVP_MD_CTX_copy_ex(copy, h->ctx) && EVP_DigestFinal_ex(copy, md, &n);
  EVP_MD_CTX_free(copy);
  if (!ok) return luaL_error(L, "sha256 failed");
  push_hex(L, md, n);
  return 1;
}

static int sha_gc(lua_State *L) {
  LSha *h = tosha(L);
  EVP_MD_CTX_free(h->ctx);
  h->ctx = NULL;
  return 0;
}

static int sha_tostring(lua_State *L) {
  lua_pushstring(L, tosha(L)->ctx ? "qmig.Sha256" : "qmig.Sha256 (freed)");
  return 1;
}
/* }====== */

static const luaL_Reg hashlib[] = {
  {"sha256", h_sha256},
  {"sha256_file", h_sha256_file},
  {"hmac_sha256", h_hmac_sha256},
  {"sha256_new", h_sha256_new},
  {NULL, NULL}
};

static const luaL_Reg meth[] = {
  {"update", sha_update},
  {"hex", sha_hex},
  {NULL, NULL}
};

static const luaL_Reg metameth[] = {
  {"__index", NULL},  /* placeholder */
  {"__gc", sha_gc},
  {"__close", sha_gc},
  {"__tostring", sha_tostring},
  {NULL, NULL}
};

int luaopen_qmig_hash(lua_State *L) {
  luaL_newlib(L, hashlib);
  luaL_newmetatable(L, HASH_SHA256);
  luaL_setfuncs(L, metameth, 0);
  luaL_newlibtable(L, meth);
  luaL_setfuncs(L, meth, 0);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  return 1;
}
