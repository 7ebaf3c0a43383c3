/* SPDX-License-Identifier: MIT */
/*
 * config/config.c: loads the YAML text with libyaml's document API and walks
 * it against the schema tables below into a struct config, collecting every
 * error with its line and column; then the cross-checks (pool references,
 * defaults that depend on other keys) and the "not supported yet" gates.
 * Scalar syntax (integers, durations, addresses...) lives in value.c.
 */
#include <sys/socket.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <sched.h>
#include <syslog.h>
#include <unistd.h>

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "config/config.h"
#include "config/value.h"

/* Past this many errors the rest is noise (and input built to be slow). */
#define CFG_MAX_ERRORS 100
#define CFG_FILE_MAX (16u << 20)
#define CFG_WORKERS_MAX 1024
#define CFG_CONNECTIONS_MAX 1000000
/* New connections per client network per minute (the rate table counts
 * each second in 16 bits). */
#define CFG_RATE_MAX 60000

const char *const cfg_balance_names[] = {
	"roundrobin", "leastconn", "source", "first", NULL,
};
const char *const cfg_proxy_names[] = { "none", "v1", "v2", NULL };
const char *const cfg_mode_names[] = { "smtp", "tls", NULL };
const char *const cfg_check_names[] = { "smtp", "connect", NULL };
const char *const cfg_log_level_names[] = {
	"error", "warning", "info", "debug", NULL,
};
const char *const cfg_log_sessions_names[] = {
	"all", "failed", "none", NULL,
};
static const char *const cfg_log_target_names[] = { "stderr", "syslog", NULL };

/* Enum fields are written through an int; keep that honest. */
_Static_assert(sizeof(enum cfg_balance) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_proxy) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_listener_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_check) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_log_target) == sizeof(int), "enum size");
_Static_assert(sizeof(enum cfg_log_level) == sizeof(int), "enum size");

static const struct {
	const char *name;
	int value;
} cfg_facilities[] = {
	{ "mail", LOG_MAIL }, { "daemon", LOG_DAEMON }, { "user", LOG_USER },
	{ "local0", LOG_LOCAL0 }, { "local1", LOG_LOCAL1 },
	{ "local2", LOG_LOCAL2 }, { "local3", LOG_LOCAL3 },
	{ "local4", LOG_LOCAL4 }, { "local5", LOG_LOCAL5 },
	{ "local6", LOG_LOCAL6 }, { "local7", LOG_LOCAL7 },
};

static enum cfg_resolve_mode cfg_resolve = CFG_RESOLVE_NOW;
/* The FQDN a NOW load found for the default hostname (DEFER reuses it). */
static char cfg_fqdn[256];

struct cfg_parser {
	yaml_document_t *doc;
	struct cfg_diag *diag;
	struct config *cfg;
	size_t nerrors;			/* errors from this load */
	bool stop;			/* too many errors, or out of memory */
	yaml_node_t **listener_nodes;	/* parallel to cfg->listeners */
	size_t cur_pool, cur_server;	/* the server being parsed */
	/* The key whose value is being parsed, for messages about it: its
	 * name, after the mapping key it sits in ("health.interval"); list
	 * items (listeners, servers) and pools start afresh. */
	const char *key;
	const char *key_parent;
};

enum cfg_kind {
	CFG_K_UINT,
	CFG_K_DURATION,
	CFG_K_BOOL,
	CFG_K_ENUM,
	CFG_K_NAME,
	CFG_K_HOST,
	CFG_K_STRING,
	CFG_K_MAP,
	CFG_K_FUNC,
};

struct cfg_section;

/* One key of a mapping: how to parse its value into obj + off. */
struct cfg_key {
	const char *name;
	enum cfg_kind kind;
	size_t off;
	size_t size;				/* NAME, HOST, STRING: buffer */
	unsigned min, max;			/* UINT */
	const char *const *names;		/* ENUM, NULL-terminated */
	const struct cfg_section *section;	/* MAP: keys relative to obj + off */
	int (*parse)(struct cfg_parser *, yaml_node_t *, void *obj);	/* FUNC */
};

struct cfg_section {
	const char *name;		/* for cfg_check_supported() */
	const char *where;		/* in messages: "unknown key "x" in listener" */
	const struct cfg_key *keys;
	size_t nkeys;
};

#define FIELD_SIZE(st, f) sizeof(((st *)0)->f)
#define K_UINT(st, k, f, lo, hi) { .name = k, .kind = CFG_K_UINT, \
	.off = offsetof(st, f), .min = lo, .max = hi }
#define K_DUR(st, k, f) { .name = k, .kind = CFG_K_DURATION, .off = offsetof(st, f) }
#define K_BOOL(st, k, f) { .name = k, .kind = CFG_K_BOOL, .off = offsetof(st, f) }
#define K_ENUM(st, k, f, tbl) { .name = k, .kind = CFG_K_ENUM, \
	.off = offsetof(st, f), .names = tbl }
#define K_NAME(st, k, f) { .name = k, .kind = CFG_K_NAME, \
	.off = offsetof(st, f), .size = FIELD_SIZE(st, f) }
#define K_HOST(st, k, f) { .name = k, .kind = CFG_K_HOST, \
	.off = offsetof(st, f), .size = FIELD_SIZE(st, f) }
#define K_STR(st, k, f) { .name = k, .kind = CFG_K_STRING, \
	.off = offsetof(st, f), .size = FIELD_SIZE(st, f) }
#define K_MAP(k, o, sec) { .name = k, .kind = CFG_K_MAP, .off = o, .section = &sec }
#define K_FUNC(k, fn) { .name = k, .kind = CFG_K_FUNC, .parse = fn }
#define SECTION(n, w, keys) { n, w, keys, sizeof keys / sizeof keys[0] }

