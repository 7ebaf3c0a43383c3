/* SPDX-License-Identifier: MIT */
/*
 * clients: active sessions per client network, counted across workers for
 * max_connections_per_client (SPEC.md "Over capacity"). Shared memory the
 * master maps before forking: one table per worker slot, written only by
 * that worker (a sequence counter lets readers see it whole), summed by
 * readers. Keys are exact (listener slot, family, network bytes under the
 * pool's source_prefix), so one network never counts against another.
 * Each slot also says whether its worker accepts and has room, so a full
 * worker refuses connections itself only when no other one can take them.
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
/* Sessions open for `k`, summed over every worker slot. */
uint32_t clients_count(const struct clients_key *k);
/* This worker's count for `k` up or down; -1 when its table is full. */
int clients_add(const struct clients_key *k, int delta)
    __attribute__((warn_unused_result));
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
