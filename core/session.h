/* SPDX-License-Identifier: MIT */
/*
 * session: one client connection from accept to its log line: pick a
 * server, connect, PROXY header, greeting gate, relay with backpressure.
 */
#ifndef SMTPFRONT_SESSION_H
#define SMTPFRONT_SESSION_H

#include <sys/socket.h>

#include <event2/event.h>

#include "balancer/balancer.h"
#include "core/runtime.h"

struct session;

/* What a worker gives its sessions. */
struct session_env {
	struct event_base *base;
	const struct runtime *rt;
	struct bal_pool **bal;		/* one per pool */
	void (*on_close)(void *arg);	/* called after a session is freed */
	void *arg;
	unsigned nsessions;
};

/* Take ownership of an accepted socket. */
void session_start(struct session_env *env, const struct rt_listener *l,
    const struct rt_bind *b, int fd, const struct sockaddr *peer,
    socklen_t peerlen);
/* End every open session (shutdown_timeout expired). */
void session_close_all(struct session_env *env, const char *result);

#endif
