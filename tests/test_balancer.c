/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for balancer/: pick sequences of every algorithm against
 * hand-built pools (eligibility, backups, max_connections, weights), the
 * rendezvous-hashing properties of `source`, and the client-network key.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include <check.h>

#include "balancer/balancer.h"

#define MAXSRV 8

/* One server of a test pool; letters 'a'.. name servers by index. */
struct srv_spec {
	unsigned weight;
	unsigned maxconn;
	bool backup;
	bool down;
	bool tried;
	unsigned active;
};

struct test_pool {
	struct cfg_pool pool;
	struct cfg_server servers[MAXSRV];
	struct bal_server view[MAXSRV];
	bool tried[MAXSRV];
	struct bal_pool *bp;
};

static void
tp_init(struct test_pool *tp, enum cfg_balance balance,
    const struct srv_spec *spec, size_t n)
{
	ck_assert_uint_le(n, MAXSRV);
	memset(tp, 0, sizeof(*tp));
	snprintf(tp->pool.name, sizeof(tp->pool.name), "pool");
	tp->pool.balance = balance;
	tp->pool.prefix4 = 24;
	tp->pool.prefix6 = 64;
	tp->pool.servers = tp->servers;
	tp->pool.nservers = n;
	for (size_t i = 0; i < n; i++) {
		snprintf(tp->servers[i].name, sizeof(tp->servers[i].name),
		    "%c", (char)('a' + i));
		tp->servers[i].weight = spec[i].weight;
		tp->servers[i].max_connections = spec[i].maxconn;
		tp->servers[i].backup = spec[i].backup;
		tp->view[i].usable = !spec[i].down;
		tp->view[i].active = spec[i].active;
		tp->tried[i] = spec[i].tried;
	}
	tp->bp = bal_pool_new(&tp->pool);
	ck_assert_ptr_nonnull(tp->bp);
}

/* Servers with the given names and weights, all usable. */
static void
tp_init_named(struct test_pool *tp, enum cfg_balance balance,
    const char *const *names, const unsigned *weights, size_t n)
{
	struct srv_spec spec[MAXSRV];

	ck_assert_uint_le(n, MAXSRV);
	memset(spec, 0, sizeof(spec));
	for (size_t i = 0; i < n; i++)
		spec[i].weight = weights != NULL ? weights[i] : 1;
	tp_init(tp, balance, spec, n);
	for (size_t i = 0; i < n; i++)
		snprintf(tp->servers[i].name, sizeof(tp->servers[i].name),
		    "%s", names[i]);
	/* the hashes of the names are taken at bal_pool_new() */
	bal_pool_free(tp->bp);
	tp->bp = bal_pool_new(&tp->pool);
	ck_assert_ptr_nonnull(tp->bp);
}

static void
tp_fini(struct test_pool *tp)
{
	bal_pool_free(tp->bp);
	tp->bp = NULL;
}

static char
pick_letter(int i)
{
	return i == -1 ? '-' : (char)('a' + i);
}

static void
sa_from_text(struct sockaddr_storage *ss, const char *text)
{
	memset(ss, 0, sizeof(*ss));
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;

		sin6->sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;

		sin->sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, text, &sin->sin_addr), 1);
	}
}

static void
sa_from_v4(struct sockaddr_storage *ss, uint32_t host_order)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)ss;

	memset(ss, 0, sizeof(*ss));
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(host_order);
}

