/* SPDX-License-Identifier: MIT */
/*
 * health: the health process. One libevent loop runs the SMTP check of
 * every server (smtp/check.c does the dialog), one in flight per server, the
 * next `interval` after the previous one ended; applies rise/fall and
 * publishes the result in shared memory, whose health region (and the
 * check counters next to it) only this process writes. State changes are
 * logged once. A server in maintenance (`smtpfrontctl disable`, as
 * HAProxy's maint) is not checked: its health is unknown until checks
 * resume, within HC_PAUSE_POLL_MS of `enable`; a drained one is checked
 * as usual.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <event2/event.h>

#include "core/child.h"
#include "core/health/health.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/shm.h"
#include "smtp/check.h"

struct hc_server {
	struct health *h;
	const struct cfg_pool *pool;
	const struct cfg_server *srv;
	unsigned slot;
	struct check *check;
	struct event *timer;
	enum shm_health state;
	unsigned successes;		/* consecutive */
	unsigned failures;		/* consecutive */
	uint32_t checks;
	bool paused;			/* in maintenance: not checked */
	/* For status (issue 20), CLOCK_MONOTONIC: the last state change
	 * (0 = none yet), the down time of periods over, the start of the
	 * current one (0 = not down). */
	int64_t changed_us;
	int64_t down_done_us;
	int64_t down_since_us;
};

struct health {
	struct event_base *base;
	const struct runtime *rt;
	struct child_events ce;
	struct hc_server *servers;
	size_t nservers;
};

static void hc_start(struct hc_server *hs);

/* The state becomes `next` at `now`: the change's time and the down time. */
static void
hc_set_state(struct hc_server *hs, enum shm_health next, int64_t now)
{
	if (next == hs->state)
		return;
	if (hs->state == SHM_HEALTH_DOWN && hs->down_since_us != 0) {
		hs->down_done_us += now - hs->down_since_us;
		hs->down_since_us = 0;
	}
	if (next == SHM_HEALTH_DOWN)
		hs->down_since_us = now;
	hs->changed_us = now;
	hs->state = next;
}

static void
hc_fill_times(const struct hc_server *hs, struct shm_health_snapshot *snap,
    int64_t now)
{
	snap->changed_us = hs->changed_us;
	snap->down_us = hs->down_done_us + (hs->down_since_us != 0 ?
	    now - hs->down_since_us : 0);
}

static void
hc_schedule(struct hc_server *hs, unsigned ms)
{
	struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };

	evtimer_add(hs->timer, &tv);
}

static void
hc_on_timer(evutil_socket_t fd, short what, void *arg)
{
	hc_start(arg);
}

/* rise/fall: one failure from unknown is enough to go down (SPEC.md). */
static enum shm_health
hc_next_state(struct hc_server *hs, bool ok)
{
	const struct cfg_health *hc = &hs->pool->health;

	if (ok) {
		hs->successes++;
		hs->failures = 0;
	} else {
		hs->failures++;
		hs->successes = 0;
	}
	switch (hs->state) {
	case SHM_HEALTH_UNKNOWN:
		return ok ? SHM_HEALTH_UP : SHM_HEALTH_DOWN;
	case SHM_HEALTH_UP:
		return hs->failures >= hc->fall ? SHM_HEALTH_DOWN :
		    SHM_HEALTH_UP;
	case SHM_HEALTH_DOWN:
		return hs->successes >= hc->rise ? SHM_HEALTH_UP :
		    SHM_HEALTH_DOWN;
	}
	return hs->state;
}

static void
hc_on_done(bool ok, const char *reason, double elapsed_ms, void *arg)
{
	struct hc_server *hs = arg;
	struct shm_health_snapshot snap;
	enum shm_health next;
	int64_t now;
	bool changed;

	check_free(hs->check);
	hs->check = NULL;
	hs->checks++;
	metrics_count_check(hs->slot, ok, reason, elapsed_ms);
	next = hc_next_state(hs, ok);
	changed = next != hs->state;
	now = net_now_us();
	hc_set_state(hs, next, now);
	/* Published before it is logged: whoever acts on the line (an
	 * operator, a test) finds the workers already acting on it. */
	memset(&snap, 0, sizeof(snap));
	snap.state = hs->state;
	snprintf(snap.reason, sizeof(snap.reason), "%s", reason);
	snap.check_ms = elapsed_ms;
	snap.last_check_us = now;
	snap.checks = hs->checks;
	hc_fill_times(hs, &snap, now);
	shm_health_publish(hs->slot, &snap);
	if (changed && next == SHM_HEALTH_DOWN)
		log_warnx("health: server %s/%s is DOWN (%s)", hs->pool->name,
		    hs->srv->name, reason);
	else if (changed)
		log_info("health: server %s/%s is UP (%s)", hs->pool->name,
		    hs->srv->name, reason);
	else
		log_debug("health: server %s/%s %s: %s (%.1f ms)",
		    hs->pool->name, hs->srv->name, ok ? "ok" : "failed",
		    reason, elapsed_ms);
	hc_schedule(hs, hs->pool->health.interval_ms);
}

