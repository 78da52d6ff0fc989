// SPDX-License-Identifier: MIT
/*
 * fake_rdma.c - dg_rdma.h in memory, for the fuzz harnesses (fake_rdma.h).
 * One thread; nothing here blocks or reads a clock.
 */
#include "fake_rdma.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define MAX_QUEUED   8	 /* connection requests waiting */
#define MAX_SENDS    256 /* captured SENDs not yet taken */
#define MAX_RECVS    4096
#define CQ_CAP	     4096
#define FAKE_PORT    7471
#define FAKE_RKEY_LO 0x1000u
#define MAX_EPS	     256 /* alive at once */

struct dg_rdma_mr {
	struct dg_rdma_ep *ep;
	uint8_t *addr;
	size_t len;
	uint32_t rkey;
};

struct wr {
	uint32_t op; /* enum dg_rdma_opcode */
	const uint8_t *laddr;
	uint32_t len;
	uint64_t raddr, wr_id;
	uint32_t rkey;
	bool sig;
};

struct recv {
	uint8_t *addr;
	uint32_t len;
	uint64_t wr_id;
};

struct sent {
	uint8_t *buf;
	uint32_t len;
};

struct dg_rdma_ep {
	bool accepted, connected, failed, down;
	uint32_t sq_depth;
	uint8_t accept_pd[DG_RDMA_ACCEPT_PDATA_MAX];
	size_t accept_plen;
	/* the host memory READ/WRITE reach (passive endpoints of tenants) */
	uint8_t *mem;
	uint64_t base;
	uint32_t mem_len, rkey;
	/* the send queue: requests posted with DG_RDMA_MORE */
	struct wr q[1024];
	uint32_t nq;
	/* completions */
	struct dg_rdma_wc *cq;
	uint32_t cq_head, cq_tail;
	struct recv *rq;
	uint32_t rq_head, rq_tail;
	struct sent sends[MAX_SENDS];
	uint32_t s_head, s_tail;
	uint32_t nmr;
};

struct dg_rdma_listener {
	uint16_t port;
};

struct pending_req {
	uint8_t pd[DG_RDMA_CONNECT_PDATA_MAX];
	size_t plen;
	void *mem;
	uint64_t base;
	uint32_t mem_len, rkey;
};

static struct {
	struct pending_req q[MAX_QUEUED];
	uint32_t head, tail;
	bool scripted;
	uint8_t reply[DG_RDMA_ACCEPT_PDATA_MAX];
	size_t rlen;
	struct dg_rdma_ep *last;
	struct dg_rdma_ep *eps[MAX_EPS];
	int live;
	uint32_t next_rkey;
} F;

void fake_rdma_reset(void)
{
	F.head = F.tail = 0;
	F.scripted = false;
	F.last = NULL;
}

int fake_rdma_queue_connect(const void *pdata, size_t plen, void *mem,
			    uint64_t base, uint32_t mem_len, uint32_t rkey)
{
	struct pending_req *r;

	if (F.tail - F.head >= MAX_QUEUED)
		return -ENOSPC;
	r = &F.q[F.tail++ % MAX_QUEUED];
	memset(r, 0, sizeof(*r));
	r->plen = plen < sizeof(r->pd) ? plen : sizeof(r->pd);
	memcpy(r->pd, pdata, r->plen);
	r->mem = mem;
	r->base = base;
	r->mem_len = mem_len;
	r->rkey = rkey;
	return 0;
}

void fake_rdma_script_connect(const void *reply, size_t rlen)
{
	F.scripted = true;
	F.rlen = rlen < sizeof(F.reply) ? rlen : sizeof(F.reply);
	memcpy(F.reply, reply, F.rlen);
}

struct dg_rdma_ep *fake_rdma_last_ep(void)
{
	return F.last;
}

int fake_rdma_live_eps(void)
{
	return F.live;
}

bool fake_ep_alive(const struct dg_rdma_ep *ep)
{
	int i;

	for (i = 0; ep && i < F.live; i++)
		if (F.eps[i] == ep)
			return true;
	return false;
}

