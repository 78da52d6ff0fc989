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

/* A request from client flow f on its connection m->h.conn. */
static enum verdict do_request(struct dg_nic *n, uint32_t tid, uint32_t f,
			       const struct msg *m)
{
	struct tenant *t = &n->tenants[tid];
	struct flow *fl = &t->flows[f];
	uint32_t cid = m->h.conn;
	struct conn *c = conn_get(n, cid);
	bool pend_full = false;
	int st;

	/*
	 * A client owed answers it had no room for (nic_owe) sends nothing
	 * more until it has read them: its own TX ring waits, nobody else's.
	 */
	if (UNLIKELY(fl->owed_head != fl->owed_tail)) {
		fl->st.stalled++;
		return V_RETRY;
	}
	if (UNLIKELY(!c ||
		     (c->state != CONN_OPEN && c->state != CONN_REMOTE &&
		      c->state != CONN_DEAD) ||
		     c->tenant != tid || c->flow != f)) {
		/* Tell the caller; without room, retry later. */
		if (nic_rx_status(t, f, DG_FF_RESP, m->h.rpc_id, cid,
				  m->h.fn_id, DG_ST_NO_CONN))
			return V_RETRY;
		fl->st.drops[DROP_BAD_CONN]++;
		return V_DONE;
	}
	if (c->state == CONN_DEAD) {
		st = DG_ST_UNREACHABLE;
	} else if (c->state == CONN_REMOTE && nic_pend_full(fl)) {
		/*
		 * Every call through a link is tracked until its answer
		 * comes. A flow with as many tracked as it can hold (2 x its
		 * ring's slots) gets BUSY for the next one, as a server flow
		 * that holds that many requests does: waiting instead would
		 * let a peer that keeps its link up and answers nothing stop
		 * every later call of the flow, its CLOSE included, for good.
		 */
		pend_full = true;
		st = DG_ST_BUSY;
	} else if (c->state == CONN_REMOTE) {
		st = nic_peer_send(n, c->peer, m, cid);
		if (st == -EAGAIN)
			return V_RETRY; /* the link's credits: back-pressure */
		if (!st) {		/* tracked: answered if the link dies */
			nic_pend_push(fl, &m->h, cid);
			/* A sampled call: when it left (not a service's). */
			if (UNLIKELY(m->h.flags & DG_FF_TRACE)) {
				struct pending *p =
					&fl->pend[(fl->pend_tail - 1) &
						  fl->pend_mask];

				p->svc = NO_IDX;
				p->t_ns = nic_clock(n);
			}
		}
		st = st == -EMSGSIZE ? DG_ST_TOO_BIG
		     : st	     ? DG_ST_UNREACHABLE
				     : 0;
	} else if (c->svc == SVC_LOOPBACK) {
		/* Back to the caller as its own response; no room: retry. */
		st = rx_put(t, f, m, cid, DG_FF_RESP);
		if (st == -EMSGSIZE)
			st = DG_ST_TOO_BIG;
		else if (st)
			return V_RETRY;
	} else {
		st = nic_svc_deliver(n, &fl->busy, c->svc, m, cid);
		if (st == -EAGAIN)
			return V_RETRY;
	}
	if (st && nic_rx_status(t, f, DG_FF_RESP, m->h.rpc_id, cid, m->h.fn_id,
				(uint8_t)st))
		return V_RETRY;
	fl->st.busy += pend_full; /* once answered (not per retry) */
	return V_DONE;
}

/*
 * A response from server flow f. Its connection id is what the server was
 * delivered with: a client connection at this engine, or an INBOUND entry
 * whose client is behind a peer engine. Taken only when this flow holds
 * the request it answers (connection and rpc id): no flow can answer a
 * call it was not handed.
 */
