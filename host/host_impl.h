/* SPDX-License-Identifier: MIT */
/*
 * host_impl.h - libdagger's private state, shared by its files:
 *
 *   attach.c  attaching to an engine (RDMA, a daemon's shared memory, or an
 *             engine in this process), flows, detach
 *   client.c  calls, completions, control messages (OPEN, CLOSE)
 *   server.c  serving a service: dg_serve_poll, dispatch threads
 *   workers.c worker pools behind dispatch threads
 *   keys.c    keyed calls (DG_LB_KEY)
 *   payload.c large messages: payload areas, descriptor frames
 *
 * and the per-RPC primitives (TX reservation and publication, RX parsing)
 * as inline functions for the library's own paths. struct dg_flow and the
 * fast paths of dg_call and dg_poll are in dagger/flow.h (public: they are
 * inline in applications).
 */
#ifndef DG_HOST_IMPL_H
#define DG_HOST_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "dagger/dagger.h"
#include "dagger/ring.h"

/*
 * Reassembly arena of one dg_poll (multi-frame messages). Continuation
 * frames are copied 56 bytes at a time: a message may write up to 55
 * bytes past its length, into DG_RX_SLACK.
 */
#define DG_RX_ARENA (4u * DG_MAX_INLINE)
#define DG_RX_SLACK 64u

struct dg_rdma_ep;
struct dg_rdma_mr;

/*
 * Calls given up: rpc_id joins the flow's abandoned calls (0), -ENOSPC when
 * DG_ABANDON_MAX are already waiting for their answers (the call then
 * stays outstanding). dg_abandoned_take: an answer came for rpc_id; true
 * when it was given up (it is dropped, counted in st.late).
 */
int dg_abandon(struct dg_flow *f, uint32_t rpc_id);
bool dg_abandoned_take(struct dg_flow *f, uint32_t rpc_id);

struct dg_host {
	struct dg_host_opts o;
	uint8_t *region;
	uint64_t size;
	struct dg_region_layout lay;
	uint32_t pay_shift; /* payload areas: 1 << pay_shift bytes, 0: none */
	struct dg_flow *flows;
	uint32_t nflows;
	uint32_t rflags; /* enum dg_ring_flags of its rings */
	/* RDMA backend */
	struct dg_rdma_ep *ep;
	struct dg_rdma_mr *mr;
	/* local backend (engine in this process) */
	int tenant;
	/* shared-memory backend (an engine daemon): its socket, the memfd */
	int shm_sock;
	bool region_mapped; /* region is an mmap of a memfd, not a malloc */
	/* The engine's eventfd (shared memory, in-process): kicks it awake. */
	int engine_fd;
	bool engine_fd_owned; /* received (shm); in-process: the engine's */
	/* RDMA: the engine's copy of the region, for doorbells and pushes. */
	uint64_t shadow_addr;
	uint32_t shadow_rkey, shadow_len;
	/*
	 * RDMA: the endpoint is shared by the flows' threads in doorbell and
	 * push modes and by the waker thread: posting and reaping hold vlock
	 * (those modes post a verb per batch anyway; poll mode takes none).
	 * The waker sleeps on the completion channel and passes each
	 * engine's wake-up on to its flow's eventfd.
	 */
	pthread_mutex_t vlock;
	pthread_t waker;
	bool waker_on;
	int broken; /* atomic: a failed completion (the queue is in error) */
	int waker_stop;
	/*
	 * atomic: the end (ns) of the yield phase of the one thread waiting
	 * for requests that may be in one (wake.c); 0 or past: none.
	 */
	uint64_t req_yielder;
	/*
	 * atomic: idle spells begun by threads waiting for requests (each
	 * after taking some) and wake-ups the waker passed on (wake.c)
	 */
	uint32_t req_events;
};

int dg_flow_claim(struct dg_flow *f);

/* 0 when the calling thread owns f (claiming it if nobody does). */
static inline int dg_own(struct dg_flow *f)
{
	if (DG_LIKELY(__atomic_load_n(&f->owner, __ATOMIC_RELAXED) ==
		      dg_thread_id()))
		return 0;
	return dg_flow_claim(f);
}