size_t fake_ep_accept_pdata(const struct dg_rdma_ep *ep, void *buf, size_t cap)
{
	size_t n = ep->accept_plen < cap ? ep->accept_plen : cap;

	memcpy(buf, ep->accept_pd, n);
	return ep->accept_plen;
}

/* ---- endpoints ------------------------------------------------------ */

static struct dg_rdma_ep *ep_new(const struct dg_rdma_ep_attr *attr)
{
	struct dg_rdma_ep *ep;

	if (F.live == MAX_EPS)
		return NULL;
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return NULL;
	ep->cq = calloc(CQ_CAP, sizeof(*ep->cq));
	ep->rq = calloc(MAX_RECVS, sizeof(*ep->rq));
	if (!ep->cq || !ep->rq) {
		free(ep->cq);
		free(ep->rq);
		free(ep);
		return NULL;
	}
	ep->sq_depth = attr && attr->sq_depth ? attr->sq_depth : 16;
	if (ep->sq_depth > 1024)
		ep->sq_depth = 1024;
	F.eps[F.live++] = ep;
	return ep;
}

int dg_rdma_listen(const char *addr, uint16_t port, int backlog,
		   struct dg_rdma_listener **out)
{
	struct dg_rdma_listener *l = calloc(1, sizeof(*l));

	(void)addr;
	(void)backlog;
	if (!l)
		return -ENOMEM;
	l->port = port ? port : FAKE_PORT;
	*out = l;
	return 0;
}

uint16_t dg_rdma_listener_port(const struct dg_rdma_listener *l)
{
	return l->port;
}

int dg_rdma_listener_fd(const struct dg_rdma_listener *l)
{
	(void)l;
	return -1;
}

void dg_rdma_listener_destroy(struct dg_rdma_listener *l)
{
	free(l);
}

int dg_rdma_listener_next(struct dg_rdma_listener *l,
			  const struct dg_rdma_ep_attr *attr, int timeout_ms,
			  void *pdata, size_t *plen, struct dg_rdma_ep **out)
{
	struct pending_req *r;
	struct dg_rdma_ep *ep;
	size_t n;

	(void)l;
	(void)timeout_ms;
	if (F.head == F.tail)
		return -ETIMEDOUT;
	r = &F.q[F.head++ % MAX_QUEUED];
	ep = ep_new(attr);
	if (!ep)
		return -ENOMEM;
	ep->mem = r->mem;
	ep->base = r->base;
	ep->mem_len = r->mem_len;
	ep->rkey = r->rkey;
	n = r->plen < *plen ? r->plen : *plen;
	memcpy(pdata, r->pd, n);
	*plen = n;
	*out = ep;
	return 0;
}

int dg_rdma_ep_accept(struct dg_rdma_ep *ep, const void *pdata, size_t plen,
		      int timeout_ms)
{
	(void)timeout_ms;
	if (plen > sizeof(ep->accept_pd))
		return -EINVAL;
	memcpy(ep->accept_pd, pdata, plen);
	ep->accept_plen = plen;
	ep->accepted = ep->connected = true;
	F.last = ep;
	return 0;
}

/* The accept completes at once here: the peer is the harness. */
int dg_rdma_ep_accept_start(struct dg_rdma_ep *ep, const void *pdata,
			    size_t plen)
{
	return dg_rdma_ep_accept(ep, pdata, plen, 0);
}

void dg_rdma_ep_refuse(struct dg_rdma_ep *ep, const void *pdata, size_t plen)
{
	(void)ep;
	(void)pdata;
	(void)plen;
}

void dg_rdma_ep_reject(struct dg_rdma_ep *ep, const void *pdata, size_t plen)
{
	dg_rdma_ep_refuse(ep, pdata, plen);
	dg_rdma_ep_destroy(ep);
}

int dg_rdma_ep_peer(const struct dg_rdma_ep *ep, uint8_t out[16])
{
	(void)ep;
	memset(out, 0, 16); /* every fake peer: one address */
	return 0;
}

int dg_rdma_ep_accept_wait(struct dg_rdma_ep *ep, int timeout_ms)
{
	(void)timeout_ms;
	return ep->connected ? 0 : -ENOTCONN;
}

