/* SPDX-License-Identifier: MIT */
/*
 * PROXY protocol v1 and v2: pure encoders and a decoder. No I/O, no
 * allocation. The rules are SPEC.md's: IPv4-mapped addresses are unmapped,
 * families are never mixed, no TLVs are sent, a header stays under 536 bytes.
 */
#ifndef SMTPFRONT_PROXY_H
#define SMTPFRONT_PROXY_H

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
	PROXY_OK,		/* a whole header was parsed */
	PROXY_NEED_MORE,	/* a valid prefix: read more bytes */
	PROXY_ERR_NOT_PROXY,	/* "not a PROXY header" */
	PROXY_ERR_TRUNCATED,	/* "truncated" (only from proxy_decode_final) */
	PROXY_ERR_BAD_ADDRESS,	/* "bad address" */
	PROXY_ERR_BAD_CRC,	/* "bad CRC32C" */
	PROXY_ERR_MALFORMED,	/* "malformed header" (bad version, length, ...) */
};
extern const char *const proxy_result_names[];

enum proxy_command {
	PROXY_CMD_PROXY,	/* addresses carried */
	PROXY_CMD_LOCAL,	/* v2 LOCAL, or v1 UNKNOWN, or an unsupported family:
				   use the real endpoints of the connection */
};

struct proxy_info {
	int version;			/* 1 or 2 */
	enum proxy_command command;
	struct sockaddr_storage src;	/* valid when command == PROXY_CMD_PROXY */
	struct sockaddr_storage dst;
	size_t header_len;		/* bytes consumed by the header */
};

/*
 * Decode a header at the start of buf[0..len). Returns PROXY_OK with *info
 * filled, PROXY_NEED_MORE when more bytes are needed (len < PROXY_HEADER_MAX),
 * or an error class. TLVs are validated for length (and CRC32C when present)
 * and then ignored.
 */
enum proxy_result proxy_decode(const uint8_t *buf, size_t len,
    struct proxy_info *info) __attribute__((warn_unused_result));

/*
 * The same at end of input (EOF, timeout, or PROXY_HEADER_MAX bytes read):
 * a valid but incomplete prefix is PROXY_ERR_TRUNCATED, never NEED_MORE.
 */
enum proxy_result proxy_decode_final(const uint8_t *buf, size_t len,
    struct proxy_info *info) __attribute__((warn_unused_result));

/*
 * Escape up to `max` leading bytes of buf for a log line: printable ASCII as
 * is, everything else as \xHH (\r, \n as \r \n; \\ and \" escaped so the
 * dump fits a key="..." log field). Stops before an escape that would not
 * fit. Always NUL-terminates out (when outcap > 0).
 */
void proxy_escape(char *out, size_t outcap, const uint8_t *buf, size_t len,
    size_t max);

#endif
