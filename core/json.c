/* SPDX-License-Identifier: MIT */
/*
 * json: string escaping for the control socket's answers and a small
 * recursive-descent reader for smtpfrontctl. \u escapes are decoded to
 * UTF-8 (surrogate pairs joined); numbers go through strtod.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "core/json.h"

/* Deeper than any answer smtpfront writes; bounds the recursion. */
#define JSON_MAX_DEPTH 32

/* Length of the well-formed UTF-8 sequence at p (first byte >= 0x80), or
 * 0 when it is not one. */
static size_t
json_utf8_len(const unsigned char *p)
{
	uint32_t cp;
	size_t n;

	if (p[0] >= 0xc2 && p[0] <= 0xdf)
		n = 2, cp = p[0] & 0x1f;
	else if (p[0] >= 0xe0 && p[0] <= 0xef)
		n = 3, cp = p[0] & 0x0f;
	else if (p[0] >= 0xf0 && p[0] <= 0xf4)
		n = 4, cp = p[0] & 0x07;
	else
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((p[i] & 0xc0) != 0x80)	/* also stops at the NUL */
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	if ((n == 3 && (cp < 0x800 || (cp >= 0xd800 && cp < 0xe000))) ||
	    (n == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return n;
}

int
json_write_string(struct evbuffer *out, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	const unsigned char *run = p;
	char esc[7];

	if (evbuffer_add(out, "\"", 1) == -1)
		return -1;
	for (; *p != '\0'; p++) {
		size_t n = 2, u;

		if (*p >= 0x80) {
			u = json_utf8_len(p);
			if (u > 0) {
				p += u - 1;
				continue;
			}
			/* Not UTF-8 (a backend's reply can hold anything):
			 * U+FFFD keeps the document valid. */
			if (p > run && evbuffer_add(out, run,
			    (size_t)(p - run)) == -1)
				return -1;
			if (evbuffer_add(out, "\\ufffd", 6) == -1)
				return -1;
			run = p + 1;
			continue;
		}
		if (*p >= 0x20 && *p != '"' && *p != '\\')
			continue;
		if (p > run && evbuffer_add(out, run, (size_t)(p - run)) == -1)
			return -1;
		esc[0] = '\\';
		switch (*p) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[*p >> 4];
			esc[5] = hex[*p & 0xf];
			n = 6;
			break;
		}
		if (evbuffer_add(out, esc, n) == -1)
			return -1;
		run = p + 1;
	}
	if (p > run && evbuffer_add(out, run, (size_t)(p - run)) == -1)
		return -1;
	return evbuffer_add(out, "\"", 1);
}

struct json_reader {
	const char *p;
	const char *end;
	char *err;
	size_t errlen;
};

static struct json *json_read_value(struct json_reader *r, int depth);

static struct json *
json_fail(struct json_reader *r, const char *what)
{
	if (r->err[0] == '\0')
		snprintf(r->err, r->errlen, "%s", what);
	return NULL;
}

static void
json_skip_ws(struct json_reader *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' ||
	    *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

static struct json *
json_node(enum json_type t)
{
	struct json *j = calloc(1, sizeof(*j));

	if (j != NULL)
		j->type = t;
	return j;
}

static int
json_hex4(struct json_reader *r, uint32_t *out)
{
	uint32_t v = 0;

	if (r->end - r->p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = *r->p++;

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (uint32_t)(c - 'A' + 10);
		else
			return -1;
	}
	*out = v;
	return 0;
}

static size_t
json_utf8(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | (cp >> 6));
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | (cp >> 12));
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | (cp >> 18));
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* At the opening quote; returns a malloc'd, NUL-terminated copy. */
static char *
json_read_string(struct json_reader *r)
{
	/* Escapes never grow: \uXXXX (6 bytes) gives at most 4 (a pair of
	 * 12 bytes gives 4), so the raw length bounds the result. */
	const char *start = ++r->p;
	char *s, *o;

	while (r->p < r->end && *r->p != '"')
		r->p += (*r->p == '\\' && r->p + 1 < r->end) ? 2 : 1;
	if (r->p >= r->end) {
		json_fail(r, "unterminated string");
		return NULL;
	}
	s = malloc((size_t)(r->p - start) + 1);
	if (s == NULL) {
		json_fail(r, "out of memory");
		return NULL;
	}
	r->end = r->p;		/* read the body with the quote as end */
	r->p = start;
	o = s;
	while (r->p < r->end) {
		unsigned char c = (unsigned char)*r->p++;
		uint32_t cp, lo;

		if (c < 0x20)
			goto bad;
		if (c != '\\') {
			*o++ = (char)c;
			continue;
		}
		switch (*r->p++) {
		case '"': *o++ = '"'; break;
		case '\\': *o++ = '\\'; break;
		case '/': *o++ = '/'; break;
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u':
			if (json_hex4(r, &cp) == -1)
				goto bad;
			if (cp >= 0xd800 && cp < 0xdc00) {
				if (r->end - r->p < 6 || r->p[0] != '\\' ||
				    r->p[1] != 'u')
					goto bad;
				r->p += 2;
				if (json_hex4(r, &lo) == -1 || lo < 0xdc00 ||
				    lo > 0xdfff)
					goto bad;
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				    (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp < 0xe000) {
				goto bad;
			}
			o += json_utf8(cp, o);
			break;
		default:
			goto bad;
		}
	}
	*o = '\0';
	return s;
bad:
	free(s);
	json_fail(r, "bad string");
	return NULL;
}

static int
json_add_item(struct json *parent, struct json *child)
{
	struct json **n = realloc(parent->items,
	    (parent->nitems + 1) * sizeof(*n));

	if (n == NULL)
		return -1;
	parent->items = n;
	parent->items[parent->nitems++] = child;
	return 0;
}

static struct json *
json_read_container(struct json_reader *r, int depth, bool object)
{
	struct json *j = json_node(object ? JSON_OBJECT : JSON_ARRAY);
	char close = object ? '}' : ']';

	if (j == NULL)
		return json_fail(r, "out of memory");
	r->p++;
	json_skip_ws(r);
	if (r->p < r->end && *r->p == close) {
		r->p++;
		return j;
	}
	for (;;) {
		char *key = NULL;
		struct json *v;

		json_skip_ws(r);
		if (object) {
			const char *end = r->end;

			if (r->p >= r->end || *r->p != '"')
				goto bad;
			key = json_read_string(r);
			if (key == NULL)
				goto bad;
			/* json_read_string left end at the closing quote */
			r->end = end;
			r->p++;
			json_skip_ws(r);
			if (r->p >= r->end || *r->p != ':') {
				free(key);
				goto bad;
			}
			r->p++;
		}
		v = json_read_value(r, depth + 1);
		if (v == NULL) {
			free(key);
			goto bad;
		}
		v->key = key;
		if (json_add_item(j, v) == -1) {
			json_free(v);
			goto bad;
		}
		json_skip_ws(r);
		if (r->p < r->end && *r->p == ',') {
			r->p++;
			continue;
		}
		if (r->p < r->end && *r->p == close) {
			r->p++;
			return j;
		}
		goto bad;
	}
bad:
	json_free(j);
	return json_fail(r, object ? "bad object" : "bad array");
}

static struct json *
json_read_value(struct json_reader *r, int depth)
{
	struct json *j;

	if (depth > JSON_MAX_DEPTH)
		return json_fail(r, "nested too deeply");
	json_skip_ws(r);
	if (r->p >= r->end)
		return json_fail(r, "unexpected end");
	switch (*r->p) {
	case '{':
		return json_read_container(r, depth, true);
	case '[':
		return json_read_container(r, depth, false);
	case '"': {
		const char *end = r->end;
		char *s = json_read_string(r);

		r->end = end;
		if (s == NULL)
			return NULL;
		r->p++;
		j = json_node(JSON_STRING);
		if (j == NULL) {
			free(s);
			return json_fail(r, "out of memory");
		}
		j->str = s;
		return j;
	}
	}
	if (r->end - r->p >= 4 && memcmp(r->p, "null", 4) == 0) {
		r->p += 4;
		j = json_node(JSON_NULL);
	} else if (r->end - r->p >= 4 && memcmp(r->p, "true", 4) == 0) {
		r->p += 4;
		if ((j = json_node(JSON_BOOL)) != NULL)
			j->b = true;
	} else if (r->end - r->p >= 5 && memcmp(r->p, "false", 5) == 0) {
		r->p += 5;
		j = json_node(JSON_BOOL);
	} else if (*r->p == '-' || (*r->p >= '0' && *r->p <= '9')) {
		char num[64], *e;
		size_t n = 0;

		while (r->p + n < r->end && n < sizeof(num) - 1 &&
		    strchr("+-.eE0123456789", r->p[n]) != NULL)
			n++;
		memcpy(num, r->p, n);
		num[n] = '\0';
		if ((j = json_node(JSON_NUMBER)) == NULL)
			return json_fail(r, "out of memory");
		j->num = strtod(num, &e);
		if (e != num + n) {
			free(j);
			return json_fail(r, "bad number");
		}
		r->p += n;
	} else {
		return json_fail(r, "unexpected character");
	}
	if (j == NULL)
		return json_fail(r, "out of memory");
	return j;
}

struct json *
json_parse(const char *text, size_t len, char *err, size_t errlen)
{
	struct json_reader r = { text, text + len, err, errlen };
	struct json *j;

	err[0] = '\0';
	j = json_read_value(&r, 0);
	if (j == NULL)
		return NULL;
	json_skip_ws(&r);
	if (r.p != r.end) {
		json_free(j);
		return json_fail(&r, "trailing garbage");
	}
	return j;
}

void
json_free(struct json *j)
{
	if (j == NULL)
		return;
	for (size_t i = 0; i < j->nitems; i++)
		json_free(j->items[i]);
	free(j->items);
	free(j->str);
	free(j->key);
	free(j);
}

const struct json *
json_get(const struct json *j, const char *key)
{
	if (j == NULL || j->type != JSON_OBJECT)
		return NULL;
	for (size_t i = 0; i < j->nitems; i++)
		if (strcmp(j->items[i]->key, key) == 0)
			return j->items[i];
	return NULL;
}

const char *
json_get_str(const struct json *j, const char *key, const char *dflt)
{
	const struct json *v = json_get(j, key);

	return v != NULL && v->type == JSON_STRING ? v->str : dflt;
}

double
json_get_num(const struct json *j, const char *key, double dflt)
{
	const struct json *v = json_get(j, key);

	return v != NULL && v->type == JSON_NUMBER ? v->num : dflt;
}

bool
json_get_bool(const struct json *j, const char *key, bool dflt)
{
	const struct json *v = json_get(j, key);

	return v != NULL && v->type == JSON_BOOL ? v->b : dflt;
}