int dg_rdma_ep_connect_start(struct dg_rdma_ep *ep, const void *pdata,
			     size_t plen)
{
	(void)ep;
	(void)pdata;
	(void)plen;
	return -ECONNREFUSED;
}

int dg_rdma_ep_create(const char *src, const char *dst, uint16_t port,
		      const struct dg_rdma_ep_attr *attr, int timeout_ms,
		      struct dg_rdma_ep **out)
{
	(void)src;
	(void)dst;
	(void)port;
	(void)timeout_ms;
	if (!F.scripted)
		return -EHOSTUNREACH;
	*out = ep_new(attr);
	return *out ? 0 : -ENOMEM;
}

int dg_rdma_ep_connect(struct dg_rdma_ep *ep, const void *pdata, size_t plen,
		       void *reply, size_t *reply_len, int timeout_ms)
{
	size_t n;

	(void)timeout_ms;
	if (!F.scripted)
		return -ECONNREFUSED;
	F.scripted = false;
	/* What the active side sent: kept where the accept data would be. */
	n = plen < sizeof(ep->accept_pd) ? plen : sizeof(ep->accept_pd);
	memcpy(ep->accept_pd, pdata, n);
	ep->accept_plen = n;
	n = F.rlen < *reply_len ? F.rlen : *reply_len;
	memcpy(reply, F.reply, n);
	*reply_len = n;
	ep->connected = true;
	F.last = ep;
	return 0;
}

void dg_rdma_ep_destroy(struct dg_rdma_ep *ep)
{
	uint32_t i;

	if (!ep)
		return;
	if (F.last == ep)
		F.last = NULL;
	for (i = ep->s_head; i != ep->s_tail; i++)
		free(ep->sends[i % MAX_SENDS].buf);
	free(ep->cq);
	free(ep->rq);
	for (i = 0; i < (uint32_t)F.live; i++)
		if (F.eps[i] == ep) {
			F.eps[i] = F.eps[--F.live];
			break;
		}
	free(ep);
}

int dg_rdma_ep_check(struct dg_rdma_ep *ep)
{
	if (ep->failed)
		return -EIO;
	return ep->down || !ep->connected ? -ENOTCONN : 0;
}

void fake_ep_disconnect(struct dg_rdma_ep *ep)
{
	ep->down = true;
}

int dg_rdma_ep_fd(const struct dg_rdma_ep *ep)
{
	(void)ep;
	return -1;
}

int dg_rdma_ep_cq_fd(const struct dg_rdma_ep *ep)
{
	(void)ep;
	return -1;
}

int dg_rdma_ep_arm(struct dg_rdma_ep *ep)
{
	(void)ep;
	return 0;
}

void dg_rdma_ep_ack(struct dg_rdma_ep *ep)
{
	(void)ep;
}

const char *dg_rdma_ep_device(const struct dg_rdma_ep *ep)
{
	(void)ep;
	return "fake0";
}

/* ---- memory ------------------------------------------------------------ */

int dg_rdma_reg(struct dg_rdma_ep *ep, void *addr, size_t len, int access,
		struct dg_rdma_mr **out)
{
	struct dg_rdma_mr *m;

	(void)access;
	if (!addr || !len)
		return -EINVAL;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->ep = ep;
	m->addr = addr;
	m->len = len;
	m->rkey = FAKE_RKEY_LO + F.next_rkey++;
	ep->nmr++;
	*out = m;
	return 0;
}

void dg_rdma_dereg(struct dg_rdma_mr *mr)
{
	if (!mr)
		return;
	mr->ep->nmr--;
	free(mr);
}

uint32_t dg_rdma_mr_rkey(const struct dg_rdma_mr *mr)
{
	return mr->rkey;
}

struct dg_rdma_remote dg_rdma_mr_remote(const struct dg_rdma_mr *mr)
{
	struct dg_rdma_remote r = {(uint64_t)(uintptr_t)mr->addr, mr->rkey,
				   (uint32_t)mr->len};

	return r;
}

/* ---- work requests ---------------------------------------------------- */

static bool in_mr(const struct dg_rdma_mr *m, const void *p, uint32_t len)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)m->addr;

	return a >= b && len <= m->len && a - b <= m->len - len;
}

