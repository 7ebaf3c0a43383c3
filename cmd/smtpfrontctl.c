/* SPDX-License-Identifier: MIT */
/*
 * smtpfrontctl: the control client. Sends one command line to the master's
 * control socket, reads the JSON answer and prints it for a human (or raw
 * with `status --json`); `metrics` prints the Prometheus text it gets.
 * Exit: 0 ok, 1 error or refused, 2 usage.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <unistd.h>

#include "core/json.h"

#define DEFAULT_SOCKET "/run/smtpfront/control.sock"
/* The master answers from memory; this bounds a wedged one. A reload is
 * bounded by the master (5 s to resolve host names, up to 2 min for many
 * new workers to start): wait longer for it. */
#define CTL_TIMEOUT_S 30
#define CTL_RELOAD_TIMEOUT_S 150
#define CTL_SEND_ATTEMPTS 8
#define CTL_ANSWER_MAX (16 * 1024 * 1024)

static void
usage(FILE *out)
{
	fprintf(out, "usage: smtpfrontctl [-s SOCKET] COMMAND [ARGS]\n"
	    "       smtpfrontctl -h | --help | -V | --version\n"
	    "  -s SOCKET            control socket (default " DEFAULT_SOCKET
	    ")\n"
	    "commands:\n"
	    "  status [--json]      workers, listeners (sessions by result),\n"
	    "                       pools and servers\n"
	    "  enable POOL/SERVER   take new sessions again (and check it again)\n"
	    "  disable POOL/SERVER  maintenance: no new sessions and no health\n"
	    "                       checks; open sessions finish\n"
	    "  drain POOL/SERVER    no new sessions, open ones finish; health\n"
	    "                       checks go on\n"
	    "  reload               re-read the configuration; answers once the\n"
	    "                       new workers accept, or with the errors\n"
	    "  upgrade [BINARY]     re-execute the master from BINARY (default:\n"
	    "                       the path it was started from), same pid,\n"
	    "                       keeping sockets and state; answers like\n"
	    "                       reload, with the version now running\n"
	    "  metrics              the Prometheus metrics (as GET /metrics)\n"
	    "  deny add CIDR [DURATION] [REASON]\n"
	    "                       refuse a client network on every listener\n"
	    "                       (421 4.7.1) for DURATION (600s, 10m, 1h)\n"
	    "                       or until removed\n"
	    "  deny del CIDR        remove that entry\n"
	    "  deny list            runtime entries (time left, reason) and the\n"
	    "                       listeners' static deny lists\n"
	    "status, metrics and deny list read; the others need the admin\n"
	    "level: root or a member of control.admin_group\n");
}

/*
 * Connect and send `request`: the socket, or -1 with the reason printed.
 * A master crowded by idle clients may close a connection that has not
 * sent its request yet; that is tried again a few times (the request did
 * not get through, so nothing happens twice).
 */
static int
ctl_connect_send(const char *path, const char *request)
{
	struct sockaddr_un sun;
	struct timeval tv = { strcmp(request, "reload\n") == 0 ||
	    strncmp(request, "upgrade", 7) == 0 ?
	    CTL_RELOAD_TIMEOUT_S : CTL_TIMEOUT_S, 0 };
	int fd, e;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	if (strlen(path) >= sizeof(sun.sun_path)) {
		fprintf(stderr, "smtpfrontctl: socket path too long: %s\n",
		    path);
		return -1;
	}
	memcpy(sun.sun_path, path, strlen(path));
	for (int attempt = 1; ; attempt++) {
		fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (fd == -1) {
			fprintf(stderr, "smtpfrontctl: socket: %s\n",
			    strerror(errno));
			return -1;
		}
		if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1) {
			e = errno;
			fprintf(stderr, "smtpfrontctl: cannot connect to %s: "
			    "%s%s\n", path, strerror(e),
			    e == ENOENT || e == ECONNREFUSED ?
			    " (is smtpfront running?)" :
			    e == EACCES || e == EPERM ?
			    " (run as root or as a member of control.group)" :
			    "");
			close(fd);
			return -1;
		}
		setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
		setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
		if (send(fd, request, strlen(request), MSG_NOSIGNAL) ==
		    (ssize_t)strlen(request))
			return fd;
		e = errno;
		close(fd);
		if ((e != EPIPE && e != ECONNRESET) ||
		    attempt == CTL_SEND_ATTEMPTS) {
			fprintf(stderr, "smtpfrontctl: cannot send to %s: %s\n",
			    path, strerror(e));
			return -1;
		}
		usleep((useconds_t)attempt * 20000);
	}
}

