// SPDX-License-Identifier: MIT
/*
 * ctrl.c - control messages from hosts: REGISTER, OPEN, CLOSE.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_impl.h"

/* A numeric address as 16 bytes (IPv4 mapped into IPv6); false: a name. */
static bool addr_bytes(const char *s, uint8_t out[16])
{
	struct in_addr a4;

	if (inet_pton(AF_INET6, s, out) == 1)
		return true;
	if (inet_pton(AF_INET, s, &a4) != 1)
		return false;
	memset(out, 0, 10);
	out[10] = out[11] = 0xff;
	memcpy(out + 12, &a4, 4);
	return true;
}

/*
 * Our own address and port, however spelled (192.0.2.1, ::ffff:192.0.2.1):
 * the service is served here, no link to ourselves.
 */
static bool is_self(struct dg_nic *n, const struct dg_ctrl_msg *m)
{
	uint8_t a[16], b[16];

	if (!n->o.listen_addr || (m->port ? m->port : 7471) != dg_nic_port(n))
		return false;
	if (addr_bytes(m->peer, a) && addr_bytes(n->o.listen_addr, b))
		return !memcmp(a, b, 16);
	return !strcmp(m->peer, n->o.listen_addr);
}

/*
 * Lays out a message of len <= 144 payload bytes as frames: m->h and
 * buf[1..] (a ring of DG_CTRL_MAX_FRAMES frames starting at 0).
 */
static void msg_build(struct msg *m, struct dg_frame *buf, uint8_t flags,
		      uint32_t rpc_id, const void *payload, uint32_t len)
{
	const uint8_t *p = payload;
	uint32_t i, n, cnt = dg_frames_for(len);

	memset(m, 0, sizeof(*m));
	memset(buf, 0, DG_CTRL_MAX_FRAMES * sizeof(*buf));
	m->h.rpc_id = rpc_id;
	m->h.len = len;
	m->h.cnt = (uint16_t)cnt;
	m->h.flags = flags;
	n = len < DG_FRAME_PAYLOAD ? len : DG_FRAME_PAYLOAD;
	memcpy(m->h.data, p, n);
	for (i = 1; i < cnt; i++) {
		uint32_t k =
			len - n < DG_CONT_PAYLOAD ? len - n : DG_CONT_PAYLOAD;

		memcpy(((struct dg_frame_cont *)&buf[i])->data, p + n, k);
		n += k;
	}
	m->ring = buf;
	m->pos = 0;
	m->mask = DG_CTRL_MAX_FRAMES - 1;
}

/* Connections tenant tid holds (a control path: a scan is fine). */
static uint32_t tenant_conns(const struct dg_nic *n, uint32_t tid)
{
	uint32_t i, k = 0;

	for (i = 0; i < MAX_CONNS; i++)
		k += n->conns[i].state != CONN_FREE &&
		     n->conns[i].state != CONN_INBOUND &&
		     n->conns[i].tenant == tid;
	return k;
}

static int ctrl_open(struct dg_nic *n, uint32_t tid, uint32_t f,
		     const struct dg_ctrl_msg *m, uint32_t rpc_id,
		     uint32_t *conn_out)
{
	uint16_t port = m->port ? m->port : 7471;
	struct service *s;
	struct conn *c;
	int pi;

	if (memchr(m->service, 0, DG_NAME_MAX) == NULL ||
	    memchr(m->peer, 0, DG_ADDR_MAX) == NULL || !m->service[0])
		return DG_ST_BAD_FRAME;
	/* One tenant cannot take every connection of the engine. */
	if (tenant_conns(n, tid) >= TENANT_MAX_CONNS) {
		n->quota_refused++;
		return DG_ST_QUOTA;
	}
	if (!m->peer[0] || is_self(n, m)) {
		bool lo = !strcmp(m->service, DG_LOOPBACK_SERVICE);

		s = lo ? NULL : nic_svc_open(n, m->service);
		if (!s && !lo)
			return DG_ST_NO_SERVICE;
		c = nic_conn_alloc(n);
		if (!c)
			return DG_ST_BUSY;
		c->state = CONN_OPEN;
		c->tenant = (uint16_t)tid;
		c->flow = (uint16_t)f;
		c->svc = lo ? SVC_LOOPBACK : (uint16_t)(s - n->services);
		*conn_out = conn_id(n, c);
		return DG_ST_OK;
	}
	/*
	 * A service behind another engine: bind it there first, on the link
	 * we have, or once a link is made (off this thread: connect.c).
	 */
	pi = nic_peer_find(n, m->peer, port);
	if (pi < 0)
		return nic_connect_open(n, tid, f, m->peer, port, m->service,
					rpc_id, conn_out);
	c = nic_conn_alloc(n);
	if (!c)
		return DG_ST_BUSY;
	c->tenant = (uint16_t)tid;
	c->flow = (uint16_t)f;
	c->rpc = rpc_id;
	if (nic_peer_bind(n, (uint32_t)pi, c, m->service))
		return DG_ST_UNREACHABLE; /* c stays free */
	c->state = CONN_BINDING;
	*conn_out = conn_id(n, c);
	return ST_PENDING;
}

