/* SPDX-License-Identifier: MIT */
/*
 * shm: the shared memory the master maps before forking. Every region has
 * exactly one writer, so a dying process can never leave a lock held:
 *   - worker slots: each worker writes only its own slot (active sessions
 *     per listener and per server, totals); readers sum the slots; the
 *     master zeroes a slot when it reaps the worker.
 *   - health: written only by the health process, read through a sequence
 *     counter (odd = write in progress).
 *   - admin: written only by the master.
 * Servers and listeners are addressed by slot indexes the master assigns.
 */
#ifndef SMTPFRONT_SHM_H
#define SMTPFRONT_SHM_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SHM_MAX_WORKERS 256
#define SHM_MAX_LISTENERS 64
#define SHM_MAX_SERVERS 512
#define SHM_REASON_MAX 160

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

struct shm_health_snapshot {
	enum shm_health state;
	char reason[SHM_REASON_MAX];
	double check_ms;
	int64_t last_check_us;		/* CLOCK_MONOTONIC, 0 = never */
	uint32_t checks;
};

/* Create the mapping (master, before fork). Aborts on failure. */
void shm_create(void);
/* Zero a worker's slot after the master reaped it (its totals are kept). */
void shm_slot_reset(unsigned slot);
/* Master: a server slot changes hands (reload): health unknown, admin
 * ready, totals zero. No live process may still use it. */
void shm_server_forget(unsigned server);

/* Writer side of a worker slot (the calling worker owns `slot`). */
void shm_worker_attach(unsigned slot);
void shm_listener_add(unsigned listener, int delta);
void shm_server_add(unsigned server, int delta);	/* attempts in flight + sessions */
void shm_server_count_session(unsigned server);	/* total sessions relayed */
void shm_server_failure(unsigned server);

/* Readers: sums across every slot. */
uint32_t shm_listener_active(unsigned listener);
uint32_t shm_server_active(unsigned server);
uint64_t shm_server_total(unsigned server);
uint64_t shm_server_failures(unsigned server);
uint32_t shm_slot_active(unsigned slot);

/* Health: writer is the health process; readers are lock-free. */
void shm_health_publish(unsigned server, const struct shm_health_snapshot *s);
void shm_health_read(unsigned server, struct shm_health_snapshot *out);
/* A new writer repairs a record its predecessor died in the middle of. */
void shm_health_recover(unsigned server);
/* Copy a record to another slot (reload: a server that did not change). */
void shm_health_copy(unsigned to, unsigned from);
enum shm_health shm_health_state(unsigned server);

/* Admin state: written by the master. */
void shm_admin_set(unsigned server, enum shm_admin a);
enum shm_admin shm_admin_get(unsigned server);

#endif
