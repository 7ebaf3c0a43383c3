/* SPDX-License-Identifier: MIT */
/*
 * shm: one memory file (memfd) the master maps before any fork and extends
 * when a reload needs more room. The mapping is made once, as large as the
 * address space allows (up to SHM_RESERVE_MAX), over a file that starts
 * small: every child inherits it at the same address, and when the master
 * extends the file, the new part is there for every process at once, so
 * nothing is ever remapped and a pointer into it stays valid. Only the
 * file's pages that are touched take memory. The reservation is mapped
 * without access; each process opens its own view up to the file's length,
 * which the master publishes in the header after extending the file (the
 * master at once, the others when they first reach past what they opened).
 * So nothing can touch the mapping past the end of the file, not even a
 * tool that scans every readable mapping, as valgrind's leak check does.
 *
 * Layout, all offsets from the start:
 *
 *   header      directories, written only by the master:
 *                 server_chunk[i]: offset of the chunk holding the admin
 *                   byte and health record of server slots [256 i, 256 i+256)
 *                 slot_block[w]: offset of worker slot w's block
 *   chunks      appended as server slots are needed; never move
 *   blocks      a worker slot's block: a header with its capacities and
 *               region offsets, then the regions; a slot that needs more
 *               room than its block has gets a new block (the old one is
 *               left unused)
 *
 * Nothing ever moves or shrinks, so a child's mapping (the prefix that
 * existed when it was forked) stays valid; an offset beyond it is skipped.
 * Counters are plain words updated with relaxed atomics by their only
 * writer; readers tolerate a value that is a moment old.
 */
#include <sys/mman.h>
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/shm.h"

const char *const shm_health_names[] = { "unknown", "up", "down" };
const char *const shm_admin_names[] = { "ready", "drain", "maint" };

/* Changes with the layout: an upgrade to a binary with another layout
 * is refused (the new image cannot open the memory; the previous one
 * takes its state back). "SFS2": the health record's changed/down. */
#define SHM_MAGIC		0x53465332u	/* "SFS2" */
#define SHM_CHUNK		256u		/* server slots per chunk */
#define SHM_NCHUNKS		(SHM_MAX_SERVER_SLOTS / SHM_CHUNK)
#define SHM_ALIGN		64u
/* A reader that finds a write in progress this many times in a row gives
 * up: a live writer needs well under a microsecond per record. */
#define SHM_READ_TRIES		10000

struct shm_health_rec {
	uint32_t seq;
	uint32_t state;
	uint32_t checks;
	uint32_t pad;
	double check_ms;
	int64_t last_check_us;
	int64_t changed_us;
	int64_t down_us;
	char reason[SHM_REASON_MAX];
};

struct shm_server_chunk {
	uint8_t admin[SHM_CHUNK];
	struct shm_health_rec health[SHM_CHUNK];
	/* Check counters, written by the health process like health[]. */
	uint64_t checks[SHM_CHUNK][METRICS_CHECK_WORDS];
};

struct shm_header {
	uint32_t magic;
	uint32_t slots_used;		/* highest slot index + 1 ever prepared */
	uint64_t file_len;		/* bytes that may be touched */
	uint64_t server_chunk[SHM_NCHUNKS];
	uint64_t slot_block[SHM_MAX_WORKER_SLOTS];
	/* Not the master's: each row is written by its process alone. */
	uint64_t process[SHM_NPROCESSES][METRICS_PROCESS_WORDS];
};

struct shm_block {
	uint64_t bytes;			/* the whole block */
	uint32_t server_cap;
	uint32_t listener_cap;
	uint32_t active;		/* sessions open in this worker */
	uint32_t pad;
	uint64_t off[SHM_SLOT_NREGIONS];	/* from the block's start */
	uint64_t len[SHM_SLOT_NREGIONS];
};

/*
 * The shape of each region: bytes per server slot, per listener slot, a
 * constant part, and a fixed part that the region's user registers before
 * shm_create() (shm_slot_register_fixed()). A counter region is 64-bit
 * monotonic words: what a worker counted there is kept by the master when
 * it resets the slot (see shm_counters_sum()).
 */