static void complete(struct dg_rdma_ep *ep, uint64_t wr_id, int status,
		     uint32_t op, uint32_t byte_len)
{
	struct dg_rdma_wc *w;

	if (ep->cq_tail - ep->cq_head >= CQ_CAP) {
		ep->failed = true; /* CQ overrun: the QP goes to error */
		return;
	}
	w = &ep->cq[ep->cq_tail++ % CQ_CAP];
	w->wr_id = wr_id;
	w->status = status;
	w->opcode = status ? 0 : op;
	w->byte_len = byte_len;
	w->raw_status = status ? 1 : 0;
}

/* Whether [raddr, raddr + len) lies in the endpoint's host memory. */
static uint8_t *remote(struct dg_rdma_ep *ep, uint64_t raddr, uint32_t len,
		       uint32_t rkey)
{
	if (!ep->mem || rkey != ep->rkey || raddr < ep->base ||
	    len > ep->mem_len || raddr - ep->base > ep->mem_len - len)
		return NULL;
	return ep->mem + (raddr - ep->base);
}

static void execute(struct dg_rdma_ep *ep, const struct wr *w)
{
	uint8_t *r;

	if (ep->failed) {
		complete(ep, w->wr_id, -ECANCELED, w->op, 0);
		return;
	}
	switch (w->op) {
	case DG_RDMA_OP_READ:
	case DG_RDMA_OP_WRITE:
		r = remote(ep, w->raddr, w->len, w->rkey);
		if (!r) {
			ep->failed = true;
			complete(ep, w->wr_id, -EACCES, w->op, 0);
			return;
		}
		if (w->op == DG_RDMA_OP_READ)
			memmove((uint8_t *)w->laddr, r, w->len);
		else
			memmove(r, w->laddr, w->len);
		break;
	case DG_RDMA_OP_SEND: {
		struct sent *s;

		if (ep->s_tail - ep->s_head >= MAX_SENDS) {
			/* Nobody reads them: keep the newest. */
			free(ep->sends[ep->s_head++ % MAX_SENDS].buf);
		}
		s = &ep->sends[ep->s_tail++ % MAX_SENDS];
		s->buf = malloc(w->len ? w->len : 1);
		if (!s->buf) {
			ep->s_tail--;
			ep->failed = true;
			complete(ep, w->wr_id, -EIO, w->op, 0);
			return;
		}
		memcpy(s->buf, w->laddr, w->len);
		s->len = w->len;
		break;
	}
	default:
		break;
	}
	if (w->sig)
		complete(ep, w->wr_id, 0, w->op, w->len);
}

int dg_rdma_flush(struct dg_rdma_ep *ep)
{
	uint32_t i, n = ep->nq;

	ep->nq = 0;
	for (i = 0; i < n; i++)
		execute(ep, &ep->q[i]);
	return 0;
}

uint32_t dg_rdma_sq_free(const struct dg_rdma_ep *ep)
{
	return ep->sq_depth - ep->nq;
}

static int post(struct dg_rdma_ep *ep, uint32_t op, struct dg_rdma_mr *lmr,
		const void *laddr, uint32_t len, uint64_t raddr, uint32_t rkey,
		uint64_t wr_id, unsigned flags)
{
	struct wr *w;

	if (ep->failed)
		return -EIO;
	if (ep->down || !ep->connected)
		return -ENOTCONN;
	if (!lmr || lmr->ep != ep || !in_mr(lmr, laddr, len))
		return -EINVAL;
	if (ep->nq >= ep->sq_depth)
		return -EAGAIN;
	w = &ep->q[ep->nq++];
	*w = (struct wr){op,
			 laddr,
			 len,
			 raddr,
			 wr_id,
			 rkey,
			 (flags & DG_RDMA_SIGNALED) != 0};
	return flags & DG_RDMA_MORE ? 0 : dg_rdma_flush(ep);
}

int dg_rdma_post_read(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		      void *laddr, uint32_t len, uint64_t raddr, uint32_t rkey,
		      uint64_t wr_id, unsigned flags)
{
	return post(ep, DG_RDMA_OP_READ, lmr, laddr, len, raddr, rkey, wr_id,
		    flags);
}

