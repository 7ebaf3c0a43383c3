/* SPDX-License-Identifier: MIT */
/*
 * runtime: build one generation's runtime from a config, reusing what the
 * previous generation already has (listening sockets, shm slots).
 */
#include <sys/socket.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/value.h"
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

/*
 * The slot for `key` in a table of *n (grown as needed): the one recorded
 * for it, else one that nothing holds, else a new one. claimed[] (as long
 * as the table) marks the slots this build already gave out. -1 when the
 * table cannot grow.
 */
static int
rt_slot_find(struct rt_slot_owner **owners, size_t *n, bool **claimed,
    const char *key, size_t max)
{
	struct rt_slot_owner *no;
	bool *nc;

	for (size_t i = 0; i < *n; i++)
		if (!(*claimed)[i] && strcmp((*owners)[i].key, key) == 0) {
			(*claimed)[i] = true;
			return (int)i;
		}
	for (size_t i = 0; i < *n; i++)
		if (!(*claimed)[i] && (*owners)[i].users == 0) {
			(*claimed)[i] = true;
			return (int)i;
		}
	if (*n >= max || *n >= INT_MAX)
		return -1;
	no = realloc(*owners, (*n + 1) * sizeof(**owners));
	if (no == NULL)
		return -1;
	*owners = no;
	nc = realloc(*claimed, (*n + 1) * sizeof(**claimed));
	if (nc == NULL)
		return -1;
	*claimed = nc;
	memset(&no[*n], 0, sizeof(no[*n]));
	nc[*n] = true;
	return (int)(*n)++;
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

			if (fd != -1 && cfg_addr_equal(pl->binds[j].addr, a) &&
			    !rt_uses_fd(rt, fd))
				return fd;
		}
	}
	return -1;
}

/* ------------------------------------------------------------ inherited */

struct rt_inherited {
	int fd;
	struct sockaddr_storage ss;
	socklen_t len;
	char name[256];
};
static struct rt_inherited *rt_inh;
static size_t rt_ninh;

int
runtime_inherit(int fd, const char *name)
{
	struct rt_inherited *n, e;
	int type = 0, acc = 0, fl;
	socklen_t tl = sizeof(type), al = sizeof(acc);

	memset(&e, 0, sizeof(e));
	e.fd = fd;
	e.len = sizeof(e.ss);
	snprintf(e.name, sizeof(e.name), "%s", name != NULL ? name : "-");
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == -1 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &acc, &al) == -1 ||
	    getsockname(fd, (struct sockaddr *)&e.ss, &e.len) == -1 ||
	    type != SOCK_STREAM || !acc || (e.ss.ss_family != AF_INET &&
	    e.ss.ss_family != AF_INET6)) {
		log_warnx("inherited descriptor %d (%s) is not a listening TCP "
		    "socket; closing it", fd, e.name);
		close(fd);
		return -1;
	}
	/* Workers accept without blocking; children must not keep it past
	 * an exec of their own. */
	if ((fl = fcntl(fd, F_GETFL)) != -1)
		(void)fcntl(fd, F_SETFL, fl | O_NONBLOCK);
	(void)fcntl(fd, F_SETFD, FD_CLOEXEC);
	if ((n = realloc(rt_inh, (rt_ninh + 1) * sizeof(*n))) == NULL) {
		close(fd);
		return -1;
	}
	rt_inh = n;
	rt_inh[rt_ninh++] = e;
	return 0;
}

/* The inherited socket bound to a, taken out of the list; -1 if none. */
static int
rt_take_inherited(const struct cfg_addr *a)
{
	for (size_t i = 0; i < rt_ninh; i++) {
		int fd = rt_inh[i].fd;

		if (!net_sockaddr_equal(&rt_inh[i].ss, &a->ss))
			continue;
		log_info("listening on %s with the socket handed over as %s",
		    a->text, rt_inh[i].name);
		rt_inh[i] = rt_inh[--rt_ninh];
		return fd;
	}
	return -1;
}

void
runtime_inherit_done(void (*closed)(const char *name))
{
	for (size_t i = 0; i < rt_ninh; i++) {
		log_info("closing the inherited socket %s: no listener binds "
		    "its address any more", rt_inh[i].name);
		close(rt_inh[i].fd);
		if (closed != NULL)
			closed(rt_inh[i].name);
	}
	free(rt_inh);
	rt_inh = NULL;
	rt_ninh = 0;
}

