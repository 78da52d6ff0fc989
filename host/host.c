// SPDX-License-Identifier: MIT
/*
 * host.c - libdagger: attach, flows, client calls, completions, servers.
 *
 * Per-RPC path (dg_call, dg_poll, dg_serve_poll): stores into the TX ring,
 * loads from the RX ring, no allocation, no system call, no lock, no verb.
 */
#define _GNU_SOURCE
#include "dagger/dagger.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "dagger/ring.h"
#include "dg_rdma.h"

#define ARENA_SIZE (4u * DG_MAX_MSG)

struct dg_flow {
	struct dg_host *h;
	uint32_t idx;
	struct dg_frame *tx, *rx;
	struct dg_flow_ctrl *ctrl;
	uint32_t mask, slots, rflags;

	/* Thread ownership: the first thread that uses the flow owns it. */
	int owned; /* atomic */
	pthread_t owner;

	uint32_t tx_tail;  /* next TX position to produce */
	uint32_t tx_head;  /* engine's consumer index, as last loaded */
	uint32_t rx_tail;  /* next RX position to consume */
	uint32_t rx_freed; /* RX positions below this are released */
	uint32_t next_rpc;
	uint32_t outstanding;

	/* Control replies are taken out of the RX stream here. */
	bool ctrl_done;
	uint32_t ctrl_rpc;
	uint8_t ctrl_status;
	uint16_t ctrl_conn;

	/* Reassembly arena for multi-frame messages (per dg_poll call). */
	uint8_t *arena;
	uint32_t arena_used;
	/* dg_flow_alloc's arena: reset by dg_poll and per served request. */
	uint8_t *heap;
	uint32_t heap_used;

	/* Server side. */
	const struct dg_service_def *svc;
	uint8_t *resp_buf;

	struct dg_flow_stats st;
} __attribute__((aligned(64)));

