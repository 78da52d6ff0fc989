// SPDX-License-Identifier: MIT
/*
 * tx.c - the TX poller: READs of host TX rings, parsing and validating whole
 * RPCs, routing requests and responses, tx_head credits.
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

enum verdict nic_drop(struct flow *fl, enum drop_reason r)
{
	fl->st.drops[r]++;
	return V_DONE;
}

/* A request from client flow f on connection conn_id. */
static enum verdict do_request(struct dg_nic *n, uint32_t tid, uint32_t f,
			       const struct dg_frame *fr, uint32_t cnt)
{
	struct tenant *t = &n->tenants[tid];
	struct flow *fl = &t->flows[f];
	uint16_t cid = fr[0].conn_id;
	struct conn *c = cid < MAX_CONNS ? &n->conns[cid] : NULL;
	int st;

	if (!c ||
	    (c->state != CONN_OPEN && c->state != CONN_REMOTE &&
	     c->state != CONN_DEAD) ||
	    c->tenant != tid || c->flow != f) {
		/* Tell the caller; without room, retry later. */
		if (nic_rx_status(t, f, DG_FF_RESP, fr[0].rpc_id, cid,
				  fr[0].fn_id, DG_ST_NO_CONN))
			return V_RETRY;
		fl->st.drops[DROP_BAD_CONN]++;
		return V_DONE;
	}
	if (c->state == CONN_DEAD) {
		st = DG_ST_UNREACHABLE;
	} else if (c->state == CONN_REMOTE) {
		/* Every call through a link is tracked: wait for answers. */
		if (nic_pend_full(fl)) {
			fl->st.stalled++;
			return V_RETRY;
		}
		st = nic_peer_send(n, c->peer, fr, cnt, cid);
		if (st == -EAGAIN)
			return V_RETRY; /* the link's credits: back-pressure */
		if (!st)		/* tracked: answered if the link dies */
			nic_pend_push(fl, &fr[0], cid);
		st = st ? DG_ST_UNREACHABLE : 0;
	} else if (c->svc == SVC_LOOPBACK) {
		/* Back to the caller as its own response; no room: retry. */
		if (nic_rx_deliver_as(t, f, fr, cnt, cid, DG_FF_RESP))
			return V_RETRY;
		st = 0;
	} else {
		st = nic_svc_deliver(n, &fl->busy, c->svc, fr, cnt, cid);
		if (st == -EAGAIN)
			return V_RETRY;
	}
	if (st && nic_rx_status(t, f, DG_FF_RESP, fr[0].rpc_id, cid,
				fr[0].fn_id, (uint8_t)st))
		return V_RETRY;
	return V_DONE;
}

/*
 * A response from server flow f. conn_id is what the server was delivered
 * with: a client connection at this engine, or an INBOUND entry whose
 * client is behind a peer engine.
 */
static enum verdict do_response(struct dg_nic *n, uint32_t tid, uint32_t f,
				const struct dg_frame *fr, uint32_t cnt)
{
	struct flow *fl = &n->tenants[tid].flows[f];
	uint16_t cid = fr[0].conn_id;
	struct tenant *ct;
	struct conn *c;
	int rc;

	if (cid >= MAX_CONNS)
		return nic_drop(fl, DROP_BAD_CONN);
	c = &n->conns[cid];
	nic_pend_pop(fl, &fr[0]);
	if (c->state == CONN_INBOUND) {
		rc = nic_peer_send(n, c->peer, fr, cnt, c->remote);
		if (rc == -EAGAIN) {
			fl->st.stalled++;
			return V_RETRY;
		}
		return rc ? nic_drop(fl, DROP_BAD_CONN) : V_DONE;
	}
	if (c->state != CONN_OPEN)
		return nic_drop(fl, DROP_BAD_CONN); /* client went away */
	ct = &n->tenants[c->tenant];
	if (!ct->used || ct->dead)
		return nic_drop(fl, DROP_BAD_CONN);
	/* No room at the client: hold the server's ring (back-pressure). */
	if (nic_rx_deliver(ct, c->flow, fr, cnt, cid)) {
		fl->st.stalled++;
		return V_RETRY;
	}
	return V_DONE;
}

/*
 * Checks one frame of an RPC against the rules every frame must keep.
 * The host is not trusted: nothing it writes may crash the engine.
 */
