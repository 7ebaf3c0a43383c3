/* SPDX-License-Identifier: MIT */
/*
 * session: the life of one client connection. Admission (the listener's
 * max_connections and the per-client limit), the refusals a session ends
 * with (a 421, then a FIN after the client's input is drained), and the
 * single verdict on how a session ended (session_verdict) with its log
 * line. The upstream header reader (upstream.c), the gate (gate.c) and the
 * relay (relay.c) report what happened through session_side_gone() and
 * session_end(); none of them decides a result.
 */
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"
#include "core/net.h"
#include "core/shm.h"
#include "core/worker/clients.h"
#include "core/worker/session_int.h"

/* last_error keeps at most this much (several failed attempts). */
#define SESSION_ERROR_MAX	900
/* Rejection lines (bad or untrusted upstream headers) a worker logs per
 * second; the rest are counted and reported in one line. */
#define SESSION_REJECTS_PER_S	10

TAILQ_HEAD(session_list, session);
static struct session_list sessions = TAILQ_HEAD_INITIALIZER(sessions);

/* Every read lands here first; bytes leave it before the handler returns. */
char session_scratch[SESSION_READ_MAX];

static const char *const who_names[] = { "nobody", "client", "server" };

/*
 * Phases with an absolute deadline and the socket whose timer carries it:
 * the client's while the header is read and while a refused client
 * lingers (or the server has hung up on it), the server's while it is
 * connected and awaited.
 */
struct session_side *
session_deadline_side(struct session *s)
{
	if (s->deadline_us == 0)
		return NULL;
	return s->state == SESSION_CONNECTING || s->state == SESSION_GATE ?
	    &s->server : &s->client;
}

void
session_deadline(struct session *s, int64_t from_us, unsigned ms)
{
	struct session_side *d;

	s->deadline_us = ms > 0 ? from_us + (int64_t)ms * 1000 : 0;
	if ((d = session_deadline_side(s)) != NULL)
		d->retime = true;
}

bool
session_deadline_passed(const struct session *s)
{
	return s->deadline_us != 0 && relay_now_us() >= s->deadline_us;
}

unsigned
session_server_slot(const struct session *s)
{
	return s->pool->server_slot[s->server_idx];
}

/* Add one explanation to last_error ("; " between several). */
void
session_add_error(struct session *s, const char *fmt, ...)
{
	char add[512], *e;
	size_t old = s->last_error != NULL ? strlen(s->last_error) : 0;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(add, sizeof(add), fmt, ap);
	va_end(ap);
	if (old >= SESSION_ERROR_MAX)
		return;
	if (asprintf(&e, "%s%s%s", old > 0 ? s->last_error : "",
	    old > 0 ? "; " : "", add) == -1)
		return;		/* out of memory: keep what there is */
	if (strlen(e) > SESSION_ERROR_MAX)
		e[SESSION_ERROR_MAX] = '\0';
	free(s->last_error);
	s->last_error = e;
}

/* The end of a second in which rejection lines were left out. */
static void
session_on_rejects_report(evutil_socket_t fd, short what, void *arg)
{
	struct session_rejects *r = &((struct session_env *)arg)->rejects;

	/* That second is over: the next rejection opens the next one
	 * (libevent's clock may run a little ahead of ours). */
	r->report_armed = false;
	r->window_us = 0;
	r->logged = 0;
	if (r->dropped == 0)
		return;
	log_info("session: %u more rejected PROXY connection(s) not logged "
	    "(at most %d lines a second per worker)", r->dropped,
	    SESSION_REJECTS_PER_S);
	r->dropped = 0;
}

/*
 * May one more rejection line be logged? At most SESSION_REJECTS_PER_S in
 * a second; those left out are reported in one line when that second
 * ends, so a flood costs at most 11 lines a second per worker.
 */
static bool
session_reject_loggable(struct session_env *env)
{
	struct session_rejects *r = &env->rejects;
	int64_t now = net_now_us(), left;
	struct timeval tv;

	if (now - r->window_us >= 1000000) {
		r->window_us = now;
		r->logged = 0;
	}
	if (r->logged < SESSION_REJECTS_PER_S) {
		r->logged++;
		return true;
	}
	r->dropped++;
	if (!r->report_armed) {
		left = 1000000 - (now - r->window_us);
		tv.tv_sec = left / 1000000;
		tv.tv_usec = left % 1000000;
		if (event_base_once(env->base, -1, EV_TIMEOUT,
		    session_on_rejects_report, env, &tv) == 0)
			r->report_armed = true;
	}
	return false;
}

