/* SPDX-License-Identifier: MIT */
/*
 * shm: one anonymous shared mapping created by the master before any fork,
 * inherited by every child. Counters are plain 32/64-bit words updated with
 * relaxed atomics by their only writer; readers tolerate a value that is a
 * moment old.
 */
#include <sys/mman.h>

#include <stddef.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/shm.h"

const char *const shm_health_names[] = { "unknown", "up", "down" };
const char *const shm_admin_names[] = { "ready", "drain", "maint" };

struct shm_slot {
	uint32_t active;
	uint32_t listener_active[SHM_MAX_LISTENERS];
	uint32_t server_active[SHM_MAX_SERVERS];
	uint64_t server_total[SHM_MAX_SERVERS];
	uint64_t server_failures[SHM_MAX_SERVERS];
};

struct shm_health_rec {
	uint32_t seq;
	uint32_t state;
	uint32_t checks;
	double check_ms;
	int64_t last_check_us;
	char reason[SHM_REASON_MAX];
};

struct shm_region {
	uint32_t slots_used;		/* highest slot index + 1 ever attached */
	uint8_t admin[SHM_MAX_SERVERS];
	struct shm_health_rec health[SHM_MAX_SERVERS];
	struct shm_slot slots[SHM_MAX_WORKERS];
};

static struct shm_region *shm;
static struct shm_slot *shm_mine;
/* Master only: what workers that exited had counted, so totals survive
 * respawns and reloads. Private memory: only the master reads totals. */
static uint64_t retired_total[SHM_MAX_SERVERS];
static uint64_t retired_failures[SHM_MAX_SERVERS];

void
shm_create(void)
{
	void *p;

	p = mmap(NULL, sizeof(*shm), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		fatal("mmap shared memory (%zu bytes)", sizeof(*shm));
	shm = p;
}

void
shm_slot_reset(unsigned slot)
{
	for (unsigned i = 0; i < SHM_MAX_SERVERS; i++) {
		retired_total[i] += shm->slots[slot].server_total[i];
		retired_failures[i] += shm->slots[slot].server_failures[i];
	}
	memset(&shm->slots[slot], 0, sizeof(shm->slots[slot]));
}

void
shm_worker_attach(unsigned slot)
{
	uint32_t used;

	shm_mine = &shm->slots[slot];
	used = __atomic_load_n(&shm->slots_used, __ATOMIC_RELAXED);
	while (used < slot + 1 && !__atomic_compare_exchange_n(&shm->slots_used,
	    &used, slot + 1, false, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
}

static void
shm_add32(uint32_t *p, int delta)
{
	__atomic_store_n(p, *p + (uint32_t)delta, __ATOMIC_RELAXED);
}

void
shm_listener_add(unsigned listener, int delta)
{
	shm_add32(&shm_mine->listener_active[listener], delta);
	shm_add32(&shm_mine->active, delta);
}

void
shm_server_add(unsigned server, int delta)
{
	shm_add32(&shm_mine->server_active[server], delta);
}

void
shm_server_count_session(unsigned server)
{
	__atomic_store_n(&shm_mine->server_total[server],
	    shm_mine->server_total[server] + 1, __ATOMIC_RELAXED);
}

void
shm_server_failure(unsigned server)
{
	__atomic_store_n(&shm_mine->server_failures[server],
	    shm_mine->server_failures[server] + 1, __ATOMIC_RELAXED);
}

#define SHM_SUM(type, field)						\
	unsigned n = __atomic_load_n(&shm->slots_used, __ATOMIC_RELAXED);\
	type sum = 0;							\
	for (unsigned i = 0; i < n; i++)				\
		sum += __atomic_load_n(&shm->slots[i].field,		\
		    __ATOMIC_RELAXED);					\
	return sum

uint32_t
shm_listener_active(unsigned listener)
{
	SHM_SUM(uint32_t, listener_active[listener]);
}

uint32_t
shm_server_active(unsigned server)
{
	SHM_SUM(uint32_t, server_active[server]);
}

static uint64_t
shm_server_total_live(unsigned server)
{
	SHM_SUM(uint64_t, server_total[server]);
}

static uint64_t
shm_server_failures_live(unsigned server)
{
	SHM_SUM(uint64_t, server_failures[server]);
}

uint64_t
shm_server_total(unsigned server)
{
	return retired_total[server] + shm_server_total_live(server);
}

uint64_t
shm_server_failures(unsigned server)
{
	return retired_failures[server] + shm_server_failures_live(server);
}

void
shm_server_forget(unsigned server)
{
	struct shm_health_snapshot none;

	memset(&none, 0, sizeof(none));
	none.state = SHM_HEALTH_UNKNOWN;
	shm_health_publish(server, &none);
	shm_admin_set(server, SHM_ADMIN_READY);
	retired_total[server] = 0;
	retired_failures[server] = 0;
}

uint32_t
shm_slot_active(unsigned slot)
{
	return __atomic_load_n(&shm->slots[slot].active, __ATOMIC_RELAXED);
}

void
shm_health_publish(unsigned server, const struct shm_health_snapshot *s)
{
	struct shm_health_rec *r = &shm->health[server];

	__atomic_store_n(&r->seq, r->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	r->state = s->state;
	r->checks = s->checks;
	r->check_ms = s->check_ms;
	r->last_check_us = s->last_check_us;
	memcpy(r->reason, s->reason, sizeof(r->reason));
	r->reason[sizeof(r->reason) - 1] = '\0';
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&r->seq, r->seq + 1, __ATOMIC_RELAXED);
}

void
shm_health_read(unsigned server, struct shm_health_snapshot *out)
{
	const struct shm_health_rec *r = &shm->health[server];
	uint32_t s1, s2;

	/* A writer that died mid-update leaves seq odd; give up after a while
	 * and take what is there rather than spin forever. */
	for (int tries = 0; tries < 1000; tries++) {
		s1 = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue;
		out->state = (enum shm_health)r->state;
		out->checks = r->checks;
		out->check_ms = r->check_ms;
		out->last_check_us = r->last_check_us;
		memcpy(out->reason, r->reason, sizeof(out->reason));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&r->seq, __ATOMIC_RELAXED);
		if (s1 == s2)
			break;
	}
	out->reason[sizeof(out->reason) - 1] = '\0';
}

void
shm_health_recover(unsigned server)
{
	struct shm_health_rec *r = &shm->health[server];

	if (__atomic_load_n(&r->seq, __ATOMIC_RELAXED) & 1)
		__atomic_store_n(&r->seq, r->seq + 1, __ATOMIC_RELEASE);
}

void
shm_health_copy(unsigned to, unsigned from)
{
	struct shm_health_snapshot snap;

	shm_health_read(from, &snap);
	shm_health_publish(to, &snap);
}

enum shm_health
shm_health_state(unsigned server)
{
	return (enum shm_health)__atomic_load_n(&shm->health[server].state,
	    __ATOMIC_RELAXED);
}

void
shm_admin_set(unsigned server, enum shm_admin a)
{
	__atomic_store_n(&shm->admin[server], (uint8_t)a, __ATOMIC_RELAXED);
}

enum shm_admin
shm_admin_get(unsigned server)
{
	return (enum shm_admin)__atomic_load_n(&shm->admin[server],
	    __ATOMIC_RELAXED);
}