int dg_rdma_post_write(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		       const void *laddr, uint32_t len, uint64_t raddr,
		       uint32_t rkey, uint64_t wr_id, unsigned flags)
{
	return post(ep, DG_RDMA_OP_WRITE, lmr, laddr, len, raddr, rkey, wr_id,
		    flags);
}

/*
 * A WRITE WITH IMMEDIATE: the WRITE (the engine's wake-up of a host flow
 * writes nothing); the harnesses have no host-side queue to take the
 * immediate, so it goes nowhere.
 */
int dg_rdma_post_write_imm(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
			   const void *laddr, uint32_t len, uint64_t raddr,
			   uint32_t rkey, uint32_t imm, uint64_t wr_id,
			   unsigned flags)
{
	(void)imm;
	if (!len) {
		if (ep->failed)
			return -EIO;
		if (ep->down || !ep->connected)
			return -ENOTCONN;
		if (flags & DG_RDMA_SIGNALED)
			complete(ep, wr_id, 0, DG_RDMA_OP_WRITE, 0);
		return 0;
	}
	return post(ep, DG_RDMA_OP_WRITE, lmr, laddr, len, raddr, rkey, wr_id,
		    flags);
}

/* A receive for a WRITE WITH IMMEDIATE: kept like any other. */
int dg_rdma_post_recv0(struct dg_rdma_ep *ep, uint64_t wr_id)
{
	if (ep->failed)
		return -EIO;
	if (ep->rq_tail - ep->rq_head >= MAX_RECVS)
		return -ENOMEM;
	ep->rq[ep->rq_tail++ % MAX_RECVS] = (struct recv){NULL, 0, wr_id};
	return 0;
}

int dg_rdma_post_send(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		      const void *laddr, uint32_t len, uint64_t wr_id,
		      unsigned flags)
{
	return post(ep, DG_RDMA_OP_SEND, lmr, laddr, len, 0, 0, wr_id, flags);
}

int dg_rdma_post_recv(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		      void *laddr, uint32_t len, uint64_t wr_id)
{
	if (ep->failed)
		return -EIO;
	if (!lmr || lmr->ep != ep || !in_mr(lmr, laddr, len))
		return -EINVAL;
	if (ep->rq_tail - ep->rq_head >= MAX_RECVS)
		return -ENOMEM;
	ep->rq[ep->rq_tail++ % MAX_RECVS] = (struct recv){laddr, len, wr_id};
	return 0;
}

int fake_ep_deliver(struct dg_rdma_ep *ep, const void *msg, size_t len)
{
	struct recv *r;

	if (ep->failed || ep->down || !ep->connected)
		return -ENOTCONN;
	if (ep->rq_head == ep->rq_tail)
		return -ENOBUFS;
	r = &ep->rq[ep->rq_head++ % MAX_RECVS];
	if (len > r->len) {
		ep->failed = true;
		complete(ep, r->wr_id, -EINVAL, DG_RDMA_OP_RECV, 0);
		return 0;
	}
	memcpy(r->addr, msg, len);
	complete(ep, r->wr_id, 0, DG_RDMA_OP_RECV, (uint32_t)len);
	return 0;
}

int fake_ep_take_send(struct dg_rdma_ep *ep, void *buf, size_t cap)
{
	struct sent *s;
	int len;

	if (ep->s_head == ep->s_tail)
		return -ENOENT;
	s = &ep->sends[ep->s_head++ % MAX_SENDS];
	memcpy(buf, s->buf, s->len < cap ? s->len : cap);
	len = (int)s->len;
	free(s->buf);
	return len;
}

int dg_rdma_poll(struct dg_rdma_ep *ep, struct dg_rdma_wc *wc, int n)
{
	int got = 0;

	while (got < n && ep->cq_head != ep->cq_tail)
		wc[got++] = ep->cq[ep->cq_head++ % CQ_CAP];
	return got;
}

const char *dg_rdma_wc_str(const struct dg_rdma_wc *wc)
{
	return wc->status ? "fake: failed" : "fake: success";
}
