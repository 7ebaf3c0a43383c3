/* SPDX-License-Identifier: MIT */
/*
 * clients: per-worker open-addressing tables (linear probing, deletion by
 * backward shift, at most half full) in the worker slots of the shared
 * memory. A worker's writes are bracketed by its table's sequence counter;
 * a reader retries while the counter is odd or moved (yielding now and
 * then, so a writer preempted on this CPU can finish), and when it still
 * cannot read a slot whole it says so and its caller refuses: a slot is
 * never taken for 0. A writer that died mid-write is repaired when the
 * master reaps it (shm_slot_reset zeroes the table).
 *
 * The rate tables have the same shape; an entry holds the last second its
 * network connected and one count per second of the window, so a reader
 * knows which buckets are current without the writer having cleared them.
 */
#include <sys/mman.h>

#include <sched.h>
#include <stddef.h>
#include <string.h>
#include <time.h>

#include "core/log.h"
#include "core/shm.h"
#include "core/worker/clients.h"
#include "core/worker/fdplan.h"

/* Reads of one table before a reader gives up on a dead writer, and how
 * often it yields meanwhile. */
#define CLIENTS_READ_TRIES	10000
#define CLIENTS_YIELD_EVERY	16

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
static void clients_rate_attach(void);
static size_t clients_rate_bytes(void);
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
	shm_slot_register_fixed(SHM_SLOT_RATE, clients_rate_bytes());
}

