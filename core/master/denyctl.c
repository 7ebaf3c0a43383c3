/* SPDX-License-Identifier: MIT */
/*
 * denyctl: `deny add CIDR [DURATION] [REASON]`, `deny del CIDR` and `deny
 * list` on the control socket; a timer that removes expired entries (the
 * workers ignore an expired entry at once: this only frees the room and
 * says so in the log); and the state file. The file is rewritten whole,
 * atomically, at most once a second (a fail2ban flood of bans costs one
 * write a second, not one per ban) and at exit.
 */
#include <sys/stat.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "config/value.h"
#include "core/deny.h"
#include "core/json.h"
#include "core/log.h"
#include "core/master/denyctl.h"

/* How soon a change reaches the state file. */
#define DENYCTL_SAVE_DELAY_MS	1000
/* Expired entries named one by one in the log per sweep. */
#define DENYCTL_LOG_EXPIRED	20

static struct {
	struct event_base *base;
	struct event *save_timer;
	struct event *expire_timer;
	char dir[sizeof(((struct config *)0)->state_directory)];
	int64_t next_expiry_ms;		/* 0 = none */
	bool dirty;
	unsigned logged;		/* expired entries named this sweep */
} dc;

static void denyctl_arm_expiry(void);

static void
denyctl_save_now(void)
{
	char err[512];

	if (!dc.dirty || dc.dir[0] == '\0')
		return;
	if (deny_save(dc.dir, err, sizeof(err)) == -1) {
		log_warnx("deny: cannot keep the entries in %s: %s (tried "
		    "again at the next change)", dc.dir, err);
		return;
	}
	dc.dirty = false;
}

static void
denyctl_on_save(evutil_socket_t fd, short what, void *arg)
{
	denyctl_save_now();
}

/* Something changed: on disk within DENYCTL_SAVE_DELAY_MS. */
static void
denyctl_changed(void)
{
	struct timeval tv = { 0, DENYCTL_SAVE_DELAY_MS * 1000 };

	dc.dirty = true;
	if (dc.dir[0] == '\0' || dc.save_timer == NULL ||
	    evtimer_pending(dc.save_timer, NULL))
		return;
	if (evtimer_add(dc.save_timer, &tv) == -1)
		denyctl_save_now();
}

static void
denyctl_log_expired(const struct deny_entry *e, void *arg)
{
	char net[64];

	if (dc.logged++ >= DENYCTL_LOG_EXPIRED)
		return;
	deny_cidr_fmt(&e->net, net, sizeof(net));
	log_info("deny: %s expired (%s)", net, e->reason[0] != '\0' ?
	    e->reason : "no reason given");
}

static void
denyctl_on_expire(evutil_socket_t fd, short what, void *arg)
{
	size_t n;

	dc.logged = 0;
	n = deny_expire(deny_now_ms(), denyctl_log_expired, NULL,
	    &dc.next_expiry_ms);
	if (n > DENYCTL_LOG_EXPIRED)
		log_info("deny: %zu entries expired in all", n);
	if (n > 0)
		denyctl_changed();
	denyctl_arm_expiry();
}

static void
denyctl_arm_expiry(void)
{
	int64_t left;
	struct timeval tv;

	if (dc.expire_timer == NULL)
		return;
	evtimer_del(dc.expire_timer);
	if (dc.next_expiry_ms == 0)
		return;
	left = dc.next_expiry_ms - deny_now_ms();
	if (left < 0)
		left = 0;
	/* A little late rather than early: the workers already ignore it. */
	left += 5;
	tv.tv_sec = left / 1000;
	tv.tv_usec = (left % 1000) * 1000;
	if (evtimer_add(dc.expire_timer, &tv) == -1)
		log_warnx("deny: cannot arm the expiry timer");
}

static void
denyctl_note_expiry(int64_t expires_ms)
{
	if (expires_ms == 0 || (dc.next_expiry_ms != 0 &&
	    dc.next_expiry_ms <= expires_ms))
		return;
	dc.next_expiry_ms = expires_ms;
	denyctl_arm_expiry();
}

static void
denyctl_set_dir(const struct config *cfg)
{
	snprintf(dc.dir, sizeof(dc.dir), "%s", cfg->state_directory);
}

