/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for smtp/reply.c: whole replies parsed line by line, the same
 * input fed one byte at a time, length limits, and the greeting gate's
 * "server busy" decision (HAProxy smtp-check.vtc and postscreen replies).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "smtp/reply.h"

#define MAX_STEPS 5

struct step {
	enum reply_status st;
	int code;
	const char *text;
};

struct reply_vec {
	const char *in;
	struct step steps[MAX_STEPS];	/* until NEED_MORE or an error */
};

#define L(c, t) { REPLY_LINE, c, t }
#define D(c, t) { REPLY_DONE, c, t }
#define MORE { REPLY_NEED_MORE, 0, NULL }
#define SYNTAX { REPLY_ERR_SYNTAX, 0, NULL }

static const struct reply_vec vecs[] = {
	{ "220 mx.example.org ESMTP Postfix\r\n",
	  { D(220, "mx.example.org ESMTP Postfix"), MORE } },
	{ "250-mx.example.org\r\n250-PIPELINING\r\n250-SIZE 10240000\r\n"
	  "250 8BITMIME\r\n",
	  { L(250, "mx.example.org"), L(250, "PIPELINING"),
	    L(250, "SIZE 10240000"), D(250, "8BITMIME"), MORE } },
	/* postscreen: the teaser, then (seconds later) the real greeting. */
	{ "220-mx.example.org ESMTP Postfix\r\n",
	  { L(220, "mx.example.org ESMTP Postfix"), MORE } },
	{ "220-mx.example.org ESMTP Postfix\r\n220 mx.example.org ESMTP\r\n",
	  { L(220, "mx.example.org ESMTP Postfix"),
	    D(220, "mx.example.org ESMTP"), MORE } },
	{ "421 4.3.2 All server ports are busy\r\n",
	  { D(421, "4.3.2 All server ports are busy"), MORE } },
	{ "421 4.7.0 Error: too many connections from 203.0.113.7\r\n",
	  { D(421, "4.7.0 Error: too many connections from 203.0.113.7"),
	    MORE } },
	{ "554 5.7.1 Go away\r\n", { D(554, "5.7.1 Go away"), MORE } },
	/* Bare LF, and a reply with no text at all. */
	{ "250 ok\n", { D(250, "ok"), MORE } },
	{ "250\r\n", { D(250, ""), MORE } },
	{ "250\n", { D(250, ""), MORE } },
	{ "250-\r\n250 \r\n", { L(250, ""), D(250, ""), MORE } },
	{ "100 x\r\n599 y\r\n", { D(100, "x"), D(599, "y"), MORE } },
	/* After a whole reply the next may have another code. */
	{ "250 2.0.0 Ok\r\n221 2.0.0 Bye\r\n",
	  { D(250, "2.0.0 Ok"), D(221, "2.0.0 Bye"), MORE } },
	{ "250-a\r\n251 b\r\n", { L(250, "a"), SYNTAX } },
	{ "250-a\r\n250-b\r\n354 c\r\n", { L(250, "a"), L(250, "b"), SYNTAX } },
	/* Junk, reported before any line end when the prefix shows it. */
	{ "hello", { SYNTAX } },
	{ "hello\r\n", { SYNTAX } },
	{ "HTTP/1.0 400 Bad request\r\n", { SYNTAX } },
	{ "\r\n", { SYNTAX } },
	{ "\n", { SYNTAX } },
	{ "25\r\n", { SYNTAX } },
	{ "2500 x\r\n", { SYNTAX } },
	{ "250x\r\n", { SYNTAX } },
	{ "2x0 x\r\n", { SYNTAX } },
	{ "099 x\r\n", { SYNTAX } },
	{ "650 x\r\n", { SYNTAX } },
	{ " 250 x\r\n", { SYNTAX } },
	{ "250\rx\r\n", { SYNTAX } },
	{ "250 a\rb\r\n", { SYNTAX } },
	{ "250 a\r\r\n", { SYNTAX } },
	/* Prefixes that may still become a line. */
	{ "", { MORE } },
	{ "2", { MORE } },
	{ "25", { MORE } },
	{ "250", { MORE } },
	{ "250\r", { MORE } },
	{ "250 ", { MORE } },
	{ "250 ok\r", { MORE } },
	{ "250-ok\r\n250 ok", { L(250, "ok"), MORE } },
};

