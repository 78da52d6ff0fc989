// SPDX-License-Identifier: MIT
/*
 * fuzz_peer: what a peer engine sends over a peer link, against an
 * in-process engine driven by dg_nic_poll() on this thread, the link
 * running over the in-memory transport (fake_rdma.c): nic/peer.c parses
 * the link's messages (header, sequence, credits) and nic/route.c routes
 * the frames (BIND, BIND_ACK, UNBIND, requests, responses) from its FIFO.
 *
 * Every input starts from a fresh engine with two tenants: S serves
 * "echo"; C has a connection E to it and a connection X to "svc" behind
 * a peer engine at 192.0.2.9, which the harness plays: the link is made
 * when C opens X (the peer's hello, with its receive buffers and their
 * size, from the input), the harness acknowledges the BIND, C calls on X
 * twice, and the peer binds its client Y to "echo". Then the input is a
 * script: messages from the peer (frames as given, or aimed at Y, at X,
 * at C's calls in flight, whole BINDs; headers with the right sequence
 * number and credits, or not), garbage messages, credit returns, engine
 * iterations, S serving, C calling and polling, and the harness reading
 * what the engine sent.
 *
 * What must hold (each failure aborts): no crash, no sanitizer report,
 * the engine's bookkeeping intact (nic_fuzz_check: a peer FIFO never
 * holds more than its size); every message the engine sends on the link
 * is well formed (magic, next sequence number, no more frames than the
 * peer's buffers hold, no more credits than the peer spent) and carries
 * whole, well-formed RPCs, requests only for calls C made (each once) and
 * S's answers only to clients the peer bound; C gets each call answered
 * at most once on its connection, all of them once the link is dead; in
 * the end, while C reads nothing (its RX ring may be full of answers and
 * replies the link brought), a call from the peer's client Y is answered
 * on the link within a bound (a tenant that does not read cannot hold the
 * link: the engine's hold bound is 1 us here); then a call from C to S
 * completes within a bound.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "fake_rdma.h"
#include "fuzz_entry.h"
#include "fuzz_util.h"
#include "fz_raw.h"
#include "peer.h"

/* nic/peer.c's message header (private there; the wire format). */
#define MSG_MAGIC   0x4d504744u
#define MSG_VERSION 1u
struct msg_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t nframes;
	uint32_t credits;
	uint32_t seq;
	uint8_t rsvd[48];
};
/* nic/engine_impl.h's engine-to-engine control ops, and its peer opts. */
enum { PEER_BIND = 16, PEER_BIND_ACK = 17, PEER_UNBIND = 18 };
#define ENGINE_BATCH	 DG_PEER_BATCH_DEFAULT	   /* its buffers' frames */
#define ENGINE_RECV_BUFS DG_PEER_RECV_BUFS_DEFAULT /* our credits */

#define SLOTS	   64u
#define MAX_STEPS  512u
#define MAX_OUT	   256u
#define MAX_BOUND  64u
#define FINAL_MAX  400u
#define SETUP_POLL 16u
#define REMOTE_Y   0x00010001u /* the peer's client connection id */
#define MAX_OPENS  8u

enum { FN_ECHO = 1 };

struct call {
	bool out, on_wire;
	uint32_t conn, len, seed;
};

struct env {
	struct dg_nic *nic;
	struct dg_rdma_ep *ep;
	struct fz_raw s, c;
	uint32_t rpc_s, c_next;
	uint32_t open_ids[MAX_OPENS], nopens; /* C's OPENs after the setup */
	uint32_t conn_e, conn_x;
	uint32_t peer_batch; /* frames per message the engine may send us */
	/* the peer's side of the link */
	uint32_t tx_seq;    /* its next message's sequence number */
	uint32_t rx_seq;    /* the engine's next message's */
	uint32_t credits;   /* messages it may send the engine */
	uint32_t owed;	    /* engine messages it has not credited */
	uint32_t delivered; /* its messages the engine has taken */
	uint32_t credited;  /* credits the engine returned */
	uint32_t need;	    /* continuation frames still due */
	uint32_t bind_conn; /* the conn id of the engine's last BIND */
	uint32_t bound[MAX_BOUND], nbound;
	uint32_t probe_rpc; /* the peer's last call on Y (final_check) */
	bool probe_done;    /* ... answered on the link */
	struct call calls[MAX_OUT];
	uint8_t buf[DG_MAX_MSG], pay[DG_MAX_MSG];
	uint8_t msg[sizeof(struct msg_hdr) + 80 * DG_SLOT_SIZE];
};