/* A fixed-seed generator, so the "random" networks are the same every run. */
static uint64_t
test_rand(uint64_t *state)
{
	uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

static int
pick_source(struct test_pool *tp, const struct sockaddr_storage *ss)
{
	return bal_pick(tp->bp, tp->view, tp->tried,
	    (const struct sockaddr *)ss);
}

/* ---- bal_pool_new / bal_pool_free ---- */

START_TEST(test_pool_new_free)
{
	struct cfg_pool empty;
	struct bal_pool *bp;
	struct sockaddr_storage ss;

	bal_pool_free(NULL);
	memset(&empty, 0, sizeof(empty));
	for (int b = CFG_BALANCE_ROUNDROBIN; b <= CFG_BALANCE_FIRST; b++) {
		empty.balance = (enum cfg_balance)b;
		bp = bal_pool_new(&empty);
		ck_assert_ptr_nonnull(bp);
		sa_from_text(&ss, "192.0.2.1");
		ck_assert_int_eq(bal_pick(bp, NULL, NULL,
		    (const struct sockaddr *)&ss), -1);
		bal_pool_free(bp);
	}
}
END_TEST

/* ---- bal_pick: sequences with a fixed view ---- */

static const struct {
	const char *what;
	enum cfg_balance balance;
	size_t n;
	struct srv_spec s[MAXSRV];
	const char *expect;	/* one letter per pick, '-' = none */
} pick_vectors[] = {
	{ "swrr 5,1,1 spreads, two full cycles", CFG_BALANCE_ROUNDROBIN, 3,
	  { { .weight = 5 }, { .weight = 1 }, { .weight = 1 } },
	  "aabacaaaabacaa" },
	{ "swrr equal weights", CFG_BALANCE_ROUNDROBIN, 3,
	  { { .weight = 1 }, { .weight = 1 }, { .weight = 1 } },
	  "abcabcabc" },
	{ "swrr equal large weights", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 100 }, { .weight = 100 } },
	  "abab" },
	{ "swrr 2,1", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 2 }, { .weight = 1 } },
	  "abaaba" },
	{ "swrr 3,2", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 3 }, { .weight = 2 } },
	  "ababaababa" },
	{ "swrr weight 0 never picked", CFG_BALANCE_ROUNDROBIN, 3,
	  { { .weight = 1 }, { .weight = 0 }, { .weight = 1 } },
	  "acacac" },
	{ "swrr only weight 0", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 0 }, { .weight = 0 } },
	  "---" },
	{ "swrr down skipped", CFG_BALANCE_ROUNDROBIN, 3,
	  { { .weight = 1 }, { .weight = 1, .down = true }, { .weight = 1 } },
	  "acacac" },
	{ "swrr tried skipped", CFG_BALANCE_ROUNDROBIN, 3,
	  { { .weight = 1, .tried = true }, { .weight = 1 }, { .weight = 1 } },
	  "bcbcbc" },
	{ "swrr all tried", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 1, .tried = true }, { .weight = 1, .tried = true } },
	  "--" },
	{ "swrr at max_connections skipped", CFG_BALANCE_ROUNDROBIN, 3,
	  { { .weight = 5, .maxconn = 4, .active = 4 }, { .weight = 1 },
	    { .weight = 1, .maxconn = 4, .active = 3 } },
	  "bcbc" },
	{ "swrr over max_connections skipped", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 1, .maxconn = 1, .active = 7 }, { .weight = 1 } },
	  "bbb" },
	{ "swrr backup unused while a primary is eligible",
	  CFG_BALANCE_ROUNDROBIN, 3,
	  { { .weight = 1, .backup = true }, { .weight = 1, .down = true },
	    { .weight = 1 } },
	  "cccc" },
	{ "swrr backups share when all primaries are ineligible",
	  CFG_BALANCE_ROUNDROBIN, 5,
	  { { .weight = 1, .down = true }, { .weight = 1, .tried = true },
	    { .weight = 2, .backup = true }, { .weight = 0 },
	    { .weight = 1, .backup = true } },
	  "ceccec" },
	{ "swrr primaries full -> backup", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 1, .maxconn = 2, .active = 2 },
	    { .weight = 1, .backup = true } },
	  "bb" },
	{ "swrr backup down too", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 1, .down = true },
	    { .weight = 1, .backup = true, .down = true } },
	  "--" },
	{ "swrr backup weight 0", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 1, .down = true },
	    { .weight = 0, .backup = true } },
	  "--" },
	{ "leastconn fewest active", CFG_BALANCE_LEASTCONN, 3,
	  { { .weight = 1, .active = 3 }, { .weight = 1, .active = 1 },
	    { .weight = 1, .active = 2 } },
	  "bbb" },
	{ "leastconn weight: 2/3 beats 1/1", CFG_BALANCE_LEASTCONN, 2,
	  { { .weight = 3, .active = 2 }, { .weight = 1, .active = 1 } },
	  "aaa" },
	{ "leastconn weight: 9/3 loses to 0/1", CFG_BALANCE_LEASTCONN, 2,
	  { { .weight = 3, .active = 9 }, { .weight = 1, .active = 0 } },
	  "bbb" },
	{ "leastconn equal ratio -> fewer active", CFG_BALANCE_LEASTCONN, 2,
	  { { .weight = 2, .active = 1 }, { .weight = 1, .active = 0 } },
	  "bbb" },
	{ "leastconn full ties rotate", CFG_BALANCE_LEASTCONN, 3,
	  { { .weight = 1 }, { .weight = 1 }, { .weight = 1 } },
	  "abcabc" },
	{ "leastconn ties rotate over the eligible", CFG_BALANCE_LEASTCONN, 3,
	  { { .weight = 1 }, { .weight = 1, .down = true }, { .weight = 1 } },
	  "acca" },
	{ "leastconn skips down/tried/weight 0/full", CFG_BALANCE_LEASTCONN, 5,
	  { { .weight = 1, .down = true }, { .weight = 1, .tried = true },
	    { .weight = 0 }, { .weight = 1, .maxconn = 1, .active = 1 },
	    { .weight = 1, .active = 50 } },
	  "eee" },
	{ "leastconn backup only when primaries ineligible",
	  CFG_BALANCE_LEASTCONN, 3,
	  { { .weight = 1, .backup = true }, { .weight = 1, .active = 90 },
	    { .weight = 1, .backup = true } },
	  "bbb" },
	{ "leastconn among backups", CFG_BALANCE_LEASTCONN, 3,
	  { { .weight = 1, .backup = true, .active = 5 },
	    { .weight = 1, .down = true },
	    { .weight = 1, .backup = true, .active = 2 } },
	  "ccc" },
	{ "first in configuration order", CFG_BALANCE_FIRST, 3,
	  { { .weight = 1 }, { .weight = 1 }, { .weight = 1 } },
	  "aaaa" },
	{ "first ignores weight beyond 0", CFG_BALANCE_FIRST, 2,
	  { { .weight = 1 }, { .weight = 100 } },
	  "aa" },
	{ "first up to max_connections", CFG_BALANCE_FIRST, 3,
	  { { .weight = 1, .maxconn = 10, .active = 10 },
	    { .weight = 1, .maxconn = 10, .active = 9 }, { .weight = 1 } },
	  "bb" },
	{ "first max_connections 0 = unlimited", CFG_BALANCE_FIRST, 2,
	  { { .weight = 1, .active = 100000 }, { .weight = 1 } },
	  "aa" },
	{ "first skips down/tried/weight 0", CFG_BALANCE_FIRST, 4,
	  { { .weight = 1, .down = true }, { .weight = 1, .tried = true },
	    { .weight = 0 }, { .weight = 1 } },
	  "dd" },
	{ "first: backups last even if listed first", CFG_BALANCE_FIRST, 3,
	  { { .weight = 1, .backup = true }, { .weight = 1, .down = true },
	    { .weight = 1 } },
	  "cc" },
	{ "first: backup in order when primaries full", CFG_BALANCE_FIRST, 3,
	  { { .weight = 1, .maxconn = 1, .active = 1 },
	    { .weight = 1, .backup = true, .down = true },
	    { .weight = 1, .backup = true } },
	  "cc" },
	{ "source without a client falls back to swrr", CFG_BALANCE_SOURCE, 3,
	  { { .weight = 2 }, { .weight = 1 }, { .weight = 1, .down = true } },
	  "abaaba" },
};

