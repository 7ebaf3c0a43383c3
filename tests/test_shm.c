/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/shm.c: the health seqlock (a writer killed in the
 * middle of a write; a writer stopped halfway before a read and during
 * one, deterministically; torn reads under a live writer), growth seen by a
 * child forked before it, worker slots (sums, totals that survive a reset,
 * a slot that needs a bigger block), the size a config needs, and an
 * upgrade's adoption of the memory file.
 */
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <check.h>

#include "config/config.h"
#include "core/net.h"
#include "core/shm.h"

static struct config *
test_config(unsigned workers, unsigned servers)
{
	struct cfg_diag d = { 0 };
	struct config *cfg;
	size_t cap = 256 + servers * 64, off;
	char *y = malloc(cap);

	ck_assert_ptr_nonnull(y);
	off = (size_t)snprintf(y, cap, "workers: %u\nhostname: t.test\n"
	    "listeners:\n  - {name: l, bind: \"127.0.0.1:2525\", pool: p}\n"
	    "pools:\n  p:\n    servers:\n", workers);
	for (unsigned i = 0; i < servers; i++)
		off += (size_t)snprintf(y + off, cap - off, "      - {name: s%u, "
		    "address: \"127.0.0.1:%u\"}\n", i, 1000 + i % 60000);
	cfg_set_resolve(false);
	cfg = cfg_load_string(y, off, "t.yaml", &d);
	ck_assert_msg(cfg != NULL, "config: %s", d.n > 0 ?
	    d.entries[0].message : "?");
	cfg_diag_free(&d);
	free(y);
	return cfg;
}

/* A fresh mapping for this test (Check forks each test, normally). */
static void
test_shm_create(void)
{
	struct config *cfg = test_config(2, 1);

	shm_create(cfg);
	cfg_free(cfg);
	ck_assert_int_eq(shm_servers_reserve(16), 0);
}

static struct shm_health_snapshot
snap(enum shm_health st, const char *reason, uint32_t checks)
{
	struct shm_health_snapshot s;

	memset(&s, 0, sizeof(s));
	s.state = st;
	snprintf(s.reason, sizeof(s.reason), "%s", reason);
	s.check_ms = checks * 1.5;
	s.last_check_us = 1000 + checks;
	s.checks = checks;
	s.changed_us = 500 + checks;
	s.down_us = 20000 + checks;
	return s;
}

static bool
snap_eq(const struct shm_health_snapshot *a,
    const struct shm_health_snapshot *b)
{
	return a->state == b->state && strcmp(a->reason, b->reason) == 0 &&
	    a->check_ms == b->check_ms && a->last_check_us == b->last_check_us &&
	    a->checks == b->checks && a->changed_us == b->changed_us &&
	    a->down_us == b->down_us;
}

START_TEST(test_health_round_trip)
{
	struct shm_health_snapshot in = snap(SHM_HEALTH_DOWN,
	    "connect: connection refused", 7), out;

	test_shm_create();
	shm_health_publish(3, &in);
	ck_assert(shm_health_read(3, &out));
	ck_assert(snap_eq(&in, &out));
	ck_assert_int_eq(shm_health_state(3), SHM_HEALTH_DOWN);
	/* A slot beyond what was reserved: defined, never a crash. */
	ck_assert(!shm_health_read(100000, &out));
	ck_assert_int_eq(out.state, SHM_HEALTH_UNKNOWN);
	ck_assert_int_eq(shm_admin_get(100000), SHM_ADMIN_READY);
}
END_TEST

START_TEST(test_health_killed_writer)
{
	struct shm_health_snapshot good = snap(SHM_HEALTH_UP, "EHLO ok", 4);
	struct shm_health_snapshot junk, out;
	int status;
	pid_t pid;

	test_shm_create();
	shm_health_publish(5, &good);
	memset(&junk, 'J', sizeof(junk));	/* no NUL in the reason */
	junk.state = SHM_HEALTH_DOWN;
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		/* A writer that dies between starting and ending a write. */
		shm_health_write_begin(5);
		shm_health_write_fields(5, &junk);
		raise(SIGKILL);
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
	/* The reader gives up with a defined answer, not the torn record. */
	ck_assert(!shm_health_read(5, &out));
	ck_assert_int_eq(out.state, SHM_HEALTH_UNKNOWN);
	ck_assert_uint_eq(out.checks, 0);
	ck_assert_ptr_nonnull(strstr(out.reason, "unreadable"));
	ck_assert_ptr_null(strchr(out.reason, 'J'));
	/* The next writer repairs it to a defined record, not the junk. */
	shm_health_recover(5);
	ck_assert(shm_health_read(5, &out));
	ck_assert_int_eq(out.state, SHM_HEALTH_UNKNOWN);
	ck_assert_ptr_null(strchr(out.reason, 'J'));
	ck_assert_uint_lt(strlen(out.reason), SHM_REASON_MAX);
	shm_health_publish(5, &good);
	ck_assert(shm_health_read(5, &out));
	ck_assert(snap_eq(&good, &out));
}
END_TEST

