/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for admission (core/worker/admission.c, clients.c) and the
 * deny table (core/deny.c): reserve-before-check exactness with four
 * processes racing for the same network, a slot whose writer is stuck
 * mid-update refusing instead of counting as 0, the rate window with a
 * clock the test moves, the table full, the deny table's lookups by
 * prefix length (and their cost with 100,000 entries), expiry and the
 * state file.
 */
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "config/config.h"
#include "config/value.h"
#include "core/deny.h"
#include "core/runtime.h"
#include "core/shm.h"
#include "core/worker/admission.h"
#include "core/worker/clients.h"

#define NSLOTS 4

static struct config *cfg;
static bool shm_made;
static struct rt_listener listener;

static struct config *
load(const char *listener_extra)
{
	struct cfg_diag d = { 0 };
	struct config *c;
	char y[2048];

	snprintf(y, sizeof(y), "workers: %d\nhostname: t.test\n"
	    "listeners:\n  - name: l\n    bind: \"127.0.0.1:2525\"\n"
	    "    pool: p\n%s"
	    "pools:\n  p:\n    source_prefix: {ipv4: 24, ipv6: 64}\n"
	    "    servers:\n      - {name: s, address: \"127.0.0.1:2526\"}\n",
	    NSLOTS, listener_extra);
	cfg_set_resolve(false);
	c = cfg_load_string(y, strlen(y), "t.yaml", &d);
	ck_assert_msg(c != NULL, "config: %s", d.n > 0 ?
	    d.entries[0].message : "?");
	cfg_diag_free(&d);
	return c;
}

/* Shared memory with NSLOTS worker slots, all zeroed; this process is
 * the worker of slot 0. */
static void
setup(const char *listener_extra)
{
	cfg_free(cfg);
	cfg = load(listener_extra);
	if (!shm_made) {
		clients_shm_register(cfg);
		shm_create(cfg);
		deny_create();
		ck_assert_int_eq(shm_servers_reserve(1), 0);
		for (unsigned s = 0; s < NSLOTS; s++)
			ck_assert_int_eq(shm_slot_prepare(s, 1, 1), 0);
		shm_made = true;
	}
	for (unsigned s = 0; s < NSLOTS; s++)
		shm_slot_reset(s);
	shm_worker_attach(0);
	clients_attach();
	memset(&listener, 0, sizeof(listener));
	listener.cfg = &cfg->listeners[0];
	listener.slot = 0;
}