static const struct {
	size_t per_server;
	size_t per_listener;
	size_t constant;
	bool counters;
} shm_slot_shape[SHM_SLOT_NREGIONS] = {
	[SHM_SLOT_LISTENER_ACTIVE] = { 0, sizeof(uint32_t), 0, false },
	[SHM_SLOT_SERVER_ACTIVE] = { sizeof(uint32_t), 0, 0, false },
	[SHM_SLOT_SERVER_TOTAL] = { sizeof(uint64_t), 0, 0, true },
	[SHM_SLOT_SERVER_FAILURES] = { sizeof(uint64_t), 0, 0, true },
	[SHM_SLOT_CLIENTS] = { 0, 0, 0, false },
	[SHM_SLOT_RATE] = { 0, 0, 0, false },
	[SHM_SLOT_LISTENER_METRICS] = { 0,
	    METRICS_LISTENER_WORDS * sizeof(uint64_t), 0, true },
	[SHM_SLOT_SERVER_METRICS] = {
	    METRICS_SERVER_WORDS * sizeof(uint64_t), 0, 0, true },
	[SHM_SLOT_PROCESS_METRICS] = { 0, 0,
	    METRICS_PROCESS_WORDS * sizeof(uint64_t), true },
};

/* The mapping: the same in every process. */
static char *shm_base;
static size_t shm_reserved;
static size_t shm_open_len;		/* this process may touch [0, this) */
/* Master only. */
static int shm_fd = -1;
static size_t shm_file_len;
static size_t shm_fixed[SHM_SLOT_NREGIONS];
/* What workers that exited had counted, per counter region in words, so
 * totals survive respawns and reloads. Private memory: only the master
 * reads totals. */
static uint64_t *retired_words[SHM_SLOT_NREGIONS];
static size_t retired_nwords[SHM_SLOT_NREGIONS];
/* Worker side. */
static struct shm_block *shm_mine;
static uint32_t *mine_listener_active, *mine_server_active;
static uint64_t *mine_server_total, *mine_server_failures;

static struct shm_header *
shm_hdr(void)
{
	return (struct shm_header *)shm_base;
}

static size_t
shm_round(size_t n, size_t to)
{
	return (n + to - 1) / to * to;
}

/* Master: append n bytes to the file; their offset, or 0 with errno. */
static uint64_t
shm_alloc(size_t n)
{
	size_t off = shm_round(shm_file_len, SHM_ALIGN);
	size_t len = shm_round(off + n, (size_t)sysconf(_SC_PAGESIZE));

	if (len < off || len > shm_reserved) {
		errno = ENOSPC;
		return 0;
	}
	if (ftruncate(shm_fd, (off_t)len) == -1)
		return 0;
	if (mprotect(shm_base + shm_open_len, len - shm_open_len,
	    PROT_READ | PROT_WRITE) == -1)
		return 0;
	shm_open_len = shm_file_len = len;
	__atomic_store_n(&((struct shm_header *)shm_base)->file_len, len,
	    __ATOMIC_RELEASE);
	return off;
}

/* Make [0, end) touchable in this process, if the file reaches that far. */
static bool
shm_open_to(uint64_t end)
{
	uint64_t len;

	if (end <= shm_open_len)
		return true;
	len = __atomic_load_n(&shm_hdr()->file_len, __ATOMIC_ACQUIRE);
	if (end > len || len > shm_reserved)
		return false;
	if (mprotect(shm_base + shm_open_len, len - shm_open_len,
	    PROT_READ | PROT_WRITE) == -1)
		return false;
	shm_open_len = len;
	return true;
}

/* The object at off of n bytes, when it lies within the file. */
static void *
shm_at(uint64_t off, size_t n)
{
	if (off == 0 || n > UINT64_MAX - off || !shm_open_to(off + n))
		return NULL;
	return shm_base + off;
}

