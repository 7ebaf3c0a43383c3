/* SPDX-License-Identifier: MIT */
/*
 * Unit tests for config/: the scalar parsers of value.c and the loader of
 * config.c, from YAML strings: defaults, the SPEC.md example, every error
 * class with its exact line and column, the "not supported yet" gates,
 * warnings and the printed form of diagnostics.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <unistd.h>

#include <check.h>

#include "config/config.h"
#include "config/value.h"

static struct config *
load(const char *yaml, struct cfg_diag *d)
{
	memset(d, 0, sizeof *d);
	return cfg_load_string(yaml, strlen(yaml), "t.yaml", d);
}

/* Every entry as printed, for assertion messages. */
static const char *
dump(const struct cfg_diag *d)
{
	static char buf[8192];
	FILE *f = fmemopen(buf, sizeof buf, "w");

	buf[0] = '\0';
	if (f != NULL) {
		cfg_diag_print(d, f);
		fclose(f);
	}
	buf[sizeof buf - 1] = '\0';
	return buf;
}

static const struct cfg_diag_entry *
find(const struct cfg_diag *d, enum cfg_severity sev, unsigned line,
    unsigned col, const char *sub)
{
	for (size_t i = 0; i < d->n; i++) {
		const struct cfg_diag_entry *e = &d->entries[i];
		if (e->severity == sev && e->line == line && e->column == col &&
		    strstr(e->message, sub) != NULL)
			return e;
	}
	return NULL;
}

#define POOL_P \
	"pools:\n" \
	"  p:\n" \
	"    servers:\n" \
	"      - name: a\n" \
	"        address: 127.0.0.1:10025\n"

static const char minimal[] =
	"listeners:\n"
	"  - bind: 127.0.0.1:2525\n"
	"    pool: p\n"
	POOL_P;

/* tmpl with its one "%s" replaced by insert (no printf: the templates are data). */
static void
subst(char *out, size_t size, const char *tmpl, const char *insert)
{
	const char *at = strstr(tmpl, "%s");

	ck_assert_ptr_nonnull(at);
	ck_assert_uint_lt(strlen(tmpl) + strlen(insert), size);
	memcpy(out, tmpl, (size_t)(at - tmpl));
	strcpy(out + (at - tmpl), insert);
	strcat(out, at + 2);
}

/* ---- value.c ---- */

static const struct {
	const char *s;
	unsigned min, max;
	int rc;
	unsigned v;
} uint_vectors[] = {
	{ "0", 0, 10, 0, 0 },
	{ "10", 0, 10, 0, 10 },
	{ "11", 0, 10, -1, 0 },
	{ "0", 1, 10, -1, 0 },
	{ "4294967295", 0, 4294967295u, 0, 4294967295u },
	{ "4294967296", 0, 4294967295u, -1, 0 },
	{ "99999999999999999999999", 0, 4294967295u, -1, 0 },
	{ "0x10", 0, 100, -1, 0 },
	{ "1e3", 0, 10000, -1, 0 },
	{ "+5", 0, 10, -1, 0 },
	{ "-1", 0, 10, -1, 0 },
	{ "010", 0, 100, -1, 0 },
	{ " 5", 0, 10, -1, 0 },
	{ "5 ", 0, 10, -1, 0 },
	{ "", 0, 10, -1, 0 },
	{ "1.0", 0, 10, -1, 0 },
};

START_TEST(test_parse_uint)
{
	char err[256] = "";
	unsigned v = 12345;
	int rc = cfg_parse_uint(uint_vectors[_i].s, uint_vectors[_i].min,
	    uint_vectors[_i].max, &v, err, sizeof err);

	ck_assert_msg(rc == uint_vectors[_i].rc, "\"%s\": rc %d (%s)",
	    uint_vectors[_i].s, rc, err);
	if (rc == 0)
		ck_assert_uint_eq(v, uint_vectors[_i].v);
	else
		ck_assert_ptr_nonnull(strstr(err, "expected an integer from"));
}
END_TEST

static const struct {
	const char *s;
	int rc;
	unsigned ms;
	const char *msg;
} duration_vectors[] = {
	{ "300ms", 0, 300, NULL },
	{ "5s", 0, 5000, NULL },
	{ "10m", 0, 600000, NULL },
	{ "1h", 0, 3600000, NULL },
	{ "596h", 0, 2145600000u, NULL },
	{ "2147483647ms", 0, 2147483647u, NULL },
	{ "2147483648ms", -1, 0, "too long" },
	{ "597h", -1, 0, "too long" },
	{ "99999999999999999999999s", -1, 0, "too long" },
	{ "0s", -1, 0, "greater than 0" },
	{ "0ms", -1, 0, "greater than 0" },
	{ "5x", -1, 0, "expected a duration like 5s, 300ms, 10m or 1h, got \"5x\"" },
	{ "5", -1, 0, "expected a duration" },
	{ "s", -1, 0, "expected a duration" },
	{ "1.5s", -1, 0, "expected a duration" },
	{ "5 s", -1, 0, "expected a duration" },
	{ "-5s", -1, 0, "expected a duration" },
	{ "5S", -1, 0, "expected a duration" },
	{ "1d", -1, 0, "expected a duration" },
	{ "5sec", -1, 0, "expected a duration" },
};

START_TEST(test_parse_duration)
{
	char err[256] = "";
	unsigned ms = 1;
	int rc = cfg_parse_duration(duration_vectors[_i].s, &ms, err, sizeof err);

	ck_assert_msg(rc == duration_vectors[_i].rc, "\"%s\": rc %d (%s)",
	    duration_vectors[_i].s, rc, err);
	if (rc == 0)
		ck_assert_uint_eq(ms, duration_vectors[_i].ms);
	else
		ck_assert_msg(strstr(err, duration_vectors[_i].msg) != NULL,
		    "\"%s\": %s", duration_vectors[_i].s, err);
}
END_TEST

static const struct {
	const char *s;
	int rc;
	unsigned mode;
} mode_vectors[] = {
	{ "0660", 0, 0660 }, { "0600", 0, 0600 }, { "660", 0, 0660 },
	{ "0", 0, 0 }, { "0777", 0, 0777 }, { "1777", -1, 0 },
	{ "0999", -1, 0 }, { "07777", -1, 0 }, { "rw", -1, 0 }, { "", -1, 0 },
};

START_TEST(test_parse_mode)
{
	char err[256];
	unsigned m = 12345;
	int rc = cfg_parse_mode(mode_vectors[_i].s, &m, err, sizeof err);

	ck_assert_int_eq(rc, mode_vectors[_i].rc);
	if (rc == 0)
		ck_assert_uint_eq(m, mode_vectors[_i].mode);
}
END_TEST

static const struct {
	const char *s;
	int rc;
} name_vectors[] = {
	{ "postfix", 0 }, { "mx-1.a_b", 0 }, { "A9", 0 },
	{ "0123456789012345678901234567890123456789012345678901234567890123", 0 },
	{ "01234567890123456789012345678901234567890123456789012345678901234", -1 },
	{ "", -1 }, { "a b", -1 }, { "a/b", -1 }, { "é", -1 }, { "a:b", -1 },
};

START_TEST(test_check_name)
{
	char err[256];

	ck_assert_int_eq(cfg_check_name(name_vectors[_i].s, err, sizeof err),
	    name_vectors[_i].rc);
}
END_TEST

static const struct {
	const char *s;
	int rc;
	const char *text;	/* canonical, or a message substring */
} addr_vectors[] = {
	{ "127.0.0.1:2525", 0, "[127.0.0.1]:2525" },
	{ "[::1]:25", 0, "[::1]:25" },
	{ "[127.0.0.1]:25", 0, "[127.0.0.1]:25" },
	{ "[2001:db8::12]:10024", 0, "[2001:db8::12]:10024" },
	{ "[2001:DB8:0::12]:10024", 0, "[2001:db8::12]:10024" },
	{ "0.0.0.0:25", 0, "[0.0.0.0]:25" },
	{ "[::]:25", 0, "[::]:25" },
	{ "10.0.0.11:65535", 0, "[10.0.0.11]:65535" },
	{ "10.0.0.11:0", -1, "from 1 to 65535" },
	{ "10.0.0.11:65536", -1, "from 1 to 65535" },
	{ "10.0.0.11:025", -1, "from 1 to 65535" },
	{ "10.0.0.11:+25", -1, "from 1 to 65535" },
	{ "10.0.0.11:", -1, "from 1 to 65535" },
	{ "10.0.0.11", -1, "expected host:port" },
	{ ":25", -1, "missing host" },
	{ "::1:25", -1, "in brackets" },
	{ "[::1]", -1, "expected [address]:port" },
	{ "[::1]25", -1, "expected [address]:port" },
	{ "[mx.example.org]:25", -1, "not an IP address" },
	{ "[]:25", -1, "missing host" },
	{ "300.1.1.1:25", -1, "not an IPv4 address or a host name" },
	{ "127.1:25", -1, "not an IPv4 address or a host name" },
	{ "bad host:25", -1, "not an IPv4 address or a host name" },
	/* resolution is off in this test: names never reach DNS */
	{ "mx.example.org:25", -1, "cannot resolve host \"mx.example.org\"" },
};

START_TEST(test_parse_addr)
{
	struct cfg_addr a;
	char err[256] = "";
	int rc = cfg_parse_addr(addr_vectors[_i].s, true, false, &a, err,
	    sizeof err);

	ck_assert_msg(rc == addr_vectors[_i].rc, "\"%s\": rc %d (%s)",
	    addr_vectors[_i].s, rc, err);
	if (rc == 0)
		ck_assert_str_eq(a.text, addr_vectors[_i].text);
	else
		ck_assert_msg(strstr(err, addr_vectors[_i].text) != NULL,
		    "\"%s\": %s", addr_vectors[_i].s, err);
}
END_TEST