/* ---- TX ------------------------------------------------------------------ */

/* Reserves room for cnt frames: -EAGAIN if the engine has not freed it. */
static inline int dg_tx_reserve(struct dg_flow *f, uint32_t cnt)
{
	if (DG_LIKELY(f->slots - (f->tx_tail - f->tx_head) >= cnt))
		return 0;
	/*
	 * Only when the cached index says no: load the engine's. Acquire:
	 * the engine wrote tx_head after its READs of the slots below it
	 * completed; our rewrites of those slots come after.
	 */
	f->tx_head = __atomic_load_n(&f->ctrl->tx_head, __ATOMIC_ACQUIRE);
	return f->slots - (f->tx_tail - f->tx_head) >= cnt ? 0 : -EAGAIN;
}

/*
 * The header of a message's first frame (everything but stamp and csum),
 * as three 8-byte stores: rpc_id|conn, len|fn_id|cnt, flags|status|flow|
 * rsvd|key (little-endian, as the static asserts of dagger/frame.h lay
 * them out).
 */
static inline void dg_frame_head(struct dg_frame *s, uint8_t flags,
				 uint8_t status, uint32_t rpc_id, uint32_t conn,
				 uint16_t fn, uint32_t len, uint32_t cnt)
{
	uint64_t w0 = rpc_id | (uint64_t)conn << 32;
	uint64_t w1 = len | (uint64_t)fn << 32 | (uint64_t)cnt << 48;
	uint64_t w2 = flags | (uint64_t)status << 8;

	memcpy((uint8_t *)s + 8, &w0, 8);
	memcpy((uint8_t *)s + 16, &w1, 8);
	memcpy((uint8_t *)s + 24, &w2, 8);
}

/* Slot of TX position pos, as a continuation frame. */
static inline struct dg_frame_cont *dg_tx_cont(struct dg_flow *f, uint32_t pos)
{
	return (struct dg_frame_cont *)&f->tx[pos & f->mask];
}

/*
 * Writes one message (cnt frames, room checked) and publishes it: every
 * slot's bytes, then its stamp last (release, dg_slot_publish), the
 * continuation frames in position order and the first frame last of all:
 * a consumer that polls the first slot of a message sees it only when the
 * whole message is in place (shared memory), and a READ that overlaps the
 * stores either fails a checksum or sees the old stamp there. A two-frame
 * message that does not wrap is one contiguous run (dg_msg_contig).
 */
static inline __attribute__((always_inline)) void
dg_tx_put_as(struct dg_flow *f, uint8_t flags, uint8_t status, uint32_t rpc_id,
	     uint32_t conn, uint16_t fn, const void *buf, uint32_t len,
	     uint32_t cnt, const unsigned rflags)
{
	uint32_t pos = f->tx_tail;
	struct dg_frame *s = &f->tx[pos & f->mask];

	dg_frame_head(s, flags, status, rpc_id, conn, fn, len, cnt);
	if (DG_LIKELY(cnt == 1)) {
		dg_copy64(s->data, buf, len);
	} else if (DG_LIKELY(cnt == 2 && dg_msg_contig(pos, f->mask))) {
		dg_copy128((uint8_t *)s + DG_FRAME_HDR, buf, len);
		dg_cont_publish(dg_tx_cont(f, pos + 1), pos + 1, rflags);
	} else {
		const uint8_t *p = (const uint8_t *)buf + DG_FRAME_PAYLOAD;
		uint32_t i, left = len - DG_FRAME_PAYLOAD;

		memcpy(s->data, buf, DG_FRAME_PAYLOAD);
		for (i = 1; i < cnt - 1; i++) {
			memcpy(dg_tx_cont(f, pos + i)->data, p,
			       DG_CONT_PAYLOAD);
			p += DG_CONT_PAYLOAD;
			left -= DG_CONT_PAYLOAD;
			dg_cont_publish(dg_tx_cont(f, pos + i), pos + i,
					rflags);
		}
		dg_copy64(dg_tx_cont(f, pos + i)->data, p, left);
		dg_cont_publish(dg_tx_cont(f, pos + i), pos + i, rflags);
	}
	if (rflags & DG_RING_F_CSUM) /* RDMA rings (dagger/ring.h) */
		dg_ring_guard(f->tx, f->mask, pos + cnt);
	dg_slot_publish(s, pos, rflags);
	f->tx_tail = pos + cnt;
}

