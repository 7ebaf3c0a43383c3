/* SPDX-License-Identifier: MIT */
/*
 * prom: the text exposition format 0.0.4 (Prometheus' "text format"):
 * escaping, sample lines and histograms. Values go out as integers when
 * they are counts, otherwise in the shortest form that reads back the same
 * double, with +Inf/-Inf/NaN spelled as Prometheus spells them.
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

void
prom_escape(struct evbuffer *out, const char *s, int is_label)
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
		evbuffer_add(out, run, (size_t)(s - run));
		evbuffer_add(out, rep, 2);
		run = s + 1;
	}
	evbuffer_add(out, run, (size_t)(s - run));
}

void
prom_family(struct evbuffer *out, const char *name, enum prom_type type,
    const char *help)
{
	evbuffer_add_printf(out, "# HELP %s ", name);
	prom_escape(out, help, 0);
	evbuffer_add_printf(out, "\n# TYPE %s %s\n", name,
	    prom_type_names[type]);
}

/* name{a="x",b="y"} with an extra label (le) when extra is not NULL. */
static void
prom_series(struct evbuffer *out, const char *name, const char *suffix,
    const struct prom_label *labels, size_t nlabels, const char *extra_name,
    const char *extra_value)
{
	evbuffer_add(out, name, strlen(name));
	if (suffix != NULL)
		evbuffer_add(out, suffix, strlen(suffix));
	if (nlabels == 0 && extra_name == NULL)
		return;
	evbuffer_add(out, "{", 1);
	for (size_t i = 0; i < nlabels; i++) {
		evbuffer_add_printf(out, "%s%s=\"", i > 0 ? "," : "",
		    labels[i].name);
		prom_escape(out, labels[i].value, 1);
		evbuffer_add(out, "\"", 1);
	}
	if (extra_name != NULL) {
		evbuffer_add_printf(out, "%s%s=\"", nlabels > 0 ? "," : "",
		    extra_name);
		prom_escape(out, extra_value, 1);
		evbuffer_add(out, "\"", 1);
	}
	evbuffer_add(out, "}", 1);
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

void
prom_sample_u64(struct evbuffer *out, const char *name,
    const struct prom_label *labels, size_t nlabels, uint64_t value)
{
	prom_series(out, name, NULL, labels, nlabels, NULL, NULL);
	evbuffer_add_printf(out, " %llu\n", (unsigned long long)value);
}

void
prom_sample(struct evbuffer *out, const char *name,
    const struct prom_label *labels, size_t nlabels, double value)
{
	char v[40];

	prom_format_double(v, sizeof(v), value);
	prom_series(out, name, NULL, labels, nlabels, NULL, NULL);
	evbuffer_add_printf(out, " %s\n", v);
}

void
prom_histogram(struct evbuffer *out, const char *name,
    const struct prom_label *labels, size_t nlabels, const double *bounds,
    size_t nbounds, const uint64_t *counts, double sum)
{
	uint64_t cum = 0;
	char le[40], v[40];

	for (size_t i = 0; i <= nbounds; i++) {
		cum += counts[i];
		if (i < nbounds)
			prom_format_double(le, sizeof(le), bounds[i]);
		else
			snprintf(le, sizeof(le), "+Inf");
		prom_series(out, name, "_bucket", labels, nlabels, "le", le);
		evbuffer_add_printf(out, " %llu\n", (unsigned long long)cum);
	}
	prom_format_double(v, sizeof(v), sum);
	prom_series(out, name, "_sum", labels, nlabels, NULL, NULL);
	evbuffer_add_printf(out, " %s\n", v);
	prom_series(out, name, "_count", labels, nlabels, NULL, NULL);
	evbuffer_add_printf(out, " %llu\n", (unsigned long long)cum);
}
