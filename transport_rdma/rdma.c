// SPDX-License-Identifier: MIT
/*
 * rdma.c - endpoints, memory regions and work requests over verbs + rdma_cm.
 *
 * Conventions: every function returns 0 (or a count) or a negative errno;
 * rdma_* calls return -1 with errno set and verbs calls return an errno
 * value, both are converted here and never leak upwards.
 */
#include "dg_rdma.h"

#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

struct dg_rdma_listener {
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
};

struct dg_rdma_mr {
	struct ibv_mr *mr;
};

enum ep_state {
	EP_IDLE,      /* resources built, not connected */
	EP_CONNECTED, /* established */
	EP_DOWN,      /* peer disconnected / device removed */
	EP_FAILED,    /* a completion failed; the QP is in error */
};

/* Internal wr_id of requests signaled only to reclaim send-queue slots. */
#define DG_WRID_INTERNAL UINT64_MAX

struct dg_rdma_ep {
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_comp_channel *cc; /* completion events, for idle waits */
	enum ep_state state;
	bool passive;
	bool accepted; /* passive: rdma_accept sent */
	uint32_t sq_depth;
	uint32_t rd_depth;

	/* Queued send-queue requests, chained and posted by dg_rdma_flush. */
	struct ibv_send_wr *wrs;
	struct ibv_sge *sges;
	uint32_t nqueued;

	/*
	 * Send-queue accounting. Completions on one QP's send queue arrive in
	 * posting order, and a signaled completion retires every unsignaled
	 * request posted before it. retire[] is a FIFO of "how many requests
	 * the n-th signaled request retires".
	 */
	uint32_t outstanding;  /* posted (or queued), not yet retired */
	uint32_t unsig_run;    /* unsignaled requests since the last signal */
	uint32_t *retire;      /* FIFO, sq_depth entries */
	uint32_t retire_head;  /* next to pop */
	uint32_t retire_count; /* entries in the FIFO */
};

static int neg_errno(int fallback)
{
	return errno ? -errno : -fallback;
}

static int ms_left(const struct timespec *deadline)
{
	struct timespec now;
	long long ms;

	if (!deadline)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	ms = (deadline->tv_sec - now.tv_sec) * 1000LL +
	     (deadline->tv_nsec - now.tv_nsec) / 1000000LL;
	return ms < 0 ? 0 : (int)ms;
}

static void set_deadline(struct timespec *d, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, d);
	d->tv_sec += timeout_ms / 1000;
	d->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (d->tv_nsec >= 1000000000L) {
		d->tv_sec++;
		d->tv_nsec -= 1000000000L;
	}
}

static int make_channel(struct rdma_event_channel **out)
{
	struct rdma_event_channel *ch = rdma_create_event_channel();
	int fl;

	if (!ch)
		return neg_errno(ENODEV);
	/* Non-blocking so that every wait below is bounded by poll(2). */
	fl = fcntl(ch->fd, F_GETFL);
	if (fl < 0 || fcntl(ch->fd, F_SETFL, fl | O_NONBLOCK) < 0) {
		int err = neg_errno(EIO);

		rdma_destroy_event_channel(ch);
		return err;
	}
	*out = ch;
	return 0;
}

/*
 * Takes the next event from ch within timeout_ms (-1 forever). The caller
 * must rdma_ack_cm_event() it. -ETIMEDOUT when nothing came.
 */
static int next_event(struct rdma_event_channel *ch, int timeout_ms,
		      struct rdma_cm_event **ev)
{
	struct timespec deadline;
	struct timespec *dl = NULL;

	if (timeout_ms >= 0) {
		set_deadline(&deadline, timeout_ms);
		dl = &deadline;
	}
	for (;;) {
		struct pollfd pfd = {.fd = ch->fd, .events = POLLIN};
		int rc;

		if (rdma_get_cm_event(ch, ev) == 0)
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return neg_errno(EIO);
		rc = poll(&pfd, 1, ms_left(dl));
		if (rc < 0 && errno != EINTR)
			return neg_errno(EIO);
		if (rc == 0)
			return -ETIMEDOUT;
	}
}

