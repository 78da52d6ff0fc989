// SPDX-License-Identifier: MIT
/*
 * server.c - libdagger's server side: registering a flow as a server of a
 * service, serving the requests that reach it, dispatch threads.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dg_cpu.h"
#include "host_impl.h"

int dg_serve(struct dg_flow *f, const struct dg_service_def *def,
	     int timeout_ms)
{
	struct dg_ctrl_msg m = {
		.op = DG_CTRL_REGISTER, .lb = def->lb, .secret = def->secret};
	const char *env = getenv("DG_SERVICE_SECRET");
	int st;

	if (!def->name || strlen(def->name) >= DG_NAME_MAX)
		return -EINVAL;
	if (!m.secret && env && *env) {
		char *end;

		errno = 0;
		m.secret = strtoull(env, &end, 0);
		if (errno || *end)
			return -EINVAL;
	}
	strcpy(m.service, def->name);
	f->svc = def;
	f->last_h = NULL;
	st = dg_ctrl_call(f, &m, timeout_ms, NULL);
	if (st)
		f->svc = NULL;
	return dg_status_errno(st);
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
	uint64_t deadline = dg_now_ms() + 10000;

	/* In doorbell and push modes the engine frees only what it knows. */
	dg_after_tx(f);
	while (dg_tx_reserve(f, cnt)) {
		if (dg_now_ms() > deadline)
			return false;
		if (f->kick == DG_KICK_RDMA && f->db_sent != f->tx_tail)
			dg_doorbell(f);
	}
	return true;
}

/* Runs the handler of one request; returns the status to answer with. */
static inline int handle(struct dg_flow *f, const struct dg_request *req,
			 struct dg_response *resp)
{
	dg_handler_fn h;
	int st;

	/* One entry of cache: a flow mostly serves one function at a time. */
	if (DG_LIKELY(req->fn == f->last_fn && f->last_h)) {
		h = f->last_h;
	} else {
		h = find_handler(f->svc, req->fn);
		if (DG_UNLIKELY(!h)) {
			resp->len = 0;
			return DG_ST_NO_FUNCTION;
		}
		f->last_fn = req->fn;
		f->last_h = h;
	}
	st = h(f->svc->arg, req, resp);
	if (DG_UNLIKELY((unsigned)st > 255 ||
			(st && st < DG_ST_APP_BASE && st != DG_ST_BAD_FRAME &&
			 st != DG_ST_TOO_BIG) ||
			resp->len > resp->cap)) {
		resp->len = 0;
		return DG_ST_BAD_FRAME;
	}
	return st;
}

int dg_response_buf(const struct dg_request *req, struct dg_response *resp,
		    size_t len)
{
	struct dg_flow *f = req ? req->flow : NULL;
	uint64_t deadline;
	uint32_t pos;

	if (!f || !resp)
		return -EINVAL;
	if (f->owner != dg_thread_id())
		return -EPERM;
	if (!len || len > DG_MAX_MSG || len > f->pay_size)
		return -EMSGSIZE;
	if (dg_pay_reserve(f, (uint32_t)len, &pos)) {
		/*
		 * The engine has not taken earlier responses' payloads: it
		 * frees them unless their callers hold them back. Tell it
		 * about what we wrote (doorbell and push modes learn only
		 * that way), then wait, as tx_wait does for ring room.
		 */
		deadline = dg_now_ms() + 10000;
		dg_after_tx(f);
		while (dg_pay_reserve(f, (uint32_t)len, &pos)) {
			if (dg_now_ms() > deadline)
				return -EAGAIN;
			if (f->kick == DG_KICK_RDMA && f->db_sent != f->tx_tail)
				dg_doorbell(f);
		}
	}
	f->res_buf = f->pay_tx + (pos & (f->pay_size - 1));
	f->res_pos = pos;
	f->res_len = (uint32_t)len;
	resp->data = f->res_buf;
	resp->cap = (uint32_t)len;
	return 0;
}

