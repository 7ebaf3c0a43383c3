/* SPDX-License-Identifier: MIT */
/*
 * net: socket helpers shared by the master and the workers: listening
 * sockets, address text as postscreen writes it, monotonic time.
 */
#ifndef SMTPFRONT_NET_H
#define SMTPFRONT_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"

#define NET_ADDR_TEXT 64

/* "[ip]:port" for AF_INET / AF_INET6 (mapped IPv4 shown as IPv4). */
void net_addr_fmt(const struct sockaddr *sa, char *buf, size_t cap);
/* "ip" only. */
void net_ip_fmt(const struct sockaddr *sa, char *buf, size_t cap);
/* True for 0.0.0.0 / :: (the local address must then be asked for). */
bool net_addr_is_wildcard(const struct sockaddr *sa);
/* Bind and listen, non-blocking, close-on-exec; -1 with errno set. */
int net_listen(const struct cfg_addr *a) __attribute__((warn_unused_result));
int64_t net_now_us(void);
/* Same family, address and port (and IPv6 scope). */
bool net_sockaddr_equal(const struct sockaddr_storage *a,
    const struct sockaddr_storage *b);

#endif
