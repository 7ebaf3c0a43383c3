/* SPDX-License-Identifier: MIT */
/*
 * runtime: what one generation of workers is started with: the config, the
 * bound listening sockets and the shared-memory slot of every listener and
 * server. Built and owned by the master; a forked worker reads its copy.
 */
#ifndef SMTPFRONT_RUNTIME_H
#define SMTPFRONT_RUNTIME_H

#include <stddef.h>

#include "config/config.h"

struct rt_bind {
	int fd;
	const struct cfg_addr *addr;
	bool wildcard;			/* local address must come from getsockname */
};

struct rt_listener {
	const struct cfg_listener *cfg;
	unsigned slot;			/* shm listener slot */
	struct rt_bind *binds;
	size_t nbinds;
};

struct rt_pool {
	const struct cfg_pool *cfg;
	unsigned *server_slot;		/* shm server slot of each server */
};

struct runtime {
	struct config *cfg;
	unsigned generation;
	struct rt_listener *listeners;
	size_t nlisteners;
	struct rt_pool *pools;
	size_t npools;
};

#endif