START_TEST(test_parse_addr_misc)
{
	struct cfg_addr a, b;
	char err[256] = "";
	const struct sockaddr_in6 *sin6;

	/* servers may not use the unspecified address, binds may */
	ck_assert_int_eq(cfg_parse_addr("0.0.0.0:25", false, false, &a, err,
	    sizeof err), -1);
	ck_assert_ptr_nonnull(strstr(err, "unspecified"));
	ck_assert_int_eq(cfg_parse_addr("[::]:25", false, false, &a, err,
	    sizeof err), -1);

	ck_assert_int_eq(cfg_parse_addr("[2001:db8::12]:10024", false, false, &a,
	    err, sizeof err), 0);
	ck_assert_int_eq(a.ss.ss_family, AF_INET6);
	ck_assert_uint_eq(a.len, sizeof(struct sockaddr_in6));
	sin6 = (const struct sockaddr_in6 *)&a.ss;
	ck_assert_uint_eq(ntohs(sin6->sin6_port), 10024);
	ck_assert_uint_eq(cfg_addr_port(&a), 10024);

	ck_assert_int_eq(cfg_parse_addr("[2001:db8:0:0::12]:10024", false,
	    false, &b, err, sizeof err), 0);
	ck_assert(cfg_addr_equal(&a, &b));
	ck_assert_int_eq(cfg_parse_addr("[2001:db8::12]:10025", false,
	    false, &b, err, sizeof err), 0);
	ck_assert(!cfg_addr_equal(&a, &b));

	/* localhost comes from /etc/hosts: no network needed */
	ck_assert_msg(cfg_parse_addr("localhost:2525", false, true, &a, err,
	    sizeof err) == 0, "%s", err);
	ck_assert(strcmp(a.text, "[127.0.0.1]:2525") == 0 ||
	    strcmp(a.text, "[::1]:2525") == 0);
}
END_TEST

static const struct {
	const char *s;
	int rc;
	int family;
	unsigned prefix;
	const char *net;
} cidr_vectors[] = {
	{ "10.0.0.0/8", 0, AF_INET, 8, "10.0.0.0" },
	{ "10.1.2.3/8", 0, AF_INET, 8, "10.0.0.0" },
	{ "192.0.2.7", 0, AF_INET, 32, "192.0.2.7" },
	{ "192.0.2.7/0", 0, AF_INET, 0, "0.0.0.0" },
	{ "192.0.2.255/25", 0, AF_INET, 25, "192.0.2.128" },
	{ "2001:db8::1/32", 0, AF_INET6, 32, "2001:db8::" },
	{ "2001:db8::1", 0, AF_INET6, 128, "2001:db8::1" },
	{ "2001:db8:ffff::1/33", 0, AF_INET6, 33, "2001:db8:8000::" },
	{ "10.0.0.0/33", -1, 0, 0, NULL },
	{ "2001:db8::/129", -1, 0, 0, NULL },
	{ "10.0.0.0/", -1, 0, 0, NULL },
	{ "10.0.0.0/08", -1, 0, 0, NULL },
	{ "10.0.0/8", -1, 0, 0, NULL },
	{ "/8", -1, 0, 0, NULL },
	{ "example.org/8", -1, 0, 0, NULL },
};

START_TEST(test_parse_cidr)
{
	struct cfg_cidr c;
	char err[256] = "", net[INET6_ADDRSTRLEN];
	int rc = cfg_parse_cidr(cidr_vectors[_i].s, &c, err, sizeof err);

	ck_assert_msg(rc == cidr_vectors[_i].rc, "\"%s\": rc %d (%s)",
	    cidr_vectors[_i].s, rc, err);
	if (rc != 0) {
		ck_assert_ptr_nonnull(strstr(err, "bad network"));
		return;
	}
	ck_assert_int_eq(c.family, cidr_vectors[_i].family);
	ck_assert_uint_eq(c.prefix, cidr_vectors[_i].prefix);
	ck_assert_ptr_nonnull(inet_ntop(c.family, c.addr, net, sizeof net));
	ck_assert_str_eq(net, cidr_vectors[_i].net);
}
END_TEST

START_TEST(test_quote)
{
	char buf[64];
	char longs[200];

	cfg_quote("a\"b\\c\n", buf, sizeof buf);
	ck_assert_str_eq(buf, "\"a\\\"b\\\\c\\x0a\"");
	memset(longs, 'x', sizeof longs - 1);
	longs[sizeof longs - 1] = '\0';
	cfg_quote(longs, buf, sizeof buf);
	ck_assert_uint_lt(strlen(buf), sizeof buf);
	ck_assert_ptr_nonnull(strstr(buf, "...\""));
}
END_TEST

/* ---- cfg_load_string: valid configurations ---- */

START_TEST(test_minimal_defaults)
{
	struct cfg_diag d;
	struct config *cfg = load(minimal, &d);
	const struct cfg_listener *l;
	const struct cfg_pool *p;
	const struct cfg_server *s;

	ck_assert_msg(cfg != NULL, "%s", dump(&d));
	ck_assert_uint_eq(d.nerrors, 0);
	ck_assert_str_eq(cfg->path, "t.yaml");
	ck_assert_uint_ge(cfg->workers, 1);
	ck_assert_str_eq(cfg->user, "");
	ck_assert_str_eq(cfg->group, "");
	ck_assert_uint_eq(cfg->shutdown_timeout_ms, 60000);
	ck_assert(cfg->sandbox);
	ck_assert_uint_gt(strlen(cfg->hostname), 0);
	ck_assert_int_eq(cfg->log.target, CFG_LOG_STDERR);
	ck_assert_int_eq(cfg->log.facility, LOG_MAIL);
	ck_assert_int_eq(cfg->log.level, CFG_LOG_INFO);
	ck_assert_str_eq(cfg->log.syslog_socket, "/dev/log");
	ck_assert_str_eq(cfg->control.socket, "/run/smtpfront/control.sock");
	ck_assert_uint_eq(cfg->control.mode, 0600);
	ck_assert_str_eq(cfg->control.group, "");

	ck_assert_uint_eq(cfg->nlisteners, 1);
	l = &cfg->listeners[0];
	ck_assert_str_eq(l->name, "listener1");
	ck_assert_uint_eq(l->nbinds, 1);
	ck_assert_str_eq(l->binds[0].text, "[127.0.0.1]:2525");
	ck_assert_str_eq(l->pool_name, "p");
	ck_assert_uint_eq(l->pool, 0);
	ck_assert_int_eq(l->mode, CFG_MODE_SMTP);
	ck_assert_uint_eq(l->max_connections, 10000);
	ck_assert_uint_eq(l->max_connections_per_client, 0);
	ck_assert_uint_eq(l->max_connection_rate_per_client, 0);
	ck_assert_uint_eq(l->nclient_limit_exceptions, 0);
	ck_assert_uint_eq(l->ndeny, 0);
	ck_assert_str_eq(cfg->state_directory, "");
	ck_assert(!l->accept_proxy);
	ck_assert_uint_eq(l->ntrusted_proxies, 0);
	ck_assert_uint_eq(l->proxy_timeout_ms, 5000);
	ck_assert_uint_eq(l->client_timeout_ms, 600000);

	ck_assert_uint_eq(cfg->npools, 1);
	p = cfg_pool_by_name(cfg, "p");
	ck_assert_ptr_eq(p, &cfg->pools[0]);
	ck_assert_ptr_null(cfg_pool_by_name(cfg, "q"));
	ck_assert_int_eq(p->balance, CFG_BALANCE_ROUNDROBIN);
	ck_assert_uint_eq(p->prefix4, 24);
	ck_assert_uint_eq(p->prefix6, 64);
	ck_assert_int_eq(p->proxy, CFG_PROXY_V2);
	ck_assert_uint_eq(p->connect_timeout_ms, 5000);
	ck_assert_uint_eq(p->greeting_timeout_ms, 30000);
	ck_assert_uint_eq(p->server_timeout_ms, 600000);
	ck_assert_uint_eq(p->retries, 2);
	ck_assert_uint_eq(p->health.interval_ms, 2000);
	ck_assert_uint_eq(p->health.timeout_ms, 10000);
	ck_assert_uint_eq(p->health.rise, 2);
	ck_assert_uint_eq(p->health.fall, 3);
	ck_assert_str_eq(p->health.helo, cfg->hostname);
	ck_assert_int_eq(p->health.check, CFG_CHECK_SMTP);
	ck_assert_uint_eq(p->nservers, 1);
	s = cfg_server_by_name(p, "a");
	ck_assert_ptr_eq(s, &p->servers[0]);
	ck_assert_ptr_null(cfg_server_by_name(p, "b"));
	ck_assert_str_eq(s->address.text, "[127.0.0.1]:10025");
	ck_assert_str_eq(s->address_spec, "127.0.0.1:10025");
	ck_assert_uint_eq(s->weight, 1);
	ck_assert_uint_eq(s->max_connections, 0);
	ck_assert(!s->backup);

	/* the only possible warning: no FQDN on this machine */
	for (size_t i = 0; i < d.n; i++)
		ck_assert_msg(d.entries[i].line == 0 &&
		    strstr(d.entries[i].message, "fully qualified") != NULL,
		    "%s", dump(&d));
	cfg_free(cfg);
	cfg_diag_free(&d);
}
END_TEST