static void
session_log(struct session *s)
{
	char client[NET_ADDR_TEXT], server[2 * CFG_NAME_MAX + 2];
	const char *backend = "-";
	const struct cfg_server *srv;

	int64_t duration_us;

	if (s->logged)
		return;
	s->logged = true;
	duration_us = net_now_us() - s->t_start;
	metrics_count_session(s->listener->slot, s->result, s->bytes_in,
	    s->bytes_out, duration_us);
	if (!log_enabled(CFG_LOG_INFO))
		return;
	if (s->result != NULL && (strcmp(s->result, "bad-proxy-header") == 0 ||
	    strcmp(s->result, "untrusted-proxy") == 0) &&
	    !session_reject_loggable(s->env))
		return;
	net_addr_fmt(&s->peer.sa, client, sizeof(client));
	if (s->server_idx >= 0) {
		srv = &s->pool->cfg->servers[s->server_idx];
		snprintf(server, sizeof(server), "%s/%s", s->pool->cfg->name,
		    srv->name);
		backend = srv->address.text;
	} else {
		snprintf(server, sizeof(server), "-");
	}
	if (s->last_error != NULL) {
		/* Quotes inside the value would break key=value parsing. */
		for (char *p = s->last_error; *p; p++)
			if (*p == '"' || *p == '\\' ||
			    (unsigned char)*p < 0x20)
				*p = '\'';
	}
	/* The dump is escaped already (proxy_escape: \\, \" and \xNN). */
	log_info("session client=%s listener=%s server=%s backend=%s proxy=%s"
	    "%s%s attempts=%u connect_ms=%.1f duration_ms=%.0f bytes_in=%llu "
	    "bytes_out=%llu result=%s%s%s%s%s%s", client,
	    s->listener->cfg->name, server, backend,
	    cfg_proxy_names[s->pool->cfg->proxy],
	    s->proxy_in != 0 ? " proxy_in=" : "",
	    s->proxy_in == 1 ? "v1" : s->proxy_in == 2 ? "v2" : "",
	    s->attempts, (double)s->connect_ms,
	    (double)duration_us / 1000.0,
	    (unsigned long long)s->bytes_in, (unsigned long long)s->bytes_out,
	    s->result, s->last_error != NULL ? " last_error=\"" : "",
	    s->last_error != NULL ? s->last_error : "",
	    s->last_error != NULL && s->dump != NULL ? "; first bytes: " : "",
	    s->last_error != NULL && s->dump != NULL ? s->dump : "",
	    s->last_error != NULL ? "\"" : "");
}

/* The session stops counting against its listener and client network. */
static void
session_uncount(struct session *s)
{
	if (s->listener_counted) {
		shm_listener_add(s->listener->slot, -1);
		s->listener_counted = false;
	}
	if (s->client_counted) {
		struct clients_key k;

		session_client_key(s, &k);
		if (clients_add(&k, -1) == -1)
			log_debug("session: client network not counted");
		s->client_counted = false;
	}
}

static void
session_free(struct session *s)
{
	struct session_env *env = s->env;

	/* Counters and sockets first: whoever reads the log line may rely
	 * on the session no longer counting against any limit. */
	session_uncount(s);
	gate_drop_server(s);
	relay_side_close(&s->client);
	if (s->hold != NULL)
		evbuffer_free(s->hold);
	free(s->hdr);
	session_log(s);
	TAILQ_REMOVE(&sessions, s, entry);
	free(s->tried_big);
	free(s->last_error);
	free(s->dump);
	free(s);
	env->nsessions--;
	if (env->on_close != NULL)
		env->on_close(env->arg);
}

void
session_side_gone(struct session *s, struct session_side *d, int err)
{
	if (s->first_gone != SESSION_NOBODY)
		return;
	s->first_gone = d == &s->client ? SESSION_CLIENT : SESSION_SERVER;
	s->first_clean = err == 0;
	s->first_err = err;
	if (d == &s->client) {
		s->client_quiet = dialog_quiet(&s->dialog);
		s->client_in_message = dialog_in_message(&s->dialog);
	}
}

static const char *
session_timeout_dir(const struct session_side *d)
{
	return d->out != NULL || d->piped > 0 ? "write" : "read";
}

/*
 * How the session ended, as SPEC.md "Session log" rules it: the one place
 * that says so. `ok` only after the server's 221 or when the client left
 * with every command answered and no message open; otherwise the side
 * that left first is to blame (server-closed carries the server's last
 * reply line), unless a timeout came first. Adds what explains the result
 * to last_error.
 */