static enum verdict do_response(struct dg_nic *n, uint32_t tid, uint32_t f,
				const struct msg *m)
{
	struct flow *fl = &n->tenants[tid].flows[f];
	struct conn *c = conn_get(n, m->h.conn);
	struct pending *p = nic_pend_find(fl, &m->h);
	struct tenant *ct;
	struct flow *cf;
	int rc;

	if (UNLIKELY(!p)) {
		fl->st.drops[DROP_NO_REQUEST]++;
		return V_DONE;
	}
	if (UNLIKELY(m->h.flags & DG_FF_TRACE) && p->t_ns)
		dg_hist_add(&n->trace_server, nic_clock(n) - p->t_ns);
	if (c && c->state == CONN_INBOUND) {
		rc = nic_peer_send(n, c->peer, m, c->remote);
		/* Too long for the link: the caller learns that instead. */
		if (UNLIKELY(rc == -EMSGSIZE))
			rc = nic_peer_status(n, c->peer, DG_FF_RESP,
					     m->h.rpc_id, c->remote, m->h.fn_id,
					     DG_ST_TOO_BIG, 0);
		if (rc == -EAGAIN) {
			fl->st.stalled++;
			return V_RETRY;
		}
		nic_svc_answered(n, p);
		nic_pend_done(fl, p);
		if (rc)
			fl->st.drops[DROP_BAD_CONN]++;
		return V_DONE;
	}
	ct = c && c->state == CONN_OPEN ? &n->tenants[c->tenant] : NULL;
	if (!ct || !ct->used || ct->dead) {
		nic_svc_answered(n, p);
		nic_pend_done(fl, p); /* the client went away */
		fl->st.drops[DROP_BAD_CONN]++;
		return V_DONE;
	}
	/*
	 * No room at the client: hold the server's ring (back-pressure),
	 * but not past the hold bound: then the answer is dropped and the
	 * client owed DG_ST_DROPPED, so a client that does not read delays
	 * the server's other clients once, by the bound, and stops nobody.
	 * A large response the client can never take: it learns why.
	 */
	rc = rx_put(ct, c->flow, m, m->h.conn, 0);
	if (rc == -EMSGSIZE)
		rc = nic_rx_status(ct, c->flow, DG_FF_RESP, m->h.rpc_id,
				   m->h.conn, m->h.fn_id, DG_ST_TOO_BIG);
	if (rc) {
		cf = &ct->flows[c->flow];
		if (!nic_hold_over(n, &fl->hold_ns, cf) ||
		    nic_owe(n, cf, m->h.rpc_id, m->h.conn, m->h.fn_id,
			    DG_ST_DROPPED)) {
			fl->st.stalled++;
			return V_RETRY;
		}
		cf->st.dropped++;
	}
	nic_svc_answered(n, p);
	nic_pend_done(fl, p);
	return V_DONE;
}

enum verdict nic_tx_route(struct dg_nic *n, uint32_t tid, uint32_t f,
			  const struct msg *m)
{
	return m->h.flags & DG_FF_REQ ? do_request(n, tid, f, m)
				      : do_response(n, tid, f, m);
}

/*
 * Checks the header of a message's first frame (a copy: the host is not
 * trusted and may rewrite its ring while we look): exactly one kind, no
 * unknown flags, a length the slot count agrees with. -1, or the reason
 * to drop it.
 */
int nic_frame_check(const struct dg_frame *h)
{
	/*
	 * Valid flag bytes: one kind, the key only on a request, a payload
	 * outside the ring and the trace mark only on a request or a
	 * response.
	 */
	static const uint64_t ok = 1ull << DG_FF_REQ | 1ull << DG_FF_RESP |
				   1ull << DG_FF_CTRL |
				   1ull << (DG_FF_REQ | DG_FF_KEY) |
				   1ull << (DG_FF_REQ | DG_FF_PAY) |
				   1ull << (DG_FF_RESP | DG_FF_PAY) |
				   1ull << (DG_FF_REQ | DG_FF_KEY | DG_FF_PAY);
	uint8_t f = h->flags & (uint8_t)~DG_FF_TRACE;

	if (f >= 64 || !(ok >> f & 1) ||
	    (h->flags & DG_FF_TRACE && (f & DG_FF_CTRL)))
		return DROP_BAD_FLAGS;
	/* Large: one frame, more bytes than it could carry, DG_MAX_MSG. */
	if (UNLIKELY(h->flags & DG_FF_PAY))
		return h->cnt != 1 || h->len <= DG_FRAME_PAYLOAD ||
				       h->len > DG_MAX_MSG
			       ? DROP_BAD_LEN
			       : -1;
	if (h->len <= DG_FRAME_PAYLOAD
		    ? h->cnt != 1
		    : h->len > DG_MAX_INLINE || h->cnt != dg_frames_for(h->len))
		return DROP_BAD_LEN;
	return -1;
}

/*
 * Consumes whole messages from flow f's TX ring (the shadow a READ filled,
 * or the ring itself for direct tenants), from tx_tail up to avail slots.
 * Stops at the first slot not ready, at a message whose frames are not
 * all in yet (and asks the next READ to cover it), or when routing wants
 * a retry. Nothing is staged: the header is copied once into a struct msg
 * and every destination copies the rest straight from the ring.
 */