/* The torn record a writer leaves when it stops halfway: a reason with no
 * NUL and a state the record it replaces did not have. */
static struct shm_health_snapshot
junk_snap(void)
{
	struct shm_health_snapshot junk;

	memset(&junk, 'J', sizeof(junk));
	junk.state = SHM_HEALTH_DOWN;
	return junk;
}

/* What every reader must get while the record cannot be read whole. */
static void
assert_fallback(const struct shm_health_snapshot *out)
{
	ck_assert_int_eq(out->state, SHM_HEALTH_UNKNOWN);
	ck_assert_uint_eq(out->checks, 0);
	ck_assert(out->check_ms == 0 && out->last_check_us == 0);
	ck_assert_ptr_nonnull(strstr(out->reason, "unreadable"));
	ck_assert_ptr_null(strchr(out->reason, 'J'));
}

/* A forked writer that begins a write, fills half of it and is stopped
 * there (the sequence left odd), until `go` says continue: it then
 * finishes as a new writer would (recover), and publishes `then`. */
static pid_t
stopping_writer(unsigned server, int wait_fd,
    const struct shm_health_snapshot *then)
{
	struct shm_health_snapshot junk = junk_snap();
	pid_t pid = fork();
	char c;

	ck_assert_int_ne(pid, -1);
	if (pid != 0)
		return pid;
	/* Never left stopped behind a test that failed. */
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) == -1 || getppid() == 1)
		_exit(3);
	if (wait_fd != -1 && read(wait_fd, &c, 1) != 1)
		_exit(2);
	shm_health_write_begin(server);
	shm_health_write_fields(server, &junk);
	raise(SIGSTOP);
	shm_health_recover(server);
	shm_health_publish(server, then);
	_exit(0);
}

static void
wait_stopped(pid_t pid)
{
	int status;

	ck_assert_int_eq(waitpid(pid, &status, WUNTRACED), pid);
	ck_assert_msg(WIFSTOPPED(status), "writer not stopped: status %#x",
	    status);
}