/* Bytes of file a configuration needs: every generation's worker slots
 * with every server slot, two generations at once (a reload). */
size_t
shm_config_bytes(const struct config *cfg)
{
	size_t servers = 0, listeners = cfg->nlisteners, block, chunks;

	for (size_t i = 0; i < cfg->npools; i++)
		servers += cfg->pools[i].nservers;
	servers *= 2;
	listeners *= 2;
	block = sizeof(struct shm_block) + SHM_SLOT_NREGIONS * SHM_ALIGN +
	    (servers + servers / 4 + 16) * ((2 + METRICS_SERVER_WORDS) *
	    sizeof(uint64_t) + sizeof(uint32_t)) + (listeners + listeners / 4 +
	    4) * (sizeof(uint32_t) + METRICS_LISTENER_WORDS *
	    sizeof(uint64_t)) + METRICS_PROCESS_WORDS * sizeof(uint64_t);
	chunks = (servers + SHM_CHUNK - 1) / SHM_CHUNK;
	return sizeof(struct shm_header) + chunks *
	    sizeof(struct shm_server_chunk) + 2 * (size_t)cfg->workers * block;
}

void
shm_slot_register_fixed(enum shm_slot_region r, size_t bytes)
{
	shm_fixed[r] = bytes;
}

void
shm_create(const struct config *cfg)
{
	size_t len = shm_round(sizeof(struct shm_header),
	    (size_t)sysconf(_SC_PAGESIZE));
	size_t need = shm_config_bytes(cfg) + len, r;
	void *p = MAP_FAILED;

	shm_fd = memfd_create("smtpfront-shm", MFD_CLOEXEC);
	if (shm_fd == -1)
		fatal("memfd_create");
	if (ftruncate(shm_fd, (off_t)len) == -1)
		fatal("shared memory: ftruncate %zu bytes", len);
	/* Address space only; an environment that limits it (RLIMIT_AS,
	 * valgrind) gets less, down to what this config needs. */
	for (r = SHM_RESERVE_MAX; r >= need && r >= len; r /= 2) {
		p = mmap(NULL, r, PROT_NONE, MAP_SHARED | MAP_NORESERVE,
		    shm_fd, 0);
		if (p != MAP_FAILED)
			break;
	}
	if (p == MAP_FAILED)
		fatal("shared memory: cannot reserve %zu bytes of address "
		    "space", need);
	if (mprotect(p, len, PROT_READ | PROT_WRITE) == -1)
		fatal("shared memory: mprotect");
	shm_base = p;
	shm_reserved = r;
	shm_open_len = shm_file_len = len;
	shm_hdr()->magic = SHM_MAGIC;
	shm_hdr()->file_len = len;
	if (r < SHM_RESERVE_MAX)
		log_warnx("shared memory: only %zu MiB of address space could "
		    "be reserved; a reload that needs more will fail",
		    r >> 20);
}

size_t
shm_file_bytes(void)
{
	return shm_base != NULL ? (size_t)__atomic_load_n(&shm_hdr()->file_len,
	    __ATOMIC_ACQUIRE) : 0;
}

/* ------------------------------------------------------------ servers */

static struct shm_server_chunk *
shm_chunk(unsigned server)
{
	if (shm_base == NULL || server >= SHM_MAX_SERVER_SLOTS)
		return NULL;
	return shm_at(__atomic_load_n(&shm_hdr()->server_chunk[server /
	    SHM_CHUNK], __ATOMIC_ACQUIRE), sizeof(struct shm_server_chunk));
}

int
shm_servers_reserve(size_t n)
{
	size_t chunks = (n + SHM_CHUNK - 1) / SHM_CHUNK;

	if (n > SHM_MAX_SERVER_SLOTS) {
		errno = E2BIG;
		return -1;
	}
	for (size_t i = 0; i < chunks; i++) {
		uint64_t off;

		if (shm_hdr()->server_chunk[i] != 0)
			continue;
		off = shm_alloc(sizeof(struct shm_server_chunk));
		if (off == 0)
			return -1;
		__atomic_store_n(&shm_hdr()->server_chunk[i], off,
		    __ATOMIC_RELEASE);
	}
	return 0;
}