uint32_t nic_tx_process(struct dg_nic *n, uint32_t tid, uint32_t f,
			uint32_t avail)
{
	struct tenant *t = &n->tenants[tid];
	struct flow *fl = &t->flows[f];
	uint32_t done = 0;
	bool seen = false;
	struct msg m;

	fl->tx_want = 0;
	fl->blocked = false;
	m.ring = fl->txr;
	m.mask = t->mask;
	while (done < avail) {
		uint32_t pos = fl->tx_tail, cnt, i;
		const struct dg_frame *s = &fl->txr[pos & t->mask];
		enum verdict v;
		int bad;

		if (!dg_slot_ready(s, pos, t->rflags))
			break;
		seen = true;
		/* The lines a stream brings next, while this one is routed. */
		__builtin_prefetch(&fl->txr[(pos + 4) & t->mask]);
		/* The one read of the header: everything below uses m.h. */
		memcpy(&m.h, s, sizeof(m.h));
		cnt = m.h.cnt;
		bad = nic_frame_check(&m.h);
		if (bad < 0 && cnt > t->slots)
			bad = DROP_TOO_BIG;
		if (UNLIKELY(bad >= 0)) {
			/* Not a message we can take: skip this one slot. */
			fl->st.drops[bad]++;
			fl->tx_tail++;
			done++;
			continue;
		}
		if (cnt > avail - done) {
			fl->tx_want = cnt; /* the next READ brings it all */
			break;
		}
		for (i = 1; i < cnt; i++)
			if (!dg_cont_ready((const struct dg_frame_cont *)&fl
						   ->txr[(pos + i) & t->mask],
					   pos + i, t->rflags))
				break;
		if (i < cnt)
			break; /* the rest is not written yet */
		m.pos = pos;
		if (UNLIKELY(m.h.flags & DG_FF_PAY))
			v = nic_pay_tx(n, tid, f, &m); /* payload.c */
		else if (m.h.flags & DG_FF_REQ)
			v = do_request(n, tid, f, &m);
		else if (m.h.flags & DG_FF_RESP)
			v = do_response(n, tid, f, &m);
		else
			v = nic_do_ctrl(n, tid, f, &m);
		if (v == V_RETRY) {
			fl->blocked = true;
			break;
		}
		fl->hold_ns = 0; /* whatever waited at the head went */
		fl->st.rpcs_tx++;
		fl->st.frames_tx += cnt;
		fl->st.bytes_tx += m.h.len;
		fl->tx_tail += cnt;
		done += cnt;
		/*
		 * Shared memory: this message's continuation frames must not
		 * pass for first frames one lap later (dagger/ring.h); the
		 * host reuses them only after our tx_head, stored after this.
		 */
		if (cnt > 1 && t->direct)
			dg_ring_scrub(fl->txr, t->mask, pos + 1, pos + cnt);
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
	/* Doorbell mode: exactly what the host announced, in one READ. */
	if (fl->mode == DG_MODE_DOORBELL) {
		want = fl->db - fl->tx_tail;
		if (want > 4 * n->o.read_batch)
			want = 4 * n->o.read_batch;
	}
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
	bool pay = fl->pay_head != fl->pay_head_sent;

	/* Payload room is told at once: a WRITE is little beside a payload. */
	if ((!progress && !pay) || (!force && !pay && progress < t->slots / 4))
		return;
	if (t->direct) {
		/*
		 * Release: our reads of the slots below tx_tail (the copies
		 * out of them) happen before the host may rewrite them; the
		 * same for the payload bytes below pay_head.
		 */
		if (pay)
			__atomic_store_n(&fl->ctrl->pay_head, fl->pay_head,
					 __ATOMIC_RELEASE);
		__atomic_store_n(&fl->ctrl->tx_head, fl->tx_tail,
				 __ATOMIC_RELEASE);
		fl->tx_head_sent = fl->tx_tail;
		fl->pay_head_sent = fl->pay_head;
		return;
	}
	/*
	 * tx_head and pay_head in one WRITE (engine_epoch and mode_req
	 * between them are the shadow's own words, the engine's too):
	 * pay_head moves only once the READs of the payloads below it
	 * completed (nic_pay_tx).
	 */
	fl->ctrl->tx_head = fl->tx_tail;
	fl->ctrl->pay_head = fl->pay_head;
	if (t->hm->ops->write(t->hm,
			      dg_ctrl_off(&t->lay, f) +
				      offsetof(struct dg_flow_ctrl, tx_head),
			      pay ? 16 : 4, mktag(TAG_WRITE, f, 1)) == 0) {
		fl->tx_head_sent = fl->tx_tail;
		fl->pay_head_sent = fl->pay_head;
	}
}

/*
 * Whether flow f's next READ may go now. Busy flows: always (one READ in
 * flight per flow, back to back). Idle flows of RDMA tenants: at doubling
 * intervals up to poll_max_us; a READ is the engine's costliest act (a
 * device round trip, on soft-RoCE a system call and the kernel's work),
 * and idle flows READ back to back would slow down the busy ones in
 * proportion to their number. A flow with requests delivered and not
 * answered, or with frames just delivered to it, is busy: its host is
 * expected to write. Direct tenants are not READ at all.
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