void
clients_attach(void)
{
	size_t len = 0;

	mine = shm_slot_mine(SHM_SLOT_CLIENTS, &len);
	mine_mask = clients_mask(len);
	if (mine_mask == 0)
		mine = NULL;
	clients_rate_attach();
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

/*
 * Wait until `seq` is even (no write in progress): its value, or -1 when a
 * write stays in progress for CLIENTS_READ_TRIES reads.
 */
static int
clients_read_enter(const uint32_t *seq, unsigned *tries, uint32_t *out)
{
	for (;;) {
		uint32_t v;

		if (*tries >= CLIENTS_READ_TRIES)
			return -1;
		if (++*tries % CLIENTS_YIELD_EVERY == 0)
			sched_yield();
		v = __atomic_load_n(seq, __ATOMIC_ACQUIRE);
		if (!(v & 1)) {
			*out = v;
			return 0;
		}
	}
}

/* Did the table stay as it was since clients_read_enter() said `s1`? */
static bool
clients_read_ok(const uint32_t *seq, uint32_t s1)
{
	__atomic_thread_fence(__ATOMIC_ACQUIRE);
	return __atomic_load_n(seq, __ATOMIC_RELAXED) == s1;
}

int
clients_count(const struct clients_key *k, uint32_t *sum)
{
	unsigned n = shm_slots_used();

	*sum = 0;
	for (unsigned s = 0; s < n; s++) {
		size_t len = 0;
		const struct clients_table *t = shm_slot_region(s,
		    SHM_SLOT_CLIENTS, &len);
		uint32_t mask = t != NULL ? clients_mask(len) : 0;
		unsigned tries = 0;

		while (mask != 0) {
			uint32_t s1, i, c = 0;

			if (clients_read_enter(&t->seq, &tries, &s1) == -1)
				return -1;
			if (__atomic_load_n(&t->used, __ATOMIC_RELAXED) != 0 &&
			    (i = clients_find(t, mask, k)) != UINT32_MAX)
				c = __atomic_load_n(&t->e[i].count,
				    __ATOMIC_RELAXED);
			if (clients_read_ok(&t->seq, s1)) {
				*sum += c;
				break;
			}
		}
	}
	return 0;
}

static void
clients_write_begin_seq(uint32_t *seq)
{
	__atomic_store_n(seq, *seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
clients_write_end_seq(uint32_t *seq)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(seq, *seq + 1, __ATOMIC_RELAXED);
}

static void
clients_write_begin(struct clients_table *t)
{
	clients_write_begin_seq(&t->seq);
}

static void
clients_write_end(struct clients_table *t)
{
	clients_write_end_seq(&t->seq);
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

int
clients_reserve(const struct clients_key *k, uint32_t *sum)
{
	if (clients_add(k, +1) == -1)
		return -1;
	/* Our +1 is visible before we read the others' (Dekker): of two
	 * workers reserving at once, at least one sees the other's. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (clients_count(k, sum) == -1) {
		/* Cannot fail: the entry is there. */
		(void)!clients_add(k, -1);
		return -1;
	}
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

/* ------------------------------------------------------------ rate */

struct clients_rate_entry {
	struct clients_key key;
	uint32_t last;			/* last second counted; 0 = empty */
	/* Connections in second t at b[t % CLIENTS_RATE_WINDOW_S], for t in
	 * (last - CLIENTS_RATE_WINDOW_S, last]. */
	uint16_t b[CLIENTS_RATE_WINDOW_S];
};

struct clients_rate_table {
	uint32_t seq;			/* odd while its worker writes */
	uint32_t used;			/* entries with last != 0 */
	uint64_t evictions;
	struct clients_rate_entry e[];
};

#define CLIENTS_RATE_SLOTS	(2 * CLIENTS_RATE_NETWORKS)
/* A table this full forgets the networks that connected least recently,
 * down to 7/8 of it, so that costs one sweep per many new networks. */
#define CLIENTS_RATE_LOW	(CLIENTS_RATE_NETWORKS / 8 * 7)

static struct clients_rate_table *rate_mine;
/* Exited workers' counts: written by the master only. */
static struct clients_rate_table *rate_retired;
static int64_t rate_warned_s;

static uint32_t
clients_rate_clock_mono(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	/* Never 0 (the mark of an empty entry). */
	return (uint32_t)ts.tv_sec + 1;
}

uint32_t (*clients_rate_clock)(void) = clients_rate_clock_mono;

static size_t
clients_rate_bytes(void)
{
	return sizeof(struct clients_rate_table) +
	    CLIENTS_RATE_SLOTS * sizeof(struct clients_rate_entry);
}

static void
clients_rate_attach(void)
{
	size_t len = 0;

	rate_mine = shm_slot_mine(SHM_SLOT_RATE, &len);
	if (len < clients_rate_bytes())
		rate_mine = NULL;
}

static uint32_t
clients_rate_find(const struct clients_rate_table *t,
    const struct clients_key *k)
{
	const uint32_t mask = CLIENTS_RATE_SLOTS - 1;
	uint32_t i = clients_hash(k) & mask;

	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
		if (t->e[i].last == 0 || clients_key_eq(&t->e[i].key, k))
			return i;
	}
	return UINT32_MAX;
}

/* Connections counted in e during the window that ends at `now`. */
static uint32_t
clients_rate_sum(const struct clients_rate_entry *e, uint32_t now)
{
	uint32_t last = __atomic_load_n(&e->last, __ATOMIC_RELAXED), sum = 0;
	uint32_t from, to;

	if (last == 0)
		return 0;
	to = last < now ? last : now;
	from = now >= CLIENTS_RATE_WINDOW_S ? now - CLIENTS_RATE_WINDOW_S + 1 :
	    0;
	if (last >= CLIENTS_RATE_WINDOW_S &&
	    last - CLIENTS_RATE_WINDOW_S + 1 > from)
		from = last - CLIENTS_RATE_WINDOW_S + 1;
	for (uint32_t t = from; t <= to && to - from < CLIENTS_RATE_WINDOW_S;
	    t++)
		sum += __atomic_load_n(&e->b[t % CLIENTS_RATE_WINDOW_S],
		    __ATOMIC_RELAXED);
	return sum;
}

static void
clients_rate_remove_at(struct clients_rate_table *t, uint32_t i)
{
	const uint32_t mask = CLIENTS_RATE_SLOTS - 1;
	uint32_t j = i, home;

	for (;;) {
		j = (j + 1) & mask;
		if (t->e[j].last == 0)
			break;
		home = clients_hash(&t->e[j].key) & mask;
		if (i <= j ? (home > i && home <= j) :
		    (home > i || home <= j))
			continue;
		t->e[i] = t->e[j];
		i = j;
	}
	memset(&t->e[i], 0, sizeof(t->e[i]));
	t->used--;
}

/* Forget networks whose last connection is `age` seconds old or more,
 * until `target` are left; returns how many were still within their
 * window. */
static unsigned
clients_rate_forget(struct clients_rate_table *t, uint32_t now, uint32_t age,
    uint32_t target)
{
	unsigned inwindow = 0;

	for (uint32_t i = 0; i < CLIENTS_RATE_SLOTS && t->used > target; ) {
		uint32_t last = t->e[i].last;

		if (last == 0 || now - last < age) {
			i++;
			continue;
		}
		if (now - last < CLIENTS_RATE_WINDOW_S)
			inwindow++;
		/* One bracket per entry, so readers never wait for a whole
		 * sweep. The hole is filled from later: look at i again. */
		clients_write_begin_seq(&t->seq);
		clients_rate_remove_at(t, i);
		clients_write_end_seq(&t->seq);
	}
	return inwindow;
}

/* Room for one more network: the expired ones go, then, when that is not
 * enough, those that connected least recently. */
static void
clients_rate_make_room(struct clients_rate_table *t, uint32_t now)
{
	static const uint32_t ages[] = { CLIENTS_RATE_WINDOW_S, 30, 15, 8, 4,
	    2, 1, 0 };
	unsigned evicted = 0;

	/* The expired ones all go (they cost nothing to forget); the others
	 * only down to CLIENTS_RATE_LOW. */
	(void)clients_rate_forget(t, now, ages[0], 0);
	for (size_t a = 1; a < sizeof(ages) / sizeof(ages[0]) &&
	    t->used > CLIENTS_RATE_NETWORKS - 1; a++)
		evicted += clients_rate_forget(t, now, ages[a],
		    CLIENTS_RATE_LOW);
	if (evicted == 0)
		return;
	t->evictions += evicted;
	if ((int64_t)now - rate_warned_s >= CLIENTS_RATE_WINDOW_S) {
		rate_warned_s = now;
		log_warnx("clients: more than %u client networks connected to "
		    "this worker within a minute; the rate counts of %u that "
		    "connected least recently were forgotten",
		    CLIENTS_RATE_NETWORKS, evicted);
	}
}

int
clients_rate_reserve(const struct clients_key *k, uint32_t *sum,
    uint32_t *sec)
{
	struct clients_rate_table *t = rate_mine;
	uint32_t now = clients_rate_clock(), i;
	struct clients_rate_entry *e;

	if (t == NULL)
		return -1;
	/* Only this worker writes its table: what it finds stays true. */
	i = clients_rate_find(t, k);
	if (i != UINT32_MAX && t->e[i].last == 0 &&
	    t->used + 1 > CLIENTS_RATE_NETWORKS) {
		clients_rate_make_room(t, now);
		i = clients_rate_find(t, k);
	}
	if (i == UINT32_MAX)
		return -1;
	clients_write_begin_seq(&t->seq);
	e = &t->e[i];
	if (e->last == 0) {
		memset(e, 0, sizeof(*e));
		e->key = *k;
		e->last = now;
		t->used++;
	} else if (e->last < now) {
		for (uint32_t s = e->last + 1; s <= now &&
		    s - e->last <= CLIENTS_RATE_WINDOW_S; s++)
			e->b[s % CLIENTS_RATE_WINDOW_S] = 0;
		e->last = now;
	}
	if (e->b[now % CLIENTS_RATE_WINDOW_S] == UINT16_MAX) {
		clients_write_end_seq(&t->seq);
		return -1;
	}
	e->b[now % CLIENTS_RATE_WINDOW_S]++;
	clients_write_end_seq(&t->seq);
	*sec = now;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (clients_rate_count(k, sum) == -1) {
		clients_rate_undo(k, now);
		return -1;
	}
	return 0;
}

void
clients_rate_undo(const struct clients_key *k, uint32_t sec)
{
	struct clients_rate_table *t = rate_mine;
	struct clients_rate_entry *e;
	uint32_t i;

	if (t == NULL || (i = clients_rate_find(t, k)) == UINT32_MAX)
		return;
	e = &t->e[i];
	if (e->last == 0 || sec > e->last ||
	    e->last - sec >= CLIENTS_RATE_WINDOW_S ||
	    e->b[sec % CLIENTS_RATE_WINDOW_S] == 0)
		return;
	clients_write_begin_seq(&t->seq);
	e->b[sec % CLIENTS_RATE_WINDOW_S]--;
	clients_write_end_seq(&t->seq);
}

int
clients_rate_count(const struct clients_key *k, uint32_t *sum)
{
	unsigned n = shm_slots_used();
	uint32_t now = clients_rate_clock();

	*sum = 0;
	/* Slot n stands for the retired table. */
	for (unsigned s = 0; s <= n; s++) {
		size_t len = 0;
		const struct clients_rate_table *t = s < n ? shm_slot_region(s,
		    SHM_SLOT_RATE, &len) : rate_retired;
		unsigned tries = 0;

		if (s == n && t != NULL)
			len = clients_rate_bytes();

		while (t != NULL && len >= clients_rate_bytes()) {
			uint32_t s1, i, c = 0;

			if (clients_read_enter(&t->seq, &tries, &s1) == -1)
				return -1;
			if (__atomic_load_n(&t->used, __ATOMIC_RELAXED) != 0 &&
			    (i = clients_rate_find(t, k)) != UINT32_MAX)
				c = clients_rate_sum(&t->e[i], now);
			if (clients_read_ok(&t->seq, s1)) {
				*sum += c;
				break;
			}
		}
	}
	return 0;
}

void
clients_rate_retired_create(void)
{
	void *p;

	if (rate_retired != NULL)
		return;
	p = mmap(NULL, clients_rate_bytes(), PROT_READ | PROT_WRITE,
	    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		log_warn("clients: no table for the rate counts of exited "
		    "workers");
		return;
	}
	rate_retired = p;
}

/* Add the counts of `from` (a table nobody writes any more) for the
 * window ending at `now` into entry `to`. */
static void
clients_rate_merge(struct clients_rate_entry *to,
    const struct clients_rate_entry *from, uint32_t now)
{
	uint32_t last = from->last > to->last ? from->last : to->last;
	uint32_t lo = now >= CLIENTS_RATE_WINDOW_S ?
	    now - CLIENTS_RATE_WINDOW_S + 1 : 0;

	if (last > now)
		last = now;
	/* Bring `to` up to `last` (its seconds past the window cleared). */
	for (uint32_t t = to->last + 1; to->last != 0 && t <= last &&
	    t - to->last <= CLIENTS_RATE_WINDOW_S; t++)
		to->b[t % CLIENTS_RATE_WINDOW_S] = 0;
	if (to->last == 0)
		memset(to->b, 0, sizeof(to->b));
	to->last = last;
	for (uint32_t t = lo; t <= from->last && t <= last; t++) {
		uint32_t v;

		if (from->last - t >= CLIENTS_RATE_WINDOW_S)
			continue;
		v = (uint32_t)to->b[t % CLIENTS_RATE_WINDOW_S] +
		    from->b[t % CLIENTS_RATE_WINDOW_S];
		to->b[t % CLIENTS_RATE_WINDOW_S] = v > UINT16_MAX ?
		    UINT16_MAX : (uint16_t)v;
	}
}

void
clients_rate_retire(unsigned slot)
{
	size_t len = 0;
	const struct clients_rate_table *t = shm_slot_region(slot,
	    SHM_SLOT_RATE, &len);
	struct clients_rate_table *r = rate_retired;
	uint32_t now = clients_rate_clock();

	if (t == NULL || r == NULL || len < clients_rate_bytes() ||
	    t->used == 0)
		return;
	for (uint32_t i = 0; i < CLIENTS_RATE_SLOTS; i++) {
		const struct clients_rate_entry *e = &t->e[i];
		uint32_t j;

		if (e->last == 0 || now - e->last >= CLIENTS_RATE_WINDOW_S)
			continue;
		j = clients_rate_find(r, &e->key);
		if (j != UINT32_MAX && r->e[j].last == 0 &&
		    r->used + 1 > CLIENTS_RATE_NETWORKS) {
			clients_rate_make_room(r, now);
			j = clients_rate_find(r, &e->key);
		}
		/* One bracket per entry: readers wait for one at most. */
		clients_write_begin_seq(&r->seq);
		if (j != UINT32_MAX) {
			if (r->e[j].last == 0) {
				memset(&r->e[j], 0, sizeof(r->e[j]));
				r->e[j].key = e->key;
				r->used++;
			}
			clients_rate_merge(&r->e[j], e, now);
		}
		clients_write_end_seq(&r->seq);
	}
}

uint64_t
clients_rate_evictions(void)
{
	return rate_mine != NULL ? rate_mine->evictions : 0;
}