static struct sockaddr_in
v4(const char *ip)
{
	struct sockaddr_in sin;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_port = htons(40000);
	ck_assert_int_eq(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
	return sin;
}

static struct clients_key
key_of(const char *ip)
{
	struct clients_key k;
	struct sockaddr_in sin = v4(ip);

	memset(&k, 0, sizeof(k));
	k.family = AF_INET;
	memcpy(k.net, &sin.sin_addr, 3);	/* /24 */
	return k;
}

static enum admit_verdict
admit(const char *ip, struct admit_hold *h)
{
	struct sockaddr_in sin = v4(ip);
	char why[256];

	memset(h, 0, sizeof(*h));
	return admission_check(&listener, &cfg->pools[0],
	    (struct sockaddr *)&sin, h, why, sizeof(why));
}

/* ------------------------------------------------------------ exactness */

/*
 * Four processes on four worker slots race to admit the same network
 * (limit 1), each holding what it got for a moment. A shared counter of
 * sessions admitted and not yet released never goes over the limit:
 * reserving before checking makes that so (the old read-then-add did
 * not: two workers reading 1 both added).
 */
START_TEST(test_reserve_exact_across_processes)
{
	volatile int *state;
	pid_t pids[NSLOTS];
	int over = 0, admitted = 0, st;

	setup("    max_connections_per_client: 1\n");
	state = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED |
	    MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne((void *)state, MAP_FAILED);
	memset((void *)state, 0, 4096);
	for (unsigned w = 0; w < NSLOTS; w++) {
		pids[w] = fork();
		ck_assert_int_ne(pids[w], -1);
		if (pids[w] == 0) {
			struct admit_hold hold;

			shm_worker_attach(w);
			clients_attach();
			listener.slot = 0;
			__atomic_fetch_add(&state[0], 1, __ATOMIC_SEQ_CST);
			while (__atomic_load_n(&state[0], __ATOMIC_SEQ_CST) <
			    NSLOTS)
				;
			for (int i = 0; i < 20000; i++) {
				int now;

				if (admit("192.0.2.7", &hold) != ADMIT_OK)
					continue;
				now = __atomic_add_fetch(&state[1], 1,
				    __ATOMIC_SEQ_CST);
				if (now > 1)
					__atomic_fetch_add(&state[2], 1,
					    __ATOMIC_SEQ_CST);
				__atomic_fetch_add(&state[3], 1,
				    __ATOMIC_SEQ_CST);
				for (volatile int spin = 0; spin < 500; spin++)
					;
				__atomic_sub_fetch(&state[1], 1,
				    __ATOMIC_SEQ_CST);
				admission_release(&listener, &hold);
			}
			_exit(0);
		}
	}
	for (unsigned w = 0; w < NSLOTS; w++) {
		ck_assert_int_eq(waitpid(pids[w], &st, 0), pids[w]);
		ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	over = state[2];
	admitted = state[3];
	printf("4 processes x 20000 tries, limit 1: %d admitted, %d times "
	    "over the limit\n", admitted, over);
	ck_assert_int_eq(over, 0);
	ck_assert_int_gt(admitted, 100);
	munmap((void *)state, 4096);
}
END_TEST

/* One after another: the third from the network is refused, another
 * network is not, and a release makes room. */
START_TEST(test_per_client_limit_sequential)
{
	struct admit_hold a, b, c, d;

	setup("    max_connections_per_client: 2\n");
	ck_assert_int_eq(admit("192.0.2.1", &a), ADMIT_OK);
	ck_assert_int_eq(admit("192.0.2.2", &b), ADMIT_OK);
	ck_assert_int_eq(admit("192.0.2.3", &c), ADMIT_CLIENT_LIMIT);
	ck_assert(!c.listener && !c.client);	/* nothing kept */
	ck_assert_uint_eq(shm_listener_active(0), 2);
	ck_assert_int_eq(admit("192.0.3.1", &d), ADMIT_OK);
	admission_release(&listener, &a);
	ck_assert_int_eq(admit("192.0.2.3", &c), ADMIT_OK);
	admission_release(&listener, &b);
	admission_release(&listener, &c);
	admission_release(&listener, &d);
	ck_assert_uint_eq(shm_listener_active(0), 0);
}
END_TEST

START_TEST(test_max_connections_reserved)
{
	struct admit_hold a, b;

	setup("    max_connections: 1\n");
	ck_assert_int_eq(admit("192.0.2.1", &a), ADMIT_OK);
	ck_assert_int_eq(admit("198.51.100.1", &b), ADMIT_OVERLOAD);
	ck_assert_uint_eq(shm_listener_active(0), 1);
	admission_release(&listener, &a);
	ck_assert_int_eq(admit("198.51.100.1", &b), ADMIT_OK);
	admission_release(&listener, &b);
}
END_TEST

/*
 * A worker stopped in the middle of a write to its table (its sequence
 * odd): a reader never takes that slot for 0. It gives up after a bound
 * and admission refuses (fail closed); once the master zeroes the slot
 * (the worker reaped) the network is counted again.
 */
START_TEST(test_stuck_writer_refuses)
{
	struct clients_key k = key_of("192.0.2.9");
	struct admit_hold a;
	uint32_t *seq, sum = 99;

	setup("    max_connections_per_client: 5\n");
	shm_worker_attach(1);
	clients_attach();
	ck_assert_int_eq(clients_add(&k, +1), 0);
	shm_worker_attach(0);
	clients_attach();
	ck_assert_int_eq(clients_count(&k, &sum), 0);
	ck_assert_uint_eq(sum, 1);
	seq = (uint32_t *)shm_slot_region(1, SHM_SLOT_CLIENTS, NULL);
	ck_assert_ptr_nonnull(seq);
	__atomic_store_n(seq, *seq + 1, __ATOMIC_RELEASE);	/* odd */
	ck_assert_int_eq(clients_count(&k, &sum), -1);
	ck_assert_int_eq(admit("192.0.2.10", &a), ADMIT_OVERLOAD);
	ck_assert(!a.listener && !a.client);
	shm_slot_reset(1);
	ck_assert_int_eq(clients_count(&k, &sum), 0);
	ck_assert_uint_eq(sum, 0);
	ck_assert_int_eq(admit("192.0.2.10", &a), ADMIT_OK);
	admission_release(&listener, &a);
}
END_TEST

START_TEST(test_exceptions)
{
	struct admit_hold a[4];

	setup("    max_connections_per_client: 1\n"
	    "    max_connection_rate_per_client: 1\n"
	    "    client_limit_exceptions: [192.0.2.0/25]\n");
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(admit("192.0.2.5", &a[i]), ADMIT_OK);
	ck_assert_int_eq(admit("192.0.2.200", &a[3]), ADMIT_OK);
	ck_assert_int_eq(admit("192.0.2.201", &a[3]), ADMIT_CLIENT_LIMIT);
	for (int i = 0; i < 3; i++)
		admission_release(&listener, &a[i]);
}
END_TEST

/* ------------------------------------------------------------ rate */

static uint32_t fake_now;
static uint32_t (*real_clock)(void);

static uint32_t
fake_clock(void)
{
	return fake_now;
}

START_TEST(test_rate_window)
{
	struct admit_hold h;
	int served = 0;

	setup("    max_connection_rate_per_client: 30\n");
	real_clock = clients_rate_clock;
	clients_rate_clock = fake_clock;
	fake_now = 1000;
	/* 15 on this worker, 15 on another: the minute is shared. */
	for (int i = 0; i < 15; i++) {
		ck_assert_int_eq(admit("192.0.2.1", &h), ADMIT_OK);
		admission_release(&listener, &h);
	}
	shm_worker_attach(2);
	clients_attach();
	fake_now = 1010;
	for (int i = 0; i < 15; i++) {
		ck_assert_int_eq(admit("192.0.2.2", &h), ADMIT_OK);
		admission_release(&listener, &h);
	}
	ck_assert_int_eq(admit("192.0.2.3", &h), ADMIT_CLIENT_RATE);
	ck_assert_int_eq(admit("198.51.100.3", &h), ADMIT_OK);
	admission_release(&listener, &h);
	shm_worker_attach(0);
	clients_attach();
	ck_assert_int_eq(admit("192.0.2.3", &h), ADMIT_CLIENT_RATE);
	/* Second 1059: the 15 of second 1000 still count. */
	fake_now = 1059;
	for (int i = 0; i < 5; i++)
		ck_assert_int_eq(admit("192.0.2.3", &h), ADMIT_CLIENT_RATE);
	/* Second 1060: they are a minute old; 15 of room again. */
	fake_now = 1060;
	for (int i = 0; i < 20; i++) {
		if (admit("192.0.2.3", &h) == ADMIT_OK) {
			served++;
			admission_release(&listener, &h);
		}
	}
	ck_assert_int_eq(served, 15);
	/* Long after: all forgotten. */
	fake_now = 5000;
	ck_assert_int_eq(admit("192.0.2.3", &h), ADMIT_OK);
	admission_release(&listener, &h);
	clients_rate_clock = real_clock;
}
END_TEST

/* A worker exits (a reload, a crash): the master moves its counts to the
 * retired table before it zeroes the slot, so its networks do not get a
 * fresh minute. */
START_TEST(test_rate_survives_worker_exit)
{
	struct admit_hold h;

	setup("    max_connection_rate_per_client: 10\n");
	clients_rate_retired_create();
	real_clock = clients_rate_clock;
	clients_rate_clock = fake_clock;
	fake_now = 2000;
	shm_worker_attach(3);
	clients_attach();
	for (int i = 0; i < 6; i++) {
		ck_assert_int_eq(admit("192.0.2.1", &h), ADMIT_OK);
		admission_release(&listener, &h);
	}
	fake_now = 2030;
	clients_rate_retire(3);
	shm_slot_reset(3);
	clients_rate_retire(3);		/* nothing left: counted once */
	shm_worker_attach(0);
	clients_attach();
	for (int i = 0; i < 4; i++) {
		ck_assert_int_eq(admit("192.0.2.2", &h), ADMIT_OK);
		admission_release(&listener, &h);
	}
	ck_assert_int_eq(admit("192.0.2.3", &h), ADMIT_CLIENT_RATE);
	/* Those six were of second 2000: gone at 2060. */
	fake_now = 2060;
	for (int i = 0; i < 6; i++) {
		ck_assert_int_eq(admit("192.0.2.3", &h), ADMIT_OK);
		admission_release(&listener, &h);
	}
	ck_assert_int_eq(admit("192.0.2.3", &h), ADMIT_CLIENT_RATE);
	clients_rate_clock = real_clock;
}
END_TEST

START_TEST(test_rate_table_full_forgets_oldest)
{
	struct clients_key k;
	uint32_t sum, sec;

	setup("");
	real_clock = clients_rate_clock;
	clients_rate_clock = fake_clock;
	fake_now = 100;
	k = key_of("192.0.2.1");
	ck_assert_int_eq(clients_rate_reserve(&k, &sum, &sec), 0);
	fake_now = 130;
	for (uint32_t i = 0; i < CLIENTS_RATE_NETWORKS + 10; i++) {
		memset(&k, 0, sizeof(k));
		k.family = AF_INET6;
		memcpy(k.net, &i, sizeof(i));
		ck_assert_int_eq(clients_rate_reserve(&k, &sum, &sec), 0);
		ck_assert_uint_eq(sum, 1);
	}
	ck_assert_uint_gt(clients_rate_evictions(), 0);
	/* The one that connected least recently went first. */
	k = key_of("192.0.2.1");
	ck_assert_int_eq(clients_rate_count(&k, &sum), 0);
	ck_assert_uint_eq(sum, 0);
	clients_rate_clock = real_clock;
}
END_TEST

/* ------------------------------------------------------------ deny */

static struct cfg_cidr
cidr(const char *s)
{
	struct cfg_cidr c;
	char err[256];

	ck_assert_msg(cfg_parse_cidr(s, &c, err, sizeof(err)) == 0, "%s", err);
	return c;
}

static enum deny_verdict
lookup(const char *ip, int64_t now, char *hit, size_t cap)
{
	struct cfg_cidr a, h;
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} u;
	enum deny_verdict v;

	memset(&u, 0, sizeof(u));
	if (strchr(ip, ':') != NULL) {
		u.in6.sin6_family = AF_INET6;
		ck_assert_int_eq(inet_pton(AF_INET6, ip, &u.in6.sin6_addr), 1);
	} else {
		u.in.sin_family = AF_INET;
		ck_assert_int_eq(inet_pton(AF_INET, ip, &u.in.sin_addr), 1);
	}
	ck_assert(deny_addr_of(&u.sa, &a));
	v = deny_lookup(&a, now, &h);
	if (hit != NULL) {
		if (v == DENY_YES)
			deny_cidr_fmt(&h, hit, cap);
		else
			snprintf(hit, cap, "-");
	}
	return v;
}

static bool
empty_one(const struct deny_entry *e, void *arg)
{
	struct cfg_cidr **list = arg;

	**list = e->net;
	(*list)++;
	return true;
}

/* Remove every entry (tests share one table when not forked). */
static void
deny_clear(void)
{
	struct cfg_cidr *all = calloc(DENY_MAX, sizeof(*all)), *end = all;

	ck_assert_ptr_nonnull(all);
	deny_foreach(empty_one, &end);
	for (struct cfg_cidr *c = all; c < end; c++)
		ck_assert(deny_del(c));
	free(all);
	ck_assert_uint_eq(deny_count(), 0);
}

START_TEST(test_deny_prefix_lengths)
{
	struct cfg_cidr c;
	char err[128], hit[64];
	int64_t now = 1000000;

	setup("");
	deny_clear();
	c = cidr("192.0.2.0/24");
	ck_assert_int_eq(deny_add(&c, 0, now, "net", err, sizeof(err)), 0);
	c = cidr("192.0.2.7");
	ck_assert_int_eq(deny_add(&c, now + 3000, now, "host", err,
	    sizeof(err)), 0);
	c = cidr("2001:db8::/32");
	ck_assert_int_eq(deny_add(&c, 0, now, "v6", err, sizeof(err)), 0);
	ck_assert_uint_eq(deny_count(), 3);
	ck_assert_int_eq(lookup("192.0.2.7", now, hit, sizeof(hit)),
	    DENY_YES);
	ck_assert_str_eq(hit, "192.0.2.7");	/* the longest */
	ck_assert_int_eq(lookup("192.0.2.200", now, hit, sizeof(hit)),
	    DENY_YES);
	ck_assert_str_eq(hit, "192.0.2.0/24");
	ck_assert_int_eq(lookup("192.0.3.1", now, NULL, 0), DENY_NO);
	ck_assert_int_eq(lookup("::ffff:192.0.2.9", now, hit, sizeof(hit)),
	    DENY_YES);
	ck_assert_int_eq(lookup("2001:db8:1::5", now, hit, sizeof(hit)),
	    DENY_YES);
	ck_assert_str_eq(hit, "2001:db8::/32");
	ck_assert_int_eq(lookup("2001:db9::5", now, NULL, 0), DENY_NO);
	c = cidr("::ffff:203.0.113.0/120");
	deny_cidr_unmap(&c);
	ck_assert_int_eq(c.family, AF_INET);
	ck_assert_uint_eq(c.prefix, 24);
	deny_cidr_fmt(&c, hit, sizeof(hit));
	ck_assert_str_eq(hit, "203.0.113.0/24");
	/* Expired: ignored by readers at once, removed by the sweep. */
	ck_assert_int_eq(lookup("192.0.2.7", now + 3000, hit, sizeof(hit)),
	    DENY_YES);
	ck_assert_str_eq(hit, "192.0.2.0/24");
	c = cidr("192.0.2.0/24");
	ck_assert(deny_del(&c));
	ck_assert(!deny_del(&c));
	ck_assert_int_eq(lookup("192.0.2.7", now + 2999, NULL, 0), DENY_YES);
	ck_assert_int_eq(lookup("192.0.2.7", now + 3000, NULL, 0), DENY_NO);
	{
		int64_t next;

		ck_assert_uint_eq(deny_expire(now + 10, NULL, NULL, &next), 0);
		ck_assert_int_eq(next, now + 3000);
		ck_assert_uint_eq(deny_expire(now + 3000, NULL, NULL, &next),
		    1);
		ck_assert_int_eq(next, 0);
	}
	ck_assert_uint_eq(deny_count(), 1);
	deny_clear();
}
END_TEST

/* The master stopped in the middle of a write: a reader waits a moment,
 * then says it cannot tell, and admission refuses (421), never admits. */
START_TEST(test_deny_stuck_writer_refuses)
{
	struct admit_hold h;
	struct cfg_cidr c;
	char err[128];

	setup("");
	deny_clear();
	c = cidr("192.0.2.66");
	ck_assert_int_eq(deny_add(&c, 0, 1, "", err, sizeof(err)), 0);
	deny_write_hold(true);
	ck_assert_int_eq(lookup("192.0.2.66", 1, NULL, 0), DENY_UNKNOWN);
	ck_assert_int_eq(lookup("192.0.2.55", 1, NULL, 0), DENY_UNKNOWN);
	ck_assert_int_eq(admit("192.0.2.55", &h), ADMIT_OVERLOAD);
	ck_assert(!h.listener && !h.client);
	deny_write_hold(false);
	ck_assert_int_eq(lookup("192.0.2.66", 1, NULL, 0), DENY_YES);
	ck_assert_int_eq(admit("192.0.2.66", &h), ADMIT_DENIED_RUNTIME);
	ck_assert_int_eq(admit("192.0.2.55", &h), ADMIT_OK);
	admission_release(&listener, &h);
	deny_clear();
}
END_TEST

static double
lookups_ns(int n)
{
	struct timespec a, b;
	char ip[32];
	int hits = 0;

	clock_gettime(CLOCK_MONOTONIC, &a);
	for (int i = 0; i < n; i++) {
		snprintf(ip, sizeof(ip), "203.0.%d.%d", (i >> 8) & 255, i & 255);
		hits += lookup(ip, 1, NULL, 0) == DENY_YES;
	}
	clock_gettime(CLOCK_MONOTONIC, &b);
	ck_assert_int_eq(hits, 0);
	return ((double)(b.tv_sec - a.tv_sec) * 1e9 +
	    (double)(b.tv_nsec - a.tv_nsec)) / n;
}

/* 100,000 entries over three prefix lengths: a lookup costs about what
 * it costs with ten (one probe per length in use), and the table takes
 * no more; past DENY_MAX an add fails, saying why. */
START_TEST(test_deny_100000)
{
	struct cfg_cidr c;
	char err[128], net[64];
	double small, big;

	setup("");
	deny_clear();
	for (int i = 0; i < 10; i++) {
		snprintf(net, sizeof(net), i % 3 == 0 ? "10.0.%d.0/24" :
		    i % 3 == 1 ? "10.1.0.%d" : "10.%d.0.0/16", 10 + i);
		c = cidr(net);
		ck_assert_int_eq(deny_add(&c, 0, 1, "", err, sizeof(err)), 0);
	}
	small = lookups_ns(200000);
	deny_clear();
	for (int i = 0; i < 100000; i++) {
		if (i < 200)
			snprintf(net, sizeof(net), "10.%d.0.0/16", i);
		else if (i < 20000)
			snprintf(net, sizeof(net), "11.%d.%d.0/24", i >> 8,
			    i & 255);
		else
			snprintf(net, sizeof(net), "12.%d.%d.%d", i >> 16,
			    (i >> 8) & 255, i & 255);
		c = cidr(net);
		ck_assert_int_eq(deny_add(&c, 0, 1, "bulk", err, sizeof(err)),
		    0);
	}
	ck_assert_uint_eq(deny_count(), 100000);
	ck_assert_int_eq(lookup("12.1.134.159", 1, net, sizeof(net)),
	    DENY_YES);
	ck_assert_str_eq(net, "12.1.134.159");
	ck_assert_int_eq(lookup("11.3.4.99", 1, net, sizeof(net)), DENY_YES);
	ck_assert_str_eq(net, "11.3.4.0/24");
	big = lookups_ns(200000);
	printf("deny lookup (a miss, 3 prefix lengths in use): %.0f ns with "
	    "10 entries, %.0f ns with 100,000\n", small, big);
	ck_assert_msg(big < small * 4 + 200, "%.0f ns vs %.0f ns", big,
	    small);
	for (int i = 100000; i < DENY_MAX; i++) {
		snprintf(net, sizeof(net), "13.%d.%d.%d", i >> 16,
		    (i >> 8) & 255, i & 255);
		c = cidr(net);
		ck_assert_int_eq(deny_add(&c, 0, 1, "", err, sizeof(err)), 0);
	}
	c = cidr("14.0.0.1");
	ck_assert_int_eq(deny_add(&c, 0, 1, "", err, sizeof(err)), -1);
	ck_assert_str_eq(err, "deny table full (131072 entries)");
	/* Replacing one that is there still works when full. */
	c = cidr("13.1.134.160");
	ck_assert_int_eq(deny_add(&c, 5, 1, "again", err, sizeof(err)), 0);
	deny_clear();
}
END_TEST

START_TEST(test_deny_state_file)
{
	char dir[] = "/tmp/sfdenyXXXXXX", path[128], err[256];
	struct cfg_cidr c;
	int64_t now = deny_now_ms();
	size_t skipped;
	FILE *f;

	setup("");
	deny_clear();
	ck_assert_ptr_nonnull(mkdtemp(dir));
	c = cidr("192.0.2.66");
	ck_assert_int_eq(deny_add(&c, 0, now, "fail2ban:postfix", err,
	    sizeof(err)), 0);
	c = cidr("2001:db8::/48");
	ck_assert_int_eq(deny_add(&c, now + 3600000, now, "by hand, two "
	    "words", err, sizeof(err)), 0);
	c = cidr("198.51.100.0/24");
	ck_assert_int_eq(deny_add(&c, now + 1, now, "soon gone", err,
	    sizeof(err)), 0);
	usleep(5000);
	ck_assert_int_eq(deny_save(dir, err, sizeof(err)), 0);
	deny_clear();
	/* A line that cannot be read is skipped, the rest loads. */
	snprintf(path, sizeof(path), "%s/%s", dir, DENY_STATE_FILE);
	f = fopen(path, "a");
	ck_assert_ptr_nonnull(f);
	fprintf(f, "not-a-network 0 0 junk\n192.0.2.1 x 0 bad\n");
	fclose(f);
	ck_assert_int_eq(deny_load(dir, &skipped, err, sizeof(err)), 2);
	ck_assert_uint_eq(skipped, 2);
	ck_assert_int_eq(lookup("192.0.2.66", now, NULL, 0), DENY_YES);
	ck_assert_int_eq(lookup("2001:db8:0:1::1", now, NULL, 0), DENY_YES);
	ck_assert_int_eq(lookup("198.51.100.1", now, NULL, 0), DENY_NO);
	deny_clear();
	unlink(path);
	ck_assert_int_eq(deny_load(dir, &skipped, err, sizeof(err)), 0);
	rmdir(dir);
}
END_TEST

static Suite *
admission_suite(void)
{
	Suite *s = suite_create("admission");
	TCase *tc;

	tc = tcase_create("admission_check");
	tcase_add_test(tc, test_reserve_exact_across_processes);
	tcase_add_test(tc, test_per_client_limit_sequential);
	tcase_add_test(tc, test_max_connections_reserved);
	tcase_add_test(tc, test_stuck_writer_refuses);
	tcase_add_test(tc, test_exceptions);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	tc = tcase_create("clients_rate");
	tcase_add_test(tc, test_rate_window);
	tcase_add_test(tc, test_rate_survives_worker_exit);
	tcase_add_test(tc, test_rate_table_full_forgets_oldest);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	tc = tcase_create("deny");
	tcase_add_test(tc, test_deny_prefix_lengths);
	tcase_add_test(tc, test_deny_stuck_writer_refuses);
	tcase_add_test(tc, test_deny_100000);
	tcase_add_test(tc, test_deny_state_file);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(admission_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	cfg_free(cfg);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