/* How often a paused server's admin state is looked at: enabling it
 * resumes its checks within this. */
#define HC_PAUSE_POLL_MS	250

/* The server is in maintenance: no checks, health unknown, until it is
 * enabled again (then its next check decides, as at start). */
static void
hc_pause(struct hc_server *hs)
{
	struct shm_health_snapshot snap;

	if (!hs->paused) {
		int64_t now = net_now_us();

		hs->paused = true;
		hc_set_state(hs, SHM_HEALTH_UNKNOWN, now);
		hs->successes = hs->failures = 0;
		memset(&snap, 0, sizeof(snap));
		snap.state = SHM_HEALTH_UNKNOWN;
		snprintf(snap.reason, sizeof(snap.reason), "not checked: in "
		    "maintenance (smtpfrontctl disable)");
		snap.checks = hs->checks;
		hc_fill_times(hs, &snap, now);
		shm_health_publish(hs->slot, &snap);
		log_info("health: server %s/%s is in maintenance: checks paused",
		    hs->pool->name, hs->srv->name);
	}
	hc_schedule(hs, hs->pool->health.interval_ms < HC_PAUSE_POLL_MS ?
	    hs->pool->health.interval_ms : HC_PAUSE_POLL_MS);
}

static void
hc_start(struct hc_server *hs)
{
	const struct cfg_pool *p = hs->pool;
	struct check_params cp;

	if (shm_admin_get(hs->slot) == SHM_ADMIN_MAINT) {
		hc_pause(hs);
		return;
	}
	if (hs->paused) {
		hs->paused = false;
		log_info("health: server %s/%s is out of maintenance: checks "
		    "resume", p->name, hs->srv->name);
	}
	memset(&cp, 0, sizeof(cp));
	cp.addr = (const struct sockaddr *)&hs->srv->address.ss;
	cp.addrlen = hs->srv->address.len;
	cp.proxy = p->proxy == CFG_PROXY_V1 ? CHECK_PROXY_V1 :
	    p->proxy == CFG_PROXY_V2 ? CHECK_PROXY_V2 : CHECK_PROXY_NONE;
	cp.dialog = p->health.check == CFG_CHECK_SMTP;
	cp.helo = p->health.helo[0] != '\0' ? p->health.helo :
	    hs->h->rt->cfg->hostname;
	cp.timeout_ms = p->health.timeout_ms;
	hs->check = check_start(hs->h->base, &cp, hc_on_done, hs);
	if (hs->check == NULL) {
		log_warnx("health: cannot start a check of %s/%s",
		    p->name, hs->srv->name);
		hc_schedule(hs, p->health.interval_ms);
	}
}

static void
hc_stop(void *arg)
{
	struct health *h = arg;

	event_base_loopbreak(h->base);
}

void
health_main(const struct runtime *rt, int parent_fd)
{
	struct health h;
	struct shm_health_snapshot snap;
	size_t n = 0, k = 0;

	memset(&h, 0, sizeof(h));
	h.rt = rt;
	metrics_health_attach();
	if (child_drop_privileges(rt->cfg) == -1)
		exit(CHILD_EXIT_CONFIG);
	if (child_sandbox(rt->cfg, SANDBOX_HEALTH, parent_fd) == -1)
		exit(CHILD_EXIT_CONFIG);
	h.base = child_event_base();
	for (size_t i = 0; i < rt->npools; i++)
		n += rt->pools[i].cfg->nservers;
	h.servers = calloc(n ? n : 1, sizeof(*h.servers));
	if (h.servers == NULL)
		fatal("health: calloc");
	h.nservers = n;
	for (size_t i = 0; i < rt->npools; i++) {
		const struct cfg_pool *p = rt->pools[i].cfg;

		for (size_t j = 0; j < p->nservers; j++) {
			struct hc_server *hs = &h.servers[k++];

			hs->h = &h;
			hs->pool = p;
			hs->srv = &p->servers[j];
			hs->slot = rt->pools[i].server_slot[j];
			/* A respawned health process goes on from the state
			 * its predecessor published. */
			shm_health_recover(hs->slot);
			shm_health_read(hs->slot, &snap);
			hs->state = snap.state;
			hs->checks = snap.checks;
			hs->changed_us = snap.changed_us;
			/* down time goes on from the last check published */
			hs->down_done_us = snap.down_us;
			if (snap.state == SHM_HEALTH_DOWN)
				hs->down_since_us = snap.last_check_us != 0 ?
				    snap.last_check_us : net_now_us();
			hs->timer = evtimer_new(h.base, hc_on_timer, hs);
			if (hs->timer == NULL)
				fatalx("health: evtimer_new");
			hc_start(hs);
		}
	}
	if (child_events_init(&h.ce, h.base, parent_fd, hc_stop, &h) == -1)
		fatalx("health: cannot watch signals");
	log_debug("health process started: %zu server(s)", n);

	event_base_dispatch(h.base);

	for (size_t i = 0; i < h.nservers; i++) {
		check_free(h.servers[i].check);
		event_free(h.servers[i].timer);
	}
	free(h.servers);
	child_events_free(&h.ce);
	event_base_free(h.base);
	exit(0);
}