static struct env *E;

static void print_stats(void)
{
	dg_nic_stats_print(E->nic, stderr);
}

static void poll_engine(struct env *e, uint32_t n)
{
	uint32_t i;
	int rc;

	for (i = 0; i < n; i++)
		dg_nic_poll(e->nic);
	rc = nic_fuzz_check(e->nic);
	if (rc)
		fz_fail("engine bookkeeping broken: %d", rc);
}

static void fill(uint8_t *p, uint32_t len, uint32_t seed)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 8));
}

static bool bound(const struct env *e, uint32_t conn)
{
	uint32_t i;

	for (i = 0; i < e->nbound; i++)
		if (e->bound[i] == conn)
			return true;
	return e->nbound == MAX_BOUND; /* too many to know: allow */
}

/* ---- what the engine sends on the link ------------------------------ */

static void check_frame(struct env *e, const struct dg_frame *f)
{
	struct call *k;
	uint32_t kind;

	if (e->need) {
		e->need--;
		return; /* a continuation frame: payload only */
	}
	kind = f->flags & DG_FF_KIND;
	if (f->stamp || f->csum)
		fz_fail("link: a frame with stamp %#x csum %#x", f->stamp,
			f->csum);
	if ((kind != DG_FF_REQ && kind != DG_FF_RESP && kind != DG_FF_CTRL) ||
	    (f->flags & ~(DG_FF_KIND | DG_FF_KEY)) ||
	    ((f->flags & DG_FF_KEY) && kind != DG_FF_REQ))
		fz_fail("link: a frame with flags %#x", f->flags);
	if (f->len > DG_MAX_MSG || f->cnt != dg_frames_for(f->len))
		fz_fail("link: len %u cnt %u", f->len, f->cnt);
	e->need = f->cnt - 1u;
	switch (kind) {
	case DG_FF_CTRL:
		if (f->len < 1 || f->data[0] < PEER_BIND ||
		    f->data[0] > PEER_UNBIND)
			fz_fail("link: control op %u (len %u)", f->data[0],
				f->len);
		if (f->data[0] == PEER_BIND)
			e->bind_conn = f->conn;
		if (f->data[0] == PEER_BIND_ACK && f->status == DG_ST_OK &&
		    e->nbound < MAX_BOUND && !bound(e, f->conn))
			e->bound[e->nbound++] = f->conn;
		break;
	case DG_FF_REQ:
		/*
		 * Only C calls through the link, on X, each call once. (It
		 * may be answered already: the peer can answer what it has
		 * not read yet, by its rpc id.)
		 */
		k = &e->calls[f->rpc_id % MAX_OUT];
		if (f->conn != e->conn_x || k->seed != f->rpc_id ||
		    k->conn != e->conn_x || k->on_wire)
			fz_fail("link: request rpc %u on conn %#x: not a call "
				"of C's in flight, or sent twice",
				f->rpc_id, f->conn);
		k->on_wire = true;
		break;
	default:
		/* S's answers go to the clients the peer bound. */
		if (f->status == DG_ST_OK && !bound(e, f->conn))
			fz_fail("link: an answer for conn %#x, which the peer "
				"never bound",
				f->conn);
		if (f->conn == REMOTE_Y && e->probe_rpc &&
		    f->rpc_id == e->probe_rpc)
			e->probe_done = true;
		break;
	}
}

/* Reads and checks every message the engine sent on the link. */
static void take_sends(struct env *e)
{
	static uint8_t
		m[sizeof(struct msg_hdr) + DG_PEER_BATCH_MAX * DG_SLOT_SIZE];
	struct msg_hdr h;
	int len, i;

	if (!fake_ep_alive(e->ep))
		return; /* the link died and the engine destroyed it */
	while ((len = fake_ep_take_send(e->ep, m, sizeof(m))) >= 0) {
		if (len < (int)sizeof(h))
			fz_fail("link: a message of %d bytes", len);
		memcpy(&h, m, sizeof(h));
		if (h.magic != MSG_MAGIC || h.version != MSG_VERSION ||
		    h.seq != e->rx_seq)
			fz_fail("link: header magic %#x version %u seq %u "
				"(want %u)",
				h.magic, h.version, h.seq, e->rx_seq);
		if (h.nframes > e->peer_batch ||
		    len != (int)(sizeof(h) + h.nframes * DG_SLOT_SIZE))
			fz_fail("link: %u frames in %d bytes (the peer's "
				"buffers hold %u)",
				h.nframes, len, e->peer_batch);
		if (h.credits > e->delivered - e->credited)
			fz_fail("link: %u credits back, %u messages taken, "
				"%u credited",
				h.credits, e->delivered, e->credited);
		e->credited += h.credits;
		e->credits += h.credits;
		e->rx_seq++;
		e->owed++; /* the peer re-posts the buffer */
		for (i = 0; i < h.nframes; i++)
			check_frame(e, (const struct dg_frame *)(m + sizeof(h) +
								 i * 64));
	}
}

