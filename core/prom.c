/* SPDX-License-Identifier: MIT */
/*
 * prom: the text exposition format 0.0.4 (Prometheus' "text format"):
 * escaping, sample lines and histograms. Values go out as integers when
 * they are counts, otherwise in the shortest form that reads back the same
 * double, with +Inf/-Inf/NaN spelled as Prometheus spells them.
 *
 * A scrape of a few dozen servers is thousands of lines, written by the
 * master between other work: lines are built in a local buffer with
 * plain copies (no printf for integers, bucket bounds formatted once per
 * run of a histogram family) and handed to the evbuffer in big pieces.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/prom.h"

static const char *const prom_type_names[] = {
	"counter", "gauge", "histogram",
};

/* Text on its way to the evbuffer. */
struct prom_buf {
	struct evbuffer *out;
	size_t n;
	char b[4096];
};

static void
pb_flush(struct prom_buf *pb)
{
	if (pb->n > 0)
		evbuffer_add(pb->out, pb->b, pb->n);
	pb->n = 0;
}

static void
pb_put(struct prom_buf *pb, const char *s, size_t len)
{
	if (len > sizeof(pb->b) - pb->n) {
		pb_flush(pb);
		if (len > sizeof(pb->b)) {
			evbuffer_add(pb->out, s, len);
			return;
		}
	}
	memcpy(pb->b + pb->n, s, len);
	pb->n += len;
}

static void
pb_str(struct prom_buf *pb, const char *s)
{
	pb_put(pb, s, strlen(s));
}

static void
pb_u64(struct prom_buf *pb, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	pb_put(pb, tmp + i, sizeof(tmp) - i);
}

/* Help text escapes \ and newline; a label value also ". */
static void
pb_escaped(struct prom_buf *pb, const char *s, int is_label)
{
	const char *run = s;

	for (; *s != '\0'; s++) {
		const char *rep;

		switch (*s) {
		case '\\':
			rep = "\\\\";
			break;
		case '\n':
			rep = "\\n";
			break;
		case '"':
			if (!is_label)
				continue;
			rep = "\\\"";
			break;
		default:
			continue;
		}
		pb_put(pb, run, (size_t)(s - run));
		pb_put(pb, rep, 2);
		run = s + 1;
	}
	pb_put(pb, run, (size_t)(s - run));
}

void
prom_escape(struct evbuffer *out, const char *s, int is_label)
{
	struct prom_buf pb = { .out = out };

	pb_escaped(&pb, s, is_label);
	pb_flush(&pb);
}

void
prom_family(struct evbuffer *out, const char *name, enum prom_type type,
    const char *help)
{
	struct prom_buf pb = { .out = out };

	pb_str(&pb, "# HELP ");
	pb_str(&pb, name);
	pb_put(&pb, " ", 1);
	pb_escaped(&pb, help, 0);
	pb_str(&pb, "\n# TYPE ");
	pb_str(&pb, name);
	pb_put(&pb, " ", 1);
	pb_str(&pb, prom_type_names[type]);
	pb_put(&pb, "\n", 1);
	pb_flush(&pb);
}

/* name{a="x",b="y" -- without the closing brace, so that le can follow
 * (no brace at all without labels). */
static void
pb_series_open(struct prom_buf *pb, const char *name, const char *suffix,
    const struct prom_label *labels, size_t nlabels)
{
	pb_str(pb, name);
	if (suffix != NULL)
		pb_str(pb, suffix);
	for (size_t i = 0; i < nlabels; i++) {
		pb_put(pb, i == 0 ? "{" : ",", 1);
		pb_str(pb, labels[i].name);
		pb_put(pb, "=\"", 2);
		pb_escaped(pb, labels[i].value, 1);
		pb_put(pb, "\"", 1);
	}
}

static void
pb_series(struct prom_buf *pb, const char *name, const char *suffix,
    const struct prom_label *labels, size_t nlabels)
{
	pb_series_open(pb, name, suffix, labels, nlabels);
	if (nlabels > 0)
		pb_put(pb, "}", 1);
}

