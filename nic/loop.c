// SPDX-License-Identifier: MIT
/*
 * loop.c - the engine loop: one iteration over tenants and peer links, idle
 * back-off and sleeping on completion events, creation and teardown.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "engine_impl.h"

/*
 * An RDMA tenant: reap completions (TX READs -> parse and route, rx_head
 * READs -> credits), then post the next READ of every flow that is due.
 */
static int tenant_poll(struct dg_nic *n, uint32_t tid)
{
	struct tenant *t = &n->tenants[tid];
	struct dg_hostmem_comp c[32];
	int k, i, work = 0;
	uint64_t now = 0;
	uint32_t f;

	while ((k = t->hm->ops->poll(t->hm, c, 32)) > 0) {
		for (i = 0; i < k; i++) {
			uint32_t kind = (uint32_t)(c[i].tag >> 56);
			uint32_t fi = (uint32_t)(c[i].tag >> 32) & 0xffffff;
			struct flow *fl;

			if (c[i].status) {
				t->dead = true;
				continue;
			}
			if (fi >= t->nflows)
				continue;
			fl = &t->flows[fi];
			if (kind == TAG_TXREAD && fl->read_pending &&
			    --fl->read_pending == 0) {
				uint32_t got =
					nic_tx_process(n, tid, fi, fl->read_n);
				work += (int)got;
				nic_tx_write_head(t, fi,
						  fl->blocked ||
							  fl->idle_reads >=
								  TXHEAD_IDLE);
			} else if (kind == TAG_RXHEAD) {
				fl->rx_head_pending = false;
				fl->rx_head = __atomic_load_n(
					&fl->ctrl->rx_head, __ATOMIC_RELAXED);
			}
		}
	}
	/* The connection state costs system calls: look now and then. */
	if (k < 0 || ((n->loops & 1023) == 0 && t->hm->ops->check(t->hm)))
		t->dead = true;
	if (t->dead)
		return work;
	for (f = 0; f < t->nflows; f++)
		if (!t->flows[f].read_pending &&
		    nic_read_due(n, t, &t->flows[f], &now))
			nic_tx_post_read(n, t, f);
	return work;
}

/*
 * A direct tenant (shared memory): its TX rings are polled in place, one
 * load of the next slot's stamp per idle flow; consumed slots are
 * reported at once (a store, not a WRITE).
 */
static int tenant_poll_direct(struct dg_nic *n, uint32_t tid)
{
	struct tenant *t = &n->tenants[tid];
	int work = 0;
	uint32_t f;

	for (f = 0; f < t->nflows; f++) {
		struct flow *fl = &t->flows[f];
		uint32_t got;

		/* Acquire, as dg_slot_ready: the cheap look before the call. */
		if (!fl->blocked &&
		    __atomic_load_n(&fl->txr[fl->tx_tail & t->mask].stamp,
				    __ATOMIC_ACQUIRE) != dg_stamp(fl->tx_tail))
			continue;
		got = nic_tx_process(n, tid, f, t->slots);
		if (got) {
			work += (int)got;
			nic_tx_write_head(t, f, true);
		}
	}
	/* A daemon's tenant: its socket tells when it is gone. */
	if ((n->loops & 1023) == 0 && t->hm->ops->check(t->hm))
		t->dead = true;
	return work;
}

static void tenant_flush(struct tenant *t)
{
	uint32_t f;

	for (f = 0; f < t->nflows; f++)
		nic_rx_write_back(t, f);
	t->hm->ops->flush(t->hm);
}

/* Rebuilds the lists of tenants and links in use (on attach and detach). */
void nic_lists_update(struct dg_nic *n)
{
	uint32_t i;

	n->ntact = n->npact = 0;
	n->any_direct = false;
	for (i = 0; i < MAX_TENANTS; i++)
		if (n->tenants[i].used) {
			n->tact[n->ntact++] = (uint8_t)i;
			n->any_direct |= n->tenants[i].direct;
		}
	for (i = 0; i < MAX_PEERS; i++)
		if (n->peers[i].used)
			n->pact[n->npact++] = (uint8_t)i;
}

