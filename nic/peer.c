// SPDX-License-Identifier: MIT
/*
 * peer.c - batched, credit-controlled frame transport between two engines.
 *
 * Memory: one allocation per link, registered once (LOCAL_WRITE: the device
 * writes received messages into it):
 *
 *   [recv buffer 0]...[recv buffer R-1][send buffer 0]...[send buffer S-1]
 *
 * each buffer being one 64-byte message header followed by buf_frames
 * frames. Receive buffers are posted as RECVs; send buffers are filled by
 * dg_peer_put/reserve and posted as SENDs.
 *
 * Deadlock freedom of the credit scheme (see peer.h for the scheme). Rules:
 *   (a) every message spends one credit; a data message only if the sender
 *       holds >= 2 credits, a credit-only message if it holds >= 1;
 *   (b) a side owing T = recv_bufs / 2 >= 2 credits sends a credit-only
 *       message as soon as it holds a credit and a free send buffer (every
 *       dg_peer_poll and dg_peer_flush re-checks this);
 *   (c) send buffers always come back: SEND completions are produced by
 *       the peer's device (the RC ACK) once the message landed in a posted
 *       receive buffer, which (a) guarantees, without the peer polling.
 * Suppose both sides keep polling and nothing moves any more although data
 * is queued: every message has been delivered and processed and every send
 * buffer but the one being filled is free. Then for each direction the
 * credits are conserved: A.credits + B.owed = B.recv_bufs and vice versa.
 * Look at the last message sent on the link, say by A. If it was a data
 * message A kept >= 1 credit (a); if it was credit-only it carried >= T >= 1
 * credits to B, and B has sent nothing since. So one side, X, holds >= 1
 * credit. X owes < T (else (b) would send). If the other side Y is blocked
 * on data it holds <= 1 credit, so X owes >= X.recv_bufs - 1 >= T
 * (recv_bufs >= 4): contradiction. So X is the blocked one, holding exactly
 * 1 credit, and Y owes Y.recv_bufs - 1 >= T; by (b) Y must hold 0 credits,
 * which means X owes all X.recv_bufs >= T: contradiction again.
 * Credit-only messages cannot ping-pong forever either: each one needs T >= 2
 * messages from the other side to be owed first, so a chain of them alone
 * halves at every step and dies out.
 */
#include "peer.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Message header: the first 64 bytes of every SEND. */
#define MSG_MAGIC   0x4d504744u /* "DGPM" little-endian */
#define MSG_VERSION 1u

struct msg_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t nframes; /* frames that follow, 0 for credit-only */
	uint32_t credits; /* receive buffers re-posted since the last report */
	uint32_t seq;	  /* messages sent before this one on this direction */
	uint8_t rsvd[48];
};

static_assert(sizeof(struct msg_hdr) == DG_SLOT_SIZE, "one slot");
static_assert(DG_PEER_BATCH_MAX <= UINT16_MAX, "nframes fits");

/*
 * wr_id = kind | buffer index (or, for READs, the caller's tag); the kind
 * tells send from receive buffers and payload READs.
 */
#define WR_SEND	    (1ull << 32)
#define WR_RECV	    (2ull << 32)
#define WR_READ	    (4ull << 32)
#define WR_IDX_MASK 0xffffffffull
/* Payload READs one link may have in flight. */
#define PEER_READS  4u

/* Completions taken from the CQ per dg_rdma_poll() call. */
#define POLL_CHUNK	 32u
/* Completions handled per dg_peer_poll() when max_msgs is 0. */
#define POLL_DEFAULT_MAX 64u

struct dg_peer {
	struct dg_rdma_ep *ep;
	struct dg_rdma_mr *mr;
	uint8_t *mem;
	size_t mem_len;
	size_t buf_size;     /* header + buf_frames frames */
	uint32_t buf_frames; /* our batch_frames: our buffers' capacity */
	uint32_t msg_frames; /* frames per SEND: min(ours, peer's buffers) */
	uint32_t recv_bufs;
	uint32_t send_bufs;
	uint32_t local_id;
	uint32_t remote_id;

