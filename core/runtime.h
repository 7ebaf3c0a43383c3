/* SPDX-License-Identifier: MIT */
/*
 * runtime: what one generation of workers is started with: the config, the
 * bound listening sockets and the shared-memory slot of every listener and
 * server. Built and owned by the master; a forked worker reads its copy.
 *
 * Across reloads the master keeps a slot table: a server keeps its shm slot
 * (so its health, admin state and counters) while its pool, name and
 * address stay the same, and a listener keeps its slot while its name
 * stays. A slot given up by a reload is reused only after every process of
 * the generations that used it has exited, so a draining worker never
 * counts into somebody else's slot.
 */
#ifndef SMTPFRONT_RUNTIME_H
#define SMTPFRONT_RUNTIME_H

#include <stddef.h>

#include "config/config.h"
#include "core/shm.h"

struct rt_bind {
	int fd;
	const struct cfg_addr *addr;
	bool wildcard;			/* local address must come from getsockname */
	bool inherited;			/* fd taken over from the previous runtime */
};

struct rt_listener {
	const struct cfg_listener *cfg;
	unsigned slot;			/* shm listener slot */
	struct rt_bind *binds;
	size_t nbinds;
};

struct rt_pool {
	const struct cfg_pool *cfg;
	unsigned *server_slot;		/* shm server slot of each server */
};

struct runtime {
	struct config *cfg;		/* owned */
	unsigned generation;
	struct rt_listener *listeners;
	size_t nlisteners;
	struct rt_pool *pools;
	size_t npools;
};

/* Who holds each shm slot (master only). Zero-initialised = all free. */
struct rt_slot_owner {
	char key[224];			/* "" = never used */
	unsigned generation;		/* newest generation that used it */
};
struct rt_slots {
	struct rt_slot_owner servers[SHM_MAX_SERVERS];
	struct rt_slot_owner listeners[SHM_MAX_LISTENERS];
};

/* What changed between two runtimes (for the reload log line). */
struct rt_diff {
	unsigned listeners_kept, listeners_added, listeners_removed;
	unsigned servers_kept, servers_added, servers_removed;
};

/*
 * Build the runtime of `cfg` (taking ownership of it only on success):
 * assign slots, take over the listening socket of every bind address that
 * `prev` already has, bind the others. Slots of generations older than
 * `oldest_live` are free for reuse. On failure nothing changed (sockets this
 * call bound are closed again), the reasons are appended to err as lines,
 * and NULL is returned.
 */
struct runtime *runtime_new(struct config *cfg, unsigned generation,
    const struct runtime *prev, const struct rt_slots *slots,
    unsigned oldest_live, char *err, size_t errcap)
    __attribute__((warn_unused_result));
/*
 * Make `rt` current: record its slots in the table (resetting shm state of
 * a slot that changes hands), and strip from `prev` the sockets rt took
 * over, so that runtime_free(prev) closes only the removed listeners.
 * diff may be NULL.
 */
void runtime_commit(struct runtime *rt, struct runtime *prev,
    struct rt_slots *slots, struct rt_diff *diff);
/* Close the sockets it still holds, free it and its config. NULL is a no-op. */
void runtime_free(struct runtime *rt);

#endif
