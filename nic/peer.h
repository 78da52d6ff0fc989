/* SPDX-License-Identifier: MIT */
/*
 * peer.h - the frame transport between two NIC engines ("peer link").
 *
 * One peer link is one reliable-connected endpoint (dg_rdma.h) between two
 * engines that carries 64-byte frames (struct dg_frame) in both directions,
 * in order, exactly once, or reports the link dead. Frame content is opaque
 * here: 64 bytes are copied, nothing is looked at.
 *
 * Messages. Frames travel batched in SENDs. Every SEND carries one 64-byte
 * message header and 0..N frames:
 *
 *   [hdr: magic, version, nframes, credits, seq][frame 0]...[frame n-1]
 *
 * N is the smaller of this side's batch_frames and the frames the peer's
 * receive buffers hold (both announced in the connection's private data).
 * seq counts messages per direction from 0; a receiver that sees a bad
 * magic/version/length or a sequence gap declares the link dead (-EPROTO).
 *
 * Credits. Each side pre-posts recv_bufs receive buffers before connecting.
 * A sender holds one credit per peer receive buffer it may still fill and
 * spends one per SEND, so a SEND never arrives without a posted buffer. The
 * receiver re-posts a buffer once it has handed its frames to the callback
 * and returns the credit in the 'credits' field of its next message:
 * piggybacked on data, or in a credit-only message (0 frames) once
 * recv_bufs / 2 are owed and no data carried them. A data message may not
 * spend a sender's last credit; that one is kept for credit-only messages
 * so that the two sides cannot deadlock (argument in peer.c).
 *
 * Back-pressure, never loss: when the current batch is full and cannot be
 * sent (no credit) or no send buffer is free, dg_peer_put() returns -EAGAIN
 * and the caller polls (dg_peer_poll) and retries later.
 *
 * Large payloads do not travel in messages: the sending engine leaves
 * them in its send area (memory the peer may READ, announced in the
 * hello) and sends a frame that says where; the receiving engine READs
 * them into its own memory with dg_peer_read() (one RDMA READ each) and
 * tells the sender when it is done (a frame of the engine's protocol).
 *
 * Threading: a link is used by one thread at a time (the engine's poll
 * loop); nothing here locks. The per-frame path (put/reserve/commit) copies
 * and counts only; a SEND is posted per batch (one doorbell per SEND).
 *
 * Errors are negative errno values. Once a link has failed every call
 * returns the same error (sticky); destroy it.
 */
#ifndef DG_NIC_PEER_H
#define DG_NIC_PEER_H

#include <assert.h>
#include <stddef.h>
#include <stdint.h>

#include "dagger/frame.h"
#include "dg_rdma.h"

