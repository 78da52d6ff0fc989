// SPDX-License-Identifier: MIT
/*
 * rx.c - RX delivery: writing whole messages into a tenant's RX ring (its
 * shadow, written back by RDMA WRITE, or the ring itself for direct
 * tenants), credits (rx_head).
 */
#include <errno.h>
#include <string.h>

#include "engine_impl.h"

/* Learns how far the host consumed its RX ring (credits). */
void nic_rx_refresh(struct tenant *t, uint32_t f)
{
	struct flow *fl = &t->flows[f];

	if (t->direct) {
		/*
		 * Acquire: pairs with the host's release store of rx_head,
		 * so its loads of the slots below it happened before we
		 * overwrite them.
		 */
		fl->rx_head =
			__atomic_load_n(&fl->ctrl->rx_head, __ATOMIC_ACQUIRE);
		return;
	}
	if (fl->rx_head_pending)
		return;
	if (t->hm->ops->read(t->hm,
			     dg_ctrl_off(&t->lay, f) +
				     offsetof(struct dg_flow_ctrl, rx_head),
			     4, mktag(TAG_RXHEAD, f, 0)) == 0)
		fl->rx_head_pending = true;
}

int nic_rx_put(struct tenant *t, uint32_t f, const struct msg *m, uint32_t conn,
	       uint8_t flags)
{
	return rx_put(t, f, m, conn, flags);
}

/* A one-frame message carrying only a status (and a control op). */
void nic_status_msg(struct msg *m, uint8_t flags, uint32_t rpc_id,
		    uint16_t fn_id, uint8_t status, uint8_t op)
{
	memset(m, 0, sizeof(*m));
	m->h.rpc_id = rpc_id;
	m->h.fn_id = fn_id;
	m->h.cnt = 1;
	m->h.flags = flags;
	m->h.status = status;
	if (op) {
		m->h.len = 1;
		m->h.data[0] = op;
	}
}

int nic_rx_status(struct tenant *t, uint32_t f, uint8_t flags, uint32_t rpc_id,
		  uint32_t conn, uint16_t fn_id, uint8_t status)
{
	struct msg m;

	nic_status_msg(&m, flags, rpc_id, fn_id, status, 0);
	return nic_rx_put(t, f, &m, conn, 0);
}

/* Writes every RX slot produced since the last call, split at the wrap. */
void nic_rx_write_back(struct tenant *t, uint32_t f)
{
	struct flow *fl = &t->flows[f];
	uint32_t n = fl->rx_tail - fl->rx_dirty;

	if (t->direct) {
		fl->rx_dirty = fl->rx_tail; /* published in place */
		return;
	}
	while (n) {
		uint32_t start = fl->rx_dirty & t->mask;
		uint32_t run = t->slots - start < n ? t->slots - start : n;
		int rc = t->hm->ops->write(
			t->hm,
			dg_rx_ring_off(&t->lay, f) +
				(uint64_t)start * DG_SLOT_SIZE,
			run * DG_SLOT_SIZE, mktag(TAG_WRITE, f, 0));
		if (rc)
			return; /* queue full: the rest goes next time */
		fl->st.writes++;
		fl->rx_dirty += run;
		n -= run;
	}
}