	/* Send side. */
	uint32_t *free_sb; /* stack of free send buffer indices */
	uint32_t nfree;
	int32_t cur;	      /* send buffer being filled, -1: none */
	uint32_t cur_n;	      /* frames in it */
	uint32_t reserved;    /* frames handed out by dg_peer_reserve */
	bool stalled;	      /* credit_stalls counted for the current batch */
	uint32_t credits;     /* peer receive buffers we may still fill */
	uint32_t credits_max; /* the peer's recv_bufs */
	uint32_t tx_seq;

	/* Receive side. */
	uint32_t rx_seq;
	uint32_t owed;		 /* re-posted, not yet reported to the peer */
	uint32_t owed_threshold; /* recv_bufs / 2: send a credit-only msg */
	uint32_t peer_held;	 /* credits the peer holds or spent in flight */
	uint32_t rx_cap, backlog; /* dg_peer_set_backlog(); rx_cap 0: none */

	/* Liveness (dg_peer_tick). */
	uint32_t keepalive_ms; /* ours: send after this long without a SEND */
	uint32_t dead_ms;      /* declare dead after this long without a msg */
	uint32_t remote_ka_ms; /* the peer's keepalive interval (its hello) */
	uint64_t last_rx_ms, last_tx_ms; /* 0: not ticked yet */
	uint64_t seen_rx, seen_tx; /* msgs_rx / msgs_tx at the last tick */

	uint32_t poll_calls;
	int err; /* sticky: the link is dead */
	struct dg_peer_stats st;

	/* Large payloads: our bulk memory, our send area, the peer's. */
	uint8_t *bulk;
	size_t bulk_len, send_off, send_len;
	struct dg_rdma_mr *bulk_mr, *send_mr;
	uint64_t rsend_addr, rsend_len;
	uint32_t rsend_rkey, reads;
	void (*rd_cb)(void *arg, uint32_t tag, int status);
	void *rd_arg;
};

static int fail(struct dg_peer *p, int rc)
{
	if (!p->err)
		p->err = rc;
	return p->err;
}

static uint8_t *rbuf(const struct dg_peer *p, uint32_t i)
{
	return p->mem + (size_t)i * p->buf_size;
}

static uint8_t *sbuf(const struct dg_peer *p, uint32_t i)
{
	return p->mem + (size_t)(p->recv_bufs + i) * p->buf_size;
}

static struct dg_frame *buf_frames(uint8_t *buf)
{
	return (struct dg_frame *)(buf + sizeof(struct msg_hdr));
}

static int norm_opts(const struct dg_peer_opts *o, struct dg_peer_opts *n)
{
	struct dg_peer_opts z = {0};

	if (!o)
		o = &z;
	n->batch_frames =
		o->batch_frames ? o->batch_frames : DG_PEER_BATCH_DEFAULT;
	n->recv_bufs = o->recv_bufs ? o->recv_bufs : DG_PEER_RECV_BUFS_DEFAULT;
	n->send_bufs = o->send_bufs ? o->send_bufs : DG_PEER_SEND_BUFS_DEFAULT;
	n->engine_id = o->engine_id;
	n->timeout_ms = o->timeout_ms ? o->timeout_ms : DG_PEER_TIMEOUT_DEFAULT;
	n->bulk = o->bulk;
	n->bulk_len = o->bulk ? o->bulk_len : 0;
	n->send_off = o->bulk ? o->send_off : 0;
	n->send_len = o->bulk ? o->send_len : 0;
	if (n->bulk && (!n->bulk_len || n->send_off > n->bulk_len ||
			n->send_len > n->bulk_len - n->send_off))
		return -EINVAL;
	if (n->timeout_ms < DG_PEER_TIMEOUT_MIN ||
	    n->timeout_ms > DG_PEER_TIMEOUT_MAX ||
	    n->batch_frames > DG_PEER_BATCH_MAX ||
	    n->recv_bufs < DG_PEER_RECV_BUFS_MIN ||
	    n->recv_bufs > DG_PEER_RECV_BUFS_MAX ||
	    /* one batch being filled plus one for credit-only messages */
	    n->send_bufs < 2 || n->send_bufs > DG_PEER_SEND_BUFS_MAX)
		return -EINVAL;
	return 0;
}