int nic_frame_check(const struct dg_frame *fr, const struct dg_frame *first,
		    uint32_t idx)
{
	uint8_t kind = fr->flags & (DG_FF_REQ | DG_FF_RESP | DG_FF_CTRL);

	if (kind != DG_FF_REQ && kind != DG_FF_RESP && kind != DG_FF_CTRL)
		return DROP_BAD_FLAGS;
	if (fr->len > DG_FRAME_PAYLOAD)
		return DROP_BAD_LEN;
	if (fr->idx != idx || fr->cnt != first->cnt ||
	    fr->rpc_id != first->rpc_id || fr->flags != first->flags ||
	    fr->conn_id != first->conn_id)
		return DROP_BAD_IDX;
	/* Every frame but the last is full. */
	if (idx + 1u < fr->cnt && fr->len != DG_FRAME_PAYLOAD)
		return DROP_BAD_LEN;
	return -1;
}

/*
 * Consumes whole RPCs from the shadow of flow f's TX ring, from tx_tail up
 * to avail slots that the last READ brought in. Stops at the first slot not
 * ready, at an RPC whose frames are not all in yet (and asks the next READ
 * to cover it), or when routing wants a retry.
 */
uint32_t nic_tx_process(struct dg_nic *n, uint32_t tid, uint32_t f,
			uint32_t avail)
{
	struct tenant *t = &n->tenants[tid];
	struct flow *fl = &t->flows[f];
	/* Frames of one RPC, gathered contiguous (the ring may wrap). */
	static __thread struct dg_frame rpc[DG_MAX_FRAMES];
	uint32_t done = 0;
	bool seen = false;

	fl->tx_want = 0;
	fl->blocked = false;
	while (done < avail) {
		uint32_t pos = fl->tx_tail;
		struct dg_frame *first = tx_slot(t, f, pos);
		uint32_t cnt, i;
		enum verdict v;
		int bad = -1;

		if (!dg_slot_ready(first, pos, t->rflags))
			break;
		seen = true;
		cnt = first->cnt;
		if (first->idx != 0 || cnt == 0 || cnt > DG_MAX_FRAMES ||
		    cnt > t->slots) {
			/* Not the start of an RPC: skip this one slot. */
			fl->st.drops[cnt > DG_MAX_FRAMES || cnt > t->slots
					     ? DROP_TOO_BIG
					     : DROP_BAD_IDX]++;
			fl->tx_tail++;
			done++;
			continue;
		}
		if (cnt > avail - done) {
			fl->tx_want = cnt; /* the next READ brings it all */
			break;
		}
		for (i = 0; i < cnt; i++) {
			struct dg_frame *s = tx_slot(t, f, pos + i);

			if (!dg_slot_ready(s, pos + i, t->rflags))
				break;
			bad = nic_frame_check(s, first, i);
			if (bad >= 0)
				break;
			rpc[i] = *s;
		}
		if (i < cnt && bad < 0)
			break; /* rest not written yet */
		if (bad >= 0) {
			/* Drop the frames up to and including the bad one. */
			fl->st.drops[bad]++;
			fl->tx_tail += i + 1;
			done += i + 1;
			continue;
		}
		if (rpc[0].flags & DG_FF_CTRL)
			v = nic_do_ctrl(n, tid, f, rpc, cnt);
		else if (rpc[0].flags & DG_FF_REQ)
			v = do_request(n, tid, f, rpc, cnt);
		else
			v = do_response(n, tid, f, rpc, cnt);
		if (v == V_RETRY) {
			fl->blocked = true;
			break;
		}
		fl->st.rpcs_tx++;
		fl->st.frames_tx += cnt;
		fl->st.bytes_tx += (uint64_t)(cnt - 1) * DG_FRAME_PAYLOAD +
				   rpc[cnt - 1].len;
		fl->tx_tail += cnt;
		done += cnt;
	}
	if (seen)
		fl->idle_reads = 0;
	else if (fl->idle_reads < UINT32_MAX)
		fl->idle_reads++;
	/*
	 * The next READ covers twice what this one brought (read_batch at
	 * most, READ_MIN at least): a quiet flow costs small READs (on
	 * soft-RoCE the kernel copies and checksums every byte), a stream
	 * grows to full batches within a few READs.
	 */
	fl->read_size = done * 2 < READ_MIN ? READ_MIN : done * 2;
	return done;
}

