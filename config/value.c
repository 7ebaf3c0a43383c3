/* SPDX-License-Identifier: MIT */
/*
 * config/value.c: the scalar types of the configuration language (plain
 * decimal integers, durations, file modes, names, host names, socket addresses
 * and CIDRs) as pure functions, apart from host name resolution. They know
 * nothing of YAML; config.c attaches their messages to a line and column.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/value.h"

/* Values echoed in messages are cut here so a message fits its 256 bytes. */
#define QUOTE_MAX 48

void
cfg_quote(const char *s, char *buf, size_t size)
{
	size_t o = 0, shown = 0;

	if (size < 8) {
		if (size > 0)
			buf[0] = '\0';
		return;
	}
	buf[o++] = '"';
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;
		char tmp[8];
		size_t n;

		if (shown >= QUOTE_MAX) {
			if (o + 4 < size) {
				memcpy(buf + o, "...", 3);
				o += 3;
			}
			break;
		}
		if (c == '"' || c == '\\')
			n = (size_t)snprintf(tmp, sizeof tmp, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			n = (size_t)snprintf(tmp, sizeof tmp, "\\x%02x", c);
		else {
			tmp[0] = (char)c;
			n = 1;
		}
		if (o + n + 2 > size)
			break;
		memcpy(buf + o, tmp, n);
		o += n;
		shown++;
	}
	buf[o++] = '"';
	buf[o] = '\0';
}

static bool
cfg_all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* Decimal digits of s[0..n) into *out, false on overflow past max. */
static bool
cfg_digits_value(const char *s, size_t n, unsigned long long max,
    unsigned long long *out)
{
	unsigned long long v = 0;

	for (size_t i = 0; i < n; i++) {
		v = v * 10 + (unsigned)(s[i] - '0');
		if (v > max)
			return false;
	}
	*out = v;
	return true;
}

int
cfg_parse_uint(const char *s, unsigned min, unsigned max, unsigned *out,
    char *err, size_t errlen)
{
	unsigned long long v;
	char q[64];

	if (!cfg_all_digits(s) || (s[0] == '0' && s[1] != '\0') ||
	    !cfg_digits_value(s, strlen(s), max, &v) || v < min) {
		cfg_quote(s, q, sizeof q);
		snprintf(err, errlen, "expected an integer from %u to %u, got %s",
		    min, max, q);
		return -1;
	}
	*out = (unsigned)v;
	return 0;
}

int
cfg_parse_duration(const char *s, unsigned *ms, char *err, size_t errlen)
{
	static const struct {
		const char *suffix;
		unsigned long long factor;
	} units[] = {
		{ "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 },
	};
	size_t n = strspn(s, "0123456789");
	unsigned long long v;
	char q[64];

	cfg_quote(s, q, sizeof q);
	for (size_t i = 0; n > 0 && i < sizeof units / sizeof units[0]; i++) {
		if (strcmp(s + n, units[i].suffix) != 0)
			continue;
		if (!cfg_digits_value(s, n, CFG_DURATION_MAX_MS / units[i].factor, &v)) {
			snprintf(err, errlen, "duration %s is too long: at most %uh",
			    q, CFG_DURATION_MAX_MS / 3600000u);
			return -1;
		}
		if (v == 0) {
			snprintf(err, errlen,
			    "expected a duration greater than 0, got %s", q);
			return -1;
		}
		*ms = (unsigned)(v * units[i].factor);
		return 0;
	}
	snprintf(err, errlen,
	    "expected a duration like 5s, 300ms, 10m or 1h, got %s", q);
	return -1;
}

int
cfg_parse_mode(const char *s, unsigned *mode, char *err, size_t errlen)
{
	size_t n = strspn(s, "01234567");
	unsigned v = 0;
	char q[64];

	if (n >= 1 && n <= 4 && s[n] == '\0') {
		for (size_t i = 0; i < n; i++)
			v = v * 8 + (unsigned)(s[i] - '0');
		if (v <= 0777) {
			*mode = v;
			return 0;
		}
	}
	cfg_quote(s, q, sizeof q);
	snprintf(err, errlen,
	    "expected an octal file mode from \"0000\" to \"0777\" like \"0660\", got %s",
	    q);
	return -1;
}

int
cfg_check_name(const char *s, char *err, size_t errlen)
{
	size_t n = strlen(s);
	char q[64];

	if (n >= 1 && n <= CFG_NAME_MAX && strspn(s,
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n)
		return 0;
	cfg_quote(s, q, sizeof q);
	snprintf(err, errlen, "expected a name of 1 to %d letters, digits, "
	    "'.', '_' or '-', got %s", CFG_NAME_MAX, q);
	return -1;
}

static bool
cfg_hostname_ok(const char *s)
{
	size_t n = strlen(s), label = 0;
	bool alpha = false;

	if (n == 0 || n > 253)
		return false;
	for (const char *c = s; *c != '\0'; c++) {
		if (*c == '.') {
			if (label == 0)
				return false;
			label = 0;
			alpha = false;
			continue;
		}
		if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_')
			return false;
		if (!isdigit((unsigned char)*c))
			alpha = true;
		if (++label > 63)
			return false;
	}
	/*
	 * An empty last label (a trailing dot) is refused, and so is an
	 * all-digit one: the resolver would read "10.1" as an IPv4 address.
	 */
	return label > 0 && alpha;
}

int
cfg_check_hostname(const char *s, char *err, size_t errlen)
{
	char q[64];

	if (cfg_hostname_ok(s))
		return 0;
	cfg_quote(s, q, sizeof q);
	snprintf(err, errlen, "expected a host name like mx.example.org, got %s", q);
	return -1;
}

static void
cfg_addr_text(struct cfg_addr *a)
{
	char ip[INET6_ADDRSTRLEN];
	const void *p;
	unsigned port;

	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->ss;
		p = &sin->sin_addr;
		port = ntohs(sin->sin_port);
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->ss;
		p = &sin6->sin6_addr;
		port = ntohs(sin6->sin6_port);
	}
	if (inet_ntop(a->ss.ss_family, p, ip, sizeof ip) == NULL)
		snprintf(ip, sizeof ip, "?");
	snprintf(a->text, sizeof a->text, "[%s]:%u", ip, port);
}

static bool
cfg_addr_is_any(const struct cfg_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr ==
		    htonl(INADDR_ANY);
	return IN6_IS_ADDR_UNSPECIFIED(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
}

/* A numeric IPv4 or IPv6 address; inet_pton, so "127.1" and "0x7f.1" fail. */
static bool
cfg_addr_numeric(const char *host, unsigned port, struct cfg_addr *out)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;

	memset(&out->ss, 0, sizeof out->ss);
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((unsigned short)port);
		out->len = sizeof *sin;
		return true;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((unsigned short)port);
		out->len = sizeof *sin6;
		return true;
	}
	return false;
}

