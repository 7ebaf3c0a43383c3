/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/runtime.c, the parts an upgrade and a restart under
 * systemd rely on: the store names of binds, sockets handed over taken by
 * address (and the rest closed), the slot table restored from the previous
 * image giving every server its old slot back, and holders of an older
 * generation's slots.
 */
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <check.h>

#include "config/config.h"
#include "core/runtime.h"
#include "core/shm.h"

static int
test_listen(unsigned short *port)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ne(fd, -1);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	ck_assert_int_eq(listen(fd, 8), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
	*port = ntohs(sin.sin_port);
	return fd;
}

static struct config *
test_config(unsigned short port)
{
	struct cfg_diag d = { 0 };
	struct config *cfg;
	char y[512];
	int n;

	n = snprintf(y, sizeof(y), "workers: 1\nhostname: t.test\n"
	    "listeners:\n  - {name: l, bind: \"127.0.0.1:%u\", pool: p}\n"
	    "pools:\n  p:\n    servers:\n"
	    "      - {name: a, address: \"127.0.0.1:1001\"}\n"
	    "      - {name: b, address: \"127.0.0.1:1002\"}\n", port);
	cfg_set_resolve(false);
	cfg = cfg_load_string(y, (size_t)n, "t.yaml", &d);
	ck_assert_msg(cfg != NULL, "config: %s", d.n > 0 ?
	    d.entries[0].message : "?");
	cfg_diag_free(&d);
	return cfg;
}

static bool
fd_open(int fd)
{
	return fcntl(fd, F_GETFD) != -1 || errno != EBADF;
}

START_TEST(test_bind_names)
{
	static const struct {
		const char *text, *name;
	} v[] = {
		{ "[127.0.0.1]:25", "[127.0.0.1]_25" },
		{ "[::]:25", "[__]_25" },
		{ "[2001:db8::1]:2525", "[2001_db8__1]_2525" },
	};
	char buf[128];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		struct cfg_addr a;

		memset(&a, 0, sizeof(a));
		snprintf(a.text, sizeof(a.text), "%s", v[i].text);
		runtime_bind_name(&a, buf, sizeof(buf));
		ck_assert_str_eq(buf, v[i].name);
		ck_assert_ptr_null(strchr(buf, ':'));
	}
}
END_TEST

START_TEST(test_inherited_socket_taken_by_address)
{
	struct rt_slots slots = { 0 };
	unsigned short port, other;
	int fd = test_listen(&port), stray = test_listen(&other);
	int dgram = socket(AF_INET, SOCK_DGRAM, 0);
	struct config *cfg = test_config(port);
	struct runtime *rt;
	char err[512] = "";

	shm_create(cfg);
	cfg_free(cfg);
	ck_assert_int_eq(runtime_inherit(fd, "whatever-name"), 0);
	ck_assert_int_eq(runtime_inherit(stray, "stray"), 0);
	/* Not a listening TCP socket: refused and closed at once. */
	ck_assert_int_eq(runtime_inherit(dgram, "dgram"), -1);
	ck_assert(!fd_open(dgram));
	rt = runtime_new(test_config(port), 1, NULL, &slots, err, sizeof(err));
	ck_assert_msg(rt != NULL, "%s", err);
	ck_assert_int_eq(rt->listeners[0].binds[0].fd, fd);
	ck_assert(fcntl(fd, F_GETFL) & O_NONBLOCK);
	ck_assert(fcntl(fd, F_GETFD) & FD_CLOEXEC);
	ck_assert(fd_open(stray));
	runtime_inherit_done(NULL);
	ck_assert(!fd_open(stray));
	runtime_free(rt);
	runtime_slots_free(&slots);
}
END_TEST

/* The previous image's table: server "p/b" had slot 0 and "p/a" slot 2
 * (slot 1 a server gone since); the rebuilt runtime gets the same slots. */
