/* SPDX-License-Identifier: MIT */
/*
 * dg_rdma.h - the project's only window onto verbs and rdma_cm.
 *
 * Everything above this layer (nic/, host/, tests) sees opaque handles and
 * negative errno values; only transport_rdma/ includes <infiniband/verbs.h>
 * and <rdma/rdma_cma.h>.
 *
 * An endpoint (struct dg_rdma_ep) is one reliable-connected QP with its own
 * protection domain, completion queue and rdma_cm event channel. Both sides
 * follow the same three steps:
 *
 *   active:  dg_rdma_ep_create()  -> dg_rdma_reg()... -> dg_rdma_ep_connect()
 *   passive: dg_rdma_listen()  -> dg_rdma_listener_next() -> dg_rdma_reg()...
 *            -> dg_rdma_ep_accept()
 *
 * so that memory can be registered (and its key put in the connection's
 * private data) before the connection is established.
 *
 * Work requests are queued with DG_RDMA_MORE and handed to the device as one
 * chain by dg_rdma_flush() (one doorbell per batch). Unsignaled requests are
 * allowed; the endpoint signals one request in every sq_depth/2 itself so
 * that send-queue slots are always reclaimed, and hides those completions.
 */
#ifndef DG_RDMA_H
#define DG_RDMA_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct dg_rdma_listener;
struct dg_rdma_ep;
struct dg_rdma_mr;

/* Largest private data an active side may send (RC limit of rdma_cm). */
#define DG_RDMA_CONNECT_PDATA_MAX 56
/* Largest private data a passive side may return with its accept. */
#define DG_RDMA_ACCEPT_PDATA_MAX  196

struct dg_rdma_ep_attr {
	uint32_t sq_depth; /* send-queue work requests (READ/WRITE/SEND) */
	uint32_t rq_depth; /* receive-queue work requests; 0: no RECVs */
	uint32_t rd_depth; /* outstanding READs wanted (clamped to device) */
};

enum dg_rdma_access {
	DG_RDMA_ACC_LOCAL_WRITE = 1 << 0,
	DG_RDMA_ACC_REMOTE_READ = 1 << 1,
	DG_RDMA_ACC_REMOTE_WRITE = 1 << 2,
};

enum dg_rdma_post_flags {
	DG_RDMA_SIGNALED = 1 << 0, /* report a completion for this request */
	DG_RDMA_MORE = 1 << 1,	   /* queue only; dg_rdma_flush() posts */
};

enum dg_rdma_opcode {
	DG_RDMA_OP_READ = 1,
	DG_RDMA_OP_WRITE,
	DG_RDMA_OP_SEND,
	DG_RDMA_OP_RECV,
};

struct dg_rdma_wc {
	uint64_t wr_id;
	int status;	     /* 0, or a negative errno (see dg_rdma_wc_errno) */
	uint32_t opcode;     /* enum dg_rdma_opcode */
	uint32_t byte_len;   /* RECV: bytes received */
	uint32_t raw_status; /* the device's status code, for messages */
	uint32_t imm;	     /* RECV of a WRITE WITH IMMEDIATE: its value */
	int has_imm;
};

/* Description of a remote region, as exchanged in private data. */
struct dg_rdma_remote {
	uint64_t addr;
	uint32_t rkey;
	uint32_t len;
};

/*
 * Passive side. addr is a numeric IPv4/IPv6 address of an RDMA device (or
 * NULL/"0.0.0.0" for all); port 0 picks a free port (dg_rdma_listener_port).
 */
int dg_rdma_listen(const char *addr, uint16_t port, int backlog,
		   struct dg_rdma_listener **out);
uint16_t dg_rdma_listener_port(const struct dg_rdma_listener *l);
/* The listener's event fd, for poll(2) by callers that wait on several. */
int dg_rdma_listener_fd(const struct dg_rdma_listener *l);
void dg_rdma_listener_destroy(struct dg_rdma_listener *l);

/*
 * Waits up to timeout_ms (-1: forever, 0: just check) for a connection
 * request and builds its endpoint (PD, CQ, QP). The peer's private data is
 * copied into pdata (up to *plen bytes; *plen is set to the length the
 * transport delivered, which may include padding). -ETIMEDOUT when none
 * arrived. The endpoint must then be accepted or destroyed (which rejects).
 */
int dg_rdma_listener_next(struct dg_rdma_listener *l,
			  const struct dg_rdma_ep_attr *attr, int timeout_ms,
			  void *pdata, size_t *plen, struct dg_rdma_ep **out);
int dg_rdma_ep_accept(struct dg_rdma_ep *ep, const void *pdata, size_t plen,
		      int timeout_ms);
/*
 * dg_rdma_ep_accept in two halves, for a caller that must not wait: the
 * accept (with its reply) is sent, then dg_rdma_ep_accept_wait waits up
 * to timeout_ms for the peer to complete the connection: 0 once it has,
 * -EAGAIN if not yet (timeout_ms 0), -ETIMEDOUT, or the error the
 * connection ended with. dg_rdma_ep_fd() becomes readable when there is
 * news.
 */
int dg_rdma_ep_accept_start(struct dg_rdma_ep *ep, const void *pdata,
			    size_t plen);
int dg_rdma_ep_accept_wait(struct dg_rdma_ep *ep, int timeout_ms);
/* The peer's address as 16 bytes (IPv4 mapped into IPv6). */
int dg_rdma_ep_peer(const struct dg_rdma_ep *ep, uint8_t out[16]);

/*
 * Active side: resolves dst (and binds to src if not NULL, which selects the
 * local device) and builds the endpoint. Then dg_rdma_ep_connect() sends
 * pdata and copies the passive side's reply into reply (up to *reply_len;
 * *reply_len is set to the delivered length).
 */
