/* SPDX-License-Identifier: MIT */
/*
 * json: the little JSON the control socket needs. The writer escapes
 * strings into an evbuffer (master side); the reader turns one document
 * into a tree (smtpfrontctl side). Nesting is bounded; nothing is streamed.
 */
#ifndef SMTPFRONT_JSON_H
#define SMTPFRONT_JSON_H

#include <stdbool.h>
#include <stddef.h>

struct evbuffer;

enum json_type {
	JSON_NULL,
	JSON_BOOL,
	JSON_NUMBER,
	JSON_STRING,
	JSON_ARRAY,
	JSON_OBJECT,
};

struct json {
	enum json_type type;
	bool b;
	double num;
	char *str;			/* JSON_STRING (NUL-terminated, may hold NUL) */
	char *key;			/* set when this is an object member */
	struct json **items;		/* JSON_ARRAY / JSON_OBJECT */
	size_t nitems;
};

/* Append s as a quoted JSON string (control characters, quotes,
 * backslashes escaped; other bytes as they are). */
int json_write_string(struct evbuffer *out, const char *s)
    __attribute__((warn_unused_result));

/* Parse one whole document (trailing whitespace allowed); NULL on any
 * error, with a short reason in err. */
struct json *json_parse(const char *text, size_t len, char *err, size_t errlen)
    __attribute__((warn_unused_result));
void json_free(struct json *j);

/* Member of an object (NULL when absent or j is not an object). */
const struct json *json_get(const struct json *j, const char *key);
/* Typed lookups with a fallback for absent or mistyped members. */
const char *json_get_str(const struct json *j, const char *key,
    const char *dflt);
double json_get_num(const struct json *j, const char *key, double dflt);
bool json_get_bool(const struct json *j, const char *key, bool dflt);

#endif