void dg_peer_ep_attr(const struct dg_peer_opts *o, struct dg_rdma_ep_attr *a)
{
	struct dg_peer_opts n;

	if (norm_opts(o, &n))
		norm_opts(NULL, &n);
	/*
	 * Every SEND is signaled and owns its send buffer until completion,
	 * so at most send_bufs requests are on the send queue; the CQ the
	 * endpoint sizes from these holds every completion that can be due.
	 */
	a->sq_depth = n.send_bufs + PEER_READS;
	a->rq_depth = n.recv_bufs;
	/* Payload READs, ours and the peer's of our send area. */
	a->rd_depth = PEER_READS;
}

int dg_peer_is_hello(const void *pdata, size_t plen)
{
	struct dg_peer_hello h;

	if (!pdata || plen < sizeof(h))
		return 0;
	memcpy(&h, pdata, sizeof(h));
	return h.magic == DG_PEER_HELLO_MAGIC &&
	       h.version == DG_PEER_HELLO_VERSION &&
	       h.recv_bufs >= DG_PEER_RECV_BUFS_MIN &&
	       h.recv_bufs <= DG_PEER_RECV_BUFS_MAX && h.buf_frames >= 1 &&
	       h.buf_frames <= DG_PEER_BATCH_MAX;
}

static void free_peer(struct dg_peer *p)
{
	/*
	 * MR before endpoint: the endpoint frees the protection domain,
	 * which must no longer have registrations.
	 */
	dg_rdma_dereg(p->send_mr);
	dg_rdma_dereg(p->bulk_mr);
	dg_rdma_dereg(p->mr);
	dg_rdma_ep_destroy(p->ep);
	free(p->mem);
	free(p->free_sb);
	free(p);
}

/* Allocates the link and its buffers from normalised options. */
static int peer_new(const struct dg_peer_opts *n, struct dg_peer **out)
{
	struct dg_peer *p = calloc(1, sizeof(*p));
	uint32_t i;

	if (!p)
		return -ENOMEM;
	p->buf_frames = n->batch_frames;
	p->bulk = n->bulk;
	p->bulk_len = n->bulk_len;
	p->send_off = n->send_off;
	p->send_len = n->send_len;
	p->recv_bufs = n->recv_bufs;
	p->send_bufs = n->send_bufs;
	p->local_id = n->engine_id;
	/* Six chances per timeout: a few late or lost ticks do not matter. */
	p->keepalive_ms = n->timeout_ms / 6;
	p->dead_ms = n->timeout_ms;
	p->owed_threshold = n->recv_bufs / 2; /* >= 2: RECV_BUFS_MIN is 4 */
	p->peer_held = n->recv_bufs; /* the hello grants every buffer */
	p->buf_size = sizeof(struct msg_hdr) +
		      (size_t)n->batch_frames * sizeof(struct dg_frame);
	p->mem_len = (size_t)(n->recv_bufs + n->send_bufs) * p->buf_size;
	p->mem_len = (p->mem_len + 4095) & ~(size_t)4095;
	p->mem = aligned_alloc(4096, p->mem_len);
	p->free_sb = calloc(n->send_bufs, sizeof(*p->free_sb));
	p->cur = -1;
	if (!p->mem || !p->free_sb) {
		free_peer(p);
		return -ENOMEM;
	}
	memset(p->mem, 0, p->mem_len);
	for (i = 0; i < n->send_bufs; i++)
		p->free_sb[i] = n->send_bufs - 1 - i;
	p->nfree = n->send_bufs;
	*out = p;
	return 0;
}

/*
 * Registers the buffers and posts every receive buffer. This happens
 * before the connection is established on either side, so the peer's
 * first SEND always finds a posted RECV: its initial credits (our
 * recv_bufs, from our hello) are exactly the buffers posted here.
 */
static int peer_attach(struct dg_peer *p)
{
	uint32_t i;
	int rc;

	rc = dg_rdma_reg(p->ep, p->mem, p->mem_len, DG_RDMA_ACC_LOCAL_WRITE,
			 &p->mr);
	if (rc)
		return rc;
	/*
	 * Payloads: READs land anywhere in our bulk memory; the peer may
	 * READ our send area, and with this key nothing else of ours (the
	 * key is the link's: its own protection domain).
	 */
	if (p->bulk) {
		rc = dg_rdma_reg(p->ep, p->bulk, p->bulk_len,
				 DG_RDMA_ACC_LOCAL_WRITE, &p->bulk_mr);
		if (!rc && p->send_len)
			rc = dg_rdma_reg(p->ep, p->bulk + p->send_off,
					 p->send_len,
					 DG_RDMA_ACC_LOCAL_WRITE |
						 DG_RDMA_ACC_REMOTE_READ,
					 &p->send_mr);
		if (rc)
			return rc;
	}
	for (i = 0; i < p->recv_bufs; i++) {
		rc = dg_rdma_post_recv(p->ep, p->mr, rbuf(p, i),
				       (uint32_t)p->buf_size, WR_RECV | i);
		if (rc)
			return rc; /* -ENOMEM: rq_depth below recv_bufs */
	}
	return 0;
}

