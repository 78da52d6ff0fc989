// SPDX-License-Identifier: MIT
/*
 * workers.c - a server's worker pool (dg_server_start_opts, workers > 0).
 *
 * A flow belongs to one thread, so each dispatch thread keeps its flow:
 * it takes requests from the flow's RX ring, copies each into a slot of
 * its own (dg_poll and dg_serve_poll release RX slots at their next
 * call, so nothing may point into the ring after that), and puts the
 * slot's number on the pool's work queue. Worker threads take slots from
 * that queue, run the handler, and put the slot's number on the done
 * queue of the dispatch thread it came from, which writes the response
 * into its flow's TX ring and frees the slot. Responses go out in the
 * order the workers finish; each carries its request's rpc id.
 *
 * The queues are bounded lock-free rings (Vyukov's MPMC: a sequence
 * number per cell says whose turn the cell is), sized so that they never
 * fill: a dispatch thread has at most `queue` slots out. Per request: two
 * copies (request in, response out), two queue hand-overs, no
 * allocation, no lock, no system call while busy.
 *
 * Idle threads sleep, as dispatch threads do (docs/ARCHITECTURE.md,
 * "Sleeping and waking"): after their spin a worker counts itself in
 * `sleepers`, fences, looks at the work queue once more and blocks on the
 * pool's eventfd (a semaphore); a dispatch thread that queued work fences
 * and writes one count per sleeper it saw. A dispatch thread with
 * nothing at the workers sleeps on its flow (the engine wakes it); with
 * requests out it sets `sleeping`, fences, looks at its done queue once
 * more and sleeps on its flow and its own eventfd, which a worker writes
 * after queueing a response if it saw the flag. Each side's store comes
 * before its load in the fences' order: one of them sees the other.
 *
 * Requests and responses in a pool are up to POOL_MSG bytes (a request
 * over it is answered DG_ST_TOO_BIG by the dispatch thread): slots
 * hold copies, and a copy of a multi-megabyte message per slot would
 * make the pool's memory that many times its queue.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "host_impl.h"

/* ---- bounded MPMC queue of 32-bit values --------------------------------- */

struct qcell {
	uint64_t seq;
	uint32_t val;
};

struct queue {
	struct qcell *c;
	uint64_t mask;
	uint64_t head __attribute__((aligned(64))); /* next to enqueue */
	uint64_t tail __attribute__((aligned(64))); /* next to dequeue */
};

static int q_init(struct queue *q, uint32_t min)
{
	uint64_t n = 2, i;

	while (n < min)
		n <<= 1;
	q->c = calloc(n, sizeof(*q->c));
	if (!q->c)
		return -ENOMEM;
	for (i = 0; i < n; i++)
		q->c[i].seq = i;
	q->mask = n - 1;
	q->head = q->tail = 0;
	return 0;
}

/* false when full (never, at the sizes used here). */
static bool q_push(struct queue *q, uint32_t v)
{
	uint64_t pos = __atomic_load_n(&q->head, __ATOMIC_RELAXED);
	struct qcell *c;

	for (;;) {
		int64_t d;

		c = &q->c[pos & q->mask];
		/* Acquire: the consumer that freed the cell is done with it. */
		d = (int64_t)(__atomic_load_n(&c->seq, __ATOMIC_ACQUIRE) - pos);
		if (d == 0) {
			/* Relaxed: the cell's seq, not head, publishes. */
			if (__atomic_compare_exchange_n(&q->head, &pos, pos + 1,
							true, __ATOMIC_RELAXED,
							__ATOMIC_RELAXED))
				break;
		} else if (d < 0) {
			return false;
		} else {
			pos = __atomic_load_n(&q->head, __ATOMIC_RELAXED);
		}
	}
	c->val = v;
	/*
	 * Release: the value, and everything the producer wrote before
	 * pushing it (a request's bytes, a response's), is visible to the
	 * consumer whose acquire load sees this seq.
	 */
	__atomic_store_n(&c->seq, pos + 1, __ATOMIC_RELEASE);
	return true;
}