static int event_errno(enum rdma_cm_event_type t, int status)
{
	switch (t) {
	case RDMA_CM_EVENT_REJECTED:
		return -ECONNREFUSED;
	case RDMA_CM_EVENT_UNREACHABLE:
	case RDMA_CM_EVENT_ADDR_ERROR:
	case RDMA_CM_EVENT_ROUTE_ERROR:
		return -EHOSTUNREACH;
	case RDMA_CM_EVENT_CONNECT_ERROR:
		return -ECONNABORTED;
	case RDMA_CM_EVENT_DISCONNECTED:
	case RDMA_CM_EVENT_TIMEWAIT_EXIT:
		return -ECONNRESET;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return -ENODEV;
	default:
		return status < 0 ? status : -EPROTO;
	}
}

/*
 * Waits for one event of type want on ch. If pdata is given, copies the
 * event's private data (up to *plen) and sets *plen: also that of a
 * REJECTED event (-ECONNREFUSED; *plen 0 when it carried none).
 */
static int expect_event(struct rdma_event_channel *ch,
			enum rdma_cm_event_type want, int timeout_ms,
			void *pdata, size_t *plen)
{
	struct rdma_cm_event *ev;
	int rc = next_event(ch, timeout_ms, &ev);

	if (rc)
		return rc;
	if (ev->event != want &&
	    !(ev->event == RDMA_CM_EVENT_REJECTED && pdata && plen)) {
		rc = event_errno(ev->event, ev->status);
		rdma_ack_cm_event(ev);
		return rc;
	}
	rc = ev->event == want ? 0 : -ECONNREFUSED;
	if (pdata && plen) {
		size_t n = ev->param.conn.private_data_len;

		if (n > *plen)
			n = *plen;
		if (n && ev->param.conn.private_data)
			memcpy(pdata, ev->param.conn.private_data, n);
		*plen = n;
	}
	rdma_ack_cm_event(ev);
	return rc;
}

static int parse_addr(const char *host, uint16_t port,
		      struct sockaddr_storage *ss)
{
	struct addrinfo hints = {.ai_flags = AI_NUMERICHOST | AI_PASSIVE,
				 .ai_family = AF_UNSPEC};
	struct addrinfo *res;
	char svc[8];
	int rc;

	snprintf(svc, sizeof(svc), "%u", port);
	rc = getaddrinfo(host, svc, &hints, &res);
	if (rc)
		return -EINVAL;
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	return 0;
}

int dg_rdma_listen(const char *addr, uint16_t port, int backlog,
		   struct dg_rdma_listener **out)
{
	struct dg_rdma_listener *l;
	struct sockaddr_storage ss;
	int rc;

	rc = parse_addr(addr ? addr : "0.0.0.0", port, &ss);
	if (rc)
		return rc;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	rc = make_channel(&l->ch);
	if (rc)
		goto err_free;
	if (rdma_create_id(l->ch, &l->id, l, RDMA_PS_TCP)) {
		rc = neg_errno(ENODEV);
		goto err_ch;
	}
	if (rdma_bind_addr(l->id, (struct sockaddr *)&ss)) {
		rc = neg_errno(EADDRNOTAVAIL);
		goto err_id;
	}
	if (rdma_listen(l->id, backlog > 0 ? backlog : 16)) {
		rc = neg_errno(EADDRINUSE);
		goto err_id;
	}
	*out = l;
	return 0;

err_id:
	rdma_destroy_id(l->id);
err_ch:
	rdma_destroy_event_channel(l->ch);
err_free:
	free(l);
	return rc;
}

uint16_t dg_rdma_listener_port(const struct dg_rdma_listener *l)
{
	return be16toh(rdma_get_src_port(l->id));
}

int dg_rdma_listener_fd(const struct dg_rdma_listener *l)
{
	return l->ch->fd;
}

void dg_rdma_listener_destroy(struct dg_rdma_listener *l)
{
	if (!l)
		return;
	rdma_destroy_id(l->id);
	rdma_destroy_event_channel(l->ch);
	free(l);
}