/* ---- what the peer sends ---------------------------------------------- */

/*
 * Delivers msg (len bytes; a header at its start) as the peer's next
 * message; counts it when the engine had a buffer posted for it. false
 * when it did not arrive (no buffer posted: the in-memory transport drops
 * it), so the credits it carried were not returned: the peer still owes
 * them.
 */
static bool deliver(struct env *e, size_t len, bool counts)
{
	int rc = fake_ep_alive(e->ep) ? fake_ep_deliver(e->ep, e->msg, len)
				      : -ENOTCONN;

	if (rc == 0 && counts) {
		e->tx_seq++;
		e->delivered++;
		if (e->credits)
			e->credits--;
	}
	return rc == 0;
}

static void put_hdr(struct env *e, uint32_t nframes, uint32_t credits)
{
	struct msg_hdr h = {.magic = MSG_MAGIC,
			    .version = MSG_VERSION,
			    .nframes = (uint16_t)nframes,
			    .credits = credits,
			    .seq = e->tx_seq};

	memcpy(e->msg, &h, sizeof(h));
}

static struct dg_frame *msg_frame(struct env *e, uint32_t i)
{
	return (struct dg_frame *)(e->msg + sizeof(struct msg_hdr)) + i;
}

/* A BIND of the peer's client conn to service, as one whole message. */
static uint32_t put_bind(struct env *e, uint32_t at, uint32_t conn,
			 uint32_t rpc, const char *service)
{
	struct dg_ctrl_msg cm = {.op = PEER_BIND};
	const uint8_t *p = (const uint8_t *)&cm;
	uint32_t cnt = dg_frames_for(sizeof(cm)), i, n;
	struct dg_frame *f = msg_frame(e, at);

	snprintf(cm.service, sizeof(cm.service), "%s", service);
	memset(f, 0, cnt * sizeof(*f));
	f->rpc_id = rpc;
	f->conn = conn;
	f->len = sizeof(cm);
	f->cnt = (uint16_t)cnt;
	f->flags = DG_FF_CTRL;
	memcpy(f->data, p, DG_FRAME_PAYLOAD);
	for (i = 1, n = DG_FRAME_PAYLOAD; i < cnt; i++, n += DG_CONT_PAYLOAD)
		memcpy(((struct dg_frame_cont *)&f[i])->data, p + n,
		       sizeof(cm) - n < DG_CONT_PAYLOAD ? sizeof(cm) - n
							: DG_CONT_PAYLOAD);
	return cnt;
}