static const char *
session_verdict(struct session *s, enum session_cause cause, int err)
{
	const struct dialog *d = &s->dialog;
	const char *who, *last;

	switch (cause) {
	case SESSION_END_OVERLOAD:
		return "overload";
	case SESSION_END_CLIENT_LIMIT:
		return "client-limit";
	case SESSION_END_SHUTDOWN:
		session_add_error(s, "shutdown_timeout expired");
		return "shutdown";
	case SESSION_END_NO_BACKEND:
		/* Some server took the connection but never greeted it
		 * properly: that is worth telling apart from none at all. */
		return s->gate_failures > 0 ? "greeting-failed" : "no-backend";
	case SESSION_END_BAD_PROXY:
		/* The reader added the class and what was wrong. */
		return "bad-proxy-header";
	case SESSION_END_UNTRUSTED:
		session_add_error(s, "untrusted source");
		return "untrusted-proxy";
	default:
		break;
	}
	if (s->state == SESSION_HEADER) {
		/* Gone without a byte of a header (a balancer's TCP check
		 * does that): nothing was malformed. */
		if (err != 0)
			session_add_error(s, "client: %s before the PROXY "
			    "header", strerror(err));
		else
			session_add_error(s, "client closed before the PROXY "
			    "header");
		return "client-closed";
	}
	if (s->state < SESSION_RELAY) {
		/* Nothing was relayed: the client left or idled at the gate. */
		if (cause == SESSION_END_CLIENT_TIMEOUT) {
			session_add_error(s, "client read timeout before the "
			    "greeting");
			return "client-timeout";
		}
		if (err != 0)
			session_add_error(s, "client: %s before the greeting",
			    strerror(err));
		else
			session_add_error(s, "client closed before the "
			    "greeting");
		return "client-closed";
	}
	if (dialog_goodbye(d))
		return "ok";
	if (s->first_gone == SESSION_NOBODY) {
		if (cause == SESSION_END_CLIENT_TIMEOUT) {
			session_add_error(s, "client %s timeout",
			    session_timeout_dir(&s->client));
			return "client-timeout";
		}
		if (cause == SESSION_END_SERVER_TIMEOUT) {
			session_add_error(s, "server %s timeout",
			    session_timeout_dir(&s->server));
			return "server-timeout";
		}
		/* A caller that did not say who left: the cause tells. */
		s->first_gone = cause == SESSION_END_SERVER_GONE ?
		    SESSION_SERVER : SESSION_CLIENT;
		s->first_clean = err == 0;
		s->first_err = err;
	}
	who = who_names[s->first_gone];
	if (dialog_opaque(d)) {
		/* After STARTTLS nothing can be followed: a FIN is a normal
		 * end, a reset is not. */
		if (s->first_clean)
			return "ok";
		session_add_error(s, "%s: %s (TLS)", who,
		    strerror(s->first_err));
		return s->first_gone == SESSION_CLIENT ? "client-closed" :
		    "server-closed";
	}
	if (s->first_gone == SESSION_CLIENT) {
		if (s->client_quiet)
			return "ok";
		if (s->first_clean)
			session_add_error(s, "client closed mid-%s",
			    s->client_in_message ? "DATA" : "command");
		else
			session_add_error(s, "client: %s mid-%s",
			    strerror(s->first_err),
			    s->client_in_message ? "DATA" : "command");
		return "client-closed";
	}
	last = dialog_last_reply(d);
	if (s->first_clean && !dialog_in_message(d) && last[0] != '\0')
		session_add_error(s, "%s", last);
	else if (s->first_clean)
		session_add_error(s, "server closed%s; last reply: %s",
		    dialog_in_message(d) ? " mid-DATA" : "",
		    last[0] != '\0' ? last : "none");
	else
		session_add_error(s, "server: %s%s; last reply: %s",
		    strerror(s->first_err),
		    dialog_in_message(d) ? " mid-DATA" : "",
		    last[0] != '\0' ? last : "none");
	return "server-closed";
}

/*
 * Say `reply` to the client (unless the listener is implicit TLS, where the
 * client speaks first and an SMTP line would be noise), then close with a
 * FIN: drain whatever the client still sends so the kernel does not answer
 * unread bytes with a reset. The session is logged now and no longer
 * counts against any limit while it lingers.
 */