/* Builds PD, CQ, QP and the request queue on an id that has a device. */
static int ep_build(struct dg_rdma_ep *ep, const struct dg_rdma_ep_attr *attr)
{
	struct ibv_qp_init_attr qa;
	struct ibv_device_attr da;
	uint32_t sq = attr && attr->sq_depth ? attr->sq_depth : 128;
	uint32_t rq = attr ? attr->rq_depth : 0;
	int rc, fl;

	if (!ep->id->verbs)
		return -ENODEV;
	rc = ibv_query_device(ep->id->verbs, &da);
	if (rc)
		return -rc;
	if (sq > (uint32_t)da.max_qp_wr)
		sq = da.max_qp_wr;
	if (rq > (uint32_t)da.max_qp_wr)
		rq = da.max_qp_wr;
	ep->sq_depth = sq;
	ep->rd_depth = attr && attr->rd_depth ? attr->rd_depth : 16;
	if (ep->rd_depth > (uint32_t)da.max_qp_rd_atom)
		ep->rd_depth = da.max_qp_rd_atom;
	if (ep->rd_depth > (uint32_t)da.max_qp_init_rd_atom)
		ep->rd_depth = da.max_qp_init_rd_atom;

	ep->wrs = calloc(sq, sizeof(*ep->wrs));
	ep->sges = calloc(sq, sizeof(*ep->sges));
	ep->retire = calloc(sq, sizeof(*ep->retire));
	if (!ep->wrs || !ep->sges || !ep->retire)
		return -ENOMEM;

	ep->pd = ibv_alloc_pd(ep->id->verbs);
	if (!ep->pd)
		return neg_errno(ENOMEM);
	ep->cc = ibv_create_comp_channel(ep->id->verbs);
	if (!ep->cc)
		return neg_errno(ENOMEM);
	fl = fcntl(ep->cc->fd, F_GETFL);
	if (fl < 0 || fcntl(ep->cc->fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return neg_errno(EIO);
	ep->cq = ibv_create_cq(ep->id->verbs, (int)(sq + rq + 1), NULL, ep->cc,
			       0);
	if (!ep->cq)
		return neg_errno(ENOMEM);
	memset(&qa, 0, sizeof(qa));
	qa.send_cq = ep->cq;
	qa.recv_cq = ep->cq;
	qa.qp_type = IBV_QPT_RC;
	qa.cap.max_send_wr = sq;
	qa.cap.max_recv_wr = rq ? rq : 1;
	qa.cap.max_send_sge = 1;
	qa.cap.max_recv_sge = 1;
	qa.sq_sig_all = 0;
	if (rdma_create_qp(ep->id, ep->pd, &qa))
		return neg_errno(ENOMEM);
	return 0;
}

static void ep_free(struct dg_rdma_ep *ep)
{
	if (ep->id && ep->id->qp)
		rdma_destroy_qp(ep->id);
	if (ep->cq) {
		/* ibv_destroy_cq waits for every event to be acked. */
		if (ep->cc)
			dg_rdma_ep_ack(ep);
		ibv_destroy_cq(ep->cq);
	}
	if (ep->pd)
		ibv_dealloc_pd(ep->pd);
	if (ep->cc)
		ibv_destroy_comp_channel(ep->cc);
	if (ep->id)
		rdma_destroy_id(ep->id);
	if (ep->ch)
		rdma_destroy_event_channel(ep->ch);
	free(ep->wrs);
	free(ep->sges);
	free(ep->retire);
	free(ep);
}

int dg_rdma_listener_next(struct dg_rdma_listener *l,
			  const struct dg_rdma_ep_attr *attr, int timeout_ms,
			  void *pdata, size_t *plen, struct dg_rdma_ep **out)
{
	struct rdma_cm_event *ev;
	struct dg_rdma_ep *ep;
	int rc;

	for (;;) {
		rc = next_event(l->ch, timeout_ms, &ev);
		if (rc)
			return rc;
		if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST)
			break;
		/* Stray events for ids not yet migrated: nothing to do. */
		rdma_ack_cm_event(ev);
	}
	ep = calloc(1, sizeof(*ep));
	if (!ep) {
		rdma_reject(ev->id, NULL, 0);
		rdma_destroy_id(ev->id);
		rdma_ack_cm_event(ev);
		return -ENOMEM;
	}
	ep->passive = true;
	ep->id = ev->id;
	if (pdata && plen) {
		size_t n = ev->param.conn.private_data_len;

		if (n > *plen)
			n = *plen;
		if (n && ev->param.conn.private_data)
			memcpy(pdata, ev->param.conn.private_data, n);
		*plen = n;
	}
	rdma_ack_cm_event(ev);

	/*
	 * Give the new id its own channel so that its ESTABLISHED and
	 * DISCONNECTED events do not interleave with other requests.
	 */
	rc = make_channel(&ep->ch);
	if (rc)
		goto err;
	if (rdma_migrate_id(ep->id, ep->ch)) {
		rc = neg_errno(EIO);
		goto err;
	}
	ep->id->context = ep;
	rc = ep_build(ep, attr);
	if (rc)
		goto err;
	*out = ep;
	return 0;
err:
	rdma_reject(ep->id, NULL, 0);
	ep_free(ep);
	return rc;
}

/*
 * Retransmission and receiver-not-ready timing, set on every connection.
 *
 * ACK timeout: rdma_cm derives it from the packet lifetime, 2^17 x 4.096 us
 * (0.54 s) on RoCE. A lost packet (soft-RoCE drops some under load) then
 * stalls the connection that long. 2^14 x 4.096 us = 67 ms; with 7
 * retries a dead peer is still given 0.47 s.
 *
 * RNR: a WRITE WITH IMMEDIATE that finds no receive posted is NAKed and
 * retried after the receiver's min_rnr_timer, which rdma_cm leaves at 0:
 * 655 ms. The receive pools are sized so that this is rare; when it
 * happens it should cost a few tens of microseconds (code 5: 0.06 ms), not
 * a stall that outlasts every sleep bound.
 */
enum { ACK_TIMEOUT = 14, MIN_RNR_TIMER = 5 };

static void set_ack_timeout(struct rdma_cm_id *id)
{
	uint8_t t = ACK_TIMEOUT;

	/* Best effort: older kernels keep their default. */
	(void)rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT,
			      &t, sizeof(t));
}