#ifdef __cplusplus
extern "C" {
#endif

struct dg_peer;

/* Defaults and limits of struct dg_peer_opts (0 selects the default). */
#define DG_PEER_BATCH_DEFAULT	  64u
#define DG_PEER_BATCH_MAX	  1024u
#define DG_PEER_RECV_BUFS_DEFAULT 64u
#define DG_PEER_RECV_BUFS_MIN	  4u /* credit-only threshold >= 2 */
#define DG_PEER_RECV_BUFS_MAX	  4096u
#define DG_PEER_SEND_BUFS_DEFAULT 8u
#define DG_PEER_SEND_BUFS_MAX	  256u
#define DG_PEER_TIMEOUT_DEFAULT	  3000u /* ms */
#define DG_PEER_TIMEOUT_MIN	  60u
#define DG_PEER_TIMEOUT_MAX	  300000u

struct dg_peer_opts {
	/* Frames per SEND and per receive buffer (default 64). */
	uint32_t batch_frames;
	/* Pre-posted receive buffers = the peer's credits (default 64). */
	uint32_t recv_bufs;
	/* Send buffers; one per SEND in flight (default 8). */
	uint32_t send_bufs;
	/* This engine's id, sent to the peer (dg_peer_remote_engine). */
	uint32_t engine_id;
	/*
	 * Liveness (dg_peer_tick): the link is declared dead (-ETIMEDOUT)
	 * when nothing arrived from the peer for timeout_ms (default 3000),
	 * or for 3 of the peer's keepalive intervals if that is longer. This
	 * side sends a keepalive (a 0-frame message) after timeout_ms / 6 of
	 * sending nothing, and announces that interval in its hello.
	 */
	uint32_t timeout_ms;
	/*
	 * Large payloads: engine memory dg_peer_read() READs into (bulk,
	 * bulk_len bytes, registered for local access on the link), and the
	 * part of it the peer may READ from: this side's send area,
	 * [send_off, send_off + send_len) of bulk, registered for remote
	 * READ on the link only and announced in the hello. NULL: none.
	 */
	void *bulk;
	size_t bulk_len, send_off, send_len;
};

/*
 * Connection private data ("hello") that both sides send. The passive
 * side's listener uses dg_peer_is_hello() on the connect request's private
 * data to tell a peer engine from other clients.
 */
#define DG_PEER_HELLO_MAGIC   0x4c504744u /* "DGPL" little-endian */
#define DG_PEER_HELLO_VERSION 2u

struct dg_peer_hello {
	uint32_t magic;
	uint16_t version;
	uint16_t keepalive_ms; /* the sender's keepalive interval */
	uint32_t engine_id;
	uint32_t recv_bufs;  /* receive buffers = credits for the peer */
	uint32_t buf_frames; /* frames one receive buffer holds */
	uint32_t send_rkey;  /* the sender's send area (0 bytes: none) */
	uint64_t send_addr;
	uint64_t send_len;
};

static_assert(sizeof(struct dg_peer_hello) <= 56, "rdma_cm private data");

/* Nonzero when pdata/plen is a valid peer hello. */
int dg_peer_is_hello(const void *pdata, size_t plen);

/*
 * Endpoint attributes a link built with opts o needs. A listener that
 * accepts peer links must pass (at least) these to dg_rdma_listener_next()
 * for requests that may turn out to be peers; o may be NULL (defaults).
 */
void dg_peer_ep_attr(const struct dg_peer_opts *o,
		     struct dg_rdma_ep_attr *attr);

/*
 * Active side: connects from src (NULL: any device) to dst:port, a peer
 * engine's listener, exchanging hellos. o may be NULL (defaults).
 * timeout_ms bounds address/route resolution and the connection each.
 */
int dg_peer_connect(const char *src, const char *dst, uint16_t port,
		    const struct dg_peer_opts *o, int timeout_ms,
		    struct dg_peer **out);

/*
 * Passive side: ep came from dg_rdma_listener_next() (with dg_peer_ep_attr()
 * attributes) and pdata/plen is the request's private data, a peer hello.
 * Builds the link and accepts. Takes ownership of ep in every case: on
 * failure ep has been destroyed (the request rejected).
 */
int dg_peer_accept(struct dg_rdma_ep *ep, const void *pdata, size_t plen,
		   const struct dg_peer_opts *o, int timeout_ms,
		   struct dg_peer **out);
/*
 * dg_peer_accept in two halves, for a caller that must not wait: the link
 * is built and the accept sent; dg_peer_accept_wait then says whether the
 * peer completed the connection (as dg_rdma_ep_accept_wait: 0, -EAGAIN
 * with timeout_ms 0, or an error; the link is the caller's to destroy).
 * dg_peer_cm_fd() becomes readable when there is news.
 */
int dg_peer_accept_start(struct dg_rdma_ep *ep, const void *pdata, size_t plen,
			 const struct dg_peer_opts *o, struct dg_peer **out);
int dg_peer_accept_wait(struct dg_peer *p, int timeout_ms);
int dg_peer_cm_fd(const struct dg_peer *p);

/*
 * Queues one frame (64 bytes copied into the current batch). A batch that
 * becomes full is sent at once. 0: queued. -EAGAIN: no room now (the batch
 * is full and has no credit, or no send buffer is free); poll and retry.
 * Other errors: the link is dead.
 */
int dg_peer_put(struct dg_peer *p, const struct dg_frame *f);

/*
 * Zero-copy variant of dg_peer_put: reserves n (1..dg_peer_batch_frames())
 * contiguous frame slots in the current batch and stores their address in
 * *slots; the caller writes them and then calls dg_peer_commit(p, n') with
 * n' <= n frames actually written. Nothing else may be called on the link
 * in between. Same errors as dg_peer_put, -EINVAL for a bad n.
 */
int dg_peer_reserve(struct dg_peer *p, uint32_t n, struct dg_frame **slots);
int dg_peer_commit(struct dg_peer *p, uint32_t n);

/*
 * Frames that dg_peer_put/reserve will take right now without -EAGAIN, so
 * a caller can hand over a whole multi-frame RPC or nothing (the engine
 * keeps every RPC contiguous in the stream). 0 once the link is dead.
 */
uint32_t dg_peer_room(const struct dg_peer *p);

/*
 * Sends the current partial batch (one SEND); the engine calls this at the
 * end of each poll-loop iteration. Frames are handed to the device only by
 * a full batch or by this call. 0: nothing was pending or it was sent.
 * -EAGAIN: no credit yet, the batch stays queued (poll, then flush again).
 */
int dg_peer_flush(struct dg_peer *p);

/*
 * Progress: polls up to max_msgs completions (0: a default), reclaims send
 * buffers, hands every received frame to cb in order, re-posts receive
 * buffers and returns credits (a credit-only message when recv_bufs / 2
 * are owed); a full batch that stalled for credit is sent once it has one. The
 * frame pointer is valid only during cb; cb may put/flush on this link but must
 * not poll or destroy it. Returns the number of frames delivered, or a negative
 * errno once the link died (-EIO: a failed completion, -ENOTCONN: the peer
 * disconnected, -EPROTO: a malformed message). Looks at the connection state
 * itself (a system call) only once every DG_PEER_CHECK_EVERY calls;
 * dg_peer_check() does it now.
 */
#define DG_PEER_CHECK_EVERY 4096u
int dg_peer_poll(struct dg_peer *p,
		 void (*cb)(void *arg, const struct dg_frame *f), void *arg,
		 uint32_t max_msgs);

/*
 * Liveness, driven by the caller's clock (milliseconds, any monotonic
 * origin) so that nothing on the per-frame path reads a clock: call it a few
 * times per keepalive interval. Sends a keepalive when this side sent
 * nothing for timeout_ms / 6 (or sends the partial batch, which does the
 * same), and declares the link dead with -ETIMEDOUT when nothing arrived
 * for the liveness timeout: a peer engine that hangs, is stopped, or whose
 * machine died is noticed here even when no SEND of ours is outstanding
 * (the transport alone would notice only then, if ever). Returns 0 or the
 * link's sticky error.
 */
int dg_peer_tick(struct dg_peer *p, uint64_t now_ms);

/*
 * Large payloads. dg_peer_read READs len bytes at offset roff of the
 * peer's send area into laddr (inside this side's bulk memory), signaled:
 * the read callback gets tag and 0 (or the failure) from a later
 * dg_peer_poll. 0, -EINVAL (outside either area, or
 * no send area), -EAGAIN (the send queue is full), or the link's error.
 */
int dg_peer_read(struct dg_peer *p, void *laddr, uint32_t len, uint64_t roff,
		 uint32_t tag);
void dg_peer_set_read_cb(struct dg_peer *p,
			 void (*cb)(void *arg, uint32_t tag, int status),
			 void *arg);
/* Bytes of the peer's send area (0: it has none). */
uint64_t dg_peer_send_area(const struct dg_peer *p);

/* 0 while alive; -ENOTCONN / -EIO / -EPROTO once dead (not per-frame). */
int dg_peer_check(struct dg_peer *p);

/* Disconnects and frees; queued frames are dropped. NULL is a no-op. */
void dg_peer_destroy(struct dg_peer *p);

/* Completion events of the link's endpoint (see dg_rdma_ep_arm). */
int dg_peer_event_fd(const struct dg_peer *p);
int dg_peer_arm(struct dg_peer *p);
void dg_peer_ack(struct dg_peer *p);

/* Frames per SEND on this link (<= batch_frames, <= the peer's buffers). */
uint32_t dg_peer_batch_frames(const struct dg_peer *p);
/*
 * The most frames dg_peer_room() can ever report on this link (every send
 * buffer free, every credit back): a whole RPC of more frames can never
 * be handed over, so a caller refuses it instead of waiting. Set by the
 * peer's hello (its buffers' count and size): 0 before.
 */
uint32_t dg_peer_capacity(const struct dg_peer *p);
/*
 * Most frames one message from the peer may carry (our receive buffers):
 * a caller that bounds what dg_peer_poll() hands it sizes by this, not by
 * dg_peer_batch_frames(), which the peer's smaller buffers may lower.
 */
uint32_t dg_peer_rx_frames(const struct dg_peer *p);
/*
 * Receive-side flow control for an owner that queues received frames
 * before it can act on them: frames are queued now, of at most cap.
 * Credits are then returned only as far as every frame the peer may send
 * with them still fits (cap >= recv_bufs * dg_peer_rx_frames() frames).
 * The link stays polled (credits from the peer keep arriving) whatever
 * the backlog; a peer that sends without a credit is a protocol error.
 */
void dg_peer_set_backlog(struct dg_peer *p, uint32_t frames, uint32_t cap);
/* The peer's engine_id from its hello. */
uint32_t dg_peer_remote_engine(const struct dg_peer *p);

struct dg_peer_stats {
	uint64_t msgs_tx;	/* SENDs posted, credit-only included */
	uint64_t msgs_rx;	/* messages received, credit-only included */
	uint64_t frames_tx;	/* frames in posted SENDs */
	uint64_t frames_rx;	/* frames handed to the callback */
	uint64_t credit_stalls; /* a batch was ready but had no credit */
	uint64_t credit_msgs;	/* credit-only messages sent */
	uint64_t keepalives;	/* keepalive messages sent */
};

void dg_peer_stats(const struct dg_peer *p, struct dg_peer_stats *s);

/*
 * A new liveness timeout for a link that is up: the dead time at once,
 * the keepalive interval only if it gets shorter (the peer knows ours).
 */
void dg_peer_set_timeout(struct dg_peer *p, uint32_t timeout_ms);
/* The peer's receive buffers we may still fill (send credits). */
uint32_t dg_peer_credits(const struct dg_peer *p);

#ifdef __cplusplus
}
#endif
#endif /* DG_NIC_PEER_H */