/* SPEC.md "Configuration (YAML)", verbatim but for balance (see the gates). */
#define SPEC_EXAMPLE(BALANCE) \
	"workers: auto            # worker processes: a number, or auto\n" \
	"user: smtpfront\n" \
	"group: smtpfront\n" \
	"shutdown_timeout: 60s\n" \
	"hostname: mx.example.org\n" \
	"log:\n" \
	"  target: syslog\n" \
	"  facility: mail\n" \
	"  level: info            # error | warning | info | debug\n" \
	"control:\n" \
	"  socket: /run/smtpfront/control.sock\n" \
	"  mode: \"0660\"\n" \
	"  group: smtpfront\n" \
	"listeners:\n" \
	"  - name: smtp\n" \
	"    bind: [\"0.0.0.0:25\", \"[::]:25\"]      # [::] is bound IPv6-only\n" \
	"    pool: postfix\n" \
	"    mode: smtp\n" \
	"    max_connections: 10000\n" \
	"    max_connections_per_client: 0\n" \
	"    accept_proxy: false\n" \
	"    trusted_proxies: []\n" \
	"    proxy_timeout: 5s\n" \
	"    client_timeout: 10m\n" \
	"pools:\n" \
	"  postfix:\n" \
	"    balance: " BALANCE "               # roundrobin (weighted) | ...\n" \
	"    source_prefix: {ipv4: 24, ipv6: 64}\n" \
	"    proxy_protocol: v2\n" \
	"    connect_timeout: 5s\n" \
	"    greeting_timeout: 30s\n" \
	"    server_timeout: 10m\n" \
	"    retries: 2\n" \
	"    health:\n" \
	"      interval: 2s\n" \
	"      timeout: 10s\n" \
	"      rise: 2\n" \
	"      fall: 3\n" \
	"      helo: mx.example.org\n" \
	"      check: smtp\n" \
	"    servers:\n" \
	"      - name: mx1\n" \
	"        address: 10.0.0.11:10024\n" \
	"        weight: 1\n" \
	"        max_connections: 0\n" \
	"      - name: mx2\n" \
	"        address: \"[2001:db8::12]:10024\"\n" \
	"      - name: spare\n" \
	"        address: 10.0.1.5:10024\n" \
	"        backup: true\n"

START_TEST(test_spec_example)
{
	struct cfg_diag d;
	struct config *cfg = load(SPEC_EXAMPLE("roundrobin"), &d);
	const struct cfg_listener *l;
	const struct cfg_pool *p;

	ck_assert_msg(cfg != NULL, "%s", dump(&d));
	ck_assert_msg(d.n == 0, "%s", dump(&d));
	ck_assert_uint_ge(cfg->workers, 1);
	ck_assert_str_eq(cfg->user, "smtpfront");
	ck_assert_str_eq(cfg->group, "smtpfront");
	ck_assert_uint_eq(cfg->shutdown_timeout_ms, 60000);
	ck_assert_str_eq(cfg->hostname, "mx.example.org");
	ck_assert_int_eq(cfg->log.target, CFG_LOG_SYSLOG);
	ck_assert_int_eq(cfg->log.facility, LOG_MAIL);
	ck_assert_int_eq(cfg->log.level, CFG_LOG_INFO);
	ck_assert_uint_eq(cfg->control.mode, 0660);
	ck_assert_str_eq(cfg->control.group, "smtpfront");

	ck_assert_uint_eq(cfg->nlisteners, 1);
	l = &cfg->listeners[0];
	ck_assert_str_eq(l->name, "smtp");
	ck_assert_uint_eq(l->nbinds, 2);
	ck_assert_str_eq(l->binds[0].text, "[0.0.0.0]:25");
	ck_assert_int_eq(l->binds[0].ss.ss_family, AF_INET);
	ck_assert_str_eq(l->binds[1].text, "[::]:25");
	ck_assert_int_eq(l->binds[1].ss.ss_family, AF_INET6);
	ck_assert_str_eq(l->pool_name, "postfix");
	ck_assert_uint_eq(l->ntrusted_proxies, 0);
	ck_assert_uint_eq(l->client_timeout_ms, 600000);

	ck_assert_uint_eq(cfg->npools, 1);
	p = &cfg->pools[0];
	ck_assert_str_eq(p->name, "postfix");
	ck_assert_uint_eq(p->prefix4, 24);
	ck_assert_uint_eq(p->prefix6, 64);
	ck_assert_int_eq(p->proxy, CFG_PROXY_V2);
	ck_assert_str_eq(p->health.helo, "mx.example.org");
	ck_assert_uint_eq(p->nservers, 3);
	ck_assert_str_eq(p->servers[0].name, "mx1");
	ck_assert_str_eq(p->servers[0].address.text, "[10.0.0.11]:10024");
	ck_assert_str_eq(p->servers[1].name, "mx2");
	ck_assert_str_eq(p->servers[1].address.text, "[2001:db8::12]:10024");
	ck_assert_str_eq(p->servers[1].address_spec, "[2001:db8::12]:10024");
	ck_assert_str_eq(p->servers[2].name, "spare");
	ck_assert(p->servers[2].backup);
	ck_assert(!p->servers[1].backup);
	cfg_free(cfg);
	cfg_diag_free(&d);
}
END_TEST

START_TEST(test_valid_variants)
{
	static const char yaml[] =
		"workers: 3\n"
		"hostname: \"mx.example.org\"\n"
		"state_directory: /var/lib/smtpfront\n"
		"log: {target: stderr, facility: local7, level: debug, "
		"syslog_socket: /run/systemd/journal/dev-log}\n"
		"control: {mode: 0640, socket: \"/tmp/x.sock\"}\n"
		"listeners:\n"
		"  - name: a\n"
		"    bind: \"127.0.0.1:2525\"\n"
		"    pool: p\n"
		"    mode: tls\n"
		"    trusted_proxies: [10.0.0.0/8, \"2001:db8::/32\", 192.0.2.1]\n"
		"    max_connection_rate_per_client: 30\n"
		"    client_limit_exceptions: [192.0.2.0/24]\n"
		"    deny: [198.51.100.0/24, \"2001:db8:bad::/48\"]\n"
		"  - bind: [\"[::1]:2525\"]\n"
		"    pool: q\n"
		"pools:\n"
		"  p:\n"
		"    proxy_protocol: v1\n"
		"    retries: 16\n"
		"    health: {check: connect, interval: 300ms, helo: check.example.org}\n"
		"    servers: [{name: a, address: \"127.0.0.1:1\", weight: 0}]\n"
		"  q:\n"
		"    servers:\n"
		"      - {name: a, address: \"[::1]:1\", weight: 256, max_connections: 7}\n"
		"      - {name: b, address: \"127.0.0.2:1\"}\n";
	struct cfg_diag d;
	struct config *cfg = load(yaml, &d);

	ck_assert_msg(cfg != NULL && d.n == 0, "%s", dump(&d));
	ck_assert_uint_eq(cfg->workers, 3);
	ck_assert_int_eq(cfg->log.facility, LOG_LOCAL7);
	ck_assert_int_eq(cfg->log.level, CFG_LOG_DEBUG);
	ck_assert_str_eq(cfg->log.syslog_socket,
	    "/run/systemd/journal/dev-log");
	ck_assert_uint_eq(cfg->control.mode, 0640);
	ck_assert_str_eq(cfg->control.socket, "/tmp/x.sock");
	ck_assert_int_eq(cfg->listeners[0].mode, CFG_MODE_TLS);
	ck_assert_uint_eq(cfg->listeners[0].ntrusted_proxies, 3);
	ck_assert_int_eq(cfg->listeners[0].trusted_proxies[1].family, AF_INET6);
	ck_assert_uint_eq(cfg->listeners[0].trusted_proxies[2].prefix, 32);
	ck_assert_uint_eq(cfg->listeners[0].max_connection_rate_per_client, 30);
	ck_assert_uint_eq(cfg->listeners[0].nclient_limit_exceptions, 1);
	ck_assert_uint_eq(cfg->listeners[0].client_limit_exceptions[0].prefix,
	    24);
	ck_assert_uint_eq(cfg->listeners[0].ndeny, 2);
	ck_assert_int_eq(cfg->listeners[0].deny[1].family, AF_INET6);
	ck_assert_uint_eq(cfg->listeners[0].deny[1].prefix, 48);
	ck_assert_str_eq(cfg->state_directory, "/var/lib/smtpfront");
	ck_assert_str_eq(cfg->listeners[1].name, "listener2");
	ck_assert_uint_eq(cfg->listeners[1].pool, 1);
	ck_assert_int_eq(cfg->pools[0].proxy, CFG_PROXY_V1);
	ck_assert_uint_eq(cfg->pools[0].retries, 16);
	ck_assert_int_eq(cfg->pools[0].health.check, CFG_CHECK_CONNECT);
	ck_assert_uint_eq(cfg->pools[0].health.interval_ms, 300);
	ck_assert_str_eq(cfg->pools[0].health.helo, "check.example.org");
	ck_assert_str_eq(cfg->pools[1].health.helo, "mx.example.org");
	ck_assert_uint_eq(cfg->pools[0].servers[0].weight, 0);
	ck_assert_uint_eq(cfg->pools[1].servers[0].weight, 256);
	ck_assert_uint_eq(cfg->pools[1].servers[0].max_connections, 7);
	cfg_free(cfg);
	cfg_diag_free(&d);
}
END_TEST

/* ---- cfg_load_string: errors ---- */

/* Templates: the line of %s and its column are given per template. */
#define T_ROOT "%s\n" "listeners:\n  - bind: 127.0.0.1:2525\n    pool: p\n" POOL_P
/* %s on line 5, column 5 */
#define T_LISTENER "hostname: mx.example.org\n" \
	"listeners:\n  - bind: 127.0.0.1:2525\n    pool: p\n    %s\n" POOL_P