static struct shm_health_rec *
shm_health_rec(unsigned server)
{
	struct shm_server_chunk *c = shm_chunk(server);

	return c != NULL ? &c->health[server % SHM_CHUNK] : NULL;
}

/* ------------------------------------------------------------ slots */

static struct shm_block *
shm_block(unsigned slot)
{
	struct shm_block *b;

	if (shm_base == NULL || slot >= SHM_MAX_WORKER_SLOTS)
		return NULL;
	b = shm_at(__atomic_load_n(&shm_hdr()->slot_block[slot],
	    __ATOMIC_ACQUIRE), sizeof(*b));
	if (b == NULL || shm_at((uint64_t)((char *)b - shm_base),
	    b->bytes) == NULL)
		return NULL;
	return b;
}

static void *
shm_block_region(const struct shm_block *b, enum shm_slot_region r)
{
	return (char *)b + b->off[r];
}

int
shm_slot_prepare(unsigned slot, size_t servers, size_t listeners)
{
	struct shm_block *b;
	size_t off, bytes, len[SHM_SLOT_NREGIONS], at[SHM_SLOT_NREGIONS];
	uint64_t where;
	uint32_t used;

	if (slot >= SHM_MAX_WORKER_SLOTS || servers > SHM_MAX_SERVER_SLOTS ||
	    listeners > UINT32_MAX / 8) {
		errno = E2BIG;
		return -1;
	}
	b = shm_block(slot);
	if (b != NULL && b->server_cap >= servers &&
	    b->listener_cap >= listeners) {
		shm_slot_reset(slot);
		return 0;
	}
	/* Grow with headroom, so the next bigger reload rarely needs a new
	 * block. */
	servers += servers / 4 + 16;
	listeners += listeners / 4 + 4;
	off = shm_round(sizeof(*b), SHM_ALIGN);
	for (int r = 0; r < SHM_SLOT_NREGIONS; r++) {
		len[r] = shm_slot_shape[r].per_server * servers +
		    shm_slot_shape[r].per_listener * listeners +
		    shm_slot_shape[r].constant + shm_fixed[r];
		at[r] = off;
		off = shm_round(off + len[r], SHM_ALIGN);
	}
	bytes = off;
	where = shm_alloc(bytes);
	if (where == 0)
		return -1;
	b = (struct shm_block *)(shm_base + where);
	memset(b, 0, sizeof(*b));
	b->bytes = bytes;
	b->server_cap = (uint32_t)servers;
	b->listener_cap = (uint32_t)listeners;
	for (int r = 0; r < SHM_SLOT_NREGIONS; r++) {
		b->off[r] = at[r];
		b->len[r] = len[r];
	}
	/* A block that was in use for this slot: its worker is gone (the
	 * master prepares only free slots), and reset kept its totals. */
	if (shm_block(slot) != NULL)
		shm_slot_reset(slot);
	__atomic_store_n(&shm_hdr()->slot_block[slot], where, __ATOMIC_RELEASE);
	used = shm_hdr()->slots_used;
	if (used < slot + 1)
		__atomic_store_n(&shm_hdr()->slots_used, slot + 1,
		    __ATOMIC_RELEASE);
	return 0;
}

/* Keep what a counter region of a reaped worker counted. */
static void
shm_retire_words(enum shm_slot_region r, const uint64_t *w, size_t n)
{
	if (n > retired_nwords[r]) {
		uint64_t *nw = realloc(retired_words[r], n * sizeof(*nw));

		if (nw == NULL) {
			/* Those counts are lost; the totals go on from the
			 * rest. Never happens with memory to spare. */
			log_warnx("shared memory: out of memory keeping the "
			    "counters of an exited worker");
			n = retired_nwords[r];
		} else {
			memset(nw + retired_nwords[r], 0,
			    (n - retired_nwords[r]) * sizeof(*nw));
			retired_words[r] = nw;
			retired_nwords[r] = n;
		}
	}
	for (size_t i = 0; i < n; i++)
		retired_words[r][i] += w[i];
}

