/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for smtp/verdict.c: the greeting judgement (relay the first
 * line, or fail over on a 421 4.3.x, a close or nothing) and the session's
 * result= with its explanation, as vectors from SPEC.md ("Greeting-gated
 * failover", "Session log"), over dialogs built from real SMTP bytes.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>

#include "smtp/dialog.h"
#include "smtp/verdict.h"

/* ----------------------------------------------------------- greeting */

static const struct {
	const char *in;
	bool closed;
	enum verdict_greeting want;
	int code;		/* BUSY: the line's code and text */
	const char *text;
} greetings[] = {
	{ "220 mx.example ESMTP Postfix\r\n", false, VERDICT_GREETING_RELAY, 0, NULL },
	{ "220-mx.example ESMTP teaser\r\n", false, VERDICT_GREETING_RELAY, 0, NULL },
	{ "220 mx.example\n", false, VERDICT_GREETING_RELAY, 0, NULL },
	{ "220 mx\r\n250 more after it\r\n", false, VERDICT_GREETING_RELAY, 0, NULL },
	{ "421 4.3.2 All server ports are busy\r\n", false,
	    VERDICT_GREETING_BUSY, 421, "4.3.2 All server ports are busy" },
	{ "421 4.3.0 mx local error\n", false, VERDICT_GREETING_BUSY, 421,
	    "4.3.0 mx local error" },
	{ "421-4.3.2 busy\r\n421 4.3.2 busy\r\n", false,
	    VERDICT_GREETING_BUSY, 421, "4.3.2 busy" },
	{ "421 4.3.2 busy\r\n", true, VERDICT_GREETING_BUSY, 421,
	    "4.3.2 busy" },
	/* postscreen's per-client limit is about this client: relayed */
	{ "421 4.7.0 mx Error: too many connections from 192.0.2.1\r\n",
	    false, VERDICT_GREETING_RELAY, 0, NULL },
	{ "421 mx Service not available\r\n", false, VERDICT_GREETING_RELAY, 0, NULL },
	{ "421 4.3.\r\n", false, VERDICT_GREETING_RELAY, 0, NULL },
	{ "554 5.7.1 mx blocked\r\n", false, VERDICT_GREETING_RELAY, 0, NULL },
	{ "521 5.3.2 mx does not accept mail\r\n", false,
	    VERDICT_GREETING_RELAY, 0, NULL },
	{ "hello there\r\n", false, VERDICT_GREETING_RELAY, 0, NULL },
	{ "", false, VERDICT_GREETING_MORE, 0, NULL },
	{ "220 mx.exa", false, VERDICT_GREETING_MORE, 0, NULL },
	{ "421 4.3.2 busy\r", false, VERDICT_GREETING_MORE, 0, NULL },
	{ "", true, VERDICT_GREETING_CLOSED, 0, NULL },
	{ "220 mx.exa", true, VERDICT_GREETING_CLOSED, 0, NULL },
};

START_TEST(test_greeting_vectors)
{
	struct reply_line line;
	enum verdict_greeting v;

	memset(&line, 0, sizeof(line));
	v = verdict_greeting(greetings[_i].in, strlen(greetings[_i].in),
	    greetings[_i].closed, &line);
	ck_assert_msg(v == greetings[_i].want, "\"%s\": %s, wanted %s",
	    greetings[_i].in, verdict_greeting_names[v],
	    verdict_greeting_names[greetings[_i].want]);
	if (v == VERDICT_GREETING_BUSY) {
		ck_assert_int_eq(line.code, greetings[_i].code);
		ck_assert_str_eq(line.text, greetings[_i].text);
	}
}
END_TEST

/* A line without its end is held up to VERDICT_LINE_MAX, then relayed. */
START_TEST(test_greeting_long_line)
{
	static char buf[VERDICT_LINE_MAX + 1];
	struct reply_line line;

	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "220 ", 4);
	ck_assert_int_eq(verdict_greeting(buf, VERDICT_LINE_MAX - 1, false,
	    &line), VERDICT_GREETING_MORE);
	ck_assert_int_eq(verdict_greeting(buf, VERDICT_LINE_MAX, false,
	    &line), VERDICT_GREETING_RELAY);
	ck_assert_int_eq(verdict_greeting(buf, VERDICT_LINE_MAX + 1, true,
	    &line), VERDICT_GREETING_RELAY);
}
END_TEST

/* ------------------------------------------------------------- result */

#define MAX_STEPS 8
#define GREET "220 mx ESMTP\r\n"