/* %s (the bind value) on line 4, column 11 */
#define T_BIND "hostname: mx.example.org\n" \
	"listeners:\n  - pool: p\n    bind: %s\n" POOL_P
/* %s on line 7, column 5 */
#define T_POOL "hostname: mx.example.org\n" \
	"listeners:\n  - bind: 127.0.0.1:2525\n    pool: p\n" \
	"pools:\n  p:\n    %s\n" \
	"    servers:\n      - name: a\n        address: 127.0.0.1:10025\n"
/* %s on line 10, column 9 */
#define T_SERVER "hostname: mx.example.org\n" \
	"listeners:\n  - bind: 127.0.0.1:2525\n    pool: p\n" POOL_P "        %s\n"

static const struct {
	const char *tmpl;
	const char *insert;
	size_t nerrors;
	unsigned line, col;	/* of one of the errors */
	const char *msg;	/* substring of its message */
} error_vectors[] = {
	/* unknown key */
	{ T_ROOT, "workerz: 2", 1, 1, 1,
	    "unknown key \"workerz\" at the top level (did you mean \"workers\"?)" },
	{ T_LISTENER, "bnd: 1.2.3.4:25", 1, 5, 5,
	    "unknown key \"bnd\" in listener (did you mean \"bind\"?)" },
	{ T_LISTENER, "xyzzy: 1", 1, 5, 5, "unknown key \"xyzzy\" in listener" },
	{ T_POOL, "source_prefix: {ipv5: 3}", 1, 7, 21,
	    "unknown key \"ipv5\" in source_prefix" },
	{ T_SERVER, "adress: x", 1, 10, 9, "unknown key \"adress\" in server" },
	{ T_ROOT, "log: {tagret: syslog}", 1, 1, 7, "unknown key \"tagret\" in log" },
	/* duplicate key */
	{ T_LISTENER, "pool: q", 1, 5, 5, "duplicate key \"pool\" (first at line 4)" },
	{ T_SERVER, "name: b", 1, 10, 9, "duplicate key \"name\"" },
	{ T_ROOT, "pools: {}", 2, 5, 1, "duplicate key \"pools\"" },
	/* wrong type */
	{ T_ROOT, "workers: [1]", 1, 1, 10,
	    "workers: expected a number of workers or auto, got a list" },
	{ T_ROOT, "log: stderr", 1, 1, 6,
	    "log: expected a mapping, got a single value" },
	{ T_ROOT, "user: {a: b}", 1, 1, 7, "user: expected a string, got a mapping" },
	{ T_LISTENER, "max_connections: [1]", 1, 5, 22,
	    "max_connections: expected an integer from 1 to 1000000, got a list" },
	{ T_LISTENER, "trusted_proxies: 10.0.0.0/8", 1, 5, 22,
	    "trusted_proxies: expected a list of networks" },
	{ T_LISTENER, "deny: 10.0.0.0/8", 1, 5, 11,
	    "deny: expected a list of networks" },
	{ T_LISTENER, "deny: [10.0.0.0/33]", 1, 5, 12,
	    "deny: bad network" },
	{ T_LISTENER, "client_limit_exceptions: [bogus]", 1, 5, 31,
	    "client_limit_exceptions: bad network" },
	{ T_LISTENER, "max_connection_rate_per_client: 60001", 1, 5, 37,
	    "max_connection_rate_per_client: " },
	{ T_LISTENER, "max_connection_rate_per_client: -1", 1, 5, 37,
	    "max_connection_rate_per_client: " },
	{ T_ROOT, "state_directory: var/lib", 1, 1, 18,
	    "state_directory: expected an absolute directory path" },
	{ T_ROOT, "state_directory: [a]", 1, 1, 18,
	    "state_directory: expected an absolute directory path, got a list" },
	{ T_LISTENER, "accept_proxy: yes", 1, 5, 19, "accept_proxy: expected true or false, got \"yes\"" },
	{ T_BIND, "{a: 1}", 1, 4, 11,
	    "bind: expected an address or a list of addresses, got a mapping" },
	{ T_POOL, "health: []", 1, 7, 13,
	    "health: expected a mapping, got a list" },
	{ T_SERVER, "backup: 1", 1, 10, 17, "backup: expected true or false, got \"1\"" },
	{ T_ROOT, "workers:", 1, 1, 9, "workers: expected a number of workers or auto, got no value" },
	{ T_ROOT, "workers: null", 1, 1, 10, "got no value" },
	{ T_ROOT, "hostname: \"a\\0b\"", 1, 1, 11, "hostname: expected a host name, got a value with a NUL character" },
	/* out of range, integer syntax */
	{ T_ROOT, "workers: 0", 1, 1, 10, "workers: expected an integer from 1 to 1024 or auto, got \"0\"" },
	{ T_LISTENER, "max_connections: 0", 1, 5, 22,
	    "max_connections: expected an integer from 1 to 1000000, got \"0\"" },
	{ T_LISTENER, "max_connections: 0x10", 1, 5, 22, "got \"0x10\"" },
	{ T_LISTENER, "max_connections: 1e3", 1, 5, 22, "got \"1e3\"" },
	{ T_LISTENER, "max_connections: +5", 1, 5, 22, "got \"+5\"" },
	{ T_LISTENER, "max_connections: -1", 1, 5, 22, "got \"-1\"" },
	{ T_LISTENER, "max_connections: 99999999999999999999", 1, 5, 22,
	    "expected an integer from 1 to 1000000" },
	{ T_SERVER, "weight: 257", 1, 10, 17, "weight: expected an integer from 0 to 256, got \"257\"" },
	{ T_POOL, "retries: 17", 1, 7, 14, "retries: expected an integer from 0 to 16" },
	{ T_POOL, "source_prefix: {ipv4: 33}", 1, 7, 27, "source_prefix.ipv4: expected an integer from 0 to 32" },
	{ T_POOL, "source_prefix: {ipv6: 129}", 1, 7, 27, "source_prefix.ipv6: expected an integer from 0 to 128" },
	{ T_POOL, "health: {rise: 0}", 1, 7, 20, "health.rise: expected an integer from 1 to 1000" },
	/* enums */
	{ T_LISTENER, "mode: starttls", 1, 5, 11,
	    "mode: expected one of smtp or tls, got \"starttls\"" },
	{ T_POOL, "balance: random", 1, 7, 14,
	    "balance: expected one of roundrobin, leastconn, source or first, got \"random\"" },
	{ T_POOL, "proxy_protocol: v3", 1, 7, 21, "proxy_protocol: expected one of none, v1 or v2" },
	{ T_POOL, "health: {check: tcp}", 1, 7, 21, "health.check: expected one of smtp or connect" },
	{ T_ROOT, "log: {facility: kern}", 1, 1, 17, "log.facility: expected a syslog facility" },
	{ T_ROOT, "log: {level: notice}", 1, 1, 14,
	    "log.level: expected one of error, warning, info or debug" },
	{ T_ROOT, "log: {syslog_socket: dev/log}", 1, 1, 22,
	    "log.syslog_socket: expected an absolute path" },
	{ T_ROOT, "log: {syslog_socket: [/dev/log]}", 1, 1, 22,
	    "log.syslog_socket: expected the path of a socket, got a list" },
	{ T_ROOT, "log: {syslog_socket: /" "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	    "aaaaaaaaaaaaaaaaaaaa}", 1, 1, 22,
	    "log.syslog_socket: too long for a socket path: at most 107" },
	{ T_ROOT, "control: {mode: \"0999\"}", 1, 1, 17, "control.mode: expected an octal file mode" },
	/* durations */
	{ T_ROOT, "shutdown_timeout: 5x", 1, 1, 19,
	    "shutdown_timeout: expected a duration like 5s, 300ms, 10m or 1h, got \"5x\"" },
	{ T_ROOT, "shutdown_timeout: 0s", 1, 1, 19, "greater than 0" },
	{ T_ROOT, "shutdown_timeout: 597h", 1, 1, 19, "too long" },
	{ T_LISTENER, "proxy_timeout: 5", 1, 5, 20, "proxy_timeout: expected a duration" },
	{ T_LISTENER, "client_timeout: 0ms", 1, 5, 21,
	    "client_timeout: expected a duration greater than 0" },
	{ T_POOL, "connect_timeout: 1d", 1, 7, 22, "connect_timeout: expected a duration" },
	{ T_POOL, "health: {interval: 0s}", 1, 7, 24,
	    "health.interval: expected a duration greater than 0" },
	/* names and host names */
	{ T_LISTENER, "name: \"bad name\"", 1, 5, 11, "name: expected a name of 1 to 64" },
	{ T_LISTENER, "name: "
	    "a1234567890123456789012345678901234567890123456789012345678901234",
	    1, 5, 11, "expected a name" },
	{ T_ROOT, "hostname: \"bad host\"", 1, 1, 11, "hostname: expected a host name" },
	{ T_POOL, "health: {helo: \"a..b\"}", 1, 7, 20, "health.helo: expected a host name" },
	/* addresses */
	{ T_BIND, "1.2.3.4", 1, 4, 11, "bind: bad address \"1.2.3.4\"" },
	{ T_BIND, "1.2.3.4:0", 1, 4, 11, "from 1 to 65535" },
	{ T_BIND, "1.2.3.4:65536", 1, 4, 11, "from 1 to 65535" },
	{ T_BIND, "\"::1:25\"", 1, 4, 11, "bind: bad address \"::1:25\": write an IPv6 address in brackets" },
	{ T_BIND, "[\"127.0.0.1:1\", \"[::1]:x\"]", 1, 4, 27, "from 1 to 65535" },
	{ T_BIND, "[]", 1, 4, 11, "bind: expected at least one address" },
	{ T_BIND, "[\"127.0.0.1:1\", \"127.0.0.1:1\"]", 1, 4, 27,
	    "bind: duplicate bind address [127.0.0.1]:1 in this listener" },
	{ T_SERVER, "weight: 1\n        address: 1.2.3.4", 1, 11, 9, "duplicate key" },
	{ T_LISTENER, "trusted_proxies: [10.0.0.0/33]", 1, 5, 23, "trusted_proxies: bad network" },
	/* missing required things */
	{ T_ROOT, "listeners: []", 2, 1, 12, "at least one listener is required" },
	{ T_POOL, "servers: []", 2, 8, 5, "duplicate key \"servers\"" },
	/* metrics */
	{ T_ROOT, "metrics: {bind: \"127.0.0.1:99999\"}", 1, 1, 17,
	    "metrics.bind: bad address \"127.0.0.1:99999\": the port must be" },
	{ T_ROOT, "metrics: {bind: \"[::1]\"}", 1, 1, 17,
	    "metrics.bind: bad address \"[::1]\"" },
	{ T_ROOT, "metrics: {}", 1, 1, 10, "missing key \"bind\" in metrics" },
	{ T_ROOT, "metrics: {bnd: \"127.0.0.1:9745\"}", 2, 1, 11,
	    "unknown key \"bnd\" in metrics (did you mean \"bind\"?)" },
	{ T_ROOT, "metrics: 9745", 1, 1, 10,
	    "metrics: expected a mapping with bind, got a single value" },
	{ T_ROOT, "metrics: {bind: [\"127.0.0.1:9745\"]}", 1, 1, 17,
	    "metrics.bind: expected an address like 127.0.0.1:9745 or [::1]:9745, "
	    "got a list" },
	{ T_ROOT, "metrics: {bind: \"127.0.0.1:2525\"}", 1, 1, 17,
	    "metrics.bind: [127.0.0.1]:2525 is a bind address of listener "
	    "\"listener1\" too" },
	/* several errors in one file, all reported */
	{ T_LISTENER, "mode: x\n    proxy_timeout: 1y\n    client_timeout: 0s", 3, 7, 21,
	    "client_timeout: expected a duration greater than 0" },
};

