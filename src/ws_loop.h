/*
** ws_loop.h — how http.poll (lhttp.c), the scheduler's one event loop,
** also drives the WebSocket connections tasks wait on (lws.c).
*/
#ifndef QMIG_WS_LOOP_H
#define QMIG_WS_LOOP_H

#include <curl/curl.h>
#include <lua.h>

/* The sockets of the connections a task waits on, for curl_multi_poll's
** extra_fds: fills up to max entries, returns how many. */
unsigned ws_loop_waitfds(struct curl_waitfd *fds, unsigned max);

/* Moves every waited-on connection on; appends the userdata of each whose
** wait ended (a message, open, closed, failed, timed out) to the table at
** list_idx.  Returns how many it appended. */
int ws_loop_collect(lua_State *L, int list_idx);

/* 1 when the value at idx is a WebSocket connection (what a waiting task
** yields, and http.poll hands back). */
int ws_loop_is_wait(lua_State *L, int idx);

#endif