struct rvec {
	const char *name;
	bool tls;
	const char *steps[MAX_STEPS];	/* "C..." client, "S..." server */
	struct verdict_in in;		/* .dialog filled in by the test */
	const char *result;
	const char *why;
};

static const struct rvec rvecs[] = {
	{ "overload", false, { 0 }, { .cause = VERDICT_OVERLOAD },
	  "overload", "" },
	{ "client rate", false, { 0 }, { .cause = VERDICT_CLIENT_RATE },
	  "client-rate", "" },
	{ "denied by a listener", false, { 0 }, { .cause = VERDICT_DENIED },
	  "denied", "" },
	{ "denied at runtime", false, { 0 },
	  { .cause = VERDICT_DENIED_RUNTIME }, "denied", "" },
	{ "client limit", false, { 0 }, { .cause = VERDICT_CLIENT_LIMIT },
	  "client-limit", "" },
	{ "shutdown mid-dialog", false, { "S" GREET },
	  { .cause = VERDICT_SHUTDOWN, .stage = VERDICT_RELAYED },
	  "shutdown", "shutdown_timeout expired" },
	{ "nothing connected", false, { 0 }, { .cause = VERDICT_NO_BACKEND,
	  .stage = VERDICT_AT_GATE }, "no-backend", "" },
	{ "connected, never greeted", false, { 0 },
	  { .cause = VERDICT_NO_BACKEND, .stage = VERDICT_AT_GATE,
	  .gate_failures = 2 }, "greeting-failed", "" },
	{ "bad header", false, { 0 }, { .cause = VERDICT_BAD_PROXY },
	  "bad-proxy-header", "" },
	{ "untrusted", false, { 0 }, { .cause = VERDICT_UNTRUSTED },
	  "untrusted-proxy", "untrusted source" },
	{ "gone before the header", false, { 0 },
	  { .cause = VERDICT_CLIENT_GONE, .stage = VERDICT_AT_HEADER },
	  "client-closed", "client closed before the PROXY header" },
	{ "reset before the header", false, { 0 },
	  { .cause = VERDICT_CLIENT_GONE, .err = ECONNRESET,
	  .stage = VERDICT_AT_HEADER }, "client-closed",
	  "client: Connection reset by peer before the PROXY header" },
	{ "idle at the gate", false, { 0 },
	  { .cause = VERDICT_CLIENT_TIMEOUT, .stage = VERDICT_AT_GATE },
	  "client-timeout", "client read timeout before the greeting" },
	{ "gone at the gate", false, { 0 },
	  { .cause = VERDICT_CLIENT_GONE, .stage = VERDICT_AT_GATE },
	  "client-closed", "client closed before the greeting" },
	{ "QUIT and 221", false, { "S" GREET, "CQUIT\r\n", "S221 Bye\r\n" },
	  { .cause = VERDICT_FINISHED, .stage = VERDICT_RELAYED,
	  .first_gone = VERDICT_SERVER, .first_clean = true }, "ok", "" },
	{ "client hangs up with nothing open", false,
	  { "S" GREET, "CEHLO c\r\n", "S250 mx\r\n" },
	  { .cause = VERDICT_FINISHED, .stage = VERDICT_RELAYED,
	  .first_gone = VERDICT_CLIENT, .first_clean = true,
	  .client_quiet = true }, "ok", "" },
	{ "client idles, 421 written", false, { "S" GREET },
	  { .cause = VERDICT_CLIENT_TIMEOUT, .stage = VERDICT_RELAYED },
	  "client-timeout", "client read timeout" },
	{ "client does not read", false, { "S" GREET },
	  { .cause = VERDICT_CLIENT_TIMEOUT, .stage = VERDICT_RELAYED,
	  .client_writing = true }, "client-timeout", "client write timeout" },
	{ "server never answers", false, { "S" GREET, "CNOOP\r\n" },
	  { .cause = VERDICT_SERVER_TIMEOUT, .stage = VERDICT_RELAYED },
	  "server-timeout", "server read timeout" },
	{ "client FIN mid-DATA", false,
	  { "S" GREET, "CDATA\r\n", "S354 go\r\n", "Cbody\r\n" },
	  { .cause = VERDICT_FINISHED, .stage = VERDICT_RELAYED,
	  .first_gone = VERDICT_CLIENT, .first_clean = true,
	  .client_in_message = true }, "client-closed",
	  "client closed mid-DATA" },
	{ "client reset mid-command", false, { "S" GREET, "CEHLO" },
	  { .cause = VERDICT_CLIENT_GONE, .err = ECONNRESET,
	  .stage = VERDICT_RELAYED, .first_gone = VERDICT_CLIENT,
	  .first_err = ECONNRESET }, "client-closed",
	  "client: Connection reset by peer mid-command" },
	{ "server 421 then FIN", false,
	  { "S" GREET, "CEHLO c\r\n", "S250 mx\r\n421 4.4.2 mx Error: timeout "
	  "exceeded\r\n" },
	  { .cause = VERDICT_FINISHED, .stage = VERDICT_RELAYED,
	  .first_gone = VERDICT_SERVER, .first_clean = true },
	  "server-closed", "421 4.4.2 mx Error: timeout exceeded" },
	{ "server FIN mid-DATA", false,
	  { "S" GREET, "CDATA\r\n", "S354 go ahead\r\n", "Cbody\r\n" },
	  { .cause = VERDICT_FINISHED, .stage = VERDICT_RELAYED,
	  .first_gone = VERDICT_SERVER, .first_clean = true },
	  "server-closed", "server closed mid-DATA; last reply: 354 go ahead" },
	{ "server reset mid-DATA", false,
	  { "S" GREET, "CDATA\r\n", "S354 go ahead\r\n", "Cbody\r\n" },
	  { .cause = VERDICT_SERVER_GONE, .err = ECONNRESET,
	  .stage = VERDICT_RELAYED, .first_gone = VERDICT_SERVER,
	  .first_err = ECONNRESET }, "server-closed",
	  "server: Connection reset by peer mid-DATA; last reply: 354 go "
	  "ahead" },
	{ "nobody said: the cause tells", false, { "S" GREET, "CEHLO c\r\n" },
	  { .cause = VERDICT_SERVER_GONE, .stage = VERDICT_RELAYED },
	  "server-closed", "220 mx ESMTP" },
	{ "server FIN before any reply", false, { 0 },
	  { .cause = VERDICT_SERVER_GONE, .stage = VERDICT_RELAYED,
	  .first_gone = VERDICT_SERVER, .first_clean = true },
	  "server-closed", "server closed; last reply: none" },
	{ "TLS, FIN", true, { "C\x16\x03\x01", "S\x16\x03\x03" },
	  { .cause = VERDICT_FINISHED, .stage = VERDICT_RELAYED,
	  .first_gone = VERDICT_CLIENT, .first_clean = true }, "ok", "" },
	{ "TLS, reset", true, { "C\x16\x03\x01" },
	  { .cause = VERDICT_CLIENT_GONE, .err = ECONNRESET,
	  .stage = VERDICT_RELAYED, .first_gone = VERDICT_CLIENT,
	  .first_err = ECONNRESET }, "client-closed",
	  "client: Connection reset by peer (TLS)" },
};