/* "host:port" or "[addr]:port" into its parts; -1 with err. */
static int
cfg_addr_split(const char *s, char *host, size_t hostcap, unsigned *port,
    bool *bracket, char *err, size_t errlen)
{
	const char *colon, *port_text;
	size_t hlen;
	char q[64];

	*bracket = s[0] == '[';
	cfg_quote(s, q, sizeof q);
	if (*bracket) {
		const char *end = strchr(s, ']');
		if (end == NULL || end[1] != ':') {
			snprintf(err, errlen, "bad address %s: expected [address]:port", q);
			return -1;
		}
		hlen = (size_t)(end - s - 1);
		memcpy(host, s + 1, hlen < hostcap ? hlen : 0);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL) {
			snprintf(err, errlen, "bad address %s: expected host:port "
			    "or [IPv6 address]:port", q);
			return -1;
		}
		if (memchr(s, ':', (size_t)(colon - s)) != NULL) {
			snprintf(err, errlen, "bad address %s: write an IPv6 address "
			    "in brackets, like [2001:db8::1]:25", q);
			return -1;
		}
		hlen = (size_t)(colon - s);
		memcpy(host, s, hlen < hostcap ? hlen : 0);
	}
	if (hlen == 0 || hlen >= hostcap) {
		snprintf(err, errlen, "bad address %s: %s host", q,
		    hlen == 0 ? "missing" : "over-long");
		return -1;
	}
	host[hlen] = '\0';
	port_text = colon + 1;
	if (!cfg_all_digits(port_text) || (port_text[0] == '0') ||
	    strlen(port_text) > 5 || (*port = (unsigned)atoi(port_text)) > 65535) {
		snprintf(err, errlen, "bad address %s: the port must be an integer "
		    "from 1 to 65535", q);
		return -1;
	}
	return 0;
}

/* The checks every address gets once it is known, then its text. */
static int
cfg_addr_finish(const char *spec, bool allow_any, struct cfg_addr *out,
    char *err, size_t errlen)
{
	char q[64];

	if (!allow_any && cfg_addr_is_any(out)) {
		cfg_quote(spec, q, sizeof q);
		snprintf(err, errlen, "bad address %s: the unspecified address "
		    "cannot be connected to", q);
		return -1;
	}
	cfg_addr_text(out);
	return 0;
}

int
cfg_lookup_addr(const char *host, unsigned port, struct cfg_addr *out,
    char *err, size_t errlen)
{
	struct addrinfo hints, *res = NULL;
	char portbuf[8], q[64];
	int rc;

	cfg_quote(host, q, sizeof q);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	snprintf(portbuf, sizeof portbuf, "%u", port);
	rc = getaddrinfo(host, portbuf, &hints, &res);
	if (rc != 0 || res == NULL || res->ai_addrlen > sizeof out->ss ||
	    (res->ai_family != AF_INET && res->ai_family != AF_INET6)) {
		snprintf(err, errlen, "cannot resolve host %s: %s", q,
		    rc != 0 ? gai_strerror(rc) : "no usable address");
		if (res != NULL)
			freeaddrinfo(res);
		return -1;
	}
	memset(&out->ss, 0, sizeof out->ss);
	memcpy(&out->ss, res->ai_addr, res->ai_addrlen);
	out->len = res->ai_addrlen;
	freeaddrinfo(res);
	return 0;
}