static void
session_reply_close(struct session *s, const char *reply, bool keep_server)
{
	struct session_side *c = &s->client;
	char line[512];
	int n;

	gate_drop_server(s);
	if (!keep_server)
		s->server_idx = -1;	/* "server=-": none was reached */
	session_log(s);
	s->state = SESSION_CLOSING;
	session_uncount(s);
	if (s->hold != NULL) {
		evbuffer_free(s->hold);
		s->hold = NULL;
	}
	/* No inactivity any more, only the linger's end. */
	relay_set_timeout(c, 0);
	s->linger_read = 0;
	session_deadline(s, relay_now_us(), SESSION_LINGER_MS);
	if (reply != NULL && s->listener->cfg->mode == CFG_MODE_SMTP) {
		n = snprintf(line, sizeof(line), "%s\r\n", reply);
		if (n >= (int)sizeof(line))
			n = (int)sizeof(line) - 1;
		if (relay_put(c, line, (size_t)n) == -1) {
			session_free(s);
			return;
		}
	}
	if (c->out == NULL && c->piped == 0) {
		(void)shutdown(c->fd, SHUT_WR);
		c->shut = true;
	}
	relay_update(s);
}

void
session_end(struct session *s, enum session_cause cause, int err)
{
	const char *host = s->env->rt->cfg->hostname;
	char reply[400], ip[NET_ADDR_TEXT];

	if (s->result == NULL)
		s->result = session_verdict(s, cause, err);
	switch (cause) {
	case SESSION_END_OVERLOAD:
		snprintf(reply, sizeof(reply), "421 4.7.0 %s Too many "
		    "connections, try again later", host);
		break;
	case SESSION_END_CLIENT_LIMIT:
		net_ip_fmt(&s->peer.sa, ip, sizeof(ip));
		/* Postfix's own words, so operators recognise it. */
		snprintf(reply, sizeof(reply), "421 4.7.0 %s Error: too many "
		    "connections from %s", host, ip);
		break;
	case SESSION_END_NO_BACKEND:
		snprintf(reply, sizeof(reply), "421 4.3.2 %s Service not "
		    "available, try again later", host);
		break;
	case SESSION_END_CLIENT_TIMEOUT:
		/* Postfix's words again, unless a reply is half written to
		 * the client or the server already said its last word. */
		if (s->client.shut || s->client.out != NULL ||
		    s->client.piped > 0 ||
		    !dialog_server_at_line_start(&s->dialog)) {
			session_free(s);
			return;
		}
		snprintf(reply, sizeof(reply), "421 4.4.2 %s Error: timeout "
		    "exceeded", host);
		session_reply_close(s, reply, true);
		return;
	default:
		session_free(s);
		return;
	}
	session_reply_close(s, reply, false);
}

/* CLOSING: flush the 421, pass the FIN, drain until the client's FIN
 * (EOF, error or linger timeout: nothing more to say). */
void
session_on_closing(struct session *s, short what)
{
	struct session_side *c = &s->client;
	ssize_t n;

	if (what & EV_TIMEOUT) {
		session_free(s);
		return;
	}
	if ((what & EV_WRITE) && (c->out != NULL || c->piped > 0)) {
		if (relay_flush(c) == -1) {
			session_free(s);
			return;
		}
		if (c->out == NULL && c->piped == 0 && !c->shut) {
			(void)shutdown(c->fd, SHUT_WR);
			c->shut = true;
		}
	}
	if (what & EV_READ) {
		/* At most SESSION_LINGER_READ bytes: a client that keeps
		 * sending is not listening. */
		n = relay_recv(c->fd, session_scratch,
		    SESSION_LINGER_READ - s->linger_read);
		if (n == 0 || (n == -1 && !relay_again())) {
			session_free(s);
			return;
		}
		if (n > 0) {
			s->linger_read += (unsigned short)n;
			if (s->linger_read >= SESSION_LINGER_READ) {
				session_free(s);
				return;
			}
		}
	}
	relay_update(s);
}

void
session_client_key(const struct session *s, struct clients_key *k)
{
	int fam;

	memset(k, 0, sizeof(*k));
	fam = bal_client_key(s->pool->cfg, &s->peer.sa, k->net);
	k->family = fam > 0 ? (uint8_t)fam : 0;
	k->listener = (uint16_t)s->listener->slot;
}

/*
 * Admission: the listener's max_connections, then the client network's
 * max_connections_per_client. Returns -1 when the session was refused.
 * Behind accept_proxy it runs once the header named the client; the
 * session counted against its listener from accept on.
 */
