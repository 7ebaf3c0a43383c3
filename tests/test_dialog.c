/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for smtp/dialog.c: SMTP dialogs as a relay sees them (client
 * and server bytes interleaved, pipelined, with DATA, BDAT, STARTTLS and
 * spliced bodies), each fed in the chunks written and again one byte at a
 * time, and what the dialog then says about how the session stood.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "smtp/dialog.h"

#define MAX_STEPS 16

struct step {
	char dir;		/* 'C' client bytes, 'S' server bytes,
				 * 'U' client bytes unseen, 0 = end */
	const char *bytes;
	unsigned unseen;
};

struct want {
	bool goodbye, quiet, in_message, opaque, at_line_start, may_skip;
	const char *last_reply;
};

struct vec {
	const char *name;
	bool tls;		/* implicit TLS listener */
	struct step steps[MAX_STEPS];
	struct want want;
};

#define C(x) { 'C', x, 0 }
#define S(x) { 'S', x, 0 }
#define U(n) { 'U', NULL, n }
#define GREET S("220 mx.test ESMTP\r\n")

static const struct vec vecs[] = {
	{ "nothing yet", false, { { 0 } },
	  { false, false, false, false, true, false, "" } },
	{ "greeted, then the client hangs up", false, { GREET },
	  { false, true, false, false, true, false, "220 mx.test ESMTP" } },
	{ "EHLO unanswered", false, { GREET, C("EHLO c\r\n") },
	  { false, false, false, false, true, false, "220 mx.test ESMTP" } },
	{ "half a command line", false, { GREET, C("EHLO c") },
	  { false, false, false, false, true, false, "220 mx.test ESMTP" } },
	{ "EHLO answered multi-line", false,
	  { GREET, C("EHLO c\r\n"), S("250-mx.test\r\n250-PIPELINING\r\n"),
	    S("250 8BITMIME\r\n") },
	  { false, true, false, false, true, false, "250 8BITMIME" } },
	{ "multi-line reply half sent", false,
	  { GREET, C("EHLO c\r\n"), S("250-mx.test\r\n250-PIPE") },
	  { false, false, false, false, false, false, "250-PIPE" } },
	{ "QUIT and 221", false,
	  { GREET, C("QUIT\r\n"), S("221 2.0.0 Bye\r\n") },
	  { true, true, false, false, true, false, "221 2.0.0 Bye" } },
	{ "QUIT sent, not yet answered: the client asked to end", false,
	  { GREET, C("quit\r\n") },
	  { false, true, false, false, true, false, "220 mx.test ESMTP" } },
	{ "pipelined MAIL RCPT DATA, 354: a message is open", false,
	  { GREET, C("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
	    S("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data\r\n") },
	  { false, false, true, false, true, true, "354 End data" } },
	{ "body half sent", false,
	  { GREET, C("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
	    S("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data\r\n"),
	    C("Subject: x\r\n\r\nhello\r\n") },
	  { false, false, true, false, true, true, "354 End data" } },
	{ "body ended, 250 not yet in: still open", false,
	  { GREET, C("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
	    S("250 Ok\r\n250 Ok\r\n354 Go\r\n"), C("hi\r\n.\r\n") },
	  { false, false, true, false, true, false, "354 Go" } },
	{ "body ended and acknowledged", false,
	  { GREET, C("MAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\n"),
	    S("250 Ok\r\n250 Ok\r\n354 Go\r\n"), C("hi\r\n..dot\r\n.\r\n"),
	    S("250 2.0.0 Ok: queued\r\n") },
	  { false, true, false, false, true, false, "250 2.0.0 Ok: queued" } },
	{ "a dot-stuffed line and .x do not end the body", false,
	  { GREET, C("DATA\r\n"), S("354 Go\r\n"), C(".x\r\n..\r\n. \r\n") },
	  { false, false, true, false, true, true, "354 Go" } },
	{ "body end with bare LF", false,
	  { GREET, C("DATA\r\n"), S("354 Go\r\n"), C("a\n.\n"),
	    S("250 Ok\r\n") },
	  { false, true, false, false, true, false, "250 Ok" } },
	{ "DATA refused: back to commands", false,
	  { GREET, C("DATA\r\n"), S("554 5.5.1 No valid recipients\r\n"),
	    C("RSET\r\n"), S("250 Ok\r\n") },
	  { false, true, false, false, true, false, "250 Ok" } },
	{ "spliced body, its end seen by the server's reply", false,
	  { GREET, C("DATA\r\n"), S("354 Go\r\n"), C("Subject: big\r\n"),
	    U(1000000), S("250 2.0.0 Ok: queued\r\n") },
	  { false, true, false, false, true, false, "250 2.0.0 Ok: queued" } },
	{ "spliced body and a pipelined QUIT inside it: 221 still counts",
	  false,
	  { GREET, C("DATA\r\n"), S("354 Go\r\n"), U(70000),
	    S("250 Ok\r\n221 Bye\r\n") },
	  { true, true, false, false, true, false, "221 Bye" } },
	{ "spliced body still flowing", false,
	  { GREET, C("DATA\r\n"), S("354 Go\r\n"), U(70000) },
	  { false, false, true, false, true, true, "354 Go" } },
	{ "BDAT chunks by size, LAST closes", false,
	  { GREET, C("BDAT 5\r\nab\r\n."), C("BDAT 3 LAST\r\nxyz"),
	    S("250 Ok 5\r\n250 Ok queued\r\n") },
	  { false, true, false, false, true, false, "250 Ok queued" } },
	{ "BDAT chunk half sent", false,
	  { GREET, C("BDAT 10 LAST\r\n12345") },
	  { false, false, true, false, true, true, "220 mx.test ESMTP" } },
	{ "BDAT chunk spliced exactly, then a command seen", false,
	  { GREET, C("BDAT 100000 LAST\r\n"), U(100000), C("QUIT\r\n"),
	    S("250 Ok\r\n221 Bye\r\n") },
	  { true, true, false, false, true, false, "221 Bye" } },
	{ "BDAT refused mid-transaction", false,
	  { GREET, C("BDAT 2\r\nab"), S("552 5.3.4 Too big\r\n") },
	  { false, true, false, false, true, false, "552 5.3.4 Too big" } },
	{ "STARTTLS: opaque after 220", false,
	  { GREET, C("STARTTLS\r\n"), S("220 2.0.0 Ready\r\n"),
	    C("\x16\x03\x01\x02\x00"), S("\x16\x03\x03") },
	  { false, false, false, true, true, true, "220 2.0.0 Ready" } },
	{ "STARTTLS refused: still SMTP", false,
	  { GREET, C("STARTTLS\r\n"), S("454 4.7.0 TLS not available\r\n") },
	  { false, true, false, false, true, false,
	    "454 4.7.0 TLS not available" } },
	{ "implicit TLS listener", true, { C("\x16\x03\x01"), S("\x16") },
	  { false, false, false, true, true, true, "" } },
	{ "server 421 after a timeout, unasked", false,
	  { GREET, C("EHLO c\r\n"), S("250 mx\r\n"),
	    S("421 4.4.2 mx.test Error: timeout exceeded\r\n") },
	  { false, true, false, false, true, false,
	    "421 4.4.2 mx.test Error: timeout exceeded" } },
	{ "unsolicited 221 still says goodbye", false,
	  { GREET, S("221 2.0.0 Bye\r\n") },
	  { true, true, false, false, true, false, "221 2.0.0 Bye" } },
	{ "a reply line's control bytes are blanked", false,
	  { S("220 a\x01" "b\r\n") },
	  { false, true, false, false, true, false, "220 a b" } },
};

static struct dialog d;

static void
feed(const struct vec *v, bool bytewise)
{
	dialog_init(&d, v->tls);
	for (int i = 0; i < MAX_STEPS && v->steps[i].dir != 0; i++) {
		const struct step *st = &v->steps[i];
		size_t n = st->bytes != NULL ? strlen(st->bytes) : 0;

		if (st->dir == 'U') {
			dialog_client_unseen(&d, st->unseen);
			continue;
		}
		for (size_t off = 0; off < n; off += bytewise ? 1 : n) {
			size_t len = bytewise ? 1 : n;

			if (st->dir == 'C')
				dialog_client(&d, st->bytes + off, len);
			else
				dialog_server(&d, st->bytes + off, len);
		}
	}
}

static void
check(const struct vec *v, bool bytewise)
{
	const struct want *w = &v->want;

	feed(v, bytewise);
	ck_assert_msg(dialog_goodbye(&d) == w->goodbye, "%s: goodbye",
	    v->name);
	ck_assert_msg(dialog_quiet(&d) == w->quiet, "%s: quiet", v->name);
	ck_assert_msg(dialog_in_message(&d) == w->in_message,
	    "%s: in_message", v->name);
	ck_assert_msg(dialog_opaque(&d) == w->opaque, "%s: opaque", v->name);
	ck_assert_msg(dialog_server_at_line_start(&d) == w->at_line_start,
	    "%s: at_line_start", v->name);
	ck_assert_msg(dialog_may_skip(&d, true) == w->may_skip,
	    "%s: may_skip", v->name);
	ck_assert_msg(strcmp(dialog_last_reply(&d), w->last_reply) == 0,
	    "%s: last reply \"%s\", want \"%s\"", v->name,
	    dialog_last_reply(&d), w->last_reply);
}

START_TEST(test_vectors_whole)
{
	check(&vecs[_i], false);
}
END_TEST

START_TEST(test_vectors_bytewise)
{
	check(&vecs[_i], true);
}
END_TEST

/* Server bytes are never skipped unless the dialog is opaque. */
START_TEST(test_replies_never_skipped)
{
	dialog_init(&d, false);
	dialog_server(&d, "220 x\r\n", 7);
	dialog_client(&d, "DATA\r\n", 6);
	dialog_server(&d, "354 go\r\n", 8);
	ck_assert(dialog_may_skip(&d, true));
	ck_assert(!dialog_may_skip(&d, false));
}
END_TEST

/* A flood of pipelined commands beyond the ring still matches replies in
 * order: the QUIT at the end is recognised by its 221. */
START_TEST(test_deep_pipeline)
{
	char reply[] = "250 Ok\r\n";

	dialog_init(&d, false);
	dialog_server(&d, "220 x\r\n", 7);
	for (int i = 0; i < 5 * DIALOG_PENDING_MAX; i++)
		dialog_client(&d, "NOOP\r\n", 6);
	dialog_client(&d, "QUIT\r\n", 6);
	for (int i = 0; i < 5 * DIALOG_PENDING_MAX; i++) {
		ck_assert(!dialog_goodbye(&d));
		dialog_server(&d, reply, strlen(reply));
	}
	ck_assert(dialog_quiet(&d));	/* QUIT pending counts as asked */
	dialog_server(&d, "221 Bye\r\n", 9);
	ck_assert(dialog_goodbye(&d));
	ck_assert(dialog_quiet(&d));
}
END_TEST

/* An overlong command or reply line is counted, not stored past the cap. */
START_TEST(test_long_lines)
{
	static char big[10000];

	memset(big, 'x', sizeof(big));
	dialog_init(&d, false);
	dialog_server(&d, "220 x\r\n", 7);
	dialog_client(&d, big, sizeof(big));
	ck_assert(!dialog_quiet(&d));
	dialog_client(&d, "\r\n", 2);
	dialog_server(&d, "500 ", 4);
	dialog_server(&d, big, sizeof(big));
	ck_assert(!dialog_server_at_line_start(&d));
	dialog_server(&d, "\r\n", 2);
	ck_assert(dialog_quiet(&d));
	ck_assert_uint_eq(strlen(dialog_last_reply(&d)), DIALOG_REPLY_MAX);
}
END_TEST

static Suite *
dialog_suite(void)
{
	Suite *s = suite_create("dialog");
	TCase *tc = tcase_create("dialog_client_server");
	int n = (int)(sizeof(vecs) / sizeof(vecs[0]));

	tcase_add_loop_test(tc, test_vectors_whole, 0, n);
	tcase_add_loop_test(tc, test_vectors_bytewise, 0, n);
	tcase_add_test(tc, test_replies_never_skipped);
	tcase_add_test(tc, test_deep_pipeline);
	tcase_add_test(tc, test_long_lines);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(dialog_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
