// SPDX-License-Identifier: MIT
/*
 * live.c - what can change while the engine runs: its settings (batch,
 * polling intervals, peer timeout, verbose), services' load-balancing
 * policies, draining and evicting tenants. Everything here runs on the
 * loop thread (nic_call from others), between two loop iterations or at
 * the start of one, so the per-RPC path sees a setting either before or
 * after it changed, never half of it, and takes no lock for it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine_impl.h"

static const struct {
	const char *name;
	uint32_t min, max;
} settings[DG_NIC_SET_N] = {
	[DG_NIC_SET_BATCH] = {"batch", 1, 1024},
	[DG_NIC_SET_SPIN_US] = {"spin_us", 1, 10000000},
	[DG_NIC_SET_IDLE_US] = {"idle_us", 1, 10000000},
	[DG_NIC_SET_POLL_MAX_US] = {"poll_max_us", 1, 1000000},
	[DG_NIC_SET_PEER_TIMEOUT_MS] = {"peer_timeout_ms", 60, 300000},
	[DG_NIC_SET_VERBOSE] = {"verbose", 0, 1},
	[DG_NIC_SET_HOLD_US] = {"hold_us", 1, 10000000},
};

const char *dg_nic_setting_name(enum dg_nic_setting what)
{
	return (unsigned)what < DG_NIC_SET_N ? settings[what].name : NULL;
}

uint32_t dg_nic_setting_get(const struct dg_nic *n, enum dg_nic_setting what)
{
	switch (what) {
	case DG_NIC_SET_BATCH:
		return n->o.read_batch;
	case DG_NIC_SET_SPIN_US:
		return n->o.spin_us;
	case DG_NIC_SET_IDLE_US:
		return n->o.idle_us;
	case DG_NIC_SET_POLL_MAX_US:
		return n->o.poll_max_us;
	case DG_NIC_SET_PEER_TIMEOUT_MS:
		return n->o.peer_timeout_ms ? n->o.peer_timeout_ms : 3000u;
	case DG_NIC_SET_VERBOSE:
		return n->o.verbose;
	case DG_NIC_SET_HOLD_US:
		return n->o.hold_us;
	default:
		return 0;
	}
}

struct set_arg {
	enum dg_nic_setting what;
	uint32_t v;
};

static void set_on_loop(struct dg_nic *n, void *arg)
{
	struct set_arg *a = arg;
	uint32_t i;

	switch (a->what) {
	case DG_NIC_SET_BATCH:
		/* Read by nic_tx_post_read for each READ it posts. */
		n->o.read_batch = a->v;
		break;
	case DG_NIC_SET_SPIN_US:
		n->o.spin_us = a->v;
		break;
	case DG_NIC_SET_IDLE_US:
		n->o.idle_us = a->v;
		break;
	case DG_NIC_SET_POLL_MAX_US:
		/* Idle flows already scheduled keep their next READ time. */
		n->o.poll_max_us = a->v;
		break;
	case DG_NIC_SET_HOLD_US:
		/* Holds under way end by the new bound. */
		n->o.hold_us = a->v;
		break;
	case DG_NIC_SET_PEER_TIMEOUT_MS:
		/* New links take it from the options, those up now here. */
		n->o.peer_timeout_ms = a->v;
		for (i = 0; i < MAX_PEERS; i++)
			if (n->peers[i].used && !n->peers[i].dead)
				dg_peer_set_timeout(n->peers[i].link, a->v);
		break;
	case DG_NIC_SET_VERBOSE:
		n->o.verbose = a->v != 0;
		break;
	default:
		break;
	}
}

int dg_nic_set(struct dg_nic *n, enum dg_nic_setting what, uint32_t value)
{
	struct set_arg a = {what, value};

	if ((unsigned)what >= DG_NIC_SET_N)
		return -EINVAL;
	if (value < settings[what].min || value > settings[what].max)
		return -ERANGE;
	return nic_call(n, set_on_loop, &a, 5000);
}

struct policy_arg {
	const char *service;
	int policy;
	int rc;
};

static void policy_on_loop(struct dg_nic *n, void *arg)
{
	struct policy_arg *a = arg;
	uint32_t i;

	for (i = 0; i < n->nsvc_conf; i++)
		if (!strcmp(n->svc_conf[i].name, a->service))
			break;
	if (a->policy < 0) {
		if (i < n->nsvc_conf)
			n->svc_conf[i] = n->svc_conf[--n->nsvc_conf];
	} else {
		if (i == n->nsvc_conf) {
			if (n->nsvc_conf == MAX_SERVICES) {
				a->rc = -ENOSPC;
				return;
			}
			n->nsvc_conf++;
			snprintf(n->svc_conf[i].name, DG_NAME_MAX, "%s",
				 a->service);
		}
		n->svc_conf[i].lb = (uint8_t)a->policy;
	}
	for (i = 0; i < MAX_SERVICES; i++) {
		struct service *s = &n->services[i];

		if (!s->used || strcmp(s->name, a->service))
			continue;
		if (a->policy < 0) {
			s->lb_fixed = false;
			continue;
		}
		/*
		 * The next request is balanced by the new policy. Requests
		 * already delivered stay where they are and are answered as
		 * before (each server flow tracks its own); a request waiting
		 * for a retry (struct busy) keeps its server flow.
		 */
		s->lb = (uint8_t)a->policy;
		s->lb_fixed = true;
		s->ktab_dirty = true;
	}
}

int dg_nic_set_policy(struct dg_nic *n, const char *service, int policy)
{
	struct policy_arg a = {service, policy, 0};
	int rc;

	if (!service || !service[0] || strlen(service) >= DG_NAME_MAX ||
	    policy > DG_LB_KEY)
		return -EINVAL;
	rc = nic_call(n, policy_on_loop, &a, 5000);
	return rc ? rc : a.rc;
}
