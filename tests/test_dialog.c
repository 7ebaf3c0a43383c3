/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for smtp/dialog.c: SMTP dialogs as a relay sees them (client
 * and server bytes interleaved, pipelined, with DATA, BDAT, STARTTLS and
 * spliced bodies), each fed in the chunks written and again one byte at a
 * time, and what the dialog then says about how the session stood.
 */
#include <stdbool.h>
#include <stdio.h>
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
	/* Verbs and arguments past the old 16-byte view of a line. */
	{ "BDAT 1048576 LAST, chunk spliced, 250: the message is done", false,
	  { GREET, C("BDAT 1048576 LAST\r\n"), U(1048576),
	    S("250 2.0.0 Ok: 1048576 bytes queued\r\n") },
	  { false, true, false, false, true, false,
	    "250 2.0.0 Ok: 1048576 bytes queued" } },
	{ "BDAT 1048576 LAST, chunk spliced, not yet answered", false,
	  { GREET, C("BDAT 1048576 LAST\r\n"), U(1048576) },
	  { false, false, true, false, true, false, "220 mx.test ESMTP" } },
	{ "BDAT 1048576 then BDAT 3 LAST, both seen", false,
	  { GREET, C("BDAT 1048576\r\n"), U(1000000), U(48576),
	    C("BDAT 3 LAST\r\nabc"), S("250 Ok chunk\r\n"),
	    S("250 Ok queued\r\n") },
	  { false, true, false, false, true, false, "250 Ok queued" } },
	{ "BDAT with a long size and many blanks", false,
	  { GREET, C("bdat \t 00000000000000000000000000000000000000000003"
	    "       \t   last   \r\nxyz"), S("250 Ok queued\r\n") },
	  { false, true, false, false, true, false, "250 Ok queued" } },
	{ "BDAT 5 X is not a chunk (Postfix: 501): commands follow", false,
	  { GREET, C("BDAT 5 X\r\nMAIL FROM:<a@b>\r\n"),
	    S("501 5.5.4 Syntax: BDAT count [LAST]\r\n250 2.1.0 Ok\r\n") },
	  { false, true, false, false, true, false, "250 2.1.0 Ok" } },
	{ "BDAT 5 LASTX is not a chunk", false,
	  { GREET, C("BDAT 5 LASTX\r\nNOOP\r\n"), S("501 Syntax\r\n"),
	    S("250 Ok\r\n") },
	  { false, true, false, false, true, false, "250 Ok" } },
	{ "BDAT without a size, or not digits, is not a chunk", false,
	  { GREET, C("BDAT\r\nBDAT  \r\nBDAT x1\r\nBDAT 1x\r\n"),
	    S("501 a\r\n501 b\r\n501 c\r\n501 d\r\n") },
	  { false, true, false, false, true, false, "501 d" } },
	{ "BDAT size past an off_t is not a chunk", false,
	  { GREET, C("BDAT 9223372036854775808 LAST\r\nNOOP\r\n"),
	    S("501 Syntax\r\n250 Ok\r\n") },
	  { false, true, false, false, true, false, "250 Ok" } },
	{ "BDAT size at an off_t's limit is a chunk", false,
	  { GREET, C("BDAT 9223372036854775807 LAST\r\n"), C("abc") },
	  { false, false, true, false, true, true, "220 mx.test ESMTP" } },
	{ "BDAT 0 LAST: no chunk, open until answered", false,
	  { GREET, C("BDAT 0 LAST\r\n") },
	  { false, false, true, false, true, false, "220 mx.test ESMTP" } },
	{ "DATA with an argument is no DATA (Postfix: 501)", false,
	  { GREET, C("DATA x\r\nNOOP\r\n"), S("501 5.5.4 Syntax: DATA\r\n"),
	    S("250 Ok\r\n") },
	  { false, true, false, false, true, false, "250 Ok" } },
	{ "DATAX, QUITTING, STARTTLSX are other verbs", false,
	  { GREET, C("DATAX\r\nQUITTING\r\nSTARTTLSX\r\n"),
	    S("502 a\r\n502 b\r\n"), S("220 not for STARTTLS\r\n") },
	  { false, true, false, false, true, false, "220 not for STARTTLS" } },
	{ "blanks around DATA, lower case", false,
	  { GREET, C("  \tdata \t \r\n"), S("354 Go\r\n"), C("x\r\n") },
	  { false, false, true, false, true, true, "354 Go" } },
	{ "a long MAIL line, then DATA", false,
	  { GREET, C("MAIL FROM:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "@b> SIZE=1000 BODY=8BITMIME\r\nDATA\r\n"),
	    S("250 Ok\r\n354 Go\r\n") },
	  { false, false, true, false, true, true, "354 Go" } },
	{ "an empty line is a command (Postfix: 500)", false,
	  { GREET, C("\r\n"), S("500 5.5.2 Error: bad syntax\r\n") },
	  { false, true, false, false, true, false,
	    "500 5.5.2 Error: bad syntax" } },
	/* Bare LF ends a command line and a body line, as in Postfix 3.7. */
	{ "bare LF: pipelined MAIL RCPT DATA, 354, body, end", false,
	  { GREET, C("EHLO c\nMAIL FROM:<a@b>\nRCPT TO:<c@d>\nDATA\n"),
	    S("250 mx\r\n250 Ok\r\n250 Ok\r\n354 Go\r\n"),
	    C("Subject: x\n\nhi\n..dot\n.\n"), S("250 Ok: queued\r\n") },
	  { false, true, false, false, true, false, "250 Ok: queued" } },
	{ "bare LF DATA: the body is a body", false,
	  { GREET, C("DATA\n"), S("354 Go\r\n"), C("QUIT\n") },
	  { false, false, true, false, true, true, "354 Go" } },
	{ "bare LF DATA, body end with CR LF", false,
	  { GREET, C("DATA\n"), S("354 Go\r\n"), C("a\r\n.\r\n"),
	    S("250 Ok\r\n") },
	  { false, true, false, false, true, false, "250 Ok" } },
	{ "bare LF: \".\" then CR CR LF does not end the body", false,
	  { GREET, C("DATA\n"), S("354 Go\r\n"), C("a\n.\r\r\n") },
	  { false, false, true, false, true, true, "354 Go" } },
	{ "bare LF DATA spliced body, the server's reply ends it", false,
	  { GREET, C("DATA\n"), S("354 Go\r\n"), U(200000),
	    S("250 Ok\r\n") },
	  { false, true, false, false, true, false, "250 Ok" } },
	{ "bare LF BDAT LAST", false,
	  { GREET, C("BDAT 3 LAST\nxyz"), S("250 Ok\r\n") },
	  { false, true, false, false, true, false, "250 Ok" } },
	{ "bare LF QUIT and 221", false,
	  { GREET, C("QUIT\n"), S("221 Bye\r\n") },
	  { true, true, false, false, true, false, "221 Bye" } },
	{ "bare LF STARTTLS", false,
	  { GREET, C("STARTTLS\n"), S("220 Ready\r\n"), C("\x16\x03") },
	  { false, false, false, true, true, true, "220 Ready" } },
	{ "a CR inside a line is a blank, the LF ends it", false,
	  { GREET, C("DATA\r \r\n"), S("354 Go\r\n") },
	  { false, false, true, false, true, true, "354 Go" } },
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

/* Lines far past any buffer: a verb and its arguments are parsed as they
 * pass, whatever their length. */
START_TEST(test_long_commands)
{
	static char line[20000];
	size_t n;

	/* BDAT, 10,000 zeros, the size, 5,000 blanks, LAST. */
	dialog_init(&d, false);
	dialog_server(&d, "220 x\r\n", 7);
	n = (size_t)snprintf(line, sizeof(line), "BDAT ");
	memset(line + n, '0', 10000);
	n += 10000;
	n += (size_t)snprintf(line + n, sizeof(line) - n, "4");
	memset(line + n, ' ', 5000);
	n += 5000;
	n += (size_t)snprintf(line + n, sizeof(line) - n, "LAST\r\n");
	dialog_client(&d, line, n);
	ck_assert(dialog_may_skip(&d, true));	/* in the chunk */
	dialog_client(&d, "abcd", 4);
	ck_assert(!dialog_may_skip(&d, true));	/* and past it */
	ck_assert(dialog_in_message(&d));
	dialog_server(&d, "250 Ok\r\n", 8);
	ck_assert(dialog_quiet(&d));
	ck_assert(!dialog_in_message(&d));

	/* A 15,000-byte RCPT line, cut anywhere, then a DATA. */
	n = (size_t)snprintf(line, sizeof(line), "RCPT TO:<");
	memset(line + n, 'r', 15000);
	n += 15000;
	n += (size_t)snprintf(line + n, sizeof(line) - n, ">\r\nDATA\r\n");
	for (size_t cut = 1; cut < n; cut += 1237) {
		dialog_init(&d, false);
		dialog_server(&d, "220 x\r\n", 7);
		dialog_client(&d, line, cut);
		ck_assert(!dialog_quiet(&d));
		dialog_client(&d, line + cut, n - cut);
		dialog_server(&d, "250 Ok\r\n354 Go\r\n", 16);
		ck_assert(dialog_may_skip(&d, true));
		ck_assert(dialog_in_message(&d));
	}
}
END_TEST

/* The commands in flight are packed two a byte: every kind at every place
 * in the ring (and across its wrap) comes back as it went in. */
START_TEST(test_ring_kinds)
{
	dialog_init(&d, false);
	dialog_server(&d, "220 x\r\n", 7);
	for (int k = 0; k < DIALOG_PENDING_MAX; k++) {
		/* k NOOPs, then a BDAT LAST (a kind that ends a message)
		 * and a STARTTLS refused: k + 2 in flight. */
		for (int i = 0; i < k && i < DIALOG_PENDING_MAX - 2; i++)
			dialog_client(&d, "NOOP\r\n", 6);
		dialog_client(&d, "BDAT 1 LAST\r\nx", 14);
		dialog_client(&d, "STARTTLS\r\n", 10);
		ck_assert(dialog_in_message(&d));
		for (int i = 0; i < k && i < DIALOG_PENDING_MAX - 2; i++) {
			dialog_server(&d, "250 Ok\r\n", 8);
			ck_assert_msg(dialog_in_message(&d), "k %d i %d", k, i);
		}
		dialog_server(&d, "250 Ok queued\r\n", 15);
		ck_assert_msg(!dialog_in_message(&d), "k %d", k);
		ck_assert(!dialog_quiet(&d));
		dialog_server(&d, "454 4.7.0 TLS not available\r\n", 29);
		ck_assert_msg(dialog_quiet(&d), "k %d", k);
		ck_assert(!dialog_opaque(&d));
	}
	/* And a STARTTLS accepted after all that. */
	dialog_client(&d, "NOOP\r\nSTARTTLS\r\n", 16);
	dialog_server(&d, "250 Ok\r\n220 Go ahead\r\n", 22);
	ck_assert(dialog_opaque(&d));
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
	tcase_add_test(tc, test_long_commands);
	tcase_add_test(tc, test_ring_kinds);
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
