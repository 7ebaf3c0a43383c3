/* SPDX-License-Identifier: MIT */
/*
 * PROXY protocol v1 and v2: pure encoders and a strict, incremental decoder.
 * No I/O, no allocation. The rules are SPEC.md's: IPv4-mapped addresses are
 * unmapped, families are never mixed, no TLVs are sent, a header stays under
 * 536 bytes.
 *
 * How a reader uses the decoder (accept_proxy on a listener):
 *
 * - The caller owns one buffer of PROXY_HEADER_MAX (536) bytes per
 *   connection and keeps `have`, the bytes read so far. The decoder only
 *   reads buf[0..have) during the call and keeps nothing: no state between
 *   calls, no pointer into the buffer, so the buffer may move or be freed.
 * - After each read (read(fd, buf + have, PROXY_HEADER_MAX - have)), call
 *   proxy_decode(buf, have, &info) with everything read so far:
 *     PROXY_NEED_MORE: read again (re-arm the read event). The decoder never
 *       asks for more than PROXY_HEADER_MAX bytes: a v1 line is decided by
 *       byte 107 and a v2 header by its length field, capped at 536, so a
 *       full buffer always gets an answer.
 *     PROXY_OK: the header is info.header_len bytes. buf[header_len..have) are
 *       the client's first bytes, read in the same read(): they belong to the
 *       session (the greeting gate holds them like any early client bytes)
 *       and must never be dropped. Reading up to 536 bytes at once is
 *       therefore safe; a reader that prefers not to copy can instead peek
 *       (recv MSG_PEEK) and then consume exactly header_len bytes.
 *     anything else: a bad header. Log proxy_result_names[r], info.why and
 *       a proxy_escape() dump of buf[0..have), then close.
 * - At EOF, or when proxy_timeout fires, call proxy_decode_final(): a valid
 *   but incomplete header is then PROXY_ERR_TRUNCATED (info.why says what
 *   is missing). On the timer the class to log is `timeout`; at EOF it is
 *   the result's name. Nothing is ever guessed: a connection that must send
 *   a header and does not is closed, never served as if it had none.
 * - With PROXY_OK, info.usable says whether info.src/info.dst are a TCP
 *   client over IPv4/IPv6 that Postfix can take. Otherwise (v2 LOCAL, v1
 *   UNKNOWN, v2 UNSPEC, UDP, AF_UNIX) the caller passes on the real
 *   endpoints of the upstream connection. TLVs are checked, never kept.
 */
#ifndef SMTPFRONT_PROXY_H
#define SMTPFRONT_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Postfix peeks at most 536 bytes: every header we write or accept fits. */
#define PROXY_HEADER_MAX 536
/*
 * Longest v1 line: "PROXY UNKNOWN " + 2*39 + 2*5 + 3 spaces + CRLF = 107
 * bytes (the protocol's bound); a TCP6 line is at most 104.
 */
#define PROXY_V1_MAX 107

/*
 * Encode a v1 line for a connection from `src` to `dst` (AF_INET or AF_INET6
 * sockaddrs; mapped addresses are unmapped; a mixed pair becomes TCP6 with
 * the IPv4 side mapped). Returns the length written (no NUL is counted) or -1
 * when an address family is not IP or `cap` is too small.
 */
int proxy_v1_encode(char *buf, size_t cap, const struct sockaddr *src,
    const struct sockaddr *dst) __attribute__((warn_unused_result));

/* Encode a v2 PROXY (command 1) header, same address rules. */
int proxy_v2_encode(uint8_t *buf, size_t cap, const struct sockaddr *src,
    const struct sockaddr *dst) __attribute__((warn_unused_result));

/* Encode a v2 LOCAL header (16 bytes, family UNSPEC, no addresses). */
int proxy_v2_encode_local(uint8_t *buf, size_t cap)
    __attribute__((warn_unused_result));

enum proxy_result {
	PROXY_OK,		/* a whole header: info filled */
	PROXY_NEED_MORE,	/* a valid prefix: read more bytes */
	PROXY_ERR_NOT_PROXY,	/* "not a PROXY header": no v1/v2 signature */
	PROXY_ERR_TRUNCATED,	/* "truncated" (only from proxy_decode_final) */
	PROXY_ERR_BAD_ADDRESS,	/* "bad address": address, port or family */
	PROXY_ERR_BAD_CRC,	/* "bad CRC32C" */
	PROXY_ERR_TOO_LONG,	/* "too long": v1 without CRLF in 107 bytes,
				   v2 over PROXY_HEADER_MAX */
	PROXY_ERR_MALFORMED,	/* "malformed header": syntax, version,
				   command, TLVs */
	PROXY_RESULT_COUNT
};
extern const char *const proxy_result_names[PROXY_RESULT_COUNT];

enum proxy_command {
	PROXY_CMD_LOCAL,	/* v2 LOCAL: a connection of the proxy itself */
	PROXY_CMD_PROXY,	/* v2 PROXY, every v1 header (TCP4, TCP6 and
				   UNKNOWN): relayed for a client */
};

struct proxy_info {
	int version;			/* 1 or 2 */
	enum proxy_command command;
	/*
	 * What the header declares: AF_INET, AF_INET6 or AF_UNIX with
	 * SOCK_STREAM or SOCK_DGRAM; AF_UNSPEC and 0 for v2 UNSPEC, v1
	 * UNKNOWN and LOCAL (whose address block is ignored).
	 */
	int family;
	int socktype;
	/*
	 * true: a PROXY header for TCP over IPv4 or IPv6, the only kind
	 * Postfix takes; src and dst are that client and the address it
	 * connected to. false: use the connection's real endpoints.
	 */
	bool usable;
	/*
	 * Set for every family with addresses (AF_UNIX: the raw 108-byte
	 * paths, not NUL-terminated when full). A TCP6/INET6 address that is
	 * IPv4-mapped comes out as AF_INET, as Postfix unmaps it; port 0 is
	 * accepted (v2 can carry it, Postfix and HAProxy take it).
	 */
	struct sockaddr_storage src;
	struct sockaddr_storage dst;
	size_t header_len;		/* PROXY_OK: bytes the header took */
	const char *why;		/* not PROXY_OK: a human message */
};

/*
 * Decode a header at the start of buf[0..len), the bytes read so far.
 * Returns PROXY_OK with *info filled, PROXY_NEED_MORE when the bytes are a
 * valid prefix, or an error class with info->why. Never reads past
 * buf[len - 1] nor past the header. The answer does not depend on how the
 * bytes were split across reads: once a prefix gives an answer other than
 * PROXY_NEED_MORE, every longer input gives the same answer and length.
 */
enum proxy_result proxy_decode(const uint8_t *buf, size_t len,
    struct proxy_info *info) __attribute__((warn_unused_result));

/*
 * The same at end of input (EOF or timeout): a valid but incomplete prefix
 * is PROXY_ERR_TRUNCATED, never NEED_MORE.
 */
enum proxy_result proxy_decode_final(const uint8_t *buf, size_t len,
    struct proxy_info *info) __attribute__((warn_unused_result));

/*
 * Escape up to `max` leading bytes of buf for a log line: printable ASCII
 * as is, except \\ and \" (backslash-escaped, so the dump fits a key="..."
 * field); every other byte as \xNN. Stops before an escape that would not
 * fit. Always NUL-terminates out (when outcap > 0).
 */
void proxy_escape(char *out, size_t outcap, const uint8_t *buf, size_t len,
    size_t max);

#endif
