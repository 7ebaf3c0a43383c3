/* SPDX-License-Identifier: MIT */
/*
 * prom: the Prometheus text exposition format 0.0.4, written into an
 * evbuffer. Pure: it knows nothing of where the numbers come from. Each
 * family gets its # HELP and # TYPE line once, before its samples; label
 * values are escaped; a histogram is written from non-cumulative bucket
 * counts, so its _bucket lines, +Inf, _count and _sum always agree.
 */
#ifndef SMTPFRONT_PROM_H
#define SMTPFRONT_PROM_H

#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum prom_type {
	PROM_COUNTER,
	PROM_GAUGE,
	PROM_HISTOGRAM,
};

struct prom_label {
	const char *name;
	const char *value;
};

/* The content type of what this writes, for an HTTP answer. */
#define PROM_CONTENT_TYPE	"text/plain; version=0.0.4; charset=utf-8"

/* # HELP and # TYPE of a family; its samples follow. `help` is escaped. */
void prom_family(struct evbuffer *out, const char *name, enum prom_type type,
    const char *help);
/* One sample: name{labels} value (nlabels may be 0). */
void prom_sample_u64(struct evbuffer *out, const char *name,
    const struct prom_label *labels, size_t nlabels, uint64_t value);
void prom_sample(struct evbuffer *out, const char *name,
    const struct prom_label *labels, size_t nlabels, double value);
/*
 * One histogram series (its family written with prom_family first):
 * bounds[0..nbounds) strictly increasing upper bounds, counts[0..nbounds]
 * the observations in each bucket, the last one above every bound.
 * Writes the cumulative _bucket lines (le="+Inf" last), _sum and _count.
 */
void prom_histogram(struct evbuffer *out, const char *name,
    const struct prom_label *labels, size_t nlabels, const double *bounds,
    size_t nbounds, const uint64_t *counts, double sum);

/* A label value or help text, escaped (for the tests). */
void prom_escape(struct evbuffer *out, const char *s, int is_label);

#endif
