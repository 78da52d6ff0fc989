// SPDX-License-Identifier: MIT
/*
 * client.c - libdagger's client side: calls, completions, waits, and the
 * control messages a flow sends its engine (OPEN, CLOSE).
 *
 * Per-RPC path (dg_call, dg_poll): stores into the TX ring, loads from the
 * RX ring; no allocation, no system call, no lock, no verb.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dg_cpu.h"
#include "host_impl.h"

uint64_t dg_now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Claims the flow for the calling thread, or refuses another thread. */
int dg_flow_claim(struct dg_flow *f)
{
	uintptr_t me = dg_thread_id(), cur = 0;

	if (__atomic_compare_exchange_n(&f->owner, &cur, me, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
		return 0;
	return cur == me ? 0 : -EPERM;
}

/* ---- TX ------------------------------------------------------------------ */

/* A call with these frame flags (a request's), in general. */
static int call_flags(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		      size_t len, uint32_t *rpc_id, uint8_t flags)
{
	uint32_t cnt, id;
	int rc = dg_own(f);

	if (rc)
		return rc;
	if (len > DG_MAX_MSG || (len && !req) || conn < 0)
		return len > DG_MAX_MSG ? -EMSGSIZE : -EINVAL;
	if (dg_pay_use(f, len))
		return dg_call_pay(f, conn, fn, flags, 0, req, (uint32_t)len,
				   rpc_id);
	if (len > DG_MAX_INLINE)
		return -EMSGSIZE;
	cnt = dg_frames_for((uint32_t)len);
	if (dg_tx_reserve(f, cnt)) {
		if (cnt > f->slots)
			return -EMSGSIZE;
		f->st.eagain++;
		return -EAGAIN;
	}
	id = f->next_rpc++;
	dg_tx_put(f, flags, 0, id, (uint32_t)conn, fn, req, (uint32_t)len, cnt);
	*rpc_id = id;
	f->st.calls++;
	dg_after_tx(f);
	return 0;
}

/* dg_call beyond one or two frames, and its errors (dagger/flow.h). */
int dg_call_general(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		    size_t len, uint32_t *rpc_id)
{
	return call_flags(f, conn, fn, req, len, rpc_id, DG_FF_REQ);
}

int dg_call_traced(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		   size_t len, uint32_t *rpc_id)
{
	return call_flags(f, conn, fn, req, len, rpc_id,
			  DG_FF_REQ | DG_FF_TRACE);
}

/*
 * dg_call's fast path built for checksummed rings (dagger/flow.h): twice
 * on x86-64, the checksums computed in line by the CRC32 instruction and
 * through dg_slot_csum, the loader choosing by the CPU (dg_cpu.h), as it
 * does for dg_poll_csum below.
 */
static int call_csum(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		     size_t len, uint32_t *rpc_id)
{
	return dg_call_fast(f, conn, fn, req, len, rpc_id, DG_RING_F_CSUM);
}

#if defined(DG_HAVE_IFUNC) && defined(__x86_64__)
#define DG_CSUM_PATHS_IFUNC 1
typedef int (*call_fn)(struct dg_flow *, int, uint16_t, const void *, size_t,
		       uint32_t *);

static int call_csum_inline(struct dg_flow *f, int conn, uint16_t fn,
			    const void *req, size_t len, uint32_t *rpc_id)
{
	return dg_call_fast(f, conn, fn, req, len, rpc_id,
			    DG_RING_F_CSUM | DG_RING_F_CRC_INLINE);
}

DG_RESOLVER call_fn resolve_call_csum(DG_RESOLVER_ARGS)
{
	return DG_CRC_NOW ? call_csum_inline : call_csum;
}

int dg_call_csum(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		 size_t len, uint32_t *rpc_id)
	__attribute__((ifunc("resolve_call_csum")));
#else
int dg_call_csum(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		 size_t len, uint32_t *rpc_id)
{
	return call_csum(f, conn, fn, req, len, rpc_id);
}
#endif

/* Where the payload of the writer's current frame starts, and how much of
 * it there is: the first frame holds 32 bytes, every further one 56. */
static uint8_t *writer_frame(struct dg_writer *w, uint32_t *cap)
{
	struct dg_frame *s = &w->ring[w->pos & w->mask];

	if (w->pos == w->first) {
		*cap = DG_FRAME_PAYLOAD;
		return s->data;
	}
	*cap = DG_CONT_PAYLOAD;
	return ((struct dg_frame_cont *)s)->data;
}

void dg_writer_put(struct dg_writer *w, const void *p, size_t n)
{
	const uint8_t *b = p;

	if (n > w->left) {
		w->overrun = 1;
		n = w->left;
	}
	w->left -= (uint32_t)n;
	if (w->buf) {
		/* A large message: its payload buffer is one piece. */
		memcpy(w->buf + w->off, b, n);
		w->off += (uint32_t)n;
		return;
	}
	while (n) {
		uint32_t cap;
		uint8_t *d = writer_frame(w, &cap);
		size_t k = cap - w->off;

		if (k > n)
			k = n;
		memcpy(d + w->off, b, k);
		b += k;
		n -= k;
		w->off += (uint32_t)k;
		if (w->off == cap) {
			w->pos++;
			w->off = 0;
		}
	}
}

void *dg_writer_room(struct dg_writer *w, size_t n)
{
	uint32_t cap;
	uint8_t *p;

	if (w->buf) {
		if (n > w->left)
			return NULL;
		p = w->buf + w->off;
		w->left -= (uint32_t)n;
		w->off += (uint32_t)n;
		return p;
	}
	p = writer_frame(w, &cap);
	if (n > w->left || w->off + n > cap)
		return NULL;
	p += w->off;
	w->left -= (uint32_t)n;
	w->off += (uint32_t)n;
	if (w->off == cap) {
		w->pos++;
		w->off = 0;
	}
	return p;
}

int dg_call_fill_as(struct dg_flow *f, int conn, uint16_t fn, uint8_t flags,
		    uint32_t key, size_t len, dg_fill_fn fill, void *arg,
		    uint32_t *rpc_id)
{
	struct dg_writer w;
	struct dg_frame *s;
	uint32_t cnt, i, pos;
	int rc = dg_own(f);

	if (rc)
		return rc;
	if (len > DG_MAX_MSG)
		return -EMSGSIZE;
	if (!fill || conn < 0)
		return -EINVAL;
	if (dg_pay_use(f, len))
		return dg_fill_pay(f, conn, fn, flags, key, (uint32_t)len, fill,
				   arg, rpc_id);
	cnt = dg_frames_for((uint32_t)len);
	if (len > DG_MAX_INLINE || cnt > f->slots)
		return -EMSGSIZE;
	if (dg_tx_reserve(f, cnt)) {
		f->st.eagain++;
		return -EAGAIN;
	}
	/*
	 * The frames from tx_tail on are ours (dg_tx_reserve: the engine is
	 * done with them) and unpublished: the writer fills their payloads
	 * in place, nothing is visible until they are sealed below.
	 */
	pos = f->tx_tail;
	w = (struct dg_writer){.ring = f->tx,
			       .mask = f->mask,
			       .pos = pos,
			       .first = pos,
			       .left = (uint32_t)len};
	rc = fill(arg, &w);
	if (rc)
		return rc < 0 ? rc : -EIO;
	if (w.left || w.overrun)
		return -EPROTO;
	*rpc_id = f->next_rpc++;
	/*
	 * Seal: the header (and a key, before the first frame's release
	 * store, so whoever sees the stamp sees the key), then each stamp
	 * (release, dg_slot_publish), continuation frames first and the
	 * first frame last, as dg_tx_put. The payload stores came before the
	 * stamps' release stores in program order; the checksums taken here
	 * cover them.
	 */
	s = &f->tx[pos & f->mask];
	dg_frame_head(s, flags, 0, *rpc_id, (uint32_t)conn, fn, (uint32_t)len,
		      cnt);
	if (flags & DG_FF_KEY)
		s->key = key;
	for (i = 1; i < cnt; i++)
		dg_cont_publish(dg_tx_cont(f, pos + i), pos + i, f->rflags);
	if (f->rflags)
		dg_ring_guard(f->tx, f->mask, pos + cnt);
	dg_slot_publish(s, pos, f->rflags);
	f->tx_tail = pos + cnt;
	f->st.calls++;
	dg_after_tx(f);
	return 0;
}

int dg_call_fill(struct dg_flow *f, int conn, uint16_t fn, size_t len,
		 dg_fill_fn fill, void *arg, uint32_t *rpc_id)
{
	return dg_call_fill_as(f, conn, fn, DG_FF_REQ, 0, len, fill, arg,
			       rpc_id);
}

void *dg_flow_alloc(struct dg_flow *f, size_t n)
{
	size_t at = ((size_t)f->heap_used + 15) & ~(size_t)15;

	if (dg_own(f) || n > DG_FLOW_ARENA || at + n > DG_FLOW_ARENA)
		return NULL;
	f->heap_used = (uint32_t)(at + n);
	return f->heap + at;
}

/* ---- RX ------------------------------------------------------------------ */

/*
 * The slow half of dg_rx_take: a multi-frame message, or a first frame
 * whose header does not hold together (the engine never writes one: it is
 * skipped and counted). The message is copied into the reassembly arena.
 */
int dg_rx_take_multi(struct dg_flow *f, const struct dg_frame *s,
		     struct dg_rx_msg *m)
{
	uint32_t cnt, len, i, n;
	const void *pay = NULL;
	uint8_t *d;

	for (;;) {
		cnt = s->cnt;
		len = s->len;
		if (s->flags & DG_FF_PAY) {
			/* A large message: in place in the RX payload area. */
			if (cnt == 1 && (pay = dg_pay_rx_data(f, s, len)))
				break;
		} else if (len <= DG_MAX_INLINE && cnt == dg_frames_for(len) &&
			   cnt <= f->slots) {
			break;
		}
		f->st.bad_frames++;
		f->rx_tail++;
		f->rx_scrub |= f->rflags & DG_RING_F_CSUM;
		s = &f->rx[f->rx_tail & f->mask];
		if (!dg_slot_ready(s, f->rx_tail, f->rflags))
			return 0;
	}
	if (pay) {
		/*
		 * The engine wrote the payload before it published this frame
		 * (docs/ARCHITECTURE.md, "Large messages": a release store on
		 * shared memory, an earlier WRITE on the same QP over RDMA),
		 * and our acquire load of the stamp came first: the bytes are
		 * there. They stay until we release the slot (rx_head).
		 */
		m->s = s;
		m->data = pay;
		m->len = len;
		f->rx_tail++;
		f->st.pay_recv++;
		return 1;
	}
	if (cnt == 1) {
		m->s = s;
		m->data = s->data;
		m->len = len;
		f->rx_tail++;
		return 1;
	}
	for (i = 1; i < cnt; i++)
		if (!dg_cont_ready(
			    (const void *)&f->rx[(f->rx_tail + i) & f->mask],
			    f->rx_tail + i, f->rflags))
			return 0;
	if (f->arena_used + len > DG_RX_ARENA)
		return -EAGAIN;
	d = f->arena + f->arena_used;
	memcpy(d, s->data, DG_FRAME_PAYLOAD);
	/* Whole 56-byte chunks: the arena has DG_RX_SLACK past its end. */
	for (i = 1, n = DG_FRAME_PAYLOAD; i < cnt; i++, n += DG_CONT_PAYLOAD)
		memcpy(d + n,
		       ((const struct dg_frame_cont *)&f
				->rx[(f->rx_tail + i) & f->mask])
			       ->data,
		       DG_CONT_PAYLOAD);
	m->s = s;
	m->data = d;
	m->len = len;
	f->arena_used += len;
	f->rx_tail += cnt;
	f->rx_scrub |= f->rflags & DG_RING_F_CSUM;
	return 1;
}

/*
 * dg_poll in general: every kind of message, checksummed rings, control
 * replies. Takes up to max completions from rx_tail on, n already taken
 * by the caller (the fast path) in this call.
 */
static int poll_slow(struct dg_flow *f, struct dg_completion *c, int max, int n)
{
	struct dg_rx_msg m;

	while (n < max && dg_rx_take(f, &m) == 1) {
		const struct dg_frame *s = m.s;
		uint8_t flags = s->flags;

		if (DG_UNLIKELY(!(flags & DG_FF_RESP))) {
			if (flags & DG_FF_CTRL)
				dg_ctrl_record(f, s);
			else
				f->st.bad_frames++;
			continue;
		}
		/* A call given up: its answer is dropped (and completes it). */
		if (DG_UNLIKELY(f->nabandoned) &&
		    dg_abandoned_take(f, s->rpc_id)) {
			f->st.completions++;
			continue;
		}
		dg_completion_fill(&c[n], s, m.data, m.len);
		n++;
	}
	return n;
}

/* dg_poll in general, with its release of the previous round. */
int dg_poll_full(struct dg_flow *f, struct dg_completion *c, int max)
{
	int rc = dg_own(f);

	if (rc)
		return rc;
	if (f->kick == DG_KICK_RDMA && f->db_sent != f->tx_tail)
		dg_doorbell(f);
	dg_rx_release(f);
	rc = poll_slow(f, c, max, 0);
	f->st.completions += (uint64_t)rc;
	return rc;
}

/* The rest of one dg_poll, after the fast path took n messages. */
int dg_poll_more(struct dg_flow *f, struct dg_completion *c, int max, int n)
{
	int k = poll_slow(f, c, max, n);

	f->st.completions += (uint64_t)(k - n);
	return k;
}

/* dg_poll's fast path built for checksummed rings (dagger/flow.h). */
static int poll_csum(struct dg_flow *f, struct dg_completion *c, int max)
{
	return dg_poll_fast(f, c, max, DG_RING_F_CSUM);
}

int dg_poll_doorbell(struct dg_flow *f, struct dg_completion *c, int max)
{
	/* Exported: a caller that is not the flow's thread rings nothing. */
	if (DG_UNLIKELY(f->owner != dg_thread_id()))
		return dg_poll_full(f, c, max);
	dg_doorbell(f);
	return dg_poll_fast(f, c, max, DG_RING_F_CSUM | DG_POLL_RUNG);
}

#ifdef DG_CSUM_PATHS_IFUNC
typedef int (*poll_fn)(struct dg_flow *, struct dg_completion *, int);

static int poll_csum_inline(struct dg_flow *f, struct dg_completion *c, int max)
{
	return dg_poll_fast(f, c, max, DG_RING_F_CSUM | DG_RING_F_CRC_INLINE);
}

DG_RESOLVER poll_fn resolve_poll_csum(DG_RESOLVER_ARGS)
{
	return DG_CRC_NOW ? poll_csum_inline : poll_csum;
}

int dg_poll_csum(struct dg_flow *f, struct dg_completion *c, int max)
	__attribute__((ifunc("resolve_poll_csum")));
#else
int dg_poll_csum(struct dg_flow *f, struct dg_completion *c, int max)
{
	return poll_csum(f, c, max);
}
#endif

int dg_abandon(struct dg_flow *f, uint32_t rpc_id)
{
	if (f->nabandoned == DG_ABANDON_MAX)
		return -ENOSPC;
	f->abandoned[f->nabandoned++] = rpc_id;
	f->st.abandoned++;
	return 0;
}

bool dg_abandoned_take(struct dg_flow *f, uint32_t rpc_id)
{
	uint32_t i;

	for (i = 0; i < f->nabandoned; i++)
		if (f->abandoned[i] == rpc_id) {
			f->abandoned[i] = f->abandoned[--f->nabandoned];
			f->st.late++;
			return true;
		}
	return false;
}

int dg_cancel(struct dg_flow *f, uint32_t rpc_id)
{
	uint32_t i;
	int rc = dg_own(f);

	if (rc)
		return rc;
	for (i = 0; i < f->nabandoned; i++)
		if (f->abandoned[i] == rpc_id)
			return -EALREADY;
	/* Not made yet (ids run ahead of next_rpc), or none outstanding. */
	if (rpc_id - f->next_rpc < 0x80000000u || !dg_outstanding(f))
		return -ENOENT;
	return dg_abandon(f, rpc_id);
}

int dg_wait_check(struct dg_flow *f, uint64_t deadline, uint64_t *next)
{
	uint64_t now = dg_now_ms();

	if (now > deadline)
		return -ETIMEDOUT;
	if (now >= *next) {
		*next = now + 100;
		if (dg_host_check(f->h))
			return -ENOTCONN;
	}
	return 0;
}

int dg_wait(struct dg_flow *f, uint32_t rpc_id, struct dg_completion *c,
	    int timeout_ms)
{
	uint64_t deadline =
		dg_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 10000);
	uint64_t next_check = 0, idle = 0;
	uint32_t spins;
	int rc;

	for (spins = 0;; spins++) {
		rc = dg_poll(f, c, 1);
		if (rc < 0)
			return rc;
		if (rc == 1 && c->rpc_id == rpc_id)
			return 0;
		if (rc == 1) {
			idle = 0;
			continue;
		}
		/*
		 * Nothing: check the clock (and let others run) now and then;
		 * after spin_us, sleep until the engine wakes the flow, the
		 * deadline, or the engine is gone (an RDMA host's waker
		 * thread, a daemon's socket wake us then): after a sleep,
		 * look at the engine at once.
		 */
		if ((spins & 63) == 63) {
			uint64_t now;

			rc = dg_wait_check(f, deadline, &next_check);
			if (rc)
				return rc;
			sched_yield();
			now = dg_now_ms();
			rc = dg_flow_idle(f, &idle,
					  now >= deadline ? 0
					  : deadline - now < INT32_MAX
						  ? (int)(deadline - now) + 1
						  : INT32_MAX,
					  f->h->shm_sock, true);
			if (rc < 0)
				return rc;
			if (rc > 0)
				next_check = 0;
		}
	}
}

int dg_call_sync(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		 size_t len, void *resp, size_t *resp_len, int timeout_ms)
{
	uint64_t deadline =
		dg_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 10000);
	uint64_t next_check = 0, now;
	struct dg_completion c;
	uint32_t id;
	int rc;

	while ((rc = dg_call(f, conn, fn, req, len, &id)) == -EAGAIN) {
		if (dg_poll(f, &c, 1) < 0)
			return -ETIMEDOUT;
		rc = dg_wait_check(f, deadline, &next_check);
		if (rc)
			return rc;
	}
	if (rc)
		return rc;
	now = dg_now_ms();
	rc = dg_wait(f, id, &c, now < deadline ? (int)(deadline - now) : 1);
	/*
	 * Given up: its answer, if it comes, is dropped, and the flow is
	 * free for control calls again (the caller has no id to cancel).
	 */
	if (rc == -ETIMEDOUT)
		(void)dg_abandon(f, id);
	if (rc)
		return rc;
	if (resp && resp_len) {
		size_t n = c.len < *resp_len ? c.len : *resp_len;

		memcpy(resp, c.data, n);
	}
	if (resp_len)
		*resp_len = c.len;
	return c.status;
}