static void
resume_and_reap(pid_t pid)
{
	int status;

	ck_assert_int_eq(kill(pid, SIGCONT), 0);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

/* Deterministic: the writer is stopped halfway before the reader starts
 * (sequence odd): every read gives up with the fallback, a copy (reload)
 * carries the fallback, and once the writer ends its write the record
 * reads whole again. */
START_TEST(test_health_stopped_writer)
{
	struct shm_health_snapshot a = snap(SHM_HEALTH_UP, "EHLO ok", 4);
	struct shm_health_snapshot b = snap(SHM_HEALTH_DOWN, "connect: "
	    "connection refused", 5);
	struct shm_health_snapshot out;
	pid_t pid;

	test_shm_create();
	shm_health_publish(5, &a);
	pid = stopping_writer(5, -1, &b);
	wait_stopped(pid);
	for (int i = 0; i < 3; i++) {
		memset(&out, 'X', sizeof(out));
		ck_assert(!shm_health_read(5, &out));
		assert_fallback(&out);
	}
	shm_health_copy(6, 5);
	ck_assert(shm_health_read(6, &out));
	ck_assert_int_eq(out.state, SHM_HEALTH_UNKNOWN);
	ck_assert_ptr_null(strchr(out.reason, 'J'));
	resume_and_reap(pid);
	ck_assert(shm_health_read(5, &out));
	ck_assert(snap_eq(&out, &b));
}
END_TEST

static pid_t hook_writer = -1;
static int hook_go = -1;
static unsigned hook_calls;

/* The reader has its first field of the record (the sequence was even):
 * now the writer starts, and stops halfway. */
static void
hook_start_writer(unsigned server)
{
	(void)server;
	if (hook_calls++ > 0)
		return;
	ck_assert_int_eq(write(hook_go, "x", 1), 1);
	wait_stopped(hook_writer);
}

/* Deterministic: the writer starts while the reader is in the middle of
 * its copy, so the copy is half old, half torn: the reader must see the
 * sequence moved and give up, never return what it copied. */
START_TEST(test_health_write_during_read)
{
	struct shm_health_snapshot a = snap(SHM_HEALTH_UP, "EHLO ok", 4);
	struct shm_health_snapshot b = snap(SHM_HEALTH_DOWN, "connect: "
	    "connection refused", 5);
	struct shm_health_snapshot out;
	int go[2];

	test_shm_create();
	shm_health_publish(7, &a);
	ck_assert_int_eq(pipe(go), 0);
	hook_writer = stopping_writer(7, go[0], &b);
	hook_go = go[1];
	hook_calls = 0;
	shm_health_read_hook = hook_start_writer;
	memset(&out, 'X', sizeof(out));
	ck_assert(!shm_health_read(7, &out));
	shm_health_read_hook = NULL;
	/* Later tries saw the sequence odd and copied nothing. */
	ck_assert_uint_eq(hook_calls, 1);
	assert_fallback(&out);
	resume_and_reap(hook_writer);
	close(go[0]);
	close(go[1]);
	ck_assert(shm_health_read(7, &out));
	ck_assert(snap_eq(&out, &b));
}
END_TEST

START_TEST(test_health_no_torn_reads)
{
	struct shm_health_snapshot a = snap(SHM_HEALTH_UP, "EHLO ok", 1);
	struct shm_health_snapshot b = snap(SHM_HEALTH_DOWN, "timeout waiting "
	    "for greeting; a longer reason than the other one, to be torn", 2);
	struct shm_health_snapshot out;
	unsigned na = 0, nb = 0, nfallback = 0;
	int fds[2];
	char c;
	pid_t pid;

	test_shm_create();
	shm_health_publish(1, &a);
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		close(fds[0]);
		(void)!write(fds[1], "x", 1);
		/* As fast as it goes, with a breath between writes as any
		 * real writer has (a check takes milliseconds). */
		for (unsigned i = 0; ; i++) {
			struct timespec t0, t1;

			shm_health_publish(1, i % 2 ? &b : &a);
			clock_gettime(CLOCK_MONOTONIC, &t0);
			do
				clock_gettime(CLOCK_MONOTONIC, &t1);
			while ((t1.tv_sec - t0.tv_sec) * 1000000000L +
			    t1.tv_nsec - t0.tv_nsec < 2000);
		}
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], &c, 1), 1);
	/* 200000 reads or 3 s, whichever comes first (valgrind is slow),
	 * and on until both records were seen (the writer may start late
	 * on a busy machine), within 10 s. */
	for (int64_t t0 = net_now_us(); ((na + nb + nfallback < 200000 &&
	    net_now_us() < t0 + 3000000) || na == 0 || nb == 0) &&
	    net_now_us() < t0 + 10000000;) {
		if (!shm_health_read(1, &out)) {
			/* Gave up: the defined fallback, never a mix. */
			ck_assert_int_eq(out.state, SHM_HEALTH_UNKNOWN);
			ck_assert_uint_eq(out.checks, 0);
			nfallback++;
			continue;
		}
		if (snap_eq(&out, &a))
			na++;
		else if (snap_eq(&out, &b))
			nb++;
		else
			ck_abort_msg("torn read: state %d reason \"%.40s\" "
			    "checks %u", out.state, out.reason, out.checks);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	close(fds[0]);
	ck_assert_uint_gt(na, 0);
	ck_assert_uint_gt(nb, 0);
	/* Giving up is for a writer stopped mid-update; one preempted there
	 * on a loaded machine makes every read of its time slice give up,
	 * so the bound is a share of the reads, not a count (CI's sanitizer
	 * run under load went over a count of 2000 once). */
	ck_assert_msg(nfallback * 4 < na + nb + nfallback, "%u of %u reads "
	    "gave up", nfallback, na + nb + nfallback);
}
END_TEST

