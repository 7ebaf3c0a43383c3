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
 * Start a binary upgrade to `binary` (NULL: the default) asked for by who:
 * as control_reload_fn; the answer comes through control_upgrade_done(),
 * possibly from the next image (see control_waiting_fd()).
 */
typedef int (*control_upgrade_fn)(void *arg, const char *who,
    const char *binary, char *err, size_t cap);

/*
 * Create the socket at rt->cfg->control (parent directory, stale socket,
 * mode, group) and serve it on base. Refuses (NULL, reason logged) when
 * another process answers on that path. With fd != -1 (an upgrade), serve
 * that socket, which the previous image listened on, instead, and take
 * the admin states from shared memory.
 */
struct control *control_new(struct event_base *base, const struct runtime *rt,
    control_workers_fn workers, control_reload_fn reload,
    control_upgrade_fn upgrade, void *arg, int fd)
    __attribute__((warn_unused_result));
/* The listening socket, and when it started (uptime), for an upgrade. */
int control_fd(const struct control *c);
int64_t control_started_us(const struct control *c);
void control_set_started_us(struct control *c, int64_t us);
/* The connection waiting for an upgrade's answer (its socket, peer uid
 * and pid), or -1. */
int control_waiting_fd(const struct control *c, uid_t *uid, pid_t *pid);
/* After an upgrade's exec: the connection of the previous image waiting
 * for the answer. */
void control_adopt_waiting(struct control *c, int fd, uid_t uid, pid_t pid);
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
/* The same for an upgrade: the answer also names the version and binary
 * now running (ok or not). */
void control_upgrade_done(struct control *c, unsigned generation,
    const char *binary, const char *errors, const char *warnings);
/* The Prometheus exposition of the running generation (the `metrics`
 * command, and GET /metrics). */
void control_metrics(struct control *c, struct evbuffer *out);

#endif