/* Send `request` and return the whole answer (malloc'd), or NULL with the
 * reason printed. */
static char *
ctl_exchange(const char *path, const char *request, size_t *lenp)
{
	size_t len = 0, cap = 4096;
	char *buf;
	ssize_t n;
	int fd;

	fd = ctl_connect_send(path, request);
	if (fd == -1)
		return NULL;
	shutdown(fd, SHUT_WR);
	buf = malloc(cap);
	while (buf != NULL) {
		if (len + 1 == cap) {
			char *nb = cap >= CTL_ANSWER_MAX ? NULL :
			    realloc(buf, cap * 2);

			if (nb == NULL) {
				fprintf(stderr, "smtpfrontctl: answer too "
				    "large\n");
				free(buf);
				close(fd);
				return NULL;
			}
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == 0)
			break;
		if (n == -1) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "smtpfrontctl: reading from %s: %s\n",
			    path, errno == EAGAIN ? "timed out" :
			    strerror(errno));
			free(buf);
			close(fd);
			return NULL;
		}
		len += (size_t)n;
	}
	close(fd);
	if (buf == NULL) {
		fprintf(stderr, "smtpfrontctl: out of memory\n");
		return NULL;
	}
	buf[len] = '\0';
	if (len == 0) {
		fprintf(stderr, "smtpfrontctl: %s closed without an answer\n",
		    path);
		free(buf);
		return NULL;
	}
	*lenp = len;
	return buf;
}

static void
ctl_fmt_duration(double s, char *buf, size_t cap)
{
	long long t = (long long)s;

	if (t < 60)
		snprintf(buf, cap, "%llds", t);
	else if (t < 3600)
		snprintf(buf, cap, "%lldm%02llds", t / 60, t % 60);
	else if (t < 86400)
		snprintf(buf, cap, "%lldh%02lldm", t / 3600, t / 60 % 60);
	else
		snprintf(buf, cap, "%lldd%02lldh", t / 86400, t / 3600 % 24);
}

static void
ctl_print_cidrs(const char *what, const struct json *a)
{
	if (a == NULL || a->type != JSON_ARRAY || a->nitems == 0)
		return;
	printf("; %s", what);
	for (size_t i = 0; i < a->nitems; i++)
		printf("%s%s", i > 0 ? ", " : " ",
		    a->items[i]->type == JSON_STRING ? a->items[i]->str : "?");
}

/* Under a listener: its per-client limits, who is exempt, who refused. */
static void
ctl_print_limits(const struct json *l, int indent)
{
	double per = json_get_num(l, "max_connections_per_client", 0);
	double rate = json_get_num(l, "max_connection_rate_per_client", 0);

	printf("%-*s limits:", indent, "");
	if (per > 0)
		printf(" %.0f connections per client network", per);
	else
		printf(" no per-client limit");
	if (rate > 0)
		printf(", %.0f new per minute", rate);
	ctl_print_cidrs("exempt:", json_get(l, "client_limit_exceptions"));
	ctl_print_cidrs("denied (554):", json_get(l, "deny"));
	printf("\n");
}

/*
 * Each listener: its sessions against max_connections, then how the
 * sessions since start ended, the ones that happened only:
 *   smtp    3 of 10000 sessions; since start: 120 ok, 2 overload
 */