static int cfg_parse_workers(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_sandbox(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_facility(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_syslog_socket(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_control_mode(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_listeners(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_bind(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_trusted(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_exceptions(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_deny(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_state_directory(struct cfg_parser *, yaml_node_t *,
    void *);
static int cfg_parse_pools(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_servers(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_server_address(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_metrics(struct cfg_parser *, yaml_node_t *, void *);
static int cfg_parse_metrics_bind(struct cfg_parser *, yaml_node_t *, void *);

/* ---- the schema ---- */

static const struct cfg_key cfg_log_keys[] = {
	K_ENUM(struct config, "target", log.target, cfg_log_target_names),
	K_FUNC("facility", cfg_parse_facility),
	K_ENUM(struct config, "level", log.level, cfg_log_level_names),
	K_ENUM(struct config, "sessions", log.sessions, cfg_log_sessions_names),
	K_FUNC("syslog_socket", cfg_parse_syslog_socket),
};
static const struct cfg_section cfg_log_section =
    SECTION("log", "in log", cfg_log_keys);

static const struct cfg_key cfg_control_keys[] = {
	K_STR(struct config, "socket", control.socket),
	K_FUNC("mode", cfg_parse_control_mode),
	K_STR(struct config, "group", control.group),
	K_STR(struct config, "admin_group", control.admin_group),
};
static const struct cfg_section cfg_control_section =
    SECTION("control", "in control", cfg_control_keys);

static const struct cfg_key cfg_metrics_keys[] = {
	K_FUNC("bind", cfg_parse_metrics_bind),
};
static const struct cfg_section cfg_metrics_section =
    SECTION("metrics", "in metrics", cfg_metrics_keys);

static const struct cfg_key cfg_listener_keys[] = {
	K_NAME(struct cfg_listener, "name", name),
	K_FUNC("bind", cfg_parse_bind),
	K_NAME(struct cfg_listener, "pool", pool_name),
	K_ENUM(struct cfg_listener, "mode", mode, cfg_mode_names),
	K_UINT(struct cfg_listener, "max_connections", max_connections,
	    1, CFG_CONNECTIONS_MAX),
	K_UINT(struct cfg_listener, "max_connections_per_client",
	    max_connections_per_client, 0, CFG_CONNECTIONS_MAX),
	K_UINT(struct cfg_listener, "max_connection_rate_per_client",
	    max_connection_rate_per_client, 0, CFG_RATE_MAX),
	K_FUNC("client_limit_exceptions", cfg_parse_exceptions),
	K_FUNC("deny", cfg_parse_deny),
	K_BOOL(struct cfg_listener, "accept_proxy", accept_proxy),
	K_FUNC("trusted_proxies", cfg_parse_trusted),
	K_DUR(struct cfg_listener, "proxy_timeout", proxy_timeout_ms),
	K_DUR(struct cfg_listener, "client_timeout", client_timeout_ms),
};
static const struct cfg_section cfg_listener_section =
    SECTION("listener", "in listener", cfg_listener_keys);

static const struct cfg_key cfg_prefix_keys[] = {
	K_UINT(struct cfg_pool, "ipv4", prefix4, 0, 32),
	K_UINT(struct cfg_pool, "ipv6", prefix6, 0, 128),
};
static const struct cfg_section cfg_prefix_section =
    SECTION("source_prefix", "in source_prefix", cfg_prefix_keys);

static const struct cfg_key cfg_health_keys[] = {
	K_DUR(struct cfg_health, "interval", interval_ms),
	K_DUR(struct cfg_health, "timeout", timeout_ms),
	K_UINT(struct cfg_health, "rise", rise, 1, 1000),
	K_UINT(struct cfg_health, "fall", fall, 1, 1000),
	K_HOST(struct cfg_health, "helo", helo),
	K_ENUM(struct cfg_health, "check", check, cfg_check_names),
};
static const struct cfg_section cfg_health_section =
    SECTION("health", "in health", cfg_health_keys);

static const struct cfg_key cfg_server_keys[] = {
	K_NAME(struct cfg_server, "name", name),
	K_FUNC("address", cfg_parse_server_address),
	K_UINT(struct cfg_server, "weight", weight, 0, 256),
	K_UINT(struct cfg_server, "max_connections", max_connections,
	    0, CFG_CONNECTIONS_MAX),
	K_BOOL(struct cfg_server, "backup", backup),
};
static const struct cfg_section cfg_server_section =
    SECTION("server", "in server", cfg_server_keys);

static const struct cfg_key cfg_pool_keys[] = {
	K_ENUM(struct cfg_pool, "balance", balance, cfg_balance_names),
	K_MAP("source_prefix", 0, cfg_prefix_section),
	K_ENUM(struct cfg_pool, "proxy_protocol", proxy, cfg_proxy_names),
	K_DUR(struct cfg_pool, "connect_timeout", connect_timeout_ms),
	K_DUR(struct cfg_pool, "greeting_timeout", greeting_timeout_ms),
	K_DUR(struct cfg_pool, "server_timeout", server_timeout_ms),
	K_UINT(struct cfg_pool, "retries", retries, 0, 16),
	K_MAP("health", offsetof(struct cfg_pool, health), cfg_health_section),
	K_FUNC("servers", cfg_parse_servers),
};
static const struct cfg_section cfg_pool_section =
    SECTION("pool", "in pool", cfg_pool_keys);

static const struct cfg_key cfg_root_keys[] = {
	K_FUNC("workers", cfg_parse_workers),
	K_STR(struct config, "user", user),
	K_STR(struct config, "group", group),
	K_DUR(struct config, "shutdown_timeout", shutdown_timeout_ms),
	K_HOST(struct config, "hostname", hostname),
	K_FUNC("state_directory", cfg_parse_state_directory),
	K_FUNC("sandbox", cfg_parse_sandbox),
	K_MAP("log", 0, cfg_log_section),
	K_MAP("control", 0, cfg_control_section),
	K_FUNC("metrics", cfg_parse_metrics),
	K_FUNC("listeners", cfg_parse_listeners),
	K_FUNC("pools", cfg_parse_pools),
};
static const struct cfg_section cfg_root_section =
    SECTION("top", "at the top level", cfg_root_keys);

/* ---- diagnostics ---- */

static void cfg_diag_vadd(struct cfg_diag *, enum cfg_severity, unsigned,
    unsigned, const char *, va_list) __attribute__((format(printf, 5, 0)));

static void
cfg_diag_vadd(struct cfg_diag *d, enum cfg_severity sev, unsigned line,
    unsigned column, const char *fmt, va_list ap)
{
	struct cfg_diag_entry *e;

	/* Counted even if it cannot be stored, so a failed load stays failed. */
	if (sev == CFG_ERROR)
		d->nerrors++;
	else
		d->nwarnings++;
	e = reallocarray(d->entries, d->n + 1, sizeof *e);
	if (e == NULL)
		return;
	d->entries = e;
	e = &d->entries[d->n++];
	e->severity = sev;
	e->line = line;
	e->column = column;
	vsnprintf(e->message, sizeof e->message, fmt, ap);
}

static void __attribute__((format(printf, 5, 6)))
cfg_diag_add(struct cfg_diag *d, enum cfg_severity sev, unsigned line,
    unsigned column, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_diag_vadd(d, sev, line, column, fmt, ap);
	va_end(ap);
}

static int __attribute__((format(printf, 4, 5)))
cfg_error_at(struct cfg_parser *p, unsigned line, unsigned column,
    const char *fmt, ...)
{
	va_list ap;

	if (p->stop)
		return -1;
	if (p->nerrors == CFG_MAX_ERRORS) {
		cfg_diag_add(p->diag, CFG_ERROR, line, column,
		    "too many errors, stopping here");
		p->nerrors++;
		p->stop = true;
		return -1;
	}
	p->nerrors++;
	va_start(ap, fmt);
	cfg_diag_vadd(p->diag, CFG_ERROR, line, column, fmt, ap);
	va_end(ap);
	return -1;
}

/* Report an error at a node; always returns -1 so parsers can return it. */
#define cfg_error(p, node, ...) cfg_error_at((p), \
	(unsigned)(node)->start_mark.line + 1, \
	(unsigned)(node)->start_mark.column + 1, __VA_ARGS__)

/*
 * An error in the value of the key being parsed: the message starts with
 * the key's name ("workers: expected an integer ..."), so it reads on its
 * own, also where the line is long or the key repeats (max_connections
 * of a listener and of a server).
 */
static int __attribute__((format(printf, 3, 4)))
cfg_verror(struct cfg_parser *p, const yaml_node_t *node,
    const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	if (p->key == NULL)
		return cfg_error(p, node, "%s", msg);
	return cfg_error(p, node, "%s%s%s: %s", p->key_parent != NULL ?
	    p->key_parent : "", p->key_parent != NULL ? "." : "", p->key,
	    msg);
}

static void __attribute__((format(printf, 3, 4)))
cfg_warn(struct cfg_parser *p, const yaml_node_t *node, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_diag_vadd(p->diag, CFG_WARNING,
	    node != NULL ? (unsigned)node->start_mark.line + 1 : 0,
	    node != NULL ? (unsigned)node->start_mark.column + 1 : 0, fmt, ap);
	va_end(ap);
}

/* Stable, so two messages for one node keep the order they were found in. */
static void
cfg_diag_sort(struct cfg_diag *d, size_t first)
{
	for (size_t i = first + 1; i < d->n; i++) {
		struct cfg_diag_entry e = d->entries[i];
		size_t j = i;

		while (j > first && (d->entries[j - 1].line > e.line ||
		    (d->entries[j - 1].line == e.line &&
		    d->entries[j - 1].column > e.column))) {
			d->entries[j] = d->entries[j - 1];
			j--;
		}
		d->entries[j] = e;
	}
}

/* ---- walking nodes ---- */

static yaml_node_t *
cfg_node(struct cfg_parser *p, int id)
{
	return yaml_document_get_node(p->doc, id);
}

static const char *
cfg_kind_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a single value";
	}
}

static bool
cfg_is_null(const yaml_node_t *n)
{
	static const char *const nulls[] = { "", "~", "null", "Null", "NULL" };

	if (n->type != YAML_SCALAR_NODE ||
	    n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	for (size_t i = 0; i < sizeof nulls / sizeof nulls[0]; i++)
		if (strcmp((const char *)n->data.scalar.value, nulls[i]) == 0)
			return true;
	return false;
}

/* The text of a scalar node, or NULL after an error naming what was expected. */
static const char *
cfg_scalar(struct cfg_parser *p, yaml_node_t *n, const char *expected)
{
	const char *s;

	if (n->type != YAML_SCALAR_NODE) {
		cfg_verror(p, n, "expected %s, got %s", expected, cfg_kind_name(n));
		return NULL;
	}
	s = (const char *)n->data.scalar.value;
	if (strlen(s) != n->data.scalar.length) {
		cfg_verror(p, n, "expected %s, got a value with a NUL character",
		    expected);
		return NULL;
	}
	if (cfg_is_null(n)) {
		cfg_verror(p, n, "expected %s, got no value", expected);
		return NULL;
	}
	return s;
}

/* The value of key in a mapping (the first one when duplicated), or NULL. */
static yaml_node_t *
cfg_map_get(struct cfg_parser *p, yaml_node_t *map, const char *key)
{
	size_t n = strlen(key);

	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
	    pair < map->data.mapping.pairs.top; pair++) {
		yaml_node_t *k = cfg_node(p, pair->key);
		if (k->type == YAML_SCALAR_NODE && k->data.scalar.length == n &&
		    memcmp(k->data.scalar.value, key, n) == 0)
			return cfg_node(p, pair->value);
	}
	return NULL;
}

/* The key of a pair as a string, or NULL after an error (not text, or a duplicate). */
static const char *
cfg_key_name(struct cfg_parser *p, yaml_node_t *map, yaml_node_pair_t *pair)
{
	yaml_node_t *k = cfg_node(p, pair->key);
	char q[64];

	if (k->type != YAML_SCALAR_NODE ||
	    strlen((const char *)k->data.scalar.value) != k->data.scalar.length) {
		cfg_error(p, k, "expected a key name, got %s", cfg_kind_name(k));
		return NULL;
	}
	for (yaml_node_pair_t *o = map->data.mapping.pairs.start; o < pair; o++) {
		yaml_node_t *ok = cfg_node(p, o->key);
		if (ok->type == YAML_SCALAR_NODE &&
		    ok->data.scalar.length == k->data.scalar.length &&
		    memcmp(ok->data.scalar.value, k->data.scalar.value,
		    k->data.scalar.length) == 0) {
			cfg_quote((const char *)k->data.scalar.value, q, sizeof q);
			cfg_error(p, k, "duplicate key %s (first at line %zu)", q,
			    ok->start_mark.line + 1);
			return NULL;
		}
	}
	return (const char *)k->data.scalar.value;
}

/* Levenshtein distance, for "did you mean"; large when either is long. */
static size_t
cfg_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), row[CFG_NAME_MAX + 1];

	if (la > CFG_NAME_MAX || lb > CFG_NAME_MAX)
		return SIZE_MAX;
	for (size_t j = 0; j <= lb; j++)
		row[j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t up = row[j], best = diag + (a[i - 1] != b[j - 1]);
			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

static void
cfg_unknown_key(struct cfg_parser *p, const yaml_node_t *k, const char *name,
    const struct cfg_section *sec)
{
	const char *best = NULL;
	size_t best_d = 3;
	char q[64];

	for (size_t i = 0; i < sec->nkeys; i++) {
		size_t d = cfg_distance(name, sec->keys[i].name);
		if (d < best_d && d < strlen(sec->keys[i].name)) {
			best_d = d;
			best = sec->keys[i].name;
		}
	}
	cfg_quote(name, q, sizeof q);
	if (best != NULL)
		cfg_error(p, k, "unknown key %s %s (did you mean \"%s\"?)", q,
		    sec->where, best);
	else
		cfg_error(p, k, "unknown key %s %s", q, sec->where);
}

static bool
cfg_seen(const struct cfg_section *sec, unsigned seen, const char *key)
{
	for (size_t i = 0; i < sec->nkeys; i++)
		if (strcmp(sec->keys[i].name, key) == 0)
			return (seen & (1u << i)) != 0;
	return false;
}

static void
cfg_require(struct cfg_parser *p, yaml_node_t *map,
    const struct cfg_section *sec, unsigned seen, const char *key,
    const char *where)
{
	if (!cfg_seen(sec, seen, key))
		cfg_error(p, map, "missing key \"%s\" %s", key, where);
}

/* Append a zeroed element to an array of n; NULL after an error. */
static void *
cfg_array_add(struct cfg_parser *p, const yaml_node_t *at, void *arr, size_t n,
    size_t size)
{
	char *na = reallocarray(arr, n + 1, size);

	if (na == NULL) {
		cfg_error(p, at, "out of memory");
		p->stop = true;
		return NULL;
	}
	memset(na + n * size, 0, size);
	return na;
}

/* ---- "not supported yet" ---- */

/*
 * ======================= NOT SUPPORTED YET =======================
 * Values this build parses but does not implement. Each is refused at its
 * position rather than silently ignored. When a feature lands, delete its
 * check here and its vector in tests/test_config.c (TCase
 * cfg_check_supported). Called after every key whose value parsed.
 */
static void
cfg_check_supported(struct cfg_parser *p, const char *section,
    const char *key, const void *obj, const yaml_node_t *value)
{
	/* Nothing is refused here in this build (accept_proxy landed). */
}

/* ---- values ---- */

static void
cfg_enum_expected(const char *const *names, char *buf, size_t size)
{
	size_t n = 0, o;

	while (names[n] != NULL)
		n++;
	o = (size_t)snprintf(buf, size, "one of ");
	for (size_t i = 0; i < n && o < size; i++)
		o += (size_t)snprintf(buf + o, size - o, "%s%s",
		    i == 0 ? "" : i + 1 == n ? " or " : ", ", names[i]);
}

static int cfg_parse_map(struct cfg_parser *p, yaml_node_t *map,
    const struct cfg_section *sec, void *obj, unsigned *seen);

static int
cfg_parse_value(struct cfg_parser *p, const struct cfg_key *k, yaml_node_t *v,
    void *obj)
{
	char *field = (char *)obj + k->off;
	char err[256], expected[128], q[64];
	const char *s;
	unsigned u;
	size_t len;

	switch (k->kind) {
	case CFG_K_UINT:
		snprintf(expected, sizeof expected, "an integer from %u to %u",
		    k->min, k->max);
		if ((s = cfg_scalar(p, v, expected)) == NULL)
			return -1;
		if (cfg_parse_uint(s, k->min, k->max, &u, err, sizeof err) == -1)
			return cfg_verror(p, v, "%s", err);
		memcpy(field, &u, sizeof u);
		return 0;
	case CFG_K_DURATION:
		if ((s = cfg_scalar(p, v, "a duration like 5s, 300ms, 10m or 1h")) == NULL)
			return -1;
		if (cfg_parse_duration(s, &u, err, sizeof err) == -1)
			return cfg_verror(p, v, "%s", err);
		memcpy(field, &u, sizeof u);
		return 0;
	case CFG_K_BOOL: {
		bool b;

		if ((s = cfg_scalar(p, v, "true or false")) == NULL)
			return -1;
		if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0) {
			cfg_quote(s, q, sizeof q);
			return cfg_verror(p, v, "expected true or false, got %s", q);
		}
		b = s[0] == 't';
		memcpy(field, &b, sizeof b);
		return 0;
	}
	case CFG_K_ENUM:
		cfg_enum_expected(k->names, expected, sizeof expected);
		if ((s = cfg_scalar(p, v, expected)) == NULL)
			return -1;
		for (int i = 0; k->names[i] != NULL; i++) {
			if (strcmp(s, k->names[i]) == 0) {
				memcpy(field, &i, sizeof i);
				return 0;
			}
		}
		cfg_quote(s, q, sizeof q);
		return cfg_verror(p, v, "expected %s, got %s", expected, q);
	case CFG_K_NAME:
		if ((s = cfg_scalar(p, v, "a name")) == NULL)
			return -1;
		if (cfg_check_name(s, err, sizeof err) == -1)
			return cfg_verror(p, v, "%s", err);
		memcpy(field, s, strlen(s) + 1);
		return 0;
	case CFG_K_HOST:
		if ((s = cfg_scalar(p, v, "a host name")) == NULL)
			return -1;
		if (cfg_check_hostname(s, err, sizeof err) == -1)
			return cfg_verror(p, v, "%s", err);
		if (strlen(s) >= k->size)
			return cfg_verror(p, v, "host name too long");
		memcpy(field, s, strlen(s) + 1);
		return 0;
	case CFG_K_STRING:
		if ((s = cfg_scalar(p, v, "a string")) == NULL)
			return -1;
		len = strlen(s);
		for (size_t i = 0; i < len; i++)
			if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
				return cfg_verror(p, v, "unexpected control "
				    "character in a string");
		if (len >= k->size)
			return cfg_verror(p, v, "too long: at most %zu characters",
			    k->size - 1);
		memcpy(field, s, len + 1);
		return 0;
	case CFG_K_MAP: {
		const char *parent = p->key_parent;
		int rc;

		if (v->type != YAML_MAPPING_NODE)
			return cfg_verror(p, v, "expected a mapping, got %s",
			    cfg_kind_name(v));
		p->key_parent = k->name;
		rc = cfg_parse_map(p, v, k->section, field, NULL);
		p->key_parent = parent;
		return rc;
	}
	case CFG_K_FUNC:
		return k->parse(p, v, obj);
	}
	return -1;
}

/*
 * Walk a mapping against a section's keys, into obj. *seen (when given)
 * gets bit i for each key i present. Returns -1 only when the walk stopped.
 */
static int
cfg_parse_map(struct cfg_parser *p, yaml_node_t *map,
    const struct cfg_section *sec, void *obj, unsigned *seen)
{
	const char *outer = p->key;
	unsigned found = 0;

	for (yaml_node_pair_t *pair = map->data.mapping.pairs.start;
	    pair < map->data.mapping.pairs.top && !p->stop; pair++) {
		const char *name = cfg_key_name(p, map, pair);
		yaml_node_t *v = cfg_node(p, pair->value);
		size_t i;

		if (name == NULL)
			continue;
		for (i = 0; i < sec->nkeys; i++)
			if (strcmp(name, sec->keys[i].name) == 0)
				break;
		if (i == sec->nkeys) {
			cfg_unknown_key(p, cfg_node(p, pair->key), name, sec);
			continue;
		}
		found |= 1u << i;
		p->key = name;
		if (cfg_parse_value(p, &sec->keys[i], v, obj) == 0)
			cfg_check_supported(p, sec->name, name, obj, v);
		p->key = outer;
	}
	if (seen != NULL)
		*seen = found;
	return p->stop ? -1 : 0;
}

static unsigned
cfg_cpu_count(void)
{
	cpu_set_t set;
	long n;

	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
		n = CPU_COUNT(&set);
	else
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	return n > CFG_WORKERS_MAX ? CFG_WORKERS_MAX : (unsigned)n;
}

static int
cfg_parse_workers(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct config *cfg = obj;
	char err[256], q[64];
	const char *s;

	s = cfg_scalar(p, v, "a number of workers or auto");
	if (s == NULL)
		return -1;
	if (strcmp(s, "auto") == 0) {
		cfg->workers = cfg_cpu_count();
		return 0;
	}
	if (cfg_parse_uint(s, 1, CFG_WORKERS_MAX, &cfg->workers, err,
	    sizeof err) == 0)
		return 0;
	cfg_quote(s, q, sizeof q);
	return cfg_verror(p, v, "expected an integer from 1 to %d or auto, got %s",
	    CFG_WORKERS_MAX, q);
}

/* A boolean that warns when false: the children then run unconfined. */
static int
cfg_parse_sandbox(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct config *cfg = obj;
	const char *s = cfg_scalar(p, v, "true or false");
	char q[64];

	if (s == NULL)
		return -1;
	if (strcmp(s, "true") != 0 && strcmp(s, "false") != 0) {
		cfg_quote(s, q, sizeof q);
		return cfg_verror(p, v, "expected true or false, got %s", q);
	}
	cfg->sandbox = s[0] == 't';
	if (!cfg->sandbox)
		cfg_warn(p, v, "sandbox: false: workers and the health process "
		    "run without their system call filter");
	return 0;
}

static int
cfg_parse_facility(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct config *cfg = obj;
	const char *expected = "a syslog facility: mail, daemon, user or local0 to local7";
	const char *s = cfg_scalar(p, v, expected);
	char q[64];

	if (s == NULL)
		return -1;
	for (size_t i = 0; i < sizeof cfg_facilities / sizeof cfg_facilities[0]; i++) {
		if (strcmp(s, cfg_facilities[i].name) == 0) {
			cfg->log.facility = cfg_facilities[i].value;
			return 0;
		}
	}
	cfg_quote(s, q, sizeof q);
	return cfg_verror(p, v, "expected %s, got %s", expected, q);
}

/* The path of a Unix socket: absolute, and short enough for sun_path. */
static int
cfg_parse_syslog_socket(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct config *cfg = obj;
	const char *s = cfg_scalar(p, v, "the path of a socket");
	size_t len;

	if (s == NULL)
		return -1;
	len = strlen(s);
	if (s[0] != '/')
		return cfg_verror(p, v, "expected an absolute path");
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
			return cfg_verror(p, v, "unexpected control character "
			    "in a path");
	if (len >= sizeof cfg->log.syslog_socket)
		return cfg_verror(p, v, "too long for a socket path: at most "
		    "%zu characters", sizeof cfg->log.syslog_socket - 1);
	memcpy(cfg->log.syslog_socket, s, len + 1);
	return 0;
}

static int
cfg_parse_control_mode(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct config *cfg = obj;
	const char *s = cfg_scalar(p, v, "an octal file mode like \"0660\"");
	char err[256];

	if (s == NULL)
		return -1;
	if (cfg_parse_mode(s, &cfg->control.mode, err, sizeof err) == -1)
		return cfg_verror(p, v, "%s", err);
	return 0;
}

/* ---- metrics ---- */

static int
cfg_parse_metrics(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	const struct cfg_section *sec = &cfg_metrics_section;
	struct config *cfg = obj;
	const char *parent = p->key_parent;
	unsigned seen;
	int rc;

	if (v->type != YAML_MAPPING_NODE)
		return cfg_verror(p, v, "expected a mapping with bind, got %s",
		    cfg_kind_name(v));
	p->key_parent = "metrics";
	rc = cfg_parse_map(p, v, sec, cfg, &seen);
	p->key_parent = parent;
	if (rc == -1)
		return -1;
	cfg_require(p, v, sec, seen, "bind", "in metrics");
	cfg->metrics.enabled = cfg_seen(sec, seen, "bind");
	return 0;
}

static int cfg_defer_host(struct cfg_parser *p, const yaml_node_t *n,
    const char *name, unsigned port, bool bind, size_t list, size_t item);

/*
 * The address text s of node n (a bind address, or a server's) into a.
 * A host name that waits for later resolution is kept as entry (list,
 * item) of the hosts to resolve. 0 when a holds the address, 1 when it
 * waits for the name, -1 after an error (reported).
 */
static int
cfg_addr_node(struct cfg_parser *p, yaml_node_t *n, const char *s, bool bind,
    struct cfg_addr *a, size_t list, size_t item)
{
	char err[256], host[256];
	unsigned port;
	int rc;

	rc = cfg_parse_addr_deferred(s, bind, cfg_resolve == CFG_RESOLVE_NOW,
	    a, host, sizeof host, &port, err, sizeof err);
	if (rc == -1)
		return cfg_verror(p, n, "%s", err);
	if (rc == 1 && cfg_defer_host(p, n, host, port, bind, list, item) == -1)
		return -1;
	return rc;
}

static int
cfg_parse_metrics_bind(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct config *cfg = obj;
	const char *s = cfg_scalar(p, v, "an address like 127.0.0.1:9745 or "
	    "[::1]:9745");

	if (s == NULL ||
	    cfg_addr_node(p, v, s, true, &cfg->metrics.bind, CFG_HOST_METRICS,
	    0) == -1)
		return -1;
	cfg->metrics_pos.line = (unsigned)v->start_mark.line + 1;
	cfg->metrics_pos.column = (unsigned)v->start_mark.column + 1;
	return 0;
}

/* ---- listeners ---- */

/* Keep a host name for later resolution (a DEFER load); -1 after an error. */
static int
cfg_defer_host(struct cfg_parser *p, const yaml_node_t *n, const char *name,
    unsigned port, bool bind, size_t list, size_t item)
{
	struct config *cfg = p->cfg;
	struct cfg_host *hosts, *h;

	if (cfg_resolve == CFG_RESOLVE_NEVER) {
		char q[64];

		cfg_quote(name, q, sizeof q);
		return cfg_verror(p, n, "cannot resolve host %s: name "
		    "resolution is disabled", q);
	}
	hosts = cfg_array_add(p, n, cfg->hosts, cfg->nhosts, sizeof *hosts);
	if (hosts == NULL)
		return -1;
	cfg->hosts = hosts;
	h = &cfg->hosts[cfg->nhosts++];
	snprintf(h->name, sizeof h->name, "%s", name);
	h->port = port;
	h->bind = bind;
	h->list = list;
	h->item = item;
	h->pos.line = (unsigned)n->start_mark.line + 1;
	h->pos.column = (unsigned)n->start_mark.column + 1;
	return 0;
}

static int
cfg_add_bind(struct cfg_parser *p, struct cfg_listener *l, yaml_node_t *n)
{
	const char *s = cfg_scalar(p, n, "an address like 0.0.0.0:25 or [::]:25");
	struct cfg_addr a, *binds;
	int rc;

	if (s == NULL)
		return -1;
	rc = cfg_addr_node(p, n, s, true, &a, p->cfg->nlisteners - 1,
	    l->nbinds);
	if (rc == -1)
		return -1;
	for (size_t i = 0; rc == 0 && i < p->cfg->nlisteners; i++) {
		const struct cfg_listener *o = &p->cfg->listeners[i];
		for (size_t j = 0; j < o->nbinds; j++) {
			if (!cfg_addr_equal(&o->binds[j], &a))
				continue;
			if (o == l)
				return cfg_verror(p, n, "duplicate bind address %s "
				    "in this listener", a.text);
			return cfg_verror(p, n, "duplicate bind address %s (already "
			    "in listener \"%s\")", a.text, o->name);
		}
	}
	binds = cfg_array_add(p, n, l->binds, l->nbinds, sizeof *binds);
	if (binds == NULL)
		return -1;
	l->binds = binds;
	l->binds[l->nbinds++] = a;
	return 0;
}

static int
cfg_parse_bind(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct cfg_listener *l = obj;
	int rc = 0;

	if (v->type == YAML_SCALAR_NODE)
		return cfg_add_bind(p, l, v);
	if (v->type != YAML_SEQUENCE_NODE)
		return cfg_verror(p, v, "expected an address or a list of "
		    "addresses, got %s", cfg_kind_name(v));
	if (v->data.sequence.items.start == v->data.sequence.items.top)
		return cfg_verror(p, v, "expected at least one address to bind");
	for (yaml_node_item_t *it = v->data.sequence.items.start;
	    it < v->data.sequence.items.top && !p->stop; it++)
		if (cfg_add_bind(p, l, cfg_node(p, *it)) == -1)
			rc = -1;
	return rc;
}

/* A list of networks into *list / *n ("what": the key, for messages). */
static int
cfg_parse_cidrs(struct cfg_parser *p, yaml_node_t *v, struct cfg_cidr **list,
    size_t *n)
{
	int rc = 0;

	if (v->type != YAML_SEQUENCE_NODE)
		return cfg_verror(p, v, "expected a list of networks like "
		    "[192.0.2.0/24], got %s", cfg_kind_name(v));
	for (yaml_node_item_t *it = v->data.sequence.items.start;
	    it < v->data.sequence.items.top && !p->stop; it++) {
		yaml_node_t *node = cfg_node(p, *it);
		const char *s = cfg_scalar(p, node,
		    "a network like 192.0.2.0/24");
		struct cfg_cidr c, *arr;
		char err[256];

		if (s == NULL) {
			rc = -1;
			continue;
		}
		if (cfg_parse_cidr(s, &c, err, sizeof err) == -1) {
			rc = cfg_verror(p, node, "%s", err);
			continue;
		}
		arr = cfg_array_add(p, node, *list, *n, sizeof *arr);
		if (arr == NULL)
			return -1;
		*list = arr;
		(*list)[(*n)++] = c;
	}
	return rc;
}

static int
cfg_parse_trusted(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct cfg_listener *l = obj;

	return cfg_parse_cidrs(p, v, &l->trusted_proxies,
	    &l->ntrusted_proxies);
}

static int
cfg_parse_exceptions(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct cfg_listener *l = obj;

	return cfg_parse_cidrs(p, v, &l->client_limit_exceptions,
	    &l->nclient_limit_exceptions);
}

static int
cfg_parse_deny(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct cfg_listener *l = obj;

	return cfg_parse_cidrs(p, v, &l->deny, &l->ndeny);
}

/* An absolute path: the master writes the deny entries there. */
static int
cfg_parse_state_directory(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct config *cfg = obj;
	const char *s = cfg_scalar(p, v, "an absolute directory path");

	if (s == NULL)
		return -1;
	if (s[0] != '/')
		return cfg_verror(p, v, "expected an absolute directory path "
		    "like /var/lib/smtpfront");
	if (strlen(s) >= sizeof cfg->state_directory)
		return cfg_verror(p, v, "path too long (at most %zu bytes)",
		    sizeof cfg->state_directory - 1);
	memcpy(cfg->state_directory, s, strlen(s) + 1);
	cfg->state_directory_pos.line = (unsigned)v->start_mark.line + 1;
	cfg->state_directory_pos.column = (unsigned)v->start_mark.column + 1;
	return 0;
}

static int
cfg_parse_listener(struct cfg_parser *p, yaml_node_t *item)
{
	const struct cfg_section *sec = &cfg_listener_section;
	struct config *cfg = p->cfg;
	struct cfg_listener *l, *arr;
	yaml_node_t **nodes, *n;
	size_t idx = cfg->nlisteners;
	unsigned seen;

	arr = cfg_array_add(p, item, cfg->listeners, idx, sizeof *arr);
	if (arr == NULL)
		return -1;
	cfg->listeners = arr;
	nodes = cfg_array_add(p, item, p->listener_nodes, idx, sizeof *nodes);
	if (nodes == NULL)
		return -1;
	p->listener_nodes = nodes;
	p->listener_nodes[idx] = item;
	cfg->nlisteners++;

	l = &cfg->listeners[idx];
	l->mode = CFG_MODE_SMTP;
	l->max_connections = 10000;
	l->proxy_timeout_ms = 5000;
	l->client_timeout_ms = 600000;
	if (cfg_parse_map(p, item, sec, l, &seen) == -1)
		return -1;

	if (!cfg_seen(sec, seen, "name"))
		snprintf(l->name, sizeof l->name, "listener%zu", idx + 1);
	else if (l->name[0] != '\0') {
		for (size_t i = 0; i < idx; i++) {
			if (strcmp(cfg->listeners[i].name, l->name) == 0) {
				cfg_error(p, cfg_map_get(p, item, "name"),
				    "duplicate listener name \"%s\"", l->name);
				break;
			}
		}
	}
	cfg_require(p, item, sec, seen, "bind", "in listener");
	cfg_require(p, item, sec, seen, "pool", "in listener");
	n = cfg_map_get(p, item, "trusted_proxies");
	if (l->accept_proxy && l->ntrusted_proxies == 0 && (n == NULL ||
	    (n->type == YAML_SEQUENCE_NODE &&
	    n->data.sequence.items.start == n->data.sequence.items.top)))
		cfg_error(p, n != NULL ? n : item, "accept_proxy: true needs at "
		    "least one network in trusted_proxies");
	return p->stop ? -1 : 0;
}

static int
cfg_parse_listeners(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	if (v->type != YAML_SEQUENCE_NODE)
		return cfg_error(p, v, "expected a list of listeners, got %s",
		    cfg_kind_name(v));
	if (v->data.sequence.items.start == v->data.sequence.items.top)
		return cfg_error(p, v, "at least one listener is required");
	for (yaml_node_item_t *it = v->data.sequence.items.start;
	    it < v->data.sequence.items.top && !p->stop; it++) {
		yaml_node_t *item = cfg_node(p, *it);

		if (item->type != YAML_MAPPING_NODE) {
			cfg_error(p, item, "expected a listener (a mapping with "
			    "bind and pool), got %s", cfg_kind_name(item));
			continue;
		}
		if (cfg_parse_listener(p, item) == -1)
			return -1;
	}
	return 0;
}

/* ---- pools ---- */

static int
cfg_parse_server_address(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	struct cfg_server *srv = obj;
	const char *s = cfg_scalar(p, v, "an address like 10.0.0.11:10024");

	if (s == NULL)
		return -1;
	if (strlen(s) >= sizeof srv->address_spec)
		return cfg_verror(p, v, "address too long");
	if (cfg_addr_node(p, v, s, false, &srv->address, p->cur_pool,
	    p->cur_server) == -1)
		return -1;
	memcpy(srv->address_spec, s, strlen(s) + 1);
	return 0;
}

static int
cfg_parse_servers(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	const struct cfg_section *sec = &cfg_server_section;
	struct cfg_pool *pool = obj;

	if (v->type != YAML_SEQUENCE_NODE)
		return cfg_error(p, v, "expected a list of servers, got %s",
		    cfg_kind_name(v));
	if (v->data.sequence.items.start == v->data.sequence.items.top)
		return cfg_error(p, v, "pool \"%s\" needs at least one server",
		    pool->name);
	for (yaml_node_item_t *it = v->data.sequence.items.start;
	    it < v->data.sequence.items.top && !p->stop; it++) {
		yaml_node_t *item = cfg_node(p, *it);
		struct cfg_server *arr, *srv;
		unsigned seen;

		if (item->type != YAML_MAPPING_NODE) {
			cfg_error(p, item, "expected a server (a mapping with "
			    "name and address), got %s", cfg_kind_name(item));
			continue;
		}
		arr = cfg_array_add(p, item, pool->servers, pool->nservers,
		    sizeof *arr);
		if (arr == NULL)
			return -1;
		pool->servers = arr;
		p->cur_pool = (size_t)(pool - p->cfg->pools);
		p->cur_server = pool->nservers;
		srv = &pool->servers[pool->nservers++];
		srv->weight = 1;
		if (cfg_parse_map(p, item, sec, srv, &seen) == -1)
			return -1;
		cfg_require(p, item, sec, seen, "name", "in server");
		cfg_require(p, item, sec, seen, "address", "in server");
		for (size_t i = 0; srv->name[0] != '\0' && i + 1 < pool->nservers; i++) {
			if (strcmp(pool->servers[i].name, srv->name) == 0) {
				cfg_error(p, cfg_map_get(p, item, "name"),
				    "duplicate server name \"%s\" in pool \"%s\"",
				    srv->name, pool->name);
				break;
			}
		}
	}
	return 0;
}

static int
cfg_parse_pools(struct cfg_parser *p, yaml_node_t *v, void *obj)
{
	const struct cfg_section *sec = &cfg_pool_section;
	struct config *cfg = obj;

	if (v->type != YAML_MAPPING_NODE)
		return cfg_error(p, v, "expected a mapping of pool names to "
		    "pools, got %s", cfg_kind_name(v));
	if (v->data.mapping.pairs.start == v->data.mapping.pairs.top)
		return cfg_error(p, v, "at least one pool is required");
	for (yaml_node_pair_t *pair = v->data.mapping.pairs.start;
	    pair < v->data.mapping.pairs.top && !p->stop; pair++) {
		const char *name = cfg_key_name(p, v, pair);
		yaml_node_t *k = cfg_node(p, pair->key);
		yaml_node_t *pv = cfg_node(p, pair->value);
		struct cfg_pool *arr, *pool;
		char err[256], where[96];
		unsigned seen;

		if (name == NULL)
			continue;
		if (cfg_check_name(name, err, sizeof err) == -1) {
			cfg_error(p, k, "bad pool name: %s", err);
			continue;
		}
		/* Kept even when malformed, so references to it stay quiet. */
		arr = cfg_array_add(p, k, cfg->pools, cfg->npools, sizeof *arr);
		if (arr == NULL)
			return -1;
		cfg->pools = arr;
		pool = &cfg->pools[cfg->npools++];
		memcpy(pool->name, name, strlen(name) + 1);
		pool->balance = CFG_BALANCE_ROUNDROBIN;
		pool->prefix4 = 24;
		pool->prefix6 = 64;
		pool->proxy = CFG_PROXY_V2;
		pool->connect_timeout_ms = 5000;
		pool->greeting_timeout_ms = 30000;
		pool->server_timeout_ms = 600000;
		pool->retries = 2;
		pool->health.interval_ms = 2000;
		pool->health.timeout_ms = 10000;
		pool->health.rise = 2;
		pool->health.fall = 3;
		pool->health.check = CFG_CHECK_SMTP;
		if (pv->type != YAML_MAPPING_NODE) {
			cfg_error(p, pv, "expected pool \"%s\" to be a mapping "
			    "with servers, got %s", name, cfg_kind_name(pv));
			continue;
		}
		if (cfg_parse_map(p, pv, sec, pool, &seen) == -1)
			return -1;
		snprintf(where, sizeof where, "in pool \"%s\"", pool->name);
		cfg_require(p, pv, sec, seen, "servers", where);
	}
	return 0;
}

/* ---- the whole ---- */

static void
cfg_default_hostname(struct cfg_parser *p)
{
	struct config *cfg = p->cfg;
	char host[256];

	if (gethostname(host, sizeof host) == -1)
		snprintf(host, sizeof host, "localhost");
	host[sizeof host - 1] = '\0';
	snprintf(cfg->hostname, sizeof cfg->hostname, "%s", host);
	if (strchr(host, '.') == NULL && cfg_resolve == CFG_RESOLVE_DEFER &&
	    cfg_fqdn[0] != '\0')
		snprintf(cfg->hostname, sizeof cfg->hostname, "%s", cfg_fqdn);
	if (strchr(host, '.') == NULL && cfg_resolve == CFG_RESOLVE_NOW) {
		struct addrinfo hints, *res = NULL;

		memset(&hints, 0, sizeof hints);
		hints.ai_family = AF_UNSPEC;
		hints.ai_socktype = SOCK_STREAM;
		hints.ai_flags = AI_CANONNAME;
		if (getaddrinfo(host, NULL, &hints, &res) == 0) {
			const char *canon = res->ai_canonname;
			if (canon != NULL && strchr(canon, '.') != NULL &&
			    strlen(canon) < sizeof cfg->hostname) {
				memcpy(cfg->hostname, canon, strlen(canon) + 1);
				memcpy(cfg_fqdn, canon, strlen(canon) + 1);
			}
			freeaddrinfo(res);
		}
	}
	if (strchr(cfg->hostname, '.') == NULL)
		cfg_warn(p, NULL, "this system has no fully qualified host name; "
		    "using \"%s\" (set hostname: to choose one)", cfg->hostname);
}

/* The position of key's value in map, if it is there. */
static void
cfg_pos_of(struct cfg_parser *p, yaml_node_t *map, const char *key,
    struct cfg_pos *pos)
{
	yaml_node_t *n = cfg_map_get(p, map, key);

	if (n == NULL)
		return;
	pos->line = (unsigned)n->start_mark.line + 1;
	pos->column = (unsigned)n->start_mark.column + 1;
}

/* The port of listener li's bind j, resolved or not. */
static unsigned
cfg_bind_port(const struct config *cfg, size_t li, size_t bj)
{
	for (size_t k = 0; k < cfg->nhosts; k++)
		if (cfg->hosts[k].bind && cfg->hosts[k].list == li &&
		    cfg->hosts[k].item == bj)
			return cfg->hosts[k].port;
	return cfg_addr_port(&cfg->listeners[li].binds[bj]);
}

/* The listener that binds a (resolved) address, or NULL. */
static const struct cfg_listener *
cfg_bind_owner(const struct config *cfg, const struct cfg_addr *a)
{
	for (size_t i = 0; a->len > 0 && i < cfg->nlisteners; i++)
		for (size_t j = 0; j < cfg->listeners[i].nbinds; j++)
			if (cfg_addr_equal(&cfg->listeners[i].binds[j], a))
				return &cfg->listeners[i];
	return NULL;
}

static void
cfg_finish(struct cfg_parser *p, yaml_node_t *root, unsigned seen)
{
	const struct cfg_section *sec = &cfg_root_section;
	struct config *cfg = p->cfg;
	yaml_node_t *ctl;

	cfg_require(p, root, sec, seen, "listeners", "at the top level");
	cfg_require(p, root, sec, seen, "pools", "at the top level");
	cfg_pos_of(p, root, "workers", &cfg->workers_pos);
	cfg_pos_of(p, root, "user", &cfg->user_pos);
	cfg_pos_of(p, root, "group", &cfg->group_pos);
	if ((ctl = cfg_map_get(p, root, "control")) != NULL &&
	    ctl->type == YAML_MAPPING_NODE) {
		cfg_pos_of(p, ctl, "group", &cfg->control_group_pos);
		cfg_pos_of(p, ctl, "admin_group",
		    &cfg->control_admin_group_pos);
	}
	if (!cfg_seen(sec, seen, "hostname"))
		cfg_default_hostname(p);
	for (size_t i = 0; i < cfg->npools; i++)
		if (cfg->pools[i].health.helo[0] == '\0')
			memcpy(cfg->pools[i].health.helo, cfg->hostname,
			    sizeof cfg->pools[i].health.helo);

	for (size_t i = 0; i < cfg->nlisteners && cfg->npools > 0; i++) {
		struct cfg_listener *l = &cfg->listeners[i];
		yaml_node_t *node = p->listener_nodes[i], *n;
		const struct cfg_pool *pool;

		if (l->pool_name[0] == '\0')
			continue;
		pool = cfg_pool_by_name(cfg, l->pool_name);
		if (pool == NULL) {
			n = cfg_map_get(p, node, "pool");
			cfg_error(p, n != NULL ? n : node, "listener \"%s\" refers "
			    "to unknown pool \"%s\"", l->name, l->pool_name);
			continue;
		}
		l->pool = (size_t)(pool - cfg->pools);
		if (pool->proxy != CFG_PROXY_NONE)
			continue;
		for (size_t j = 0; j < l->nbinds; j++) {
			if (cfg_bind_port(cfg, i, j) != 25)
				continue;
			cfg_warn(p, cfg_map_get(p, node, "bind"), "port-25 listener "
			    "\"%s\": pool \"%s\" sends no PROXY header: Postfix "
			    "will see the proxy's address", l->name, pool->name);
			break;
		}
	}
	if (cfg->metrics.enabled && cfg_bind_owner(cfg, &cfg->metrics.bind))
		cfg_error_at(p, cfg->metrics_pos.line, cfg->metrics_pos.column,
		    "metrics.bind: %s is a bind address of listener \"%s\" "
		    "too", cfg->metrics.bind.text,
		    cfg_bind_owner(cfg, &cfg->metrics.bind)->name);
}

static struct config *
cfg_build(struct cfg_parser *p, yaml_node_t *root, const char *name)
{
	struct config *cfg = calloc(1, sizeof *cfg);
	unsigned seen;

	if (cfg == NULL || (cfg->path = strdup(name)) == NULL) {
		free(cfg);
		cfg_error_at(p, 0, 0, "out of memory");
		return NULL;
	}
	p->cfg = cfg;
	cfg->workers = cfg_cpu_count();
	cfg->shutdown_timeout_ms = 60000;
	cfg->sandbox = true;
	cfg->log.target = CFG_LOG_STDERR;
	cfg->log.facility = LOG_MAIL;
	cfg->log.level = CFG_LOG_INFO;
	cfg->log.sessions = CFG_LOG_SESSIONS_ALL;
	snprintf(cfg->log.syslog_socket, sizeof cfg->log.syslog_socket,
	    "/dev/log");
	snprintf(cfg->control.socket, sizeof cfg->control.socket,
	    "/run/smtpfront/control.sock");
	cfg->control.mode = 0600;

	if (root == NULL || cfg_is_null(root)) {
		cfg_error_at(p, 1, 1, "the configuration is empty: it needs "
		    "listeners and pools");
		return cfg;
	}
	if (root->type != YAML_MAPPING_NODE) {
		cfg_error(p, root, "expected a mapping of settings at the top "
		    "level, got %s", cfg_kind_name(root));
		return cfg;
	}
	if (cfg_parse_map(p, root, &cfg_root_section, cfg, &seen) == 0)
		cfg_finish(p, root, seen);
	return cfg;
}

static void
cfg_syntax_error(struct cfg_parser *p, const yaml_parser_t *parser,
    const char *yaml, size_t len)
{
	const char *problem = parser->problem != NULL ? parser->problem : "error";
	unsigned line = (unsigned)parser->problem_mark.line + 1;
	unsigned column = (unsigned)parser->problem_mark.column + 1;

	if (parser->error == YAML_MEMORY_ERROR) {
		cfg_error_at(p, 0, 0, "out of memory");
		return;
	}
	if (parser->error == YAML_READER_ERROR) {
		/* Bad encoding: the reader gives a byte offset, not a mark. */
		line = column = 1;
		for (size_t i = 0; i < parser->problem_offset && i < len; i++) {
			if (yaml[i] == '\n') {
				line++;
				column = 1;
			} else if (((unsigned char)yaml[i] & 0xc0) != 0x80)
				column++;
		}
	}
	/* libyaml says "found character that cannot start any token" of
	 * a tab: name it (issue 20). */
	const char *hint = "";
	if (parser->error != YAML_READER_ERROR &&
	    parser->problem_mark.index < len &&
	    yaml[parser->problem_mark.index] == '\t' &&
	    strstr(problem, "tab") == NULL)
		hint = " (a tab? YAML indents with spaces)";
	if (parser->context != NULL)
		cfg_error_at(p, line, column, "YAML syntax error: %s%s (%s "
		    "started at line %zu, column %zu)", problem, hint,
		    parser->context, parser->context_mark.line + 1,
		    parser->context_mark.column + 1);
	else
		cfg_error_at(p, line, column, "YAML syntax error: %s%s",
		    problem, hint);
}

struct config *
cfg_load_string(const char *yaml, size_t len, const char *name,
    struct cfg_diag *diag)
{
	struct cfg_parser p = { .diag = diag };
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	yaml_node_t *root, *next;
	struct config *cfg = NULL;
	size_t first = diag->n;

	if (name == NULL)
		name = "<string>";
	if (diag->file == NULL)
		diag->file = strdup(name);
	if (!yaml_parser_initialize(&parser)) {
		cfg_error_at(&p, 0, 0, "out of memory");
		return NULL;
	}
	yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
	if (!yaml_parser_load(&parser, &doc)) {	/* it frees doc itself */
		cfg_syntax_error(&p, &parser, yaml, len);
		yaml_parser_delete(&parser);
		return NULL;
	}
	p.doc = &doc;
	root = yaml_document_get_root_node(&doc);
	if (root != NULL) {
		/* A second document would be ignored by a naive reader: refuse it. */
		if (!yaml_parser_load(&parser, &extra)) {
			cfg_syntax_error(&p, &parser, yaml, len);
			yaml_parser_delete(&parser);
			yaml_document_delete(&doc);
			return NULL;
		}
		next = yaml_document_get_root_node(&extra);
		if (next != NULL)
			cfg_error(&p, next, "only one YAML document is allowed");
		yaml_document_delete(&extra);
	}
	yaml_parser_delete(&parser);

	cfg = cfg_build(&p, root, name);
	yaml_document_delete(&doc);
	free(p.listener_nodes);
	cfg_diag_sort(diag, first);
	if (p.nerrors > 0) {
		cfg_free(cfg);
		return NULL;
	}
	return cfg;
}

struct config *
cfg_load_file(const char *path, struct cfg_diag *diag)
{
	struct config *cfg;
	char *buf = NULL;
	size_t len = 0, cap = 0;
	FILE *f;

	if (diag->file == NULL)
		diag->file = strdup(path);
	f = fopen(path, "re");
	if (f == NULL) {
		cfg_diag_add(diag, CFG_ERROR, 0, 0, "cannot read %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	for (;;) {
		size_t n;
		char *nb;

		if (len == cap) {
			cap = cap == 0 ? 8192 : cap * 2;
			if (cap > CFG_FILE_MAX + 1)
				cap = CFG_FILE_MAX + 1;
			nb = realloc(buf, cap);
			if (nb == NULL) {
				errno = ENOMEM;
				break;
			}
			buf = nb;
		}
		n = fread(buf + len, 1, cap - len, f);
		len += n;
		if (n == 0 || len > CFG_FILE_MAX)
			break;
	}
	if (ferror(f) || len == cap || len > CFG_FILE_MAX) {
		int e = len > CFG_FILE_MAX ? EFBIG : errno != 0 ? errno : EIO;
		cfg_diag_add(diag, CFG_ERROR, 0, 0, "cannot read %s: %s", path,
		    strerror(e));
		fclose(f);
		free(buf);
		return NULL;
	}
	fclose(f);
	cfg = cfg_load_string(buf != NULL ? buf : "", len, path, diag);
	free(buf);
	return cfg;
}

void
cfg_free(struct config *cfg)
{
	if (cfg == NULL)
		return;
	for (size_t i = 0; i < cfg->nlisteners; i++) {
		free(cfg->listeners[i].binds);
		free(cfg->listeners[i].trusted_proxies);
		free(cfg->listeners[i].client_limit_exceptions);
		free(cfg->listeners[i].deny);
	}
	free(cfg->listeners);
	for (size_t i = 0; i < cfg->npools; i++)
		free(cfg->pools[i].servers);
	free(cfg->pools);
	free(cfg->hosts);
	free(cfg->path);
	free(cfg);
}

void
cfg_diag_print(const struct cfg_diag *diag, FILE *out)
{
	const char *file = diag->file != NULL ? diag->file : "-";

	for (size_t i = 0; i < diag->n; i++) {
		const struct cfg_diag_entry *e = &diag->entries[i];
		const char *sev = e->severity == CFG_WARNING ? "warning: " : "";

		if (e->line == 0)
			fprintf(out, "%s: %s%s\n", file, sev, e->message);
		else
			fprintf(out, "%s:%u:%u: %s%s\n", file, e->line, e->column,
			    sev, e->message);
	}
}

void
cfg_diag_free(struct cfg_diag *diag)
{
	if (diag == NULL)
		return;
	free(diag->file);
	free(diag->entries);
	memset(diag, 0, sizeof *diag);
}

void
cfg_set_resolve(bool on)
{
	cfg_resolve = on ? CFG_RESOLVE_NOW : CFG_RESOLVE_NEVER;
}

void
cfg_set_resolve_mode(enum cfg_resolve_mode mode)
{
	cfg_resolve = mode;
}

/* ---- after the load ---- */

static void __attribute__((format(printf, 3, 4)))
cfg_error_pos(struct cfg_diag *diag, const struct cfg_pos *pos,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_diag_vadd(diag, CFG_ERROR, pos->line, pos->column, fmt, ap);
	va_end(ap);
}

void
cfg_diag_error_at(struct cfg_diag *diag, const struct cfg_pos *pos,
    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	cfg_diag_vadd(diag, CFG_ERROR, pos->line, pos->column, fmt, ap);
	va_end(ap);
}

int
cfg_host_lookup(const struct cfg_host *h, struct cfg_addr *out, char *err,
    size_t errlen)
{
	return cfg_lookup_addr(h->name, h->port, out, err, errlen);
}

static struct cfg_addr *
cfg_host_target(struct config *cfg, const struct cfg_host *h, char **spec)
{
	if (h->bind && h->list == CFG_HOST_METRICS) {
		*spec = NULL;
		return &cfg->metrics.bind;
	}
	if (h->bind) {
		if (h->list >= cfg->nlisteners ||
		    h->item >= cfg->listeners[h->list].nbinds)
			return NULL;
		*spec = NULL;
		return &cfg->listeners[h->list].binds[h->item];
	}
	if (h->list >= cfg->npools || h->item >= cfg->pools[h->list].nservers)
		return NULL;
	*spec = cfg->pools[h->list].servers[h->item].address_spec;
	return &cfg->pools[h->list].servers[h->item].address;
}

int
cfg_host_apply(struct config *cfg, size_t i, const struct cfg_addr *a,
    const char *lookup_err, struct cfg_diag *diag)
{
	const struct cfg_host *h = &cfg->hosts[i];
	struct cfg_addr *target, got;
	char err[256], written[300], *spec;

	target = cfg_host_target(cfg, h, &spec);
	if (target == NULL)
		return -1;
	if (a == NULL) {
		cfg_error_pos(diag, &h->pos, "%s", lookup_err != NULL ?
		    lookup_err : "cannot resolve host");
		return -1;
	}
	if (spec == NULL) {
		snprintf(written, sizeof written, "%s", target->text);
		spec = written;
	}
	got = *a;
	if ((got.ss.ss_family != AF_INET && got.ss.ss_family != AF_INET6) ||
	    got.len == 0 || got.len > sizeof got.ss) {
		cfg_error_pos(diag, &h->pos, "cannot resolve host \"%s\": no "
		    "usable address", h->name);
		return -1;
	}
	if (cfg_addr_resolved(spec, h->bind, &got, err, sizeof err) == -1) {
		cfg_error_pos(diag, &h->pos, "%s", err);
		return -1;
	}
	*target = got;
	return 0;
}

int
cfg_hosts_finish(struct config *cfg, struct cfg_diag *diag)
{
	int rc = 0;

	for (size_t k = 0; k < cfg->nhosts; k++) {
		const struct cfg_host *h = &cfg->hosts[k];
		const struct cfg_addr *a;

		if (!h->bind)
			continue;
		if (h->list == CFG_HOST_METRICS) {
			const struct cfg_listener *o;

			if (cfg->metrics.bind.len == 0) {
				cfg_error_pos(diag, &h->pos, "host \"%s\" was "
				    "not resolved", h->name);
				rc = -1;
			} else if ((o = cfg_bind_owner(cfg,
			    &cfg->metrics.bind)) != NULL) {
				cfg_error_pos(diag, &h->pos, "metrics.bind: %s "
				    "is a bind address of listener \"%s\" too",
				    cfg->metrics.bind.text, o->name);
				rc = -1;
			}
			continue;
		}
		a = &cfg->listeners[h->list].binds[h->item];
		if (cfg->metrics.enabled && cfg->metrics.bind.len > 0 &&
		    cfg_addr_equal(a, &cfg->metrics.bind)) {
			cfg_error_pos(diag, &h->pos, "duplicate bind address %s "
			    "(also metrics.bind)", a->text);
			rc = -1;
			continue;
		}
		if (a->len == 0) {
			cfg_error_pos(diag, &h->pos, "host \"%s\" was not "
			    "resolved", h->name);
			rc = -1;
			continue;
		}
		for (size_t i = 0; i < cfg->nlisteners; i++) {
			const struct cfg_listener *o = &cfg->listeners[i];

			for (size_t j = 0; j < o->nbinds; j++) {
				if ((i == h->list && j == h->item) ||
				    !cfg_addr_equal(&o->binds[j], a))
					continue;
				cfg_error_pos(diag, &h->pos, "duplicate bind "
				    "address %s (also in listener \"%s\")",
				    a->text, o->name);
				rc = -1;
				i = cfg->nlisteners;
				break;
			}
		}
	}
	for (size_t k = 0; k < cfg->nhosts; k++) {
		const struct cfg_host *h = &cfg->hosts[k];

		if (!h->bind && cfg->pools[h->list].servers[h->item].address.len
		    == 0) {
			cfg_error_pos(diag, &h->pos, "host \"%s\" was not "
			    "resolved", h->name);
			rc = -1;
		}
	}
	return rc;
}

int
cfg_check_accounts(const struct config *cfg, struct cfg_diag *diag)
{
	int rc = 0;

	if (cfg->user[0] != '\0' && getpwnam(cfg->user) == NULL) {
		cfg_error_pos(diag, &cfg->user_pos, "user \"%s\" does not exist",
		    cfg->user);
		rc = -1;
	}
	if (cfg->group[0] != '\0' && getgrnam(cfg->group) == NULL) {
		cfg_error_pos(diag, &cfg->group_pos, "group \"%s\" does not "
		    "exist", cfg->group);
		rc = -1;
	}
	if (cfg->control.group[0] != '\0' &&
	    getgrnam(cfg->control.group) == NULL) {
		cfg_error_pos(diag, &cfg->control_group_pos, "control.group "
		    "\"%s\" does not exist", cfg->control.group);
		rc = -1;
	}
	if (cfg->control.admin_group[0] != '\0' &&
	    getgrnam(cfg->control.admin_group) == NULL) {
		cfg_error_pos(diag, &cfg->control_admin_group_pos,
		    "control.admin_group \"%s\" does not exist",
		    cfg->control.admin_group);
		rc = -1;
	}
	return rc;
}

const struct cfg_pool *
cfg_pool_by_name(const struct config *cfg, const char *name)
{
	for (size_t i = 0; i < cfg->npools; i++)
		if (strcmp(cfg->pools[i].name, name) == 0)
			return &cfg->pools[i];
	return NULL;
}

const struct cfg_server *
cfg_server_by_name(const struct cfg_pool *pool, const char *name)
{
	for (size_t i = 0; i < pool->nservers; i++)
		if (strcmp(pool->servers[i].name, name) == 0)
			return &pool->servers[i];
	return NULL;
}

/* ------------------------------------------------------------ dump */

/*
 * The effective configuration as YAML (smtpfront -n, issue 20): every key
 * of the schema with its value, defaults included, in the schema's order;
 * a string key that is not set is a comment. The keys with a plain kind
 * come from the tables above, so a new one is printed without more code;
 * a K_FUNC key needs its case in cfg_dump_func() (tests/test_config.c
 * checks that every key of the schema is printed).
 */
static void cfg_dump_section(FILE *out, int indent, const struct cfg_section *sec,
    const struct config *cfg, const void *obj, bool first_dash);

static void
cfg_dump_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			fprintf(out, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			fprintf(out, "\\x%02x", c);
		else
			fputc(c, out);
	}
	fputc('"', out);
}

static void
cfg_dump_duration(FILE *out, unsigned ms)
{
	if (ms != 0 && ms % 3600000u == 0)
		fprintf(out, "%uh", ms / 3600000u);
	else if (ms != 0 && ms % 60000u == 0)
		fprintf(out, "%um", ms / 60000u);
	else if (ms != 0 && ms % 1000u == 0)
		fprintf(out, "%us", ms / 1000u);
	else
		fprintf(out, "%ums", ms);
}

/* An address as the file would write it: 192.0.2.1:25, [2001:db8::1]:25;
 * "" when it has none (a name not resolved yet). */
static void
cfg_addr_spec(const struct cfg_addr *a, char *buf, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];

	buf[0] = '\0';
	if (a->ss.ss_family == AF_INET) {
		const struct sockaddr_in *s4 = (const void *)&a->ss;

		inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
		snprintf(buf, cap, "%s:%u", ip, ntohs(s4->sin_port));
	} else if (a->ss.ss_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const void *)&a->ss;

		inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
		snprintf(buf, cap, "[%s]:%u", ip, ntohs(s6->sin6_port));
	}
}

static void
cfg_dump_addr(FILE *out, const struct cfg_addr *a)
{
	char spec[INET6_ADDRSTRLEN + 16];

	cfg_addr_spec(a, spec, sizeof spec);
	cfg_dump_string(out, spec[0] != '\0' ? spec : a->text);
}

static void
cfg_dump_cidrs(FILE *out, const struct cfg_cidr *c, size_t n)
{
	char ip[INET6_ADDRSTRLEN];

	fputc('[', out);
	for (size_t i = 0; i < n; i++) {
		inet_ntop(c[i].family, c[i].addr, ip, sizeof ip);
		fprintf(out, "%s\"%s/%u\"", i > 0 ? ", " : "", ip, c[i].prefix);
	}
	fputs("]\n", out);
}

static void
cfg_dump_key(FILE *out, int indent, bool *dash, const char *name)
{
	fprintf(out, "%*s%s%s:", *dash ? indent - 2 : indent, "",
	    *dash ? "- " : "", name);
	*dash = false;
}

static void
cfg_dump_func(FILE *out, int indent, bool *dash, const struct cfg_key *k,
    const struct config *cfg, const void *obj)
{
	const char *n = k->name;

	if (strcmp(n, "workers") == 0) {
		cfg_dump_key(out, indent, dash, n);
		fprintf(out, " %u\n", cfg->workers);
	} else if (strcmp(n, "sandbox") == 0) {
		cfg_dump_key(out, indent, dash, n);
		fprintf(out, " %s\n", cfg->sandbox ? "true" : "false");
	} else if (strcmp(n, "state_directory") == 0) {
		if (cfg->state_directory[0] == '\0') {
			fprintf(out, "%*s# state_directory: not set (runtime deny "
			    "entries last until a restart)\n", indent, "");
			return;
		}
		cfg_dump_key(out, indent, dash, n);
		fputc(' ', out);
		cfg_dump_string(out, cfg->state_directory);
		fputc('\n', out);
	} else if (strcmp(n, "facility") == 0) {
		const char *name = "mail";

		for (size_t i = 0; i < sizeof cfg_facilities /
		    sizeof cfg_facilities[0]; i++)
			if (cfg_facilities[i].value == cfg->log.facility)
				name = cfg_facilities[i].name;
		cfg_dump_key(out, indent, dash, n);
		fprintf(out, " %s\n", name);
	} else if (strcmp(n, "syslog_socket") == 0) {
		cfg_dump_key(out, indent, dash, n);
		fputc(' ', out);
		cfg_dump_string(out, cfg->log.syslog_socket);
		fputc('\n', out);
	} else if (strcmp(n, "mode") == 0) {
		cfg_dump_key(out, indent, dash, n);
		fprintf(out, " \"%04o\"\n", cfg->control.mode);
	} else if (strcmp(n, "metrics") == 0) {
		if (!cfg->metrics.enabled) {
			fprintf(out, "%*s# metrics: not set (no metrics "
			    "listener)\n", indent, "");
			return;
		}
		cfg_dump_key(out, indent, dash, n);
		fputc('\n', out);
		cfg_dump_section(out, indent + 2, &cfg_metrics_section, cfg,
		    cfg, false);
	} else if (strcmp(n, "bind") == 0 && obj == cfg) {	/* metrics */
		cfg_dump_key(out, indent, dash, n);
		fputc(' ', out);
		cfg_dump_addr(out, &cfg->metrics.bind);
		fputc('\n', out);
	} else if (strcmp(n, "bind") == 0) {
		const struct cfg_listener *l = obj;

		cfg_dump_key(out, indent, dash, n);
		fputs(" [", out);
		for (size_t i = 0; i < l->nbinds; i++) {
			if (i > 0)
				fputs(", ", out);
			cfg_dump_addr(out, &l->binds[i]);
		}
		fputs("]\n", out);
	} else if (strcmp(n, "client_limit_exceptions") == 0) {
		const struct cfg_listener *l = obj;

		cfg_dump_key(out, indent, dash, n);
		fputc(' ', out);
		cfg_dump_cidrs(out, l->client_limit_exceptions,
		    l->nclient_limit_exceptions);
	} else if (strcmp(n, "deny") == 0) {
		const struct cfg_listener *l = obj;

		cfg_dump_key(out, indent, dash, n);
		fputc(' ', out);
		cfg_dump_cidrs(out, l->deny, l->ndeny);
	} else if (strcmp(n, "trusted_proxies") == 0) {
		const struct cfg_listener *l = obj;

		cfg_dump_key(out, indent, dash, n);
		fputc(' ', out);
		cfg_dump_cidrs(out, l->trusted_proxies, l->ntrusted_proxies);
	} else if (strcmp(n, "address") == 0) {
		const struct cfg_server *s = obj;
		char spec[INET6_ADDRSTRLEN + 16];

		/* as written: a host name is resolved again at each reload;
		 * what it resolved to, in a comment */
		cfg_addr_spec(&s->address, spec, sizeof spec);
		cfg_dump_key(out, indent, dash, n);
		fputc(' ', out);
		cfg_dump_string(out, s->address_spec);
		if (spec[0] != '\0' && strcmp(spec, s->address_spec) != 0)
			fprintf(out, "   # %s", spec);
		fputc('\n', out);
	} else if (strcmp(n, "listeners") == 0) {
		cfg_dump_key(out, indent, dash, n);
		fputc('\n', out);
		for (size_t i = 0; i < cfg->nlisteners; i++)
			cfg_dump_section(out, indent + 4, &cfg_listener_section,
			    cfg, &cfg->listeners[i], true);
	} else if (strcmp(n, "pools") == 0) {
		cfg_dump_key(out, indent, dash, n);
		fputc('\n', out);
		for (size_t i = 0; i < cfg->npools; i++) {
			fprintf(out, "%*s%s:\n", indent + 2, "",
			    cfg->pools[i].name);
			cfg_dump_section(out, indent + 4, &cfg_pool_section,
			    cfg, &cfg->pools[i], false);
		}
	} else if (strcmp(n, "servers") == 0) {
		const struct cfg_pool *p = obj;

		cfg_dump_key(out, indent, dash, n);
		fputc('\n', out);
		for (size_t i = 0; i < p->nservers; i++)
			cfg_dump_section(out, indent + 4, &cfg_server_section,
			    cfg, &p->servers[i], true);
	} else
		fprintf(out, "%*s# %s: (smtpfront -n does not print this "
		    "key)\n", indent, "", n);
}

static void
cfg_dump_section(FILE *out, int indent, const struct cfg_section *sec,
    const struct config *cfg, const void *obj, bool dash)
{
	const char *base = obj;

	for (size_t i = 0; i < sec->nkeys; i++) {
		const struct cfg_key *k = &sec->keys[i];
		const void *f = base + k->off;

		switch (k->kind) {
		case CFG_K_UINT:
			cfg_dump_key(out, indent, &dash, k->name);
			fprintf(out, " %u\n", *(const unsigned *)f);
			break;
		case CFG_K_DURATION:
			cfg_dump_key(out, indent, &dash, k->name);
			fputc(' ', out);
			cfg_dump_duration(out, *(const unsigned *)f);
			fputc('\n', out);
			break;
		case CFG_K_BOOL:
			cfg_dump_key(out, indent, &dash, k->name);
			fprintf(out, " %s\n", *(const bool *)f ? "true" :
			    "false");
			break;
		case CFG_K_ENUM:
			cfg_dump_key(out, indent, &dash, k->name);
			fprintf(out, " %s\n", k->names[*(const int *)f]);
			break;
		case CFG_K_NAME:
		case CFG_K_HOST:
		case CFG_K_STRING:
			if (*(const char *)f == '\0') {
				fprintf(out, "%*s# %s: not set\n", indent, "",
				    k->name);
				break;
			}
			cfg_dump_key(out, indent, &dash, k->name);
			fputc(' ', out);
			cfg_dump_string(out, f);
			fputc('\n', out);
			break;
		case CFG_K_MAP:
			cfg_dump_key(out, indent, &dash, k->name);
			fputc('\n', out);
			cfg_dump_section(out, indent + 2, k->section, cfg, f,
			    false);
			break;
		case CFG_K_FUNC:
			cfg_dump_func(out, indent, &dash, k, cfg, obj);
			break;
		}
	}
}

void
cfg_dump(const struct config *cfg, FILE *out)
{
	fprintf(out, "# the effective configuration of %s, defaults "
	    "included (smtpfront -n)\n", cfg->path != NULL ? cfg->path :
	    "(string)");
	cfg_dump_section(out, 0, &cfg_root_section, cfg, cfg, false);
}