struct dg_host {
	struct dg_host_opts o;
	uint8_t *region;
	uint64_t size;
	struct dg_region_layout lay;
	struct dg_flow *flows;
	uint32_t nflows;
	/* RDMA backend */
	struct dg_rdma_ep *ep;
	struct dg_rdma_mr *mr;
	/* local backend */
	int tenant;
};

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Claims the flow for the calling thread, or refuses another thread. */
static int own(struct dg_flow *f)
{
	int zero = 0;

	if (__builtin_expect(__atomic_load_n(&f->owned, __ATOMIC_ACQUIRE) == 2,
			     1))
		return pthread_equal(f->owner, pthread_self()) ? 0 : -EPERM;
	if (__atomic_compare_exchange_n(&f->owned, &zero, 1, false,
					__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
		f->owner = pthread_self();
		/* Publishes owner before anyone can read it. */
		__atomic_store_n(&f->owned, 2, __ATOMIC_RELEASE);
		return 0;
	}
	while (__atomic_load_n(&f->owned, __ATOMIC_ACQUIRE) != 2)
		sched_yield();
	return pthread_equal(f->owner, pthread_self()) ? 0 : -EPERM;
}

/* ---- attach ------------------------------------------------------------- */

static int attach_rdma(struct dg_host *h)
{
	struct dg_rdma_ep_attr attr = {.sq_depth = 4, .rd_depth = 1};
	struct dg_attach_req req = {0};
	struct dg_attach_rep rep = {0};
	struct dg_rdma_remote r;
	size_t rlen = sizeof(rep);
	int rc;

	rc = dg_rdma_ep_create(h->o.src_addr, h->o.engine_addr,
			       h->o.engine_port, &attr, h->o.timeout_ms,
			       &h->ep);
	if (rc)
		return rc;
	rc = dg_rdma_reg(h->ep, h->region, h->size,
			 DG_RDMA_ACC_LOCAL_WRITE | DG_RDMA_ACC_REMOTE_READ |
				 DG_RDMA_ACC_REMOTE_WRITE,
			 &h->mr);
	if (rc)
		return rc;
	r = dg_rdma_mr_remote(h->mr);
	req.magic = DG_ATTACH_MAGIC;
	req.version = DG_REGION_VERSION;
	req.addr = r.addr;
	req.rkey = r.rkey;
	req.len = r.len;
	req.nflows = h->nflows;
	req.slots = h->o.slots;
	req.flags = DG_RING_F_CSUM;
	rc = dg_rdma_ep_connect(h->ep, &req, sizeof(req), &rep, &rlen,
				h->o.timeout_ms);
	if (rc)
		return rc;
	if (rlen < sizeof(rep) || rep.magic != DG_ATTACH_MAGIC)
		return -EPROTO;
	return rep.status;
}

int dg_host_attach(const struct dg_host_opts *o, struct dg_host **out)
{
	struct dg_region_hdr *hdr;
	struct dg_host *h;
	uint32_t i;
	int rc;

	h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	h->o = *o;
	if (!h->o.nflows)
		h->o.nflows = 1;
	if (!h->o.slots)
		h->o.slots = 2048;
	if (h->o.timeout_ms <= 0)
		h->o.timeout_ms = 10000;
	h->nflows = h->o.nflows;
	h->tenant = -1;
	rc = dg_region_layout(h->nflows, h->o.slots, &h->lay);
	if (rc)
		goto err;
	if (!h->o.engine_addr && !h->o.attach_local) {
		rc = -EINVAL;
		goto err;
	}
	h->size = (h->lay.total + 4095) & ~4095ull;
	h->region = aligned_alloc(4096, h->size);
	h->flows = aligned_alloc(64, h->nflows * sizeof(*h->flows));
	if (!h->region || !h->flows) {
		rc = -ENOMEM;
		goto err;
	}
	memset(h->region, 0, h->size);
	memset(h->flows, 0, h->nflows * sizeof(*h->flows));
	hdr = (struct dg_region_hdr *)h->region;
	hdr->magic = DG_REGION_MAGIC;
	hdr->version = DG_REGION_VERSION;
	hdr->nflows = h->nflows;
	hdr->slots = h->o.slots;
	hdr->flags = h->o.engine_addr ? DG_RING_F_CSUM : 0;
	for (i = 0; i < h->nflows; i++) {
		struct dg_flow *f = &h->flows[i];

		f->h = h;
		f->idx = i;
		f->tx = (void *)(h->region + dg_tx_ring_off(&h->lay, i));
		f->rx = (void *)(h->region + dg_rx_ring_off(&h->lay, i));
		f->ctrl = (void *)(h->region + dg_ctrl_off(&h->lay, i));
		f->slots = h->o.slots;
		f->mask = h->o.slots - 1;
		f->rflags = hdr->flags;
		f->arena = malloc(ARENA_SIZE);
		f->resp_buf = malloc(DG_MAX_MSG);
		/* Untouched pages of it cost no memory. */
		f->heap = aligned_alloc(64, DG_FLOW_ARENA);
		if (!f->arena || !f->resp_buf || !f->heap) {
			rc = -ENOMEM;
			goto err;
		}
	}
	if (h->o.engine_addr) {
		rc = attach_rdma(h);
	} else {
		rc = h->o.attach_local(h->o.local_arg, h->region, h->size);
		if (rc >= 0) {
			h->tenant = rc;
			rc = 0;
		}
	}
	if (rc)
		goto err;
	*out = h;
	return 0;
err:
	h->tenant = -1;
	dg_host_detach(h);
	return rc;
}

void dg_host_detach(struct dg_host *h)
{
	uint32_t i;

	if (!h)
		return;
	if (h->tenant >= 0 && h->o.detach_local)
		h->o.detach_local(h->o.local_arg, h->tenant);
	/*
	 * The region first: its MR pins the endpoint's protection domain,
	 * which the endpoint frees. Disconnecting tells the engine; it frees
	 * the tenant.
	 */
	dg_rdma_dereg(h->mr);
	dg_rdma_ep_destroy(h->ep);
	for (i = 0; h->flows && i < h->nflows; i++) {
		free(h->flows[i].arena);
		free(h->flows[i].resp_buf);
		free(h->flows[i].heap);
	}
	free(h->flows);
	free(h->region);
	free(h);
}

int dg_host_check(struct dg_host *h)
{
	/* A system call: for waits and error paths, never per RPC. */
	return h->ep ? dg_rdma_ep_check(h->ep) : 0;
}

struct dg_flow *dg_host_flow(struct dg_host *h, uint32_t i)
{
	return i < h->nflows ? &h->flows[i] : NULL;
}

uint32_t dg_host_nflows(const struct dg_host *h)
{
	return h->nflows;
}

/* ---- TX ------------------------------------------------------------------ */

static inline void frame_hdr(struct dg_frame *s, uint8_t flags, uint8_t status,
			     uint32_t rpc_id, uint16_t conn, uint16_t fn,
			     uint32_t i, uint32_t cnt, uint32_t n)
{
	s->rpc_id = rpc_id;
	s->conn_id = conn;
	s->fn_id = fn;
	s->idx = (uint16_t)i;
	s->cnt = (uint16_t)cnt;
	s->len = (uint8_t)n;
	s->flags = flags;
	s->status = status;
	s->src_flow = 0;
}

/* Writes one message as consecutive frames; the caller checked room. */
static void tx_put(struct dg_flow *f, uint8_t flags, uint8_t status,
		   uint32_t rpc_id, uint16_t conn, uint16_t fn, const void *buf,
		   uint32_t len, uint32_t cnt)
{
	const uint8_t *p = buf;
	uint32_t i;

	for (i = 0; i < cnt; i++) {
		uint32_t pos = f->tx_tail + i;
		struct dg_frame *s = &f->tx[pos & f->mask];
		uint32_t n = len > DG_FRAME_PAYLOAD ? DG_FRAME_PAYLOAD : len;

		frame_hdr(s, flags, status, rpc_id, conn, fn, i, cnt, n);
		if (n)
			memcpy(s->data, p, n);
		p += n;
		len -= n;
		/* Stamp last (release), see dg_slot_publish. */
		dg_slot_publish(s, pos, f->rflags);
	}
	f->tx_tail += cnt;
}

/* Reserves room for cnt frames: -EAGAIN if the engine has not freed it. */
static int tx_reserve(struct dg_flow *f, uint32_t cnt)
{
	if (f->slots - (f->tx_tail - f->tx_head) >= cnt)
		return 0;
	/*
	 * Only when the cached index says no: load the engine's. Acquire:
	 * the engine wrote tx_head after its READs of the slots below it
	 * completed; our rewrites of those slots come after.
	 */
	f->tx_head = __atomic_load_n(&f->ctrl->tx_head, __ATOMIC_ACQUIRE);
	return f->slots - (f->tx_tail - f->tx_head) >= cnt ? 0 : -EAGAIN;
}

int dg_call(struct dg_flow *f, int conn, uint16_t fn, const void *req,
	    size_t len, uint32_t *rpc_id)
{
	uint32_t cnt;
	int rc = own(f);

	if (rc)
		return rc;
	if (len > DG_MAX_MSG || (len && !req))
		return len > DG_MAX_MSG ? -EMSGSIZE : -EINVAL;
	if (conn < 0 || conn > UINT16_MAX)
		return -EINVAL;
	cnt = dg_frames_for((uint32_t)len);
	if (cnt > f->slots)
		return -EMSGSIZE;
	if (tx_reserve(f, cnt)) {
		f->st.eagain++;
		return -EAGAIN;
	}
	*rpc_id = f->next_rpc++;
	tx_put(f, DG_FF_REQ, 0, *rpc_id, (uint16_t)conn, fn, req, (uint32_t)len,
	       cnt);
	f->outstanding++;
	f->st.calls++;
	return 0;
}

/*
 * Seals cnt reserved frames whose payload a dg_writer already wrote: the
 * headers, then each stamp last (release, see dg_slot_publish). The
 * payload stores came before the release store of the stamp in program
 * order, so a consumer that acquires the stamp sees them (local backend),
 * and the checksum taken here covers them (RDMA backend). Until then the
 * slots hold the previous lap's stamp: a poll that reads them while the
 * writer runs sees "not written yet".
 */
static void tx_seal(struct dg_flow *f, uint8_t flags, uint32_t rpc_id,
		    uint16_t conn, uint16_t fn, uint32_t len, uint32_t cnt)
{
	uint32_t i;

	for (i = 0; i < cnt; i++) {
		uint32_t pos = f->tx_tail + i;
		struct dg_frame *s = &f->tx[pos & f->mask];
		uint32_t n = len > DG_FRAME_PAYLOAD ? DG_FRAME_PAYLOAD : len;

		frame_hdr(s, flags, 0, rpc_id, conn, fn, i, cnt, n);
		len -= n;
		dg_slot_publish(s, pos, f->rflags);
	}
	f->tx_tail += cnt;
}

void dg_writer_put(struct dg_writer *w, const void *p, size_t n)
{
	const uint8_t *b = p;

	if (n > w->left) {
		w->overrun = 1;
		n = w->left;
	}
	w->left -= (uint32_t)n;
	while (n) {
		struct dg_frame *s = &w->ring[w->pos & w->mask];
		size_t k = DG_FRAME_PAYLOAD - w->off;

		if (k > n)
			k = n;
		memcpy(s->data + w->off, b, k);
		b += k;
		n -= k;
		w->off += (uint32_t)k;
		if (w->off == DG_FRAME_PAYLOAD) {
			w->pos++;
			w->off = 0;
		}
	}
}

void *dg_writer_room(struct dg_writer *w, size_t n)
{
	uint8_t *p;

	if (n > w->left || w->off + n > DG_FRAME_PAYLOAD)
		return NULL;
	p = w->ring[w->pos & w->mask].data + w->off;
	w->left -= (uint32_t)n;
	w->off += (uint32_t)n;
	if (w->off == DG_FRAME_PAYLOAD) {
		w->pos++;
		w->off = 0;
	}
	return p;
}

int dg_call_fill(struct dg_flow *f, int conn, uint16_t fn, size_t len,
		 dg_fill_fn fill, void *arg, uint32_t *rpc_id)
{
	struct dg_writer w;
	uint32_t cnt;
	int rc = own(f);

	if (rc)
		return rc;
	if (len > DG_MAX_MSG)
		return -EMSGSIZE;
	if (!fill || conn < 0 || conn > UINT16_MAX)
		return -EINVAL;
	cnt = dg_frames_for((uint32_t)len);
	if (cnt > f->slots)
		return -EMSGSIZE;
	if (tx_reserve(f, cnt)) {
		f->st.eagain++;
		return -EAGAIN;
	}
	/*
	 * The frames from tx_tail on are ours (tx_reserve: the engine is
	 * done with them) and unpublished: the writer fills their payloads
	 * in place, nothing is visible until tx_seal.
	 */
	w = (struct dg_writer){
		.ring = f->tx, .mask = f->mask, .pos = f->tx_tail, .left = len};
	rc = fill(arg, &w);
	if (rc)
		return rc < 0 ? rc : -EIO;
	if (w.left || w.overrun)
		return -EPROTO;
	*rpc_id = f->next_rpc++;
	tx_seal(f, DG_FF_REQ, *rpc_id, (uint16_t)conn, fn, (uint32_t)len, cnt);
	f->outstanding++;
	f->st.calls++;
	return 0;
}

void *dg_flow_alloc(struct dg_flow *f, size_t n)
{
	size_t at = ((size_t)f->heap_used + 15) & ~(size_t)15;

	if (own(f) || n > DG_FLOW_ARENA || at + n > DG_FLOW_ARENA)
		return NULL;
	f->heap_used = (uint32_t)(at + n);
	return f->heap + at;
}

/* ---- RX ------------------------------------------------------------------ */

/*
 * Releases RX slots consumed by the previous dg_poll. Release store: our
 * loads of those slots (the application's reads of completion data) come
 * before the engine may reuse them.
 */
static void rx_release(struct dg_flow *f)
{
	if (f->rx_freed != f->rx_tail) {
		__atomic_store_n(&f->ctrl->rx_head, f->rx_tail,
				 __ATOMIC_RELEASE);
		f->rx_freed = f->rx_tail;
	}
	f->arena_used = 0;
	f->heap_used = 0;
}

/*
 * Takes the next whole message from the RX ring. Returns 1 with *first and
 * the assembled payload, 0 when none is complete yet, -EAGAIN when the
 * arena is full for this round.
 */
static int rx_take(struct dg_flow *f, const struct dg_frame **first,
		   const void **data, uint32_t *len)
{
	const struct dg_frame *s;
	uint32_t cnt, i, total;

	for (;;) {
		s = &f->rx[f->rx_tail & f->mask];
		if (!dg_slot_ready(s, f->rx_tail, f->rflags))
			return 0;
		cnt = s->cnt;
		if (s->idx == 0 && cnt != 0 && cnt <= f->slots &&
		    s->len <= DG_FRAME_PAYLOAD)
			break;
		/* The engine never sends this; skip the slot, count it. */
		f->st.bad_frames++;
		f->rx_tail++;
	}
	for (i = 1; i < cnt; i++)
		if (!dg_slot_ready(&f->rx[(f->rx_tail + i) & f->mask],
				   f->rx_tail + i, f->rflags))
			return 0;
	*first = s;
	if (cnt == 1) {
		*data = s->data;
		*len = s->len;
		f->rx_tail++;
		return 1;
	}
	total = (cnt - 1) * DG_FRAME_PAYLOAD + DG_FRAME_PAYLOAD;
	if (f->arena_used + total > ARENA_SIZE)
		return -EAGAIN;
	total = 0;
	for (i = 0; i < cnt; i++) {
		const struct dg_frame *x = &f->rx[(f->rx_tail + i) & f->mask];
		uint32_t n =
			x->len > DG_FRAME_PAYLOAD ? DG_FRAME_PAYLOAD : x->len;

		memcpy(f->arena + f->arena_used + total, x->data, n);
		total += n;
	}
	*data = f->arena + f->arena_used;
	*len = total;
	f->arena_used += total;
	f->rx_tail += cnt;
	return 1;
}

/* A control reply: taken out of the RX stream for the waiting call. */
static void ctrl_record(struct dg_flow *f, const struct dg_frame *s)
{
	f->ctrl_done = true;
	f->ctrl_rpc = s->rpc_id;
	f->ctrl_status = s->status;
	f->ctrl_conn = s->conn_id;
}

int dg_poll(struct dg_flow *f, struct dg_completion *c, int max)
{
	const struct dg_frame *s;
	const void *data;
	uint32_t len;
	int n = 0, rc = own(f);

	if (rc)
		return rc;
	rx_release(f);
	while (n < max && rx_take(f, &s, &data, &len) == 1) {
		if (s->flags & DG_FF_CTRL) {
			ctrl_record(f, s);
			continue;
		}
		if (!(s->flags & DG_FF_RESP)) {
			f->st.bad_frames++;
			continue;
		}
		c[n].rpc_id = s->rpc_id;
		c[n].conn = s->conn_id;
		c[n].fn = s->fn_id;
		c[n].status = s->status;
		c[n].data = data;
		c[n].len = len;
		n++;
	}
	if (f->outstanding >= (uint32_t)n)
		f->outstanding -= (uint32_t)n;
	else
		f->outstanding = 0;
	f->st.completions += (uint64_t)n;
	return n;
}

/*
 * For waits: -ETIMEDOUT past the deadline, -ENOTCONN once the engine's
 * connection is gone (looked at every 100 ms: it costs a system call).
 */
static int wait_check(struct dg_flow *f, uint64_t deadline, uint64_t *next)
{
	uint64_t now = now_ms();

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
		now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 10000);
	uint64_t next_check = 0;
	uint32_t spins;
	int rc;

	for (spins = 0;; spins++) {
		rc = dg_poll(f, c, 1);
		if (rc < 0)
			return rc;
		if (rc == 1 && c->rpc_id == rpc_id)
			return 0;
		/* Check the clock (and let others run) only now and then. */
		if ((spins & 1023) == 1023) {
			rc = wait_check(f, deadline, &next_check);
			if (rc)
				return rc;
			sched_yield();
		}
	}
}

