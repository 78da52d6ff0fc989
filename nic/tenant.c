// SPDX-License-Identifier: MIT
/*
 * tenant.c - tenants: attached hosts (local and RDMA attaches), taking them in
 * and freeing them.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine_impl.h"

/*
 * Takes in a host region as a tenant. hdr is the engine's own copy of what
 * the host declared (from its attach request; the host may rewrite its
 * region's header at will, so it is never read again): it must match the
 * version, give a valid layout, and the region must be exactly as long as
 * that layout (dg_region_bytes). Returns the tenant id or a negative errno.
 */
/*
 * mode: the interface mode of every flow at first (RDMA tenants). fds:
 * a shared-memory tenant's flow eventfds (one per flow, as received with
 * its attach; the tenant owns them from now on); in-process tenants name
 * theirs in their control lines (same process).
 */
int nic_tenant_init(struct dg_nic *n, struct dg_hostmem *hm,
		    const struct dg_region_hdr *hdr, void *local_region,
		    uint32_t mode, const int *fds, uint32_t nfds)
{
	struct dg_region_layout lay;
	struct tenant *t;
	uint32_t i, j;

	if (hdr->magic != DG_REGION_MAGIC || hdr->version != DG_REGION_VERSION)
		return -EPROTO;
	if (dg_region_layout_pay(hdr->nflows, hdr->slots, hdr->pay_shift,
				 &lay) ||
	    dg_region_bytes(&lay) != hm->size ||
	    (!hm->direct && hm->shadow_size != lay.pay_off) ||
	    mode >= DG_MODE_COUNT || (fds && nfds != hdr->nflows))
		return -EINVAL;
	if (mode == DG_MODE_DEFAULT)
		mode = DG_MODE_DOORBELL;
	for (i = 0; i < MAX_TENANTS && n->tenants[i].used; i++)
		;
	if (i == MAX_TENANTS)
		return -EUSERS;
	t = &n->tenants[i];
	memset(t, 0, sizeof(*t));
	/* In the engine's process: its user (shm.c sets a peer's). */
	t->uid = local_region ? (int64_t)getuid() : NO_UID;
	t->lay = lay;
	t->flows = calloc(hdr->nflows, sizeof(*t->flows));
	if (!t->flows)
		return -ENOMEM;
	for (j = 0; j < hdr->nflows; j++) {
		struct flow *fl = &t->flows[j];

		fl->txr = (struct dg_frame *)(hm->shadow +
					      dg_tx_ring_off(&t->lay, j));
		fl->rxr = (struct dg_frame *)(hm->shadow +
					      dg_rx_ring_off(&t->lay, j));
		fl->ctrl = (struct dg_flow_ctrl *)(hm->shadow +
						   dg_ctrl_off(&t->lay, j));
		fl->mode = hm->direct ? DG_MODE_POLL : (uint8_t)mode;
		fl->wake_fd = fds ? fds[j]
			      : local_region
				      ? __atomic_load_n(&fl->ctrl->host_fd,
							__ATOMIC_RELAXED)
				      : -1;
		fl->pend_mask = 2 * hdr->slots - 1;
		fl->pend = calloc(2 * hdr->slots, sizeof(*fl->pend));
		fl->owed = calloc(2 * hdr->slots, sizeof(*fl->owed));
		if (!fl->pend || !fl->owed) {
			free(fl->pend);
			free(fl->owed);
			while (j--) {
				free(t->flows[j].pend);
				free(t->flows[j].owed);
			}
			free(t->flows);
			t->flows = NULL;
			return -ENOMEM;
		}
	}
	t->used = true;
	t->hm = hm;
	t->direct = hm->direct;
	t->nflows = hdr->nflows;
	t->slots = hdr->slots;
	t->mask = hdr->slots - 1;
	t->rflags = hdr->flags & DG_RING_F_CSUM;
	t->local_region = local_region;
	/* Large messages: the flows' transfer state, the staging pool. */
	if (nic_pay_tenant_init(n, t)) {
		for (j = 0; j < t->nflows; j++) {
			free(t->flows[j].pend);
			free(t->flows[j].rxp_q);
		}
		free(t->flows);
		memset(t, 0, sizeof(*t));
		return -ENOMEM;
	}
	if (fds) {
		t->fds = malloc(nfds * sizeof(*t->fds));
		if (t->fds)
			memcpy(t->fds, fds, nfds * sizeof(*t->fds));
	}
	/* An in-process host finds the engine's eventfd here. */
	if (local_region)
		__atomic_store_n(
			&((struct dg_region_hdr *)hm->shadow)->engine_fd,
			n->wake_fd, __ATOMIC_RELEASE);
	/* Receives for its doorbells and sleeps (RDMA). */
	for (j = 0; hm->ops->recv && j < TENANT_RECVS(t->nflows); j++)
		if (hm->ops->recv(hm, mktag(TAG_RECV, 0, 0)))
			break;
	nic_lists_update(n);
	if (n->o.verbose)
		fprintf(stderr,
			"dagger-nic: tenant %u attached%s: %u flows x %u "
			"slots\n",
			i, t->direct ? " (shared memory)" : "", t->nflows,
			t->slots);
	return (int)i;
}