/* A message from the peer, frames and header from the input. */
static void peer_msg(struct env *e, struct fz_in *in)
{
	uint8_t hfix = fz_u8(in);
	uint32_t n = fz_u8(in) % (ENGINE_BATCH + 8), i = 0, declared;
	uint32_t credits = e->owed;

	while (i < n && fz_left(in)) {
		uint8_t fix = fz_u8(in);
		struct dg_frame *f = msg_frame(e, i);

		fz_bytes(in, f, sizeof(*f));
		if (fix & 16 && i + 3 <= n) {
			i += put_bind(e, i, fix & 32 ? REMOTE_Y : f->conn,
				      f->rpc_id, fix & 64 ? "echo" : "svc");
			continue;
		}
		switch (fix & 3) {
		case 1:
			f->conn = REMOTE_Y;
			break;
		case 2:
			/* C's last connection through the link (X first). */
			f->conn = e->bind_conn;
			break;
		case 3: {
			/* An answer to one of C's calls in flight on X. */
			uint32_t j, id = f->rpc_id;

			for (j = 0; j < MAX_OUT; j++) {
				const struct call *k =
					&e->calls[(id + j) % MAX_OUT];

				if (k->out && k->conn == e->conn_x) {
					f->rpc_id = k->seed;
					break;
				}
			}
			f->conn = e->conn_x;
			f->flags = DG_FF_RESP;
			break;
		}
		}
		if (fix & 4) {
			f->len %= 8 * DG_CONT_PAYLOAD;
			f->cnt = (uint16_t)dg_frames_for(f->len);
		}
		if (fix & 8) {
			f->flags = DG_FF_CTRL;
			f->data[0] = (uint8_t)(PEER_BIND + f->rpc_id % 3);
		}
		i++;
		/* The same frame for the rest of the message, rpc ids on. */
		for (; (fix & 128) && i < n; i++) {
			*msg_frame(e, i) = *f;
			msg_frame(e, i)->rpc_id = f->rpc_id + i;
		}
	}
	n = i;
	declared = hfix & 8 ? fz_u8(in) : n;
	if (hfix & 2)
		credits = fz_u32(in);
	put_hdr(e, declared, credits);
	if (hfix & 1)
		((struct msg_hdr *)e->msg)->seq = fz_u32(in);
	if (hfix & 4)
		((struct msg_hdr *)e->msg)->magic = fz_u32(in);
	if (deliver(e, sizeof(struct msg_hdr) + n * DG_SLOT_SIZE, true) &&
	    !(hfix & 2))
		e->owed = 0;
}

/* Garbage from the peer: any bytes, any length. */
static void peer_raw(struct env *e, struct fz_in *in)
{
	uint32_t len = fz_u16(in) % sizeof(e->msg);

	fz_bytes(in, e->msg, len < 256 ? len : 256);
	if (len > 256)
		memset(e->msg + 256, 0x5a, len - 256);
	deliver(e, len, false);
}

/* The peer returns the credits it owes, in a message of no frames. */
static void peer_credit(struct env *e)
{
	put_hdr(e, 0, e->owed);
	if (deliver(e, sizeof(struct msg_hdr), true))
		e->owed = 0;
}

/* ---- the tenants ---------------------------------------------------- */

static int ctrl(struct env *e, struct fz_raw *r, uint32_t *rpc, uint8_t op,
		const char *svc, const char *peer, uint32_t *conn, bool wait)
{
	struct dg_ctrl_msg m = {.op = op, .port = peer ? 7471 : 0};
	struct fz_msg rep;
	uint32_t id = (*rpc)++, i;

	snprintf(m.service, sizeof(m.service), "%s", svc);
	if (peer)
		snprintf(m.peer, sizeof(m.peer), "%s", peer);
	if (fz_raw_send(r, 0, DG_FF_CTRL, 0, id, 0, 0, &m, sizeof(m)))
		fz_fail("setup: no TX room for a control message");
	if (!wait)
		return id;
	for (i = 0; i < SETUP_POLL; i++) {
		poll_engine(e, 1);
		if (fz_raw_ctrl_reply(r, 0, id, &rep, e->buf)) {
			fz_raw_release(r, 0);
			if (conn)
				*conn = rep.h.conn;
			return rep.h.status;
		}
	}
	fz_fail("setup: no reply to control op %u", op);
}

/*
 * C calls on conn. Ids whose slot still holds a call in flight, or one on
 * X the engine has not sent on the link yet (it may still, and is then
 * checked against the slot), are skipped.
 */
static bool c_call(struct env *e, uint32_t conn, uint32_t len, uint32_t *rpc)
{
	struct call *k;
	uint32_t id, i;

	for (i = 0; i < MAX_OUT; i++, e->c_next++) {
		k = &e->calls[e->c_next % MAX_OUT];
		if (!k->out && !(k->conn == e->conn_x && !k->on_wire))
			break;
	}
	if (i == MAX_OUT)
		return false;
	id = e->c_next;
	fill(e->pay, len, id);
	if (fz_raw_send(&e->c, 0, DG_FF_REQ, 0, id, conn, FN_ECHO, e->pay, len))
		return false;
	*k = (struct call){true, false, conn, len, id};
	e->c_next++;
	if (rpc)
		*rpc = id;
	return true;
}

static bool c_opened(const struct env *e, uint32_t rpc)
{
	uint32_t i;

	for (i = 0; i < e->nopens; i++)
		if (e->open_ids[i] == rpc)
			return true;
	return false;
}