void
runtime_bind_name(const struct cfg_addr *a, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", a->text);
	for (char *p = buf; *p != '\0'; p++)
		if (*p == ':')
			*p = '_';
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
    const struct runtime *prev, struct rt_slots *slots, char *err,
    size_t errcap)
{
	char key[sizeof(slots->servers[0].key)];
	bool *sclaimed, *lclaimed;
	struct runtime *rt;
	bool ok = true;

	rt = calloc(1, sizeof(*rt));
	sclaimed = calloc(slots->nservers + 1, sizeof(*sclaimed));
	lclaimed = calloc(slots->nlisteners + 1, sizeof(*lclaimed));
	if (rt == NULL || sclaimed == NULL || lclaimed == NULL) {
		rt_err(err, errcap, "out of memory");
		free(rt);
		free(sclaimed);
		free(lclaimed);
		return NULL;
	}
	rt->cfg = cfg;
	rt->generation = generation;
	rt->listeners = calloc(cfg->nlisteners + 1, sizeof(*rt->listeners));
	rt->pools = calloc(cfg->npools + 1, sizeof(*rt->pools));
	if (rt->listeners == NULL || rt->pools == NULL) {
		rt_err(err, errcap, "out of memory");
		goto fail;
	}
	for (size_t i = 0; i < cfg->npools; i++) {
		const struct cfg_pool *p = &cfg->pools[i];

		rt->npools++;
		rt->pools[i].cfg = p;
		rt->pools[i].server_slot = calloc(p->nservers + 1,
		    sizeof(unsigned));
		if (rt->pools[i].server_slot == NULL) {
			rt_err(err, errcap, "out of memory");
			goto fail;
		}
		for (size_t j = 0; j < p->nservers; j++) {
			int slot;

			rt_server_key(p, &p->servers[j], key, sizeof(key));
			slot = rt_slot_find(&slots->servers, &slots->nservers,
			    &sclaimed, key, SHM_MAX_SERVER_SLOTS);
			if (slot == -1) {
				rt_err(err, errcap, "pool %s: no shared memory "
				    "slot for server %s: %zu in use, counting "
				    "those that draining workers of an older "
				    "generation still use (at most %u)",
				    p->name, p->servers[j].name,
				    slots->nservers, SHM_MAX_SERVER_SLOTS);
				goto fail;
			}
			rt->pools[i].server_slot[j] = (unsigned)slot;
		}
	}
	if (shm_servers_reserve(slots->nservers) == -1) {
		rt_err(err, errcap, "shared memory: cannot make room for %zu "
		    "server slots: %s", slots->nservers, strerror(errno));
		goto fail;
	}
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		const struct cfg_listener *lc = &cfg->listeners[i];
		struct rt_listener *l = &rt->listeners[i];
		int slot;

		rt->nlisteners++;
		l->cfg = lc;
		slot = rt_slot_find(&slots->listeners, &slots->nlisteners,
		    &lclaimed, lc->name, INT_MAX);
		if (slot == -1) {
			rt_err(err, errcap, "out of memory");
			goto fail;
		}
		l->slot = (unsigned)slot;
		l->binds = calloc(lc->nbinds + 1, sizeof(*l->binds));
		if (l->binds == NULL) {
			rt_err(err, errcap, "out of memory");
			goto fail;
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
			b->fd = rt_take_inherited(b->addr);
			if (b->fd == -1)
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
	if (!ok)
		goto fail;
	free(sclaimed);
	free(lclaimed);
	return rt;
fail:
	free(sclaimed);
	free(lclaimed);
	rt_discard(rt);
	return NULL;
}

/* Each slot rt uses, once: fn(owner, key). */
static void
rt_each_slot(struct runtime *rt, struct rt_slots *slots,
    void (*fn)(struct rt_slot_owner *, const char *, unsigned, bool,
    void *), void *arg)
{
	char key[sizeof(slots->servers[0].key)];

	for (size_t i = 0; i < rt->nhold_servers; i++) {
		unsigned slot = rt->hold_servers[i];

		if (slot < slots->nservers)
			fn(&slots->servers[slot], slots->servers[slot].key,
			    slot, true, arg);
	}
	for (size_t i = 0; i < rt->nhold_listeners; i++) {
		unsigned slot = rt->hold_listeners[i];

		if (slot < slots->nlisteners)
			fn(&slots->listeners[slot], slots->listeners[slot].key,
			    slot, false, arg);
	}
	for (size_t i = 0; i < rt->npools; i++) {
		const struct cfg_pool *p = rt->pools[i].cfg;

		for (size_t j = 0; j < p->nservers; j++) {
			unsigned slot = rt->pools[i].server_slot[j];

			rt_server_key(p, &p->servers[j], key, sizeof(key));
			fn(&slots->servers[slot], key, slot, true, arg);
		}
	}
	for (size_t i = 0; i < rt->nlisteners; i++) {
		struct rt_listener *l = &rt->listeners[i];

		fn(&slots->listeners[l->slot], l->cfg->name, l->slot, false,
		    arg);
	}
}

static void
rt_hold_slot(struct rt_slot_owner *o, const char *key, unsigned slot,
    bool server, void *arg)
{
	if (o->users == 0) {
		/* Nothing live uses it: whatever it held is history, even
		 * for the same key (a server that comes back starts afresh). */
		if (server)
			shm_server_forget(slot);
		else
			shm_listener_forget(slot);
		snprintf(o->key, sizeof(o->key), "%s", key);
		o->generation = 0;
	}
	o->users++;
}

static void
rt_release_slot(struct rt_slot_owner *o, const char *key, unsigned slot,
    bool server, void *arg)
{
	if (o->users > 0)
		o->users--;
}

void
runtime_hold(struct runtime *rt, struct rt_slots *slots)
{
	if (rt->held)
		return;
	rt_each_slot(rt, slots, rt_hold_slot, NULL);
	rt->held = true;
}

static void
rt_adopt_slot(struct rt_slot_owner *o, const char *key, unsigned slot,
    bool server, void *arg)
{
	if (o->key[0] == '\0')
		snprintf(o->key, sizeof(o->key), "%s", key);
	o->users++;
}

void
runtime_hold_adopted(struct runtime *rt, struct rt_slots *slots)
{
	if (rt->held)
		return;
	rt_each_slot(rt, slots, rt_adopt_slot, NULL);
	rt->held = true;
}

struct runtime *
runtime_new_holder(unsigned generation, const unsigned *servers,
    size_t nservers, const unsigned *listeners, size_t nlisteners)
{
	struct runtime *rt = calloc(1, sizeof(*rt));

	if (rt == NULL)
		return NULL;
	rt->generation = generation;
	rt->hold_servers = calloc(nservers + 1, sizeof(unsigned));
	rt->hold_listeners = calloc(nlisteners + 1, sizeof(unsigned));
	if (rt->hold_servers == NULL || rt->hold_listeners == NULL) {
		runtime_free(rt);
		return NULL;
	}
	memcpy(rt->hold_servers, servers, nservers * sizeof(unsigned));
	memcpy(rt->hold_listeners, listeners, nlisteners * sizeof(unsigned));
	rt->nhold_servers = nservers;
	rt->nhold_listeners = nlisteners;
	return rt;
}

int
runtime_slot_restore(struct rt_slots *slots, bool server, size_t i,
    const char *key, unsigned generation)
{
	struct rt_slot_owner **t = server ? &slots->servers : &slots->listeners;
	size_t *n = server ? &slots->nservers : &slots->nlisteners;

	if (i >= *n) {
		struct rt_slot_owner *no = realloc(*t, (i + 1) * sizeof(*no));

		if (no == NULL)
			return -1;
		memset(no + *n, 0, (i + 1 - *n) * sizeof(*no));
		*t = no;
		*n = i + 1;
	}
	snprintf((*t)[i].key, sizeof((*t)[i].key), "%s", key);
	(*t)[i].generation = generation;
	(*t)[i].users = 0;
	return 0;
}

void
runtime_release(struct runtime *rt, struct rt_slots *slots)
{
	if (!rt->held)
		return;
	rt_each_slot(rt, slots, rt_release_slot, NULL);
	rt->held = false;
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
	struct rt_diff d;

	memset(&d, 0, sizeof(d));
	for (size_t i = 0; i < rt->npools; i++) {
		const struct cfg_pool *p = rt->pools[i].cfg;

		for (size_t j = 0; j < p->nservers; j++) {
			struct rt_slot_owner *o =
			    &slots->servers[rt->pools[i].server_slot[j]];

			/* Kept only from the previous generation: a server
			 * that comes back later starts afresh. */
			if (prev != NULL && o->generation == prev->generation)
				d.servers_kept++;
			else
				d.servers_added++;
			o->generation = rt->generation;
		}
	}
	for (size_t i = 0; i < rt->nlisteners; i++) {
		struct rt_listener *l = &rt->listeners[i];

		slots->listeners[l->slot].generation = rt->generation;
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
runtime_close(struct runtime *rt)
{
	for (size_t i = 0; i < rt->nlisteners; i++)
		for (size_t j = 0; j < rt->listeners[i].nbinds; j++)
			if (rt->listeners[i].binds[j].fd != -1) {
				close(rt->listeners[i].binds[j].fd);
				rt->listeners[i].binds[j].fd = -1;
			}
}

void
runtime_abandon(struct runtime *rt)
{
	for (size_t i = 0; i < rt->nlisteners; i++)
		for (size_t j = 0; j < rt->listeners[i].nbinds; j++)
			if (rt->listeners[i].binds[j].inherited)
				rt->listeners[i].binds[j].fd = -1;
	runtime_close(rt);
}

void
runtime_slot_caps(const struct rt_slots *slots, size_t *servers,
    size_t *listeners)
{
	*servers = slots->nservers;
	*listeners = slots->nlisteners;
}

void
runtime_free(struct runtime *rt)
{
	if (rt == NULL)
		return;
	runtime_close(rt);
	for (size_t i = 0; i < rt->nlisteners; i++)
		free(rt->listeners[i].binds);
	free(rt->listeners);
	for (size_t i = 0; i < rt->npools; i++)
		free(rt->pools[i].server_slot);
	free(rt->pools);
	cfg_free(rt->cfg);
	free(rt->source);
	free(rt->hold_servers);
	free(rt->hold_listeners);
	free(rt);
}

void
runtime_slots_free(struct rt_slots *slots)
{
	free(slots->servers);
	free(slots->listeners);
	memset(slots, 0, sizeof(*slots));
}