/*
 * Tenants of one identity: the user uid (shared memory; NO_UID: none) or
 * the RDMA source address addr (NULL: none).
 */
uint32_t nic_ident_tenants(const struct dg_nic *n, int64_t uid,
			   const uint8_t *addr)
{
	uint32_t i, k = 0;

	for (i = 0; i < MAX_TENANTS; i++) {
		const struct tenant *t = &n->tenants[i];

		if (!t->used || t->local_region)
			continue;
		if (addr ? t->addr_set && !memcmp(t->addr, addr, 16)
			 : uid != NO_UID && t->direct && t->uid == uid)
			k++;
	}
	return k;
}

static void *hm_reaper(void *arg)
{
	struct dg_hostmem *hm = arg;

	hm->ops->destroy(hm);
	return NULL;
}

static void *link_reaper(void *arg)
{
	dg_peer_destroy(arg);
	return NULL;
}

/*
 * Destroys, on a thread of its own, a connection that was accepted and
 * never established: rdma_cm may hold the destroy of such an id until its
 * handshake's retries run out (on soft-RoCE, seconds), and the loop must
 * not wait for that. The object is the thread's alone. Where no thread
 * can be made, here.
 */
void nic_reap(struct dg_hostmem *hm, struct dg_peer *link)
{
	pthread_attr_t at;
	pthread_t thr;
	int rc;

	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	rc = hm ? pthread_create(&thr, &at, hm_reaper, hm)
		: pthread_create(&thr, &at, link_reaper, link);
	pthread_attr_destroy(&at);
	if (rc && hm)
		hm->ops->destroy(hm);
	else if (rc)
		dg_peer_destroy(link);
}

void nic_tenant_free(struct dg_nic *n, uint32_t tid)
{
	struct tenant *t = &n->tenants[tid];
	uint32_t i;

	/* Not established yet: its place in the accept table goes too. */
	for (i = 0; t->accepting && i < MAX_ACCEPTING; i++)
		if (n->acc[i].used && n->acc[i].tenant == (int)tid) {
			n->acc[i].used = false;
			n->naccepting--;
		}
	nic_pend_fail(n, t);
	/* Forget its services and connections. */
	nic_svc_drop_tenant(n, tid);
	for (i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &n->conns[i];

		/* Its client connections (INBOUND ones have no tenant). */
		if (c->state == CONN_FREE || c->state == CONN_INBOUND ||
		    c->tenant != tid)
			continue;
		if (c->state == CONN_REMOTE)
			nic_peer_unbind(n, c->peer, conn_id(n, c));
		c->state = CONN_FREE;
	}
	if (t->accepting)
		nic_reap(t->hm, NULL);
	else
		t->hm->ops->destroy(t->hm);
	/* Its queue pair is gone: the transfers it held go back. */
	nic_pay_tenant_free(n, tid);
	for (i = 0; t->fds && i < t->nflows; i++)
		close(t->fds[i]);
	free(t->fds);
	for (i = 0; t->flows && i < t->nflows; i++) {
		nic_flow_stats_add(&n->gone, &t->flows[i].st);
		free(t->flows[i].pend);
		free(t->flows[i].owed);
	}
	free(t->flows);
	memset(t, 0, sizeof(*t));
	nic_lists_update(n);
}