void
denyctl_start(struct event_base *base, const struct config *cfg)
{
	char err[512];
	size_t skipped = 0;
	long n;

	dc.base = base;
	dc.save_timer = evtimer_new(base, denyctl_on_save, NULL);
	dc.expire_timer = evtimer_new(base, denyctl_on_expire, NULL);
	if (dc.save_timer == NULL || dc.expire_timer == NULL)
		fatalx("deny: cannot set up the timers");
	denyctl_set_dir(cfg);
	if (dc.dir[0] != '\0') {
		if (mkdir(dc.dir, 0750) == -1 && errno != EEXIST)
			log_warn("deny: state_directory %s", dc.dir);
		n = deny_load(dc.dir, &skipped, err, sizeof(err));
		if (n == -1)
			log_warnx("deny: cannot read the entries kept: %s", err);
		else if (n > 0 || skipped > 0)
			log_info("deny: %ld entries read from %s/%s%s%zu%s", n,
			    dc.dir, DENY_STATE_FILE, skipped > 0 ? " (" : "",
			    skipped, skipped > 0 ? " lines skipped)" : "");
	}
	/* Whatever is in the table now (read, or kept across an upgrade). */
	denyctl_on_expire(-1, 0, NULL);
	dc.dirty = false;
}

void
denyctl_set_config(const struct config *cfg)
{
	if (strcmp(dc.dir, cfg->state_directory) == 0)
		return;
	denyctl_set_dir(cfg);
	/* The new directory gets the entries at once. */
	dc.dirty = true;
	denyctl_save_now();
}

void
denyctl_stop(void)
{
	denyctl_save_now();
	if (dc.save_timer != NULL)
		event_free(dc.save_timer);
	if (dc.expire_timer != NULL)
		event_free(dc.expire_timer);
	dc.save_timer = dc.expire_timer = NULL;
}

/* ------------------------------------------------------------ commands */

static void
denyctl_error(struct evbuffer *out, const char *msg)
{
	evbuffer_add_printf(out, "{\"ok\":false,\"error\":");
	(void)!json_write_string(out, msg);
	evbuffer_add_printf(out, "}\n");
}

/* [0-9]+(ms|s|m|h) into milliseconds (64 bits: a year of bantime fits). */
static int
denyctl_duration(const char *s, int64_t *ms)
{
	static const struct {
		const char *unit;
		int64_t ms;
	} units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 },
	    { "h", 3600000 } };
	int64_t v = 0;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (INT64_MAX / 10 - 9) / 3600000)
			return -1;
		v = v * 10 + (*p - '0');
	}
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (strcmp(p, units[i].unit) == 0) {
			*ms = v * units[i].ms;
			return *ms > 0 ? 0 : -1;
		}
	return -1;
}

static void
denyctl_add(struct evbuffer *out, int argc, char **argv, uid_t uid,
    pid_t pid)
{
	char err[256], reason[DENY_REASON_MAX + 1], net[64];
	struct cfg_cidr c;
	int64_t dur = 0, now = deny_now_ms();
	size_t off = 0;
	int first = 3;

	if (argc < 3) {
		denyctl_error(out, "usage: deny add CIDR [DURATION] [REASON]");
		return;
	}
	if (cfg_parse_cidr(argv[2], &c, err, sizeof(err)) == -1) {
		denyctl_error(out, err);
		return;
	}
	deny_cidr_unmap(&c);
	if (argc > 3 && argv[3][0] >= '0' && argv[3][0] <= '9') {
		if (denyctl_duration(argv[3], &dur) == -1) {
			snprintf(err, sizeof(err), "bad duration \"%.64s\": "
			    "expected a number and a unit (ms, s, m or h), "
			    "like 600s", argv[3]);
			denyctl_error(out, err);
			return;
		}
		first = 4;
	}
	reason[0] = '\0';
	for (int i = first; i < argc && off < sizeof(reason) - 1; i++)
		off += (size_t)snprintf(reason + off, sizeof(reason) - off,
		    "%s%s", off > 0 ? " " : "", argv[i]);
	if (deny_add(&c, dur > 0 ? now + dur : 0, now, reason, err,
	    sizeof(err)) == -1) {
		denyctl_error(out, err);
		return;
	}
	deny_cidr_fmt(&c, net, sizeof(net));
	if (dur > 0)
		log_info("deny: %s added for %.0f s (%s) by uid %ld pid %ld",
		    net, (double)dur / 1000.0, reason[0] != '\0' ? reason :
		    "no reason given", (long)uid, (long)pid);
	else
		log_info("deny: %s added until removed (%s) by uid %ld pid "
		    "%ld", net, reason[0] != '\0' ? reason : "no reason given",
		    (long)uid, (long)pid);
	denyctl_note_expiry(dur > 0 ? now + dur : 0);
	denyctl_changed();
	evbuffer_add_printf(out, "{\"ok\":true,\"network\":");
	(void)!json_write_string(out, net);
	if (dur > 0)
		evbuffer_add_printf(out, ",\"expires_in_s\":%.3f}\n",
		    (double)dur / 1000.0);
	else
		evbuffer_add_printf(out, ",\"expires_in_s\":null}\n");
}

