/*
** yaml_scalar.c — plain scalar resolution (see yaml_scalar.h).
*/
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "json_mt.h"
#include "yaml_scalar.h"

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static int one_of(const char *s, size_t len, const char *const *words) {
  for (; *words; words++)
    if (strlen(*words) == len && memcmp(s, *words, len) == 0) return 1;
  return 0;
}

static const char *const nulls[] = {"~", "null", "Null", "NULL", NULL};
static const char *const trues[] = {"true", "True", "TRUE", NULL};
static const char *const falses[] = {"false", "False", "FALSE", NULL};
static const char *const infs[] = {".inf", ".Inf", ".INF", NULL};
static const char *const nans[] = {".nan", ".NaN", ".NAN", NULL};
/* YAML 1.1 booleans: we read them as strings, other tools may not. */
static const char *const bools11[] = {"yes", "Yes", "YES", "no", "No", "NO",
                                      "on", "On", "ON", "off", "Off", "OFF", NULL};

/* [-+]?[0-9]+ ; *leading_zero when more than one digit starts with 0 */
static int is_decimal(const char *s, size_t len, int *leading_zero) {
  size_t i = (len > 0 && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (i == len) return 0;
  for (size_t j = i; j < len; j++)
    if (!is_digit(s[j])) return 0;
  *leading_zero = s[i] == '0' && len - i > 1;
  return 1;
}

/* 0x[0-9a-fA-F]+ or 0o[0-7]+ ; returns the base or 0 */
static int radix_of(const char *s, size_t len) {
  if (len < 3 || s[0] != '0') return 0;
  int base = s[1] == 'x' ? 16 : s[1] == 'o' ? 8 : 0;
  if (base == 0) return 0;
  for (size_t i = 2; i < len; i++) {
    char c = s[i];
    int ok = base == 16 ? (is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
                        : (c >= '0' && c <= '7');
    if (!ok) return 0;
  }
  return base;
}

/* [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)? */
static int is_float(const char *s, size_t len) {
  size_t i = 0, digits = 0;
  if (i < len && (s[i] == '-' || s[i] == '+')) i++;
  while (i < len && is_digit(s[i])) i++, digits++;
  if (i < len && s[i] == '.') {
    i++;
    size_t frac = 0;
    while (i < len && is_digit(s[i])) i++, frac++;
    if (digits == 0 && frac == 0) return 0;
  } else if (digits == 0) {
    return 0;
  }
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < len && (s[i] == '-' || s[i] == '+')) i++;
    size_t exp = 0;
    while (i < len && is_digit(s[i])) i++, exp++;
    if (exp == 0) return 0;
  }
  return i == len;
}

/* Pushes the integer in s (base 10/16/8, optional sign); 0 on overflow. */
static int push_integer(lua_State *L, const char *s, size_t len, int base) {
  char buf[80];
  if (len >= sizeof buf) return 0;
  memcpy(buf, s, len);
  buf[len] = '\0';
  const char *digits = base == 10 ? buf : buf + 2;
  errno = 0;
  char *end;
  long long v = strtoll(digits, &end, base);
  if (errno == ERANGE || *end != '\0') return 0;
  lua_pushinteger(L, (lua_Integer)v);
  return 1;
}

static int push_float(lua_State *L, const char *s, size_t len) {
  size_t i = (len > 0 && (s[0] == '-' || s[0] == '+')) ? 1 : 0;
  if (one_of(s + i, len - i, infs)) {
    lua_pushnumber(L, s[0] == '-' ? -HUGE_VAL : HUGE_VAL);
    return 1;
  }
  if (i == 0 && one_of(s, len, nans)) {
    lua_pushnumber(L, NAN);
    return 1;
  }
  if (!is_float(s, len)) return 0;
  char buf[512];
  if (len >= sizeof buf) return 0;
  memcpy(buf, s, len);
  buf[len] = '\0';
  lua_pushnumber(L, strtod(buf, NULL));
  return 1;
}

void yaml_push_plain(lua_State *L, const char *s, size_t len) {
  int leading_zero = 0, base;
  if (len == 0 || one_of(s, len, nulls)) json_pushnull(L);
  else if (one_of(s, len, trues)) lua_pushboolean(L, 1);
  else if (one_of(s, len, falses)) lua_pushboolean(L, 0);
  else if (is_decimal(s, len, &leading_zero)) {
    if (leading_zero || !push_integer(L, s, len, 10)) lua_pushlstring(L, s, len);
  } else if ((base = radix_of(s, len)) != 0) {
    if (!push_integer(L, s, len, base)) lua_pushlstring(L, s, len);
  } else if (!push_float(L, s, len)) {
    lua_pushlstring(L, s, len);
  }
}

int yaml_push_tagged(lua_State *L, const char *tag, const char *s, size_t len) {
  int leading_zero, base;
  if (strcmp(tag, "str") == 0) {
    lua_pushlstring(L, s, len);
    return 1;
  }
  if (strcmp(tag, "null") == 0) {
    if (len != 0 && !one_of(s, len, nulls)) return 0;
    json_pushnull(L);
    return 1;
  }
  if (strcmp(tag, "bool") == 0) {
    int t = one_of(s, len, trues);
    if (!t && !one_of(s, len, falses)) return 0;
    lua_pushboolean(L, t);
    return 1;
  }
  if (strcmp(tag, "int") == 0) {
    if (is_decimal(s, len, &leading_zero)) return push_integer(L, s, len, 10);
    if ((base = radix_of(s, len)) != 0) return push_integer(L, s, len, base);
    return 0;
  }
  if (strcmp(tag, "float") == 0) return push_float(L, s, len);  /* "!!float 1" is 1.0 */
  return 0;
}

int yaml_plain_is_ambiguous(const char *s, size_t len) {
  int leading_zero;
  return len == 0 || one_of(s, len, nulls) || one_of(s, len, trues) ||
         one_of(s, len, falses) || one_of(s, len, bools11) ||
         is_decimal(s, len, &leading_zero) || radix_of(s, len) || is_float(s, len) ||
         one_of(s + (s[0] == '-' || s[0] == '+'), len - (s[0] == '-' || s[0] == '+'), infs) ||
         one_of(s, len, nans) || (s[0] == '<' && len == 2 && s[1] == '<');
}
