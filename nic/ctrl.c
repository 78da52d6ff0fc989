// SPDX-License-Identifier: MIT
/*
 * ctrl.c - control messages from hosts: REGISTER, OPEN, CLOSE.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_impl.h"

static bool is_self(struct dg_nic *n, const struct dg_ctrl_msg *m)
{
	return n->o.listen_addr && m->port == dg_nic_port(n) &&
	       !strcmp(m->peer, n->o.listen_addr);
}

static int ctrl_open(struct dg_nic *n, uint32_t tid, uint32_t f,
		     const struct dg_ctrl_msg *m, uint32_t rpc_id,
		     uint16_t *conn_out)
{
	struct dg_ctrl_msg bind;
	struct dg_frame fr[4];
	struct service *s;
	uint32_t cnt, i;
	int c, pi;

	if (memchr(m->service, 0, DG_NAME_MAX) == NULL ||
	    memchr(m->peer, 0, DG_ADDR_MAX) == NULL || !m->service[0])
		return DG_ST_BAD_FRAME;
	if (!m->peer[0] || is_self(n, m)) {
		bool lo = !strcmp(m->service, DG_LOOPBACK_SERVICE);

		s = lo ? NULL : nic_svc_open(n, m->service);
		if (!s && !lo)
			return DG_ST_NO_SERVICE;
		c = nic_conn_alloc(n);
		if (c < 0)
			return DG_ST_BUSY;
		n->conns[c] = (struct conn){
			.state = CONN_OPEN,
			.tenant = (uint16_t)tid,
			.flow = (uint16_t)f,
			.svc = lo ? SVC_LOOPBACK : (uint16_t)(s - n->services)};
		*conn_out = (uint16_t)c;
		return DG_ST_OK;
	}
	/* A service behind another engine: bind it there first. */
	pi = nic_peer_get(n, m->peer, m->port ? m->port : 7471);
	if (pi < 0)
		return DG_ST_UNREACHABLE;
	c = nic_conn_alloc(n);
	if (c < 0)
		return DG_ST_BUSY;
	memset(&bind, 0, sizeof(bind));
	bind.op = PEER_BIND;
	memcpy(bind.service, m->service, DG_NAME_MAX);
	cnt = dg_frames_for(sizeof(bind));
	memset(fr, 0, sizeof(fr));
	for (i = 0; i < cnt; i++) {
		uint32_t off = i * DG_FRAME_PAYLOAD;
		uint32_t len = sizeof(bind) - off < DG_FRAME_PAYLOAD
				       ? sizeof(bind) - off
				       : DG_FRAME_PAYLOAD;

		fr[i].rpc_id = rpc_id;
		fr[i].idx = (uint16_t)i;
		fr[i].cnt = (uint16_t)cnt;
		fr[i].len = (uint8_t)len;
		fr[i].flags = DG_FF_CTRL;
		memcpy(fr[i].data, (uint8_t *)&bind + off, len);
	}
	if (nic_peer_send(n, (uint32_t)pi, fr, cnt, (uint16_t)c))
		return DG_ST_UNREACHABLE;
	n->conns[c] = (struct conn){.state = CONN_BINDING,
				    .tenant = (uint16_t)tid,
				    .flow = (uint16_t)f,
				    .peer = (uint16_t)pi,
				    .rpc = rpc_id};
	*conn_out = (uint16_t)c;
	return ST_PENDING;
}

static int ctrl_close(struct dg_nic *n, uint32_t tid, uint32_t f,
		      const struct dg_ctrl_msg *m)
{
	struct conn *c;

	if (m->conn >= MAX_CONNS)
		return DG_ST_NO_CONN;
	c = &n->conns[m->conn];
	if ((c->state != CONN_OPEN && c->state != CONN_REMOTE &&
	     c->state != CONN_DEAD) ||
	    c->tenant != tid || c->flow != f)
		return DG_ST_NO_CONN;
	/* Best effort: a dead or busy link forgets the binding itself. */
	if (c->state == CONN_REMOTE)
		nic_peer_status(n, c->peer, DG_FF_CTRL, 0, m->conn, 0, 0,
				PEER_UNBIND);
	if (c->state != CONN_OPEN)
		nic_pend_forget(&n->tenants[tid].flows[f], m->conn);
	c->state = CONN_FREE;
	return DG_ST_OK;
}

/* Gathers a control message's payload from its frames. */
void nic_ctrl_gather(struct dg_ctrl_msg *m, const struct dg_frame *fr,
		     uint32_t cnt)
{
	uint32_t i, len = 0;

	memset(m, 0, sizeof(*m));
	for (i = 0; i < cnt && len < sizeof(*m); i++) {
		uint32_t take = fr[i].len;

		if (len + take > sizeof(*m))
			take = sizeof(*m) - len;
		memcpy((uint8_t *)m + len, fr[i].data, take);
		len += take;
	}
}

/*
 * A control message from host flow f. Its reply goes to f's own RX ring;
 * without room the message stays in the TX ring (back-pressure).
 */
enum verdict nic_do_ctrl(struct dg_nic *n, uint32_t tid, uint32_t f,
			 const struct dg_frame *fr, uint32_t cnt)
{
	struct tenant *t = &n->tenants[tid];
	struct flow *fl = &t->flows[f];
	struct dg_ctrl_msg m;
	uint16_t conn = 0;
	int st;

	if (cnt > 4)
		return nic_drop(fl, DROP_BAD_CTRL);
	if (nic_rx_room(t, fl) < 1) {
		nic_rx_refresh(t, f);
		return V_RETRY;
	}
	nic_ctrl_gather(&m, fr, cnt);
	switch (m.op) {
	case DG_CTRL_REGISTER:
		st = nic_ctrl_register(n, tid, f, &m);
		break;
	case DG_CTRL_OPEN:
		st = ctrl_open(n, tid, f, &m, fr[0].rpc_id, &conn);
		break;
	case DG_CTRL_CLOSE:
		st = ctrl_close(n, tid, f, &m);
		conn = m.conn;
		break;
	default:
		fl->st.drops[DROP_BAD_CTRL]++;
		st = DG_ST_BAD_FRAME;
		break;
	}
	if (st != ST_PENDING)
		nic_rx_status(t, f, DG_FF_CTRL, fr[0].rpc_id, conn, 0,
			      (uint8_t)st);
	return V_DONE;
}