/*
 * C opens another connection to "svc" through the link (the engine sends
 * a BIND, which the script may acknowledge) and reads no reply now.
 */
static void c_open(struct env *e)
{
	struct dg_ctrl_msg m = {.op = DG_CTRL_OPEN, .port = 7471};

	snprintf(m.service, sizeof(m.service), "svc");
	snprintf(m.peer, sizeof(m.peer), "192.0.2.9");
	if (e->nopens < MAX_OPENS &&
	    !fz_raw_send(&e->c, 0, DG_FF_CTRL, 0, e->c_next, 0, 0, &m,
			 sizeof(m)))
		e->open_ids[e->nopens++] = e->c_next++;
}

static void c_drain(struct env *e)
{
	struct fz_msg m;

	while (fz_raw_recv(&e->c, 0, &m, e->buf) == 1) {
		struct call *k = &e->calls[m.h.rpc_id % MAX_OUT];

		/* The reply to an OPEN C made after the setup. */
		if ((m.h.flags & DG_FF_KIND) == DG_FF_CTRL &&
		    c_opened(e, m.h.rpc_id))
			continue;
		if (!(m.h.flags & DG_FF_RESP))
			fz_fail("C got flags %#x (rpc %u)", m.h.flags,
				m.h.rpc_id);
		if (!k->out || k->seed != m.h.rpc_id || m.h.conn != k->conn)
			fz_fail("C got an answer to rpc %u on conn %#x, which "
				"it is not waiting for there",
				m.h.rpc_id, m.h.conn);
		if (k->conn == e->conn_e) {
			/* DROPPED: S answered while C's ring was full. */
			if (m.h.status != DG_ST_OK &&
			    m.h.status != DG_ST_BUSY &&
			    m.h.status != DG_ST_DROPPED)
				fz_fail("C's echo rpc %u: status %u",
					m.h.rpc_id, m.h.status);
			fill(e->pay, k->len, k->seed);
			if (m.h.status == DG_ST_OK &&
			    (m.len != k->len || memcmp(m.data, e->pay, m.len)))
				fz_fail("C's echo rpc %u: wrong bytes",
					m.h.rpc_id);
		}
		k->out = false;
	}
	fz_raw_release(&e->c, 0);
}

static void s_serve(struct env *e)
{
	struct fz_msg m;

	for (;;) {
		uint32_t pos = e->s.rx[0];

		if (fz_raw_recv(&e->s, 0, &m, e->buf) != 1)
			break;
		if (!(m.h.flags & DG_FF_REQ))
			fz_fail("S got flags %#x", m.h.flags);
		if (fz_raw_send(&e->s, 0, DG_FF_RESP, 0, m.h.rpc_id, m.h.conn,
				m.h.fn_id, m.data, m.len)) {
			e->s.rx[0] = pos;
			break;
		}
	}
	fz_raw_release(&e->s, 0);
}

static void attach(struct env *e, struct fz_raw *r)
{
	if (fz_raw_init(r, 1, SLOTS, 0))
		fz_fail("setup: region");
	r->tenant = nic_fuzz_attach(e->nic, r->region, r->size);
	if (r->tenant < 0)
		fz_fail("setup: attach %d", r->tenant);
}