static struct dg_peer_hello local_hello(const struct dg_peer *p)
{
	struct dg_peer_hello h = {
		.magic = DG_PEER_HELLO_MAGIC,
		.version = DG_PEER_HELLO_VERSION,
		.keepalive_ms = (uint16_t)(p->keepalive_ms > UINT16_MAX
						   ? UINT16_MAX
						   : p->keepalive_ms),
		.engine_id = p->local_id,
		.recv_bufs = p->recv_bufs,
		.buf_frames = p->buf_frames,
	};

	if (p->send_mr) {
		struct dg_rdma_remote r = dg_rdma_mr_remote(p->send_mr);

		h.send_addr = r.addr;
		h.send_rkey = r.rkey;
		h.send_len = p->send_len;
	}
	return h;
}

static void set_remote(struct dg_peer *p, const void *pdata)
{
	struct dg_peer_hello h;

	memcpy(&h, pdata, sizeof(h));
	p->remote_id = h.engine_id;
	/* Initial credits: the peer pre-posted all its receive buffers. */
	p->credits = h.recv_bufs;
	p->credits_max = h.recv_bufs;
	/* A SEND must fit the peer's receive buffer. */
	p->msg_frames =
		p->buf_frames < h.buf_frames ? p->buf_frames : h.buf_frames;
	/* A peer that is slower to speak up is given 3 of its intervals. */
	p->remote_ka_ms = h.keepalive_ms;
	if ((uint32_t)h.keepalive_ms * 3 > p->dead_ms)
		p->dead_ms = (uint32_t)h.keepalive_ms * 3;
	p->rsend_addr = h.send_addr;
	p->rsend_rkey = h.send_rkey;
	p->rsend_len = h.send_len;
}

int dg_peer_connect(const char *src, const char *dst, uint16_t port,
		    const struct dg_peer_opts *o, int timeout_ms,
		    struct dg_peer **out)
{
	uint8_t reply[DG_RDMA_ACCEPT_PDATA_MAX];
	size_t rlen = sizeof(reply);
	struct dg_rdma_ep_attr attr;
	struct dg_peer_hello h;
	struct dg_peer_opts n;
	struct dg_peer *p;
	int rc;

	rc = norm_opts(o, &n);
	if (rc)
		return rc;
	rc = peer_new(&n, &p);
	if (rc)
		return rc;
	dg_peer_ep_attr(&n, &attr);
	rc = dg_rdma_ep_create(src, dst, port, &attr, timeout_ms, &p->ep);
	if (rc)
		goto err;
	rc = peer_attach(p);
	if (rc)
		goto err;
	h = local_hello(p);
	rc = dg_rdma_ep_connect(p->ep, &h, sizeof(h), reply, &rlen, timeout_ms);
	if (rc)
		goto err;
	if (!dg_peer_is_hello(reply, rlen)) {
		rc = -EPROTO;
		goto err;
	}
	set_remote(p, reply);
	*out = p;
	return 0;
err:
	free_peer(p);
	return rc;
}

int dg_peer_accept_start(struct dg_rdma_ep *ep, const void *pdata, size_t plen,
			 const struct dg_peer_opts *o, struct dg_peer **out)
{
	struct dg_peer_hello h;
	struct dg_peer_opts n;
	struct dg_peer *p;
	int rc;

	rc = norm_opts(o, &n);
	if (!rc && !dg_peer_is_hello(pdata, plen))
		rc = -EPROTO;
	if (!rc)
		rc = peer_new(&n, &p);
	if (rc) {
		dg_rdma_ep_destroy(ep); /* rejects the request */
		return rc;
	}
	p->ep = ep;
	rc = peer_attach(p);
	if (rc)
		goto err;
	set_remote(p, pdata);
	h = local_hello(p);
	rc = dg_rdma_ep_accept_start(ep, &h, sizeof(h));
	if (rc)
		goto err;
	*out = p;
	return 0;
err:
	free_peer(p);
	return rc;
}

