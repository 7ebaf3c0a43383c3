/* SPDX-License-Identifier: MIT */
/*
 * session: one client connection from accept to its log line: admission
 * (max_connections, max_connections_per_client), pick a server, connect,
 * PROXY header, greeting gate, relay with backpressure, and the verdict on
 * how it ended (`result=`).
 */
#ifndef SMTPFRONT_SESSION_H
#define SMTPFRONT_SESSION_H

#include <sys/socket.h>

#include <stdbool.h>
#include <stdint.h>

#include <event2/event.h>

#include "balancer/balancer.h"
#include "core/runtime.h"

/* Descriptors a worker keeps for splice(2) pipes on top of the two each
 * session holds (SPEC.md "Descriptors"). */
#define SESSION_PIPE_FDS	64

struct session;

/*
 * Rejections of upstream PROXY headers (bad or untrusted) logged in the
 * current second, and those left out: a flood must not flood the log.
 * Kept per worker in its session_env (zeroed by the worker).
 */
struct session_rejects {
	int64_t window_us;		/* start of the current second */
	unsigned logged;		/* lines logged in it */
	unsigned dropped;		/* lines left out, not reported yet */
	bool report_armed;		/* a timer will report `dropped` */
};

/* What a worker gives its sessions. */
struct session_env {
	struct event_base *base;
	const struct runtime *rt;
	struct bal_pool **bal;		/* one per pool */
	void (*on_close)(void *arg);	/* called after a session is freed */
	void *arg;
	unsigned nsessions;		/* open, including those lingering */
	struct session_rejects rejects;
};

/*
 * Cap the kernel send buffer of the client sockets a listening socket
 * accepts (they inherit it: no call per session). Only replies flow toward
 * a client, so a client that pipelines and never reads pins at most this
 * much kernel memory (SPEC.md "Bounds"). Idempotent.
 */
void session_listener_setup(int fd);
/* Take ownership of an accepted socket. */
void session_start(struct session_env *env, const struct rt_listener *l,
    const struct rt_bind *b, int fd, const struct sockaddr *peer,
    socklen_t peerlen);
/*
 * A connection the worker has no room for: the over-capacity 421, a FIN,
 * what the client sent drained, the descriptor closed and one session
 * line (result=overload) with `why` as last_error. Never blocks.
 */
void session_refuse(struct session_env *env, const struct rt_listener *l,
    int fd, const struct sockaddr *peer, socklen_t peerlen, const char *why);
/* End every open session (shutdown_timeout expired). */
void session_close_all(struct session_env *env);

#endif