static void
ctl_print_listeners(const struct json *ls)
{
	int wname = 8;

	if (ls == NULL || ls->type != JSON_ARRAY || ls->nitems == 0)
		return;
	for (size_t i = 0; i < ls->nitems; i++) {
		int n = (int)strlen(json_get_str(ls->items[i], "name", ""));

		wname = n > wname ? n : wname;
	}
	printf("\n%-*s %6s %6s  %s\n", wname, "LISTENER", "ACTIVE", "MAX",
	    "SESSIONS SINCE START, BY RESULT");
	for (size_t i = 0; i < ls->nitems; i++) {
		const struct json *l = ls->items[i];
		const struct json *res = json_get(l, "sessions");
		bool any = false;

		printf("%-*s %6.0f %6.0f  ", wname, json_get_str(l, "name", "?"),
		    json_get_num(l, "active", 0),
		    json_get_num(l, "max_connections", 0));
		for (size_t k = 0; res != NULL && res->type == JSON_OBJECT &&
		    k < res->nitems; k++) {
			const struct json *r = res->items[k];

			if (r->type != JSON_NUMBER || r->num == 0)
				continue;
			printf("%s%.0f %s", any ? ", " : "", r->num, r->key);
			any = true;
		}
		printf("%s\n", any ? "" : "none yet");
		ctl_print_limits(l, wname);
	}
}

static void
ctl_print_status(const struct json *st)
{
	const struct json *workers = json_get(st, "workers");
	const struct json *pools = json_get(st, "pools");
	char up[32];

	ctl_fmt_duration(json_get_num(st, "uptime_s", 0), up, sizeof(up));
	printf("smtpfront %s, generation %.0f, up %s\n",
	    json_get_str(st, "version", "?"),
	    json_get_num(st, "generation", 0), up);
	printf("\n%-8s %4s %9s %7s\n", "WORKER", "GEN", "DRAINING", "ACTIVE");
	for (size_t i = 0; workers != NULL && workers->type == JSON_ARRAY &&
	    i < workers->nitems; i++) {
		const struct json *w = workers->items[i];

		printf("%-8.0f %4.0f %9s %7.0f\n", json_get_num(w, "pid", 0),
		    json_get_num(w, "generation", 0),
		    json_get_bool(w, "draining", false) ? "yes" : "no",
		    json_get_num(w, "active", 0));
	}
	ctl_print_listeners(json_get(st, "listeners"));
	if (json_get(st, "deny") != NULL)
		printf("\nruntime deny entries: %.0f of at most %.0f (see "
		    "smtpfrontctl deny list)\n",
		    json_get_num(json_get(st, "deny"), "entries", 0),
		    json_get_num(json_get(st, "deny"), "max", 0));
	for (size_t i = 0; pools != NULL && pools->type == JSON_ARRAY &&
	    i < pools->nitems; i++) {
		const struct json *p = pools->items[i];
		const struct json *servers = json_get(p, "servers");
		int wname = 6, waddr = 7;

		if (servers == NULL || servers->type != JSON_ARRAY)
			continue;
		for (size_t j = 0; j < servers->nitems; j++) {
			const struct json *s = servers->items[j];
			int a = (int)strlen(json_get_str(s, "name", ""));
			int b = (int)strlen(json_get_str(s, "address", ""));

			wname = a > wname ? a : wname;
			waddr = b > waddr ? b : waddr;
		}
		printf("\npool %s (%s)\n", json_get_str(p, "name", "?"),
		    json_get_str(p, "balance", "?"));
		printf("%-*s %-*s %-7s %-7s %-5s %6s %6s %8s %8s %10s %9s "
		    "%7s %7s  %s\n",
		    wname, "SERVER", waddr, "ADDRESS", "STATE", "HEALTH",
		    "ADMIN", "WEIGHT", "ACTIVE", "TOTAL", "FAILURES",
		    "CHECKED", "CHANGED", "DOWN", "CHKFAIL", "REASON");
		for (size_t j = 0; j < servers->nitems; j++) {
			const struct json *s = servers->items[j];
			const struct json *last = json_get(s, "last_check_s");
			const struct json *chg = json_get(s, "last_change_s");
			char checked[32], state[16], changed[40], down[32];

			if (last != NULL && last->type == JSON_NUMBER)
				snprintf(checked, sizeof(checked), "%.1fs ago",
				    last->num);
			else
				snprintf(checked, sizeof(checked), "never");
			if (chg != NULL && chg->type == JSON_NUMBER) {
				ctl_fmt_duration(chg->num, down, sizeof(down));
				snprintf(changed, sizeof(changed), "%s ago",
				    down);
			} else
				snprintf(changed, sizeof(changed), "never");
			ctl_fmt_duration(json_get_num(s, "downtime_s", 0), down,
			    sizeof(down));
			snprintf(state, sizeof(state), "%s%s",
			    json_get_str(s, "state", "?"),
			    json_get_bool(s, "backup", false) ? "*" : "");
			printf("%-*s %-*s %-7s %-7s %-5s %6.0f %6.0f %8.0f "
			    "%8.0f %10s %9s %7s %7.0f  %s\n", wname,
			    json_get_str(s, "name", "?"), waddr,
			    json_get_str(s, "address", "?"), state,
			    json_get_str(s, "health", "?"),
			    json_get_str(s, "admin", "?"),
			    json_get_num(s, "weight", 0),
			    json_get_num(s, "active", 0),
			    json_get_num(s, "total", 0),
			    json_get_num(s, "failures", 0), checked, changed,
			    down, json_get_num(s, "check_failures", 0),
			    json_get_str(s, "reason", ""));
		}
	}
}