int dg_peer_accept_wait(struct dg_peer *p, int timeout_ms)
{
	return dg_rdma_ep_accept_wait(p->ep, timeout_ms);
}

int dg_peer_cm_fd(const struct dg_peer *p)
{
	return dg_rdma_ep_fd(p->ep);
}

int dg_peer_accept(struct dg_rdma_ep *ep, const void *pdata, size_t plen,
		   const struct dg_peer_opts *o, int timeout_ms,
		   struct dg_peer **out)
{
	struct dg_peer *p;
	int rc = dg_peer_accept_start(ep, pdata, plen, o, &p);

	if (rc)
		return rc;
	rc = dg_peer_accept_wait(p, timeout_ms);
	if (rc) {
		free_peer(p);
		return rc;
	}
	*out = p;
	return 0;
}

void dg_peer_destroy(struct dg_peer *p)
{
	if (p)
		free_peer(p);
}

/*
 * Posts send buffer idx with n frames as one signaled SEND, spending one
 * credit and reporting every credit owed. The caller checked the credit.
 * The frames were written by ordinary stores; the provider's post path
 * orders them before the doorbell, so the device reads what was written.
 */
/*
 * Credits that may be reported now: every one owed, unless the owner's
 * backlog (dg_peer_set_backlog) says the frames the peer could then send
 * would not fit what it has room for: what the peer holds (or spent on
 * messages still in flight) times our buffers' frames, plus the backlog,
 * stays within the cap.
 */
static uint32_t reportable(const struct dg_peer *p)
{
	uint32_t msgs;

	if (!p->rx_cap)
		return p->owed;
	msgs = p->backlog < p->rx_cap ? (p->rx_cap - p->backlog) / p->buf_frames
				      : 0;
	if (msgs <= p->peer_held)
		return 0;
	msgs -= p->peer_held;
	return msgs < p->owed ? msgs : p->owed;
}

static int post_msg(struct dg_peer *p, uint32_t idx, uint32_t n)
{
	uint8_t *buf = sbuf(p, idx);
	struct msg_hdr *h = (struct msg_hdr *)buf;
	uint32_t r = reportable(p);
	int rc;

	h->magic = MSG_MAGIC;
	h->version = MSG_VERSION;
	h->nframes = (uint16_t)n;
	h->credits = r;
	h->seq = p->tx_seq;
	/*
	 * Signaled: the buffer is reused only after its own completion, i.e.
	 * after the peer's device acknowledged the data (rule (c)).
	 */
	rc = dg_rdma_post_send(
		p->ep, p->mr, buf,
		(uint32_t)(sizeof(*h) + n * sizeof(struct dg_frame)),
		WR_SEND | idx, DG_RDMA_SIGNALED);
	if (rc)
		return rc; /* nothing was spent */
	p->credits--;
	p->owed -= r; /* reported in this header */
	p->peer_held += r;
	p->tx_seq++;
	p->st.msgs_tx++;
	p->st.frames_tx += n;
	return 0;
}

/* Sends the current batch if a data credit is available (rule (a)). */
static int send_cur(struct dg_peer *p)
{
	int rc;

	if (p->credits < 2) { /* the last credit is for credit-only msgs */
		if (!p->stalled)
			p->st.credit_stalls++;
		p->stalled = true;
		return -EAGAIN;
	}
	rc = post_msg(p, (uint32_t)p->cur, p->cur_n);
	if (rc == -EAGAIN)
		return rc; /* send queue full: cannot happen, see ep_attr */
	if (rc)
		return fail(p, rc);
	p->cur = -1;
	p->cur_n = 0;
	p->stalled = false;
	return 0;
}

/*
 * Posts a 0-frame message (credits only, or a keepalive) from a free send
 * buffer and counts it in *count. The caller checked credit and buffer.
 */
static int post_empty(struct dg_peer *p, uint64_t *count)
{
	uint32_t idx = p->free_sb[--p->nfree];
	int rc = post_msg(p, idx, 0);

	if (rc) {
		p->free_sb[p->nfree++] = idx;
		return rc == -EAGAIN ? 0 : fail(p, rc);
	}
	(*count)++;
	return 0;
}