static void setup(struct env *e, struct fz_in *in)
{
	struct dg_nic_opts o = {.engine_id = 1,
				.peer_timeout_ms = DG_PEER_TIMEOUT_MAX,
				.hold_us = 1};
	struct dg_peer_hello h = {.magic = DG_PEER_HELLO_MAGIC,
				  .version = DG_PEER_HELLO_VERSION,
				  .keepalive_ms = 1000,
				  .engine_id = 2};
	uint8_t b = fz_u8(in), r = fz_u8(in);
	struct dg_frame *f = msg_frame(e, 0);
	struct fz_msg rep;
	uint32_t id, i;

	memset(e, 0, offsetof(struct env, buf));
	/* The peer's receive buffers: how many, and how many frames each. */
	h.recv_bufs = DG_PEER_RECV_BUFS_MIN + r % 64u;
	h.buf_frames = b < 128 ? 1u + b % ENGINE_BATCH
			       : 1u + (uint32_t)(b * 8u) % DG_PEER_BATCH_MAX;
	e->peer_batch =
		h.buf_frames < ENGINE_BATCH ? h.buf_frames : ENGINE_BATCH;
	e->credits = ENGINE_RECV_BUFS; /* the engine posts all its buffers */
	fake_rdma_reset();
	if (dg_nic_create(&o, &e->nic))
		fz_fail("setup: engine");
	attach(e, &e->s);
	attach(e, &e->c);
	if (ctrl(e, &e->s, &e->rpc_s, DG_CTRL_REGISTER, "echo", NULL, NULL,
		 true) ||
	    ctrl(e, &e->c, &e->c_next, DG_CTRL_OPEN, "echo", NULL, &e->conn_e,
		 true))
		fz_fail("setup: a control message failed");

	/* C opens X: the engine connects to the peer and sends BIND. */
	fake_rdma_script_connect(&h, sizeof(h));
	id = (uint32_t)ctrl(e, &e->c, &e->c_next, DG_CTRL_OPEN, "svc",
			    "192.0.2.9", NULL, false);
	/* The link is made in the first; its batch goes in the second. */
	poll_engine(e, 2);
	e->ep = fake_rdma_last_ep();
	if (!e->ep)
		fz_fail("setup: no peer link");
	take_sends(e);
	if (e->rx_seq < 1 || !e->bind_conn)
		fz_fail("setup: no BIND on the link");
	e->conn_x = e->bind_conn;

	/* The peer: BIND_ACK, OK. */
	memset(f, 0, sizeof(*f));
	f->rpc_id = id;
	f->conn = e->conn_x;
	f->cnt = 1;
	f->len = 1;
	f->flags = DG_FF_CTRL;
	f->data[0] = PEER_BIND_ACK;
	put_hdr(e, 1, e->owed);
	if (deliver(e, sizeof(struct msg_hdr) + DG_SLOT_SIZE, true))
		e->owed = 0;
	for (i = 0; i < SETUP_POLL; i++) {
		poll_engine(e, 1);
		if (fz_raw_ctrl_reply(&e->c, 0, id, &rep, e->buf))
			break;
	}
	fz_raw_release(&e->c, 0);
	if (i == SETUP_POLL || rep.h.status != DG_ST_OK ||
	    rep.h.conn != e->conn_x)
		fz_fail("setup: C's OPEN through the link");

	/* C calls twice through the link; the peer binds Y to "echo". */
	for (i = 0; i < 2; i++)
		if (!c_call(e, e->conn_x, 8 + i * 50, NULL))
			fz_fail("setup: C's call");
	poll_engine(e, 2);
	take_sends(e);
	put_bind(e, 0, REMOTE_Y, 500, "echo");
	put_hdr(e, dg_frames_for(sizeof(struct dg_ctrl_msg)), e->owed);
	if (deliver(e,
		    sizeof(struct msg_hdr) +
			    dg_frames_for(sizeof(struct dg_ctrl_msg)) *
				    DG_SLOT_SIZE,
		    true))
		e->owed = 0;
	poll_engine(e, 2);
	take_sends(e);
	if (!e->nbound || e->bound[0] != REMOTE_Y)
		fz_fail("setup: the peer's BIND of \"echo\" not acknowledged");
	for (i = 0; i < MAX_OUT; i++)
		if (e->calls[i].out && !e->calls[i].on_wire)
			fz_fail("setup: C's call %u not sent on the link",
				e->calls[i].seed);
}

/*
 * The peer behaves from here on (returns its credits, completes an RPC it
 * left half sent, reads what the engine sends) and C reads nothing: a
 * call from the peer's client Y to S is answered on the link within a
 * bound, whatever waits for C in the FIFO (answers, BIND_ACKs).
 */