START_TEST(test_errors)
{
	char yaml[2048];
	struct cfg_diag d;
	struct config *cfg;

	subst(yaml, sizeof yaml, error_vectors[_i].tmpl, error_vectors[_i].insert);
	cfg = load(yaml, &d);
	ck_assert_msg(cfg == NULL, "accepted:\n%s", yaml);
	ck_assert_msg(d.nerrors == error_vectors[_i].nerrors,
	    "%zu errors, expected %zu for:\n%s\n%s", d.nerrors,
	    error_vectors[_i].nerrors, yaml, dump(&d));
	ck_assert_msg(find(&d, CFG_ERROR, error_vectors[_i].line,
	    error_vectors[_i].col, error_vectors[_i].msg) != NULL,
	    "no %u:%u: ...%s... for:\n%s\n%s", error_vectors[_i].line,
	    error_vectors[_i].col, error_vectors[_i].msg, yaml, dump(&d));
	cfg_diag_free(&d);
}
END_TEST

/* Whole files: structure errors (duplicates, references, missing things). */
static const struct {
	const char *yaml;
	size_t nerrors;
	unsigned line, col;
	const char *msg;
} file_vectors[] = {
	{ "listeners:\n"
	  "  - name: a\n"
	  "    bind: 127.0.0.1:1\n"
	  "    pool: p\n"
	  "  - name: a\n"
	  "    bind: 127.0.0.1:2\n"
	  "    pool: p\n" POOL_P, 1, 5, 11, "duplicate listener name \"a\"" },
	{ "listeners:\n"
	  "  - name: a\n"
	  "    bind: 127.0.0.1:1\n"
	  "    pool: p\n"
	  "  - name: b\n"
	  "    bind: [\"[::1]:1\", 127.0.0.1:1]\n"
	  "    pool: p\n" POOL_P, 1, 6, 23,
	  "duplicate bind address [127.0.0.1]:1 (already in listener \"a\")" },
	{ "listeners:\n"
	  "  - name: smtp\n"
	  "    bind: 127.0.0.1:1\n"
	  "    pool: postfx\n"
	  "pools:\n"
	  "  postfix:\n"
	  "    servers: [{name: a, address: \"127.0.0.1:2\"}]\n", 1, 4, 11,
	  "listener \"smtp\" refers to unknown pool \"postfx\"" },
	{ "listeners:\n"
	  "  - bind: 127.0.0.1:1\n"
	  "    pool: p\n"
	  "pools:\n"
	  "  p:\n"
	  "    servers: [{name: a, address: \"127.0.0.1:2\"}]\n"
	  "  p:\n"
	  "    servers: [{name: a, address: \"127.0.0.1:2\"}]\n", 1, 7, 3,
	  "duplicate key \"p\" (first at line 5)" },
	{ "listeners:\n"
	  "  - bind: 127.0.0.1:1\n"
	  "    pool: p\n"
	  "pools:\n"
	  "  p:\n"
	  "    servers:\n"
	  "      - name: mx1\n"
	  "        address: 127.0.0.1:2\n"
	  "      - name: mx1\n"
	  "        address: 127.0.0.1:3\n", 1, 9, 15,
	  "duplicate server name \"mx1\" in pool \"p\"" },
	{ "listeners:\n"
	  "  - bind: 127.0.0.1:1\n"
	  "    pool: p\n"
	  "pools:\n"
	  "  \"p q\":\n"
	  "    servers: [{name: a, address: \"127.0.0.1:2\"}]\n", 1, 5, 3,
	  "bad pool name: expected a name" },
	{ "listeners:\n"
	  "  - bind: 127.0.0.1:1\n"
	  "pools:\n"
	  "  p:\n"
	  "    servers: [{name: a, address: \"127.0.0.1:2\"}]\n", 1, 2, 5,
	  "missing key \"pool\" in listener" },
	{ "listeners:\n"
	  "  - pool: p\n" POOL_P, 1, 2, 5, "missing key \"bind\" in listener" },
	{ POOL_P, 1, 1, 1, "missing key \"listeners\" at the top level" },
	{ "hostname: a.b\nlisteners:\n  - {bind: \"127.0.0.1:1\", pool: p}\n", 1, 1, 1,
	  "missing key \"pools\" at the top level" },
	{ "listeners:\n  - {bind: \"127.0.0.1:1\", pool: p}\npools: {}\n", 1, 3, 8,
	  "at least one pool is required" },
	{ "listeners:\n  - {bind: \"127.0.0.1:1\", pool: p}\npools:\n  p:\n    retries: 1\n",
	  1, 5, 5, "missing key \"servers\" in pool \"p\"" },
	{ "listeners:\n  - {bind: \"127.0.0.1:1\", pool: p}\npools:\n  p:\n    servers: []\n",
	  1, 5, 14, "pool \"p\" needs at least one server" },
	{ "listeners:\n  - {bind: \"127.0.0.1:1\", pool: p}\npools:\n  p:\n"
	  "    servers:\n      - name: a\n", 1, 6, 9, "missing key \"address\" in server" },
	{ "listeners:\n  - {bind: \"127.0.0.1:1\", pool: p}\npools:\n  p:\n"
	  "    servers:\n      - address: 127.0.0.1:2\n", 1, 6, 9,
	  "missing key \"name\" in server" },
	{ "listeners:\n  - {bind: \"127.0.0.1:1\", pool: p}\npools:\n  p:\n"
	  "    servers:\n      - name: a\n        address: 0.0.0.0:25\n", 1, 7, 18,
	  "unspecified" },
	{ "listeners:\n  - {bind: \"127.0.0.1:1\", pool: p}\npools:\n  p: [1]\n",
	  1, 4, 6, "expected pool \"p\" to be a mapping" },
	{ "listeners:\n  - 127.0.0.1:25\n" POOL_P, 1, 2, 5,
	  "expected a listener (a mapping with bind and pool), got a single value" },
	{ "listeners:\n  bind: x\n" POOL_P, 1, 2, 3,
	  "expected a list of listeners, got a mapping" },
	/* empty file, non-mapping root, several documents */
	{ "", 1, 1, 1, "the configuration is empty" },
	{ "# nothing here\n\n", 1, 1, 1, "the configuration is empty" },
	{ "---\n", 1, 1, 1, "the configuration is empty" },
	{ "- a\n- b\n", 1, 1, 1, "expected a mapping of settings at the top level, got a list" },
	{ "hello\n", 1, 1, 1, "got a single value" },
	{ "hostname: a.b\n---\nhostname: c.d\n", 3, 3, 1,
	  "only one YAML document is allowed" },
	/* YAML syntax errors: only that one, even with other errors around */
	{ "workerz: 1\nlisteners: [\n", 1, 3, 1,
	  "YAML syntax error: did not find expected node content" },
	{ "a: b\n c: d\n", 1, 2, 3,
	  "YAML syntax error: mapping values are not allowed in this context" },
	{ "hostname: \"mx\n", 1, 2, 1,
	  "YAML syntax error: found unexpected end of stream (while scanning "
	  "a quoted scalar started at line 1, column 11)" },
	{ "workerz: 1\nhostname: \xff\n", 1, 2, 11,
	  "YAML syntax error: invalid leading UTF-8 octet" },
	{ "listeners:\n\t- bind: x\n", 1, 2, 1, "YAML syntax error" },
	/* a tab gets a hint (issue 20); test_tab_hint: only a tab */
	{ "listeners:\n\t- bind: x\n", 1, 2, 1,
	  "found character that cannot start any token "
	  "(a tab? YAML indents with spaces)" },
	/* several errors, each reported */
	{ "workers: none\n"
	  "listeners:\n"
	  "  - name: smtp\n"
	  "    bind: 127.0.0.1:99999\n"
	  "    pool: nope\n"
	  "    bnd: x\n"
	  "pools:\n"
	  "  p:\n"
	  "    health: {timeout: 10}\n"
	  "    servers:\n"
	  "      - name: \"a b\"\n"
	  "        address: 127.0.0.1:1\n", 6, 11, 15, "expected a name" },
};