int
cfg_parse_addr_deferred(const char *s, bool allow_any, bool resolve,
    struct cfg_addr *out, char *host, size_t hostcap, unsigned *port,
    char *err, size_t errlen)
{
	char q[64];
	bool bracket;

	if (cfg_addr_split(s, host, hostcap, port, &bracket, err, errlen) == -1)
		return -1;
	if (cfg_addr_numeric(host, *port, out))
		return cfg_addr_finish(s, allow_any, out, err, errlen);
	if (bracket || !cfg_hostname_ok(host)) {
		cfg_quote(s, q, sizeof q);
		snprintf(err, errlen, "bad address %s: %s", q, bracket ?
		    "not an IP address inside the brackets" :
		    "not an IPv4 address or a host name");
		return -1;
	}
	if (!resolve) {
		/* For the caller to resolve: no address yet. */
		memset(&out->ss, 0, sizeof out->ss);
		out->ss.ss_family = AF_UNSPEC;
		out->len = 0;
		snprintf(out->text, sizeof out->text, "%s", s);
		return 1;
	}
	if (cfg_lookup_addr(host, *port, out, err, errlen) == -1)
		return -1;
	return cfg_addr_finish(s, allow_any, out, err, errlen);
}

int
cfg_parse_addr(const char *s, bool allow_any, bool resolve,
    struct cfg_addr *out, char *err, size_t errlen)
{
	char host[256], q[64];
	unsigned port;
	int rc;

	rc = cfg_parse_addr_deferred(s, allow_any, resolve, out, host,
	    sizeof host, &port, err, errlen);
	if (rc == 1) {
		cfg_quote(host, q, sizeof q);
		snprintf(err, errlen, "cannot resolve host %s: name "
		    "resolution is disabled", q);
		return -1;
	}
	return rc;
}

int
cfg_addr_resolved(const char *spec, bool allow_any, struct cfg_addr *out,
    char *err, size_t errlen)
{
	return cfg_addr_finish(spec, allow_any, out, err, errlen);
}

int
cfg_parse_cidr(const char *s, struct cfg_cidr *out, char *err, size_t errlen)
{
	const char *slash = strchr(s, '/');
	char ip[INET6_ADDRSTRLEN + 1], q[64];
	size_t n = slash != NULL ? (size_t)(slash - s) : strlen(s);
	unsigned prefix, max;
	unsigned long long v;

	cfg_quote(s, q, sizeof q);
	memset(out, 0, sizeof *out);
	if (n == 0 || n >= sizeof ip)
		goto bad;
	memcpy(ip, s, n);
	ip[n] = '\0';
	if (inet_pton(AF_INET, ip, out->addr) == 1) {
		out->family = AF_INET;
		max = 32;
	} else if (inet_pton(AF_INET6, ip, out->addr) == 1) {
		out->family = AF_INET6;
		max = 128;
	} else
		goto bad;
	prefix = max;
	if (slash != NULL) {
		const char *d = slash + 1;
		if (!cfg_all_digits(d) || (d[0] == '0' && d[1] != '\0') ||
		    !cfg_digits_value(d, strlen(d), max, &v)) {
			snprintf(err, errlen, "bad network %s: the prefix length "
			    "must be an integer from 0 to %u", q, max);
			return -1;
		}
		prefix = (unsigned)v;
	}
	out->prefix = prefix;
	for (unsigned bit = prefix; bit < max; bit++)
		out->addr[bit / 8] &= (unsigned char)~(0x80u >> (bit % 8));
	return 0;
bad:
	snprintf(err, errlen, "bad network %s: expected an address or a CIDR "
	    "like 192.0.2.0/24 or 2001:db8::/32", q);
	return -1;
}

bool
cfg_addr_equal(const struct cfg_addr *a, const struct cfg_addr *b)
{
	if (a->ss.ss_family != b->ss.ss_family)
		return false;
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)&a->ss;
		const struct sockaddr_in *y = (const struct sockaddr_in *)&b->ss;
		return x->sin_port == y->sin_port &&
		    x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&a->ss;
		const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&b->ss;
		return x->sin6_port == y->sin6_port &&
		    x->sin6_scope_id == y->sin6_scope_id &&
		    memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
	}
	return false;
}

unsigned
cfg_addr_port(const struct cfg_addr *a)
{
	if (a->ss.ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
	if (a->ss.ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
	return 0;
}