START_TEST(test_growth_seen_by_older_child)
{
	struct shm_health_snapshot late = snap(SHM_HEALTH_UP, "late", 9);
	int go[2], status;
	char c;
	pid_t pid;

	test_shm_create();
	ck_assert_int_eq(shm_slot_prepare(0, 4, 1), 0);
	ck_assert_int_eq(pipe(go), 0);
	pid = fork();
	ck_assert_int_ne(pid, -1);
	if (pid == 0) {
		struct shm_health_snapshot out;
		bool ok;

		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		/* All of this was made after this process was forked. */
		ok = shm_health_read(2999, &out) && snap_eq(&out, &late) &&
		    shm_server_active(2999) == 3 && shm_slot_active(7) == 0 &&
		    shm_admin_get(2999) == SHM_ADMIN_DRAIN;
		_exit(ok ? 0 : 1);
	}
	close(go[0]);
	ck_assert_int_eq(shm_servers_reserve(3000), 0);
	ck_assert_int_eq(shm_slot_prepare(7, 3000, 1), 0);
	shm_health_publish(2999, &late);
	shm_admin_set(2999, SHM_ADMIN_DRAIN);
	shm_worker_attach(7);
	shm_server_add(2999, +3);
	ck_assert_int_eq(write(go[1], "g", 1), 1);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 0);
	close(go[1]);
}
END_TEST

START_TEST(test_slots_sum_and_keep_totals)
{
	test_shm_create();
	ck_assert_int_eq(shm_slot_prepare(0, 8, 2), 0);
	ck_assert_int_eq(shm_slot_prepare(1, 8, 2), 0);
	shm_worker_attach(0);
	shm_listener_add(1, +2);
	shm_server_add(3, +2);
	for (int i = 0; i < 5; i++)
		shm_server_count_session(3);
	shm_server_failure(3);
	shm_worker_attach(1);
	shm_listener_add(1, +1);
	shm_server_add(3, +1);
	shm_server_count_session(3);
	ck_assert_uint_eq(shm_listener_active(1), 3);
	ck_assert_uint_eq(shm_server_active(3), 3);
	ck_assert_uint_eq(shm_slot_active(0), 2);
	ck_assert_uint_eq(shm_server_total(3), 6);
	ck_assert_uint_eq(shm_server_failures(3), 1);
	/* The master reaps worker 0: its sessions are gone, its totals
	 * stay. */
	shm_slot_reset(0);
	ck_assert_uint_eq(shm_listener_active(1), 1);
	ck_assert_uint_eq(shm_server_active(3), 1);
	ck_assert_uint_eq(shm_server_total(3), 6);
	ck_assert_uint_eq(shm_server_failures(3), 1);
	/* An index beyond the slot's room is ignored, not written. */
	shm_server_add(100000, +1);
	ck_assert_uint_eq(shm_server_active(100000), 0);
	/* A slot handed to another server starts afresh. */
	shm_server_forget(3);
	ck_assert_uint_eq(shm_server_total(3), 1);	/* worker 1's, live */
}
END_TEST

START_TEST(test_slot_gets_a_bigger_block)
{
	size_t len = 0;
	const void *r;

	test_shm_create();
	ck_assert_int_eq(shm_slot_prepare(3, 10, 1), 0);
	shm_worker_attach(3);
	shm_server_count_session(9);
	shm_slot_reset(3);
	ck_assert_int_eq(shm_servers_reserve(5000), 0);
	ck_assert_int_eq(shm_slot_prepare(3, 5000, 40), 0);
	r = shm_slot_region(3, SHM_SLOT_SERVER_ACTIVE, &len);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_ge(len, 5000 * sizeof(uint32_t));
	r = shm_slot_region(3, SHM_SLOT_LISTENER_ACTIVE, &len);
	ck_assert_uint_ge(len, 40 * sizeof(uint32_t));
	shm_worker_attach(3);
	shm_server_add(4999, +1);
	shm_listener_add(39, +1);
	ck_assert_uint_eq(shm_server_active(4999), 1);
	ck_assert_uint_eq(shm_listener_active(39), 1);
	ck_assert_uint_eq(shm_server_total(9), 1);	/* kept across */
	ck_assert_ptr_null(shm_slot_region(40, SHM_SLOT_SERVER_ACTIVE, NULL));
}
END_TEST

/* An upgrade: the next image maps the same file anew and gets back the
 * private part (what reaped workers counted); everything is as it was. */