/*
 * Zero a region of a block nobody writes any more. Whole pages are given
 * back (MADV_REMOVE: they read as zeros again) rather than written, so a
 * reaped worker's tables stop taking memory.
 */
static void
shm_zero(void *p, size_t len)
{
	uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t s = (uintptr_t)p, e = s + len;
	uintptr_t a = (s + pg - 1) / pg * pg, z = e / pg * pg;

	if (z > a && madvise((void *)a, z - a, MADV_REMOVE) == 0) {
		memset(p, 0, a - s);
		memset((void *)z, 0, e - z);
		return;
	}
	memset(p, 0, len);
}

void
shm_slot_reset(unsigned slot)
{
	struct shm_block *b = shm_block(slot);

	if (b == NULL)
		return;
	for (int r = 0; r < SHM_SLOT_NREGIONS; r++)
		if (shm_slot_shape[r].counters)
			shm_retire_words(r, shm_block_region(b, r),
			    b->len[r] / sizeof(uint64_t));
	b->active = 0;
	for (int r = 0; r < SHM_SLOT_NREGIONS; r++)
		shm_zero(shm_block_region(b, r), b->len[r]);
}

void
shm_worker_attach(unsigned slot)
{
	shm_mine = shm_block(slot);
	if (shm_mine == NULL)
		fatalx("shared memory: worker slot %u has no block", slot);
	mine_listener_active = shm_block_region(shm_mine,
	    SHM_SLOT_LISTENER_ACTIVE);
	mine_server_active = shm_block_region(shm_mine, SHM_SLOT_SERVER_ACTIVE);
	mine_server_total = shm_block_region(shm_mine, SHM_SLOT_SERVER_TOTAL);
	mine_server_failures = shm_block_region(shm_mine,
	    SHM_SLOT_SERVER_FAILURES);
}

void *
shm_slot_mine(enum shm_slot_region r, size_t *len)
{
	if (shm_mine == NULL)
		return NULL;
	if (len != NULL)
		*len = shm_mine->len[r];
	return shm_block_region(shm_mine, r);
}

const void *
shm_slot_region(unsigned slot, enum shm_slot_region r, size_t *len)
{
	const struct shm_block *b = shm_block(slot);

	if (b == NULL)
		return NULL;
	if (len != NULL)
		*len = b->len[r];
	return shm_block_region(b, r);
}

static void
shm_add32(uint32_t *p, int delta)
{
	__atomic_store_n(p, *p + (uint32_t)delta, __ATOMIC_RELAXED);
}

static void
shm_inc64(uint64_t *p)
{
	__atomic_store_n(p, *p + 1, __ATOMIC_RELAXED);
}

void
shm_listener_add(unsigned listener, int delta)
{
	if (listener >= shm_mine->listener_cap)
		return;
	shm_add32(&mine_listener_active[listener], delta);
	shm_add32(&shm_mine->active, delta);
}

void
shm_server_add(unsigned server, int delta)
{
	if (server < shm_mine->server_cap)
		shm_add32(&mine_server_active[server], delta);
}

void
shm_server_count_session(unsigned server)
{
	if (server < shm_mine->server_cap)
		shm_inc64(&mine_server_total[server]);
}

void
shm_server_failure(unsigned server)
{
	if (server < shm_mine->server_cap)
		shm_inc64(&mine_server_failures[server]);
}

/* Sum one entry of a per-server or per-listener region over every slot. */
#define SHM_SUM(type, region, capfield, idx)				\
	unsigned n = shm_base == NULL ? 0 :				\
	    __atomic_load_n(&shm_hdr()->slots_used, __ATOMIC_ACQUIRE);	\
	type sum = 0;							\
	for (unsigned i = 0; i < n; i++) {				\
		const struct shm_block *b = shm_block(i);		\
		if (b == NULL || (idx) >= b->capfield)			\
			continue;					\
		sum += __atomic_load_n(&((const type *)			\
		    shm_block_region(b, region))[idx],			\
		    __ATOMIC_RELAXED);					\
	}								\
	return sum