/* The same with f's own ring flags (known only at run time). */
static inline void dg_tx_put(struct dg_flow *f, uint8_t flags, uint8_t status,
			     uint32_t rpc_id, uint32_t conn, uint16_t fn,
			     const void *buf, uint32_t len, uint32_t cnt)
{
	dg_tx_put_as(f, flags, status, rpc_id, conn, fn, buf, len, cnt,
		     f->rflags);
}

/* ---- RX ------------------------------------------------------------------ */

static inline void dg_rx_release(struct dg_flow *f)
{
	if (f->rx_freed != f->rx_tail)
		dg_rx_free(f, f->rx_tail, 1);
	f->arena_used = 0;
	f->heap_used = 0;
}

struct dg_rx_msg {
	const struct dg_frame *s; /* first frame (header) */
	const void *data;
	uint32_t len;
};

int dg_rx_take_multi(struct dg_flow *f, const struct dg_frame *s,
		     struct dg_rx_msg *m);

/*
 * Takes the next whole message from the RX ring. Returns 1 with it in *m,
 * 0 when none is complete yet, -EAGAIN when the reassembly arena is full
 * for this round. A one-frame message is handed out in place.
 */
static inline int dg_rx_take(struct dg_flow *f, struct dg_rx_msg *m)
{
	uint32_t pos = f->rx_tail, len, cnt;
	const struct dg_frame *s = &f->rx[pos & f->mask];
	uint64_t w;

	if (!dg_slot_ready(s, pos, f->rflags))
		return 0;
	memcpy(&w, &s->len, 8); /* len, fn_id, cnt: one load */
	len = (uint32_t)w;
	cnt = (uint32_t)(w >> 48);
	m->s = s;
	if (DG_LIKELY(cnt == 1 && len <= DG_FRAME_PAYLOAD)) {
		m->data = s->data;
		m->len = len;
		f->rx_tail = pos + 1;
		return 1;
	}
	/* Two frames in one piece: handed out in place too. */
	if (DG_LIKELY(cnt == 2 && len > DG_FRAME_PAYLOAD &&
		      len <= DG_FRAME_PAYLOAD + DG_CONT_PAYLOAD &&
		      dg_msg_contig(pos, f->mask))) {
		if (!dg_cont_ready((const void *)(s + 1), pos + 1, f->rflags))
			return 0;
		m->data = s->data;
		m->len = len;
		f->rx_tail = pos + 2;
		f->rx_scrub |= f->rflags & DG_RING_F_CSUM;
		return 1;
	}
	return dg_rx_take_multi(f, s, m);
}

/* ---- large messages (payload.c) ----------------------------------------- */

/* Whether a message of len bytes from f travels outside the ring. */
static inline bool dg_pay_use(const struct dg_flow *f, size_t len)
{
	return len > f->large && len <= f->pay_size && len > DG_FRAME_PAYLOAD;
}

/*
 * Reserves len contiguous bytes of f's TX payload area: their position in
 * *pos (the buffer: f->pay_tx + (*pos & (pay_size - 1))). Nothing is taken
 * until dg_pay_put publishes a message for them. 0 or -EAGAIN.
 */
int dg_pay_reserve(struct dg_flow *f, uint32_t len, uint32_t *pos);
/*
 * Writes and publishes the descriptor frame of a message whose len bytes
 * are in place at TX payload position ppos (one ring slot, room checked),
 * and takes those bytes.
 */
void dg_pay_put(struct dg_flow *f, uint8_t flags, uint8_t status,
		uint32_t rpc_id, uint32_t conn, uint16_t fn, uint32_t key,
		uint32_t ppos, uint32_t len);
/* A large call (dg_call, dg_call_key): req copied unless dg_call_buf's. */
int dg_call_pay(struct dg_flow *f, int conn, uint16_t fn, uint8_t flags,
		uint32_t key, const void *req, uint32_t len, uint32_t *rpc_id);