static void set_rnr_timer(struct rdma_cm_id *id)
{
	struct ibv_qp_attr a = {.min_rnr_timer = MIN_RNR_TIMER};

	/* RTS -> RTS may change it (IB spec); best effort likewise. */
	if (id->qp)
		(void)ibv_modify_qp(id->qp, &a, IBV_QP_MIN_RNR_TIMER);
}

int dg_rdma_ep_accept_start(struct dg_rdma_ep *ep, const void *pdata,
			    size_t plen)
{
	struct rdma_conn_param cp = {0};

	if (plen > DG_RDMA_ACCEPT_PDATA_MAX)
		return -EMSGSIZE;
	cp.private_data = pdata;
	cp.private_data_len = (uint8_t)plen;
	cp.responder_resources = (uint8_t)ep->rd_depth;
	cp.initiator_depth = (uint8_t)ep->rd_depth;
	cp.rnr_retry_count = 7;
	set_ack_timeout(ep->id);
	if (rdma_accept(ep->id, &cp))
		return neg_errno(ECONNABORTED);
	ep->accepted = true;
	return 0;
}

int dg_rdma_ep_accept_wait(struct dg_rdma_ep *ep, int timeout_ms)
{
	int rc;

	if (ep->state == EP_CONNECTED)
		return 0;
	rc = expect_event(ep->ch, RDMA_CM_EVENT_ESTABLISHED, timeout_ms, NULL,
			  NULL);
	if (rc == -ETIMEDOUT && !timeout_ms)
		return -EAGAIN;
	if (rc)
		return rc;
	set_rnr_timer(ep->id);
	ep->state = EP_CONNECTED;
	return 0;
}

int dg_rdma_ep_accept(struct dg_rdma_ep *ep, const void *pdata, size_t plen,
		      int timeout_ms)
{
	int rc = dg_rdma_ep_accept_start(ep, pdata, plen);

	return rc ? rc : dg_rdma_ep_accept_wait(ep, timeout_ms);
}

int dg_rdma_ep_create(const char *src, const char *dst, uint16_t port,
		      const struct dg_rdma_ep_attr *attr, int timeout_ms,
		      struct dg_rdma_ep **out)
{
	struct sockaddr_storage sss, dss;
	struct dg_rdma_ep *ep;
	int tmo = timeout_ms > 0 ? timeout_ms : 5000;
	int rc;