unsigned
shm_slots_used(void)
{
	return shm_base == NULL ? 0 :
	    __atomic_load_n(&shm_hdr()->slots_used, __ATOMIC_ACQUIRE);
}

uint32_t
shm_listener_active(unsigned listener)
{
	SHM_SUM(uint32_t, SHM_SLOT_LISTENER_ACTIVE, listener_cap, listener);
}

uint32_t
shm_server_active(unsigned server)
{
	SHM_SUM(uint32_t, SHM_SLOT_SERVER_ACTIVE, server_cap, server);
}

uint64_t
shm_server_total(unsigned server)
{
	uint64_t v;

	shm_counters_sum(SHM_SLOT_SERVER_TOTAL, server, 1, &v);
	return v;
}

uint64_t
shm_server_failures(unsigned server)
{
	uint64_t v;

	shm_counters_sum(SHM_SLOT_SERVER_FAILURES, server, 1, &v);
	return v;
}

uint32_t
shm_slot_active(unsigned slot)
{
	const struct shm_block *b = shm_block(slot);

	return b != NULL ? __atomic_load_n(&b->active, __ATOMIC_RELAXED) : 0;
}

void
shm_counters_sum(enum shm_slot_region r, size_t first, size_t n,
    uint64_t *out)
{
	unsigned slots = shm_slots_used();

	for (size_t i = 0; i < n; i++)
		out[i] = first + i < retired_nwords[r] ?
		    retired_words[r][first + i] : 0;
	for (unsigned k = 0; k < slots; k++) {
		const struct shm_block *b = shm_block(k);
		const uint64_t *w;
		size_t len;

		if (b == NULL)
			continue;
		w = shm_block_region(b, r);
		len = b->len[r] / sizeof(uint64_t);
		for (size_t i = 0; i < n && first + i < len; i++)
			out[i] += __atomic_load_n(&w[first + i],
			    __ATOMIC_RELAXED);
	}
}

uint64_t *
shm_server_checks(unsigned server)
{
	struct shm_server_chunk *c = shm_chunk(server);

	return c != NULL ? c->checks[server % SHM_CHUNK] : NULL;
}

/* Forget what exited workers counted in words [first, first + n) of r. */
static void
shm_retired_clear(enum shm_slot_region r, size_t first, size_t n)
{
	for (size_t i = first; i < first + n && i < retired_nwords[r]; i++)
		retired_words[r][i] = 0;
}

void
shm_listener_forget(unsigned listener)
{
	shm_retired_clear(SHM_SLOT_LISTENER_METRICS,
	    (size_t)listener * METRICS_LISTENER_WORDS, METRICS_LISTENER_WORDS);
}

void
shm_server_forget(unsigned server)
{
	struct shm_health_snapshot none;

	memset(&none, 0, sizeof(none));
	none.state = SHM_HEALTH_UNKNOWN;
	shm_health_publish(server, &none);
	shm_admin_set(server, SHM_ADMIN_READY);
	shm_retired_clear(SHM_SLOT_SERVER_TOTAL, server, 1);
	shm_retired_clear(SHM_SLOT_SERVER_FAILURES, server, 1);
	shm_retired_clear(SHM_SLOT_SERVER_METRICS,
	    (size_t)server * METRICS_SERVER_WORDS, METRICS_SERVER_WORDS);
	if (shm_server_checks(server) != NULL)
		memset(shm_server_checks(server), 0,
		    METRICS_CHECK_WORDS * sizeof(uint64_t));
}

/* ------------------------------------------------------------ health */