START_TEST(test_pick_vectors)
{
	const size_t v = (size_t)_i;
	struct test_pool tp;
	size_t len = strlen(pick_vectors[v].expect);
	char got[64];

	ck_assert_uint_lt(len, sizeof(got));
	tp_init(&tp, pick_vectors[v].balance, pick_vectors[v].s,
	    pick_vectors[v].n);
	for (size_t k = 0; k < len; k++)
		got[k] = pick_letter(bal_pick(tp.bp, tp.view, tp.tried, NULL));
	got[len] = '\0';
	ck_assert_msg(strcmp(got, pick_vectors[v].expect) == 0,
	    "%s: got %s, expected %s", pick_vectors[v].what, got,
	    pick_vectors[v].expect);
	tp_fini(&tp);
}
END_TEST

/* A NULL `tried` means nothing tried yet. */
START_TEST(test_pick_tried_null)
{
	static const struct srv_spec s[] = { { .weight = 1 }, { .weight = 1 } };
	struct test_pool tp;

	tp_init(&tp, CFG_BALANCE_ROUNDROBIN, s, 2);
	ck_assert_int_eq(bal_pick(tp.bp, tp.view, NULL, NULL), 0);
	ck_assert_int_eq(bal_pick(tp.bp, tp.view, NULL, NULL), 1);
	tp_fini(&tp);
}
END_TEST

/* ---- bal_pick: views that change between picks ---- */

/* Backups take over while every primary is down and give way at once. */
START_TEST(test_pick_backup_failback)
{
	static const struct srv_spec s[] = {
		{ .weight = 1 }, { .weight = 1 }, { .weight = 1, .backup = true },
	};
	struct sockaddr_storage ss;
	struct test_pool tp;

	sa_from_text(&ss, "198.51.100.20");
	for (int b = CFG_BALANCE_ROUNDROBIN; b <= CFG_BALANCE_FIRST; b++) {
		int home;

		tp_init(&tp, (enum cfg_balance)b, s, 3);
		home = pick_source(&tp, &ss);
		ck_assert_int_ne(home, 2);
		tp.view[0].usable = tp.view[1].usable = false;
		for (int k = 0; k < 4; k++)
			ck_assert_int_eq(pick_source(&tp, &ss), 2);
		tp.view[1].usable = true;
		for (int k = 0; k < 4; k++)
			ck_assert_int_eq(pick_source(&tp, &ss), 1);
		tp.view[0].usable = true;
		if (b == CFG_BALANCE_SOURCE)
			ck_assert_int_eq(pick_source(&tp, &ss), home);
		for (int k = 0; k < 6; k++)
			ck_assert_int_ne(pick_source(&tp, &ss), 2);
		tp_fini(&tp);
	}
}
END_TEST