	rc = parse_addr(dst, port, &dss);
	if (rc)
		return rc;
	if (src) {
		rc = parse_addr(src, 0, &sss);
		if (rc)
			return rc;
	}
	ep = calloc(1, sizeof(*ep));
	if (!ep)
		return -ENOMEM;
	rc = make_channel(&ep->ch);
	if (rc)
		goto err;
	if (rdma_create_id(ep->ch, &ep->id, ep, RDMA_PS_TCP)) {
		rc = neg_errno(ENODEV);
		goto err;
	}
	if (rdma_resolve_addr(ep->id, src ? (struct sockaddr *)&sss : NULL,
			      (struct sockaddr *)&dss, tmo)) {
		rc = neg_errno(EHOSTUNREACH);
		goto err;
	}
	rc = expect_event(ep->ch, RDMA_CM_EVENT_ADDR_RESOLVED, tmo + 1000, NULL,
			  NULL);
	if (rc)
		goto err;
	if (rdma_resolve_route(ep->id, tmo)) {
		rc = neg_errno(EHOSTUNREACH);
		goto err;
	}
	rc = expect_event(ep->ch, RDMA_CM_EVENT_ROUTE_RESOLVED, tmo + 1000,
			  NULL, NULL);
	if (rc)
		goto err;
	rc = ep_build(ep, attr);
	if (rc)
		goto err;
	*out = ep;
	return 0;
err:
	ep_free(ep);
	return rc;
}

int dg_rdma_ep_connect_start(struct dg_rdma_ep *ep, const void *pdata,
			     size_t plen)
{
	struct rdma_conn_param cp = {0};

	if (plen > DG_RDMA_CONNECT_PDATA_MAX)
		return -EMSGSIZE;
	cp.private_data = pdata;
	cp.private_data_len = (uint8_t)plen;
	cp.responder_resources = (uint8_t)ep->rd_depth;
	cp.initiator_depth = (uint8_t)ep->rd_depth;
	cp.retry_count = 7;
	cp.rnr_retry_count = 7;
	set_ack_timeout(ep->id);
	if (rdma_connect(ep->id, &cp))
		return neg_errno(ECONNREFUSED);
	return 0;
}

int dg_rdma_ep_connect_wait(struct dg_rdma_ep *ep, void *reply,
			    size_t *reply_len, int timeout_ms)
{
	int rc = expect_event(ep->ch, RDMA_CM_EVENT_ESTABLISHED,
			      timeout_ms > 0 ? timeout_ms : 10000, reply,
			      reply_len);

	if (rc)
		return rc;
	set_rnr_timer(ep->id);
	ep->state = EP_CONNECTED;
	return 0;
}

int dg_rdma_ep_connect(struct dg_rdma_ep *ep, const void *pdata, size_t plen,
		       void *reply, size_t *reply_len, int timeout_ms)
{
	int rc = dg_rdma_ep_connect_start(ep, pdata, plen);

	return rc ? rc
		  : dg_rdma_ep_connect_wait(ep, reply, reply_len, timeout_ms);
}

void dg_rdma_ep_refuse(struct dg_rdma_ep *ep, const void *pdata, size_t plen)
{
	if (!ep || ep->state != EP_IDLE || !ep->passive || ep->accepted)
		return;
	rdma_reject(ep->id, pdata,
		    (uint8_t)(plen < DG_RDMA_REJECT_PDATA_MAX
				      ? plen
				      : DG_RDMA_REJECT_PDATA_MAX));
	ep->accepted = true; /* answered: destroy sends no second reject */
}

void dg_rdma_ep_reject(struct dg_rdma_ep *ep, const void *pdata, size_t plen)
{
	dg_rdma_ep_refuse(ep, pdata, plen);
	dg_rdma_ep_destroy(ep);
}

void dg_rdma_ep_destroy(struct dg_rdma_ep *ep)
{
	if (!ep)
		return;
	/*
	 * A request not accepted is rejected. One accepted whose peer never
	 * completed the handshake is only destroyed: a reject then puts the
	 * kernel's CM into a time-wait whose end, on some kernels (soft-RoCE
	 * here), rdma_destroy_id waits for without bound.
	 */
	if (ep->state == EP_IDLE && ep->passive && !ep->accepted)
		rdma_reject(ep->id, NULL, 0);
	else if (ep->state != EP_IDLE)
		rdma_disconnect(ep->id);
	ep_free(ep);
}

int dg_rdma_ep_check(struct dg_rdma_ep *ep)
{
	struct rdma_cm_event *ev;

	while (ep->state == EP_CONNECTED && next_event(ep->ch, 0, &ev) == 0) {
		switch (ev->event) {
		case RDMA_CM_EVENT_DISCONNECTED:
		case RDMA_CM_EVENT_DEVICE_REMOVAL:
		case RDMA_CM_EVENT_TIMEWAIT_EXIT:
			ep->state = EP_DOWN;
			break;
		default:
			break;
		}
		rdma_ack_cm_event(ev);
	}
	switch (ep->state) {
	case EP_CONNECTED:
		return 0;
	case EP_FAILED:
		return -EIO;
	default:
		return -ENOTCONN;
	}
}