/* Run the steps over buf[0..len), consuming as a caller would. */
static void
run_steps(const struct reply_vec *v, const char *buf, size_t len)
{
	struct reply_parser p;
	struct reply_line line;
	size_t off = 0;

	reply_parser_init(&p);
	for (int i = 0; i < MAX_STEPS; i++) {
		const struct step *s = &v->steps[i];
		size_t used = 12345;
		enum reply_status st;

		st = reply_parse_line(&p, buf + off, len - off, &used, &line);
		ck_assert_msg(st == s->st, "%s step %d: got %s, want %s", v->in,
		    i, reply_status_names[st], reply_status_names[s->st]);
		if (st != REPLY_LINE && st != REPLY_DONE) {
			ck_assert_uint_eq(used, 0);
			return;
		}
		ck_assert_int_eq(line.code, s->code);
		ck_assert_str_eq(line.text, s->text);
		ck_assert(line.last == (st == REPLY_DONE));
		ck_assert_uint_gt(used, 0);
		ck_assert_int_eq(buf[off + used - 1], '\n');
		off += used;
	}
	ck_abort_msg("%s: too many steps", v->in);
}

START_TEST(test_parse_whole)
{
	const struct reply_vec *v = &vecs[_i];

	run_steps(v, v->in, strlen(v->in));
}
END_TEST

/*
 * The same input arriving one byte at a time: every complete line must come
 * out exactly once, with the same result as when read whole.
 */
START_TEST(test_parse_bytewise)
{
	const struct reply_vec *v = &vecs[_i];
	size_t total = strlen(v->in), have = 0, off = 0;
	struct reply_parser p;
	struct reply_line line;
	int step = 0;

	reply_parser_init(&p);
	while (have < total) {
		size_t used;
		enum reply_status st;

		have++;
		st = reply_parse_line(&p, v->in + off, have - off, &used, &line);
		if (st == REPLY_NEED_MORE)
			continue;
		ck_assert_int_lt(step, MAX_STEPS);
		ck_assert_msg(st == v->steps[step].st, "%s step %d: got %s",
		    v->in, step, reply_status_names[st]);
		if (st != REPLY_LINE && st != REPLY_DONE)
			return;
		ck_assert_int_eq(line.code, v->steps[step].code);
		ck_assert_str_eq(line.text, v->steps[step].text);
		ck_assert_uint_eq(off + used, have);
		off += used;
		step++;
	}
	ck_assert_int_eq(v->steps[step].st, REPLY_NEED_MORE);
}
END_TEST

START_TEST(test_parse_too_long)
{
	static char buf[REPLY_LINE_MAX + 16];
	struct reply_parser p;
	struct reply_line line;
	size_t used;

	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "250 ", 4);
	reply_parser_init(&p);
	ck_assert_int_eq(reply_parse_line(&p, buf, REPLY_LINE_MAX - 1, &used,
	    &line), REPLY_NEED_MORE);
	ck_assert_int_eq(reply_parse_line(&p, buf, REPLY_LINE_MAX, &used,
	    &line), REPLY_ERR_TOO_LONG);
	ck_assert_uint_eq(used, 0);
	ck_assert_int_eq(reply_parse_line(&p, buf, sizeof(buf), &used,
	    &line), REPLY_ERR_TOO_LONG);

	/* A line end as the last allowed byte is fine; text is truncated. */
	buf[REPLY_LINE_MAX - 2] = '\r';
	buf[REPLY_LINE_MAX - 1] = '\n';
	ck_assert_int_eq(reply_parse_line(&p, buf, sizeof(buf), &used,
	    &line), REPLY_DONE);
	ck_assert_uint_eq(used, REPLY_LINE_MAX);
	ck_assert_uint_eq(strlen(line.text), REPLY_TEXT_MAX);
	ck_assert_int_eq(line.text[0], 'x');
	buf[REPLY_LINE_MAX - 2] = 'x';
	buf[REPLY_LINE_MAX - 1] = 'x';
	buf[REPLY_LINE_MAX] = '\n';
	ck_assert_int_eq(reply_parse_line(&p, buf, sizeof(buf), &used,
	    &line), REPLY_ERR_TOO_LONG);
}
END_TEST