/* A failover loop: mark each pick tried; every server once, then none. */
START_TEST(test_pick_retry_loop)
{
	static const struct srv_spec s[] = {
		{ .weight = 3 }, { .weight = 1, .backup = true }, { .weight = 1 },
		{ .weight = 0 }, { .weight = 2 },
	};
	struct sockaddr_storage ss;
	struct test_pool tp;

	sa_from_text(&ss, "2001:db8:5::1");
	for (int b = CFG_BALANCE_ROUNDROBIN; b <= CFG_BALANCE_FIRST; b++) {
		int i, seen = 0;

		tp_init(&tp, (enum cfg_balance)b, s, 5);
		while ((i = pick_source(&tp, &ss)) != -1) {
			ck_assert(!tp.tried[i]);
			/* the backup only after all three primaries */
			ck_assert(i != 1 || seen == 3);
			tp.tried[i] = true;
			seen++;
		}
		ck_assert_int_eq(seen, 4);
		ck_assert(!tp.tried[3]);
		tp_fini(&tp);
	}
}
END_TEST

/*
 * Sessions pile up as they are picked and never close: the counts must
 * follow the weights (roundrobin, leastconn) and stop at max_connections.
 */
static const struct {
	const char *what;
	enum cfg_balance balance;
	size_t n;
	struct srv_spec s[MAXSRV];
	unsigned picks;
	unsigned expect[MAXSRV];	/* active after the picks */
	unsigned none;			/* picks that returned -1 */
} load_vectors[] = {
	{ "swrr 3,1", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 3 }, { .weight = 1 } }, 40, { 30, 10 }, 0 },
	{ "swrr caps at max_connections", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 5, .maxconn = 3 }, { .weight = 1 } }, 10, { 3, 7 }, 0 },
	{ "swrr all capped", CFG_BALANCE_ROUNDROBIN, 2,
	  { { .weight = 1, .maxconn = 2 }, { .weight = 1, .maxconn = 3 } }, 8,
	  { 2, 3 }, 3 },
	{ "swrr capped primaries spill to backup", CFG_BALANCE_ROUNDROBIN, 3,
	  { { .weight = 1, .maxconn = 2 }, { .weight = 1, .maxconn = 2 },
	    { .weight = 1, .backup = true } }, 9, { 2, 2, 5 }, 0 },
	{ "leastconn equal", CFG_BALANCE_LEASTCONN, 3,
	  { { .weight = 1 }, { .weight = 1 }, { .weight = 1 } }, 30,
	  { 10, 10, 10 }, 0 },
	{ "leastconn equal, unequal start", CFG_BALANCE_LEASTCONN, 3,
	  { { .weight = 1, .active = 7 }, { .weight = 1 }, { .weight = 1, .active = 2 } },
	  12, { 7, 7, 7 }, 0 },
	{ "leastconn 3,1", CFG_BALANCE_LEASTCONN, 2,
	  { { .weight = 3 }, { .weight = 1 } }, 40, { 30, 10 }, 0 },
	{ "leastconn 5,2,1", CFG_BALANCE_LEASTCONN, 3,
	  { { .weight = 5 }, { .weight = 2 }, { .weight = 1 } }, 80,
	  { 50, 20, 10 }, 0 },
	{ "leastconn caps at max_connections", CFG_BALANCE_LEASTCONN, 2,
	  { { .weight = 1, .maxconn = 4 }, { .weight = 1 } }, 12, { 4, 8 }, 0 },
	{ "first fills in order", CFG_BALANCE_FIRST, 3,
	  { { .weight = 1, .maxconn = 4 }, { .weight = 9, .maxconn = 2 },
	    { .weight = 1 } }, 10, { 4, 2, 4 }, 0 },
	{ "first all capped", CFG_BALANCE_FIRST, 2,
	  { { .weight = 1, .maxconn = 1 }, { .weight = 1, .maxconn = 1 } }, 5,
	  { 1, 1 }, 3 },
};

START_TEST(test_pick_load)
{
	const size_t v = (size_t)_i;
	struct test_pool tp;
	unsigned none = 0;

	tp_init(&tp, load_vectors[v].balance, load_vectors[v].s,
	    load_vectors[v].n);
	for (unsigned k = 0; k < load_vectors[v].picks; k++) {
		int i = bal_pick(tp.bp, tp.view, NULL, NULL);

		if (i == -1)
			none++;
		else
			tp.view[i].active++;
	}
	for (size_t i = 0; i < load_vectors[v].n; i++)
		ck_assert_msg(tp.view[i].active == load_vectors[v].expect[i],
		    "%s: server %zu has %u, expected %u", load_vectors[v].what,
		    i, tp.view[i].active, load_vectors[v].expect[i]);
	ck_assert_uint_eq(none, load_vectors[v].none);
	tp_fini(&tp);
}
END_TEST

