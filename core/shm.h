/* SPDX-License-Identifier: MIT */
/*
 * shm: the shared memory the master creates before forking. Every region has
 * exactly one writer, so a dying process can never leave a lock held:
 *   - worker slots: each worker writes only its own slot (active sessions
 *     per listener and per server, totals, the counters of core/metrics.h);
 *     readers sum the slots; the master zeroes a slot when it reaps the
 *     worker, keeping what its counters counted (so they never go back).
 *   - health: written only by the health process, read through a sequence
 *     counter (odd = write in progress); its check counters sit next to
 *     it, written by the same process.
 *   - admin: written only by the master.
 *   - process counters of the master and of the health process (the
 *     counters of core/metrics.h a process keeps about itself, such as
 *     its dropped log lines; a worker has them in its slot): each row
 *     written only by that process, monotonic, never reset (a respawned
 *     health process goes on counting where its predecessor stopped).
 * Servers and listeners are addressed by slot indexes the master assigns.
 *
 * Sized from the configuration, and it grows: the master extends the
 * memory file at a reload that needs more server slots or worker slots.
 * Every process maps the same address range, reserved once (up to
 * SHM_RESERVE_MAX of address space, no memory), so the new part is there
 * for all of them at once and a pointer into it stays valid. Pages take
 * memory only when touched.
 *
 * Adding a region to every worker slot (a table per worker, counters):
 *   1. add SHM_SLOT_<NAME> to enum shm_slot_region, before SHM_SLOT_NREGIONS;
 *   2. give its size in shm_slot_shape[] in shm.c: bytes per server slot,
 *      bytes per listener slot, a constant part (SHM_SLOT_PROCESS_METRICS
 *      has only that), and a fixed part; a fixed part computed
 *      from the configuration at start is registered by the region's user
 *      with shm_slot_register_fixed() before shm_create() (the size then
 *      holds for the master's life), so shm knows no region's contents;
 *      mark it `counters` when it holds only 64-bit monotonic counters:
 *      the master then keeps what a reaped worker counted, and readers
 *      get the whole with shm_counters_sum();
 *   3. a worker writes its own copy through shm_slot_mine() (the pointer
 *      stays valid for the worker's life), readers read any slot's copy
 *      through shm_slot_region() (NULL: that slot has no block yet).
 *      Blocks start zeroed and are zeroed again when the master reaps
 *      their worker.
 */
#ifndef SMTPFRONT_SHM_H
#define SMTPFRONT_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "config/config.h"

#define SHM_REASON_MAX 160
/* Far beyond what a configuration can ask for (1024 workers, a 16 MiB
 * file); reaching them fails the reload with a clear error. */
#define SHM_MAX_SERVER_SLOTS	(1u << 22)
#define SHM_MAX_WORKER_SLOTS	(1u << 16)
/* Address space reserved for the memory file (not memory). */
#if SIZE_MAX > 0xffffffffu
#define SHM_RESERVE_MAX		((size_t)64 << 30)
#else
#define SHM_RESERVE_MAX		((size_t)1 << 30)
#endif

enum shm_health {
	SHM_HEALTH_UNKNOWN,
	SHM_HEALTH_UP,
	SHM_HEALTH_DOWN,
};
extern const char *const shm_health_names[];

enum shm_admin {
	SHM_ADMIN_READY,
	SHM_ADMIN_DRAIN,
	SHM_ADMIN_MAINT,
};
extern const char *const shm_admin_names[];

/* The regions of a worker slot. */
enum shm_slot_region {
	SHM_SLOT_LISTENER_ACTIVE,	/* uint32_t per listener slot */
	SHM_SLOT_SERVER_ACTIVE,		/* uint32_t per server slot */
	SHM_SLOT_SERVER_TOTAL,		/* uint64_t per server slot */
	SHM_SLOT_SERVER_FAILURES,	/* uint64_t per server slot */
	SHM_SLOT_CLIENTS,		/* core/worker/clients.c: a table sized at start */
	SHM_SLOT_RATE,			/* core/worker/clients.c: connection rates */
	SHM_SLOT_LISTENER_METRICS,	/* core/metrics.h: counters per listener slot */
	SHM_SLOT_SERVER_METRICS,	/* core/metrics.h: counters per server slot */
	SHM_SLOT_PROCESS_METRICS,	/* core/metrics.h: the worker's own counters */
	SHM_SLOT_NREGIONS
};

struct shm_health_snapshot {
	enum shm_health state;
	char reason[SHM_REASON_MAX];
	double check_ms;
	int64_t last_check_us;		/* CLOCK_MONOTONIC, 0 = never */
	uint32_t checks;
	/* Issue 20, for status: when the health state last changed
	 * (CLOCK_MONOTONIC, 0 = not since the server was added), and the
	 * time it spent down in all, up to its last check. */
	int64_t changed_us;
	int64_t down_us;
};

/* Master, before shm_create(): the fixed part of region `r` in every
 * worker slot, in bytes (computed by the region's user from the start
 * config). */
void shm_slot_register_fixed(enum shm_slot_region r, size_t bytes);
/* Create the memory (master, before fork), sized for `cfg` (the start
 * config: fixed region sizes come from it). Aborts on failure. */
void shm_create(const struct config *cfg);
/*
 * Master: make room for server slots [0, n) (health and admin records).
 * -1 with errno when the memory cannot grow (or n is over the maximum:
 * E2BIG).
 */