static bool q_pop(struct queue *q, uint32_t *v)
{
	uint64_t pos = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);
	struct qcell *c;

	for (;;) {
		int64_t d;

		c = &q->c[pos & q->mask];
		/* Acquire: pairs with q_push's release store of seq. */
		d = (int64_t)(__atomic_load_n(&c->seq, __ATOMIC_ACQUIRE) -
			      (pos + 1));
		if (d == 0) {
			if (__atomic_compare_exchange_n(&q->tail, &pos, pos + 1,
							true, __ATOMIC_RELAXED,
							__ATOMIC_RELAXED))
				break;
		} else if (d < 0) {
			return false;
		} else {
			pos = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);
		}
	}
	*v = c->val;
	/* Release: our read of val is done before a producer reuses it. */
	__atomic_store_n(&c->seq, pos + q->mask + 1, __ATOMIC_RELEASE);
	return true;
}

/* ---- the pool ------------------------------------------------------------ */

#define POOL_MSG DG_MAX_INLINE

struct pslot {
	uint32_t rpc_id, conn, len, resp_len;
	uint16_t fn;
	uint8_t trace; /* the request's DG_FF_TRACE */
	int status;
	uint8_t *req;  /* POOL_MSG bytes */
	uint8_t *resp; /* POOL_MSG bytes */
};

struct disp {
	struct dg_pool *p;
	uint32_t idx, flow;
	pthread_t thr;
	struct pslot *slots;
	uint8_t *mem; /* the slots' buffers (mmap) */
	size_t mem_len;
	uint32_t *free; /* free slot numbers: the dispatch thread's alone */
	uint32_t nfree;
	struct queue done; /* workers -> this dispatch thread */
	int wake_fd;	   /* eventfd: a response queued while it slept */
	int sleeping;	   /* atomic: waits for responses, asleep */
};

struct worker {
	struct dg_pool *p;
	pthread_t thr;
	struct dg_flow *own; /* for dg_flow_alloc in handlers */
	struct dg_frame dummy[1];
	struct dg_flow_ctrl ctrl;
};

struct dg_pool {
	struct dg_host *h;
	const struct dg_service_def *def;
	uint32_t queue;
	struct disp *d;
	uint32_t nd, nd_started;
	struct worker *w;
	uint32_t nw, nw_started;
	struct queue work; /* dispatch threads -> workers */
	int work_fd;	   /* eventfd (semaphore): work for a sleeping worker */
	int sleepers;	   /* atomic: workers asleep or about to be */
	int stop;	   /* atomic */
	int ready;	   /* atomic: dispatch threads registered */
	int rc;
};

static dg_handler_fn find_handler(const struct dg_service_def *d, uint16_t fn)
{
	uint32_t i;

	for (i = 0; i < d->nhandlers; i++)
		if (d->handlers[i].fn == fn)
			return d->handlers[i].handler;
	return NULL;
}

