/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for core/prom.c: the text exposition format 0.0.4. Escaping
 * of label values and help text, HELP/TYPE lines, sample values, and
 * histograms whose _bucket lines, +Inf, _count and _sum agree.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <check.h>

#include "core/prom.h"

/* The buffer's text (NUL-terminated, owned by the caller). */
static char *
text(struct evbuffer *b)
{
	size_t n = evbuffer_get_length(b);
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	evbuffer_remove(b, s, n);
	s[n] = '\0';
	return s;
}

static const struct {
	const char *in;
	int is_label;
	const char *out;
} escape_vectors[] = {
	{ "plain", 1, "plain" },
	{ "", 1, "" },
	{ "a\"b", 1, "a\\\"b" },
	{ "a\\b", 1, "a\\\\b" },
	{ "a\nb", 1, "a\\nb" },
	{ "\"\\\n", 1, "\\\"\\\\\\n" },
	{ "\\n is not a newline", 1, "\\\\n is not a newline" },
	{ "tab\tand\rcr stay", 1, "tab\tand\rcr stay" },
	{ "caf\xc3\xa9 UTF-8 stays", 1, "caf\xc3\xa9 UTF-8 stays" },
	/* Help text escapes backslash and newline, not quotes. */
	{ "say \"hi\"\\now\n", 0, "say \"hi\"\\\\now\\n" },
};

START_TEST(test_escape)
{
	struct evbuffer *b = evbuffer_new();
	char *s;

	prom_escape(b, escape_vectors[_i].in, escape_vectors[_i].is_label);
	s = text(b);
	ck_assert_str_eq(s, escape_vectors[_i].out);
	free(s);
	evbuffer_free(b);
}
END_TEST

START_TEST(test_family_and_samples)
{
	struct evbuffer *b = evbuffer_new();
	const struct prom_label l[] = {
		{ "listener", "smtp" },
		{ "result", "we\"ird\\va\nlue" },
	};
	char *s;

	prom_family(b, "x_sessions_total", PROM_COUNTER, "Sessions\\ended.\n");
	prom_sample_u64(b, "x_sessions_total", l, 2, 18446744073709551615ull);
	prom_family(b, "x_state", PROM_GAUGE, "A gauge.");
	prom_sample(b, "x_state", NULL, 0, 1);
	prom_sample(b, "x_state", l, 1, 0.5);
	prom_sample(b, "x_state", l, 1, 0.0005);
	prom_sample(b, "x_state", l, 1, 1234567.891);
	prom_sample(b, "x_state", l, 1, 1.0 / 3.0);
	prom_sample(b, "x_state", l, 1, INFINITY);
	prom_sample(b, "x_state", l, 1, -INFINITY);
	prom_sample(b, "x_state", l, 1, NAN);
	s = text(b);
	ck_assert_str_eq(s,
	    "# HELP x_sessions_total Sessions\\\\ended.\\n\n"
	    "# TYPE x_sessions_total counter\n"
	    "x_sessions_total{listener=\"smtp\",result=\"we\\\"ird\\\\va\\nlue\"} "
	    "18446744073709551615\n"
	    "# HELP x_state A gauge.\n"
	    "# TYPE x_state gauge\n"
	    "x_state 1\n"
	    "x_state{listener=\"smtp\"} 0.5\n"
	    "x_state{listener=\"smtp\"} 0.0005\n"
	    "x_state{listener=\"smtp\"} 1234567.891\n"
	    "x_state{listener=\"smtp\"} 0.3333333333333333\n"
	    "x_state{listener=\"smtp\"} +Inf\n"
	    "x_state{listener=\"smtp\"} -Inf\n"
	    "x_state{listener=\"smtp\"} NaN\n");
	free(s);
	evbuffer_free(b);
}
END_TEST

