/* SPDX-License-Identifier: MIT */
/*
 * runtime: build one generation's runtime from a config, reusing what the
 * previous generation already has (listening sockets, shm slots).
 */
#include <sys/socket.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/net.h"
#include "core/runtime.h"
#include "core/shm.h"

static void
rt_err(char *err, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void
rt_err(char *err, size_t cap, const char *fmt, ...)
{
	size_t off = strlen(err);
	va_list ap;

	if (off + 1 >= cap)
		return;
	va_start(ap, fmt);
	vsnprintf(err + off, cap - off, fmt, ap);
	va_end(ap);
	off = strlen(err);
	if (off + 1 < cap) {
		err[off] = '\n';
		err[off + 1] = '\0';
	}
}

static void
rt_server_key(const struct cfg_pool *p, const struct cfg_server *s,
    char *key, size_t cap)
{
	snprintf(key, cap, "%s/%s %s", p->name, s->name, s->address.text);
}

static bool
rt_same_addr(const struct cfg_addr *a, const struct cfg_addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

/*
 * The slot for `key`: the one holding it, else a free one. claimed[] marks
 * the slots this build already gave out. Returns -1 when none is left.
 */
static int
rt_slot_find(const struct rt_slot_owner *owners, bool *claimed, size_t n,
    const char *key, unsigned oldest_live)
{
	for (size_t i = 0; i < n; i++)
		if (!claimed[i] && strcmp(owners[i].key, key) == 0) {
			claimed[i] = true;
			return (int)i;
		}
	for (size_t i = 0; i < n; i++)
		if (!claimed[i] && (owners[i].key[0] == '\0' ||
		    owners[i].generation < oldest_live)) {
			claimed[i] = true;
			return (int)i;
		}
	return -1;
}

/* Does one of rt's binds use socket fd (taken over or its own)? */
static bool
rt_uses_fd(const struct runtime *rt, int fd)
{
	for (size_t i = 0; i < rt->nlisteners; i++)
		for (size_t j = 0; j < rt->listeners[i].nbinds; j++)
			if (rt->listeners[i].binds[j].fd == fd)
				return true;
	return false;
}

/* A socket of prev bound to the same address, not yet taken by rt. */
static int
rt_take_fd(const struct runtime *rt, const struct runtime *prev,
    const struct cfg_addr *a)
{
	if (prev == NULL)
		return -1;
	for (size_t i = 0; i < prev->nlisteners; i++) {
		const struct rt_listener *pl = &prev->listeners[i];

		for (size_t j = 0; j < pl->nbinds; j++) {
			int fd = pl->binds[j].fd;

			if (fd != -1 && rt_same_addr(pl->binds[j].addr, a) &&
			    !rt_uses_fd(rt, fd))
				return fd;
		}
	}
	return -1;
}

/* Free rt without touching sockets it took over from its predecessor. */
static void
rt_discard(struct runtime *rt)
{
	for (size_t i = 0; i < rt->nlisteners; i++)
		for (size_t j = 0; j < rt->listeners[i].nbinds; j++)
			if (rt->listeners[i].binds[j].inherited)
				rt->listeners[i].binds[j].fd = -1;
	rt->cfg = NULL;			/* the caller still owns it */
	runtime_free(rt);
}

struct runtime *
runtime_new(struct config *cfg, unsigned generation,
    const struct runtime *prev, const struct rt_slots *slots,
    unsigned oldest_live, char *err, size_t errcap)
{
	bool sclaimed[SHM_MAX_SERVERS] = { false };
	bool lclaimed[SHM_MAX_LISTENERS] = { false };
	char key[sizeof(slots->servers[0].key)];
	struct runtime *rt;
	bool ok = true;

	rt = calloc(1, sizeof(*rt));
	if (rt == NULL) {
		rt_err(err, errcap, "out of memory");
		return NULL;
	}
	rt->cfg = cfg;
	rt->generation = generation;
	rt->listeners = calloc(cfg->nlisteners + 1, sizeof(*rt->listeners));
	rt->pools = calloc(cfg->npools + 1, sizeof(*rt->pools));
	if (rt->listeners == NULL || rt->pools == NULL) {
		rt_err(err, errcap, "out of memory");
		rt_discard(rt);
		return NULL;
	}
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct cfg_pool *p = &cfg->pools[i];

		rt->npools++;
		rt->pools[i].cfg = p;
		rt->pools[i].server_slot = calloc(p->nservers + 1,
		    sizeof(unsigned));
		if (rt->pools[i].server_slot == NULL) {
			rt_err(err, errcap, "out of memory");
			rt_discard(rt);
			return NULL;
		}
		for (size_t j = 0; j < p->nservers; j++) {
			int slot;

			rt_server_key(p, &p->servers[j], key, sizeof(key));
			slot = rt_slot_find(slots->servers, sclaimed,
			    SHM_MAX_SERVERS, key, oldest_live);
			if (slot == -1) {
				rt_err(err, errcap, "too many servers: at most "
				    "%d, counting those that draining workers "
				    "of an older generation still use",
				    SHM_MAX_SERVERS);
				rt_discard(rt);
				return NULL;
			}
			rt->pools[i].server_slot[j] = (unsigned)slot;
		}
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *lc = &cfg->listeners[i];
		struct rt_listener *l = &rt->listeners[i];
		int slot;

		rt->nlisteners++;
		l->cfg = lc;
		slot = rt_slot_find(slots->listeners, lclaimed,
		    SHM_MAX_LISTENERS, lc->name, oldest_live);
		if (slot == -1) {
			rt_err(err, errcap, "too many listeners: at most %d, "
			    "counting those that draining workers of an older "
			    "generation still use", SHM_MAX_LISTENERS);
			rt_discard(rt);
			return NULL;
		}
		l->slot = (unsigned)slot;
		l->binds = calloc(lc->nbinds + 1, sizeof(*l->binds));
		if (l->binds == NULL) {
			rt_err(err, errcap, "out of memory");
			rt_discard(rt);
			return NULL;
		}
		for (size_t j = 0; j < lc->nbinds; j++) {
			struct rt_bind *b = &l->binds[j];

			b->fd = -1;
			l->nbinds++;
			b->addr = &lc->binds[j];
			b->wildcard = net_addr_is_wildcard(
			    (const struct sockaddr *)&lc->binds[j].ss);
			b->fd = rt_take_fd(rt, prev, b->addr);
			if (b->fd != -1) {
				b->inherited = true;
				continue;
			}
			b->fd = net_listen(b->addr);
			if (b->fd == -1) {
				rt_err(err, errcap, "listener %s: cannot listen "
				    "on %s: %s%s", lc->name, b->addr->text,
				    strerror(errno), errno == EACCES ?
				    " (a port below 1024 needs root or "
				    "CAP_NET_BIND_SERVICE)" : "");
				ok = false;
			}
		}
	}
	if (!ok) {
		rt_discard(rt);
		return NULL;
	}
	return rt;
}

static bool
rt_has_server_slot(const struct runtime *rt, unsigned slot)
{
	for (size_t i = 0; i < rt->npools; i++)
		for (size_t j = 0; j < rt->pools[i].cfg->nservers; j++)
			if (rt->pools[i].server_slot[j] == slot)
				return true;
	return false;
}

void
runtime_commit(struct runtime *rt, struct runtime *prev,
    struct rt_slots *slots, struct rt_diff *diff)
{
	char key[sizeof(slots->servers[0].key)];
	struct rt_diff d;

	memset(&d, 0, sizeof(d));
	for (size_t i = 0; i < rt->npools; i++) {
		const struct cfg_pool *p = rt->pools[i].cfg;

		for (size_t j = 0; j < p->nservers; j++) {
			struct rt_slot_owner *o =
			    &slots->servers[rt->pools[i].server_slot[j]];

			rt_server_key(p, &p->servers[j], key, sizeof(key));
			/* Kept only from the previous generation: a server
			 * that comes back later starts afresh. */
			if (prev != NULL && strcmp(o->key, key) == 0 &&
			    o->generation == prev->generation) {
				d.servers_kept++;
			} else {
				d.servers_added++;
				shm_server_forget(rt->pools[i].server_slot[j]);
				snprintf(o->key, sizeof(o->key), "%s", key);
			}
			o->generation = rt->generation;
		}
	}
	for (size_t i = 0; i < rt->nlisteners; i++) {
		struct rt_listener *l = &rt->listeners[i];
		struct rt_slot_owner *o = &slots->listeners[l->slot];

		if (strcmp(o->key, l->cfg->name) != 0)
			snprintf(o->key, sizeof(o->key), "%s", l->cfg->name);
		o->generation = rt->generation;
		for (size_t j = 0; j < l->nbinds; j++) {
			if (l->binds[j].inherited)
				d.listeners_kept++;
			else
				d.listeners_added++;
		}
	}
	if (prev != NULL) {
		for (size_t i = 0; i < prev->nlisteners; i++) {
			struct rt_listener *pl = &prev->listeners[i];

			for (size_t j = 0; j < pl->nbinds; j++) {
				/* prev's sockets are open, so rt can only use
				 * one by having taken it over. */
				if (pl->binds[j].fd == -1)
					continue;
				if (rt_uses_fd(rt, pl->binds[j].fd))
					pl->binds[j].fd = -1;
				else
					d.listeners_removed++;
			}
		}
		for (size_t i = 0; i < prev->npools; i++)
			for (size_t j = 0; j < prev->pools[i].cfg->nservers;
			    j++)
				if (!rt_has_server_slot(rt,
				    prev->pools[i].server_slot[j]))
					d.servers_removed++;
	}
	if (diff != NULL)
		*diff = d;
}

void
runtime_free(struct runtime *rt)
{
	if (rt == NULL)
		return;
	for (size_t i = 0; i < rt->nlisteners; i++) {
		for (size_t j = 0; j < rt->listeners[i].nbinds; j++)
			if (rt->listeners[i].binds[j].fd != -1)
				close(rt->listeners[i].binds[j].fd);
		free(rt->listeners[i].binds);
	}
	free(rt->listeners);
	for (size_t i = 0; i < rt->npools; i++)
		free(rt->pools[i].server_slot);
	free(rt->pools);
	cfg_free(rt->cfg);
	free(rt);
}
