/* SPDX-License-Identifier: MIT */
/*
 * admission: may this client have a session? SPEC.md "Admission", in its
 * order: the listener's deny list and the runtime deny entries, then
 * max_connections, max_connections_per_client and
 * max_connection_rate_per_client (the last two skipped for
 * client_limit_exceptions). Counts are reserved before they are checked,
 * so the limits hold when connections arrive on every worker at once.
 */
#ifndef SMTPFRONT_ADMISSION_H
#define SMTPFRONT_ADMISSION_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "core/runtime.h"
#include "core/worker/clients.h"

enum admit_verdict {
	ADMIT_OK,
	ADMIT_DENIED,		/* the listener's deny list: 554 5.7.1 */
	ADMIT_DENIED_RUNTIME,	/* a runtime deny entry: 421 4.7.1 */
	ADMIT_OVERLOAD,		/* max_connections (or a count unreadable) */
	ADMIT_CLIENT_LIMIT,	/* max_connections_per_client */
	ADMIT_CLIENT_RATE,	/* max_connection_rate_per_client */
};
extern const char *const admit_verdict_names[];

/* What a session holds against the limits until admission_release(). */
struct admit_hold {
	struct clients_key key;
	bool listener;		/* +1 in its listener's active sessions */
	bool client;		/* +1 in the per-client table */
};

/*
 * The verdict for a client from `peer` on listener `l` (pool: its
 * source_prefix makes the client network). ADMIT_OK leaves the session's
 * counts in *h (a listener count already held, as accept_proxy listeners
 * take one at accept, is kept); any other verdict leaves nothing but what
 * was held before, and an explanation for last_error in why ("" = none).
 */
enum admit_verdict admission_check(const struct rt_listener *l,
    const struct cfg_pool *pool, const struct sockaddr *peer,
    struct admit_hold *h, char *why, size_t cap)
    __attribute__((warn_unused_result));
/* The session's counts go (session end, or its refusal). */
void admission_release(const struct rt_listener *l, struct admit_hold *h);
/* Take the listener count at accept (before the client is known). */
void admission_hold_listener(const struct rt_listener *l,
    struct admit_hold *h);

#endif