/* The request line of `deny add|del|list`: -1 on bad usage. Words of a
 * reason are sent as they are (the master joins them with spaces). */
static int
ctl_deny_request(int nargs, char **argv, char *req, size_t cap)
{
	size_t off;

	if (nargs < 1)
		return -1;
	if (strcmp(argv[1], "list") == 0) {
		if (nargs != 1)
			return -1;
		snprintf(req, cap, "deny list\n");
		return 0;
	}
	if ((strcmp(argv[1], "add") != 0 && strcmp(argv[1], "del") != 0) ||
	    nargs < 2 || (strcmp(argv[1], "del") == 0 && nargs != 2))
		return -1;
	off = (size_t)snprintf(req, cap, "deny %s", argv[1]);
	for (int i = 2; i <= nargs; i++) {
		if (strpbrk(argv[i], "\r\n") != NULL || off + strlen(argv[i]) +
		    3 > cap)
			return -1;
		off += (size_t)snprintf(req + off, cap - off, " %s", argv[i]);
	}
	snprintf(req + off, cap - off, "\n");
	return 0;
}

/* What `deny` answered, for a human: a table for `list`. */
static int
ctl_print_deny(const char *sub, const struct json *ans)
{
	const struct json *e = json_get(ans, "entries");
	const struct json *st = json_get(ans, "static");
	int wnet = 7;
	char left[32];

	if (strcmp(sub, "add") == 0) {
		const struct json *x = json_get(ans, "expires_in_s");

		if (x != NULL && x->type == JSON_NUMBER) {
			ctl_fmt_duration(x->num, left, sizeof(left));
			printf("ok: %s denied for %s\n",
			    json_get_str(ans, "network", "?"), left);
		} else {
			printf("ok: %s denied until removed\n",
			    json_get_str(ans, "network", "?"));
		}
		return 0;
	}
	if (strcmp(sub, "del") == 0) {
		printf("ok: %s removed\n", json_get_str(ans, "network", "?"));
		return 0;
	}
	for (size_t i = 0; e != NULL && e->type == JSON_ARRAY &&
	    i < e->nitems; i++) {
		int n = (int)strlen(json_get_str(e->items[i], "network", ""));

		wnet = n > wnet ? n : wnet;
	}
	for (size_t i = 0; st != NULL && st->type == JSON_ARRAY &&
	    i < st->nitems; i++) {
		int n = (int)strlen(json_get_str(st->items[i], "network", ""));

		wnet = n > wnet ? n : wnet;
	}
	printf("%-*s %-10s %s\n", wnet, "NETWORK", "EXPIRES IN", "REASON");
	for (size_t i = 0; e != NULL && e->type == JSON_ARRAY &&
	    i < e->nitems; i++) {
		const struct json *x = json_get(e->items[i], "expires_in_s");
		const char *why = json_get_str(e->items[i], "reason", "");

		if (x != NULL && x->type == JSON_NUMBER)
			ctl_fmt_duration(x->num < 1 ? 1 : x->num, left,
			    sizeof(left));
		else
			snprintf(left, sizeof(left), "never");
		printf("%-*s %-10s %s\n", wnet,
		    json_get_str(e->items[i], "network", "?"), left,
		    why[0] != '\0' ? why : "-");
	}
	for (size_t i = 0; st != NULL && st->type == JSON_ARRAY &&
	    i < st->nitems; i++)
		printf("%-*s %-10s listener %s deny list (554 5.7.1)\n", wnet,
		    json_get_str(st->items[i], "network", "?"), "never",
		    json_get_str(st->items[i], "listener", "?"));
	printf("%.0f runtime entries (at most %.0f)\n",
	    json_get_num(ans, "count", 0), json_get_num(ans, "max", 0));
	return 0;
}