START_TEST(test_file_errors)
{
	struct cfg_diag d;
	struct config *cfg = load(file_vectors[_i].yaml, &d);

	ck_assert_msg(cfg == NULL, "accepted:\n%s", file_vectors[_i].yaml);
	ck_assert_msg(d.nerrors == file_vectors[_i].nerrors,
	    "%zu errors, expected %zu for:\n%s\n%s", d.nerrors,
	    file_vectors[_i].nerrors, file_vectors[_i].yaml, dump(&d));
	ck_assert_msg(find(&d, CFG_ERROR, file_vectors[_i].line,
	    file_vectors[_i].col, file_vectors[_i].msg) != NULL,
	    "no %u:%u: ...%s... for:\n%s\n%s", file_vectors[_i].line,
	    file_vectors[_i].col, file_vectors[_i].msg, file_vectors[_i].yaml,
	    dump(&d));
	cfg_diag_free(&d);
}
END_TEST

/* The tab hint names a tab only: another character that cannot start a
 * token gets libyaml's bare words. */
START_TEST(test_tab_hint)
{
	struct cfg_diag d;
	struct config *cfg = load("hostname: mx\nworkers: @x\n", &d);

	ck_assert_ptr_null(cfg);
	ck_assert_msg(d.nerrors == 1, "%s", dump(&d));
	ck_assert_msg(find(&d, CFG_ERROR, 2, 10, "found character that cannot "
	    "start any token") != NULL, "%s", dump(&d));
	ck_assert_msg(strstr(d.entries[0].message, "tab") == NULL, "%s",
	    dump(&d));
	cfg_diag_free(&d);
	cfg = load("pools:\n  p:\n\t\tservers: []\n", &d);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(find(&d, CFG_ERROR, 3, 1, "(a tab? YAML indents with "
	    "spaces)") != NULL, "%s", dump(&d));
	cfg_diag_free(&d);
}
END_TEST

START_TEST(test_errors_in_order)
{
	static const char yaml[] =
		"workers: none\n"
		"listeners:\n"
		"  - name: smtp\n"
		"    bind: 127.0.0.1:99999\n"
		"    pool: nope\n"
		"    bnd: x\n"
		"pools:\n"
		"  p:\n"
		"    health: {timeout: 10}\n"
		"    servers:\n"
		"      - name: \"a b\"\n"
		"        address: 127.0.0.1:1\n";
	static const char expected[] =
		"t.yaml:1:10: workers: expected an integer from 1 to 1024 or auto, got \"none\"\n"
		"t.yaml:4:11: bind: bad address \"127.0.0.1:99999\": the port must be an integer from 1 to 65535\n"
		"t.yaml:5:11: listener \"smtp\" refers to unknown pool \"nope\"\n"
		"t.yaml:6:5: unknown key \"bnd\" in listener (did you mean \"bind\"?)\n"
		"t.yaml:9:23: health.timeout: expected a duration like 5s, 300ms, 10m or 1h, got \"10\"\n"
		"t.yaml:11:15: name: expected a name of 1 to 64 letters, digits, '.', '_' or '-', got \"a b\"\n";
	struct cfg_diag d;
	struct config *cfg = load(yaml, &d);

	ck_assert_ptr_null(cfg);
	/* the FQDN warning, if any, has no line: skip it */
	ck_assert_str_eq(strstr(dump(&d), "t.yaml:1:10:"), expected);
	cfg_diag_free(&d);
}
END_TEST

START_TEST(test_too_many_errors)
{
	char yaml[8192];
	size_t o = 0;
	struct cfg_diag d;
	struct config *cfg;

	for (int i = 0; i < 300; i++)
		o += (size_t)snprintf(yaml + o, sizeof yaml - o, "k%d: 1\n", i);
	cfg = load(yaml, &d);
	ck_assert_ptr_null(cfg);
	ck_assert_uint_le(d.nerrors, 102);
	ck_assert_ptr_nonnull(strstr(dump(&d), "too many errors"));
	cfg_diag_free(&d);
}
END_TEST

START_TEST(test_resolve_off)
{
	struct cfg_diag d;
	struct config *cfg;
	char yaml[1024];

	cfg_set_resolve(false);
	subst(yaml, sizeof yaml, T_BIND, "localhost:25");
	cfg = load(yaml, &d);
	cfg_set_resolve(true);
	ck_assert_ptr_null(cfg);
	ck_assert_msg(find(&d, CFG_ERROR, 4, 11, "cannot resolve host \"localhost\"")
	    != NULL, "%s", dump(&d));
	cfg_diag_free(&d);

	cfg = load(yaml, &d);
	ck_assert_msg(cfg != NULL, "%s", dump(&d));
	cfg_free(cfg);
	cfg_diag_free(&d);
}
END_TEST

/* metrics.bind: IPv4, IPv6, the wildcard, and a host name resolved later
 * (a reload) like a listener's bind. */
START_TEST(test_metrics_bind)
{
	struct cfg_diag d;
	struct config *cfg;
	struct cfg_addr a;
	char yaml[1024], err[256];

	cfg = load(minimal, &d);
	ck_assert_msg(cfg != NULL, "%s", dump(&d));
	ck_assert(!cfg->metrics.enabled);
	cfg_free(cfg);
	cfg_diag_free(&d);

	subst(yaml, sizeof yaml, T_ROOT, "metrics: {bind: \"[::1]:9745\"}");
	cfg = load(yaml, &d);
	ck_assert_msg(cfg != NULL, "%s", dump(&d));
	ck_assert(cfg->metrics.enabled);
	ck_assert_int_eq(cfg->metrics.bind.ss.ss_family, AF_INET6);
	ck_assert_str_eq(cfg->metrics.bind.text, "[::1]:9745");
	cfg_free(cfg);
	cfg_diag_free(&d);

	subst(yaml, sizeof yaml, T_ROOT, "metrics:\n  bind: 0.0.0.0:9745");
	cfg = load(yaml, &d);
	ck_assert_msg(cfg != NULL, "%s", dump(&d));
	ck_assert_str_eq(cfg->metrics.bind.text, "[0.0.0.0]:9745");
	cfg_free(cfg);
	cfg_diag_free(&d);

	cfg_set_resolve_mode(CFG_RESOLVE_DEFER);
	subst(yaml, sizeof yaml, T_ROOT, "metrics: {bind: \"localhost:2525\"}");
	cfg = load(yaml, &d);
	cfg_set_resolve_mode(CFG_RESOLVE_NOW);
	ck_assert_msg(cfg != NULL, "%s", dump(&d));
	ck_assert_uint_eq(cfg->nhosts, 1);
	ck_assert(cfg->hosts[0].bind);
	ck_assert(cfg->hosts[0].list == CFG_HOST_METRICS);
	ck_assert_uint_eq(cfg->hosts[0].pos.line, 1);
	ck_assert_uint_eq(cfg->hosts[0].pos.column, 17);
	ck_assert_int_eq(cfg_parse_addr("127.0.0.2:2525", true, false, &a, err,
	    sizeof err), 0);
	ck_assert_int_eq(cfg_host_apply(cfg, 0, &a, NULL, &d), 0);
	ck_assert_str_eq(cfg->metrics.bind.text, "[127.0.0.2]:2525");
	ck_assert_int_eq(cfg_hosts_finish(cfg, &d), 0);
	/* The same name resolving to a listener's address is refused. */
	ck_assert_int_eq(cfg_parse_addr("127.0.0.1:2525", true, false, &a, err,
	    sizeof err), 0);
	ck_assert_int_eq(cfg_host_apply(cfg, 0, &a, NULL, &d), 0);
	ck_assert_int_eq(cfg_hosts_finish(cfg, &d), -1);
	ck_assert_msg(find(&d, CFG_ERROR, 1, 17, "metrics.bind: [127.0.0.1]:2525 "
	    "is a bind address of listener \"listener1\" too") != NULL, "%s",
	    dump(&d));
	cfg_free(cfg);
	cfg_diag_free(&d);
}
END_TEST

/* ---- the "not supported yet" gates ---- */

static const struct {
	const char *tmpl;
	const char *insert;
	size_t nerrors;
	unsigned line, col;
	const char *msg;
} gate_vectors[] = {
	/* accept_proxy needs trusted_proxies: reported at the listener */
	{ T_LISTENER, "accept_proxy: true", 1, 3, 5,
	    "accept_proxy: true needs at least one network in trusted_proxies" },
	{ T_LISTENER, "accept_proxy: true\n    trusted_proxies: []", 1, 6, 22,
	    "accept_proxy: true needs at least one network in trusted_proxies" },
	/* supported values pass */
	{ T_LISTENER, "max_connections_per_client: 5", 0, 0, 0, NULL },
	{ T_LISTENER, "accept_proxy: false", 0, 0, 0, NULL },
	{ T_LISTENER, "accept_proxy: true\n    trusted_proxies: [10.0.0.0/8]", 0, 0, 0,
	    NULL },
	{ T_LISTENER, "accept_proxy: true\n    trusted_proxies: [\"::1/128\"]\n"
	    "    mode: tls\n    proxy_timeout: 300ms", 0, 0, 0, NULL },
	{ T_LISTENER, "max_connections_per_client: 0", 0, 0, 0, NULL },
	{ T_POOL, "balance: roundrobin", 0, 0, 0, NULL },
	{ T_POOL, "balance: source", 0, 0, 0, NULL },
	{ T_POOL, "balance: leastconn", 0, 0, 0, NULL },
	{ T_POOL, "balance: first", 0, 0, 0, NULL },
};

