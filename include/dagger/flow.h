/* SPDX-License-Identifier: MIT */
/*
 * dagger/flow.h - a flow's state and the fast paths of dg_call and dg_poll,
 * inline in the application (included by dagger/dagger.h).
 *
 * A call of one or two frames (up to 88 bytes) and the completion of an
 * answer of one or two frames, on a shared-memory ring, from the flow's
 * own thread, are a straight run of stores and loads compiled into the
 * caller: no call into the library, whose out-of-line functions below take
 * every other case (checksummed RDMA rings, longer messages, a full ring,
 * errors, control replies). Bindings that cannot compile this header call
 * those: dg_call_general and dg_poll_full do everything dg_call and dg_poll
 * do.
 *
 * struct dg_flow is defined here only so that the fast paths can be inline:
 * its fields belong to the library, and an application neither reads nor
 * writes them. Its layout is part of the libraries' binary interface: a
 * change to it changes their SONAME (README, "ABI"), and an application is
 * built against the headers of the library it runs with.
 */
#ifndef DAGGER_FLOW_H
#define DAGGER_FLOW_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <pthread.h>

#include "dagger/dagger.h" /* (which includes this file at its end) */
#include "dagger/frame.h"
#include "dagger/ring.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DG_LIKELY(x)   __builtin_expect(!!(x), 1)
#define DG_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* Calls a flow may have given up and still wait for the answers of. */
#define DG_ABANDON_MAX 64u

struct dg_flow {
	/* Hot: read or written by every call and completion. */
	struct dg_frame *tx, *rx;
	uint32_t mask, slots, rflags;
	uint32_t tx_tail;  /* next TX position to produce */
	uint32_t tx_head;  /* engine's consumer index, as last loaded */
	uint32_t rx_tail;  /* next RX position to consume */
	uint32_t rx_freed; /* RX positions below this are released */
	/* A message of 2+ frames taken since (checksummed rings only). */
	uint32_t rx_scrub;
	uint32_t next_rpc;
	uint32_t arena_used; /* reassembly arena, reset by each dg_poll */
	uint32_t heap_used;  /* dg_flow_alloc's arena */
	uint32_t
		nabandoned; /* calls given up (abandoned[]), still unanswered */
	/* The owning thread (dg_thread_id), 0 until a thread claims it. */
	uintptr_t owner;
	struct dg_flow_ctrl *ctrl;
	uint8_t *arena;
	/*
	 * What must follow a publication (enum dg_kick): nothing (RDMA in
	 * poll mode), a look at the engine's sleep flag (shared memory), or
	 * a doorbell (RDMA in doorbell or push mode). db_sent: the TX
	 * position the last doorbell announced.
	 */
	uint8_t kick;
	uint32_t db_sent;
	const uint32_t *engine_sleep;
	struct dg_flow_stats st;

