/* SPDX-License-Identifier: MIT */
/*
 * deny: one memory file (memfd) of its own, mapped by the master before
 * any fork, so every worker sees the same table and a reload (new workers,
 * same master) keeps it; a binary upgrade keeps it by passing the file.
 *
 *   header   a sequence counter (odd while the master writes), the number
 *            of entries, and how many entries there are of each prefix
 *            length per family: a lookup probes only the lengths in use
 *   slots    an open-addressing table (linear probing, deletion by
 *            backward shift, at most half full) keyed by family, prefix
 *            length and network bytes, with the expiry
 *   records  the reason and the time added, by record number (only the
 *            master reads them: `deny list`, the state file)
 *
 * One writer, the master; each of its changes is one short bracket of the
 * sequence counter, so a reader that finds it odd waits a moment (never
 * for a lock a dead process holds: the master dying ends every worker).
 * An entry past its expiry is ignored by readers at once, whenever the
 * master gets to remove it.
 */
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "config/value.h"
#include "core/deny.h"
#include "core/log.h"

#define DENY_MAGIC		0x53464e59u	/* "SFNY" */
#define DENY_SLOTS		(2 * DENY_MAX)	/* a power of two */
#define DENY_READ_TRIES		10000
#define DENY_YIELD_EVERY	16

struct deny_slot {
	uint8_t net[16];
	uint8_t fam;			/* 0 = empty, 1 = IPv4, 2 = IPv6 */
	uint8_t prefix;
	uint16_t pad;
	uint32_t rec;
	int64_t expires_ms;		/* 0 = never */
};
_Static_assert(sizeof(struct deny_slot) == 32, "slot size");

struct deny_rec {
	int64_t added_ms;
	char reason[DENY_REASON_MAX + 1];
};

struct deny_hdr {
	uint32_t magic;
	uint32_t seq;
	uint32_t count;
	uint32_t pad;
	uint32_t nlen[2][129];
};

struct deny_mem {
	struct deny_hdr h;
	struct deny_slot slot[DENY_SLOTS];
	struct deny_rec rec[DENY_MAX];
};

static struct deny_mem *mem;
static int mem_fd = -1;
/* Master: free record numbers. */
static uint32_t *free_recs;
static size_t nfree;

/* ------------------------------------------------------------ CIDRs */

bool
deny_addr_of(const struct sockaddr *sa, struct cfg_cidr *out)
{
	const struct sockaddr_in6 *s6;

	memset(out, 0, sizeof(*out));
	if (sa->sa_family == AF_INET) {
		out->family = AF_INET;
		out->prefix = 32;
		memcpy(out->addr, &((const struct sockaddr_in *)sa)->sin_addr,
		    4);
		return true;
	}
	if (sa->sa_family != AF_INET6)
		return false;
	s6 = (const struct sockaddr_in6 *)sa;
	if (IN6_IS_ADDR_V4MAPPED(&s6->sin6_addr)) {
		out->family = AF_INET;
		out->prefix = 32;
		memcpy(out->addr, s6->sin6_addr.s6_addr + 12, 4);
		return true;
	}
	out->family = AF_INET6;
	out->prefix = 128;
	memcpy(out->addr, s6->sin6_addr.s6_addr, 16);
	return true;
}

/* a's bytes with the bits past `prefix` zeroed. */
static void
deny_mask(const uint8_t *a, unsigned prefix, unsigned len, uint8_t *out)
{
	memset(out, 0, 16);
	memcpy(out, a, prefix / 8);
	if (prefix % 8 != 0 && prefix / 8 < len)
		out[prefix / 8] = a[prefix / 8] &
		    (uint8_t)(0xff00u >> (prefix % 8));
}

bool
deny_cidr_match(const struct cfg_cidr *net, const struct cfg_cidr *a)
{
	uint8_t m[16];

	if (net->family != a->family)
		return false;
	deny_mask(a->addr, net->prefix, a->family == AF_INET ? 4 : 16, m);
	return memcmp(m, net->addr, a->family == AF_INET ? 4 : 16) == 0;
}

