/* SPDX-License-Identifier: MIT */
/*
 * metrics_http: `GET /metrics` over HTTP from the master's event loop, with
 * libevent's evhttp, never blocking it. Anything else is a 404 or a 405.
 * One request per connection; connections are bounded in number (idle ones
 * are closed to make room) and in time (METRICS_HTTP_DEADLINE_MS in all),
 * and the expositions are rendered at METRICS_HTTP_PRIORITY, below the
 * master's other events, one per turn of its loop: a slow, stuck or
 * crowding scraper cannot delay signals, reloads or the control socket by
 * more than one rendering. The master's event base must have
 * METRICS_HTTP_PRIORITIES priorities (its own events at the default one).
 */
#ifndef SMTPFRONT_METRICS_HTTP_H
#define SMTPFRONT_METRICS_HTTP_H

#include <stddef.h>

#include <event2/event.h>

#include "config/config.h"

#define METRICS_HTTP_PRIORITIES		3
#define METRICS_HTTP_PRIORITY		2
/* Connections served at once, and a connection's whole life. */
#define METRICS_HTTP_MAX_CONNS		64
#define METRICS_HTTP_DEADLINE_MS	10000

struct evbuffer;
struct metrics_http;

/* Writes the exposition into out. */
typedef void (*metrics_http_render_fn)(struct evbuffer *out, void *arg);

struct metrics_http *metrics_http_new(struct event_base *base,
    metrics_http_render_fn render, void *arg)
    __attribute__((warn_unused_result));
/* Close everything. NULL is a no-op. */
void metrics_http_free(struct metrics_http *h);
/*
 * A configuration's metrics.bind (NULL: none), in two steps so that a
 * reload that fails changes nothing: prepare binds a new address (the one
 * served now is kept as it is) or -1 with the reason in err; commit
 * serves what was prepared and closes what is no longer wanted; abandon
 * closes what prepare bound.
 */
int metrics_http_prepare(struct metrics_http *h, const struct cfg_addr *bind,
    char *err, size_t cap) __attribute__((warn_unused_result));
void metrics_http_commit(struct metrics_http *h);
void metrics_http_abandon(struct metrics_http *h);
/* Upgrade: the listening socket served (-1: none), and, in the next image
 * before its first prepare, that socket: prepare uses it when it is bound
 * to the address asked for, and closes it otherwise. */
int metrics_http_fd(const struct metrics_http *h);
void metrics_http_inherit(struct metrics_http *h, int fd);

#endif