int dg_call_sync(struct dg_flow *f, int conn, uint16_t fn, const void *req,
		 size_t len, void *resp, size_t *resp_len, int timeout_ms)
{
	uint64_t deadline =
		now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 10000);
	uint64_t next_check = 0, now;
	struct dg_completion c;
	uint32_t id;
	int rc;

	while ((rc = dg_call(f, conn, fn, req, len, &id)) == -EAGAIN) {
		if (dg_poll(f, &c, 1) < 0)
			return -ETIMEDOUT;
		rc = wait_check(f, deadline, &next_check);
		if (rc)
			return rc;
	}
	if (rc)
		return rc;
	now = now_ms();
	rc = dg_wait(f, id, &c, now < deadline ? (int)(deadline - now) : 1);
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

static int ctrl_call(struct dg_flow *f, const struct dg_ctrl_msg *m,
		     int timeout_ms, uint16_t *conn)
{
	uint64_t deadline =
		now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 10000);
	uint32_t cnt = dg_frames_for(sizeof(*m)), id;
	uint64_t next_check = 0;
	struct dg_completion c;
	int rc = own(f);

	if (rc)
		return rc;
	if (f->outstanding)
		return -EBUSY;
	while (tx_reserve(f, cnt)) {
		rc = wait_check(f, deadline, &next_check);
		if (rc)
			return rc;
	}
	id = f->next_rpc++;
	f->ctrl_done = false;
	tx_put(f, DG_FF_CTRL, 0, id, 0, 0, m, sizeof(*m), cnt);
	/*
	 * A serving flow (registration) serves while it waits: once the
	 * engine has registered the service, requests may land right behind
	 * the reply, and they are not ours to drop.
	 */
	while (!(f->ctrl_done && f->ctrl_rpc == id)) {
		if ((f->svc ? dg_serve_poll(f, 16) : dg_poll(f, &c, 1)) < 0)
			return -ETIMEDOUT;
		rc = wait_check(f, deadline, &next_check);
		if (rc)
			return rc;
	}
	if (conn)
		*conn = f->ctrl_conn;
	return f->ctrl_status;
}