START_TEST(test_check_supported)
{
	char yaml[2048];
	struct cfg_diag d;
	struct config *cfg;

	subst(yaml, sizeof yaml, gate_vectors[_i].tmpl, gate_vectors[_i].insert);
	cfg = load(yaml, &d);
	ck_assert_msg(d.nerrors == gate_vectors[_i].nerrors,
	    "%zu errors, expected %zu for:\n%s\n%s", d.nerrors,
	    gate_vectors[_i].nerrors, yaml, dump(&d));
	if (gate_vectors[_i].nerrors == 0) {
		ck_assert_ptr_nonnull(cfg);
		cfg_free(cfg);
	} else {
		ck_assert_ptr_null(cfg);
		ck_assert_msg(find(&d, CFG_ERROR, gate_vectors[_i].line,
		    gate_vectors[_i].col, gate_vectors[_i].msg) != NULL, "%s",
		    dump(&d));
	}
	cfg_diag_free(&d);
}
END_TEST

START_TEST(test_spec_example_verbatim)
{
	struct cfg_diag d;
	struct config *cfg = load(SPEC_EXAMPLE("source"), &d);

	/* the example exactly as SPEC.md prints it loads */
	ck_assert_msg(cfg != NULL && d.nerrors == 0, "%s", dump(&d));
	ck_assert_int_eq(cfg->pools[0].balance, CFG_BALANCE_SOURCE);
	cfg_free(cfg);
	cfg_diag_free(&d);
}
END_TEST

/* ---- warnings ---- */

static const struct {
	const char *bind;
	const char *proxy;
	bool warn;
} warn_vectors[] = {
	{ "[\"127.0.0.1:2525\", \"127.0.0.1:25\"]", "none", true },
	{ "\"[::1]:25\"", "none", true },
	{ "\"127.0.0.1:25\"", "v2", false },
	{ "\"127.0.0.1:25\"", "v1", false },
	{ "\"127.0.0.1:2525\"", "none", false },
};

START_TEST(test_port25_warning)
{
	char yaml[1024];
	struct cfg_diag d;
	struct config *cfg;

	snprintf(yaml, sizeof yaml,
	    "hostname: mx.example.org\n"
	    "listeners:\n"
	    "  - name: smtp\n"
	    "    bind: %s\n"
	    "    pool: p\n"
	    "pools:\n"
	    "  p:\n"
	    "    proxy_protocol: %s\n"
	    "    servers: [{name: a, address: \"127.0.0.1:10025\"}]\n",
	    warn_vectors[_i].bind, warn_vectors[_i].proxy);
	cfg = load(yaml, &d);
	ck_assert_msg(cfg != NULL, "%s", dump(&d));
	ck_assert_uint_eq(d.nerrors, 0);
	ck_assert_uint_eq(d.nwarnings, warn_vectors[_i].warn ? 1 : 0);
	if (warn_vectors[_i].warn) {
		ck_assert_msg(find(&d, CFG_WARNING, 4, 11, "port-25 listener \"smtp\": "
		    "pool \"p\" sends no PROXY header: Postfix will see the "
		    "proxy's address") != NULL, "%s", dump(&d));
		ck_assert_ptr_nonnull(strstr(dump(&d), "t.yaml:4:11: warning: port-25"));
	}
	cfg_free(cfg);
	cfg_diag_free(&d);
}
END_TEST

/* sandbox: true is quiet, false warns where it is written, others fail. */
START_TEST(test_sandbox_key)
{
	static const struct {
		const char *value;
		bool ok, on;
	} v[] = {
		{ "true", true, true },
		{ "false", true, false },
		{ "yes", false, false },
		{ "\"false\"", true, false },
		{ "[true]", false, false },
	};
	char yaml[1024];
	struct cfg_diag d;
	struct config *cfg;

	snprintf(yaml, sizeof yaml, "hostname: mx.example.org\n"
	    "sandbox: %s\n"
	    "listeners: [{name: smtp, bind: \"127.0.0.1:2525\", pool: p}]\n"
	    "pools: {p: {servers: [{name: a, address: \"127.0.0.1:10025\"}]}}\n",
	    v[_i].value);
	cfg = load(yaml, &d);
	if (!v[_i].ok) {
		ck_assert_ptr_null(cfg);
		ck_assert_msg(find(&d, CFG_ERROR, 2, 10, "sandbox") != NULL ||
		    find(&d, CFG_ERROR, 2, 10, "true or false") != NULL,
		    "%s", dump(&d));
		cfg_diag_free(&d);
		return;
	}
	ck_assert_msg(cfg != NULL, "%s", dump(&d));
	ck_assert_int_eq(cfg->sandbox, v[_i].on);
	ck_assert_uint_eq(d.nwarnings, v[_i].on ? 0 : 1);
	if (!v[_i].on)
		ck_assert_ptr_nonnull(strstr(dump(&d), "t.yaml:2:10: warning: "
		    "sandbox: false: workers and the health process run "
		    "without their system call filter"));
	cfg_free(cfg);
	cfg_diag_free(&d);
}
END_TEST

/* ---- files and printing ---- */

START_TEST(test_load_file)
{
	char path[] = "/tmp/test_config_XXXXXX";
	int fd = mkstemp(path);
	struct cfg_diag d = { 0 };
	struct config *cfg;
	char buf[512], expected[512];
	FILE *f;

	ck_assert_int_ne(fd, -1);
	ck_assert_int_eq(write(fd, minimal, strlen(minimal)), (int)strlen(minimal));
	close(fd);
	cfg = cfg_load_file(path, &d);
	ck_assert_msg(cfg != NULL, "%s", dump(&d));
	ck_assert_str_eq(cfg->path, path);
	ck_assert_str_eq(d.file, path);
	cfg_free(cfg);
	cfg_diag_free(&d);
	ck_assert_ptr_null(d.file);

	/* errors carry the file name */
	f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs("hostname: a.b\nworkerz: 1\n", f);
	fclose(f);
	cfg = cfg_load_file(path, &d);
	ck_assert_ptr_null(cfg);
	snprintf(expected, sizeof expected, "%s:2:1: unknown key \"workerz\" at "
	    "the top level (did you mean \"workers\"?)\n", path);
	snprintf(buf, sizeof buf, "%s", dump(&d));
	ck_assert_ptr_nonnull(strstr(buf, expected));
	cfg_diag_free(&d);

	unlink(path);
	cfg = cfg_load_file(path, &d);
	ck_assert_ptr_null(cfg);
	ck_assert_uint_eq(d.nerrors, 1);
	ck_assert_uint_eq(d.entries[0].line, 0);
	snprintf(expected, sizeof expected, "%s: cannot read %s: No such file "
	    "or directory\n", path, path);
	ck_assert_str_eq(dump(&d), expected);
	cfg_diag_free(&d);

	cfg = cfg_load_file("/tmp", &d);
	ck_assert_ptr_null(cfg);
	ck_assert_ptr_nonnull(strstr(dump(&d), "/tmp: cannot read /tmp: Is a directory"));
	cfg_diag_free(&d);
}
END_TEST

START_TEST(test_diag_print)
{
	struct cfg_diag d = { 0 };
	struct config *cfg;
	static const char yaml[] =
		"hostname: mx.example.org\n"
		"listeners:\n"
		"  - bind: \"0.0.0.0:25\"\n"
		"    pool: p\n"
		"pools:\n"
		"  p:\n"
		"    proxy_protocol: none\n"
		"    retries: 99\n"
		"    servers: [{name: a, address: \"127.0.0.1:10025\"}]\n";

	cfg = cfg_load_string(yaml, strlen(yaml), "/etc/smtpfront/smtpfront.yaml", &d);
	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(dump(&d),
	    "/etc/smtpfront/smtpfront.yaml:3:11: warning: port-25 listener "
	    "\"listener1\": pool \"p\" sends no PROXY header: Postfix will see "
	    "the proxy's address\n"
	    "/etc/smtpfront/smtpfront.yaml:8:14: retries: expected an integer "
	    "from 0 to 16, got \"99\"\n");
	ck_assert_uint_eq(d.nerrors, 1);
	ck_assert_uint_eq(d.nwarnings, 1);
	cfg_diag_free(&d);
	cfg_diag_free(&d);	/* twice is harmless */
	cfg_free(NULL);
}
END_TEST

/* ---- CFG_RESOLVE_DEFER: names for the caller, then their answers ---- */

static const char defer_yaml[] =
	"hostname: mx.test\n"				/* 1 */
	"listeners:\n"					/* 2 */
	"  - name: a\n"					/* 3 */
	"    bind: [\"127.0.0.1:2525\", \"front.test:2526\"]\n"	/* 4 */
	"    pool: p\n"					/* 5 */
	"  - name: b\n"					/* 6 */
	"    bind: \"other.test:2525\"\n"		/* 7 */
	"    pool: p\n"					/* 8 */
	"pools:\n"					/* 9 */
	"  p:\n"					/* 10 */
	"    servers:\n"				/* 11 */
	"      - {name: s1, address: \"10.0.0.1:25\"}\n"	/* 12 */
	"      - {name: s2, address: \"mx2.test:10025\"}\n";	/* 13 */