int dg_nic_poll(struct dg_nic *n)
{
	uint8_t tact[MAX_TENANTS], pact[MAX_PEERS];
	uint32_t i, ntact, npact;
	int work = 0;

	nic_take_pending(n);
	n->next_due_us = UINT64_MAX;
	n->clk_ns = 0; /* nic_clock: at most one read per iteration */
	if ((n->loops & 255) == 0) {
		if (n->listener)
			nic_accept_rdma(n);
		if (n->shm_fd >= 0)
			nic_shm_accept(n);
	}
	if ((n->loops & 63) == 0) {
		nic_peer_timers(n);
		if (n->ctl)
			nic_ctl_tick(n);
	}
	n->loops++;
	/* Copies: freeing a tenant or a link below updates the lists. */
	ntact = n->ntact;
	npact = n->npact;
	memcpy(tact, n->tact, ntact);
	memcpy(pact, n->pact, npact);
	for (i = 0; i < ntact; i++) {
		uint32_t tid = tact[i];
		struct tenant *t = &n->tenants[tid];

		if (!t->used)
			continue;
		if (UNLIKELY(t->dead) && !t->local_region &&
		    t->hm->ops->check(t->hm) != 0) {
			if (n->o.verbose)
				fprintf(stderr, "dagger-nic: tenant %u gone\n",
					tid);
			nic_tenant_free(n, tid);
			continue;
		}
		if (t->dead)
			continue;
		work += t->direct ? tenant_poll_direct(n, tid)
				  : tenant_poll(n, tid);
	}
	for (i = 0; i < npact; i++) {
		uint32_t pi = pact[i];

		if (!n->peers[pi].used)
			continue;
		if (n->peers[pi].dead) {
			nic_peer_free(n, pi);
			continue;
		}
		work += nic_peer_poll(n, pi);
	}
	/* Deliveries above may have touched any RDMA tenant's RX rings. */
	for (i = 0; i < ntact; i++) {
		struct tenant *t = &n->tenants[tact[i]];

		if (t->used && !t->dead && !t->direct)
			tenant_flush(t);
	}
	/* One SEND per link for what this iteration queued. */
	for (i = 0; i < npact; i++) {
		struct peer_ref *p = &n->peers[pact[i]];

		if (p->used && !p->dead) {
			int rc = dg_peer_flush(p->link);

			if (rc && rc != -EAGAIN)
				nic_peer_kill(n, pact[i], rc);
		}
	}
	return work;
}

/*
 * Sleeps until a completion or a connection request arrives, or idle_us
 * passes, when every tenant and link can signal completions (RDMA). The
 * CQs are armed first and polled once more, so a completion that landed
 * before arming is not slept through. Returns false when it cannot sleep
 * this way (a local tenant: shared memory has no events).
 */
static bool wait_events(struct dg_nic *n)
{
	struct pollfd fds[MAX_TENANTS + MAX_PEERS + 4];
	struct timespec ts;
	uint64_t tmo;
	nfds_t k = 0;
	uint32_t i;

	if (n->any_direct)
		return false;
	for (i = 0; i < MAX_TENANTS; i++) {
		struct tenant *t = &n->tenants[i];

		if (!t->used || t->dead)
			continue;
		if (!t->hm->ops->arm || t->hm->ops->arm(t->hm))
			return false;
		fds[k++] =
			(struct pollfd){t->hm->ops->event_fd(t->hm), POLLIN, 0};
	}
	for (i = 0; i < MAX_PEERS; i++) {
		struct peer_ref *p = &n->peers[i];

		if (!p->used || p->dead)
			continue;
		if (dg_peer_arm(p->link))
			return false;
		fds[k++] =
			(struct pollfd){dg_peer_event_fd(p->link), POLLIN, 0};
	}
	if (n->shm_fd >= 0)
		fds[k++] = (struct pollfd){n->shm_fd, POLLIN, 0};
	if (n->ctl)
		fds[k++] = (struct pollfd){nic_ctl_fd(n), POLLIN, 0};
	fds[k++] = (struct pollfd){n->wake_fd, POLLIN, 0};
	if (n->listener)
		fds[k++] = (struct pollfd){dg_rdma_listener_fd(n->listener),
					   POLLIN, 0};
	if (dg_nic_poll(n))
		return true; /* work arrived while arming */
	/* Not past the next idle flow's READ (no completion wakes us then). */
	tmo = n->o.idle_us;
	if (n->next_due_us != UINT64_MAX) {
		uint64_t now = mono_us();

		if (n->next_due_us <= now)
			tmo = 0;
		else if (n->next_due_us - now < tmo)
			tmo = n->next_due_us - now;
	}
	ts.tv_sec = (time_t)(tmo / 1000000u);
	ts.tv_nsec = (long)(tmo % 1000000u) * 1000;
	if (ppoll(fds, k, &ts, NULL) > 0) {
		uint64_t v;

		if (n->listener && fds[k - 1].revents)
			nic_accept_rdma(n);
		if (n->shm_fd >= 0)
			nic_shm_accept(n);
		if (n->ctl)
			nic_ctl_poll(n);
		if (read(n->wake_fd, &v, sizeof(v)) < 0)
			v = 0; /* nothing was pending: EAGAIN */
	}
	for (i = 0; i < MAX_TENANTS; i++)
		if (n->tenants[i].used && n->tenants[i].hm->ops->ack)
			n->tenants[i].hm->ops->ack(n->tenants[i].hm);
	for (i = 0; i < MAX_PEERS; i++)
		if (n->peers[i].used)
			dg_peer_ack(n->peers[i].link);
	return true;
}