static int status_errno(int st)
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
	default:
		return st < 0 ? st : -EPROTO;
	}
}

int dg_connect(struct dg_flow *f, const char *peer_addr, uint16_t peer_port,
	       const char *service, int timeout_ms)
{
	struct dg_ctrl_msg m = {.op = DG_CTRL_OPEN, .port = peer_port};
	uint16_t conn;
	int st;

	if (!service || strlen(service) >= DG_NAME_MAX ||
	    (peer_addr && strlen(peer_addr) >= DG_ADDR_MAX))
		return -EINVAL;
	strcpy(m.service, service);
	if (peer_addr)
		strcpy(m.peer, peer_addr);
	st = ctrl_call(f, &m, timeout_ms, &conn);
	if (st)
		return status_errno(st);
	return conn;
}

int dg_close(struct dg_flow *f, int conn)
{
	struct dg_ctrl_msg m = {.op = DG_CTRL_CLOSE, .conn = (uint16_t)conn};

	if (conn < 0 || conn > UINT16_MAX)
		return -EINVAL;
	return status_errno(ctrl_call(f, &m, 5000, NULL));
}

/* ---- server ------------------------------------------------------------- */

int dg_serve(struct dg_flow *f, const struct dg_service_def *def,
	     int timeout_ms)
{
	struct dg_ctrl_msg m = {.op = DG_CTRL_REGISTER, .lb = def->lb};
	int st;

	if (!def->name || strlen(def->name) >= DG_NAME_MAX)
		return -EINVAL;
	strcpy(m.service, def->name);
	f->svc = def;
	st = ctrl_call(f, &m, timeout_ms, NULL);
	if (st)
		f->svc = NULL;
	return status_errno(st);
}

