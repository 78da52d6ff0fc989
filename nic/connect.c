// SPDX-License-Identifier: MIT
/*
 * connect.c - outbound peer links made off the loop thread. Making an
 * RDMA connection waits on rdma_cm (address, route, connect: up to 5 s
 * each); an OPEN to an engine we have no link to must not hold every
 * other tenant for that long. So the connect runs on a thread of its own,
 * the OPENs that need the link wait in a table (a BINDING connection
 * bound to no link yet, NO_PEER), and the loop finishes the job when the
 * thread is done: the link joins the engine and each waiting OPEN sends
 * its BIND, or each is answered UNREACHABLE.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "engine_impl.h"

static void *connector_main(void *arg)
{
	struct connect_job *j = arg;

	j->rc = dg_peer_connect(NULL, j->addr, j->port, &j->po, 5000, &j->link);
	/* Release: rc and link before done; the loop acquires done. */
	__atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
	nic_wake(j->n);
	return NULL;
}

static struct connect_job *job_for(struct dg_nic *n, const char *addr,
				   uint16_t port)
{
	struct connect_job *j, *free_j = NULL;
	uint32_t i;

	for (i = 0; i < MAX_CONNECTS; i++) {
		j = &n->connects[i];
		if (j->used && j->port == port && !strcmp(j->addr, addr))
			return j;
		if (!j->used && !free_j)
			free_j = j;
	}
	if (!free_j)
		return NULL;
	j = free_j;
	memset(j, 0, sizeof(*j));
	snprintf(j->addr, sizeof(j->addr), "%s", addr);
	j->port = port;
	j->n = n;
	j->po = (struct dg_peer_opts){.send_bufs = 32,
				      .engine_id = n->o.engine_id,
				      .timeout_ms = n->o.peer_timeout_ms};
	/* The staging pool, which a link's large transfers go through. */
	nic_peer_bulk(n, &j->po);
#ifdef DG_NIC_SYNC_CONNECT
	/* The fuzzers' in-memory transport: no thread, done at once. */
	connector_main(j);
#else
	if (pthread_create(&j->thr, NULL, connector_main, j))
		return NULL;
#endif
	j->used = true;
	n->nconnects++;
	return j;
}

int nic_connect_open(struct dg_nic *n, uint32_t tid, uint32_t f,
		     const char *addr, uint16_t port, const char *service,
		     uint32_t rpc_id, uint32_t *conn_out)
{
	struct waiting_open *w = NULL;
	struct connect_job *j;
	struct conn *c;
	uint32_t i;

	for (i = 0; i < MAX_WAITING && !w; i++)
		if (!n->waiting[i].used)
			w = &n->waiting[i];
	if (!w || strlen(addr) >= DG_ADDR_MAX)
		return DG_ST_BUSY;
	j = job_for(n, addr, port);
	if (!j)
		return DG_ST_BUSY; /* MAX_CONNECTS links being made already */
	c = nic_conn_alloc(n);
	if (!c)
		return DG_ST_BUSY;
	c->state = CONN_BINDING;
	c->tenant = (uint16_t)tid;
	c->flow = (uint16_t)f;
	c->peer = NO_PEER;
	c->rpc = rpc_id;
	*w = (struct waiting_open){.used = true,
				   .conn = conn_id(n, c),
				   .job = (uint16_t)(j - n->connects)};
	memcpy(w->service, service, DG_NAME_MAX);
	*conn_out = w->conn;
	return ST_PENDING;
}

/* The host's OPEN fails: best effort (no room: its OPEN times out). */
static void open_fail(struct dg_nic *n, struct conn *c)
{
	nic_rx_status(&n->tenants[c->tenant], c->flow, DG_FF_CTRL, c->rpc,
		      conn_id(n, c), 0, DG_ST_UNREACHABLE);
	c->state = CONN_FREE;
}

static void job_finish(struct dg_nic *n, struct connect_job *j)
{
	uint32_t ji = (uint32_t)(j - n->connects), i;
	int pi = j->rc;

#ifndef DG_NIC_SYNC_CONNECT
	pthread_join(j->thr, NULL);
#endif
	if (!pi) {
		pi = nic_peer_add(n, j->link, true, j->addr, j->port);
		if (pi < 0)
			dg_peer_destroy(j->link);
	}
	if (pi < 0 || n->o.verbose)
		fprintf(stderr, "dagger-nic: peer %s:%u: %s\n", j->addr,
			j->port, pi < 0 ? strerror(-pi) : "link up");
	for (i = 0; i < MAX_WAITING; i++) {
		struct waiting_open *w = &n->waiting[i];
		struct conn *c;

		if (!w->used || w->job != ji)
			continue;
		w->used = false;
		c = conn_get(n, w->conn);
		/* Closed meanwhile (its tenant left): nothing to do. */
		if (!c || c->state != CONN_BINDING || c->peer != NO_PEER)
			continue;
		if (pi < 0 || nic_peer_bind(n, (uint32_t)pi, c, w->service))
			open_fail(n, c);
	}
	j->used = false;
	n->nconnects--;
}

void nic_connect_poll(struct dg_nic *n)
{
	uint32_t i;

	for (i = 0; i < MAX_CONNECTS; i++) {
		struct connect_job *j = &n->connects[i];

		if (j->used && __atomic_load_n(&j->done, __ATOMIC_ACQUIRE))
			job_finish(n, j);
	}
}

void nic_connect_shutdown(struct dg_nic *n)
{
	uint32_t i;

	/* Each thread ends within rdma_cm's timeouts. */
	for (i = 0; i < MAX_CONNECTS; i++)
		if (n->connects[i].used)
			job_finish(n, &n->connects[i]);
}
