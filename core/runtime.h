/* SPDX-License-Identifier: MIT */
/*
 * runtime: what one generation of workers is started with: the config, the
 * bound listening sockets and the shared-memory slot of every listener and
 * server. Built and owned by the master; a forked worker reads its copy.
 *
 * Across reloads the master keeps a slot table: a server keeps its shm slot
 * (so its health, admin state and counters) while its pool, name and
 * address stay the same, and a listener keeps its slot while its name
 * stays. Each slot counts the runtimes that hold it (the current one, and
 * any whose children still run: a draining generation, or the workers of
 * a reload that failed and are finishing their sessions); a slot is given
 * to another server or listener only when nothing holds it, so a draining
 * worker never counts into somebody else's slot.
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
	unsigned nchildren;		/* master: live children started with it */
	bool held;			/* master: runtime_hold() done */
	char *source;			/* the config's text (owned; may be NULL),
					 * handed over at an upgrade */
	size_t source_len;
	/* A holder (runtime_new_holder): no config, only the slots that the
	 * workers of an older generation, adopted at an upgrade, use. */
	unsigned *hold_servers, *hold_listeners;
	size_t nhold_servers, nhold_listeners;
};

/* Who holds each shm slot (master only). Zero-initialised = empty. */
struct rt_slot_owner {
	char key[224];			/* "" = never used */
	unsigned generation;		/* newest committed generation that used it */
	unsigned users;			/* runtimes holding it */
};
struct rt_slots {
	struct rt_slot_owner *servers;
	size_t nservers;
	struct rt_slot_owner *listeners;
	size_t nlisteners;
};

/* What changed between two runtimes (for the reload log line). */
struct rt_diff {
	unsigned listeners_kept, listeners_added, listeners_removed;
	unsigned servers_kept, servers_added, servers_removed;
};

/*
 * Build the runtime of `cfg` (taking ownership of it only on success):
 * assign slots (growing the table and shared memory as needed), take over
 * the listening socket of every bind address that `prev` already has, bind
 * the others. On failure nothing that matters changed (sockets this call
 * bound are closed again), the reasons are appended to err as lines, and
 * NULL is returned.
 */
struct runtime *runtime_new(struct config *cfg, unsigned generation,
    const struct runtime *prev, struct rt_slots *slots, char *err,
    size_t errcap) __attribute__((warn_unused_result));
/*
 * Before the first child of rt is forked: count rt as a holder of its
 * slots; a slot nobody held is reset in shared memory (a server's health
 * unknown, admin ready, totals and counters zero; a listener's counters
 * zero) and recorded as this server's or listener's.
 */
void runtime_hold(struct runtime *rt, struct rt_slots *slots);
/* The same for a runtime adopted at an upgrade: its slots are counted as
 * held, nothing in shared memory is reset (the previous image's state). */
void runtime_hold_adopted(struct runtime *rt, struct rt_slots *slots);
/* A runtime with no config that holds the given slots (an older
 * generation's, adopted at an upgrade); NULL when out of memory. */
struct runtime *runtime_new_holder(unsigned generation,
    const unsigned *servers, size_t nservers, const unsigned *listeners,
    size_t nlisteners) __attribute__((warn_unused_result));
/* Record the slot table entry `i` of the previous image (upgrade). -1 when
 * out of memory. */
int runtime_slot_restore(struct rt_slots *slots, bool server, size_t i,
    const char *key, unsigned generation) __attribute__((warn_unused_result));
/* rt's children are all gone and it is not current: its slots may go. */
void runtime_release(struct runtime *rt, struct rt_slots *slots);
/*
 * Make `rt` current: record its generation in the slots it holds, and strip
 * from `prev` the sockets rt took over, so that runtime_close(prev) closes
 * only the removed listeners. diff may be NULL.
 */
void runtime_commit(struct runtime *rt, struct runtime *prev,
    struct rt_slots *slots, struct rt_diff *diff);
/* Close the listening sockets it still holds (it stays for its slots). */
void runtime_close(struct runtime *rt);
/* A runtime that never became current: close the sockets it bound itself
 * and forget those it took over from its predecessor (still in use). */
void runtime_abandon(struct runtime *rt);
/* Server and listener slots [0, n) a worker of rt may count into. */
void runtime_slot_caps(const struct rt_slots *slots, size_t *servers,
    size_t *listeners);
/* Close the sockets it still holds, free it and its config. NULL is a no-op. */
void runtime_free(struct runtime *rt);
/* The slot table's memory (master exit). */
void runtime_slots_free(struct rt_slots *slots);

/*
 * Listening sockets this process was handed (systemd's LISTEN_FDS, or the
 * previous image at an upgrade). runtime_new() takes the one whose local
 * address is a bind's instead of binding it; runtime_inherit_done() closes
 * those nothing took. name is for the log. -1 (fd closed, logged) when fd
 * is not a listening TCP socket.
 */
int runtime_inherit(int fd, const char *name);
/* closed (may be NULL) is told the name of each socket closed. */
void runtime_inherit_done(void (*closed)(const char *name));
/* The name a bind's socket has in systemd's descriptor store and at an
 * upgrade: its address text with ':' (not allowed there) as '_'. */
void runtime_bind_name(const struct cfg_addr *a, char *buf, size_t cap);

#endif
