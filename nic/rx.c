// SPDX-License-Identifier: MIT
/*
 * rx.c - RX delivery: copying whole RPCs into the shadow of a tenant's RX ring,
 * credits (rx_head), writing produced slots back to the host.
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

uint32_t nic_rx_room(struct tenant *t, struct flow *fl)
{
	return t->slots - (fl->rx_tail - fl->rx_head);
}

/* Asks the host how far it consumed its RX ring (credits). */
void nic_rx_refresh(struct tenant *t, uint32_t f)
{
	struct flow *fl = &t->flows[f];

	if (fl->rx_head_pending)
		return;
	if (t->hm->ops->read(t->hm,
			     dg_ctrl_off(&t->lay, f) +
				     offsetof(struct dg_flow_ctrl, rx_head),
			     4, mktag(TAG_RXHEAD, f, 0)) == 0)
		fl->rx_head_pending = true;
}

/*
 * Copies one whole RPC (cnt frames at src, contiguous) into the shadow of
 * a tenant's RX ring and seals each slot. The bytes reach the host when the
 * tenant's dirty range is written at the end of the iteration. Returns
 * -ENOSPC (and asks for fresh credits) when the ring has no room.
 */
int nic_rx_deliver_as(struct tenant *t, uint32_t f, const struct dg_frame *src,
		      uint32_t cnt, uint16_t conn_id, uint8_t flags)
{
	struct flow *fl = &t->flows[f];
	uint32_t i;

	if (nic_rx_room(t, fl) < cnt) {
		nic_rx_refresh(t, f);
		return -ENOSPC;
	}
	for (i = 0; i < cnt; i++) {
		uint32_t pos = fl->rx_tail + i;
		struct dg_frame *d = rx_slot(t, f, pos);

		memcpy(d, &src[i], DG_SLOT_SIZE);
		d->conn_id = conn_id;
		d->src_flow = (uint8_t)f;
		if (flags) {
			d->flags = flags;
			d->status = 0;
		}
		dg_slot_publish(d, pos, t->rflags);
	}
	fl->rx_tail += cnt;
	fl->st.rpcs_rx++;
	fl->st.frames_rx += cnt;
	/* Its host is about to answer or call again: poll it hot. */
	fl->idle_reads = 0;
	fl->next_read_us = 0;
	return 0;
}

int nic_rx_deliver(struct tenant *t, uint32_t f, const struct dg_frame *src,
		   uint32_t cnt, uint16_t conn_id)
{
	return nic_rx_deliver_as(t, f, src, cnt, conn_id, 0);
}

/* A one-frame message carrying only a status (and a control op). */
struct dg_frame nic_status_frame(uint8_t flags, uint32_t rpc_id, uint16_t fn_id,
				 uint8_t status, uint8_t op)
{
	struct dg_frame e = {0};

	e.rpc_id = rpc_id;
	e.fn_id = fn_id;
	e.cnt = 1;
	e.flags = flags;
	e.status = status;
	if (op) {
		e.len = 1;
		e.data[0] = op;
	}
	return e;
}

int nic_rx_status(struct tenant *t, uint32_t f, uint8_t flags, uint32_t rpc_id,
		  uint16_t conn_id, uint16_t fn_id, uint8_t status)
{
	struct dg_frame e = nic_status_frame(flags, rpc_id, fn_id, status, 0);

	return nic_rx_deliver(t, f, &e, 1, conn_id);
}

/* Writes every RX slot produced since the last call, split at the wrap. */
void nic_rx_write_back(struct tenant *t, uint32_t f)
{
	struct flow *fl = &t->flows[f];
	uint32_t n = fl->rx_tail - fl->rx_dirty;

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