	/* Cold. */
	struct dg_host *h;
	uint32_t idx;
	/* Control replies are taken out of the RX stream here. */
	bool ctrl_done;
	uint32_t ctrl_rpc;
	uint8_t ctrl_status;
	uint32_t ctrl_conn;
	uint8_t *heap; /* dg_flow_alloc's arena */
	/* Server side. */
	const struct dg_service_def *svc;
	uint8_t *resp_buf;
	uint16_t last_fn; /* the handler found last (handle()) */
	dg_handler_fn last_h;
	/* Interface mode and sleeping. */
	uint8_t mode;		/* enum dg_mode (RDMA) */
	uint32_t db_inflight;	/* atomic: doorbells posted, not completed */
	int evfd;		/* eventfd: the engine (or waker) wakes us */
	uint32_t sleep_seq;	/* our last sleep's (odd) */
	uint32_t mode_req_seen; /* the engine's last mode request taken */
	uint32_t spin_us;	/* spin this long before sleeping */
	uint32_t yield_us;	/* then look, yielding, this long more */
	bool yielding;		/* holds its host's req_yielder token */
	uint64_t yield_end;	/* the token's value when taken */
	uint32_t yield_seen;	/* the host's req_events then */
	bool yield_skip_spell;	/* this idle spell has no yield phase */
	uint8_t yield_backoff;	/* spells skipped after the last vain phase */
	uint8_t yield_skip;	/* spells left to skip */
	bool busy_poll;		/* never sleep */
	/* Calls given up (dg_wait's deadline, dg_cancel): their answers are
	 * dropped when they come (dg_abandoned_take). */
	uint32_t abandoned[DG_ABANDON_MAX];
	/*
	 * Large messages (payload.c): the TX payload area we fill and the
	 * engine takes from, the RX payload area the engine fills. pay_tail:
	 * the next free TX payload position (free-running); pay_head: the
	 * engine's (dg_flow_ctrl.pay_head), as last loaded. res_*: the
	 * buffer dg_call_buf or dg_response_buf handed out (NULL: none).
	 */
	uint8_t *pay_tx;
	const uint8_t *pay_rx;
	uint32_t pay_size; /* bytes per area; 0: none */
	uint32_t pay_tail, pay_head;
	uint32_t large; /* messages over this many bytes leave the ring */
	uint8_t *res_buf;
	uint32_t res_pos, res_len;
} __attribute__((aligned(64)));

enum dg_kick {
	DG_KICK_NONE = 0,
	DG_KICK_SHM = 1,
	DG_KICK_RDMA = 2,
};

/*
 * The calling thread's identity: its thread pointer (what pthread_self
 * returns on glibc), one register read. A flow belongs to the first thread
 * that uses it; a thread that exits and is replaced at the same address
 * inherits its flows, which only the owner could use anyway.
 */
static inline uintptr_t dg_thread_id(void)
{
#if defined(__has_builtin)
#if __has_builtin(__builtin_thread_pointer)
	return (uintptr_t)__builtin_thread_pointer();
#define DG_HAVE_TP 1
#endif
#endif
#ifndef DG_HAVE_TP
	return (uintptr_t)pthread_self();
#endif
}

/* 16 bytes in a vector register (SSE on x86-64, NEON on arm64). */
typedef uint8_t dg_v16 __attribute__((vector_size(16)));

static inline dg_v16 dg_ld16(const void *p)
{
	dg_v16 v;

	memcpy(&v, p, 16);
	return v;
}

static inline void dg_st16(void *p, dg_v16 v)
{
	memcpy(p, &v, 16);
}

/*
 * Copies n <= 64 bytes with at most four loads and four stores (overlapping
 * at the ends), no call: the payload copies of small messages are much of
 * what a call costs.
 */
static inline void dg_copy64(void *dst, const void *src, uint32_t n)
{
	uint8_t *d = (uint8_t *)dst;
	const uint8_t *s = (const uint8_t *)src;

	if (n >= 32) {
		dg_v16 a = dg_ld16(s), b = dg_ld16(s + 16);
		dg_v16 c = dg_ld16(s + n - 32), e = dg_ld16(s + n - 16);

		dg_st16(d, a);
		dg_st16(d + 16, b);
		dg_st16(d + n - 32, c);
		dg_st16(d + n - 16, e);
	} else if (n >= 16) {
		dg_v16 a = dg_ld16(s), b = dg_ld16(s + n - 16);

		dg_st16(d, a);
		dg_st16(d + n - 16, b);
	} else if (n >= 8) {
		uint64_t a, b;

		memcpy(&a, s, 8);
		memcpy(&b, s + n - 8, 8);
		memcpy(d, &a, 8);
		memcpy(d + n - 8, &b, 8);
	} else if (n >= 4) {
		uint32_t a, b;

		memcpy(&a, s, 4);
		memcpy(&b, s + n - 4, 4);
		memcpy(d, &a, 4);
		memcpy(d + n - 4, &b, 4);
	} else {
		while (n--)
			*d++ = *s++;
	}
}

