/* SPDX-License-Identifier: MIT */
/*
 * balancer: the pick algorithms of SPEC.md "Balancing" over a worker's view
 * of a pool's servers. Pure code: the caller assembles the view (health,
 * admin state, shared counters) and owns all I/O.
 */
#ifndef SMTPFRONT_BALANCER_H
#define SMTPFRONT_BALANCER_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "config/config.h"

/* One server as the caller sees it at pick time. */
struct bal_server {
	bool usable;		/* health up or unknown, admin ready (not drain/maint) */
	unsigned active;	/* sessions open on it, summed over all workers */
};

/* Per-process, per-pool state (smooth WRR current weights, name hashes). */
struct bal_pool;

/* The pool must outlive the bal_pool (names and weights are read from it). */
struct bal_pool *bal_pool_new(const struct cfg_pool *pool)
    __attribute__((warn_unused_result));
void bal_pool_free(struct bal_pool *bp);

/*
 * Pick a server index for a new attempt, or -1 when none is eligible.
 * Eligible: view[i].usable, !tried[i], weight > 0, and active <
 * max_connections when that is set. Backup servers only when no
 * non-backup server is eligible. `client` (AF_INET/AF_INET6, mapped IPv4
 * treated as IPv4) keys `source` balancing with the pool's source_prefix;
 * it may be NULL for the other algorithms. `tried` may be NULL.
 */
int bal_pick(struct bal_pool *bp, const struct bal_server *view,
    const bool *tried, const struct sockaddr *client);

/*
 * Client network key under the pool's source_prefix, written into key[16]
 * (IPv4 in the first 4 bytes); returns the family or -1. Shared with the
 * per-client connection limit so both agree on what "a client" is.
 */
int bal_client_key(const struct cfg_pool *pool, const struct sockaddr *client,
    unsigned char key[16]);

#endif