void nic_take_pending(struct dg_nic *n)
{
	if (!__atomic_load_n(&n->pend_flag, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&n->lock);
	if (n->pend_attach && !n->pend_attach->done) {
		struct pending_attach *p = n->pend_attach;
		struct dg_hostmem *hm;
		int rc = dg_hostmem_local_create(p->region, p->size, &hm);

		if (!rc) {
			struct dg_region_hdr hdr;

			memcpy(&hdr, p->region, sizeof(hdr));
			rc = nic_tenant_init(n, hm, &hdr, p->region,
					     DG_MODE_POLL, NULL, 0);
			if (rc < 0)
				hm->ops->destroy(hm);
		}
		p->tenant = rc;
		p->done = true;
	}
	if (n->pend_detach >= 0) {
		if (n->tenants[n->pend_detach].used)
			nic_tenant_free(n, (uint32_t)n->pend_detach);
		n->pend_detach = -1;
	}
	if (n->pend_call && !n->pend_call->done) {
		n->pend_call->fn(n, n->pend_call->arg);
		n->pend_call->done = true;
	}
	__atomic_store_n(&n->pend_flag, 0, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
}

/* Wakes a loop that sleeps (wait_events) to look at what is pending. */
void nic_wake(struct dg_nic *n)
{
	uint64_t one = 1;

	if (n->wake_fd >= 0 && write(n->wake_fd, &one, sizeof(one)) < 0)
		return; /* a full counter: a wake-up is pending anyway */
}

/*
 * Runs fn(n, arg) on the loop thread and waits for it (at most timeout_ms:
 * -ETIMEDOUT, the call withdrawn). Called on the loop thread itself, or
 * while no thread runs the loop, it runs fn directly.
 */
int nic_call(struct dg_nic *n, void (*fn)(struct dg_nic *, void *), void *arg,
	     int timeout_ms)
{
	struct pending_call c = {.fn = fn, .arg = arg};
	struct timespec until;
	int rc = 0;

	if (!__atomic_load_n(&n->running, __ATOMIC_ACQUIRE) ||
	    pthread_equal(n->loop_thread, pthread_self())) {
		fn(n, arg);
		return 0;
	}
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += timeout_ms / 1000;
	until.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
	if (until.tv_nsec >= 1000000000) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000;
	}
	pthread_mutex_lock(&n->lock);
	while (n->pend_call && rc == 0)
		rc = pthread_cond_timedwait(&n->cond, &n->lock, &until);
	if (rc == 0) {
		n->pend_call = &c;
		__atomic_store_n(&n->pend_flag, 1, __ATOMIC_RELEASE);
		nic_wake(n);
		while (!c.done && rc == 0)
			rc = pthread_cond_timedwait(&n->cond, &n->lock, &until);
		if (!c.done)
			rc = ETIMEDOUT;
		n->pend_call = NULL;
		pthread_cond_broadcast(&n->cond);
	}
	pthread_mutex_unlock(&n->lock);
	return rc ? -ETIMEDOUT : 0;
}

int dg_nic_attach_local(struct dg_nic *n, void *region, uint64_t size)
{
	struct pending_attach p = {.region = region, .size = size};

	pthread_mutex_lock(&n->lock);
	while (n->pend_attach)
		pthread_cond_wait(&n->cond, &n->lock);
	n->pend_attach = &p;
	__atomic_store_n(&n->pend_flag, 1, __ATOMIC_RELEASE);
	nic_wake(n);
	while (!p.done)
		pthread_cond_wait(&n->cond, &n->lock);
	n->pend_attach = NULL;
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
	return p.tenant;
}

int dg_nic_detach_local(struct dg_nic *n, int tenant)
{
	if (tenant < 0 || tenant >= MAX_TENANTS)
		return -EINVAL;
	pthread_mutex_lock(&n->lock);
	while (n->pend_detach >= 0)
		pthread_cond_wait(&n->cond, &n->lock);
	n->pend_detach = tenant;
	__atomic_store_n(&n->pend_flag, 1, __ATOMIC_RELEASE);
	nic_wake(n);
	while (n->pend_detach == tenant)
		pthread_cond_wait(&n->cond, &n->lock);
	pthread_mutex_unlock(&n->lock);
	return 0;
}

int dg_nic_attach_cb(void *nic, void *region, uint64_t size)
{
	return dg_nic_attach_local(nic, region, size);
}

void dg_nic_detach_cb(void *nic, int tenant)
{
	dg_nic_detach_local(nic, tenant);
}

/* Accepts one RDMA attach (host tenant) if a request is waiting. */
void nic_accept_rdma(struct dg_nic *n)
{
	struct dg_peer_opts po = {.send_bufs = 32,
				  .engine_id = n->o.engine_id,
				  .timeout_ms = n->o.peer_timeout_ms};
	struct dg_rdma_ep_attr attr;
	union {
		struct dg_attach_req req;
		struct dg_peer_hello hello;
		uint8_t raw[DG_RDMA_CONNECT_PDATA_MAX];
	} pd;
	struct dg_attach_req req;
	struct dg_region_layout lay;
	struct dg_region_hdr hdr;
	struct dg_peer *link;
	struct dg_attach_rep rep = {.magic = DG_ATTACH_MAGIC,
				    .engine_id = n->o.engine_id};
	struct dg_rdma_remote rem;
	struct dg_rdma_ep *ep;
	struct dg_hostmem *hm;
	size_t plen = sizeof(pd);
	struct accepting *a;
	uint8_t who[16];
	int rc, i;

	if (!n->listener)
		return;
	/* One set of queue sizes that fits both kinds of connection. */
	dg_peer_ep_attr(&po, &attr);
	if (attr.sq_depth < 256)
		attr.sq_depth = 256;
	if (attr.rq_depth < TENANT_RECVS(DG_MAX_FLOWS))
		attr.rq_depth = TENANT_RECVS(DG_MAX_FLOWS);
	if (attr.rd_depth < 16)
		attr.rd_depth = 16;
	memset(&pd, 0, sizeof(pd));
	if (dg_rdma_listener_next(n->listener, &attr, 0, &pd, &plen, &ep))
		return;
	/*
	 * Accepted, the connection waits for the peer's side of the
	 * handshake in the table, not on the loop: a peer that never
	 * completes it costs a slot for ACCEPT_MS, not everyone's time.
	 */
	for (i = 0; i < MAX_ACCEPTING && n->acc[i].used; i++)
		;
	if (i == MAX_ACCEPTING) {
		n->attach_refused++;
		fprintf(stderr,
			"dagger-nic: refused a connection: %u others "
			"still establishing\n",
			MAX_ACCEPTING);
		dg_rdma_ep_destroy(ep);
		return;
	}
	a = &n->acc[i];
	if (dg_peer_is_hello(&pd, plen)) {
		nic_peer_bulk(n, &po);
		rc = dg_peer_accept_start(ep, &pd, plen, &po, &link);
		if (rc) {
			fprintf(stderr, "dagger-nic: peer accept: %s\n",
				strerror(-rc));
			return;
		}
		*a = (struct accepting){.used = true,
					.tenant = -1,
					.link = link,
					.deadline_us = mono_us() +
						       ACCEPT_MS * 1000ull};
		n->naccepting++;
		return;
	}
	memcpy(&req, &pd, sizeof(req));
	if (plen < sizeof(req) || req.magic != DG_ATTACH_MAGIC) {
		n->attach_refused++;
		fprintf(stderr, "dagger-nic: refused a connection: bad "
				"attach request\n");
		dg_rdma_ep_destroy(ep);
		return;
	}
	hdr = (struct dg_region_hdr){
		.magic = DG_REGION_MAGIC,
		.version = req.version,
		.nflows = req.nflows,
		.slots = req.slots,
		.flags = req.flags,
		.pay_shift = req.pay_shift,
	};
	/*
	 * The length is checked against the layout before anything is
	 * allocated: the shadow is as large as the region's rings part.
	 */
	if (req.version != DG_REGION_VERSION ||
	    dg_region_layout_pay(req.nflows, req.slots, req.pay_shift, &lay) ||
	    dg_region_bytes(&lay) != req.len || req.addr + req.len < req.addr) {
		n->attach_refused++;
		fprintf(stderr,
			"dagger-nic: refused an attach: version %u, %u flows "
			"x %u slots, %u bytes at %#llx do not make a region\n",
			req.version, req.nflows, req.slots, req.len,
			(unsigned long long)req.addr);
		dg_rdma_ep_destroy(ep);
		return;
	}
	/* One source address cannot take every tenant slot. */
	if (dg_rdma_ep_peer(ep, who))
		memset(who, 0, sizeof(who));
	if (nic_ident_tenants(n, NO_UID, who) >= IDENT_MAX_TENANTS) {
		n->attach_refused++;
		n->quota_refused++;
		fprintf(stderr,
			"dagger-nic: refused an attach: its address holds "
			"%u tenants already\n",
			IDENT_MAX_TENANTS);
		rep.status = -EDQUOT; /* the host's attach returns it */
		dg_rdma_ep_reject(ep, &rep, sizeof(rep));
		return;
	}
	rem = (struct dg_rdma_remote){req.addr, req.rkey, req.len};
	rc = dg_hostmem_rdma_create(ep, &rem, lay.pay_off, &hm);
	if (rc) {
		n->attach_refused++;
		dg_rdma_ep_destroy(ep);
		return;
	}
	rc = nic_tenant_init(n, hm, &hdr, NULL, req.mode, NULL, 0);
	rep.status = rc < 0 ? rc : 0;
	rep.tenant = rc < 0 ? 0 : (uint32_t)rc;
	if (rc >= 0) {
		struct dg_rdma_remote sh;

		hm->ops->shadow(hm, &sh);
		rep.shadow_addr = sh.addr;
		rep.shadow_rkey = sh.rkey;
		rep.shadow_len = sh.len;
	}
	if (rc < 0) {
		n->attach_refused++; /* no slot, a bad mode */
		dg_rdma_ep_refuse(ep, &rep, sizeof(rep)); /* with the reason */
		hm->ops->destroy(hm);
		return;
	}
	if (dg_rdma_ep_accept_start(ep, &rep, sizeof(rep))) {
		n->attach_refused++;
		nic_tenant_free(n, (uint32_t)rc);
		return;
	}
	n->tenants[rc].accepting = true;
	memcpy(n->tenants[rc].addr, who, sizeof(who));
	n->tenants[rc].addr_set = true;
	*a = (struct accepting){.used = true,
				.tenant = rc,
				.ep = ep,
				.deadline_us = mono_us() + ACCEPT_MS * 1000ull};
	n->naccepting++;
}

/*
 * The connections being established: a tenant whose host completed the
 * handshake is served from now on, a peer link joins the links; one that
 * failed, or took longer than ACCEPT_MS, is dropped (an attach counted as
 * refused). The loop does not sleep past the earliest deadline.
 */
void nic_accept_poll(struct dg_nic *n)
{
	uint64_t now = mono_us();
	uint32_t i;
	int rc;

	for (i = 0; i < MAX_ACCEPTING; i++) {
		struct accepting *a = &n->acc[i];

		if (!a->used)
			continue;
		rc = a->tenant >= 0 ? dg_rdma_ep_accept_wait(a->ep, 0)
				    : dg_peer_accept_wait(a->link, 0);
		if (rc == -EAGAIN && now < a->deadline_us) {
			if (a->deadline_us < n->next_due_us)
				n->next_due_us = a->deadline_us;
			continue;
		}
		if (rc == -EAGAIN)
			rc = -ETIMEDOUT;
		if (a->tenant >= 0 && !rc) {
			n->tenants[a->tenant].accepting = false;
		} else if (a->tenant >= 0) {
			n->attach_refused++;
			fprintf(stderr,
				"dagger-nic: an attach did not complete: "
				"%s\n",
				strerror(-rc));
			nic_tenant_free(n, (uint32_t)a->tenant); /* and a */
			continue;
		} else if (rc) {
			fprintf(stderr, "dagger-nic: peer accept: %s\n",
				strerror(-rc));
			nic_reap(NULL, a->link);
		} else {
			rc = nic_peer_add(n, a->link, false, NULL, 0);
			if (rc < 0)
				dg_peer_destroy(a->link);
			else if (n->o.verbose)
				fprintf(stderr,
					"dagger-nic: peer link %d from engine "
					"%u\n",
					rc, dg_peer_remote_engine(a->link));
		}
		a->used = false;
		n->naccepting--;
	}
}
