/* SPDX-License-Identifier: MIT */
/*
 * control: the master's unix control socket (status, enable, disable,
 * drain, reload, metrics). Served from the master's event loop, never blocking it;
 * the master owns the admin state it writes to shared memory. A reload is
 * answered when it is over (every new worker accepting, or failed), so its
 * connection waits while everything else goes on.
 */
#ifndef SMTPFRONT_CONTROL_H
#define SMTPFRONT_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <event2/event.h>

#include "core/runtime.h"

struct evbuffer;

struct control;

/* One running worker as `status` shows it. */
struct control_worker {
	pid_t pid;
	unsigned generation;
	unsigned slot;			/* shm worker slot */
	bool draining;			/* an old generation finishing its sessions */
};

/* Fills out[0..cap) with the running workers and returns how many. */
typedef size_t (*control_workers_fn)(void *arg, struct control_worker *out,
    size_t cap);

/*
 * Start a reload asked for by `who` (for the log): 0 when started, the
 * answer then comes through control_reload_done() (possibly before this
 * returns); -1 when refused at once, with the reason in err.
 */
typedef int (*control_reload_fn)(void *arg, const char *who, char *err,
    size_t cap);

/*
 * Create the socket at rt->cfg->control (parent directory, stale socket,
 * mode, group) and serve it on base. Refuses (NULL, reason logged) when
 * another process answers on that path.
 */
struct control *control_new(struct event_base *base, const struct runtime *rt,
    control_workers_fn workers, control_reload_fn reload, void *arg)
    __attribute__((warn_unused_result));
/* Master exit: close every connection, unlink the socket. NULL is a no-op. */
void control_free(struct control *c);
/* A new runtime (reload): admin states of servers with the same pool, name
 * and address are written to their new shm slots. */
void control_set_runtime(struct control *c, const struct runtime *rt);
/* The same writes for a runtime about to be started (before its children
 * fork), without making it the one `status` shows. */
void control_apply_admin(struct control *c, const struct runtime *rt);
/*
 * The reload that was started is over: answer every connection waiting for
 * it. generation 0 = failed; errors and warnings are lines ('\n'
 * terminated), either may be empty.
 */
void control_reload_done(struct control *c, unsigned generation,
    const char *errors, const char *warnings);
/* The Prometheus exposition of the running generation (the `metrics`
 * command, and GET /metrics). */
void control_metrics(struct control *c, struct evbuffer *out);

#endif
