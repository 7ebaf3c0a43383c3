/* SPDX-License-Identifier: MIT */
/*
 * balancer: the four pick algorithms of SPEC.md "Balancing" (smooth weighted
 * round robin, weighted leastconn, weighted rendezvous hashing of the client
 * network onto server names, first-fit in configuration order), the
 * eligibility and backup rules they share, and the client-network key.
 */
#include <math.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "balancer/balancer.h"

struct bal_pool {
	const struct cfg_pool *pool;
	int64_t *current;	/* smooth WRR current weights */
	uint64_t *name_hash;	/* FNV-1a of each server name, for `source` */
	unsigned rotate;	/* leastconn: where a scan for ties starts */
};

/* Which half of the pool a pick may use. */
enum bal_tier {
	BAL_TIER_PRIMARY,
	BAL_TIER_BACKUP,
};

static uint64_t
bal_fnv1a(uint64_t h, const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= UINT64_C(0x100000001b3);
	}
	return h;
}

#define BAL_FNV_OFFSET UINT64_C(0xcbf29ce484222325)

/* splitmix64's finaliser: FNV-1a alone avalanches too poorly for HRW. */
static uint64_t
bal_mix64(uint64_t z)
{
	z += UINT64_C(0x9e3779b97f4a7c15);
	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

struct bal_pool *
bal_pool_new(const struct cfg_pool *pool)
{
	struct bal_pool *bp;
	size_t n = pool->nservers > 0 ? pool->nservers : 1;

	if ((bp = calloc(1, sizeof(*bp))) == NULL)
		return NULL;
	bp->pool = pool;
	bp->current = calloc(n, sizeof(*bp->current));
	bp->name_hash = calloc(n, sizeof(*bp->name_hash));
	if (bp->current == NULL || bp->name_hash == NULL) {
		bal_pool_free(bp);
		return NULL;
	}
	for (size_t i = 0; i < pool->nservers; i++) {
		const char *name = pool->servers[i].name;

		bp->name_hash[i] = bal_fnv1a(BAL_FNV_OFFSET,
		    (const unsigned char *)name, strnlen(name, CFG_NAME_MAX));
	}
	return bp;
}

void
bal_pool_free(struct bal_pool *bp)
{
	if (bp == NULL)
		return;
	free(bp->current);
	free(bp->name_hash);
	free(bp);
}

static bool
bal_eligible(const struct bal_pool *bp, const struct bal_server *view,
    const bool *tried, size_t i, enum bal_tier tier)
{
	const struct cfg_server *s = &bp->pool->servers[i];

	if (s->backup != (tier == BAL_TIER_BACKUP))
		return false;
	if (!view[i].usable || (tried != NULL && tried[i]) || s->weight == 0)
		return false;
	return s->max_connections == 0 || view[i].active < s->max_connections;
}

/*
 * nginx's smooth weighted round robin over the eligible servers: spreads a
 * heavy server's turns through the cycle instead of sending them in a burst.
 */
static int
bal_pick_roundrobin(struct bal_pool *bp, const struct bal_server *view,
    const bool *tried, enum bal_tier tier)
{
	int best = -1;
	int64_t total = 0;

	for (size_t i = 0; i < bp->pool->nservers; i++) {
		if (!bal_eligible(bp, view, tried, i, tier))
			continue;
		bp->current[i] += bp->pool->servers[i].weight;
		total += bp->pool->servers[i].weight;
		if (best == -1 || bp->current[i] > bp->current[best])
			best = (int)i;
	}
	if (best != -1)
		bp->current[best] -= total;
	return best;
}

/*
 * Lowest (active + 1) / weight, i.e. the server whose load relative to its
 * weight is lowest once it has this session; equal weights make that plain
 * fewest-active. Ties go to fewer active, then to the first in an order whose
 * start rotates per pick, so idle servers share new sessions.
 */
static int
bal_pick_leastconn(struct bal_pool *bp, const struct bal_server *view,
    const bool *tried, enum bal_tier tier)
{
	size_t n = bp->pool->nservers;
	size_t start;
	int best = -1;

	if (n == 0)
		return -1;
	start = bp->rotate++ % n;
	for (size_t k = 0; k < n; k++) {
		size_t i = (start + k) % n;
		uint64_t li, lb;

		if (!bal_eligible(bp, view, tried, i, tier))
			continue;
		if (best == -1) {
			best = (int)i;
			continue;
		}
		/* cross-multiplied to compare the ratios exactly */
		li = ((uint64_t)view[i].active + 1) *
		    bp->pool->servers[best].weight;
		lb = ((uint64_t)view[best].active + 1) *
		    bp->pool->servers[i].weight;
		if (li < lb || (li == lb && view[i].active < view[best].active))
			best = (int)i;
	}
	return best;
}

/*
 * Weighted rendezvous hashing: each server scores -weight / ln(u) with u a
 * uniform (0,1) drawn from hash(name, client network); the best score wins.
 * Only names, weights and the key enter, so every host agrees, and removing
 * a server moves only the clients for which it had the best score.
 */
static int
bal_pick_source(struct bal_pool *bp, const struct bal_server *view,
    const bool *tried, enum bal_tier tier, uint64_t key_hash)
{
	int best = -1;
	double best_score = 0;

	for (size_t i = 0; i < bp->pool->nservers; i++) {
		uint64_t h;
		double u, score;

		if (!bal_eligible(bp, view, tried, i, tier))
			continue;
		h = bal_mix64(bp->name_hash[i] ^ key_hash);
		/* top 53 bits, centred so u is never 0 or 1 */
		u = ((double)(h >> 11) + 0.5) * (1.0 / 9007199254740992.0);
		score = -(double)bp->pool->servers[i].weight / log(u);
		if (best == -1 || score > best_score) {
			best = (int)i;
			best_score = score;
		}
	}
	return best;
}

static int
bal_pick_first(struct bal_pool *bp, const struct bal_server *view,
    const bool *tried, enum bal_tier tier)
{
	for (size_t i = 0; i < bp->pool->nservers; i++)
		if (bal_eligible(bp, view, tried, i, tier))
			return (int)i;
	return -1;
}

static int
bal_pick_tier(struct bal_pool *bp, const struct bal_server *view,
    const bool *tried, enum bal_tier tier, bool have_key, uint64_t key_hash)
{
	switch (bp->pool->balance) {
	case CFG_BALANCE_LEASTCONN:
		return bal_pick_leastconn(bp, view, tried, tier);
	case CFG_BALANCE_SOURCE:
		/* no IP client (should not happen): spread, don't fail */
		if (have_key)
			return bal_pick_source(bp, view, tried, tier, key_hash);
		return bal_pick_roundrobin(bp, view, tried, tier);
	case CFG_BALANCE_FIRST:
		return bal_pick_first(bp, view, tried, tier);
	case CFG_BALANCE_ROUNDROBIN:
	default:
		return bal_pick_roundrobin(bp, view, tried, tier);
	}
}

int
bal_pick(struct bal_pool *bp, const struct bal_server *view,
    const bool *tried, const struct sockaddr *client)
{
	uint64_t key_hash = 0;
	bool have_key = false;
	int i;

	if (bp->pool->balance == CFG_BALANCE_SOURCE && client != NULL) {
		unsigned char key[16];
		unsigned char family;
		int af = bal_client_key(bp->pool, client, key);

		if (af != -1) {
			/* the family keeps 10.0.0.0/24 apart from 0a00::/64 */
			family = af == AF_INET ? 4 : 6;
			key_hash = bal_fnv1a(BAL_FNV_OFFSET, &family, 1);
			key_hash = bal_mix64(bal_fnv1a(key_hash, key,
			    sizeof(key)));
			have_key = true;
		}
	}
	i = bal_pick_tier(bp, view, tried, BAL_TIER_PRIMARY, have_key,
	    key_hash);
	if (i == -1)
		i = bal_pick_tier(bp, view, tried, BAL_TIER_BACKUP, have_key,
		    key_hash);
	return i;
}

static void
bal_mask(unsigned char *addr, size_t len, unsigned prefix)
{
	for (size_t i = 0; i < len; i++) {
		if (prefix >= 8) {
			prefix -= 8;
		} else {
			addr[i] &= (unsigned char)(0xff << (8 - prefix));
			prefix = 0;
		}
	}
}

int
bal_client_key(const struct cfg_pool *pool, const struct sockaddr *client,
    unsigned char key[16])
{
	unsigned prefix4 = pool->prefix4 > 32 ? 32 : pool->prefix4;
	unsigned prefix6 = pool->prefix6 > 128 ? 128 : pool->prefix6;

	memset(key, 0, 16);
	if (client == NULL)
		return -1;
	if (client->sa_family == AF_INET) {
		const struct sockaddr_in *sin =
		    (const struct sockaddr_in *)client;

		memcpy(key, &sin->sin_addr, 4);
		bal_mask(key, 4, prefix4);
		return AF_INET;
	}
	if (client->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)client;

		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr)) {
			memcpy(key, &sin6->sin6_addr.s6_addr[12], 4);
			bal_mask(key, 4, prefix4);
			return AF_INET;
		}
		memcpy(key, &sin6->sin6_addr, 16);
		bal_mask(key, 16, prefix6);
		return AF_INET6;
	}
	return -1;
}