/* ---- control ------------------------------------------------------------ */

int dg_ctrl_call(struct dg_flow *f, const struct dg_ctrl_msg *m, int timeout_ms,
		 uint32_t *conn)
{
	uint64_t deadline =
		dg_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 10000);
	uint32_t cnt = dg_frames_for(sizeof(*m)), id;
	uint64_t next_check = 0, idle = 0;
	struct dg_completion c;
	int rc = dg_own(f);

	if (rc)
		return rc;
	if (dg_outstanding(f))
		return -EBUSY;
	while (dg_tx_reserve(f, cnt)) {
		rc = dg_wait_check(f, deadline, &next_check);
		if (rc)
			return rc;
	}
	id = f->next_rpc++;
	f->ctrl_done = false;
	dg_tx_put(f, DG_FF_CTRL, 0, id, 0, 0, m, sizeof(*m), cnt);
	dg_after_tx(f);
	/*
	 * A serving flow (registration) serves while it waits: once the
	 * engine has registered the service, requests may land right behind
	 * the reply, and they are not ours to drop.
	 */
	while (!(f->ctrl_done && f->ctrl_rpc == id)) {
		int k = f->svc ? dg_serve_poll(f, 16) : dg_poll(f, &c, 1);

		if (k < 0)
			return -ETIMEDOUT;
		rc = dg_wait_check(f, deadline, &next_check);
		if (rc)
			return rc;
		/* A control call is no hot path: let the engine run. */
		if (!k) {
			sched_yield();
			dg_flow_idle(f, &idle, 20, -1, false);
		} else {
			idle = 0;
		}
	}
	if (conn)
		*conn = f->ctrl_conn;
	return f->ctrl_status;
}