int dg_rdma_ep_create(const char *src, const char *dst, uint16_t port,
		      const struct dg_rdma_ep_attr *attr, int timeout_ms,
		      struct dg_rdma_ep **out);
int dg_rdma_ep_connect(struct dg_rdma_ep *ep, const void *pdata, size_t plen,
		       void *reply, size_t *reply_len, int timeout_ms);
/*
 * Sends the connection request only. Nothing completes it until the
 * endpoint's events are read (dg_rdma_ep_connect reads them): tests use it
 * to play a peer that starts a connection and never finishes it.
 */
int dg_rdma_ep_connect_start(struct dg_rdma_ep *ep, const void *pdata,
			     size_t plen);
/* The rest of dg_rdma_ep_connect, after dg_rdma_ep_connect_start. */
int dg_rdma_ep_connect_wait(struct dg_rdma_ep *ep, void *reply,
			    size_t *reply_len, int timeout_ms);

/* Disconnects (if connected), releases every resource, NULL is a no-op. */
void dg_rdma_ep_destroy(struct dg_rdma_ep *ep);
/*
 * Passive side, before accepting: refuses the request with private data
 * (up to DG_RDMA_REJECT_PDATA_MAX bytes, which dg_rdma_ep_connect's reply
 * receives with -ECONNREFUSED), then destroys the endpoint.
 */
#define DG_RDMA_REJECT_PDATA_MAX 148
void dg_rdma_ep_reject(struct dg_rdma_ep *ep, const void *pdata, size_t plen);
/* The refusal alone: the endpoint stays, for its owner to destroy. */
void dg_rdma_ep_refuse(struct dg_rdma_ep *ep, const void *pdata, size_t plen);

/*
 * Non-blocking check of the connection's state: 0 while connected,
 * -ENOTCONN once the peer disconnected or the device failed, -EIO after a
 * failed completion moved the QP to the error state.
 */
int dg_rdma_ep_check(struct dg_rdma_ep *ep);
/* The endpoint's rdma_cm event fd, readable when its state may change. */
int dg_rdma_ep_fd(const struct dg_rdma_ep *ep);
/*
 * Completion events, for callers that sleep while idle instead of
 * spinning: arm, poll completions once more (to close the race with ones
 * that arrived before arming), then wait for the fd to become readable and
 * ack. cq_fd is non-blocking.
 */
int dg_rdma_ep_cq_fd(const struct dg_rdma_ep *ep);
int dg_rdma_ep_arm(struct dg_rdma_ep *ep);
void dg_rdma_ep_ack(struct dg_rdma_ep *ep);
/* Name of the local device (e.g. "rxe0"), for messages. */
const char *dg_rdma_ep_device(const struct dg_rdma_ep *ep);

/* Registration on the endpoint's protection domain. */
int dg_rdma_reg(struct dg_rdma_ep *ep, void *addr, size_t len, int access,
		struct dg_rdma_mr **out);
void dg_rdma_dereg(struct dg_rdma_mr *mr);
uint32_t dg_rdma_mr_rkey(const struct dg_rdma_mr *mr);
struct dg_rdma_remote dg_rdma_mr_remote(const struct dg_rdma_mr *mr);

/*
 * One-sided and two-sided operations. laddr/len must lie inside lmr.
 * Return 0, -EAGAIN when the send queue is full (poll completions and retry),
 * -EINVAL for arguments outside lmr, -ENOTCONN/-EIO when the endpoint failed.
 */
int dg_rdma_post_read(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		      void *laddr, uint32_t len, uint64_t raddr, uint32_t rkey,
		      uint64_t wr_id, unsigned flags);
int dg_rdma_post_write(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		       const void *laddr, uint32_t len, uint64_t raddr,
		       uint32_t rkey, uint64_t wr_id, unsigned flags);
int dg_rdma_post_send(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		      const void *laddr, uint32_t len, uint64_t wr_id,
		      unsigned flags);
int dg_rdma_post_recv(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		      void *laddr, uint32_t len, uint64_t wr_id);
/*
 * RDMA WRITE WITH IMMEDIATE: like dg_rdma_post_write (len may be 0, then
 * lmr and laddr are not used), and the target consumes one of its RECVs
 * and gets a completion carrying imm: what lets a peer that sleeps on its
 * completion channel be woken by a write into its memory. The target's
 * RECV completion comes after the data of this and every earlier WRITE
 * on the QP has landed.
 */
int dg_rdma_post_write_imm(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
			   const void *laddr, uint32_t len, uint64_t raddr,
			   uint32_t rkey, uint32_t imm, uint64_t wr_id,
			   unsigned flags);
/* A RECV with no buffer: consumed by a WRITE WITH IMMEDIATE. */
int dg_rdma_post_recv0(struct dg_rdma_ep *ep, uint64_t wr_id);
/* Hands every queued (DG_RDMA_MORE) send-queue request to the device. */
int dg_rdma_flush(struct dg_rdma_ep *ep);
/* Free send-queue slots (queued requests count as used). */
uint32_t dg_rdma_sq_free(const struct dg_rdma_ep *ep);

/*
 * Polls up to n completions (never blocks). Returns how many were stored,
 * or a negative errno. Completions of requests the endpoint signaled for
 * its own book-keeping are consumed silently.
 */
int dg_rdma_poll(struct dg_rdma_ep *ep, struct dg_rdma_wc *wc, int n);

/* Human-readable text of a completion's raw status. */
const char *dg_rdma_wc_str(const struct dg_rdma_wc *wc);

#ifdef __cplusplus
}
#endif
#endif /* DG_RDMA_H */