/* The "warnings" of an answer, on stderr. */
static void
ctl_print_warnings(const struct json *ans)
{
	const struct json *w = json_get(ans, "warnings");

	for (size_t i = 0; w != NULL && w->type == JSON_ARRAY &&
	    i < w->nitems; i++)
		if (w->items[i]->type == JSON_STRING)
			fprintf(stderr, "warning: %s\n", w->items[i]->str);
}

/*
 * Is stderr the journal (systemd names it in JOURNAL_STREAM)? Then
 * smtpfrontctl runs as the unit's ExecReload, and the master has logged
 * each error to that same journal already.
 */
static bool
ctl_stderr_is_journal(void)
{
	const char *js = getenv("JOURNAL_STREAM");
	unsigned long long dev, ino;
	struct stat st;

	if (js == NULL || sscanf(js, "%llu:%llu", &dev, &ino) != 2 ||
	    fstat(STDERR_FILENO, &st) == -1)
		return false;
	return (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino;
}

/* An {"ok":false} answer: print its error (or errors) and fail. Into the
 * journal the errors are not repeated: the master's own lines are there. */
static int
ctl_print_failure(const struct json *ans)
{
	const struct json *errs = json_get(ans, "errors");
	const char *err = json_get_str(ans, "error", NULL);
	bool journal = ctl_stderr_is_journal();

	if (err != NULL)
		fprintf(stderr, "smtpfrontctl: %s%s\n", err, journal &&
		    errs != NULL && errs->type == JSON_ARRAY && errs->nitems > 0 ?
		    " (the errors are in smtpfront's log lines above)" : "");
	for (size_t i = 0; !journal && errs != NULL &&
	    errs->type == JSON_ARRAY && i < errs->nitems; i++)
		if (errs->items[i]->type == JSON_STRING)
			fprintf(stderr, "%s\n", errs->items[i]->str);
	if (err == NULL && (errs == NULL || errs->nitems == 0))
		fprintf(stderr, "smtpfrontctl: command failed\n");
	ctl_print_warnings(ans);
	return 1;
}

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "version", no_argument, NULL, 'V' },
		{ "socket", required_argument, NULL, 's' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = DEFAULT_SOCKET, *cmd;
	char request[4096], err[128];
	struct json *ans;
	bool raw = false;
	size_t len = 0;
	char *text;
	int ch, nargs, rc;

	while ((ch = getopt_long(argc, argv, "+s:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 's':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("smtpfrontctl %s\n", SMTPFRONT_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	argc -= optind;
	argv += optind;
	if (argc == 0) {
		usage(stderr);
		return 2;
	}
	cmd = argv[0];
	nargs = argc - 1;
	if (strcmp(cmd, "status") == 0) {
		if (nargs == 1 && strcmp(argv[1], "--json") == 0)
			raw = true;
		else if (nargs != 0)
			goto bad_usage;
		snprintf(request, sizeof(request), "status\n");
	} else if (strcmp(cmd, "enable") == 0 || strcmp(cmd, "disable") == 0 ||
	    strcmp(cmd, "drain") == 0) {
		/* Say what it takes, not the whole usage (issue 20). */
		if (nargs != 1 || strchr(argv[1], '/') == NULL ||
		    strpbrk(argv[1], " \t\r\n") != NULL ||
		    strlen(argv[1]) > 200) {
			fprintf(stderr, "smtpfrontctl: usage: smtpfrontctl "
			    "%s POOL/SERVER", cmd);
			if (nargs == 1 && strchr(argv[1], '/') == NULL)
				fprintf(stderr, " (\"%.200s\" names no pool; "
				    "see smtpfrontctl status)", argv[1]);
			fputc('\n', stderr);
			return 2;
		}
		snprintf(request, sizeof(request), "%s %s\n", cmd, argv[1]);
	} else if (strcmp(cmd, "reload") == 0) {
		if (nargs != 0)
			goto bad_usage;
		snprintf(request, sizeof(request), "reload\n");
	} else if (strcmp(cmd, "upgrade") == 0) {
		char abs[PATH_MAX];

		if (nargs > 1)
			goto bad_usage;
		if (nargs == 0)
			snprintf(request, sizeof(request), "upgrade\n");
		else if (realpath(argv[1], abs) == NULL) {
			fprintf(stderr, "smtpfrontctl: upgrade: %s: %s\n",
			    argv[1], strerror(errno));
			return 1;
		} else if (strpbrk(abs, " \t\r\n") != NULL ||
		    strlen(abs) > 3000) {
			fprintf(stderr, "smtpfrontctl: upgrade: the path of "
			    "the binary must not hold white space\n");
			return 1;
		} else
			/* Bounded above (3000 < the request's size). */
			snprintf(request, sizeof(request), "upgrade %.3000s\n",
			    abs);
	} else if (strcmp(cmd, "metrics") == 0) {
		if (nargs != 0)
			goto bad_usage;
		snprintf(request, sizeof(request), "metrics\n");
	} else if (strcmp(cmd, "deny") == 0) {
		if (ctl_deny_request(nargs, argv, request, sizeof(request)) ==
		    -1)
			goto bad_usage;
	} else {
		fprintf(stderr, "smtpfrontctl: unknown command \"%s\"\n", cmd);
		usage(stderr);
		return 2;
	}

	text = ctl_exchange(path, request, &len);
	if (text == NULL)
		return 1;
	/* The exposition is text; an error is still a JSON answer. */
	if (strcmp(cmd, "metrics") == 0 && text[0] != '{') {
		fputs(text, stdout);
		free(text);
		return 0;
	}
	if (raw) {
		fputs(text, stdout);
		if (text[len - 1] != '\n')
			putchar('\n');
	}
	ans = json_parse(text, len, err, sizeof(err));
	if (ans == NULL || ans->type != JSON_OBJECT) {
		fprintf(stderr, "smtpfrontctl: unreadable answer (%s): %.200s\n",
		    ans == NULL ? err : "not an object", text);
		json_free(ans);
		free(text);
		return 1;
	}
	if (json_get(ans, "ok") != NULL && !json_get_bool(ans, "ok", false))
		rc = ctl_print_failure(ans);
	else if (strcmp(cmd, "status") == 0) {
		if (!raw)
			ctl_print_status(ans);
		rc = 0;
	} else if (strcmp(cmd, "deny") == 0) {
		rc = ctl_print_deny(argv[1], ans);
	} else {
		if (json_get(ans, "version") != NULL)
			printf("ok: generation %.0f, smtpfront %s (%s)\n",
			    json_get_num(ans, "generation", 0),
			    json_get_str(ans, "version", "?"),
			    json_get_str(ans, "binary", "?"));
		else if (json_get(ans, "generation") != NULL)
			printf("ok: generation %.0f\n",
			    json_get_num(ans, "generation", 0));
		else
			printf("ok\n");
		ctl_print_warnings(ans);
		rc = 0;
	}
	json_free(ans);
	free(text);
	return rc;

bad_usage:
	fprintf(stderr, "smtpfrontctl: bad arguments for \"%s\"\n", cmd);
	usage(stderr);
	return 2;
}