/* Copies n <= 128 bytes: two dg_copy64 runs, from the start and the end. */
static inline void dg_copy128(void *dst, const void *src, uint32_t n)
{
	if (n <= 64) {
		dg_copy64(dst, src, n);
		return;
	}
	dg_copy64(dst, src, 64);
	dg_copy64((uint8_t *)dst + n - 64, (const uint8_t *)src + n - 64, 64);
}

/* ---- after a publication ------------------------------------------------ */

/*
 * After frames were published: a shared-memory engine that sleeps is
 * kicked (the fence orders our stamp stores before our load of its sleep
 * flag; the engine stores its flag and fences before its last look at
 * our ring: one of us sees the other); an RDMA engine in doorbell or push
 * mode is told (one doorbell in flight covers what follows).
 */
/*
 * A full fence (store-load ordering). x86-64: a locked add to the stack,
 * which orders as mfence does and costs less on current cores.
 */
static inline void dg_fence_sc(void)
{
#if defined(__x86_64__)
	__asm__ volatile("lock addl $0, -8(%%rsp)" ::: "memory", "cc");
#else
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

/* RDMA doorbell and push modes: announces the TX tail (wake.c). */
void dg_doorbell(struct dg_flow *f);
/* dg_kick_engine or dg_doorbell as f's kick asks, then 0 (wake.c). */
int dg_after_tx_slow(struct dg_flow *f);

/*
 * The publication's wake-up, as a return value (0): a fast path that ends
 * with it makes the rare kick or doorbell a tail call and needs no frame.
 */
static inline int dg_after_tx_ret(struct dg_flow *f)
{
	if (DG_LIKELY(f->kick == DG_KICK_SHM)) {
		dg_fence_sc();
		if (DG_LIKELY(!__atomic_load_n(f->engine_sleep,
					       __ATOMIC_RELAXED)))
			return 0;
	} else if (f->kick != DG_KICK_RDMA) {
		return 0;
	}
	return dg_after_tx_slow(f);
}

/* ---- RX ------------------------------------------------------------------ */

/*
 * Releases RX slots consumed by the previous dg_poll. Release store: our
 * loads of those slots (the application's reads of completion data) come
 * before the engine may reuse them. scrub: 0 when f's ring is known to be
 * a shared-memory one (the engine guards it: rx_scrub is never set).
 */
static inline void dg_rx_free(struct dg_flow *f, uint32_t pos,
			      const unsigned scrub)
{
	/*
	 * Continuation frames among them: their word 0 (payload) must not
	 * pass for a first frame one lap later (dagger/ring.h). Stored
	 * before the release store below, so before the engine reuses them.
	 * Slot rx_freed is the first frame of the first message released:
	 * nothing to scrub there (a two-frame message costs one store).
	 */
	if (scrub && DG_UNLIKELY(f->rx_scrub)) {
		uint32_t from = f->rx_freed + 1;

		/* At least two slots: the common two-frame answer is one. */
		dg_ring_scrub(f->rx, f->mask, from, from + 1);
		if (DG_UNLIKELY(pos - from > 1))
			dg_ring_scrub(f->rx, f->mask, from + 1, pos);
		f->rx_scrub = 0;
	}
	__atomic_store_n(&f->ctrl->rx_head, pos, __ATOMIC_RELEASE);
	f->rx_freed = pos;
}

/*
 * An operator asked the engine to switch this flow's mode (ctrl->mode_req
 * changed): switches it now if no call is outstanding (wake.c). Called
 * from the idle paths of dg_poll and dg_serve_poll on RDMA rings only.
 */
int dg_mode_req(struct dg_flow *f); /* 0: an idle poll's result */
static inline int dg_mode_req_check(struct dg_flow *f)
{
	if (DG_UNLIKELY(__atomic_load_n(&f->ctrl->mode_req, __ATOMIC_RELAXED) !=
			f->mode_req_seen))
		return dg_mode_req(f); /* a tail call: no frame on the way */
	return 0;
}

/* ---- the fast paths ------------------------------------------------------ */

/* dg_call in general: every ring, every size, every error (client.c). */
int dg_call_general(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		    size_t len, uint32_t *rpc_id);
/* dg_call on a checksummed ring: its own fast path, then the general one. */
int dg_call_csum(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		 size_t len, uint32_t *rpc_id);
/* dg_poll in general, with its release of the previous round (client.c). */
int dg_poll_full(struct dg_flow *f, struct dg_completion *c, int max);
/*
 * The rest of one dg_poll, after the fast path took n messages (into c[0]
 * .. c[n - 1]): the number taken in all. A tail call from the fast path.
 */
int dg_poll_more(struct dg_flow *f, struct dg_completion *c, int max, int n);
/* dg_poll on a checksummed ring. */
int dg_poll_csum(struct dg_flow *f, struct dg_completion *c, int max);
/*
 * dg_poll_csum's start when a doorbell waited for the one in flight: rings
 * it, then polls (DG_POLL_RUNG: without looking again). Out of line so that
 * the fast path, with no call of its own to come back from, needs no frame.
 */
int dg_poll_doorbell(struct dg_flow *f, struct dg_completion *c, int max);
#define DG_POLL_RUNG (1u << 30)

/*
 * The fast path of dg_call: a request of one or two frames (up to 88
 * bytes) from the owning thread with room in the ring, written and
 * published in one run. csum is a constant: the body is built twice, for
 * shared-memory rings (a leaf: no call, no registers to save) and for
 * checksummed rings. Anything else goes through dg_call_general.
 */
static inline __attribute__((always_inline)) int
dg_call_fast(struct dg_flow *f, int conn, uint16_t fn, const void *req,
	     size_t len, uint32_t *rpc_id, const unsigned csum)
{
	uint32_t pos = f->tx_tail, idx = pos & f->mask, id,
		 cnt = 1u + (len > DG_FRAME_PAYLOAD);
	struct dg_frame *s;
	uint64_t w;

	if (DG_UNLIKELY(f->owner != dg_thread_id() ||
			len > DG_FRAME_PAYLOAD + DG_CONT_PAYLOAD || conn < 0 ||
			!req || f->slots - (pos - f->tx_head) < cnt ||
			(cnt == 2 && idx == f->mask)))
		return dg_call_general(f, conn, fn, req, len, rpc_id);
	id = f->next_rpc++;
	*rpc_id = id;
	f->tx_tail = pos + cnt;
	f->st.calls++;
	s = &f->tx[idx];
	/* The header as dg_frame_head writes it, word by word. */
	w = id | (uint64_t)(uint32_t)conn << 32;
	memcpy(&s->rpc_id, &w, 8);
	w = len | (uint64_t)fn << 32 | (uint64_t)cnt << 48;
	memcpy(&s->len, &w, 8);
	w = DG_FF_REQ;
	memcpy(&s->flags, &w, 8);
	dg_copy128((uint8_t *)s + DG_FRAME_HDR, req, (uint32_t)len);
	/*
	 * Stamps last, release (dg_cont_publish, dg_slot_publish): the
	 * continuation frame first, the first frame last (see dg_tx_put).
	 */
	if (cnt == 2)
		dg_cont_publish((struct dg_frame_cont *)(s + 1), pos + 1, csum);
	if (csum) /* RDMA rings (dagger/ring.h) */
		dg_ring_guard(f->tx, f->mask, pos + cnt);
	dg_slot_publish(s, pos, csum);
	return dg_after_tx_ret(f);
}

static inline __attribute__((always_inline)) int
dg_call(struct dg_flow *f, int conn, uint16_t fn, const void *req, size_t len,
	uint32_t *rpc_id)
{
	if (DG_UNLIKELY(f->rflags))
		return dg_call_csum(f, conn, fn, req, len, rpc_id);
	return dg_call_fast(f, conn, fn, req, len, rpc_id, 0);
}

/* Fills a completion from a response's first frame and its payload. */
static inline void dg_completion_fill(struct dg_completion *c,
				      const struct dg_frame *s,
				      const void *data, uint32_t len)
{
	c->rpc_id = s->rpc_id;
	c->conn = s->conn;
	c->fn = s->fn_id;
	c->status = s->status;
	c->data = data;
	c->len = len;
}

/*
 * The fast path of dg_poll: one response of one or two frames, in place,
 * by the owning thread, with no call and few registers (no prologue to
 * speak of) on shared-memory rings; csum is a constant, as in dg_call_fast.
 * Anything else (a longer message, a wrapped one, a control reply, more
 * messages waiting) goes to dg_poll_full or dg_poll_more.
 */
static inline __attribute__((always_inline)) int
dg_poll_fast(struct dg_flow *f, struct dg_completion *c, int max,
	     const unsigned csum)
{
	uint32_t pos = f->rx_tail, idx = pos & f->mask, len, cnt;
	const struct dg_frame *s;
	uint64_t w;

	if (DG_UNLIKELY(f->owner != dg_thread_id() || max < 1 || f->nabandoned))
		return dg_poll_full(f, c, max);
	/*
	 * A doorbell that waited for the one in flight goes now (RDMA
	 * tenants only, whose rings are always checksummed).
	 */
	if (csum && !(csum & DG_POLL_RUNG) &&
	    DG_UNLIKELY(f->kick == DG_KICK_RDMA) && f->db_sent != f->tx_tail)
		return dg_poll_doorbell(f, c, max);
	/*
	 * Releases what the previous dg_poll handed out. Release store: the
	 * application's loads of those slots come before the engine may
	 * reuse them.
	 */
	if (f->rx_freed != pos)
		dg_rx_free(f, pos, csum);
	f->arena_used = 0;
	f->heap_used = 0;
	s = &f->rx[idx];
	/* Acquire: the frame's bytes were stored before its stamp. */
	if (!dg_slot_ready(s, pos, csum)) {
		if (csum) /* RDMA rings: an operator may ask for a mode */
			return dg_mode_req_check(f);
		return 0;
	}
	memcpy(&w, &s->len, 8); /* len, fn_id, cnt: one load */
	len = (uint32_t)w;
	cnt = (uint32_t)(w >> 48);
	if (DG_UNLIKELY(!(s->flags & DG_FF_RESP)))
		return dg_poll_more(f, c, max, 0);
	/*
	 * One frame of up to 32 bytes, or two of 33..88 bytes that do not
	 * wrap around the ring's end; anything else (longer, wrapped, a
	 * header that does not hold together) is dg_poll_more's.
	 */
	if (cnt != 1 || len > DG_FRAME_PAYLOAD) {
		if (cnt != 2 ||
		    len - (DG_FRAME_PAYLOAD + 1) >= DG_CONT_PAYLOAD ||
		    idx == f->mask)
			return dg_poll_more(f, c, max, 0);
		if (!dg_cont_ready((const struct dg_frame_cont *)(s + 1),
				   pos + 1, csum))
			return 0;
	}
	dg_completion_fill(c, s, s->data, len);
	f->rx_tail = pos + cnt;
	if (csum) /* else the engine guards the ring (dagger/ring.h) */
		f->rx_scrub |= cnt - 1;
	f->st.completions++;
	s = &f->rx[(pos + cnt) & f->mask];
	if (max > 1 &&
	    __atomic_load_n(&s->stamp, __ATOMIC_RELAXED) == dg_stamp(pos + cnt))
		return dg_poll_more(f, c, max, 1);
	return 1;
}

static inline __attribute__((always_inline)) int
dg_poll(struct dg_flow *f, struct dg_completion *c, int max)
{
	if (DG_UNLIKELY(f->rflags))
		return dg_poll_csum(f, c, max);
	return dg_poll_fast(f, c, max, 0);
}

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_FLOW_H */