void
shm_health_write_begin(unsigned server)
{
	struct shm_health_rec *r = shm_health_rec(server);

	if (r == NULL)
		return;
	__atomic_store_n(&r->seq, r->seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

void
shm_health_write_fields(unsigned server, const struct shm_health_snapshot *s)
{
	struct shm_health_rec *r = shm_health_rec(server);

	if (r == NULL)
		return;
	r->state = s->state;
	r->checks = s->checks;
	r->check_ms = s->check_ms;
	r->last_check_us = s->last_check_us;
	r->changed_us = s->changed_us;
	r->down_us = s->down_us;
	memcpy(r->reason, s->reason, sizeof(r->reason));
	r->reason[sizeof(r->reason) - 1] = '\0';
}

void
shm_health_publish(unsigned server, const struct shm_health_snapshot *s)
{
	struct shm_health_rec *r = shm_health_rec(server);

	if (r == NULL)
		return;
	shm_health_write_begin(server);
	shm_health_write_fields(server, s);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&r->seq, r->seq + 1, __ATOMIC_RELAXED);
}

void (*shm_health_read_hook)(unsigned server);

bool
shm_health_read(unsigned server, struct shm_health_snapshot *out)
{
	const struct shm_health_rec *r = shm_health_rec(server);
	struct shm_health_snapshot tmp;
	uint32_t s1, s2;

	for (int tries = 0; r != NULL && tries < SHM_READ_TRIES; tries++) {
		s1 = __atomic_load_n(&r->seq, __ATOMIC_ACQUIRE);
		if (s1 & 1) {
			/* Let a writer on this CPU finish. */
			if (tries % 64 == 63)
				sched_yield();
			continue;
		}
		tmp.state = (enum shm_health)r->state;
		if (shm_health_read_hook != NULL)
			shm_health_read_hook(server);
		tmp.checks = r->checks;
		tmp.check_ms = r->check_ms;
		tmp.last_check_us = r->last_check_us;
		tmp.changed_us = r->changed_us;
		tmp.down_us = r->down_us;
		memcpy(tmp.reason, r->reason, sizeof(tmp.reason));
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		s2 = __atomic_load_n(&r->seq, __ATOMIC_RELAXED);
		if (s1 != s2)
			continue;
		/* Consistent: what the writer published, which is always
		 * in range; checked anyway, as memory shared with other
		 * processes. */
		if ((unsigned)tmp.state > SHM_HEALTH_DOWN)
			break;
		tmp.reason[sizeof(tmp.reason) - 1] = '\0';
		*out = tmp;
		return true;
	}
	memset(out, 0, sizeof(*out));
	out->state = SHM_HEALTH_UNKNOWN;
	snprintf(out->reason, sizeof(out->reason), "%s", r == NULL ?
	    "no health record" : "health record unreadable (its writer "
	    "died while writing it; the next check rewrites it)");
	return false;
}

void
shm_health_recover(unsigned server)
{
	struct shm_health_rec *r = shm_health_rec(server);
	struct shm_health_snapshot none;

	if (r == NULL || !(__atomic_load_n(&r->seq, __ATOMIC_ACQUIRE) & 1))
		return;
	/* Whatever the dead writer left half written is not worth keeping:
	 * a defined record until the next check. */
	memset(&none, 0, sizeof(none));
	none.state = SHM_HEALTH_UNKNOWN;
	snprintf(none.reason, sizeof(none.reason), "not checked since the "
	    "health process restarted");
	shm_health_write_fields(server, &none);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&r->seq, r->seq + 1, __ATOMIC_RELAXED);
}

void
shm_health_copy(unsigned to, unsigned from)
{
	struct shm_health_snapshot snap;

	(void)shm_health_read(from, &snap);
	shm_health_publish(to, &snap);
}

enum shm_health
shm_health_state(unsigned server)
{
	const struct shm_health_rec *r = shm_health_rec(server);
	uint32_t s;

	if (r == NULL)
		return SHM_HEALTH_UNKNOWN;
	s = __atomic_load_n(&r->state, __ATOMIC_RELAXED);
	return s <= SHM_HEALTH_DOWN ? (enum shm_health)s : SHM_HEALTH_UNKNOWN;
}