const struct cfg_cidr *
deny_list_match(const struct cfg_cidr *list, size_t n,
    const struct cfg_cidr *a)
{
	for (size_t i = 0; i < n; i++)
		if (deny_cidr_match(&list[i], a))
			return &list[i];
	return NULL;
}

void
deny_cidr_unmap(struct cfg_cidr *c)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };

	if (c->family != AF_INET6 || c->prefix < 96 ||
	    memcmp(c->addr, mapped, sizeof(mapped)) != 0)
		return;
	memmove(c->addr, c->addr + 12, 4);
	memset(c->addr + 4, 0, 12);
	c->family = AF_INET;
	c->prefix -= 96;
}

void
deny_cidr_fmt(const struct cfg_cidr *c, char *buf, size_t cap)
{
	char ip[INET6_ADDRSTRLEN];
	unsigned max = c->family == AF_INET ? 32 : 128;

	if (inet_ntop(c->family, c->addr, ip, sizeof(ip)) == NULL)
		snprintf(ip, sizeof(ip), "?");
	if (c->prefix == max)
		snprintf(buf, cap, "%s", ip);
	else
		snprintf(buf, cap, "%s/%u", ip, c->prefix);
}

int64_t
deny_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ table */

static uint32_t
deny_hash(unsigned fam, unsigned prefix, const uint8_t *net)
{
	uint32_t h = 2166136261u;

	h = (h ^ fam) * 16777619u;
	h = (h ^ prefix) * 16777619u;
	for (unsigned i = 0; i < (fam == 1 ? 4u : 16u); i++)
		h = (h ^ net[i]) * 16777619u;
	h ^= h >> 15;
	h *= 0x2c1b3c6du;
	h ^= h >> 12;
	return h;
}

static unsigned
deny_fam(int family)
{
	return family == AF_INET ? 1 : family == AF_INET6 ? 2 : 0;
}

/* The slot holding (fam, prefix, net), or the empty one that ends its
 * chain. */
static uint32_t
deny_find(const struct deny_mem *m, unsigned fam, unsigned prefix,
    const uint8_t *net)
{
	const uint32_t mask = DENY_SLOTS - 1;
	uint32_t i = deny_hash(fam, prefix, net) & mask;

	for (uint32_t n = 0; n <= mask; n++, i = (i + 1) & mask) {
		const struct deny_slot *s = &m->slot[i];
		uint8_t f = __atomic_load_n(&s->fam, __ATOMIC_RELAXED);

		if (f == 0 || (f == fam && s->prefix == prefix &&
		    memcmp(s->net, net, 16) == 0))
			return i;
	}
	return UINT32_MAX;
}

static void
deny_write_begin(void)
{
	__atomic_store_n(&mem->h.seq, mem->h.seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
}

static void
deny_write_end(void)
{
	__atomic_thread_fence(__ATOMIC_RELEASE);
	__atomic_store_n(&mem->h.seq, mem->h.seq + 1, __ATOMIC_RELAXED);
}

void
deny_write_hold(bool held)
{
	if (mem != NULL && held != ((mem->h.seq & 1) != 0)) {
		if (held)
			deny_write_begin();
		else
			deny_write_end();
	}
}

static void
deny_map(int fd)
{
	void *p = mmap(NULL, sizeof(struct deny_mem), PROT_READ | PROT_WRITE,
	    MAP_SHARED, fd, 0);

	if (p == MAP_FAILED)
		fatal("deny table: mmap");
	mem = p;
	mem_fd = fd;
	free(free_recs);
	if ((free_recs = calloc(DENY_MAX, sizeof(*free_recs))) == NULL)
		fatal("deny table: out of memory");
	nfree = 0;
}

/* Every record number no slot uses is free (highest first, so the
 * lowest are used first). */
static void
deny_rebuild_free(void)
{
	uint8_t *used = calloc(DENY_MAX, 1);

	if (used == NULL)
		fatal("deny table: out of memory");
	for (uint32_t i = 0; i < DENY_SLOTS; i++)
		if (mem->slot[i].fam != 0 && mem->slot[i].rec < DENY_MAX)
			used[mem->slot[i].rec] = 1;
	nfree = 0;
	for (uint32_t r = DENY_MAX; r-- > 0; )
		if (!used[r])
			free_recs[nfree++] = r;
	free(used);
}

void
deny_create(void)
{
	int fd = memfd_create("smtpfront-deny", MFD_CLOEXEC);

	if (fd == -1)
		fatal("memfd_create");
	if (ftruncate(fd, (off_t)sizeof(struct deny_mem)) == -1)
		fatal("deny table: ftruncate");
	deny_map(fd);
	mem->h.magic = DENY_MAGIC;
	deny_rebuild_free();
}

int
deny_fd(void)
{
	return mem_fd;
}

int
deny_adopt(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == -1 || (size_t)st.st_size !=
	    sizeof(struct deny_mem)) {
		errno = EINVAL;
		return -1;
	}
	deny_map(fd);
	if (mem->h.magic != DENY_MAGIC) {
		errno = EINVAL;
		return -1;
	}
	deny_rebuild_free();
	return 0;
}

