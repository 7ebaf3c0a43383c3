/* SPDX-License-Identifier: MIT */
/*
 * upstream: the PROXY header a balancer in front of smtpfront sends first
 * (listeners with accept_proxy, SPEC.md "Upstream PROXY"). Only sources in
 * trusted_proxies may send one; the header is read within proxy_timeout
 * into a buffer that exists only meanwhile, decoded by smtp/proxy.c, and
 * nothing is connected or said before it is. Its client becomes the
 * session's client; bytes after it are the client's first bytes. What
 * became of the header is returned; session.c decides what follows.
 */
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/worker/session_int.h"
#include "smtp/proxy.h"

/* Leading bytes of a rejected header shown in the log (escaped). */
#define UPSTREAM_DUMP_MAX	64

static bool
upstream_cidr_match(const struct cfg_cidr *c, int family,
    const uint8_t *addr)
{
	unsigned full = c->prefix / 8, rest = c->prefix % 8;
	uint8_t mask;

	if (c->family != family || memcmp(c->addr, addr, full) != 0)
		return false;
	if (rest == 0)
		return true;
	mask = (uint8_t)(0xff << (8 - rest));
	return (c->addr[full] & mask) == (addr[full] & mask);
}

/* An IPv4-mapped source (::ffff:a.b.c.d) is the IPv4 address it maps. */
bool
upstream_trusted(const struct cfg_listener *lc, const struct sockaddr *sa)
{
	const struct sockaddr_in6 *s6;
	const uint8_t *addr;
	int family;

	if (sa->sa_family == AF_INET) {
		family = AF_INET;
		addr = (const uint8_t *)
		    &((const struct sockaddr_in *)sa)->sin_addr;
	} else if (sa->sa_family == AF_INET6) {
		s6 = (const struct sockaddr_in6 *)sa;
		family = AF_INET6;
		addr = s6->sin6_addr.s6_addr;
		if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
			family = AF_INET;
			addr += 12;
		}
	} else {
		return false;
	}
	for (size_t i = 0; i < lc->ntrusted_proxies; i++)
		if (upstream_cidr_match(&lc->trusted_proxies[i], family, addr))
			return true;
	return false;
}

/* Keep the leading bytes of a rejected header for the log line. */
static void
upstream_dump(struct session *s, const uint8_t *p, size_t n)
{
	char out[4 * UPSTREAM_DUMP_MAX + 1];

	if (n == 0)
		return;
	proxy_escape(out, sizeof(out), p, n, UPSTREAM_DUMP_MAX);
	free(s->pre->dump);
	s->pre->dump = strdup(out);	/* NULL: the line goes without it */
}

/* A bad header: the class first in last_error, then why, then the dump. */
static enum upstream_status
upstream_reject(struct session *s, const char *class, const char *why,
    const char *more)
{
	session_add_error(s, "%s: %s%s", class, why, more);
	upstream_dump(s, s->pre->hdr, s->pre->hdr_len);
	return UPSTREAM_BAD;
}

/* The header is in: its client is the session's. */
static enum upstream_status
upstream_accepted(struct session *s, const struct proxy_info *info)
{
	size_t extra = s->pre->hdr_len - info->header_len;

	s->proxy_in = (unsigned char)info->version;
	if (info->usable) {
		/* AF_INET or AF_INET6 (mapped ones arrive unmapped): both fit
		 * the session's address union. */
		memcpy(&s->peer, &info->src, sizeof(s->peer));
		memcpy(&s->pre->local, &info->dst, sizeof(s->pre->local));
	} else {
		/* LOCAL, UNKNOWN, UDP, AF_UNIX: the upstream connection's real
		 * endpoints stay; nothing is invented. */
		s->pre->proxy_local = true;
	}
	if (extra > 0) {
		/* The client's first bytes, read with the header: the gate
		 * holds them like any early bytes. */
		if ((s->pre->hold = evbuffer_new()) == NULL ||
		    evbuffer_add(s->pre->hold, s->pre->hdr + info->header_len,
		    extra) == -1) {
			session_add_error(s, "out of memory");
			return UPSTREAM_NOMEM;
		}
	}
	free(s->pre->hdr);
	s->pre->hdr = NULL;
	s->pre->hdr_len = 0;
	return UPSTREAM_DONE;
}

enum upstream_status
upstream_read(struct session *s, int *errp)
{
	struct session_side *c = &s->client;
	struct proxy_info info;
	enum proxy_result r;
	char more[160];
	ssize_t n;
	int err;

	n = relay_recv(c->fd, s->pre->hdr + s->pre->hdr_len,
	    PROXY_HEADER_MAX - s->pre->hdr_len);
	if (n == -1 && relay_again())
		return UPSTREAM_MORE;
	if (n <= 0) {
		err = n == 0 ? 0 : errno;
		if (s->pre->hdr_len == 0) {
			c->eof = n == 0;
			*errp = err;
			return UPSTREAM_GONE;
		}
		r = proxy_decode_final(s->pre->hdr, s->pre->hdr_len, &info);
		snprintf(more, sizeof(more), " (%s after %u bytes)",
		    err == 0 ? "closed" : strerror(err), s->pre->hdr_len);
		return upstream_reject(s, proxy_result_names[r], info.why,
		    more);
	}
	s->pre->hdr_len += (unsigned short)n;
	r = proxy_decode(s->pre->hdr, s->pre->hdr_len, &info);
	if (r == PROXY_NEED_MORE) {
		if (s->pre->hdr_len < PROXY_HEADER_MAX)
			return UPSTREAM_MORE;	/* the deadline stays */
		/* The decoder answers every full buffer; be safe anyway. */
		r = PROXY_ERR_TOO_LONG;
		info.why = "no header within 536 bytes";
	}
	if (r != PROXY_OK)
		return upstream_reject(s, proxy_result_names[r], info.why, "");
	return upstream_accepted(s, &info);
}

void
upstream_peek(struct session *s)
{
	uint8_t peek[UPSTREAM_DUMP_MAX];
	ssize_t n;

	/* Not a word to it, not even a 421: a PROXY sender expects none
	 * before its header, and this one is not ours. What it sent
	 * already is shown, never waited for. */
	n = recv(s->client.fd, peek, sizeof(peek), MSG_DONTWAIT);
	if (n > 0)
		upstream_dump(s, peek, (size_t)n);
}

int
upstream_begin(struct session *s)
{
	s->pre->hdr = malloc(PROXY_HEADER_MAX);
	if (s->pre->hdr == NULL) {
		session_add_error(s, "out of memory");
		return -1;
	}
	return 0;
}

void
upstream_timeout(struct session *s)
{
	struct proxy_info info;
	enum proxy_result r;
	char more[64];

	r = proxy_decode_final(s->pre->hdr, s->pre->hdr_len, &info);
	snprintf(more, sizeof(more), " (%u bytes in %u ms)", s->pre->hdr_len,
	    s->listener->cfg->proxy_timeout_ms);
	(void)upstream_reject(s, "timeout", r == PROXY_ERR_TRUNCATED ?
	    info.why : proxy_result_names[r], more);
}