/* ------------------------------------------------------------ processes */

uint64_t *
shm_process_counters(enum shm_process p)
{
	if (shm_base == NULL || (unsigned)p >= SHM_NPROCESSES)
		return NULL;
	return shm_hdr()->process[p];
}

/* ------------------------------------------------------------ admin */

void
shm_admin_set(unsigned server, enum shm_admin a)
{
	struct shm_server_chunk *c = shm_chunk(server);

	if (c != NULL)
		__atomic_store_n(&c->admin[server % SHM_CHUNK], (uint8_t)a,
		    __ATOMIC_RELAXED);
}

enum shm_admin
shm_admin_get(unsigned server)
{
	const struct shm_server_chunk *c = shm_chunk(server);
	uint8_t a;

	if (c == NULL)
		return SHM_ADMIN_READY;
	a = __atomic_load_n(&c->admin[server % SHM_CHUNK], __ATOMIC_RELAXED);
	return a <= SHM_ADMIN_MAINT ? (enum shm_admin)a : SHM_ADMIN_READY;
}

/* ------------------------------------------------------------ upgrade */

int
shm_handover_fd(void)
{
	return shm_fd;
}

size_t
shm_fixed_bytes(enum shm_slot_region r)
{
	return shm_fixed[r];
}

size_t
shm_retired(enum shm_slot_region r, const uint64_t **words)
{
	*words = retired_words[r];
	return retired_nwords[r];
}

int
shm_retired_restore(enum shm_slot_region r, const uint64_t *words, size_t n)
{
	uint64_t *w = calloc(n + 1, sizeof(*w));

	if (w == NULL)
		return -1;
	if (n > 0)		/* words may be NULL when there are none */
		memcpy(w, words, n * sizeof(*w));
	free(retired_words[r]);
	retired_words[r] = w;
	retired_nwords[r] = n;
	return 0;
}

int
shm_check_layout(int fd, char *err, size_t cap)
{
	uint32_t magic;

	if (pread(fd, &magic, sizeof(magic), 0) != (ssize_t)sizeof(magic)) {
		snprintf(err, cap, "shared memory: descriptor %d is not the "
		    "memory file", fd);
		return -1;
	}
	if (magic != SHM_MAGIC) {
		snprintf(err, cap, "the shared memory handed over is in "
		    "another layout (magic %08x, this binary reads %08x)",
		    (unsigned)magic, (unsigned)SHM_MAGIC);
		return -1;
	}
	return 0;
}

int
shm_adopt(int fd, const size_t fixed[SHM_SLOT_NREGIONS], char *err,
    size_t cap)
{
	struct stat st;
	void *p = MAP_FAILED;
	size_t len, r;

	if (fstat(fd, &st) == -1 || st.st_size < (off_t)sizeof(struct shm_header)) {
		snprintf(err, cap, "shared memory: descriptor %d is not the "
		    "memory file", fd);
		return -1;
	}
	len = (size_t)st.st_size;
	for (r = SHM_RESERVE_MAX; r >= len; r /= 2) {
		p = mmap(NULL, r, PROT_NONE, MAP_SHARED | MAP_NORESERVE, fd, 0);
		if (p != MAP_FAILED)
			break;
	}
	if (p == MAP_FAILED || mprotect(p, len, PROT_READ | PROT_WRITE) == -1) {
		snprintf(err, cap, "shared memory: cannot map %zu bytes: %s",
		    len, strerror(errno));
		return -1;
	}
	if (((struct shm_header *)p)->magic != SHM_MAGIC) {
		snprintf(err, cap, "shared memory: descriptor %d holds no "
		    "smtpfront memory", fd);
		munmap(p, r);
		return -1;
	}
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	shm_fd = fd;
	shm_base = p;
	shm_reserved = r;
	shm_open_len = shm_file_len = len;
	for (int i = 0; i < SHM_SLOT_NREGIONS; i++)
		shm_fixed[i] = fixed[i];
	return 0;
}