/* Leastconn with sessions closing: the idle server gets the next one. */
START_TEST(test_pick_leastconn_close)
{
	static const struct srv_spec s[] = {
		{ .weight = 1, .active = 5 }, { .weight = 1, .active = 5 },
		{ .weight = 1, .active = 5 },
	};
	struct test_pool tp;

	tp_init(&tp, CFG_BALANCE_LEASTCONN, s, 3);
	tp.view[1].active = 2;
	ck_assert_int_eq(bal_pick(tp.bp, tp.view, NULL, NULL), 1);
	tp.view[1].active = 6;
	tp.view[2].active = 0;
	ck_assert_int_eq(bal_pick(tp.bp, tp.view, NULL, NULL), 2);
	tp_fini(&tp);
}
END_TEST

/* ---- bal_pick: source ---- */

static const char *const names3[] = { "mx1", "mx2", "mx3" };

/* Every host of a network maps like the network; ports do not matter. */
START_TEST(test_source_same_network)
{
	struct test_pool tp;
	struct sockaddr_storage net, host;
	uint64_t seed = 1;

	tp_init_named(&tp, CFG_BALANCE_SOURCE, names3, NULL, 3);
	for (int k = 0; k < 500; k++) {
		uint32_t base = (uint32_t)test_rand(&seed) & 0xffffff00u;
		int want;

		sa_from_v4(&net, base);
		want = pick_source(&tp, &net);
		ck_assert_int_ge(want, 0);
		for (unsigned h = 1; h < 256; h += 37) {
			sa_from_v4(&host, base | h);
			((struct sockaddr_in *)&host)->sin_port = htons(
			    (uint16_t)(1024 + h));
			ck_assert_int_eq(pick_source(&tp, &host), want);
		}
	}
	tp_fini(&tp);
}
END_TEST

/* 10,000 seeded /24s: shares follow weights within loose bounds. */
static const struct {
	size_t n;
	unsigned weight[MAXSRV];
	double lo[MAXSRV];
	double hi[MAXSRV];
} spread_vectors[] = {
	{ 3, { 1, 1, 1 }, { 0.25, 0.25, 0.25 }, { 0.42, 0.42, 0.42 } },
	{ 3, { 10, 10, 10 }, { 0.25, 0.25, 0.25 }, { 0.42, 0.42, 0.42 } },
	{ 3, { 2, 1, 1 }, { 0.45, 0.20, 0.20 }, { 0.55, 0.30, 0.30 } },
	{ 2, { 3, 1 }, { 0.70, 0.20 }, { 0.80, 0.30 } },
	{ 5, { 1, 1, 1, 1, 1 }, { 0.17, 0.17, 0.17, 0.17, 0.17 },
	  { 0.23, 0.23, 0.23, 0.23, 0.23 } },
};

START_TEST(test_source_spread)
{
	static const char *const names[] = { "mx1", "mx2", "mx3", "mx4", "mx5" };
	const size_t v = (size_t)_i;
	const int total = 10000;
	struct test_pool tp;
	struct sockaddr_storage ss;
	unsigned count[MAXSRV] = { 0 };
	uint64_t seed = 42;

	tp_init_named(&tp, CFG_BALANCE_SOURCE, names,
	    spread_vectors[v].weight, spread_vectors[v].n);
	for (int k = 0; k < total; k++) {
		int i;

		sa_from_v4(&ss, (uint32_t)test_rand(&seed) & 0xffffff00u);
		i = pick_source(&tp, &ss);
		ck_assert_int_ge(i, 0);
		count[i]++;
	}
	for (size_t i = 0; i < spread_vectors[v].n; i++) {
		double share = (double)count[i] / total;

		ck_assert_msg(share >= spread_vectors[v].lo[i] &&
		    share <= spread_vectors[v].hi[i],
		    "vector %zu server %zu share %.3f", v, i, share);
	}
	tp_fini(&tp);
}
END_TEST

/*
 * Taking one server out (down, drained, full or tried) moves exactly the
 * clients it had, and no other; bringing it back restores the old map.
 */