int dg_rdma_ep_peer(const struct dg_rdma_ep *ep, uint8_t out[16])
{
	const struct sockaddr *sa = rdma_get_peer_addr(ep->id);

	memset(out, 0, 16);
	if (sa && sa->sa_family == AF_INET) {
		out[10] = out[11] = 0xff;
		memcpy(out + 12,
		       &((const struct sockaddr_in *)(const void *)sa)
				->sin_addr,
		       4);
		return 0;
	}
	if (sa && sa->sa_family == AF_INET6) {
		memcpy(out,
		       &((const struct sockaddr_in6 *)(const void *)sa)
				->sin6_addr,
		       16);
		return 0;
	}
	return -EAFNOSUPPORT;
}

int dg_rdma_ep_fd(const struct dg_rdma_ep *ep)
{
	return ep->ch->fd;
}

int dg_rdma_ep_cq_fd(const struct dg_rdma_ep *ep)
{
	return ep->cc->fd;
}

int dg_rdma_ep_arm(struct dg_rdma_ep *ep)
{
	return -ibv_req_notify_cq(ep->cq, 0);
}

void dg_rdma_ep_ack(struct dg_rdma_ep *ep)
{
	struct ibv_cq *cq;
	void *ctx;
	unsigned n = 0;

	/* Non-blocking channel: take every pending event, ack them at once. */
	while (ibv_get_cq_event(ep->cc, &cq, &ctx) == 0)
		n++;
	if (n)
		ibv_ack_cq_events(ep->cq, n);
}

const char *dg_rdma_ep_device(const struct dg_rdma_ep *ep)
{
	if (!ep->id->verbs)
		return "?";
	return ibv_get_device_name(ep->id->verbs->device);
}

int dg_rdma_reg(struct dg_rdma_ep *ep, void *addr, size_t len, int access,
		struct dg_rdma_mr **out)
{
	struct dg_rdma_mr *m;
	int acc = 0;

	if (!addr || !len)
		return -EINVAL;
	if (access & DG_RDMA_ACC_LOCAL_WRITE)
		acc |= IBV_ACCESS_LOCAL_WRITE;
	if (access & DG_RDMA_ACC_REMOTE_READ)
		acc |= IBV_ACCESS_REMOTE_READ;
	/* Verbs require LOCAL_WRITE alongside REMOTE_WRITE. */
	if (access & DG_RDMA_ACC_REMOTE_WRITE)
		acc |= IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_LOCAL_WRITE;
	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->mr = ibv_reg_mr(ep->pd, addr, len, acc);
	if (!m->mr) {
		int rc = neg_errno(ENOMEM);

		free(m);
		return rc;
	}
	*out = m;
	return 0;
}

void dg_rdma_dereg(struct dg_rdma_mr *mr)
{
	if (!mr)
		return;
	ibv_dereg_mr(mr->mr);
	free(mr);
}

uint32_t dg_rdma_mr_rkey(const struct dg_rdma_mr *mr)
{
	return mr->mr->rkey;
}

struct dg_rdma_remote dg_rdma_mr_remote(const struct dg_rdma_mr *mr)
{
	struct dg_rdma_remote r = {
		.addr = (uint64_t)(uintptr_t)mr->mr->addr,
		.rkey = mr->mr->rkey,
		.len = (uint32_t)mr->mr->length,
	};
	return r;
}

static bool in_mr(const struct dg_rdma_mr *m, const void *p, uint32_t len)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)m->mr->addr;

	return a >= b && len <= m->mr->length && a - b <= m->mr->length - len;
}

static int ep_usable(const struct dg_rdma_ep *ep)
{
	switch (ep->state) {
	case EP_CONNECTED:
		return 0;
	case EP_FAILED:
		return -EIO;
	default:
		return -ENOTCONN;
	}
}

static void retire_push(struct dg_rdma_ep *ep, uint32_t n)
{
	ep->retire[(ep->retire_head + ep->retire_count) % ep->sq_depth] = n;
	ep->retire_count++;
}