int dg_nic_run(struct dg_nic *n)
{
	uint64_t last_work = mono_us();
	uint32_t iter = 0;
	bool sleepy = false;

	n->loop_thread = pthread_self();
	__atomic_store_n(&n->running, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&n->stop, __ATOMIC_RELAXED)) {
		uint64_t now;

		if (dg_nic_poll(n)) {
			iter = 0;
			last_work = 0;
			sleepy = false;
			continue;
		}
		/*
		 * Read the clock once in 64 idle rounds while spinning, and
		 * give the core away once in 16: on a machine with fewer
		 * cores than pollers (a laptop, CI) the host threads this
		 * engine waits for may be queued behind it.
		 */
		++iter;
		if (!(iter & 15))
			sched_yield();
		if ((iter & 63) && !sleepy)
			continue;
		/*
		 * Idle back-off by time, not by iterations (one RDMA READ
		 * round trip spans many idle iterations). A busy engine never
		 * sleeps. After spin_us without a frame, an engine whose
		 * tenants are all reached by RDMA sleeps on completion events
		 * (it wakes when its next READ completes, or when an idle
		 * flow's next READ is due); one with local
		 * tenants sleeps idle_us between polls after 100 ms.
		 */
		now = mono_us();
		if (!last_work)
			last_work = now;
		if (now - last_work < n->o.spin_us)
			continue;
		sleepy = wait_events(n);
		if (sleepy)
			continue;
		if (now - last_work > 100000) {
			/* Shared memory has no events: nap, but wake for an
			 * attach, a detach or a call from another thread. */
			struct pollfd p[3] = {{n->wake_fd, POLLIN, 0},
					      {nic_ctl_fd(n), POLLIN, 0},
					      {n->shm_fd, POLLIN, 0}};
			uint64_t v;

			if (poll(p, n->shm_fd >= 0 ? 3 : 2,
				 (int)((n->o.idle_us + 999) / 1000)) > 0 &&
			    read(n->wake_fd, &v, sizeof(v)) < 0)
				v = 0; /* a socket, not the eventfd */
			if (n->ctl && p[1].revents)
				nic_ctl_poll(n);
		}
	}
	__atomic_store_n(&n->running, 0, __ATOMIC_RELEASE);
	return 0;
}

void dg_nic_stop(struct dg_nic *n)
{
	__atomic_store_n(&n->stop, 1, __ATOMIC_RELAXED);
}

void dg_nic_resume(struct dg_nic *n)
{
	__atomic_store_n(&n->stop, 0, __ATOMIC_RELAXED);
}

int dg_nic_create(const struct dg_nic_opts *o, struct dg_nic **out)
{
	struct dg_nic *n = calloc(1, sizeof(*n));
	int rc;

	if (!n)
		return -ENOMEM;
	if (o)
		n->o = *o;
	if (!n->o.read_batch)
		n->o.read_batch = 16;
	if (!n->o.idle_us)
		n->o.idle_us = 1000;
	if (!n->o.spin_us)
		n->o.spin_us = 50;
	if (!n->o.poll_max_us)
		n->o.poll_max_us = 100;
	n->rng = 0x9E3779B97F4A7C15ull ^ n->o.engine_id;
	n->start_ns = mono_ns();
	n->pend_detach = -1;
	n->shm_fd = -1;
	n->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->wake_fd < 0) {
		free(n);
		return -errno;
	}
	for (rc = 0; rc < MAX_SHM_PENDING; rc++)
		n->shm_pend[rc].fd = -1;
	pthread_mutex_init(&n->lock, NULL);
	pthread_cond_init(&n->cond, NULL);
	if (n->o.listen_addr) {
		rc = dg_rdma_listen(n->o.listen_addr, n->o.port, 64,
				    &n->listener);
		if (rc)
			goto err;
	}
	if (n->o.shm_path) {
		rc = nic_shm_listen(n, n->o.shm_path);
		if (rc)
			goto err;
	}
	if (n->o.ctl_path) {
		rc = nic_ctl_listen(n, n->o.ctl_path);
		if (rc)
			goto err;
	}
	*out = n;
	return 0;
err:
	nic_shm_close(n);
	dg_rdma_listener_destroy(n->listener);
	close(n->wake_fd);
	pthread_mutex_destroy(&n->lock);
	pthread_cond_destroy(&n->cond);
	free(n);
	return rc;
}

uint16_t dg_nic_port(const struct dg_nic *n)
{
	return n->listener ? dg_rdma_listener_port(n->listener) : 0;
}

void dg_nic_destroy(struct dg_nic *n)
{
	uint32_t i;

	if (!n)
		return;
	for (i = 0; i < MAX_TENANTS; i++)
		if (n->tenants[i].used)
			nic_tenant_free(n, i);
	for (i = 0; i < MAX_PEERS; i++)
		if (n->peers[i].used)
			nic_peer_free(n, i);
	dg_rdma_listener_destroy(n->listener);
	nic_shm_close(n);
	nic_ctl_close(n);
	close(n->wake_fd);
	pthread_mutex_destroy(&n->lock);
	pthread_cond_destroy(&n->cond);
	free(n);
}
