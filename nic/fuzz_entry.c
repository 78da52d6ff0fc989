// SPDX-License-Identifier: MIT
/*
 * fuzz_entry.c - internal entry points for the fuzz harnesses
 * (tests/fuzz/fuzz_entry.h): a synchronous local attach for a harness that
 * drives the engine with dg_nic_poll() on its own thread, and a check of
 * the engine's bookkeeping after each step. Built only into the harnesses,
 * never into dagger-nic or libdagger.
 */
#include "fuzz_entry.h"

#include <errno.h>
#include <stdio.h>

#include "engine_impl.h"

int nic_fuzz_attach(struct dg_nic *n, void *region, uint64_t size)
{
	struct dg_region_hdr hdr;
	struct dg_hostmem *hm;
	int rc;

	if (size < sizeof(hdr))
		return -EINVAL;
	rc = dg_hostmem_local_create(region, size, &hm);
	if (rc)
		return rc;
	/* As nic_take_pending(): the engine's own copy of the header. */
	memcpy(&hdr, region, sizeof(hdr));
	rc = nic_tenant_init(n, hm, &hdr, region, 0, NULL, 0);
	if (rc < 0)
		hm->ops->destroy(hm);
	else /* the harness's tenants are strangers to each other */
		n->tenants[rc].uid = NO_UID;
	return rc;
}

void nic_fuzz_detach(struct dg_nic *n, int tenant)
{
	if (tenant >= 0 && tenant < MAX_TENANTS && n->tenants[tenant].used)
		nic_tenant_free(n, (uint32_t)tenant);
}

bool nic_fuzz_serves(struct dg_nic *n, const char *name, int tenant)
{
	uint32_t i, j;

	for (i = 0; i < MAX_SERVICES; i++) {
		struct service *s = &n->services[i];

		if (!s->used || strncmp(s->name, name, DG_NAME_MAX))
			continue;
		for (j = 0; j < s->nservers; j++)
			if (s->servers[j].tenant == tenant)
				return true;
	}
	return false;
}

static int broken(int why, const char *what, unsigned a, unsigned b)
{
	fprintf(stderr, "nic_fuzz_check: %s (%u, %u)\n", what, a, b);
	return why;
}

static int check_tenants(struct dg_nic *n)
{
	uint32_t i, f;

	for (i = 0; i < MAX_TENANTS; i++) {
		struct tenant *t = &n->tenants[i];

		if (!t->used)
			continue;
		for (f = 0; f < t->nflows; f++) {
			struct flow *fl = &t->flows[f];

			if (fl->pend_tail - fl->pend_head > fl->pend_mask + 1)
				return broken(NIC_FUZZ_PEND,
					      "pending calls over the ring", i,
					      f);
			if (!t->direct && !t->dead &&
			    fl->rx_tail - fl->rx_dirty > t->slots)
				return broken(NIC_FUZZ_RX,
					      "RX produced over a ring not "
					      "written back",
					      i, f);
		}
	}
	return NIC_FUZZ_OK;
}

static bool flow_ok(struct dg_nic *n, uint32_t tid, uint32_t f)
{
	return tid < MAX_TENANTS && n->tenants[tid].used &&
	       f < n->tenants[tid].nflows;
}

static bool peer_ok(struct dg_nic *n, uint32_t pi)
{
	return pi < MAX_PEERS && n->peers[pi].used;
}

static bool svc_ok(struct dg_nic *n, uint32_t svc)
{
	return svc < MAX_SERVICES && n->services[svc].used;
}

static int check_conns(struct dg_nic *n)
{
	uint32_t i;

	for (i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &n->conns[i];
		bool ok = true;

		switch (c->state) {
		case CONN_FREE:
			break;
		case CONN_OPEN:
			ok = flow_ok(n, c->tenant, c->flow) &&
			     (c->svc == SVC_LOOPBACK || svc_ok(n, c->svc));
			break;
		case CONN_BINDING:
			/* NO_PEER: waiting for a link being made. */
			ok = flow_ok(n, c->tenant, c->flow) &&
			     (c->peer == NO_PEER || peer_ok(n, c->peer));
			break;
		case CONN_REMOTE:
			ok = flow_ok(n, c->tenant, c->flow) &&
			     peer_ok(n, c->peer);
			break;
		case CONN_INBOUND:
			ok = peer_ok(n, c->peer) && svc_ok(n, c->svc);
			break;
		case CONN_DEAD:
			ok = flow_ok(n, c->tenant, c->flow);
			break;
		default:
			ok = false;
			break;
		}
		if (!ok)
			return broken(NIC_FUZZ_CONN, "connection", i, c->state);
	}
	return NIC_FUZZ_OK;
}

static int check_services(struct dg_nic *n)
{
	uint32_t i, j;

	for (i = 0; i < MAX_SERVICES; i++) {
		struct service *s = &n->services[i];

		if (!s->used)
			continue;
		if (s->nservers > MAX_SERVERS)
			return broken(NIC_FUZZ_SERVICE,
				      "servers over the table", i, s->nservers);
		for (j = 0; j < s->nservers; j++)
			if (!flow_ok(n, s->servers[j].tenant,
				     s->servers[j].flow))
				return broken(NIC_FUZZ_SERVICE,
					      "server of a gone tenant", i, j);
	}
	return NIC_FUZZ_OK;
}

uint32_t nic_fuzz_peer_need(struct dg_nic *n, uint32_t pi)
{
	const struct peer_ref *p = pi < MAX_PEERS ? &n->peers[pi] : NULL;
	uint32_t pos;

	if (!p || !p->used)
		return 0;
	/* As peer_process walks it: a broken header is one frame. */
	for (pos = p->head; pos != p->tail;) {
		const struct dg_frame *h = &p->fifo[pos & (PEER_FIFO - 1)];
		uint32_t cnt = nic_frame_check(h) >= 0 ? 1u : h->cnt;

		if (p->tail - pos < cnt)
			return cnt - (p->tail - pos);
		pos += cnt;
	}
	return 0;
}

int nic_fuzz_check(struct dg_nic *n)
{
	uint32_t i;
	int rc;

	rc = check_tenants(n);
	if (rc)
		return rc;
	for (i = 0; i < MAX_PEERS; i++) {
		struct peer_ref *p = &n->peers[i];

		if (p->used && p->tail - p->head > PEER_FIFO)
			return broken(NIC_FUZZ_FIFO, "peer FIFO over its size",
				      i, p->tail - p->head);
	}
	rc = check_conns(n);
	return rc ? rc : check_services(n);
}