START_TEST(test_source_remove_one)
{
	static const char *const names[] = { "mx1", "mx2", "mx3", "mx4" };
	enum { N = 10000 };
	struct test_pool tp;
	struct sockaddr_storage ss;
	static uint32_t nets[N];
	static int before[N];
	uint64_t seed = 7;

	tp_init_named(&tp, CFG_BALANCE_SOURCE, names, NULL, 4);
	for (int k = 0; k < N; k++) {
		nets[k] = (uint32_t)test_rand(&seed) & 0xffffff00u;
		sa_from_v4(&ss, nets[k]);
		before[k] = pick_source(&tp, &ss);
	}
	for (int out = 0; out < 4; out++) {
		for (int how = 0; how < 3; how++) {
			unsigned on_out = 0, moved = 0;

			if (how == 0)
				tp.view[out].usable = false;
			else if (how == 1)
				tp.tried[out] = true;
			else {
				tp.servers[out].max_connections = 1;
				tp.view[out].active = 1;
			}
			for (int k = 0; k < N; k++) {
				int now;

				sa_from_v4(&ss, nets[k]);
				now = pick_source(&tp, &ss);
				ck_assert_int_ge(now, 0);
				ck_assert_int_ne(now, out);
				if (before[k] == out)
					on_out++;
				else
					ck_assert_int_eq(now, before[k]);
				if (now != before[k])
					moved++;
			}
			ck_assert_uint_eq(moved, on_out);
			ck_assert_uint_gt(on_out, N / 8);
			tp.view[out].usable = true;
			tp.tried[out] = false;
			tp.servers[out].max_connections = 0;
			tp.view[out].active = 0;
			for (int k = 0; k < N; k += 7) {
				sa_from_v4(&ss, nets[k]);
				ck_assert_int_eq(pick_source(&tp, &ss), before[k]);
			}
		}
	}
	tp_fini(&tp);
}
END_TEST

/*
 * The map depends on names only: another host listing the servers in another
 * order, or with an extra server, sends a client to the same name (or to
 * the new server).
 */
START_TEST(test_source_by_name)
{
	static const char *const order_a[] = { "mx1", "mx2", "mx3" };
	static const char *const order_b[] = { "mx3", "mx1", "mx2" };
	static const char *const order_c[] = { "mx2", "mx4", "mx3", "mx1" };
	struct test_pool a, b, c;
	struct sockaddr_storage ss;
	uint64_t seed = 99;
	unsigned to_new = 0;

	tp_init_named(&a, CFG_BALANCE_SOURCE, order_a, NULL, 3);
	tp_init_named(&b, CFG_BALANCE_SOURCE, order_b, NULL, 3);
	tp_init_named(&c, CFG_BALANCE_SOURCE, order_c, NULL, 4);
	for (int k = 0; k < 5000; k++) {
		const char *na, *nb, *nc;

		sa_from_v4(&ss, (uint32_t)test_rand(&seed));
		na = order_a[pick_source(&a, &ss)];
		nb = order_b[pick_source(&b, &ss)];
		nc = order_c[pick_source(&c, &ss)];
		ck_assert_str_eq(na, nb);
		if (strcmp(nc, "mx4") == 0)
			to_new++;
		else
			ck_assert_str_eq(na, nc);
	}
	ck_assert_uint_gt(to_new, 5000 / 6);
	ck_assert_uint_lt(to_new, 5000 / 3);
	tp_fini(&a);
	tp_fini(&b);
	tp_fini(&c);
}
END_TEST

/* A retry goes to the next best by score: the same order on every host. */
START_TEST(test_source_retry_order)
{
	static const char *const names[] = { "mx1", "mx2", "mx3", "mx4", "mx5" };
	struct test_pool a, b;
	struct sockaddr_storage ss;
	uint64_t seed = 3;

	tp_init_named(&a, CFG_BALANCE_SOURCE, names, NULL, 5);
	tp_init_named(&b, CFG_BALANCE_SOURCE, names, NULL, 5);
	for (int k = 0; k < 200; k++) {
		int ia, ib, n = 0;

		sa_from_v4(&ss, (uint32_t)test_rand(&seed));
		memset(a.tried, 0, sizeof(a.tried));
		memset(b.tried, 0, sizeof(b.tried));
		b.view[(k + 1) % 5].usable = false;
		while ((ia = pick_source(&a, &ss)) != -1) {
			a.tried[ia] = true;
			if (!b.view[ia].usable)
				continue;	/* b never offers it */
			ib = pick_source(&b, &ss);
			ck_assert_int_eq(ib, ia);
			b.tried[ib] = true;
			n++;
		}
		ck_assert_int_eq(pick_source(&b, &ss), -1);
		ck_assert_int_eq(n, 4);
		b.view[(k + 1) % 5].usable = true;
	}
	tp_fini(&a);
	tp_fini(&b);
}
END_TEST

