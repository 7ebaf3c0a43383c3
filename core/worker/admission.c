/* SPDX-License-Identifier: MIT */
/*
 * admission: the checks of SPEC.md "Admission" and the counts a session
 * holds. Each count is reserved first (this worker's own +1), then summed
 * over every worker (the +1 included) and given back when the sum is over
 * the limit; see core/worker/clients.h for why that is exact. A count
 * that cannot be read refuses the client (421, try again later): there
 * is no path on which an unreadable table admits.
 */
#include <stdio.h>
#include <string.h>

#include "balancer/balancer.h"
#include "core/deny.h"
#include "core/log.h"
#include "core/shm.h"
#include "core/worker/admission.h"

const char *const admit_verdict_names[] = {
	"ok", "denied", "denied", "overload", "client-limit", "client-rate",
};

void
admission_hold_listener(const struct rt_listener *l, struct admit_hold *h)
{
	if (!h->listener) {
		shm_listener_add(l->slot, +1);
		h->listener = true;
	}
}

void
admission_release(const struct rt_listener *l, struct admit_hold *h)
{
	if (h->listener) {
		shm_listener_add(l->slot, -1);
		h->listener = false;
	}
	if (h->client) {
		if (clients_add(&h->key, -1) == -1)
			log_debug("admission: client network not counted");
		h->client = false;
	}
}

/* Refuse: give back what this check took (not what was held before). */
static enum admit_verdict
admission_refuse(const struct rt_listener *l, struct admit_hold *h,
    bool had_listener, enum admit_verdict v)
{
	if (h->client) {
		(void)!clients_add(&h->key, -1);
		h->client = false;
	}
	if (h->listener && !had_listener) {
		shm_listener_add(l->slot, -1);
		h->listener = false;
	}
	return v;
}

enum admit_verdict
admission_check(const struct rt_listener *l, const struct cfg_pool *pool,
    const struct sockaddr *peer, struct admit_hold *h, char *why, size_t cap)
{
	const struct cfg_listener *lc = l->cfg;
	bool had_listener = h->listener, exempt;
	struct cfg_cidr a, hit;
	char net[64];
	uint32_t sum, sec;
	int fam;

	why[0] = '\0';
	/* The deny lists first: a banned client costs no count. */
	if (deny_addr_of(peer, &a)) {
		const struct cfg_cidr *d = deny_list_match(lc->deny, lc->ndeny,
		    &a);

		if (d != NULL) {
			deny_cidr_fmt(d, net, sizeof(net));
			snprintf(why, cap, "listener deny list: %s", net);
			return admission_refuse(l, h, had_listener,
			    ADMIT_DENIED);
		}
		switch (deny_lookup(&a, deny_now_ms(), &hit)) {
		case DENY_YES:
			deny_cidr_fmt(&hit, net, sizeof(net));
			snprintf(why, cap, "runtime deny entry: %s", net);
			return admission_refuse(l, h, had_listener,
			    ADMIT_DENIED_RUNTIME);
		case DENY_UNKNOWN:
			snprintf(why, cap, "deny table unreadable");
			return admission_refuse(l, h, had_listener,
			    ADMIT_OVERLOAD);
		case DENY_NO:
			break;
		}
	}
	/* max_connections: this session counts before it looks. */
	if (!h->listener) {
		shm_listener_add(l->slot, +1);
		h->listener = true;
	}
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (shm_listener_active(l->slot) > lc->max_connections)
		return admission_refuse(l, h, had_listener, ADMIT_OVERLOAD);
	if (lc->max_connections_per_client == 0 &&
	    lc->max_connection_rate_per_client == 0)
		return ADMIT_OK;
	exempt = deny_list_match(lc->client_limit_exceptions,
	    lc->nclient_limit_exceptions, &a) != NULL;
	if (exempt)
		return ADMIT_OK;
	memset(&h->key, 0, sizeof(h->key));
	fam = bal_client_key(pool, peer, h->key.net);
	h->key.family = fam > 0 ? (uint8_t)fam : 0;
	h->key.listener = (uint16_t)l->slot;
	if (lc->max_connections_per_client != 0) {
		if (clients_reserve(&h->key, &sum) == -1) {
			snprintf(why, cap, "per-client table full or "
			    "unreadable");
			return admission_refuse(l, h, had_listener,
			    ADMIT_OVERLOAD);
		}
		h->client = true;
		if (sum > lc->max_connections_per_client)
			return admission_refuse(l, h, had_listener,
			    ADMIT_CLIENT_LIMIT);
	}
	if (lc->max_connection_rate_per_client != 0) {
		if (clients_rate_reserve(&h->key, &sum, &sec) == -1) {
			snprintf(why, cap, "rate table unreadable");
			return admission_refuse(l, h, had_listener,
			    ADMIT_OVERLOAD);
		}
		if (sum > lc->max_connection_rate_per_client) {
			/* Not counted: a refused attempt is not a connection
			 * (the client is served again as soon as its oldest
			 * connection in the window is a minute old). */
			clients_rate_undo(&h->key, sec);
			snprintf(why, cap, "%u new connections in the last "
			    "minute (limit %u)", sum - 1,
			    lc->max_connection_rate_per_client);
			return admission_refuse(l, h, had_listener,
			    ADMIT_CLIENT_RATE);
		}
	}
	return ADMIT_OK;
}
