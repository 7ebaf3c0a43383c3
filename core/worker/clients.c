/* SPDX-License-Identifier: MIT */
/*
 * clients: per-worker open-addressing tables (linear probing, deletion by
 * backward shift, at most half full) in the worker slots of the shared
 * memory. A worker's writes are bracketed by its table's sequence counter;
 * a reader retries while the counter is odd or moved, and gives a slot up
 * (counts it as 0) only when its writer died mid-write, which the master
 * repairs when it reaps that worker (shm_slot_reset zeroes the table).
 */
#include <stddef.h>
#include <string.h>

#include "core/shm.h"
#include "core/worker/clients.h"
#include "core/worker/fdplan.h"

/* Reads of one table before a reader gives up on a dead writer. */
#define CLIENTS_READ_TRIES	10000

struct clients_entry {
	struct clients_key key;
	uint32_t count;			/* 0 = empty */
};

struct clients_table {
	uint32_t seq;			/* odd while its worker writes */
	uint32_t used;			/* entries with count > 0 */
	uint32_t room;			/* enum clients_room */
	uint32_t pad;
	struct clients_entry e[];
};

static struct clients_table *mine;
static uint32_t mine_mask;

/* Entries of a table of `len` bytes: the largest power of two that fits. */
static uint32_t
clients_mask(size_t len)
{
	size_t entries = 1;

	if (len < sizeof(struct clients_table) + sizeof(struct clients_entry))
		return 0;
	len -= sizeof(struct clients_table);
	while (entries * 2 * sizeof(struct clients_entry) <= len)
		entries *= 2;
	return (uint32_t)(entries - 1);
}

size_t
clients_table_bytes(unsigned per_slot)
{
	size_t entries = 16;

	while (entries < 2 * (size_t)per_slot)
		entries *= 2;
	return sizeof(struct clients_table) +
	    entries * sizeof(struct clients_entry);
}

void
clients_shm_register(const struct config *cfg)
{
	shm_slot_register_fixed(SHM_SLOT_CLIENTS, clients_table_bytes(
	    fdplan_worker_sessions(fdplan_limit(false), fdplan_binds(cfg))));
}

void
clients_attach(void)
{
	size_t len = 0;

	mine = shm_slot_mine(SHM_SLOT_CLIENTS, &len);
	mine_mask = clients_mask(len);
	if (mine_mask == 0)
		mine = NULL;
}

static uint32_t
clients_hash(const struct clients_key *k)
{
	const unsigned char *p = (const unsigned char *)k;
	uint32_t h = 2166136261u;

	for (size_t i = 0; i < sizeof(*k); i++)
		h = (h ^ p[i]) * 16777619u;
	return h;
}

static bool
clients_key_eq(const struct clients_key *a, const struct clients_key *b)
{
	return memcmp(a, b, sizeof(*a)) == 0;
}

/* Where `k` is in `t`, or the empty entry that ends its probe chain. */
static uint32_t
clients_find(const struct clients_table *t, uint32_t mask,
    const struct clients_key *k)
{
	uint32_t i = clients_hash(k) & mask;

	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
		if (t->e[i].count == 0 || clients_key_eq(&t->e[i].key, k))
			return i;
	}
	return UINT32_MAX;	/* full and absent: cannot happen at half */
}

uint32_t
clients_count(const struct clients_key *k)
{
	unsigned n = shm_slots_used();
	uint32_t sum = 0;

	for (unsigned s = 0; s < n; s++) {
		size_t len = 0;
		const struct clients_table *t = shm_slot_region(s,
		    SHM_SLOT_CLIENTS, &len);
		uint32_t mask = t != NULL ? clients_mask(len) : 0;

		for (int tries = 0; mask != 0 && tries < CLIENTS_READ_TRIES;
		    tries++) {
			uint32_t s1, s2, i, c = 0;

			s1 = __atomic_load_n(&t->seq, __ATOMIC_ACQUIRE);
			if (s1 & 1)
				continue;
			if (__atomic_load_n(&t->used, __ATOMIC_RELAXED) == 0)
				c = 0;
			else if ((i = clients_find(t, mask, k)) != UINT32_MAX)
				c = __atomic_load_n(&t->e[i].count,
				    __ATOMIC_RELAXED);
			__atomic_thread_fence(__ATOMIC_ACQUIRE);
			s2 = __atomic_load_n(&t->seq, __ATOMIC_RELAXED);
			if (s1 == s2) {
				sum += c;
				break;
			}
		}
	}
	return sum;
}

static void
clients_write_begin(struct clients_table *t)
{
	__atomic_store_n(&t->seq, t->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
clients_write_end(struct clients_table *t)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&t->seq, t->seq + 1, __ATOMIC_RELAXED);
}

/* Empty entry i and pull later members of its chain back (no tombstones,
 * so a lookup's probe never grows with churn). */
static void
clients_remove_at(struct clients_table *t, uint32_t mask, uint32_t i)
{
	uint32_t j = i, home;

	for (;;) {
		j = (j + 1) & mask;
		if (t->e[j].count == 0)
			break;
		home = clients_hash(&t->e[j].key) & mask;
		/* Entry j may move to the hole at i only when its home is not
		 * cyclically within (i, j]. */
		if (i <= j ? (home > i && home <= j) :
		    (home > i || home <= j))
			continue;
		t->e[i] = t->e[j];
		i = j;
	}
	memset(&t->e[i], 0, sizeof(t->e[i]));
}

int
clients_add(const struct clients_key *k, int delta)
{
	struct clients_table *t = mine;
	uint32_t mask = mine_mask, i;

	if (t == NULL)
		return -1;
	if ((i = clients_find(t, mask, k)) == UINT32_MAX)
		return -1;
	if (t->e[i].count == 0) {
		if (delta <= 0)
			return 0;
		if (t->used + 1 > (mask + 1) / 2)
			return -1;
		clients_write_begin(t);
		t->e[i].key = *k;
		t->e[i].count = (uint32_t)delta;
		t->used++;
		clients_write_end(t);
		return 0;
	}
	clients_write_begin(t);
	if (delta < 0 && t->e[i].count <= (uint32_t)-delta) {
		clients_remove_at(t, mask, i);
		t->used--;
	} else {
		t->e[i].count += (uint32_t)delta;
	}
	clients_write_end(t);
	return 0;
}

void
clients_set_room(enum clients_room r)
{
	if (mine != NULL)
		__atomic_store_n(&mine->room, (uint32_t)r, __ATOMIC_RELAXED);
}

bool
clients_any_room(void)
{
	unsigned n = shm_slots_used();

	for (unsigned s = 0; s < n; s++) {
		const struct clients_table *t = shm_slot_region(s,
		    SHM_SLOT_CLIENTS, NULL);

		if (t != NULL && __atomic_load_n(&t->room, __ATOMIC_RELAXED) ==
		    CLIENTS_ROOM_YES)
			return true;
	}
	return false;
}