int
session_admit(struct session *s)
{
	const struct cfg_listener *lc = s->listener->cfg;
	struct clients_key k;
	uint32_t active;

	active = shm_listener_active(s->listener->slot);
	if (s->listener_counted) {
		active = active > 0 ? active - 1 : 0;	/* not itself */
	} else {
		shm_listener_add(s->listener->slot, +1);
		s->listener_counted = true;
	}
	if (active >= lc->max_connections) {
		session_end(s, SESSION_END_OVERLOAD, 0);
		return -1;
	}
	if (lc->max_connections_per_client == 0)
		return 0;
	session_client_key(s, &k);
	if (clients_count(&k) >= lc->max_connections_per_client) {
		session_end(s, SESSION_END_CLIENT_LIMIT, 0);
		return -1;
	}
	if (clients_add(&k, +1) == -1) {
		/* Cannot happen while the table is sized for the worker's
		 * session cap; refuse rather than count wrong. */
		session_add_error(s, "per-client table full");
		session_end(s, SESSION_END_OVERLOAD, 0);
		return -1;
	}
	s->client_counted = true;
	return 0;
}

void
session_start(struct session_env *env, const struct rt_listener *l,
    const struct rt_bind *b, int fd, const struct sockaddr *peer,
    socklen_t peerlen)
{
	const struct cfg_listener *lc = l->cfg;
	struct session *s;
	socklen_t len;
	size_t nservers;
	int on = 1;

	s = calloc(1, sizeof(*s));
	if (s == NULL) {
		log_warn("session: out of memory");
		session_refuse(env, l, fd, peer, peerlen, "out of memory");
		return;
	}
	s->env = env;
	s->listener = l;
	s->pool = &env->rt->pools[lc->pool];
	s->server_idx = -1;
	s->t_start = net_now_us();
	relay_side_init(&s->client, fd, lc->client_timeout_ms);
	relay_side_init(&s->server, -1, 0);
	s->client.peer = &s->server;
	s->server.peer = &s->client;
	dialog_init(&s->dialog, lc->mode == CFG_MODE_TLS);
	memcpy(&s->peer, peer, peerlen < sizeof(s->peer) ? peerlen :
	    sizeof(s->peer));
	len = sizeof(s->local);
	if (!b->wildcard || getsockname(fd, &s->local.sa, &len) == -1)
		memcpy(&s->local, &b->addr->ss,
		    b->addr->len < sizeof(s->local) ? b->addr->len :
		    sizeof(s->local));
	/* SMTP is a dialogue of small writes: never let Nagle hold one back
	 * waiting for an ACK. */
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	nservers = s->pool->cfg->nservers;
	if (nservers > SESSION_TRIED_BITS &&
	    (s->tried_big = calloc(nservers, sizeof(bool))) == NULL) {
		log_warn("session: out of memory");
		free(s);
		session_refuse(env, l, fd, peer, peerlen, "out of memory");
		return;
	}
	TAILQ_INSERT_TAIL(&sessions, s, entry);
	env->nsessions++;
	if (lc->accept_proxy) {
		upstream_start(s);
		return;
	}
	if (session_admit(s) == -1)
		return;
	s->state = SESSION_CONNECTING;
	gate_try_next(s);
}

void
session_refuse(struct session_env *env, const struct rt_listener *l,
    int fd, const struct sockaddr *peer, socklen_t peerlen, const char *why)
{
	struct session s;
	char line[400], buf[4096];
	int n;

	memset(&s, 0, sizeof(s));
	s.env = env;
	s.listener = l;
	s.pool = &env->rt->pools[l->cfg->pool];
	s.server_idx = -1;
	s.t_start = net_now_us();
	memcpy(&s.peer, peer, peerlen < sizeof(s.peer) ? peerlen :
	    sizeof(s.peer));
	s.result = session_verdict(&s, SESSION_END_OVERLOAD, 0);
	session_add_error(&s, "%s", why);
	if (l->cfg->mode == CFG_MODE_SMTP) {
		n = snprintf(line, sizeof(line), "421 4.7.0 %s Too many "
		    "connections, try again later\r\n",
		    env->rt->cfg->hostname);
		(void)!send(fd, line, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
	}
	(void)shutdown(fd, SHUT_WR);
	/* Unread bytes would turn the close into a reset. */
	while (recv(fd, buf, sizeof(buf), MSG_DONTWAIT) > 0)
		;
	close(fd);
	session_log(&s);
	free(s.last_error);
}

void
session_close_all(struct session_env *env)
{
	struct session *s;

	while ((s = TAILQ_FIRST(&sessions)) != NULL) {
		if (s->state == SESSION_CLOSING)
			session_free(s);	/* already logged */
		else
			session_end(s, SESSION_END_SHUTDOWN, 0);
	}
}