START_TEST(test_result_vectors)
{
	const struct rvec *v = &rvecs[_i];
	struct verdict_in in = v->in;
	struct dialog d;
	char why[512];
	const char *r;

	dialog_init(&d, v->tls);
	for (int k = 0; k < MAX_STEPS && v->steps[k] != NULL; k++) {
		const char *b = v->steps[k] + 1;

		if (v->steps[k][0] == 'C')
			dialog_client(&d, b, strlen(b));
		else
			dialog_server(&d, b, strlen(b));
	}
	in.dialog = &d;
	r = verdict_result(&in, why, sizeof(why));
	ck_assert_msg(strcmp(r, v->result) == 0, "%s: result %s, wanted %s",
	    v->name, r, v->result);
	ck_assert_msg(strcmp(why, v->why) == 0, "%s: why \"%s\", wanted "
	    "\"%s\"", v->name, why, v->why);
}
END_TEST

/* The explanation is cut to the caller's buffer, never overrun. */
START_TEST(test_result_short_buffer)
{
	struct verdict_in in = { .cause = VERDICT_SHUTDOWN };
	char why[8];

	ck_assert_str_eq(verdict_result(&in, why, sizeof(why)), "shutdown");
	ck_assert_str_eq(why, "shutdow");
}
END_TEST

static Suite *
verdict_suite(void)
{
	Suite *s = suite_create("verdict");
	TCase *tc;

	tc = tcase_create("verdict_greeting");
	tcase_add_loop_test(tc, test_greeting_vectors, 0,
	    sizeof(greetings) / sizeof(greetings[0]));
	tcase_add_test(tc, test_greeting_long_line);
	suite_add_tcase(s, tc);
	tc = tcase_create("verdict_result");
	tcase_add_loop_test(tc, test_result_vectors, 0,
	    sizeof(rvecs) / sizeof(rvecs[0]));
	tcase_add_test(tc, test_result_short_buffer);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(verdict_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