static void retire_pop(struct dg_rdma_ep *ep)
{
	if (!ep->retire_count)
		return;
	ep->outstanding -= ep->retire[ep->retire_head];
	ep->retire_head = (ep->retire_head + 1) % ep->sq_depth;
	ep->retire_count--;
}

static int queue_wr(struct dg_rdma_ep *ep, enum ibv_wr_opcode op,
		    struct dg_rdma_mr *lmr, const void *laddr, uint32_t len,
		    uint64_t raddr, uint32_t rkey, uint64_t wr_id,
		    unsigned flags, uint32_t imm)
{
	struct ibv_send_wr *wr;
	struct ibv_sge *sge;
	bool sig = flags & DG_RDMA_SIGNALED;
	int rc = ep_usable(ep);

	if (rc)
		return rc;
	if (len && (!lmr || !in_mr(lmr, laddr, len)))
		return -EINVAL;
	if (!len && op != IBV_WR_RDMA_WRITE_WITH_IMM)
		return -EINVAL;
	if (ep->outstanding >= ep->sq_depth)
		return -EAGAIN;
	/*
	 * Signal at least one request in every sq_depth/2 so that unsignaled
	 * requests cannot fill the send queue with nothing to retire them.
	 */
	if (!sig && ep->unsig_run + 1 >= ep->sq_depth / 2) {
		sig = true;
		if (!(flags & DG_RDMA_SIGNALED))
			wr_id = DG_WRID_INTERNAL;
	}
	wr = &ep->wrs[ep->nqueued];
	sge = &ep->sges[ep->nqueued];
	memset(wr, 0, sizeof(*wr));
	if (len) {
		sge->addr = (uintptr_t)laddr;
		sge->length = len;
		sge->lkey = lmr->mr->lkey;
		wr->sg_list = sge;
		wr->num_sge = 1;
	}
	wr->wr_id = wr_id;
	wr->opcode = op;
	wr->imm_data = htonl(imm);
	wr->send_flags = sig ? IBV_SEND_SIGNALED : 0;
	wr->wr.rdma.remote_addr = raddr;
	wr->wr.rdma.rkey = rkey;
	ep->nqueued++;
	ep->outstanding++;
	if (sig) {
		retire_push(ep, ep->unsig_run + 1);
		ep->unsig_run = 0;
	} else {
		ep->unsig_run++;
	}
	if (flags & DG_RDMA_MORE)
		return 0;
	return dg_rdma_flush(ep);
}

int dg_rdma_flush(struct dg_rdma_ep *ep)
{
	struct ibv_send_wr *bad = NULL;
	uint32_t i;
	int rc;

	if (!ep->nqueued)
		return 0;
	for (i = 0; i + 1 < ep->nqueued; i++)
		ep->wrs[i].next = &ep->wrs[i + 1];
	ep->wrs[ep->nqueued - 1].next = NULL;
	rc = ibv_post_send(ep->id->qp, ep->wrs, &bad);
	if (rc) {
		/*
		 * Nothing from bad onwards reached the device. The accounting
		 * cannot be unwound piecewise, so the endpoint is failed.
		 */
		ep->state = EP_FAILED;
		ep->nqueued = 0;
		return -rc;
	}
	ep->nqueued = 0;
	return 0;
}

uint32_t dg_rdma_sq_free(const struct dg_rdma_ep *ep)
{
	return ep->sq_depth - ep->outstanding;
}

int dg_rdma_post_read(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		      void *laddr, uint32_t len, uint64_t raddr, uint32_t rkey,
		      uint64_t wr_id, unsigned flags)
{
	return queue_wr(ep, IBV_WR_RDMA_READ, lmr, laddr, len, raddr, rkey,
			wr_id, flags, 0);
}

int dg_rdma_post_write(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		       const void *laddr, uint32_t len, uint64_t raddr,
		       uint32_t rkey, uint64_t wr_id, unsigned flags)
{
	return queue_wr(ep, IBV_WR_RDMA_WRITE, lmr, laddr, len, raddr, rkey,
			wr_id, flags, 0);
}

int dg_rdma_post_write_imm(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
			   const void *laddr, uint32_t len, uint64_t raddr,
			   uint32_t rkey, uint32_t imm, uint64_t wr_id,
			   unsigned flags)
{
	return queue_wr(ep, IBV_WR_RDMA_WRITE_WITH_IMM, lmr, laddr, len, raddr,
			rkey, wr_id, flags, imm);
}