static dg_handler_fn find_handler(const struct dg_service_def *d, uint16_t fn)
{
	uint32_t i;

	for (i = 0; i < d->nhandlers; i++)
		if (d->handlers[i].fn == fn)
			return d->handlers[i].handler;
	return NULL;
}

static bool tx_wait(struct dg_flow *f, uint32_t cnt)
{
	uint64_t deadline = now_ms() + 10000;

	while (tx_reserve(f, cnt))
		if (now_ms() > deadline)
			return false;
	return true;
}

int dg_serve_poll(struct dg_flow *f, int max)
{
	const struct dg_frame *s;
	const void *data;
	uint32_t len;
	int n = 0, rc = own(f);

	if (rc)
		return rc;
	if (!f->svc)
		return -EINVAL;
	rx_release(f);
	while (n < max) {
		struct dg_request req;
		struct dg_response resp = {.data = f->resp_buf,
					   .cap = DG_MAX_MSG};
		dg_handler_fn h;
		uint32_t cnt;
		int st;

		rc = rx_take(f, &s, &data, &len);
		if (rc != 1)
			break;
		if (!(s->flags & DG_FF_REQ)) {
			if (s->flags & DG_FF_CTRL)
				ctrl_record(f, s);
			else
				f->st.bad_frames++;
			continue;
		}
		req = (struct dg_request){.rpc_id = s->rpc_id,
					  .conn = s->conn_id,
					  .fn = s->fn_id,
					  .data = data,
					  .len = len,
					  .flow = f};
		/* Each handler gets the whole dg_flow_alloc arena. */
		f->heap_used = 0;
		h = find_handler(f->svc, s->fn_id);
		if (!h) {
			st = DG_ST_NO_FUNCTION;
			resp.len = 0;
		} else {
			st = h(f->svc->arg, &req, &resp);
			if (st < 0 || st > 255 ||
			    (st && st < DG_ST_APP_BASE &&
			     st != DG_ST_BAD_FRAME && st != DG_ST_TOO_BIG) ||
			    resp.len > DG_MAX_MSG)
				st = DG_ST_BAD_FRAME, resp.len = 0;
		}
		cnt = dg_frames_for(resp.len);
		/*
		 * The request is consumed: wait for TX room rather than lose
		 * the response. The engine frees room unless the client side
		 * holds it back; past a bound the response is dropped and
		 * counted (the caller's deadline reports it).
		 */
		if (tx_reserve(f, cnt) && !tx_wait(f, cnt)) {
			f->st.bad_frames++;
			n++;
			continue;
		}
		tx_put(f, DG_FF_RESP, (uint8_t)st, req.rpc_id, req.conn, req.fn,
		       resp.data, resp.len, cnt);
		f->st.requests++;
		f->st.responses++;
		n++;
	}
	return n;
}

