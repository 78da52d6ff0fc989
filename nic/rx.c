// SPDX-License-Identifier: MIT
/*
 * rx.c - RX delivery: writing whole messages into a tenant's RX ring (its
 * shadow, written back by RDMA WRITE, or the ring itself for direct
 * tenants), credits (rx_head).
 */
#include <errno.h>
#include <string.h>

#include "engine_impl.h"

/*
 * Free RX slots by the host's consumer index. The host writes rx_head: a
 * value ahead of what we produced (a broken or hostile host) reads as a
 * full ring, never as more room than the ring has.
 */
uint32_t nic_rx_room(struct tenant *t, struct flow *fl)
{
	uint32_t used = fl->rx_tail - fl->rx_head;

	return used > t->slots ? 0 : t->slots - used;
}

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

/*
 * Writes one whole message into flow f's RX ring, with its connection id
 * set to conn (and its kind to flags, when not 0: the loopback service
 * turns a request into its response) and each slot sealed for its
 * position: continuation frames first, the first frame last (so a host
 * that sees the first frame of a message in shared memory sees all of
 * it). RDMA tenants get the bytes when the dirty range is written at the
 * end of the iteration. Returns -ENOSPC (and asks for fresh credits) when
 * the ring has no room.
 */
int nic_rx_put(struct tenant *t, uint32_t f, const struct msg *m, uint32_t conn,
	       uint8_t flags)
{
	struct flow *fl = &t->flows[f];
	uint32_t cnt = m->h.cnt, pos = fl->rx_tail, i;
	struct dg_frame *d;

	if (UNLIKELY(nic_rx_room(t, fl) < cnt)) {
		nic_rx_refresh(t, f);
		if (!t->direct || nic_rx_room(t, fl) < cnt)
			return -ENOSPC;
	}
	for (i = 1; i < cnt; i++) {
		struct dg_frame_cont *c =
			(struct dg_frame_cont *)&fl->rxr[(pos + i) & t->mask];

		memcpy(c->data, msg_cont(m, i)->data, DG_CONT_PAYLOAD);
		dg_cont_publish(c, pos + i, t->rflags);
	}
	d = &fl->rxr[pos & t->mask];
	__builtin_prefetch(&fl->rxr[(pos + cnt + 3) & t->mask], 1);
	/* Everything but stamp and checksum (the first 8 bytes). */
	memcpy(&d->rpc_id, &m->h.rpc_id, DG_SLOT_SIZE - 8);
	d->conn = conn;
	d->flow = (uint8_t)f;
	if (flags) {
		d->flags = flags;
		d->status = 0;
	}
	dg_slot_publish(d, pos, t->rflags);
	fl->rx_tail = pos + cnt;
	fl->st.rpcs_rx++;
	fl->st.frames_rx += cnt;
	/* Its host is about to answer or call again: poll it hot. */
	fl->idle_reads = 0;
	fl->next_read_us = 0;
	return 0;
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