/* IPv6: the /64 is the client; distinct /64s spread; hosts never matter. */
START_TEST(test_source_ipv6)
{
	struct test_pool tp;
	struct sockaddr_storage ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	unsigned count[3] = { 0 };
	uint64_t seed = 11;

	tp_init_named(&tp, CFG_BALANCE_SOURCE, names3, NULL, 3);
	for (int k = 0; k < 3000; k++) {
		unsigned char net[8];
		uint64_t r = test_rand(&seed);
		int want;

		memcpy(net, &r, sizeof(net));
		net[0] = 0x20;
		net[1] = 0x01;
		memset(&ss, 0, sizeof(ss));
		sin6->sin6_family = AF_INET6;
		memcpy(sin6->sin6_addr.s6_addr, net, 8);
		want = pick_source(&tp, &ss);
		ck_assert_int_ge(want, 0);
		count[want]++;
		for (int h = 0; h < 4; h++) {
			uint64_t low = test_rand(&seed);

			memcpy(sin6->sin6_addr.s6_addr + 8, &low, 8);
			ck_assert_int_eq(pick_source(&tp, &ss), want);
		}
	}
	for (int i = 0; i < 3; i++)
		ck_assert_msg(count[i] >= 3000 / 4 && count[i] <= 3000 * 42 / 100,
		    "server %d has %u of 3000", i, count[i]);
	tp_fini(&tp);
}
END_TEST

/* ::ffff:a.b.c.d is the IPv4 client a.b.c.d, in key and in pick. */
START_TEST(test_source_mapped)
{
	struct test_pool tp;
	struct sockaddr_storage v4, v6;
	uint64_t seed = 5;

	tp_init_named(&tp, CFG_BALANCE_SOURCE, names3, NULL, 3);
	for (int k = 0; k < 2000; k++) {
		uint32_t a = (uint32_t)test_rand(&seed);
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&v6;
		uint32_t na = htonl(a);

		sa_from_v4(&v4, a);
		memset(&v6, 0, sizeof(v6));
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr.s6_addr[10] = 0xff;
		sin6->sin6_addr.s6_addr[11] = 0xff;
		memcpy(sin6->sin6_addr.s6_addr + 12, &na, 4);
		ck_assert_int_eq(pick_source(&tp, &v6), pick_source(&tp, &v4));
	}
	tp_fini(&tp);
}
END_TEST

/*
 * Two independent instances agree, and so does every host and build: the
 * values below were taken once from this implementation and pin the hash
 * (names + key only; no seed, no pointers, no per-process state).
 */
static const struct {
	const char *client;
	const char *expect;	/* server name among mx1..mx3 */
} golden_vectors[] = {
	{ "192.0.2.1", "mx2" },
	{ "198.51.100.77", "mx3" },
	{ "203.0.113.200", "mx3" },
	{ "10.1.2.3", "mx1" },
	{ "172.16.99.4", "mx1" },
	{ "2001:db8::25", "mx3" },
	{ "2001:db8:0:1::25", "mx3" },
	{ "2a00:1450:4001:81c::200e", "mx2" },
	{ "::ffff:192.0.2.200", "mx2" },
};

START_TEST(test_source_golden)
{
	const size_t v = (size_t)_i;
	struct test_pool a, b;
	struct sockaddr_storage ss;
	int ia;

	tp_init_named(&a, CFG_BALANCE_SOURCE, names3, NULL, 3);
	tp_init_named(&b, CFG_BALANCE_SOURCE, names3, NULL, 3);
	sa_from_text(&ss, golden_vectors[v].client);
	/* interleaved picks on a: source keeps no state between picks */
	bal_pick(a.bp, a.view, NULL, NULL);
	ia = pick_source(&a, &ss);
	ck_assert_int_eq(ia, pick_source(&b, &ss));
	ck_assert_int_eq(ia, pick_source(&a, &ss));
	ck_assert_str_eq(names3[ia], golden_vectors[v].expect);
	tp_fini(&a);
	tp_fini(&b);
}
END_TEST

/* ---- bal_client_key ---- */

static const struct {
	const char *client;
	unsigned prefix4, prefix6;
	int family;
	const char *key;	/* 32 hex digits */
} key_vectors[] = {
	{ "192.0.2.77", 24, 64, AF_INET, "c0000200000000000000000000000000" },
	{ "192.0.2.77", 32, 64, AF_INET, "c000024d000000000000000000000000" },
	{ "192.0.2.77", 99, 64, AF_INET, "c000024d000000000000000000000000" },
	{ "192.0.2.77", 0, 64, AF_INET, "00000000000000000000000000000000" },
	{ "192.0.2.77", 20, 64, AF_INET, "c0000000000000000000000000000000" },
	{ "192.0.3.77", 23, 64, AF_INET, "c0000200000000000000000000000000" },
	{ "192.0.2.77", 29, 64, AF_INET, "c0000248000000000000000000000000" },
	{ "255.255.255.255", 1, 64, AF_INET, "80000000000000000000000000000000" },
	{ "::ffff:192.0.2.77", 24, 64, AF_INET, "c0000200000000000000000000000000" },
	{ "::ffff:192.0.2.77", 32, 0, AF_INET, "c000024d000000000000000000000000" },
	{ "2001:db8:1:2:3:4:5:6", 24, 64, AF_INET6, "20010db8000100020000000000000000" },
	{ "2001:db8:1:2:3:4:5:6", 24, 48, AF_INET6, "20010db8000100000000000000000000" },
	{ "2001:db8:1:2:3:4:5:6", 24, 128, AF_INET6, "20010db8000100020003000400050006" },
	{ "2001:db8:1:2:3:4:5:6", 24, 200, AF_INET6, "20010db8000100020003000400050006" },
	{ "2001:db8:1:2:3:4:5:6", 24, 0, AF_INET6, "00000000000000000000000000000000" },
	{ "2001:db8:1:ffff:3:4:5:6", 24, 57, AF_INET6, "20010db80001ff800000000000000000" },
	{ "::1", 24, 64, AF_INET6, "00000000000000000000000000000000" },
	{ "::192.0.2.77", 24, 128, AF_INET6, "000000000000000000000000c000024d" },
};