/* A double as Go's strconv would read it back exactly. */
static void
prom_format_double(char *buf, size_t cap, double v)
{
	if (isnan(v)) {
		snprintf(buf, cap, "NaN");
		return;
	}
	if (isinf(v)) {
		snprintf(buf, cap, "%s", v > 0 ? "+Inf" : "-Inf");
		return;
	}
	/* Shortest of %.15g .. %.17g that round-trips. */
	for (int prec = 15; prec <= 17; prec++) {
		snprintf(buf, cap, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			return;
	}
}

static void
pb_double(struct prom_buf *pb, double v)
{
	char tmp[40];

	/* Whole numbers, the common case, without printf. */
	if (v >= 0 && v < 1e15 && v == (double)(uint64_t)v) {
		pb_u64(pb, (uint64_t)v);
		return;
	}
	prom_format_double(tmp, sizeof(tmp), v);
	pb_str(pb, tmp);
}

void
prom_sample_u64(struct evbuffer *out, const char *name,
    const struct prom_label *labels, size_t nlabels, uint64_t value)
{
	struct prom_buf pb = { .out = out };

	pb_series(&pb, name, NULL, labels, nlabels);
	pb_put(&pb, " ", 1);
	pb_u64(&pb, value);
	pb_put(&pb, "\n", 1);
	pb_flush(&pb);
}

void
prom_sample(struct evbuffer *out, const char *name,
    const struct prom_label *labels, size_t nlabels, double value)
{
	struct prom_buf pb = { .out = out };

	pb_series(&pb, name, NULL, labels, nlabels);
	pb_put(&pb, " ", 1);
	pb_double(&pb, value);
	pb_put(&pb, "\n", 1);
	pb_flush(&pb);
}

/*
 * The le texts of the last bounds seen: a family's series share their
 * bounds, so they are formatted once per family, not once per line.
 */
#define PROM_LE_MAX	32
static struct {
	size_t n;
	double bounds[PROM_LE_MAX];
	char text[PROM_LE_MAX][40];
} prom_le_cache;

static const char *
prom_le(const double *bounds, size_t nbounds, size_t i)
{
	static char one[40];

	if (nbounds > PROM_LE_MAX) {
		prom_format_double(one, sizeof(one), bounds[i]);
		return one;
	}
	if (prom_le_cache.n != nbounds || memcmp(prom_le_cache.bounds, bounds,
	    nbounds * sizeof(*bounds)) != 0) {
		for (size_t k = 0; k < nbounds; k++) {
			prom_le_cache.bounds[k] = bounds[k];
			prom_format_double(prom_le_cache.text[k],
			    sizeof(prom_le_cache.text[k]), bounds[k]);
		}
		prom_le_cache.n = nbounds;
	}
	return prom_le_cache.text[i];
}

void
prom_histogram(struct evbuffer *out, const char *name,
    const struct prom_label *labels, size_t nlabels, const double *bounds,
    size_t nbounds, const uint64_t *counts, double sum)
{
	struct prom_buf pb = { .out = out };
	uint64_t cum = 0;

	for (size_t i = 0; i <= nbounds; i++) {
		cum += counts[i];
		pb_series_open(&pb, name, "_bucket", labels, nlabels);
		pb_str(&pb, nlabels > 0 ? ",le=\"" : "{le=\"");
		pb_str(&pb, i < nbounds ? prom_le(bounds, nbounds, i) : "+Inf");
		pb_put(&pb, "\"} ", 3);
		pb_u64(&pb, cum);
		pb_put(&pb, "\n", 1);
	}
	pb_series(&pb, name, "_sum", labels, nlabels);
	pb_put(&pb, " ", 1);
	pb_double(&pb, sum);
	pb_put(&pb, "\n", 1);
	pb_series(&pb, name, "_count", labels, nlabels);
	pb_put(&pb, " ", 1);
	pb_u64(&pb, cum);
	pb_put(&pb, "\n", 1);
	pb_flush(&pb);
}