START_TEST(test_parse_nul)
{
	static const char in[] = "250 a\0b\r\n";
	struct reply_parser p;
	struct reply_line line;
	size_t used;

	reply_parser_init(&p);
	ck_assert_int_eq(reply_parse_line(&p, in, sizeof(in) - 1, &used,
	    &line), REPLY_ERR_SYNTAX);
}
END_TEST

struct busy_vec {
	const char *line;
	bool busy;
};

static const struct busy_vec busy_vecs[] = {
	{ "421 4.3.2 All server ports are busy\r\n", true },
	{ "421 4.3.2 mx.example.org Service not available, try again later\r\n",
	  true },
	{ "421 4.3.0 mx.example.org Error: queue file write error\r\n", true },
	{ "421 4.3.5 System resources\r\n", true },
	{ "421 4.7.0 Error: too many connections from 203.0.113.7\r\n", false },
	{ "421 mx.example.org Service not available\r\n", false },
	{ "421 4.3.\r\n", false },
	{ "421 4.3\r\n", false },
	{ "421\r\n", false },
	{ "421-4.3.2 busy\r\n", true },
	{ "451 4.3.0 Temporary failure\r\n", false },
	{ "220 mx.example.org ESMTP\r\n", false },
	{ "220-mx.example.org ESMTP\r\n", false },
	{ "521 5.3.2 Service currently unavailable\r\n", false },
	{ "554 5.7.1 No SMTP service here\r\n", false },
};

START_TEST(test_server_busy)
{
	const struct busy_vec *v = &busy_vecs[_i];
	struct reply_parser p;
	struct reply_line line;
	size_t used;
	enum reply_status st;

	reply_parser_init(&p);
	st = reply_parse_line(&p, v->line, strlen(v->line), &used, &line);
	ck_assert(st == REPLY_LINE || st == REPLY_DONE);
	ck_assert_msg(reply_is_server_busy(&line) == v->busy, "%s", v->line);
}
END_TEST

START_TEST(test_status_names)
{
	ck_assert_str_eq(reply_status_names[REPLY_NEED_MORE], "need more");
	ck_assert_str_eq(reply_status_names[REPLY_DONE], "done");
	ck_assert_str_eq(reply_status_names[REPLY_ERR_SYNTAX], "syntax error");
	ck_assert_str_eq(reply_status_names[REPLY_ERR_TOO_LONG],
	    "line too long");
}
END_TEST

#define NVEC(a) ((int)(sizeof(a) / sizeof((a)[0])))

static Suite *
reply_suite(void)
{
	Suite *s = suite_create("reply");
	TCase *tc;

	tc = tcase_create("reply_parse_line");
	tcase_add_loop_test(tc, test_parse_whole, 0, NVEC(vecs));
	tcase_add_loop_test(tc, test_parse_bytewise, 0, NVEC(vecs));
	tcase_add_test(tc, test_parse_too_long);
	tcase_add_test(tc, test_parse_nul);
	tcase_add_test(tc, test_status_names);
	suite_add_tcase(s, tc);

	tc = tcase_create("reply_is_server_busy");
	tcase_add_loop_test(tc, test_server_busy, 0, NVEC(busy_vecs));
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(reply_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