/* Whether the queue holds nothing (a look, not a take). */
static bool q_empty(struct queue *q)
{
	uint64_t pos = __atomic_load_n(&q->tail, __ATOMIC_RELAXED);

	return (int64_t)(__atomic_load_n(&q->c[pos & q->mask].seq,
					 __ATOMIC_ACQUIRE) -
			 (pos + 1)) < 0;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/* Whether a thread idle since *since (0: just now) spun long enough. */
static bool spun(uint64_t *since, uint32_t spin_us)
{
	uint64_t now = now_ns();

	if (!*since) {
		*since = now;
		return false;
	}
	return now - *since >= spin_us * 1000ull;
}

/* A worker with nothing to do: sleeps until work is queued (or stop). */
static void worker_sleep(struct dg_pool *p)
{
	struct pollfd pf = {.fd = p->work_fd, .events = POLLIN};
	uint64_t v;

	/* Counted before the last look: a dispatch thread that queues work
	 * after our look fences, then sees us counted and writes. */
	__atomic_add_fetch(&p->sleepers, 1, __ATOMIC_SEQ_CST);
	if (q_empty(&p->work) && !__atomic_load_n(&p->stop, __ATOMIC_RELAXED) &&
	    poll(&pf, 1, -1) == 1 && read(p->work_fd, &v, sizeof(v)) < 0)
		v = 0; /* another worker took the count: look again */
	__atomic_sub_fetch(&p->sleepers, 1, __ATOMIC_RELAXED);
}

/* After queueing n requests: wake as many sleeping workers. */
static void wake_workers(struct dg_pool *p, int n)
{
	uint64_t one = 1;
	int s;

	/* The queued cells before our look at the sleepers (see above). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	s = __atomic_load_n(&p->sleepers, __ATOMIC_RELAXED);
	for (; n > 0 && s > 0; n--, s--)
		if (write(p->work_fd, &one, sizeof(one)) < 0)
			break;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct dg_pool *p = w->p;
	uint64_t idle = 0;
	uint32_t v, spins = 0;

	while (!__atomic_load_n(&p->stop, __ATOMIC_RELAXED)) {
		struct disp *d;
		struct pslot *s;
		struct dg_request req;
		struct dg_response resp;
		dg_handler_fn h;
		int st;

		if (!q_pop(&p->work, &v)) {
			if (!(++spins & 63) &&
			    spun(&idle, p->h->flows[p->d[0].flow].spin_us))
				worker_sleep(p);
			continue;
		}
		idle = 0;
		d = &p->d[v >> 16];
		s = &d->slots[v & 0xffff];
		req = (struct dg_request){.rpc_id = s->rpc_id,
					  .conn = s->conn,
					  .fn = s->fn,
					  .data = s->req,
					  .len = s->len,
					  .flow = w->own};
		resp = (struct dg_response){.data = s->resp, .cap = POOL_MSG};
		w->own->heap_used = 0; /* each handler gets the whole arena */
		h = find_handler(p->def, s->fn);
		st = h ? h(p->def->arg, &req, &resp) : DG_ST_NO_FUNCTION;
		/* As dispatch threads do (server.c): statuses a handler may
		 * not send become BAD_FRAME. */
		if ((unsigned)st > 255 ||
		    (st && st < DG_ST_APP_BASE && st != DG_ST_BAD_FRAME &&
		     st != DG_ST_TOO_BIG && st != DG_ST_NO_FUNCTION) ||
		    resp.len > POOL_MSG) {
			resp.len = 0;
			st = DG_ST_BAD_FRAME;
		}
		if (!h)
			resp.len = 0;
		s->status = st;
		s->resp_len = resp.len;
		q_push(&d->done, v & 0xffff);
		/* The cell before our look at the flag (see the top). */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
		if (__atomic_load_n(&d->sleeping, __ATOMIC_RELAXED)) {
			uint64_t one = 1;

			if (write(d->wake_fd, &one, sizeof(one)) < 0)
				continue; /* full: it is awake anyway */
		}
	}
	return NULL;
}

/* Writes slot s's response into the flow's TX ring; frees the slot. */
static void respond(struct disp *d, struct dg_flow *f, uint32_t i)
{
	struct pslot *s = &d->slots[i];
	uint32_t cnt = dg_frames_for(s->resp_len);
	uint64_t deadline = 0;

	/*
	 * Wait for TX room rather than lose the response (as serve_one);
	 * past a bound it is dropped and counted, the caller's deadline
	 * reports it.
	 */
	while (dg_tx_reserve(f, cnt)) {
		if (!deadline)
			deadline = dg_now_ms() + 10000;
		else if (dg_now_ms() > deadline)
			break;
	}
	if (!dg_tx_reserve(f, cnt)) {
		dg_tx_put(f, DG_FF_RESP | s->trace, (uint8_t)s->status,
			  s->rpc_id, s->conn, s->fn, s->resp, s->resp_len, cnt);
		f->st.responses++;
	} else {
		f->st.bad_frames++;
	}
	d->free[d->nfree++] = i;
}

/*
 * Takes requests from the RX ring while slots are free: each is copied
 * into a slot and queued for the workers. Returns how many.
 */