struct dg_server {
	struct dg_host *h;
	const struct dg_service_def *def;
	uint32_t first, n;
	volatile int stop;
	int rc;
	pthread_t thr[DG_MAX_FLOWS];
	int ready; /* atomic: threads registered */
};

struct srv_arg {
	struct dg_server *s;
	uint32_t flow;
};

static void *server_thread(void *arg)
{
	struct dg_server *s = ((struct srv_arg *)arg)->s;
	struct dg_flow *f = dg_host_flow(s->h, ((struct srv_arg *)arg)->flow);
	uint32_t idle = 0;
	int rc;

	free(arg);
	rc = dg_serve(f, s->def, 10000);
	if (rc)
		s->rc = rc;
	__atomic_add_fetch(&s->ready, 1, __ATOMIC_RELEASE);
	while (!rc && !__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
		if (dg_serve_poll(f, 32) > 0) {
			idle = 0;
		} else if (++idle > 1024) {
			/*
			 * Idle: let other threads of this core run (on a
			 * dedicated core this returns at once); after a long
			 * idle spell, sleep briefly to bound CPU use.
			 */
			if (idle < 1000000) {
				sched_yield();
			} else {
				struct timespec ts = {0, 200000};

				nanosleep(&ts, NULL);
				idle = 999000;
			}
		}
	}
	return NULL;
}