START_TEST(test_histogram_lines)
{
	struct evbuffer *b = evbuffer_new();
	const struct prom_label l[] = { { "pool", "p" }, { "server", "a\"1" } };
	const double bounds[] = { 0.0005, 0.1, 2.5 };
	const uint64_t counts[] = { 1, 2, 0, 4 };
	char *s;

	prom_family(b, "x_seconds", PROM_HISTOGRAM, "Times.");
	prom_histogram(b, "x_seconds", l, 2, bounds, 3, counts, 12.25);
	prom_histogram(b, "x_seconds", NULL, 0, bounds, 3,
	    (const uint64_t[]){ 0, 0, 0, 0 }, 0);
	s = text(b);
	ck_assert_str_eq(s,
	    "# HELP x_seconds Times.\n"
	    "# TYPE x_seconds histogram\n"
	    "x_seconds_bucket{pool=\"p\",server=\"a\\\"1\",le=\"0.0005\"} 1\n"
	    "x_seconds_bucket{pool=\"p\",server=\"a\\\"1\",le=\"0.1\"} 3\n"
	    "x_seconds_bucket{pool=\"p\",server=\"a\\\"1\",le=\"2.5\"} 3\n"
	    "x_seconds_bucket{pool=\"p\",server=\"a\\\"1\",le=\"+Inf\"} 7\n"
	    "x_seconds_sum{pool=\"p\",server=\"a\\\"1\"} 12.25\n"
	    "x_seconds_count{pool=\"p\",server=\"a\\\"1\"} 7\n"
	    "x_seconds_bucket{le=\"0.0005\"} 0\n"
	    "x_seconds_bucket{le=\"0.1\"} 0\n"
	    "x_seconds_bucket{le=\"2.5\"} 0\n"
	    "x_seconds_bucket{le=\"+Inf\"} 0\n"
	    "x_seconds_sum 0\n"
	    "x_seconds_count 0\n");
	free(s);
	evbuffer_free(b);
}
END_TEST

/*
 * Whatever the counts, a histogram's buckets are cumulative (never
 * decreasing), the last is +Inf, it equals _count, and the le values
 * increase: checked on pseudo-random counts, including huge ones.
 */
START_TEST(test_histogram_consistency)
{
	const double bounds[] = { 0.001, 0.01, 0.1, 1, 10, 60, 600 };
	const size_t nb = sizeof(bounds) / sizeof(bounds[0]);
	uint64_t counts[8], total = 0;
	unsigned seed = 12345u + (unsigned)_i;
	struct evbuffer *b = evbuffer_new();
	char *s, *line, *save = NULL;
	double last_le = -1;
	uint64_t last = 0, inf = 0, count = 0;
	size_t nbuckets = 0;

	for (size_t i = 0; i <= nb; i++) {
		seed = seed * 1103515245u + 12345u;
		counts[i] = _i == 3 ? (1ull << 60) : (seed >> 8) % 1000;
		total += counts[i];
	}
	prom_histogram(b, "h", NULL, 0, bounds, nb, counts, 1.5);
	s = text(b);
	for (line = strtok_r(s, "\n", &save); line != NULL;
	    line = strtok_r(NULL, "\n", &save)) {
		char le[32];
		unsigned long long v;

		if (sscanf(line, "h_bucket{le=\"%31[^\"]\"} %llu", le, &v) == 2) {
			double x = strcmp(le, "+Inf") == 0 ? INFINITY :
			    strtod(le, NULL);

			ck_assert_msg(x > last_le, "le not increasing: %s", line);
			ck_assert_msg(v >= last, "bucket decreasing: %s", line);
			if (x != INFINITY)
				ck_assert_double_eq(x, bounds[nbuckets]);
			last_le = x;
			last = v;
			nbuckets++;
			if (isinf(x))
				inf = v;
		} else if (sscanf(line, "h_count %llu", &v) == 1) {
			count = v;
		} else {
			ck_assert_str_eq(line, "h_sum 1.5");
		}
	}
	ck_assert_uint_eq(nbuckets, nb + 1);
	ck_assert_uint_eq(inf, total);
	ck_assert_uint_eq(count, total);
	free(s);
	evbuffer_free(b);
}
END_TEST

static Suite *
prom_suite(void)
{
	Suite *s = suite_create("prom");
	TCase *tc;

	tc = tcase_create("prom_escape");
	tcase_add_loop_test(tc, test_escape, 0,
	    (int)(sizeof(escape_vectors) / sizeof(escape_vectors[0])));
	suite_add_tcase(s, tc);
	tc = tcase_create("prom_sample");
	tcase_add_test(tc, test_family_and_samples);
	suite_add_tcase(s, tc);
	tc = tcase_create("prom_histogram");
	tcase_add_test(tc, test_histogram_lines);
	tcase_add_loop_test(tc, test_histogram_consistency, 0, 8);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(prom_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