int dg_rdma_post_send(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		      const void *laddr, uint32_t len, uint64_t wr_id,
		      unsigned flags)
{
	return queue_wr(ep, IBV_WR_SEND, lmr, laddr, len, 0, 0, wr_id, flags,
			0);
}

int dg_rdma_post_recv(struct dg_rdma_ep *ep, struct dg_rdma_mr *lmr,
		      void *laddr, uint32_t len, uint64_t wr_id)
{
	struct ibv_recv_wr wr = {0}, *bad = NULL;
	struct ibv_sge sge;
	int rc;

	/* RECVs may be pre-posted before the connection is established. */
	if (ep->state == EP_FAILED || ep->state == EP_DOWN)
		return ep_usable(ep);
	if (!lmr || !in_mr(lmr, laddr, len))
		return -EINVAL;
	sge.addr = (uintptr_t)laddr;
	sge.length = len;
	sge.lkey = lmr->mr->lkey;
	wr.wr_id = wr_id;
	wr.sg_list = &sge;
	wr.num_sge = 1;
	rc = ibv_post_recv(ep->id->qp, &wr, &bad);
	return rc ? -rc : 0;
}

int dg_rdma_post_recv0(struct dg_rdma_ep *ep, uint64_t wr_id)
{
	struct ibv_recv_wr wr = {0}, *bad = NULL;
	int rc;

	if (ep->state == EP_FAILED || ep->state == EP_DOWN)
		return ep_usable(ep);
	wr.wr_id = wr_id;
	wr.num_sge = 0;
	rc = ibv_post_recv(ep->id->qp, &wr, &bad);
	return rc ? -rc : 0;
}

static int wc_errno(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_SUCCESS:
		return 0;
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_LOC_PROT_ERR:
		return -EACCES;
	case IBV_WC_WR_FLUSH_ERR:
		return -ECANCELED;
	case IBV_WC_RETRY_EXC_ERR:
	case IBV_WC_RNR_RETRY_EXC_ERR:
		return -ETIMEDOUT;
	case IBV_WC_LOC_LEN_ERR:
	case IBV_WC_REM_INV_REQ_ERR:
		return -EINVAL;
	default:
		return -EIO;
	}
}

static uint32_t wc_opcode(enum ibv_wc_opcode op)
{
	switch (op) {
	case IBV_WC_RDMA_READ:
		return DG_RDMA_OP_READ;
	case IBV_WC_RDMA_WRITE:
		return DG_RDMA_OP_WRITE;
	case IBV_WC_SEND:
		return DG_RDMA_OP_SEND;
	default:
		return DG_RDMA_OP_RECV;
	}
}

int dg_rdma_poll(struct dg_rdma_ep *ep, struct dg_rdma_wc *out, int n)
{
	struct ibv_wc wc[32];
	int got = 0;

	while (got < n) {
		int want = n - got < 32 ? n - got : 32;
		int k = ibv_poll_cq(ep->cq, want, wc);
		int i;

		if (k < 0)
			return -EIO;
		if (k == 0)
			break;
		for (i = 0; i < k; i++) {
			/*
			 * A failed completion moves the QP to the error state:
			 * the endpoint is dead, so its accounting no longer
			 * matters. Successful send-queue completions (the
			 * IBV_WC_RECV bit clear) retire their run.
			 */
			if (wc[i].status != IBV_WC_SUCCESS)
				ep->state = EP_FAILED;
			else if (!(wc[i].opcode & IBV_WC_RECV))
				retire_pop(ep);
			if (wc[i].wr_id == DG_WRID_INTERNAL)
				continue;
			out[got].wr_id = wc[i].wr_id;
			out[got].status = wc_errno(wc[i].status);
			out[got].raw_status = wc[i].status;
			out[got].opcode = wc[i].status == IBV_WC_SUCCESS
						  ? wc_opcode(wc[i].opcode)
						  : 0;
			out[got].byte_len = wc[i].byte_len;
			out[got].has_imm = wc[i].status == IBV_WC_SUCCESS &&
					   (wc[i].wc_flags & IBV_WC_WITH_IMM);
			out[got].imm =
				out[got].has_imm ? ntohl(wc[i].imm_data) : 0;
			got++;
		}
	}
	return got;
}

const char *dg_rdma_wc_str(const struct dg_rdma_wc *wc)
{
	return ibv_wc_status_str((enum ibv_wc_status)wc->raw_status);
}