int dg_status_errno(int st)
{
	switch (st) {
	case DG_ST_OK:
		return 0;
	case DG_ST_NO_SERVICE:
		return -ENOENT;
	case DG_ST_UNREACHABLE:
		return -EHOSTUNREACH;
	case DG_ST_BUSY:
		return -EBUSY;
	case DG_ST_NO_CONN:
		return -ENOTCONN;
	case DG_ST_QUOTA:
		return -EDQUOT;
	case DG_ST_DROPPED:
		return -ENOBUFS;
	case DG_ST_DENIED:
		return -EACCES;
	default:
		return st < 0 ? st : -EPROTO;
	}
}

int dg_connect(struct dg_flow *f, const char *peer_addr, uint16_t peer_port,
	       const char *service, int timeout_ms)
{
	struct dg_ctrl_msg m = {.op = DG_CTRL_OPEN, .port = peer_port};
	uint32_t conn;
	int st;

	if (!service || strlen(service) >= DG_NAME_MAX ||
	    (peer_addr && strlen(peer_addr) >= DG_ADDR_MAX))
		return -EINVAL;
	strcpy(m.service, service);
	if (peer_addr)
		strcpy(m.peer, peer_addr);
	st = dg_ctrl_call(f, &m, timeout_ms, &conn);
	if (st)
		return dg_status_errno(st);
	return conn > INT32_MAX ? -EPROTO : (int)conn;
}