static int take(struct disp *d, struct dg_flow *f)
{
	struct dg_rx_msg m;
	int n = 0, rc;

	/* What the previous round took is copied out: release it. */
	dg_rx_release(f);
	while (d->nfree && (rc = dg_rx_take(f, &m)) == 1) {
		const struct dg_frame *h = m.s;
		struct pslot *s;
		uint32_t i;

		if (!(h->flags & DG_FF_REQ)) {
			if (h->flags & DG_FF_CTRL)
				dg_ctrl_record(f, h);
			else
				f->st.bad_frames++;
			continue;
		}
		i = d->free[--d->nfree];
		s = &d->slots[i];
		s->rpc_id = h->rpc_id;
		s->conn = h->conn;
		s->fn = h->fn_id;
		s->trace = h->flags & DG_FF_TRACE;
		s->len = m.len;
		f->st.requests++;
		n++;
		if (m.len > POOL_MSG) {
			/* Too large for a slot: answered at once, from here. */
			s->status = DG_ST_TOO_BIG;
			s->resp_len = 0;
			q_push(&d->done, i);
			continue;
		}
		memcpy(s->req, m.data, m.len);
		q_push(&d->p->work, d->idx << 16 | i);
	}
	if (n)
		wake_workers(d->p, n);
	return n;
}

static void *disp_main(void *arg)
{
	struct disp *d = arg;
	struct dg_pool *p = d->p;
	struct dg_flow *f = dg_host_flow(p->h, d->flow);
	uint64_t idle = 0, v64;
	uint32_t v, spins = 0;
	int rc;

	rc = dg_serve(f, p->def, 10000);
	if (rc)
		p->rc = rc;
	__atomic_add_fetch(&p->ready, 1, __ATOMIC_RELEASE);
	while (!rc && !__atomic_load_n(&p->stop, __ATOMIC_RELAXED)) {
		int work = 0;

		while (q_pop(&d->done, &v)) {
			respond(d, f, v);
			work++;
		}
		/* The responses are told (or the engine kicked) once. */
		if (work)
			dg_after_tx(f);
		work += take(d, f);
		if (work) {
			idle = 0;
			continue;
		}
		/* Nothing at the workers: an operator may ask for a mode
		 * (the switch serves inline while it waits). */
		if (d->nfree == p->queue && f->rflags)
			dg_mode_req_check(f);
		if ((++spins & 63) || !spun(&idle, f->spin_us) || f->busy_poll)
			continue;
		/* Asleep for the workers too (see the top), then the engine's
		 * wake-up, a response, or stop (which writes wake_fd). */
		__atomic_store_n(&d->sleeping, 1, __ATOMIC_SEQ_CST);
		if (q_empty(&d->done) &&
		    !__atomic_load_n(&p->stop, __ATOMIC_RELAXED))
			dg_flow_sleep(f, -1, d->wake_fd);
		__atomic_store_n(&d->sleeping, 0, __ATOMIC_RELAXED);
		while (read(d->wake_fd, &v64, sizeof(v64)) > 0)
			;
		idle = 0;
	}
	return NULL;
}

static void pool_free(struct dg_pool *p)
{
	uint32_t i;

	for (i = 0; p->d && i < p->nd; i++) {
		struct disp *d = &p->d[i];

		if (d->mem)
			munmap(d->mem, d->mem_len);
		free(d->slots);
		free(d->free);
		free(d->done.c);
		if (d->wake_fd >= 0)
			close(d->wake_fd);
	}
	for (i = 0; p->w && i < p->nw; i++) {
		if (p->w[i].own)
			free(p->w[i].own->heap);
		free(p->w[i].own);
	}
	if (p->work_fd >= 0)
		close(p->work_fd);
	free(p->d);
	free(p->w);
	free(p->work.c);
	free(p);
}

void dg_pool_stop(struct dg_pool *p)
{
	uint64_t one = 1;
	uint32_t i;

	if (!p)
		return;

	__atomic_store_n(&p->stop, 1, __ATOMIC_RELAXED);
	/* Sleepers look at stop when woken: wake every one. */
	for (i = 0; i < p->nd_started; i++)
		if (write(p->d[i].wake_fd, &one, sizeof(one)) < 0)
			continue;
	for (i = 0; i < p->nw_started; i++)
		if (write(p->work_fd, &one, sizeof(one)) < 0)
			continue;
	for (i = 0; i < p->nd_started; i++)
		pthread_join(p->d[i].thr, NULL);
	for (i = 0; i < p->nw_started; i++)
		pthread_join(p->w[i].thr, NULL);
	pool_free(p);
}

