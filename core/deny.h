/* SPDX-License-Identifier: MIT */
/*
 * deny: the runtime deny entries (`smtpfrontctl deny add`, fail2ban) in a
 * shared table of their own, written only by the master and read by the
 * workers without a lock, kept across a reload (the master keeps the
 * memory) and, through deny_save()/deny_load(), across a restart in
 * state_directory. Bounded: DENY_MAX entries in a fixed table; a lookup
 * costs one hash probe per prefix length in use, not one per entry.
 * Also the CIDR matching the static lists (deny, client_limit_exceptions)
 * use.
 */
#ifndef SMTPFRONT_DENY_H
#define SMTPFRONT_DENY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"

/* Entries the table holds at most. */
#define DENY_MAX		131072
/* Bytes of a reason kept (the rest is cut). */
#define DENY_REASON_MAX		120
/* Name of the file kept in state_directory. */
#define DENY_STATE_FILE		"deny.state"

/* The address a client connected from, as a CIDR of full length (mapped
 * IPv4 unmapped); false for other families. */
bool deny_addr_of(const struct sockaddr *sa, struct cfg_cidr *out);
/* Is `a` (a full-length address from deny_addr_of) inside `net`? */
bool deny_cidr_match(const struct cfg_cidr *net, const struct cfg_cidr *a);
/* Inside one of list[0..n)? The first match, or NULL. */
const struct cfg_cidr *deny_list_match(const struct cfg_cidr *list, size_t n,
    const struct cfg_cidr *a);
/* An IPv4-mapped IPv6 network (::ffff:192.0.2.0/120) as the IPv4 one it
 * is (192.0.2.0/24): clients are looked up unmapped. */
void deny_cidr_unmap(struct cfg_cidr *c);
/* "192.0.2.0/24", "2001:db8::/32" (a full-length one without "/len"). */
void deny_cidr_fmt(const struct cfg_cidr *c, char *buf, size_t cap);

/* Wall clock in milliseconds (expiry survives restarts, so not monotonic). */
int64_t deny_now_ms(void);

/* ---- master ---- */
/* Create the table (before forking). Aborts on failure. */
void deny_create(void);
/* The memory file, for a binary upgrade to keep across exec(), and its
 * adoption by the new image instead of deny_create(): 0 or -1. */
int deny_fd(void);
int deny_adopt(int fd) __attribute__((warn_unused_result));
/*
 * Add `net` (or replace its expiry and reason): expires_ms 0 = never.
 * -1 with the reason in err when the table is full.
 */
int deny_add(const struct cfg_cidr *net, int64_t expires_ms, int64_t added_ms,
    const char *reason, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Remove `net` (exactly that network): false when it was not there. */
bool deny_del(const struct cfg_cidr *net);
/* Entries in the table (expired ones not yet removed included). */
size_t deny_count(void);

struct deny_entry {
	struct cfg_cidr net;
	int64_t expires_ms;		/* 0 = never */
	int64_t added_ms;
	char reason[DENY_REASON_MAX + 1];
};
/* Remove the entries expired at `now_ms`, each shown to fn (NULL: none)
 * first; how many. *next_ms: the earliest expiry left (0: none). */
size_t deny_expire(int64_t now_ms, void (*fn)(const struct deny_entry *e,
    void *arg), void *arg, int64_t *next_ms);
/* Every entry, in table order; fn returns false to stop. */
void deny_foreach(bool (*fn)(const struct deny_entry *e, void *arg),
    void *arg);
/* Write every entry to dir/DENY_STATE_FILE atomically (temporary file,
 * fsync, rename). -1 with the reason in err. */
int deny_save(const char *dir, char *err, size_t errlen)
    __attribute__((warn_unused_result));
/* Add the entries of dir/DENY_STATE_FILE that have not expired; a missing
 * file is none. How many were added, or -1 with the reason in err (a
 * line that cannot be read is skipped and counted in *skipped). */
long deny_load(const char *dir, size_t *skipped, char *err, size_t errlen)
    __attribute__((warn_unused_result));

/* For a test that plays the master stopped in the middle of a write: the
 * sequence goes odd (held) and even again. */
void deny_write_hold(bool held);

/* ---- workers ---- */
enum deny_verdict {
	DENY_NO,
	DENY_YES,
	DENY_UNKNOWN,		/* table unreadable (writer stuck): refuse */
};
/* Is `a` (from deny_addr_of) inside an entry that has not expired at
 * `now_ms`? The longest such network in *hit. */
enum deny_verdict deny_lookup(const struct cfg_cidr *a, int64_t now_ms,
    struct cfg_cidr *hit);

#endif