static void probe_check(struct env *e)
{
	struct dg_nic_stats st;
	struct dg_frame *f;
	uint32_t r, need, k;
	bool sent = false;

	poll_engine(e, 1);
	take_sends(e);
	if (!fake_ep_alive(e->ep) || dg_nic_stats(e->nic, &st, 1000) ||
	    !st.peers)
		return; /* the link is down: nothing to hold */
	e->probe_rpc = 0x7f000000u | (e->tx_seq & 0xffff);
	e->probe_done = false;
	for (r = 0; r < FINAL_MAX && !e->probe_done; r++) {
		take_sends(e);
		if (!fake_ep_alive(e->ep))
			return;
		s_serve(e);
		if (!sent && e->credits > 1) {
			need = nic_fuzz_peer_need(e->nic, 0);
			k = need < ENGINE_BATCH ? need : ENGINE_BATCH;
			if (k) /* the rest of the peer's half-sent RPC */
				memset(msg_frame(e, 0), 0,
				       k * sizeof(struct dg_frame));
			else
				k = 1;
			if (!need) {
				f = msg_frame(e, 0);
				memset(f, 0, sizeof(*f));
				f->rpc_id = e->probe_rpc;
				f->conn = REMOTE_Y;
				f->fn_id = FN_ECHO;
				f->len = 8;
				f->cnt = 1;
				f->flags = DG_FF_REQ;
			}
			put_hdr(e, k, e->owed);
			if (deliver(e,
				    sizeof(struct msg_hdr) + k * DG_SLOT_SIZE,
				    true)) {
				e->owed = 0;
				sent = !need;
			}
		} else if (e->owed && e->credits) {
			peer_credit(e);
		}
		poll_engine(e, 1);
	}
	if (!e->probe_done)
		fz_fail("the peer's call on Y %s after %u rounds while C "
			"reads nothing",
			sent ? "not answered" : "never sent", FINAL_MAX);
}

/* Whether any of C's calls is still unanswered. */
static bool c_waiting(const struct env *e)
{
	uint32_t i;

	for (i = 0; i < MAX_OUT; i++)
		if (e->calls[i].out)
			return true;
	return false;
}

/*
 * Then C reads again: C's next call to S completes; if the link is down,
 * each of C's calls through it has been answered (the engine answers
 * those that found C's ring full from its timers, every 64 iterations:
 * the rounds go on while some are due, up to the bound).
 */
static void final_check(struct env *e)
{
	struct dg_nic_stats st;
	uint32_t i, id = 0, r;
	bool sent = false, done = false;

	probe_check(e);

	for (r = 0; r < FINAL_MAX; r++) {
		take_sends(e);
		if (e->owed && e->credits)
			peer_credit(e);
		s_serve(e);
		c_drain(e);
		if (!sent) {
			sent = c_call(e, e->conn_e, 40, &id);
		} else if (!e->calls[id % MAX_OUT].out) {
			done = true;
		}
		poll_engine(e, 1);
		if (done && dg_nic_stats(e->nic, &st, 1000) == 0 &&
		    (st.peers || (r > 64 && !c_waiting(e))))
			break;
	}
	if (!done)
		fz_fail("C's echo call %s after %u rounds",
			sent ? "not answered" : "never sent", FINAL_MAX);
	if (dg_nic_stats(e->nic, &st, 1000))
		fz_fail("dg_nic_stats");
	if (!st.peers)
		for (i = 0; i < MAX_OUT; i++)
			if (e->calls[i].out)
				fz_fail("link down, C's rpc %u on conn %#x "
					"still unanswered",
					e->calls[i].seed, e->calls[i].conn);
}

static void teardown(struct env *e)
{
	if (getenv("FZ_TRACE"))
		dg_nic_stats_print(e->nic, stderr);
	dg_nic_destroy(e->nic);
	fz_raw_free(&e->s);
	fz_raw_free(&e->c);
	if (fake_rdma_live_eps())
		fz_fail("%d endpoints left", fake_rdma_live_eps());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	struct env *e = E;
	uint32_t step;

	if (!e) {
		e = E = calloc(1, sizeof(*E));
		if (!e)
			abort();
		fz_on_fail = print_stats;
	}
	setup(e, &in);
	for (step = 0; step < MAX_STEPS && fz_left(&in); step++) {
		uint8_t op = fz_u8(&in);

		switch (op & 7) {
		case 0:
			peer_msg(e, &in);
			break;
		case 1:
			poll_engine(e, 1 + (op >> 4));
			break;
		case 2:
			s_serve(e);
			break;
		case 3:
			c_drain(e);
			break;
		case 4:
			if (op >> 5 == 7) {
				c_open(e);
				break;
			}
			c_call(e, op & 16 ? e->conn_e : e->conn_x,
			       fz_u16(&in) % (4 * DG_CONT_PAYLOAD), NULL);
			break;
		case 5:
			take_sends(e);
			break;
		case 6:
			peer_credit(e);
			break;
		case 7:
			peer_raw(e, &in);
			break;
		}
	}
	final_check(e);
	teardown(e);
	return 0;
}