/* A worker's own flow: an arena for dg_flow_alloc, and no ring at all. */
static int worker_flow(struct dg_pool *p, struct worker *w)
{
	struct dg_flow *f = aligned_alloc(64, sizeof(*f));

	if (!f)
		return -ENOMEM;
	memset(f, 0, sizeof(*f));
	f->heap = aligned_alloc(64, DG_FLOW_ARENA);
	if (!f->heap) {
		free(f);
		return -ENOMEM;
	}
	/* Calls and polls see a ring of no slots: -EMSGSIZE, nothing. */
	f->tx = f->rx = w->dummy;
	f->ctrl = &w->ctrl;
	f->h = p->h;
	f->idx = UINT32_MAX;
	f->svc = p->def;
	w->own = f;
	return 0;
}

int dg_pool_start(struct dg_host *h, const struct dg_service_def *def,
		  const struct dg_server_opts *o, struct dg_pool **out)
{
	struct dg_pool *p;
	uint32_t i, j;
	int rc = -ENOMEM;

	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->h = h;
	p->def = def;
	p->queue = o->queue ? o->queue : 256;
	p->nd = o->nthreads;
	p->nw = o->workers;
	p->d = calloc(p->nd, sizeof(*p->d));
	p->w = calloc(p->nw, sizeof(*p->w));
	p->work_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK | EFD_SEMAPHORE);
	for (i = 0; p->d && i < p->nd; i++)
		p->d[i].wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!p->d || !p->w || p->work_fd < 0 ||
	    q_init(&p->work, p->queue * p->nd + 1) < 0)
		goto fail;
	for (i = 0; i < p->nd; i++) {
		struct disp *d = &p->d[i];

		if (d->wake_fd < 0) {
			rc = -EMFILE;
			goto fail;
		}
		d->p = p;
		d->idx = i;
		d->flow = o->first_flow + i;
		d->slots = calloc(p->queue, sizeof(*d->slots));
		d->free = calloc(p->queue, sizeof(*d->free));
		/* Request and response buffers: touched only as used. */
		d->mem_len = (size_t)p->queue * 2 * POOL_MSG;
		d->mem = mmap(NULL, d->mem_len, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1,
			      0);
		if (d->mem == MAP_FAILED)
			d->mem = NULL;
		if (!d->slots || !d->free || !d->mem ||
		    q_init(&d->done, p->queue + 1) < 0)
			goto fail;
		for (j = 0; j < p->queue; j++) {
			d->slots[j].req = d->mem + (size_t)j * 2 * POOL_MSG;
			d->slots[j].resp = d->slots[j].req + POOL_MSG;
			d->free[j] = p->queue - 1 - j;
		}
		d->nfree = p->queue;
	}
	for (i = 0; i < p->nw; i++) {
		p->w[i].p = p;
		if (worker_flow(p, &p->w[i]))
			goto fail;
	}
	for (i = 0; i < p->nw; i++) {
		if (pthread_create(&p->w[i].thr, NULL, worker_main, &p->w[i]))
			break;
		p->nw_started++;
	}
	for (i = 0; p->nw_started == p->nw && i < p->nd; i++) {
		if (pthread_create(&p->d[i].thr, NULL, disp_main, &p->d[i]))
			break;
		p->nd_started++;
	}
	while (__atomic_load_n(&p->ready, __ATOMIC_ACQUIRE) <
	       (int)p->nd_started)
		sched_yield();
	if (p->nd_started < p->nd || p->nw_started < p->nw || p->rc) {
		rc = p->rc ? p->rc : -EAGAIN;
		dg_pool_stop(p);
		return rc;
	}
	*out = p;
	return 0;
fail:
	pool_free(p);
	return rc;
}