/* A large call written by fill (dg_call_fill, dg_call_fill_key). */
int dg_fill_pay(struct dg_flow *f, int conn, uint16_t fn, uint8_t flags,
		uint32_t key, uint32_t len, dg_fill_fn fill, void *arg,
		uint32_t *rpc_id);
/*
 * A large response from a server flow (resp: the handler's; f->res_buf
 * when it built it in place). Waits for payload room like tx_wait.
 * false when it could not be sent.
 */
bool dg_pay_respond(struct dg_flow *f, uint8_t status, uint32_t rpc_id,
		    uint32_t conn, uint16_t fn, const void *data, uint32_t len);
/*
 * The payload of a descriptor frame the engine delivered, or NULL when
 * the descriptor does not lie inside this flow's RX payload area.
 */
static inline const void *dg_pay_rx_data(const struct dg_flow *f,
					 const struct dg_frame *s, uint32_t len)
{
	uint32_t pos;

	memcpy(&pos, s->data, 4);
	if (len <= DG_FRAME_PAYLOAD || !dg_pay_fits(pos, len, f->pay_size))
		return NULL;
	return f->pay_rx + (pos & (f->pay_size - 1));
}

/* A control reply: taken out of the RX stream for the waiting call. */
static inline void dg_ctrl_record(struct dg_flow *f, const struct dg_frame *s)
{
	f->ctrl_done = true;
	f->ctrl_rpc = s->rpc_id;
	f->ctrl_status = s->status;
	f->ctrl_conn = s->conn;
}

/*
 * Calls made and not completed yet: every call gets one completion, but
 * those given up (dg_abandon) no longer hold the flow back.
 */
static inline uint64_t dg_outstanding(const struct dg_flow *f)
{
	uint64_t n = f->st.calls - f->st.completions;

	return n > f->nabandoned ? n - f->nabandoned : 0;
}

/* ---- after a publication (wake.c) ------------------------------------------
 */

void dg_kick_engine(struct dg_flow *f);

/*
 * dg_call_fill with the request's frame flags (DG_FF_REQ, with DG_FF_KEY
 * for a keyed call) and key (client.c): dg_call_fill and dg_call_fill_key.
 */
int dg_call_fill_as(struct dg_flow *f, int conn, uint16_t fn, uint8_t flags,
		    uint32_t key, size_t len, dg_fill_fn fill, void *arg,
		    uint32_t *rpc_id);

static inline void dg_after_tx(struct dg_flow *f)
{
	(void)dg_after_tx_ret(f);
}

/*
 * Sleeps until the engine delivers to f, also_fd (if >= 0) is readable or
 * timeout_ms pass (-1: no timeout) (wake.c). 1: it slept; 0: it did not
 * (something was there, or busy_poll); or a negative errno.
 */
int dg_flow_sleep(struct dg_flow *f, int timeout_ms, int also_fd);
/*
 * Receives an RDMA host keeps posted for the engine's wake-ups: at most one
 * per sleep of a flow, taken by the waker thread; room for bursts of them
 * while that thread waits for a core.
 */
#define DG_HOST_RECVS(nflows) (8u * (nflows) + 32u)
int dg_wake_start(struct dg_host *h);
int dg_wake_run(struct dg_host *h);
void dg_wake_stop(struct dg_host *h);

/* ---- shared between files ------------------------------------------------ */

uint64_t dg_now_ms(void);
/*
 * For waits: -ETIMEDOUT past the deadline, -ENOTCONN once the engine's
 * connection is gone (looked at every 100 ms: it costs a system call).
 */
int dg_wait_check(struct dg_flow *f, uint64_t deadline, uint64_t *next);
/* A control message: sends m, waits for the engine's reply status. */
int dg_ctrl_call(struct dg_flow *f, const struct dg_ctrl_msg *m, int timeout_ms,
		 uint32_t *conn);
int dg_status_errno(int st);

/* workers.c: a server's worker pool (dg_server_start_opts). */
struct dg_pool;
int dg_pool_start(struct dg_host *h, const struct dg_service_def *def,
		  const struct dg_server_opts *o, struct dg_pool **out);
void dg_pool_stop(struct dg_pool *p);

#endif /* DG_HOST_IMPL_H */