int dg_server_start(struct dg_host *h, const struct dg_service_def *def,
		    uint32_t first_flow, uint32_t nthreads,
		    struct dg_server **out)
{
	struct dg_server *s;
	uint32_t i;

	if (!nthreads || first_flow + nthreads > h->nflows)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->h = h;
	s->def = def;
	s->first = first_flow;
	for (i = 0; i < nthreads; i++) {
		struct srv_arg *a = malloc(sizeof(*a));

		if (!a)
			break;
		a->s = s;
		a->flow = first_flow + i;
		if (pthread_create(&s->thr[i], NULL, server_thread, a)) {
			free(a);
			break;
		}
		s->n++;
	}
	while (__atomic_load_n(&s->ready, __ATOMIC_ACQUIRE) < (int)s->n)
		sched_yield();
	if (s->n < nthreads || s->rc) {
		int rc = s->rc ? s->rc : -EAGAIN;

		dg_server_stop(s);
		return rc;
	}
	*out = s;
	return 0;
}

void dg_server_stop(struct dg_server *s)
{
	uint32_t i;

	if (!s)
		return;
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
	for (i = 0; i < s->n; i++)
		pthread_join(s->thr[i], NULL);
	free(s);
}

void dg_flow_stats(const struct dg_flow *f, struct dg_flow_stats *s)
{
	*s = f->st;
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
	default:
		return st >= DG_ST_APP_BASE ? "application error" : "error";
	}
}