START_TEST(test_adopt_keeps_state_and_totals)
{
	size_t fixed[SHM_SLOT_NREGIONS], n[SHM_SLOT_NREGIONS];
	uint64_t *copy[SHM_SLOT_NREGIONS];
	struct shm_health_snapshot got;
	char err[256];
	int bad;

	test_shm_create();
	ck_assert_int_eq(shm_slot_prepare(0, 8, 2), 0);
	shm_worker_attach(0);
	for (int i = 0; i < 4; i++)
		shm_server_count_session(3);
	shm_server_failure(3);
	shm_slot_reset(0);
	ck_assert_int_eq(shm_slot_prepare(1, 8, 2), 0);
	shm_worker_attach(1);
	shm_server_add(3, +1);
	shm_server_count_session(3);
	shm_health_publish(3, &(struct shm_health_snapshot){ .state =
	    SHM_HEALTH_UP, .reason = "EHLO ok", .checks = 7 });
	shm_admin_set(3, SHM_ADMIN_DRAIN);
	for (int r = 0; r < SHM_SLOT_NREGIONS; r++) {
		const uint64_t *w;

		fixed[r] = shm_fixed_bytes((enum shm_slot_region)r);
		n[r] = shm_retired((enum shm_slot_region)r, &w);
		copy[r] = calloc(n[r] + 1, sizeof(uint64_t));
		ck_assert_ptr_nonnull(copy[r]);
		if (n[r] > 0)	/* none retired: w may be NULL */
			memcpy(copy[r], w, n[r] * sizeof(uint64_t));
	}
	ck_assert_int_eq(shm_adopt(shm_handover_fd(), fixed, err, sizeof(err)),
	    0);
	for (int r = 0; r < SHM_SLOT_NREGIONS; r++) {
		ck_assert_int_eq(shm_retired_restore((enum shm_slot_region)r,
		    copy[r], n[r]), 0);
		free(copy[r]);
	}
	ck_assert_uint_eq(shm_server_total(3), 5);	/* 4 retired + 1 live */
	ck_assert_uint_eq(shm_server_failures(3), 1);
	ck_assert_uint_eq(shm_server_active(3), 1);
	ck_assert_int_eq(shm_admin_get(3), SHM_ADMIN_DRAIN);
	ck_assert(shm_health_read(3, &got));
	ck_assert_int_eq(got.state, SHM_HEALTH_UP);
	ck_assert_uint_eq(got.checks, 7);
	/* A file that is not the memory: refused, nothing changed. */
	bad = memfd_create("not-shm", 0);
	ck_assert_int_ne(bad, -1);
	ck_assert_int_eq(ftruncate(bad, 1 << 20), 0);
	ck_assert_int_eq(shm_adopt(bad, fixed, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "holds no smtpfront memory") != NULL, "%s",
	    err);
	/* The layout check an upgrade makes first: this binary's memory
	 * passes, another magic (another layout) does not. */
	ck_assert_int_eq(shm_check_layout(shm_handover_fd(), err, sizeof(err)),
	    0);
	ck_assert_int_eq(pwrite(bad, "SFSH", 4, 0), 4);
	ck_assert_int_eq(shm_check_layout(bad, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "in another layout") != NULL, "%s", err);
	close(bad);
	ck_assert_int_eq(shm_check_layout(bad, err, sizeof(err)), -1);
	ck_assert_uint_eq(shm_server_total(3), 5);
}
END_TEST

START_TEST(test_config_bytes)
{
	struct config *small = test_config(4, 10), *big = test_config(200, 600);
	struct config *more = test_config(1024, 600);
	size_t a = shm_config_bytes(small), b = shm_config_bytes(big);
	size_t c = shm_config_bytes(more);

	ck_assert_uint_lt(a, b);
	ck_assert_uint_lt(b, c);
	/* What the issue asks for fits, with a reload, by far. */
	ck_assert_uint_lt(b, SHM_RESERVE_MAX / 16);
	ck_assert_uint_lt(c, SHM_RESERVE_MAX);
	cfg_free(small);
	cfg_free(big);
	cfg_free(more);
}
END_TEST

static Suite *
shm_suite(void)
{
	Suite *s = suite_create("shm");
	TCase *tc;

	tc = tcase_create("shm_health");
	tcase_add_test(tc, test_health_round_trip);
	tcase_add_test(tc, test_health_killed_writer);
	tcase_add_test(tc, test_health_stopped_writer);
	tcase_add_test(tc, test_health_write_during_read);
	tcase_add_test(tc, test_health_no_torn_reads);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);
	tc = tcase_create("shm_growth");
	tcase_add_test(tc, test_growth_seen_by_older_child);
	tcase_add_test(tc, test_slot_gets_a_bigger_block);
	suite_add_tcase(s, tc);
	tc = tcase_create("shm_slots");
	tcase_add_test(tc, test_slots_sum_and_keep_totals);
	tcase_add_test(tc, test_config_bytes);
	suite_add_tcase(s, tc);
	tc = tcase_create("shm_adopt");
	tcase_add_test(tc, test_adopt_keeps_state_and_totals);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(shm_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