/*
 * A large response: in place if the handler built it with
 * dg_response_buf, else copied into the TX payload area (waiting for room
 * within tx_wait's bound). false when it could not be sent.
 */
static bool respond_pay(struct dg_flow *f, uint8_t st, uint32_t rpc_id,
			uint32_t conn, uint16_t fn, const void *data,
			uint32_t len)
{
	bool in_place = f->res_buf && data == f->res_buf && len <= f->res_len;
	uint64_t deadline = 0;
	uint32_t ppos;

	if (DG_UNLIKELY(dg_tx_reserve(f, 1)) && !tx_wait(f, 1))
		return false;
	if (in_place) {
		ppos = f->res_pos;
	} else {
		while (dg_pay_reserve(f, len, &ppos)) {
			if (!deadline) {
				deadline = dg_now_ms() + 10000;
				dg_after_tx(f);
			}
			if (dg_now_ms() > deadline)
				return false;
			if (f->kick == DG_KICK_RDMA && f->db_sent != f->tx_tail)
				dg_doorbell(f);
		}
		/* memmove: a handler may hand back a stale in-area buffer. */
		memmove(f->pay_tx + (ppos & (f->pay_size - 1)), data, len);
		f->st.pay_copies++;
	}
	dg_pay_put(f, DG_FF_RESP, st, rpc_id, conn, fn, 0, ppos, len);
	return true;
}

/*
 * Answers one request: runs its handler and writes the response. Returns
 * false when the response was dropped (no TX room within the bound).
 */
static inline __attribute__((always_inline)) bool
serve_one(struct dg_flow *f, const struct dg_frame *s, const void *data,
	  uint32_t len, const unsigned rflags)
{
	struct dg_request req;
	struct dg_response resp;
	/* A traced request's response is traced too. */
	uint8_t flags = DG_FF_RESP | (s->flags & DG_FF_TRACE);
	uint32_t cnt;
	int st;

	req.rpc_id = s->rpc_id;
	req.conn = s->conn;
	req.fn = s->fn_id;
	req.data = data;
	req.len = len;
	req.flow = f;
	resp.data = f->resp_buf;
	resp.cap = DG_MAX_MSG;
	resp.len = 0;
	/* Each handler gets the whole dg_flow_alloc arena. */
	f->heap_used = 0;
	st = handle(f, &req, &resp);
	if (DG_UNLIKELY(resp.len > DG_FRAME_PAYLOAD + DG_CONT_PAYLOAD)) {
		/* Large: out of the ring (in place, or copied there). */
		if (dg_pay_use(f, resp.len) ||
		    (resp.data == f->res_buf && resp.len <= f->res_len)) {
			if (!respond_pay(f, (uint8_t)st, req.rpc_id, req.conn,
					 req.fn, resp.data, resp.len)) {
				f->st.bad_frames++;
				return false;
			}
			f->st.requests++;
			f->st.responses++;
			return true;
		}
		if (resp.len > DG_MAX_INLINE ||
		    dg_frames_for(resp.len) > f->slots) {
			resp.len = 0;
			st = DG_ST_TOO_BIG;
		}
	}
	cnt = resp.len <= DG_FRAME_PAYLOAD + DG_CONT_PAYLOAD
		      ? 1u + (resp.len > DG_FRAME_PAYLOAD)
		      : dg_frames_for(resp.len);
	/*
	 * The request is consumed: wait for TX room rather than lose the
	 * response. The engine frees room unless the client side holds it
	 * back; past a bound the response is dropped and counted (the
	 * caller's deadline reports it).
	 */
	if (DG_UNLIKELY(dg_tx_reserve(f, cnt)) && !tx_wait(f, cnt)) {
		f->st.bad_frames++;
		return false;
	}
	dg_tx_put_as(f, flags, (uint8_t)st, req.rpc_id, req.conn, req.fn,
		     resp.data, resp.len, cnt, rflags);
	f->st.requests++;
	f->st.responses++;
	return true;
}

