/* SPDX-License-Identifier: MIT */
/*
 * clients: active sessions per client network, counted across workers for
 * max_connections_per_client (SPEC.md "Over capacity"). Shared memory the
 * master maps before forking: one table per worker slot, written only by
 * that worker (a sequence counter lets readers see it whole), summed by
 * readers. Keys are exact (listener slot, family, network bytes under the
 * pool's source_prefix), so one network never counts against another.
 * A second table per slot counts new connections per network in one-second
 * buckets over the last minute (max_connection_rate_per_client).
 * Each slot also says whether its worker accepts and has room, so a full
 * worker refuses connections itself only when no other one can take them.
 *
 * Limits are exact under simultaneous arrival because a worker reserves
 * before it checks: it adds its own +1 first, then (after a full fence)
 * sums every slot, itself included, and gives the +1 back when the sum is
 * over the limit. Two arrivals on two workers may then both be refused,
 * never both admitted over it. A reader never takes a slot it cannot read
 * whole for 0: it waits for a writer caught mid-update and, when one never
 * finishes (died mid-write, until the master zeroes its slot), says so, so
 * the caller refuses instead of admitting (fail closed).
 */
#ifndef SMTPFRONT_CLIENTS_H
#define SMTPFRONT_CLIENTS_H

#include <stdbool.h>
#include <stdint.h>

struct clients_key {
	uint16_t listener;		/* shm listener slot */
	uint8_t family;			/* AF_INET or AF_INET6 */
	uint8_t net[16];		/* network bytes, host bits zero */
};

/* Bytes of one worker's table able to count `per_slot` distinct networks
 * (a worker's session cap is enough: one session adds at most one). */
size_t clients_table_bytes(unsigned per_slot);
struct config;
/* Master, before shm_create(): register the table's size in every worker
 * slot (one network per session a worker can hold under the descriptor
 * limit the master raised first). */
void clients_shm_register(const struct config *cfg);
/* Worker: the table of the slot it writes (after shm_worker_attach). */
void clients_attach(void);
/* Sessions open for `k`, summed over every worker slot, into *sum; -1
 * when some slot could not be read whole (a writer stuck mid-update). */
int clients_count(const struct clients_key *k, uint32_t *sum)
    __attribute__((warn_unused_result));
/* This worker's count for `k` up or down; -1 when its table is full. */
int clients_add(const struct clients_key *k, int delta)
    __attribute__((warn_unused_result));
/*
 * Reserve one session for `k` and say how many there are now, this one
 * included (*sum): this worker's count goes up first, then every slot is
 * summed. -1 (nothing reserved) when the table is full or a slot cannot
 * be read. The caller gives it back with clients_add(k, -1).
 */
int clients_reserve(const struct clients_key *k, uint32_t *sum)
    __attribute__((warn_unused_result));

/* Seconds of the rate window (Postfix's anvil_rate_time_unit). */
#define CLIENTS_RATE_WINDOW_S	60
/* Networks one worker's rate table remembers at once. */
#define CLIENTS_RATE_NETWORKS	8192
/* The clock of the rate buckets (CLOCK_MONOTONIC seconds); tests replace
 * it to cross a minute without waiting for one. */
extern uint32_t (*clients_rate_clock)(void);
/*
 * Count one new connection of `k` in this second and say how many there
 * were in the last CLIENTS_RATE_WINDOW_S seconds over every slot, this
 * one included (*sum). *sec gets the second it was counted in, for
 * clients_rate_undo(). -1 (nothing counted) when a slot cannot be read.
 * A full table forgets the network that connected least recently (and
 * counts that in clients_rate_evictions()).
 */
int clients_rate_reserve(const struct clients_key *k, uint32_t *sum,
    uint32_t *sec) __attribute__((warn_unused_result));
/* Take back what clients_rate_reserve() counted in second `sec`. */
void clients_rate_undo(const struct clients_key *k, uint32_t sec);
/* Connections of `k` in the last minute over every slot; -1 unreadable. */
int clients_rate_count(const struct clients_key *k, uint32_t *sum)
    __attribute__((warn_unused_result));
/* Networks this worker's rate table forgot while still in their window. */
uint64_t clients_rate_evictions(void);
/*
 * Master: the rate table of exited workers (one more table, written only
 * by the master, summed by every reader), created before forking, so a
 * reload or a worker's death does not give its networks a fresh minute.
 */
void clients_rate_retired_create(void);
/* Master, when it reaps the worker of `slot` and before it zeroes the
 * slot: its rate counts move to the retired table. */
void clients_rate_retire(unsigned slot);
enum clients_room {
	CLIENTS_ROOM_NONE,		/* not accepting (gone, or draining) */
	CLIENTS_ROOM_YES,		/* accepting, below its session cap */
	CLIENTS_ROOM_FULL,		/* accepting, at its session cap */
};
/* Worker: publish its own state. */
void clients_set_room(enum clients_room r);
/* Does some accepting worker have room for a session? */
bool clients_any_room(void);

#endif