/* Rule (b): returns owed credits alone once T are owed. */
static int send_credit(struct dg_peer *p)
{
	if (p->owed < p->owed_threshold || !p->credits || !p->nfree ||
	    !reportable(p))
		return 0; /* retried by the next poll or flush */
	return post_empty(p, &p->st.credit_msgs);
}

uint32_t dg_peer_room(const struct dg_peer *p)
{
	/* Data SENDs possible now: every credit but the reserved last one. */
	uint32_t c = p->credits >= 2 ? p->credits - 1 : 0;

	if (p->err)
		return 0;
	if (p->cur >= 0)
		return (p->msg_frames - p->cur_n) +
		       (c < p->nfree ? c : p->nfree) * p->msg_frames;
	if (!p->nfree)
		return 0;
	return p->msg_frames +
	       (c < p->nfree - 1 ? c : p->nfree - 1) * p->msg_frames;
}

int dg_peer_reserve(struct dg_peer *p, uint32_t n, struct dg_frame **slots)
{
	int rc;

	if (p->err)
		return p->err;
	if (!n || n > p->msg_frames)
		return -EINVAL;
	if (p->cur >= 0 && p->cur_n + n > p->msg_frames) {
		rc = send_cur(p);
		if (rc)
			return rc;
	}
	if (p->cur < 0) {
		if (!p->nfree)
			return -EAGAIN; /* all SENDs in flight: poll */
		p->cur = (int32_t)p->free_sb[--p->nfree];
		p->cur_n = 0;
	}
	*slots = buf_frames(sbuf(p, (uint32_t)p->cur)) + p->cur_n;
	p->reserved = n;
	return 0;
}

int dg_peer_commit(struct dg_peer *p, uint32_t n)
{
	int rc;

	if (p->err)
		return p->err;
	if (n > p->reserved)
		return -EINVAL;
	p->reserved = 0;
	p->cur_n += n;
	if (p->cur_n == p->msg_frames) {
		/* Full: send now; without credit it waits for put/flush. */
		rc = send_cur(p);
		if (rc && rc != -EAGAIN)
			return rc;
	}
	return 0;
}

int dg_peer_put(struct dg_peer *p, const struct dg_frame *f)
{
	struct dg_frame *slot;
	int rc = dg_peer_reserve(p, 1, &slot);

	if (rc)
		return rc;
	memcpy(slot, f, sizeof(*slot));
	return dg_peer_commit(p, 1);
}

int dg_peer_flush(struct dg_peer *p)
{
	int rc = 0, rc2;

	if (p->err)
		return p->err;
	/* Data first: it carries every owed credit along. */
	if (p->cur >= 0 && p->cur_n)
		rc = send_cur(p);
	if (rc && rc != -EAGAIN)
		return rc;
	/* Still owed (no data, or no data credit): rule (b). */
	rc2 = send_credit(p);
	return rc2 ? rc2 : rc;
}

/*
 * One received message in receive buffer idx. The RECV completion orders
 * the device's writes of the message before our loads of it. Validates the
 * header, takes the returned credits, hands the frames to cb in order, and
 * only then re-posts the buffer: the frames stay valid during cb.
 */
static int deliver(struct dg_peer *p, uint32_t idx, uint32_t len,
		   void (*cb)(void *arg, const struct dg_frame *f), void *arg)
{
	uint8_t *buf = rbuf(p, idx);
	const struct msg_hdr *h = (const struct msg_hdr *)buf;
	const struct dg_frame *fr = buf_frames(buf);
	uint32_t n, i;
	int rc;

	if (len < sizeof(*h) || h->magic != MSG_MAGIC ||
	    h->version != MSG_VERSION)
		return fail(p, -EPROTO);
	n = h->nframes;
	/* RC delivers in order: any gap means a broken peer. */
	if (n > p->buf_frames || len != sizeof(*h) + n * sizeof(*fr) ||
	    h->seq != p->rx_seq)
		return fail(p, -EPROTO);
	/* Credits only come back for messages we sent. */
	if (h->credits > p->credits_max - p->credits)
		return fail(p, -EPROTO);
	/* Every message spends a credit we gave (rule (a)). */
	if (!p->peer_held)
		return fail(p, -EPROTO);
	p->peer_held--;
	p->rx_seq++;
	p->credits += h->credits;
	p->st.msgs_rx++;
	for (i = 0; i < n; i++)
		cb(arg, &fr[i]);
	p->st.frames_rx += n;
	if (p->err) /* cb put/flushed on this link and it died */
		return p->err;
	rc = dg_rdma_post_recv(p->ep, p->mr, buf, (uint32_t)p->buf_size,
			       WR_RECV | idx);
	if (rc)
		return fail(p, rc);
	/* Re-posted: the peer may fill it again once told (rule (b)). */
	p->owed++;
	return (int)n;
}