size_t
deny_count(void)
{
	return mem != NULL ? __atomic_load_n(&mem->h.count, __ATOMIC_RELAXED) :
	    0;
}

/* A reason as it is kept: printable ASCII, bounded. */
static void
deny_reason_copy(char *dst, const char *src)
{
	size_t n = 0;

	for (; src != NULL && *src != '\0' && n < DENY_REASON_MAX; src++)
		dst[n++] = (*src >= 0x20 && *src < 0x7f) ? *src : '?';
	dst[n] = '\0';
}

int
deny_add(const struct cfg_cidr *net, int64_t expires_ms, int64_t added_ms,
    const char *reason, char *err, size_t errlen)
{
	unsigned fam = deny_fam(net->family);
	struct deny_slot *s;
	uint32_t i;

	if (mem == NULL || fam == 0 || net->prefix > (fam == 1 ? 32u : 128u)) {
		snprintf(err, errlen, "bad network");
		return -1;
	}
	i = deny_find(mem, fam, net->prefix, net->addr);
	if (i == UINT32_MAX) {
		snprintf(err, errlen, "deny table full");
		return -1;
	}
	s = &mem->slot[i];
	if (s->fam == 0 && (mem->h.count >= DENY_MAX || nfree == 0)) {
		snprintf(err, errlen, "deny table full (%u entries)",
		    DENY_MAX);
		return -1;
	}
	deny_write_begin();
	if (s->fam == 0) {
		memcpy(s->net, net->addr, 16);
		s->prefix = (uint8_t)net->prefix;
		s->rec = free_recs[--nfree];
		mem->h.nlen[fam - 1][net->prefix]++;
		mem->h.count++;
		__atomic_store_n(&s->fam, (uint8_t)fam, __ATOMIC_RELAXED);
	}
	s->expires_ms = expires_ms;
	mem->rec[s->rec].added_ms = added_ms;
	deny_reason_copy(mem->rec[s->rec].reason, reason);
	deny_write_end();
	return 0;
}

/* Empty slot i (inside a write bracket) and pull later members of its
 * chain back. */
static void
deny_remove_at(uint32_t i)
{
	const uint32_t mask = DENY_SLOTS - 1;
	struct deny_slot *s = &mem->slot[i];
	uint32_t j = i, home;

	mem->h.nlen[s->fam - 1][s->prefix]--;
	mem->h.count--;
	free_recs[nfree++] = s->rec;
	for (;;) {
		j = (j + 1) & mask;
		if (mem->slot[j].fam == 0)
			break;
		home = deny_hash(mem->slot[j].fam, mem->slot[j].prefix,
		    mem->slot[j].net) & mask;
		if (i <= j ? (home > i && home <= j) :
		    (home > i || home <= j))
			continue;
		mem->slot[i] = mem->slot[j];
		i = j;
	}
	memset(&mem->slot[i], 0, sizeof(mem->slot[i]));
}

