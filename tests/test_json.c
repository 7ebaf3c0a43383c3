/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/json.c: the string writer (escapes, round trip
 * through the reader) and the reader (valid documents, every class of
 * malformed input, nesting bound, lookups).
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <check.h>
#include <event2/buffer.h>

#include "core/json.h"

struct write_vec {
	const char *in;
	const char *out;
};

static const struct write_vec write_vecs[] = {
	{ "", "\"\"" },
	{ "mx1", "\"mx1\"" },
	{ "a\"b\\c", "\"a\\\"b\\\\c\"" },
	{ "l1\nl2\r\t", "\"l1\\nl2\\r\\t\"" },
	{ "\x01\x1f x", "\"\\u0001\\u001f x\"" },
	{ "greeting 421 4.3.2 \xc3\xa9", "\"greeting 421 4.3.2 \xc3\xa9\"" },
	{ "\xf0\x9f\x98\x80!", "\"\xf0\x9f\x98\x80!\"" },
};

/* Not UTF-8: each bad byte becomes U+FFFD, so no round trip. */
static const struct write_vec write_bad_vecs[] = {
	{ "a\xff" "b", "\"a\\ufffdb\"" },
	{ "\xc3", "\"\\ufffd\"" },
	{ "\xc0\xaf", "\"\\ufffd\\ufffd\"" },
	{ "\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"" },
	{ "\xe2\x82x", "\"\\ufffd\\ufffdx\"" },
};

/* json_write_string(in) as a NUL-terminated string (free it); its length
 * in *len. */
static char *
written(const char *in, size_t *len)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	ck_assert_ptr_nonnull(b);
	ck_assert_int_eq(json_write_string(b, in), 0);
	*len = evbuffer_get_length(b);
	s = calloc(1, *len + 1);
	ck_assert_ptr_nonnull(s);
	evbuffer_remove(b, s, *len);
	evbuffer_free(b);
	return s;
}

START_TEST(test_write_string)
{
	const struct write_vec *v = &write_vecs[_i];
	char err[64];
	struct json *j;
	size_t n;
	char *s = written(v->in, &n);

	ck_assert_str_eq(s, v->out);
	j = json_parse(s, n, err, sizeof(err));
	ck_assert_msg(j != NULL, "%s: %s", v->out, err);
	ck_assert_int_eq(j->type, JSON_STRING);
	ck_assert_str_eq(j->str, v->in);
	json_free(j);
	free(s);
}
END_TEST

START_TEST(test_write_string_not_utf8)
{
	const struct write_vec *v = &write_bad_vecs[_i];
	size_t n;
	char *s = written(v->in, &n);

	ck_assert_str_eq(s, v->out);
	free(s);
}
END_TEST

struct parse_vec {
	const char *in;
	bool ok;
	enum json_type type;
};

static const struct parse_vec parse_vecs[] = {
	{ "{}", true, JSON_OBJECT },
	{ " [ ] \n", true, JSON_ARRAY },
	{ "null", true, JSON_NULL },
	{ "true", true, JSON_BOOL },
	{ "-1.5e3", true, JSON_NUMBER },
	{ "\"\\u00e9\\ud83d\\ude00\\/\"", true, JSON_STRING },
	{ "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}", true, JSON_OBJECT },
	{ "", false, 0 },
	{ "{", false, 0 },
	{ "{\"a\"}", false, 0 },
	{ "{\"a\":1,}", false, 0 },
	{ "[1 2]", false, 0 },
	{ "\"abc", false, 0 },
	{ "\"a\\x\"", false, 0 },
	{ "\"\\ud800\"", false, 0 },
	{ "\"\\udc00\"", false, 0 },
	{ "\"\\u12\"", false, 0 },
	{ "\"a\x01\"", false, 0 },
	{ "tru", false, 0 },
	{ "1.2.3", false, 0 },
	{ "{} x", false, 0 },
	{ "{1:2}", false, 0 },
	{ "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]",
	  false, 0 },
};

START_TEST(test_parse)
{
	const struct parse_vec *v = &parse_vecs[_i];
	char err[64];
	struct json *j = json_parse(v->in, strlen(v->in), err, sizeof(err));

	if (!v->ok) {
		ck_assert_msg(j == NULL, "accepted %s", v->in);
		ck_assert_msg(err[0] != '\0', "no reason for %s", v->in);
		return;
	}
	ck_assert_msg(j != NULL, "%s: %s", v->in, err);
	ck_assert_int_eq(j->type, v->type);
	json_free(j);
}
END_TEST

START_TEST(test_get)
{
	static const char doc[] = "{\"version\":\"0.1.0\",\"uptime_s\":36,"
	    "\"ok\":false,\"pools\":[{\"name\":\"p\"}],\"n\":null}";
	char err[64];
	struct json *j = json_parse(doc, sizeof(doc) - 1, err, sizeof(err));
	const struct json *pools;

	ck_assert_ptr_nonnull(j);
	ck_assert_str_eq(json_get_str(j, "version", "?"), "0.1.0");
	ck_assert_str_eq(json_get_str(j, "uptime_s", "?"), "?");
	ck_assert(json_get_num(j, "uptime_s", -1) == 36);
	ck_assert(json_get_num(j, "n", -1) == -1);
	ck_assert(!json_get_bool(j, "ok", true));
	ck_assert(json_get_bool(j, "missing", true));
	pools = json_get(j, "pools");
	ck_assert_ptr_nonnull(pools);
	ck_assert_uint_eq(pools->nitems, 1);
	ck_assert_str_eq(json_get_str(pools->items[0], "name", "?"), "p");
	ck_assert_ptr_null(json_get(pools, "name"));
	json_free(j);
	json_free(NULL);
}
END_TEST

static Suite *
json_suite(void)
{
	Suite *s = suite_create("json");
	TCase *tc;

	tc = tcase_create("json_write_string");
	tcase_add_loop_test(tc, test_write_string, 0,
	    sizeof(write_vecs) / sizeof(write_vecs[0]));
	tcase_add_loop_test(tc, test_write_string_not_utf8, 0,
	    sizeof(write_bad_vecs) / sizeof(write_bad_vecs[0]));
	suite_add_tcase(s, tc);
	tc = tcase_create("json_parse");
	tcase_add_loop_test(tc, test_parse, 0,
	    sizeof(parse_vecs) / sizeof(parse_vecs[0]));
	suite_add_tcase(s, tc);
	tc = tcase_create("json_get");
	tcase_add_test(tc, test_get);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(json_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