/* A send-queue completion: a send buffer back, or a payload READ done. */
static void send_done(struct dg_peer *p, const struct dg_rdma_wc *wc)
{
	uint32_t idx = (uint32_t)(wc->wr_id & WR_IDX_MASK);

	if (wc->wr_id & WR_SEND) {
		/* Acknowledged by the peer: reusable. */
		p->free_sb[p->nfree++] = idx;
		return;
	}
	/* The READ's bytes are in place: its completion says so. */
	p->reads--;
	if (p->rd_cb)
		p->rd_cb(p->rd_arg, idx, 0);
}

int dg_peer_read(struct dg_peer *p, void *laddr, uint32_t len, uint64_t roff,
		 uint32_t tag)
{
	uintptr_t a = (uintptr_t)laddr, b = (uintptr_t)p->bulk;
	int rc;

	if (p->err)
		return p->err;
	if (!p->bulk_mr || !p->rsend_len || !len || a < b ||
	    a - b > p->bulk_len - len || len > p->bulk_len ||
	    roff > p->rsend_len || len > p->rsend_len - roff)
		return -EINVAL;
	if (p->reads >= PEER_READS)
		return -EAGAIN;
	rc = dg_rdma_post_read(p->ep, p->bulk_mr, laddr, len,
			       p->rsend_addr + roff, p->rsend_rkey,
			       WR_READ | tag, DG_RDMA_SIGNALED);
	if (rc == -EAGAIN)
		return rc;
	if (rc)
		return fail(p, rc);
	p->reads++;
	return 0;
}

void dg_peer_set_read_cb(struct dg_peer *p,
			 void (*cb)(void *arg, uint32_t tag, int status),
			 void *arg)
{
	p->rd_cb = cb;
	p->rd_arg = arg;
}

uint64_t dg_peer_send_area(const struct dg_peer *p)
{
	return p->rsend_len;
}

int dg_peer_poll(struct dg_peer *p,
		 void (*cb)(void *arg, const struct dg_frame *f), void *arg,
		 uint32_t max_msgs)
{
	struct dg_rdma_wc wc[POLL_CHUNK];
	uint32_t left = max_msgs ? max_msgs : POLL_DEFAULT_MAX;
	int frames = 0, rc;

	if (p->err)
		return p->err;
	if (!cb)
		return -EINVAL;
	if (++p->poll_calls % DG_PEER_CHECK_EVERY == 0) {
		rc = dg_peer_check(p);
		if (rc)
			return rc;
	}
	while (left) {
		int k = dg_rdma_poll(
			p->ep, wc,
			(int)(left < POLL_CHUNK ? left : POLL_CHUNK));
		int i;

		if (k < 0)
			return fail(p, k);
		for (i = 0; i < k; i++) {
			uint32_t idx = (uint32_t)(wc[i].wr_id & WR_IDX_MASK);

			/* Any failed completion: the QP is in error. */
			if (wc[i].status)
				return fail(p, -EIO);
			if (wc[i].wr_id & (WR_SEND | WR_READ)) {
				send_done(p, &wc[i]);
				continue;
			}
			rc = deliver(p, idx, wc[i].byte_len, cb, arg);
			if (rc < 0)
				return rc;
			frames += rc;
		}
		left -= (uint32_t)k;
		if ((uint32_t)k < POLL_CHUNK)
			break; /* CQ drained */
	}
	/*
	 * A full batch that stalled for credit leaves as soon as credit came
	 * back (it carries the owed credits too); a partial one waits for
	 * dg_peer_flush.
	 */
	if (p->cur >= 0 && p->cur_n == p->msg_frames && p->credits >= 2) {
		rc = send_cur(p);
		if (rc && rc != -EAGAIN)
			return rc;
	}
	rc = send_credit(p);
	return rc ? rc : frames;
}