bool
deny_del(const struct cfg_cidr *net)
{
	unsigned fam = deny_fam(net->family);
	uint32_t i;

	if (mem == NULL || fam == 0)
		return false;
	i = deny_find(mem, fam, net->prefix, net->addr);
	if (i == UINT32_MAX || mem->slot[i].fam == 0)
		return false;
	deny_write_begin();
	deny_remove_at(i);
	deny_write_end();
	return true;
}

static void
deny_entry_of(const struct deny_slot *s, struct deny_entry *e)
{
	memset(e, 0, sizeof(*e));
	e->net.family = s->fam == 1 ? AF_INET : AF_INET6;
	e->net.prefix = s->prefix;
	memcpy(e->net.addr, s->net, 16);
	e->expires_ms = s->expires_ms;
	if (s->rec < DENY_MAX) {
		e->added_ms = mem->rec[s->rec].added_ms;
		memcpy(e->reason, mem->rec[s->rec].reason, DENY_REASON_MAX);
		e->reason[DENY_REASON_MAX] = '\0';
	}
}

size_t
deny_expire(int64_t now_ms, void (*fn)(const struct deny_entry *e,
    void *arg), void *arg, int64_t *next_ms)
{
	struct deny_entry e;
	size_t n = 0;

	*next_ms = 0;
	if (mem == NULL || mem->h.count == 0)
		return 0;
	for (uint32_t i = 0; i < DENY_SLOTS; ) {
		const struct deny_slot *s = &mem->slot[i];

		if (s->fam == 0 || s->expires_ms == 0) {
			i++;
			continue;
		}
		if (s->expires_ms > now_ms) {
			if (*next_ms == 0 || s->expires_ms < *next_ms)
				*next_ms = s->expires_ms;
			i++;
			continue;
		}
		if (fn != NULL) {
			deny_entry_of(s, &e);
			fn(&e, arg);
		}
		/* One bracket per entry: readers wait for one entry at
		 * most. The hole is filled from later: look at i again. */
		deny_write_begin();
		deny_remove_at(i);
		deny_write_end();
		n++;
	}
	return n;
}

void
deny_foreach(bool (*fn)(const struct deny_entry *e, void *arg), void *arg)
{
	struct deny_entry e;

	for (uint32_t i = 0; mem != NULL && i < DENY_SLOTS; i++) {
		const struct deny_slot *s = &mem->slot[i];

		if (s->fam == 0)
			continue;
		deny_entry_of(s, &e);
		if (!fn(&e, arg))
			return;
	}
}

/* ------------------------------------------------------------ state file */

struct deny_save_ctx {
	FILE *f;
	int64_t now;
};

static bool
deny_save_one(const struct deny_entry *e, void *arg)
{
	struct deny_save_ctx *c = arg;
	char net[INET6_ADDRSTRLEN + 8];

	if (e->expires_ms != 0 && e->expires_ms <= c->now)
		return true;
	deny_cidr_fmt(&e->net, net, sizeof(net));
	fprintf(c->f, "%s %lld %lld %s\n", net, (long long)e->expires_ms,
	    (long long)e->added_ms, e->reason);
	return true;
}

int
deny_save(const char *dir, char *err, size_t errlen)
{
	char path[4096], tmp[4096];
	struct deny_save_ctx c;
	int fd;

	if (snprintf(path, sizeof(path), "%s/%s", dir, DENY_STATE_FILE) >=
	    (int)sizeof(path) || snprintf(tmp, sizeof(tmp), "%s/.%s.tmp",
	    dir, DENY_STATE_FILE) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%s: path too long", dir);
		return -1;
	}
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd == -1 || (c.f = fdopen(fd, "w")) == NULL) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		if (fd != -1)
			close(fd);
		return -1;
	}
	c.now = deny_now_ms();
	fprintf(c.f, "# smtpfront runtime deny entries: network, expiry and "
	    "time added (ms since 1970, expiry 0 = never), reason\n");
	deny_foreach(deny_save_one, &c);
	if (fflush(c.f) == EOF || ferror(c.f) || fsync(fd) == -1) {
		snprintf(err, errlen, "%s: %s", tmp, strerror(errno));
		fclose(c.f);
		unlink(tmp);
		return -1;
	}
	if (fclose(c.f) == EOF || rename(tmp, path) == -1) {
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	/* The rename itself is durable once the directory is. */
	if ((fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) != -1) {
		(void)fsync(fd);
		close(fd);
	}
	return 0;
}