int dg_close(struct dg_flow *f, int conn)
{
	struct dg_ctrl_msg m = {.op = DG_CTRL_CLOSE, .conn = (uint32_t)conn};

	if (conn < 0)
		return -EINVAL;
	return dg_status_errno(dg_ctrl_call(f, &m, 5000, NULL));
}

void dg_flow_stats(const struct dg_flow *f, struct dg_flow_stats *s)
{
	*s = f->st;
	s->pay_pending =
		f->pay_size ? f->pay_tail - __atomic_load_n(&f->ctrl->pay_head,
							    __ATOMIC_ACQUIRE)
			    : 0;
}

const char *dg_status_str(int st)
{
	switch (st) {
	case DG_ST_OK:
		return "ok";
	case DG_ST_NO_SERVICE:
		return "no such service";
	case DG_ST_NO_FUNCTION:
		return "no such function";
	case DG_ST_BUSY:
		return "server ring full";
	case DG_ST_UNREACHABLE:
		return "peer unreachable";
	case DG_ST_BAD_FRAME:
		return "bad frame";
	case DG_ST_TOO_BIG:
		return "message too big";
	case DG_ST_NO_CONN:
		return "no such connection";
	case DG_ST_QUOTA:
		return "over the tenant's share";
	case DG_ST_DROPPED:
		return "answer dropped: the caller's RX ring stayed full";
	case DG_ST_DENIED:
		return "another tenant's service";
	default:
		return st >= DG_ST_APP_BASE ? "application error" : "error";
	}
}