/*
 * A BIND fits every link: one with the fewest and smallest buffers a
 * hello may announce (DG_PEER_RECV_BUFS_MIN of one frame) takes that many
 * frames at once (the engine has more send buffers).
 */
static_assert(DG_CTRL_MAX_FRAMES <= DG_PEER_RECV_BUFS_MIN,
	      "a BIND fits any peer link");

int nic_peer_bind(struct dg_nic *n, uint32_t pi, struct conn *c,
		  const char *service)
{
	struct dg_frame buf[DG_CTRL_MAX_FRAMES];
	struct dg_ctrl_msg bind;
	struct msg bm;

	memset(&bind, 0, sizeof(bind));
	bind.op = PEER_BIND;
	memcpy(bind.service, service, DG_NAME_MAX);
	msg_build(&bm, buf, DG_FF_CTRL, c->rpc, &bind, sizeof(bind));
	if (nic_peer_send(n, pi, &bm, conn_id(n, c)))
		return -EAGAIN;
	c->peer = (uint16_t)pi;
	return 0;
}

static int ctrl_close(struct dg_nic *n, uint32_t tid, uint32_t f,
		      const struct dg_ctrl_msg *m)
{
	struct conn *c = conn_get(n, m->conn);

	if (!c ||
	    (c->state != CONN_OPEN && c->state != CONN_REMOTE &&
	     c->state != CONN_DEAD) ||
	    c->tenant != tid || c->flow != f)
		return DG_ST_NO_CONN;
	/* Sent now, or queued while the link has no room (a dead link
	 * forgets its bindings itself). */
	if (c->state == CONN_REMOTE)
		nic_peer_unbind(n, c->peer, m->conn);
	if (c->state != CONN_OPEN)
		nic_pend_forget(&n->tenants[tid].flows[f], m->conn);
	c->state = CONN_FREE;
	return DG_ST_OK;
}

/* Gathers a control message's payload from its frames. */
void nic_ctrl_gather(struct dg_ctrl_msg *cm, const struct msg *m)
{
	uint32_t len = m->h.len < sizeof(*cm) ? m->h.len : sizeof(*cm);
	uint32_t i, n;

	memset(cm, 0, sizeof(*cm));
	n = len < DG_FRAME_PAYLOAD ? len : DG_FRAME_PAYLOAD;
	memcpy(cm, m->h.data, n);
	for (i = 1; n < len; i++) {
		uint32_t k =
			len - n < DG_CONT_PAYLOAD ? len - n : DG_CONT_PAYLOAD;

		memcpy((uint8_t *)cm + n, msg_cont(m, i)->data, k);
		n += k;
	}
}

/*
 * A control message from host flow f. Its reply goes to f's own RX ring;
 * without room the message stays in the TX ring (back-pressure).
 */
enum verdict nic_do_ctrl(struct dg_nic *n, uint32_t tid, uint32_t f,
			 const struct msg *m)
{
	struct tenant *t = &n->tenants[tid];
	struct flow *fl = &t->flows[f];
	struct dg_ctrl_msg cm;
	uint32_t conn = 0;
	int st;

	if (m->h.cnt > DG_CTRL_MAX_FRAMES) {
		fl->st.drops[DROP_BAD_CTRL]++;
		return V_DONE;
	}
	if (nic_rx_room(t, fl) < 1) {
		nic_rx_refresh(t, f);
		if (nic_rx_room(t, fl) < 1)
			return V_RETRY;
	}
	nic_ctrl_gather(&cm, m);
	switch (cm.op) {
	case DG_CTRL_REGISTER:
		st = nic_ctrl_register(n, tid, f, &cm);
		break;
	case DG_CTRL_OPEN:
		st = ctrl_open(n, tid, f, &cm, m->h.rpc_id, &conn);
		break;
	case DG_CTRL_CLOSE:
		st = ctrl_close(n, tid, f, &cm);
		conn = cm.conn;
		break;
	case DG_CTRL_MODE:
		/*
		 * From the next frame on, this flow's frames come the new way.
		 * Everything before this message came the old way and was
		 * consumed; the host announces (doorbell) or pushes what it
		 * wrote after it once it has our reply.
		 */
		if (cm.lb == DG_MODE_DEFAULT || cm.lb >= DG_MODE_COUNT) {
			st = DG_ST_BAD_FRAME;
			break;
		}
		if (!t->direct) {
			uint32_t after = fl->tx_tail + m->h.cnt;

			/* What was announced past it stays announced. */
			if (fl->mode == DG_MODE_POLL ||
			    (int32_t)(fl->db - after) < 0)
				fl->db = after;
			fl->mode = cm.lb;
		}
		st = DG_ST_OK;
		break;
	default:
		fl->st.drops[DROP_BAD_CTRL]++;
		st = DG_ST_BAD_FRAME;
		break;
	}
	if (st != ST_PENDING)
		nic_rx_status(t, f, DG_FF_CTRL, m->h.rpc_id, conn, 0,
			      (uint8_t)st);
	return V_DONE;
}