int dg_peer_tick(struct dg_peer *p, uint64_t now_ms)
{
	int rc;

	if (p->err)
		return p->err;
	/* Message counters, not timestamps: the frame path reads no clock. */
	if (!p->last_rx_ms || p->st.msgs_rx != p->seen_rx) {
		p->seen_rx = p->st.msgs_rx;
		p->last_rx_ms = now_ms;
	}
	if (!p->last_tx_ms || p->st.msgs_tx != p->seen_tx) {
		p->seen_tx = p->st.msgs_tx;
		p->last_tx_ms = now_ms;
	}
	if (now_ms - p->last_rx_ms >= p->dead_ms)
		return fail(p, -ETIMEDOUT);
	if (now_ms - p->last_tx_ms < p->keepalive_ms)
		return 0;
	/* A partial batch says the same and carries frames too. */
	if (p->cur >= 0 && p->cur_n) {
		rc = send_cur(p);
		return rc && rc != -EAGAIN ? rc : 0;
	}
	/*
	 * A keepalive is a 0-frame message that spends a credit like a data
	 * message (rule (a): only with >= 2 credits), so the deadlock
	 * argument above covers it unchanged. Without a data credit the peer
	 * owes us >= recv_bufs / 2 and is about to speak itself (rule (b));
	 * a partial batch being filled (cur_n == 0) keeps its buffer.
	 */
	if (p->credits < 2 || !p->nfree)
		return 0;
	return post_empty(p, &p->st.keepalives);
}

int dg_peer_check(struct dg_peer *p)
{
	int rc;

	if (p->err)
		return p->err;
	rc = dg_rdma_ep_check(p->ep);
	return rc ? fail(p, rc) : 0;
}

uint32_t dg_peer_batch_frames(const struct dg_peer *p)
{
	return p->msg_frames;
}

void dg_peer_set_backlog(struct dg_peer *p, uint32_t frames, uint32_t cap)
{
	p->backlog = frames;
	p->rx_cap = cap;
}

uint32_t dg_peer_capacity(const struct dg_peer *p)
{
	/* dg_peer_room's largest value: msg_frames x min(credits, buffers). */
	return p->msg_frames *
	       (p->credits_max < p->send_bufs ? p->credits_max : p->send_bufs);
}

uint32_t dg_peer_rx_frames(const struct dg_peer *p)
{
	return p->buf_frames;
}

uint32_t dg_peer_remote_engine(const struct dg_peer *p)
{
	return p->remote_id;
}

void dg_peer_stats(const struct dg_peer *p, struct dg_peer_stats *s)
{
	*s = p->st;
}

int dg_peer_event_fd(const struct dg_peer *p)
{
	return dg_rdma_ep_cq_fd(p->ep);
}

int dg_peer_arm(struct dg_peer *p)
{
	return dg_rdma_ep_arm(p->ep);
}

void dg_peer_ack(struct dg_peer *p)
{
	dg_rdma_ep_ack(p->ep);
}

/*
 * A new liveness timeout for a link that is up (dagger-ctl set
 * peer_timeout_ms). The dead time changes at once (still at least 3 of
 * the peer's keepalive intervals); our keepalive interval only shrinks:
 * the peer was told it at connect and declares us dead after 3 of them,
 * so a longer one would let it time us out.
 */
void dg_peer_set_timeout(struct dg_peer *p, uint32_t timeout_ms)
{
	if (timeout_ms < DG_PEER_TIMEOUT_MIN)
		timeout_ms = DG_PEER_TIMEOUT_MIN;
	if (timeout_ms > DG_PEER_TIMEOUT_MAX)
		timeout_ms = DG_PEER_TIMEOUT_MAX;
	if (timeout_ms / 6 < p->keepalive_ms)
		p->keepalive_ms = timeout_ms / 6;
	p->dead_ms = timeout_ms;
	if (p->remote_ka_ms * 3 > p->dead_ms)
		p->dead_ms = p->remote_ka_ms * 3;
}

uint32_t dg_peer_credits(const struct dg_peer *p)
{
	return p->credits;
}