/* dg_serve_poll in general (any message, checksummed rings). */
static int serve_slow(struct dg_flow *f, int max, int n)
{
	struct dg_rx_msg m;

	while (n < max && dg_rx_take(f, &m) == 1) {
		const struct dg_frame *s = m.s;

		if (DG_UNLIKELY(!(s->flags & DG_FF_REQ))) {
			if (s->flags & DG_FF_CTRL)
				dg_ctrl_record(f, s);
			else
				f->st.bad_frames++;
			continue;
		}
		serve_one(f, s, m.data, m.len, f->rflags);
		n++;
	}
	/*
	 * The batch's responses are told (or kicked) once, those the fast
	 * path wrote before it handed the poll over included.
	 */
	if (n)
		dg_after_tx(f);
	return n;
}

/*
 * Requests of one or two frames that do not wrap are taken in place (as
 * dg_poll does) and answered; anything else goes to serve_slow from
 * there. rflags is a constant: shared-memory rings (0; the engine guards
 * them) or checksummed ones (each frame's checksum verified, consumed
 * continuation frames scrubbed when released, dagger/ring.h).
 */
static inline __attribute__((always_inline)) int
serve_fast(struct dg_flow *f, int max, const unsigned rflags)
{
	uint32_t pos;
	int n = 0;

	for (pos = f->rx_tail; n < max; pos = f->rx_tail) {
		const struct dg_frame *s = &f->rx[pos & f->mask];
		uint32_t len, cnt;
		uint64_t w;

		/* Acquire: the frame's bytes were stored before its stamp. */
		if (!dg_slot_ready(s, pos, rflags))
			break;
		memcpy(&w, &s->len, 8); /* len, fn_id, cnt: one load */
		len = (uint32_t)w;
		cnt = (uint32_t)(w >> 48);
		if (DG_UNLIKELY(!(s->flags & DG_FF_REQ)))
			return serve_slow(f, max, n);
		if (cnt == 1 && len <= DG_FRAME_PAYLOAD) {
		} else if (cnt == 2 && len > DG_FRAME_PAYLOAD &&
			   len <= DG_FRAME_PAYLOAD + DG_CONT_PAYLOAD &&
			   dg_msg_contig(pos, f->mask)) {
			if (!dg_cont_ready(
				    (const struct dg_frame_cont *)(s + 1),
				    pos + 1, rflags))
				break;
		} else {
			return serve_slow(f, max, n);
		}
		f->rx_tail = pos + cnt;
		if (rflags) /* else the engine guards the ring */
			f->rx_scrub |= cnt - 1;
		serve_one(f, s, s->data, len, rflags);
		n++;
	}
	if (n)
		dg_after_tx(f);
	return n;
}

static inline __attribute__((always_inline)) int
serve_poll(struct dg_flow *f, int max, const unsigned crc_inline)
{
	int n, rc;

	if (DG_UNLIKELY(f->owner != dg_thread_id()) && (rc = dg_own(f)))
		return rc;
	if (DG_UNLIKELY(!f->svc))
		return -EINVAL;
	dg_rx_release(f);
	if (DG_UNLIKELY(f->rflags)) {
		/* Doorbells: RDMA tenants, whose rings are checksummed. */
		if (f->kick == DG_KICK_RDMA && f->db_sent != f->tx_tail)
			dg_doorbell(f);
		n = serve_fast(f, max, DG_RING_F_CSUM | crc_inline);
		if (!n) /* idle: an operator may ask for a mode */
			dg_mode_req_check(f);
		return n;
	}
	return serve_fast(f, max, 0);
}

/*
 * dg_serve_poll, built twice on x86-64 as dg_call_csum is (client.c): the
 * checksummed rings' CRC32C in line or through dg_slot_csum.
 */