long
deny_load(const char *dir, size_t *skipped, char *err, size_t errlen)
{
	char path[4096], line[512], cerr[256], aerr[128];
	int64_t now = deny_now_ms();
	long added = 0;
	FILE *f;

	*skipped = 0;
	if (snprintf(path, sizeof(path), "%s/%s", dir, DENY_STATE_FILE) >=
	    (int)sizeof(path)) {
		snprintf(err, errlen, "%s: path too long", dir);
		return -1;
	}
	if ((f = fopen(path, "re")) == NULL) {
		if (errno == ENOENT)
			return 0;
		snprintf(err, errlen, "%s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f) != NULL) {
		char *save = NULL, *net, *exp, *add, *reason, *end;
		long long e, a;
		struct cfg_cidr c;
		size_t n = strlen(line);

		if (n > 0 && line[n - 1] == '\n')
			line[--n] = '\0';
		if (line[0] == '#' || line[0] == '\0')
			continue;
		net = strtok_r(line, " ", &save);
		exp = strtok_r(NULL, " ", &save);
		add = strtok_r(NULL, " ", &save);
		reason = save != NULL ? save : "";
		if (net == NULL || exp == NULL || add == NULL ||
		    cfg_parse_cidr(net, &c, cerr, sizeof(cerr)) == -1) {
			(*skipped)++;
			continue;
		}
		errno = 0;
		e = strtoll(exp, &end, 10);
		if (errno != 0 || *end != '\0' || e < 0) {
			(*skipped)++;
			continue;
		}
		a = strtoll(add, &end, 10);
		if (errno != 0 || *end != '\0') {
			(*skipped)++;
			continue;
		}
		if (e != 0 && e <= now)
			continue;	/* expired while smtpfront was down */
		if (deny_add(&c, e, a, reason, aerr, sizeof(aerr)) == -1) {
			(*skipped)++;
			continue;
		}
		added++;
	}
	fclose(f);
	return added;
}

/* ------------------------------------------------------------ lookup */

enum deny_verdict
deny_lookup(const struct cfg_cidr *a, int64_t now_ms, struct cfg_cidr *hit)
{
	unsigned fam = deny_fam(a->family), max = fam == 1 ? 32 : 128;
	unsigned tries = 0;

	if (mem == NULL || fam == 0)
		return DENY_NO;
	for (;;) {
		enum deny_verdict v = DENY_NO;
		uint32_t s1;

		if (++tries > DENY_READ_TRIES)
			return DENY_UNKNOWN;
		if (tries % DENY_YIELD_EVERY == 0)
			sched_yield();
		s1 = __atomic_load_n(&mem->h.seq, __ATOMIC_ACQUIRE);
		if (s1 & 1)
			continue;
		if (__atomic_load_n(&mem->h.count, __ATOMIC_RELAXED) != 0) {
			for (unsigned len = max + 1; len-- > 0 && v == DENY_NO; ) {
				uint8_t net[16];
				uint32_t i;
				int64_t exp;

				if (__atomic_load_n(&mem->h.nlen[fam - 1][len],
				    __ATOMIC_RELAXED) == 0)
					continue;
				deny_mask(a->addr, len, max / 8, net);
				i = deny_find(mem, fam, len, net);
				if (i == UINT32_MAX || __atomic_load_n(
				    &mem->slot[i].fam, __ATOMIC_RELAXED) == 0)
					continue;
				exp = __atomic_load_n(&mem->slot[i].expires_ms,
				    __ATOMIC_RELAXED);
				if (exp != 0 && exp <= now_ms)
					continue;
				v = DENY_YES;
				if (hit != NULL) {
					memset(hit, 0, sizeof(*hit));
					hit->family = a->family;
					hit->prefix = len;
					memcpy(hit->addr, net, 16);
				}
			}
		}
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&mem->h.seq, __ATOMIC_RELAXED) == s1)
			return v;
	}
}