static void
hex_of(char *out, const unsigned char *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

START_TEST(test_client_key_vectors)
{
	const size_t v = (size_t)_i;
	struct cfg_pool pool;
	struct sockaddr_storage ss;
	unsigned char key[16];
	char hex[33];

	memset(&pool, 0, sizeof(pool));
	pool.prefix4 = key_vectors[v].prefix4;
	pool.prefix6 = key_vectors[v].prefix6;
	sa_from_text(&ss, key_vectors[v].client);
	memset(key, 0xa5, sizeof(key));
	ck_assert_int_eq(bal_client_key(&pool, (const struct sockaddr *)&ss,
	    key), key_vectors[v].family);
	hex_of(hex, key, sizeof(key));
	ck_assert_msg(strcmp(hex, key_vectors[v].key) == 0, "%s: got %s",
	    key_vectors[v].client, hex);
}
END_TEST

START_TEST(test_client_key_other_families)
{
	struct cfg_pool pool;
	struct sockaddr_un sun;
	unsigned char key[16];
	static const unsigned char zero[16];

	memset(&pool, 0, sizeof(pool));
	pool.prefix4 = 24;
	pool.prefix6 = 64;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memset(key, 0xa5, sizeof(key));
	ck_assert_int_eq(bal_client_key(&pool, (const struct sockaddr *)&sun,
	    key), -1);
	ck_assert_mem_eq(key, zero, sizeof(key));
	memset(key, 0xa5, sizeof(key));
	ck_assert_int_eq(bal_client_key(&pool, NULL, key), -1);
	ck_assert_mem_eq(key, zero, sizeof(key));
}
END_TEST

/* A client with no IP under `source` still gets a server. */
START_TEST(test_source_non_ip_client)
{
	struct test_pool tp;
	struct sockaddr_un sun;

	tp_init_named(&tp, CFG_BALANCE_SOURCE, names3, NULL, 3);
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	for (int k = 0; k < 3; k++)
		ck_assert_int_eq(bal_pick(tp.bp, tp.view, NULL,
		    (const struct sockaddr *)&sun), k);
	tp_fini(&tp);
}
END_TEST

#define NVEC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
balancer_suite(void)
{
	Suite *s = suite_create("balancer");
	TCase *tc;

	tc = tcase_create("bal_pool_new");
	tcase_add_test(tc, test_pool_new_free);
	suite_add_tcase(s, tc);

	tc = tcase_create("bal_pick");
	tcase_add_loop_test(tc, test_pick_vectors, 0, NVEC(pick_vectors));
	tcase_add_test(tc, test_pick_tried_null);
	tcase_add_test(tc, test_pick_backup_failback);
	tcase_add_test(tc, test_pick_retry_loop);
	tcase_add_loop_test(tc, test_pick_load, 0, NVEC(load_vectors));
	tcase_add_test(tc, test_pick_leastconn_close);
	suite_add_tcase(s, tc);

	tc = tcase_create("bal_pick_source");
	tcase_add_test(tc, test_source_same_network);
	tcase_add_loop_test(tc, test_source_spread, 0, NVEC(spread_vectors));
	tcase_add_test(tc, test_source_remove_one);
	tcase_add_test(tc, test_source_by_name);
	tcase_add_test(tc, test_source_retry_order);
	tcase_add_test(tc, test_source_ipv6);
	tcase_add_test(tc, test_source_mapped);
	tcase_add_loop_test(tc, test_source_golden, 0, NVEC(golden_vectors));
	tcase_add_test(tc, test_source_non_ip_client);
	suite_add_tcase(s, tc);

	tc = tcase_create("bal_client_key");
	tcase_add_loop_test(tc, test_client_key_vectors, 0, NVEC(key_vectors));
	tcase_add_test(tc, test_client_key_other_families);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(balancer_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