static int serve_poll_portable(struct dg_flow *f, int max)
{
	return serve_poll(f, max, 0);
}

#if defined(DG_HAVE_IFUNC) && defined(__x86_64__)
typedef int (*serve_fn)(struct dg_flow *, int);

static int serve_poll_crc_inline(struct dg_flow *f, int max)
{
	return serve_poll(f, max, DG_RING_F_CRC_INLINE);
}

DG_RESOLVER serve_fn resolve_serve_poll(DG_RESOLVER_ARGS)
{
	return DG_CRC_NOW ? serve_poll_crc_inline : serve_poll_portable;
}

int dg_serve_poll(struct dg_flow *f, int max)
	__attribute__((ifunc("resolve_serve_poll")));
#else
int dg_serve_poll(struct dg_flow *f, int max)
{
	return serve_poll_portable(f, max);
}
#endif

struct dg_server {
	struct dg_host *h;
	const struct dg_service_def *def;
	uint32_t first, n;
	volatile int stop;
	int stop_fd; /* eventfd: readable once stopping (never drained) */
	int rc;
	pthread_t thr[DG_MAX_FLOWS];
	int ready;	      /* atomic: threads registered */
	struct dg_pool *pool; /* a worker pool's server (workers.c) */
};

struct srv_arg {
	struct dg_server *s;
	uint32_t flow;
};

static void *server_thread(void *arg)
{
	struct dg_server *s = ((struct srv_arg *)arg)->s;
	struct dg_flow *f = dg_host_flow(s->h, ((struct srv_arg *)arg)->flow);
	uint64_t idle = 0;
	int rc;

	free(arg);
	rc = dg_serve(f, s->def, 10000);
	if (rc)
		s->rc = rc;
	__atomic_add_fetch(&s->ready, 1, __ATOMIC_RELEASE);
	while (!rc && !__atomic_load_n(&s->stop, __ATOMIC_RELAXED)) {
		if (dg_serve_poll(f, 32) > 0) {
			idle = 0;
			continue;
		}
		/*
		 * Idle: spin for the flow's spin_us, then sleep until the
		 * engine delivers or the server stops, without a timeout: an
		 * idle thread costs nothing, however many there are (and a
		 * lost wake-up would hang a call, not hide as latency).
		 */
		if (dg_flow_idle(f, &idle, -1, s->stop_fd, false) < 0)
			sched_yield();
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
	s->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (s->stop_fd < 0) {
		free(s);
		return -EMFILE;
	}
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
	uint64_t one = 1;
	uint32_t i;

	if (!s)
		return;
	if (s->pool) {
		dg_pool_stop(s->pool);
		free(s);
		return;
	}
	__atomic_store_n(&s->stop, 1, __ATOMIC_RELAXED);
	/*
	 * Sleeping threads poll stop_fd too. It stays readable: a thread
	 * about to sleep sees it at once, whenever it gets there.
	 */
	if (write(s->stop_fd, &one, sizeof(one)) < 0)
		abort(); /* an eventfd at 0 takes a write */
	for (i = 0; i < s->n; i++)
		pthread_join(s->thr[i], NULL);
	close(s->stop_fd);
	free(s);
}

int dg_server_start_opts(struct dg_host *h, const struct dg_service_def *def,
			 const struct dg_server_opts *o, struct dg_server **out)
{
	struct dg_server *s;
	int rc;

	if (!o || !o->nthreads || o->nthreads > DG_MAX_FLOWS ||
	    o->first_flow + o->nthreads > h->nflows || o->workers > 1024 ||
	    o->queue > 65535)
		return -EINVAL;
	if (!o->workers)
		return dg_server_start(h, def, o->first_flow, o->nthreads, out);
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	rc = dg_pool_start(h, def, o, &s->pool);
	if (rc) {
		free(s);
		return rc;
	}
	*out = s;
	return 0;
}