START_TEST(test_restored_slots_keep_their_servers)
{
	struct rt_slots slots = { 0 };
	unsigned short port;
	int fd = test_listen(&port);
	struct config *cfg = test_config(port);
	char ka[224], kb[224], err[512] = "";
	struct runtime *rt;

	shm_create(cfg);
	snprintf(ka, sizeof(ka), "p/a %s", cfg->pools[0].servers[0].address.text);
	snprintf(kb, sizeof(kb), "p/b %s", cfg->pools[0].servers[1].address.text);
	cfg_free(cfg);
	ck_assert_int_eq(runtime_slot_restore(&slots, true, 0, kb, 4), 0);
	ck_assert_int_eq(runtime_slot_restore(&slots, true, 1, "p/gone x", 3),
	    0);
	ck_assert_int_eq(runtime_slot_restore(&slots, true, 2, ka, 4), 0);
	ck_assert_int_eq(runtime_slot_restore(&slots, false, 0, "l", 4), 0);
	ck_assert_uint_eq(slots.nservers, 3);
	ck_assert_int_eq(shm_servers_reserve(3), 0);
	shm_admin_set(2, SHM_ADMIN_DRAIN);	/* what the old image wrote */
	ck_assert_int_eq(runtime_inherit(fd, "l"), 0);
	rt = runtime_new(test_config(port), 4, NULL, &slots, err, sizeof(err));
	runtime_inherit_done(NULL);
	ck_assert_msg(rt != NULL, "%s", err);
	ck_assert_uint_eq(rt->pools[0].server_slot[0], 2);	/* a */
	ck_assert_uint_eq(rt->pools[0].server_slot[1], 0);	/* b */
	ck_assert_uint_eq(rt->listeners[0].slot, 0);
	/* Adopted, not held afresh: the old image's state stays. */
	runtime_hold_adopted(rt, &slots);
	ck_assert_int_eq(shm_admin_get(2), SHM_ADMIN_DRAIN);
	ck_assert_uint_eq(slots.servers[2].users, 1);
	ck_assert_uint_eq(slots.servers[1].users, 0);
	runtime_release(rt, &slots);
	ck_assert_uint_eq(slots.servers[2].users, 0);
	runtime_free(rt);
	runtime_slots_free(&slots);
}
END_TEST

START_TEST(test_holder_holds_and_releases)
{
	static const unsigned servers[] = { 0, 2 }, listeners[] = { 1 };
	struct rt_slots slots = { 0 };
	struct runtime *h;

	for (unsigned i = 0; i < 3; i++)
		ck_assert_int_eq(runtime_slot_restore(&slots, true, i, "k", 1),
		    0);
	for (unsigned i = 0; i < 2; i++)
		ck_assert_int_eq(runtime_slot_restore(&slots, false, i, "l", 1),
		    0);
	h = runtime_new_holder(7, servers, 2, listeners, 1);
	ck_assert_ptr_nonnull(h);
	ck_assert_ptr_null(h->cfg);
	ck_assert_uint_eq(h->generation, 7);
	runtime_hold_adopted(h, &slots);
	ck_assert_uint_eq(slots.servers[0].users, 1);
	ck_assert_uint_eq(slots.servers[1].users, 0);
	ck_assert_uint_eq(slots.servers[2].users, 1);
	ck_assert_uint_eq(slots.listeners[1].users, 1);
	runtime_release(h, &slots);
	ck_assert_uint_eq(slots.servers[0].users, 0);
	ck_assert_uint_eq(slots.listeners[1].users, 0);
	runtime_free(h);
	runtime_free(NULL);
	runtime_slots_free(&slots);
}
END_TEST

static Suite *
runtime_suite(void)
{
	Suite *s = suite_create("runtime");
	TCase *tc;

	tc = tcase_create("runtime_bind_name");
	tcase_add_test(tc, test_bind_names);
	suite_add_tcase(s, tc);
	tc = tcase_create("runtime_inherit");
	tcase_add_test(tc, test_inherited_socket_taken_by_address);
	suite_add_tcase(s, tc);
	tc = tcase_create("runtime_slot_restore");
	tcase_add_test(tc, test_restored_slots_keep_their_servers);
	tcase_add_test(tc, test_holder_holds_and_releases);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(runtime_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