int shm_servers_reserve(size_t n) __attribute__((warn_unused_result));
/*
 * Master, before forking a worker into `slot`: give the slot room for
 * server slots [0, servers) and listener slots [0, listeners), zeroed.
 * -1 with errno when the memory cannot grow.
 */
int shm_slot_prepare(unsigned slot, size_t servers, size_t listeners)
    __attribute__((warn_unused_result));
/* Zero a worker's slot after the master reaped it (its totals are kept). */
void shm_slot_reset(unsigned slot);
/* Master: a server slot changes hands (reload): health unknown, admin
 * ready, totals and counters zero. No live process may still use it. */
void shm_server_forget(unsigned server);
/* Master: the same for a listener slot: its counters start from zero. */
void shm_listener_forget(unsigned listener);

/* Writer side of a worker slot (the calling worker owns `slot`). */
void shm_worker_attach(unsigned slot);
void shm_listener_add(unsigned listener, int delta);
void shm_server_add(unsigned server, int delta);	/* attempts in flight + sessions */
void shm_server_count_session(unsigned server);	/* total sessions relayed */
void shm_server_failure(unsigned server);
/* The calling worker's own copy of a region (len: its size in bytes). */
void *shm_slot_mine(enum shm_slot_region r, size_t *len);
/* A slot's copy of a region, or NULL (see above). */
const void *shm_slot_region(unsigned slot, enum shm_slot_region r,
    size_t *len);

/* Worker slots that may be in use: [0, shm_slots_used()). */
unsigned shm_slots_used(void);

/* Readers: sums across every slot. */
uint32_t shm_listener_active(unsigned listener);
uint32_t shm_server_active(unsigned server);
uint64_t shm_server_total(unsigned server);
uint64_t shm_server_failures(unsigned server);
uint32_t shm_slot_active(unsigned slot);
/*
 * Counter regions (SHM_SLOT_*_METRICS: 64-bit words, monotonic): out[i] =
 * word first + i summed over every slot, plus what the workers that
 * exited had counted there (the master keeps that when it resets a slot).
 */
void shm_counters_sum(enum shm_slot_region r, size_t first, size_t n,
    uint64_t *out);
/*
 * A server's check counters: METRICS_CHECK_WORDS words kept with its
 * health record, written only by the health process (relaxed atomics),
 * zeroed when the slot changes hands. NULL when the slot has no record.
 */
uint64_t *shm_server_checks(unsigned server);

/* Health: writer is the health process; readers are lock-free. */
void shm_health_publish(unsigned server, const struct shm_health_snapshot *s);
/*
 * A consistent copy of the record. When none can be had (the writer died
 * in the middle of a write and no new one repaired it yet), false and a
 * defined fallback: state unknown, a reason saying so, never a torn record.
 */
bool shm_health_read(unsigned server, struct shm_health_snapshot *out);
/* A new writer repairs a record its predecessor died in the middle of:
 * state unknown until its next check. */
void shm_health_recover(unsigned server);
/* Copy a record to another slot (reload: a server that did not change). */
void shm_health_copy(unsigned to, unsigned from);
enum shm_health shm_health_state(unsigned server);
/* The two halves of shm_health_publish(), for a test that plays a writer
 * dying between them: begin (sequence goes odd) and the fields; the end is
 * the sequence going even again, which only publish does. */
void shm_health_write_begin(unsigned server);
void shm_health_write_fields(unsigned server,
    const struct shm_health_snapshot *s);
/* Tests only (NULL otherwise): called by shm_health_read() in the middle
 * of its copy of a record, for a test that plays a writer starting then. */
extern void (*shm_health_read_hook)(unsigned server);

/* The process counters of the master or of the health process
 * (METRICS_PROCESS_WORDS words), or NULL before shm_create(). */
enum shm_process {
	SHM_PROCESS_MASTER,
	SHM_PROCESS_HEALTH,
	SHM_NPROCESSES
};
uint64_t *shm_process_counters(enum shm_process p);

/* Admin state: written by the master. */
void shm_admin_set(unsigned server, enum shm_admin a);
enum shm_admin shm_admin_get(unsigned server);

/* Bytes of the memory file so far. */
size_t shm_file_bytes(void);

/*
 * Binary upgrade (master only). What the next image needs to go on with
 * the same memory: the file's descriptor, the fixed part of each region,
 * and what reaped workers counted (private memory, so handed over).
 * shm_adopt() maps an existing file instead of shm_create(); -1 with a
 * reason in err when it is not one.
 */
int shm_handover_fd(void);
size_t shm_fixed_bytes(enum shm_slot_region r);
size_t shm_retired(enum shm_slot_region r, const uint64_t **words);
int shm_adopt(int fd, const size_t fixed[SHM_SLOT_NREGIONS], char *err,
    size_t cap) __attribute__((warn_unused_result));
/* Whether fd holds memory in this binary's layout (its magic), without
 * mapping it: 0, or -1 with the reason in err (an upgrade refuses such
 * memory while it can still hand it back). */
int shm_check_layout(int fd, char *err, size_t cap)
    __attribute__((warn_unused_result));
int shm_retired_restore(enum shm_slot_region r, const uint64_t *words,
    size_t n) __attribute__((warn_unused_result));
/* Bytes of memory file `cfg` needs, a reload included (for -t: more than
 * SHM_RESERVE_MAX cannot run). */
size_t shm_config_bytes(const struct config *cfg);

#endif
