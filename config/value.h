/* SPDX-License-Identifier: MIT */
/*
 * config/value.h: private to config/ (and its unit tests). The scalar types of
 * the configuration language as pure functions; on failure each writes one
 * message, ready for a diagnostic, into err.
 */
#ifndef SMTPFRONT_CONFIG_VALUE_H
#define SMTPFRONT_CONFIG_VALUE_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"

/* The longest duration accepted: INT_MAX ms (about 24.8 days), safe for timers. */
#define CFG_DURATION_MAX_MS 2147483647u

/* Write s as a double-quoted, escaped and possibly shortened string. */
void cfg_quote(const char *s, char *buf, size_t size);

/* Plain decimal: no sign, no leading zero, no exponent, no hex. */
int cfg_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out,
    char *err, size_t errlen) __attribute__((warn_unused_result));
/* [0-9]+(ms|s|m|h), greater than 0, at most CFG_DURATION_MAX_MS. */
int cfg_parse_duration(const char *s, unsigned *ms, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* A file mode in octal, "0660" or "660", at most 0777. */
int cfg_parse_mode(const char *s, unsigned *mode, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* [A-Za-z0-9._-]{1,64} */
int cfg_check_name(const char *s, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* A DNS host name: dot-separated labels of letters, digits, '-' and '_'. */
int cfg_check_hostname(const char *s, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/*
 * "host:port", "[v6addr]:port" or "[v4addr]:port". Numeric hosts never touch
 * the resolver; a host name is resolved with getaddrinfo (first result) when
 * resolve is true and is an error otherwise. allow_any admits 0.0.0.0 and ::.
 */
int cfg_parse_addr(const char *s, bool allow_any, bool resolve,
    struct cfg_addr *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/*
 * The same, except that a host name is resolved only when resolve is
 * true: otherwise 1 is returned with the name in host and the port in
 * *port, and out has len 0 (AF_UNSPEC) and the address as written for
 * text. 0 for a numeric or resolved address, -1 with err.
 */
int cfg_parse_addr_deferred(const char *s, bool allow_any, bool resolve,
    struct cfg_addr *out, char *host, size_t hostcap, unsigned *port,
    char *err, size_t errlen) __attribute__((warn_unused_result));
/* getaddrinfo(host, port), first result: out->ss and out->len only. */
int cfg_lookup_addr(const char *host, unsigned port, struct cfg_addr *out,
    char *err, size_t errlen) __attribute__((warn_unused_result));
/* A looked-up address: the unspecified address check, then its text. */
int cfg_addr_resolved(const char *spec, bool allow_any, struct cfg_addr *out,
    char *err, size_t errlen) __attribute__((warn_unused_result));
/* "ip/len" or a bare ip (a host); host bits are cleared. */
int cfg_parse_cidr(const char *s, struct cfg_cidr *out, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* True when both hold the same family, address, port (and IPv6 scope). */
bool cfg_addr_equal(const struct cfg_addr *a, const struct cfg_addr *b);
/* The port of a resolved address, host order. */
unsigned cfg_addr_port(const struct cfg_addr *a);

#endif