/* Posts the READ of the next TX slots of flow f (two segments at a wrap). */
void nic_tx_post_read(struct dg_nic *n, struct tenant *t, uint32_t f)
{
	struct flow *fl = &t->flows[f];
	uint32_t want = fl->read_size ? fl->read_size : READ_MIN, start, first;

	if (want > n->o.read_batch)
		want = n->o.read_batch;
	if (fl->tx_want > want)
		want = fl->tx_want;
	if (want > t->slots)
		want = t->slots;
	start = fl->tx_tail & t->mask;
	first = t->slots - start < want ? t->slots - start : want;
	if (t->hm->ops->read(t->hm,
			     dg_tx_ring_off(&t->lay, f) +
				     (uint64_t)start * DG_SLOT_SIZE,
			     first * DG_SLOT_SIZE, mktag(TAG_TXREAD, f, 0)))
		return;
	fl->read_pending = 1;
	if (want > first && t->hm->ops->read(t->hm, dg_tx_ring_off(&t->lay, f),
					     (want - first) * DG_SLOT_SIZE,
					     mktag(TAG_TXREAD, f, 1)) == 0)
		fl->read_pending = 2;
	fl->read_pos = fl->tx_tail;
	fl->read_n = fl->read_pending == 2 ? want : first;
	fl->st.reads++;
	fl->st.read_slots += fl->read_n;
}

/*
 * Tells the host how far its TX ring was consumed: once a quarter of the
 * ring was, or (force) once the flow has gone quiet, which includes a host
 * that stopped because it saw its ring full, or once consumption stopped
 * at an RPC that must wait (back-pressure): its host may be waiting for
 * TX room, e.g. a server thread with a response to write, and must learn
 * of every slot already freed. Not on the first empty READ: a closed-loop
 * caller usually writes again before the third, and the WRITE would cost
 * as much as a READ.
 */
void nic_tx_write_head(struct tenant *t, uint32_t f, bool force)
{
	struct flow *fl = &t->flows[f];
	uint32_t progress = fl->tx_tail - fl->tx_head_sent;

	if (!progress || (!force && progress < t->slots / 4))
		return;
	ctrl_of(t, f)->tx_head = fl->tx_tail;
	if (t->hm->ops->write(t->hm,
			      dg_ctrl_off(&t->lay, f) +
				      offsetof(struct dg_flow_ctrl, tx_head),
			      4, mktag(TAG_WRITE, f, 1)) == 0)
		fl->tx_head_sent = fl->tx_tail;
}

/*
 * Whether flow f's next READ may go now. Busy flows: always (one READ in
 * flight per flow, back to back). Idle flows of RDMA tenants: at doubling
 * intervals up to poll_max_us; a READ is the engine's costliest act (a
 * device round trip, on soft-RoCE a system call and the kernel's work),
 * and idle flows READ back to back would slow down the busy ones in
 * proportion to their number. A flow with requests delivered and not
 * answered, or with frames just delivered to it, is busy: its host is
 * expected to write. Local tenants (a READ is a copy) are always busy.
 */
bool nic_read_due(struct dg_nic *n, struct tenant *t, struct flow *fl,
		  uint64_t *now)
{
	uint32_t k;
	uint64_t iv;

	if (!t->hm->ops->arm || fl->idle_reads < POLL_HOT_READS ||
	    fl->pend_head != fl->pend_tail)
		return true;
	if (!*now)
		*now = mono_us(); /* once per tenant poll, not per flow */
	if (!fl->next_read_us) {
		k = fl->idle_reads - POLL_HOT_READS;
		iv = k >= 20 ? n->o.poll_max_us : (uint64_t)POLL_BASE_US << k;
		if (iv > n->o.poll_max_us)
			iv = n->o.poll_max_us;
		fl->next_read_us = *now + iv;
	}
	if (*now < fl->next_read_us) {
		if (fl->next_read_us < n->next_due_us)
			n->next_due_us = fl->next_read_us;
		return false;
	}
	fl->next_read_us = 0; /* the READ's outcome schedules the next */
	return true;
}