static struct cfg_addr
addr4(const char *ip, unsigned port)
{
	struct cfg_addr a;
	struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;

	memset(&a, 0, sizeof a);
	sin->sin_family = AF_INET;
	sin->sin_port = htons((unsigned short)port);
	ck_assert_int_eq(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	a.len = sizeof *sin;
	return a;
}

static struct config *
load_deferred(struct cfg_diag *d)
{
	struct config *cfg;

	cfg_set_resolve_mode(CFG_RESOLVE_DEFER);
	cfg = load(defer_yaml, d);
	cfg_set_resolve_mode(CFG_RESOLVE_NOW);
	ck_assert_msg(cfg != NULL, "%s", dump(d));
	return cfg;
}

START_TEST(test_defer_lists_names)
{
	struct cfg_diag d;
	struct config *cfg = load_deferred(&d);

	ck_assert_uint_eq(cfg->nhosts, 3);
	ck_assert_str_eq(cfg->hosts[0].name, "front.test");
	ck_assert(cfg->hosts[0].bind);
	ck_assert_uint_eq(cfg->hosts[0].port, 2526);
	ck_assert_uint_eq(cfg->hosts[0].pos.line, 4);
	ck_assert_uint_eq(cfg->hosts[0].pos.column, 30);
	ck_assert_str_eq(cfg->hosts[1].name, "other.test");
	ck_assert_uint_eq(cfg->hosts[1].list, 1);
	ck_assert_str_eq(cfg->hosts[2].name, "mx2.test");
	ck_assert(!cfg->hosts[2].bind);
	ck_assert_uint_eq(cfg->hosts[2].list, 0);
	ck_assert_uint_eq(cfg->hosts[2].item, 1);
	ck_assert_uint_eq(cfg->hosts[2].pos.line, 13);
	ck_assert_uint_eq(cfg->hosts[2].pos.column, 29);
	/* Not resolved yet: no address, the text as written. */
	ck_assert_uint_eq(cfg->pools[0].servers[1].address.len, 0);
	ck_assert_str_eq(cfg->pools[0].servers[1].address.text,
	    "mx2.test:10025");
	ck_assert_uint_eq(cfg->pools[0].servers[0].address.len,
	    sizeof(struct sockaddr_in));
	cfg_free(cfg);
	cfg_diag_free(&d);
}
END_TEST

START_TEST(test_defer_apply)
{
	struct cfg_diag d, e = { 0 };
	struct config *cfg = load_deferred(&d);
	struct cfg_addr a;

	a = addr4("192.0.2.1", 2526);
	ck_assert_int_eq(cfg_host_apply(cfg, 0, &a, NULL, &e), 0);
	a = addr4("192.0.2.2", 2525);
	ck_assert_int_eq(cfg_host_apply(cfg, 1, &a, NULL, &e), 0);
	a = addr4("192.0.2.3", 10025);
	ck_assert_int_eq(cfg_host_apply(cfg, 2, &a, NULL, &e), 0);
	ck_assert_int_eq(cfg_hosts_finish(cfg, &e), 0);
	ck_assert_uint_eq(e.n, 0);
	ck_assert_str_eq(cfg->listeners[0].binds[1].text, "[192.0.2.1]:2526");
	ck_assert_str_eq(cfg->pools[0].servers[1].address.text,
	    "[192.0.2.3]:10025");
	ck_assert_str_eq(cfg->pools[0].servers[1].address_spec,
	    "mx2.test:10025");
	cfg_free(cfg);
	cfg_diag_free(&d);
	cfg_diag_free(&e);
}
END_TEST

START_TEST(test_defer_errors_at_their_place)
{
	struct cfg_diag d, e = { 0 };
	struct config *cfg = load_deferred(&d);
	struct cfg_addr a;

	/* A lookup that failed. */
	ck_assert_int_eq(cfg_host_apply(cfg, 2, NULL, "cannot resolve host "
	    "\"mx2.test\": no answer within 5 s", &e), -1);
	ck_assert_msg(find(&e, CFG_ERROR, 13, 29, "no answer within 5 s") !=
	    NULL, "%s", dump(&e));
	/* A server may not be the unspecified address, a bind may. */
	a = addr4("0.0.0.0", 10025);
	ck_assert_int_eq(cfg_host_apply(cfg, 2, &a, NULL, &e), -1);
	ck_assert_msg(find(&e, CFG_ERROR, 13, 29, "cannot be connected to") !=
	    NULL, "%s", dump(&e));
	/* A name that lands on another listener's address. */
	a = addr4("127.0.0.1", 2525);
	ck_assert_int_eq(cfg_host_apply(cfg, 1, &a, NULL, &e), 0);
	a = addr4("127.0.0.1", 2526);
	ck_assert_int_eq(cfg_host_apply(cfg, 0, &a, NULL, &e), 0);
	ck_assert_int_eq(cfg_hosts_finish(cfg, &e), -1);
	ck_assert_msg(find(&e, CFG_ERROR, 7, 11, "duplicate bind address "
	    "[127.0.0.1]:2525 (also in listener \"a\")") != NULL, "%s",
	    dump(&e));
	/* The server never got an address: said, not skipped. */
	ck_assert_msg(find(&e, CFG_ERROR, 13, 29, "was not resolved") != NULL,
	    "%s", dump(&e));
	cfg_free(cfg);
	cfg_diag_free(&d);
	cfg_diag_free(&e);
}
END_TEST

START_TEST(test_accounts_at_their_place)
{
	static const char yaml[] =
	    "hostname: mx.test\n"
	    "user: \"no-such-user-xyz\"\n"
	    "group: root\n"
	    "control: {group: no-such-group-xyz}\n"
	    "listeners:\n"
	    "  - {name: a, bind: \"127.0.0.1:2525\", pool: p}\n"
	    "pools:\n"
	    "  p:\n"
	    "    servers: [{name: s, address: \"10.0.0.1:25\"}]\n";
	struct cfg_diag d, e = { 0 };
	struct config *cfg = load(yaml, &d);

	ck_assert_msg(cfg != NULL, "%s", dump(&d));
	ck_assert_int_eq(cfg_check_accounts(cfg, &e), -1);
	ck_assert_uint_eq(e.nerrors, 2);
	ck_assert_msg(find(&e, CFG_ERROR, 2, 7, "user \"no-such-user-xyz\" "
	    "does not exist") != NULL, "%s", dump(&e));
	ck_assert_msg(find(&e, CFG_ERROR, 4, 18, "control.group "
	    "\"no-such-group-xyz\" does not exist") != NULL, "%s", dump(&e));
	cfg_free(cfg);
	cfg_diag_free(&d);
	cfg_diag_free(&e);
}
END_TEST

static Suite *
config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc;

#define ADD(name, fn) do { tc = tcase_create(name); \
	tcase_add_test(tc, fn); suite_add_tcase(s, tc); } while (0)
#define ADD_LOOP(name, fn, vec) do { tc = tcase_create(name); \
	tcase_add_loop_test(tc, fn, 0, (int)(sizeof vec / sizeof vec[0])); \
	suite_add_tcase(s, tc); } while (0)

	ADD_LOOP("cfg_parse_uint", test_parse_uint, uint_vectors);
	ADD_LOOP("cfg_parse_duration", test_parse_duration, duration_vectors);
	ADD_LOOP("cfg_parse_mode", test_parse_mode, mode_vectors);
	ADD_LOOP("cfg_check_name", test_check_name, name_vectors);
	ADD_LOOP("cfg_parse_addr", test_parse_addr, addr_vectors);
	ADD("cfg_parse_addr_misc", test_parse_addr_misc);
	ADD_LOOP("cfg_parse_cidr", test_parse_cidr, cidr_vectors);
	ADD("cfg_quote", test_quote);

	tc = tcase_create("cfg_load_string");
	tcase_add_test(tc, test_minimal_defaults);
	tcase_add_test(tc, test_spec_example);
	tcase_add_test(tc, test_valid_variants);
	tcase_add_loop_test(tc, test_errors, 0,
	    (int)(sizeof error_vectors / sizeof error_vectors[0]));
	tcase_add_loop_test(tc, test_file_errors, 0,
	    (int)(sizeof file_vectors / sizeof file_vectors[0]));
	tcase_add_test(tc, test_tab_hint);
	tcase_add_test(tc, test_errors_in_order);
	tcase_add_test(tc, test_too_many_errors);
	tcase_add_test(tc, test_resolve_off);
	tcase_add_test(tc, test_metrics_bind);
	tcase_add_loop_test(tc, test_port25_warning, 0,
	    (int)(sizeof warn_vectors / sizeof warn_vectors[0]));
	tcase_add_loop_test(tc, test_sandbox_key, 0, 5);
	suite_add_tcase(s, tc);

	tc = tcase_create("cfg_check_supported");
	tcase_add_loop_test(tc, test_check_supported, 0,
	    (int)(sizeof gate_vectors / sizeof gate_vectors[0]));
	tcase_add_test(tc, test_spec_example_verbatim);
	suite_add_tcase(s, tc);

	ADD("cfg_load_file", test_load_file);
	ADD("cfg_diag_print", test_diag_print);

	tc = tcase_create("cfg_resolve_defer");
	tcase_add_test(tc, test_defer_lists_names);
	tcase_add_test(tc, test_defer_apply);
	tcase_add_test(tc, test_defer_errors_at_their_place);
	suite_add_tcase(s, tc);
	ADD("cfg_check_accounts", test_accounts_at_their_place);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(config_suite());
	int failed;

	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