static void
denyctl_del(struct evbuffer *out, int argc, char **argv, uid_t uid,
    pid_t pid)
{
	char err[256], net[64];
	struct cfg_cidr c;

	if (argc != 3) {
		denyctl_error(out, "usage: deny del CIDR");
		return;
	}
	if (cfg_parse_cidr(argv[2], &c, err, sizeof(err)) == -1) {
		denyctl_error(out, err);
		return;
	}
	deny_cidr_unmap(&c);
	deny_cidr_fmt(&c, net, sizeof(net));
	if (!deny_del(&c)) {
		snprintf(err, sizeof(err), "no deny entry for %s", net);
		denyctl_error(out, err);
		return;
	}
	log_info("deny: %s removed by uid %ld pid %ld", net, (long)uid,
	    (long)pid);
	denyctl_changed();
	evbuffer_add_printf(out, "{\"ok\":true,\"network\":");
	(void)!json_write_string(out, net);
	evbuffer_add_printf(out, "}\n");
}

struct denyctl_list {
	struct evbuffer *out;
	int64_t now;
	size_t n;
};

static bool
denyctl_list_one(const struct deny_entry *e, void *arg)
{
	struct denyctl_list *l = arg;
	char net[64];

	if (e->expires_ms != 0 && e->expires_ms <= l->now)
		return true;	/* gone for the workers already */
	deny_cidr_fmt(&e->net, net, sizeof(net));
	evbuffer_add_printf(l->out, "%s{\"network\":", l->n > 0 ? "," : "");
	(void)!json_write_string(l->out, net);
	evbuffer_add_printf(l->out, ",\"reason\":");
	(void)!json_write_string(l->out, e->reason);
	evbuffer_add_printf(l->out, ",\"added\":%lld", (long long)(e->added_ms /
	    1000));
	if (e->expires_ms != 0)
		evbuffer_add_printf(l->out, ",\"expires_in_s\":%.1f}",
		    (double)(e->expires_ms - l->now) / 1000.0);
	else
		evbuffer_add_printf(l->out, ",\"expires_in_s\":null}");
	l->n++;
	return true;
}

static void
denyctl_list(struct evbuffer *out, const struct runtime *rt)
{
	struct denyctl_list l = { out, deny_now_ms(), 0 };
	bool first = true;
	char net[64];

	evbuffer_add_printf(out, "{\"ok\":true,\"max\":%u,\"entries\":[",
	    DENY_MAX);
	deny_foreach(denyctl_list_one, &l);
	evbuffer_add_printf(out, "],\"count\":%zu,\"static\":[", l.n);
	for (size_t i = 0; rt != NULL && i < rt->nlisteners; i++) {
		const struct cfg_listener *lc = rt->listeners[i].cfg;

		for (size_t j = 0; j < lc->ndeny; j++) {
			deny_cidr_fmt(&lc->deny[j], net, sizeof(net));
			evbuffer_add_printf(out, "%s{\"listener\":",
			    first ? "" : ",");
			(void)!json_write_string(out, lc->name);
			evbuffer_add_printf(out, ",\"network\":");
			(void)!json_write_string(out, net);
			evbuffer_add_printf(out, "}");
			first = false;
		}
	}
	evbuffer_add_printf(out, "]}\n");
}

void
denyctl_command(struct evbuffer *out, const struct runtime *rt, int argc,
    char **argv, uid_t uid, pid_t pid)
{
	if (argc >= 2 && strcmp(argv[1], "add") == 0)
		denyctl_add(out, argc, argv, uid, pid);
	else if (argc >= 2 && strcmp(argv[1], "del") == 0)
		denyctl_del(out, argc, argv, uid, pid);
	else if (argc == 2 && strcmp(argv[1], "list") == 0)
		denyctl_list(out, rt);
	else
		denyctl_error(out, "usage: deny add CIDR [DURATION] [REASON] | "
		    "deny del CIDR | deny list");
}

void
denyctl_status_json(struct evbuffer *out)
{
	evbuffer_add_printf(out, "{\"entries\":%zu,\"max\":%u,"
	    "\"state_directory\":", deny_count(), DENY_MAX);
	if (dc.dir[0] != '\0')
		(void)!json_write_string(out, dc.dir);
	else
		evbuffer_add_printf(out, "null");
	evbuffer_add_printf(out, "}");
}
