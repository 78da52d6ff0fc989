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
 * A host's WRITE WITH IMMEDIATE arrived for flow f (its receive is posted
 * again): a doorbell (its tx_db moved) or a sleep (its sleep line). The
 * bytes it wrote into the shadow landed before this completion. Values
 * from the host are checked like any the host writes: a tx_db behind
 * what we consumed, or more than a ring ahead, is ignored.
 */
static void tenant_imm(struct dg_nic *n, struct tenant *t, uint32_t imm)
{
	uint32_t f = DG_IMM_FLOW(imm), v, rx;
	struct flow *fl;

	if (t->hm->ops->recv(t->hm, mktag(TAG_RECV, 0, 0)))
		t->dead = true;
	if (f >= t->nflows)
		return;
	fl = &t->flows[f];
	switch (DG_IMM_KIND(imm)) {
	case DG_IMM_DOORBELL:
		v = __atomic_load_n(&fl->ctrl->tx_db, __ATOMIC_RELAXED);
		if (v - fl->tx_tail <= t->slots &&
		    v - fl->tx_tail > fl->db - fl->tx_tail)
			fl->db = v;
		fl->st.doorbells++;
		break;
	case DG_IMM_SLEEP:
		v = __atomic_load_n(&fl->ctrl->sleep_seq, __ATOMIC_RELAXED);
		rx = __atomic_load_n(&fl->ctrl->sleep_rx, __ATOMIC_RELAXED);
		if (!(v & 1)) {
			fl->sleep_seq = 0;
			break;
		}
		fl->sleep_seq = v;
		/* Frames it had not seen when it slept: wake it now. */
		if (rx != fl->rx_tail && v != fl->woken_seq)
			fl->wake_due = true;
		break;
	default:
		break;
	}
	(void)n;
}

/*
 * Whether flow f of an RDMA tenant wants a READ now: in poll mode when it
 * is due (adaptive polling); in doorbell mode when the host announced
 * frames we have not consumed; in push mode never (the frames are in the
 * shadow already).
 */
static bool want_read(struct dg_nic *n, struct tenant *t, struct flow *fl,
		      uint64_t *now)
{
	if (fl->read_pending)
		return false;
	switch (fl->mode) {
	case DG_MODE_DOORBELL:
		return fl->db != fl->tx_tail;
	case DG_MODE_PUSH:
		return false;
	default:
		return nic_read_due(n, t, fl, now);
	}
}

/*
 * An RDMA tenant: reap completions (TX READs -> parse and route, rx_head
 * READs -> credits, doorbells and sleeps), then post the next READ of
 * every flow that wants one; in push mode, route what the host pushed.
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
			if (kind == TAG_RECV) {
				if (c[i].has_imm)
					tenant_imm(n, t, c[i].imm);
				work++;
				continue;
			}
			if (kind == TAG_PAY) {
				/* A payload READ or WRITE (payload.c). */
				nic_pay_complete(
					n, tid,
					(uint32_t)c[i].tag & 0xffffffffu, 0);
				work++;
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
				nic_tx_write_head(
					t, fi,
					fl->blocked ||
						fl->idle_reads >= TXHEAD_IDLE ||
						(fl->mode == DG_MODE_DOORBELL &&
						 fl->tx_tail == fl->db));
			} else if (kind == TAG_RXHEAD) {
				fl->rx_head_pending = false;
				fl->rx_head = __atomic_load_n(
					&fl->ctrl->rx_head, __ATOMIC_RELAXED);
			}
		}
	}
	/* The connection state costs system calls: look now and then. */
	if (k < 0 || (n->sweep && t->hm->ops->check(t->hm)))
		t->dead = true;
	if (t->dead)
		return work;
	for (f = 0; f < t->nflows; f++) {
		struct flow *fl = &t->flows[f];

		/*
		 * Stopped at a message that must wait (back-pressure): it and
		 * what follows are still in the shadow (the host reuses no
		 * slot below what we reported consumed): retry from there,
		 * no new READ.
		 */
		if (fl->blocked && !fl->read_pending &&
		    fl->mode != DG_MODE_PUSH &&
		    fl->read_pos + fl->read_n - fl->tx_tail - 1 < t->slots) {
			uint32_t got = nic_tx_process(
				n, tid, f,
				fl->read_pos + fl->read_n - fl->tx_tail);

			work += (int)got;
			nic_tx_write_head(t, f, true);
			if (fl->blocked)
				continue;
		}
		if (fl->mode == DG_MODE_PUSH && fl->db != fl->tx_tail) {
			uint32_t got =
				nic_tx_process(n, tid, f, fl->db - fl->tx_tail);

			work += (int)got;
			nic_tx_write_head(t, f,
					  fl->blocked || fl->tx_tail == fl->db);
		} else if (want_read(n, t, fl, &now)) {
			nic_tx_post_read(n, t, f);
		}
	}
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
	if (n->sweep && t->hm->ops->check(t->hm))
		t->dead = true;
	return work;
}

/*
 * Writes back what this iteration produced for an RDMA tenant and, after
 * a flow's RX bytes, the WRITE WITH IMMEDIATE that wakes its sleeping
 * thread (same QP, posted after them: the host sees the frames first).
 */
static void tenant_flush(struct tenant *t)
{
	uint32_t f;

	for (f = 0; f < t->nflows; f++) {
		struct flow *fl = &t->flows[f];

		nic_rx_write_back(t, f);
		if (fl->wake_due && fl->rx_dirty == fl->rx_tail &&
		    t->hm->ops->notify(t->hm, DG_IMM(DG_IMM_WAKE, f),
				       mktag(TAG_NOTIFY, f, 0)) == 0) {
			fl->wake_due = false;
			fl->woken_seq = fl->sleep_seq;
			fl->sleep_seq = 0;
			fl->st.wakes++;
		}
	}
	t->hm->ops->flush(t->hm);
}

/*
 * Direct tenants: the flows that got frames in this iteration, whose
 * threads may sleep. The fence orders our stores of those frames (their
 * stamps) before our loads of the sleep words; the host stores its sleep
 * word, fences, then looks at its ring once more before it blocks. So
 * either it sees the frame, or we see it asleep and write its eventfd:
 * no wake-up is lost (docs/ARCHITECTURE.md, "Sleeping and waking").
 */
void nic_wake_direct(struct dg_nic *n)
{
	uint32_t i, f;
	bool fenced = false;

	for (i = 0; i < n->ntact; i++) {
		struct tenant *t = &n->tenants[n->tact[i]];

		if (!t->direct || !t->delivered)
			continue;
		t->delivered = false;
		if (!fenced) {
			__atomic_thread_fence(__ATOMIC_SEQ_CST);
			fenced = true;
		}
		for (f = 0; f < t->nflows; f++) {
			struct flow *fl = &t->flows[f];
			uint32_t seq;
			uint64_t one = 1;

			if (!fl->delivered)
				continue;
			fl->delivered = false;
			seq = __atomic_load_n(&fl->ctrl->sleep_seq,
					      __ATOMIC_ACQUIRE);
			if (!(seq & 1) || seq == fl->woken_seq ||
			    fl->wake_fd < 0)
				continue;
			fl->woken_seq = seq;
			fl->st.wakes++;
			/* Non-blocking: a full counter already wakes it. */
			if (write(fl->wake_fd, &one, sizeof(one)) < 0)
				continue;
		}
	}
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
	if (n->nconnects)
		nic_connect_poll(n); /* peer links made off this thread */
	n->next_due_us = UINT64_MAX;
	if (UNLIKELY(n->naccepting))
		nic_accept_poll(n); /* connections still establishing */
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
	/*
	 * Before the increment: a sleep sets loops to a multiple of 64, and
	 * the sweep must not depend on how many rounds the spin took.
	 */
	n->sweep = (n->loops & 1023) == 0;
	n->loops++;
	/* Copies: freeing a tenant or a link below updates the lists. */
	ntact = n->ntact;
	npact = n->npact;
	memcpy(tact, n->tact, ntact);
	memcpy(pact, n->pact, npact);
	for (i = 0; i < ntact; i++) {
		uint32_t tid = tact[i];
		struct tenant *t = &n->tenants[tid];

		if (!t->used || t->accepting)
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
	/* Answers owed to clients that had no room: as room appears. */
	if (UNLIKELY(n->nowing))
		nic_owed_flush(n);
	/* Deliveries above may have touched any RDMA tenant's RX rings. */
	for (i = 0; i < ntact; i++) {
		struct tenant *t = &n->tenants[tact[i]];

		if (t->used && !t->dead && !t->direct && !t->accepting)
			tenant_flush(t);
	}
	if (n->any_direct)
		nic_wake_direct(n);
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

/* Shared-memory tenants: tells their hosts the engine sleeps (or not). */
static void direct_sleep(struct dg_nic *n, uint32_t v)
{
	uint32_t i;

	for (i = 0; i < n->ntact; i++) {
		struct tenant *t = &n->tenants[n->tact[i]];

		if (t->direct && !t->dead)
			__atomic_store_n(
				&((struct dg_region_hdr *)t->hm->shadow)
					 ->engine_sleep,
				v, __ATOMIC_RELAXED);
	}
}

/*
 * After a sleep that ran to its timeout: whether a shared-memory host had
 * published a frame meanwhile, which its kick should have woken us for (a
 * missed wake-up; counted, it is 0 unless the protocol is broken).
 */
static bool direct_missed(struct dg_nic *n)
{
	uint32_t i, f;

	for (i = 0; i < n->ntact; i++) {
		struct tenant *t = &n->tenants[n->tact[i]];

		if (!t->direct || t->dead)
			continue;
		for (f = 0; f < t->nflows; f++) {
			struct flow *fl = &t->flows[f];

			if (!fl->blocked &&
			    __atomic_load_n(
				    &fl->txr[fl->tx_tail & t->mask].stamp,
				    __ATOMIC_ACQUIRE) == dg_stamp(fl->tx_tail))
				return true;
		}
	}
	return false;
}

/*
 * Sleeps until something can be done: a completion on an RDMA tenant's
 * or a peer link's queue (a READ done, a host's doorbell or sleep, a
 * peer's message), a shared-memory host's kick on our eventfd, an attach
 * or a call from another thread, a connection request, a hang-up; or
 * until the next poll-mode READ is due or a timer must run (peer
 * keepalives). Completion queues are armed first and every ring polled
 * once more, so nothing that landed before arming is slept through.
 *
 * Shared-memory tenants: engine_sleep is set in their headers, then a
 * fence, then their rings are polled once more; a host publishes its
 * frame, fences, then looks at engine_sleep and kicks our eventfd if it
 * is set. Either we see its frame or it sees us asleep (the two fences):
 * no frame waits for a wake-up that does not come.
 *
 * Returns false when it could not arm a queue (the caller spins on).
 */
static bool wait_events(struct dg_nic *n)
{
	struct pollfd fds[MAX_TENANTS * 3 + MAX_PEERS + MAX_ACCEPTING + 4];
	int8_t fd_tenant[MAX_TENANTS * 3 + MAX_PEERS + MAX_ACCEPTING + 4];
	struct timespec ts;
	uint64_t tmo, now;
	nfds_t k = 0, j;
	uint32_t i;
	int rc;

	memset(fd_tenant, -1, sizeof(fd_tenant));
	for (i = 0; i < n->ntact; i++) {
		struct tenant *t = &n->tenants[n->tact[i]];

		if (!t->used || t->dead || t->accepting)
			continue;
		if (t->direct) {
			/* A daemon's tenant: its socket's hang-up. */
			if (t->hm->ops->event_fd) {
				fd_tenant[k] = (int8_t)n->tact[i];
				fds[k++] = (struct pollfd){
					t->hm->ops->event_fd(t->hm),
					POLLIN | POLLRDHUP, 0};
			}
			continue;
		}
		if (!t->hm->ops->arm || t->hm->ops->arm(t->hm))
			return false;
		fds[k++] =
			(struct pollfd){t->hm->ops->event_fd(t->hm), POLLIN, 0};
		/* Its connection's events: a host that died or hung up. */
		if (t->hm->ops->state_fd) {
			fd_tenant[k] = (int8_t)n->tact[i];
			fds[k++] = (struct pollfd){t->hm->ops->state_fd(t->hm),
						   POLLIN, 0};
		}
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
	/* Connections establishing: their handshake's end wakes us. */
	for (i = 0; i < MAX_ACCEPTING; i++)
		if (n->acc[i].used)
			fds[k++] = (struct pollfd){
				n->acc[i].tenant >= 0
					? dg_rdma_ep_fd(n->acc[i].ep)
					: dg_peer_cm_fd(n->acc[i].link),
				POLLIN, 0};
	if (n->shm_fd >= 0)
		fds[k++] = (struct pollfd){n->shm_fd, POLLIN, 0};
	if (n->ctl)
		fds[k++] = (struct pollfd){nic_ctl_fd(n), POLLIN, 0};
	fds[k++] = (struct pollfd){n->wake_fd, POLLIN, 0};
	if (n->listener)
		fds[k++] = (struct pollfd){dg_rdma_listener_fd(n->listener),
					   POLLIN, 0};
	if (n->any_direct) {
		direct_sleep(n, 1);
		/* Our sleep flag before our last look at their rings. */
		__atomic_thread_fence(__ATOMIC_SEQ_CST);
	}
	if (dg_nic_poll(n)) {
		if (n->any_direct)
			direct_sleep(n, 0);
		return true; /* work arrived while arming */
	}
	/*
	 * Not past the next poll-mode READ (no completion wakes us for it),
	 * nor a peer link's keepalive, nor answers still owed.
	 */
	tmo = n->o.idle_us;
	now = mono_us();
	if (n->next_due_us != UINT64_MAX)
		tmo = n->next_due_us <= now	   ? 0
		      : n->next_due_us - now < tmo ? n->next_due_us - now
						   : tmo;
	if (n->npact && tmo > n->o.peer_timeout_ms * 1000ull / 12)
		tmo = n->o.peer_timeout_ms * 1000ull / 12;
	if (n->remote_sweep && tmo > 1000)
		tmo = 1000;
	ts.tv_sec = (time_t)(tmo / 1000000u);
	ts.tv_nsec = (long)(tmo % 1000000u) * 1000;
	n->sleeps++;
	rc = ppoll(fds, k, &ts, NULL);
	if (rc == 0 && n->any_direct && direct_missed(n))
		n->missed_wakes++;
	if (rc > 0) {
		uint64_t v;

		if (n->listener && fds[k - 1].revents)
			nic_accept_rdma(n);
		if (n->shm_fd >= 0)
			nic_shm_accept(n);
		if (n->ctl)
			nic_ctl_poll(n);
		if (read(n->wake_fd, &v, sizeof(v)) < 0)
			v = 0; /* not this one: EAGAIN */
		/*
		 * A daemon's tenant hung up, or an RDMA tenant's connection
		 * has an event (a disconnect): it is gone, now.
		 */
		for (j = 0; j < k; j++) {
			struct tenant *t;

			if (!fds[j].revents || fd_tenant[j] < 0)
				continue;
			t = &n->tenants[fd_tenant[j]];
			if (t->used && t->hm->ops->check(t->hm))
				t->dead = true;
		}
	}
	if (n->any_direct)
		direct_sleep(n, 0);
	for (i = 0; i < MAX_TENANTS; i++)
		if (n->tenants[i].used && n->tenants[i].hm->ops->ack)
			n->tenants[i].hm->ops->ack(n->tenants[i].hm);
	for (i = 0; i < MAX_PEERS; i++)
		if (n->peers[i].used)
			dg_peer_ack(n->peers[i].link);
	/* A sleep skips loop iterations: the timers run now. */
	n->loops = (n->loops | 63) + 1;
	return true;
}

int dg_nic_run(struct dg_nic *n)
{
	uint64_t last_work = mono_us();
	uint32_t iter = 0;

	n->loop_thread = pthread_self();
	__atomic_store_n(&n->running, 1, __ATOMIC_RELEASE);
	while (!__atomic_load_n(&n->stop, __ATOMIC_RELAXED)) {
		uint64_t now;

		if (dg_nic_poll(n)) {
			iter = 0;
			last_work = 0;
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
		if (iter & 63)
			continue;
		/*
		 * Idle back-off by time, not by iterations (one RDMA READ
		 * round trip spans many idle iterations). A busy engine never
		 * sleeps. After spin_us without work (--busy-poll: never) it
		 * sleeps until there is some (wait_events).
		 */
		now = mono_us();
		if (!last_work)
			last_work = now;
		if (n->o.busy_poll || now - last_work < n->o.spin_us)
			continue;
		if (!wait_events(n))
			usleep(n->o.idle_us < 1000 ? n->o.idle_us : 1000);
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
		n->o.idle_us = 100000;
	if (!n->o.spin_us)
		n->o.spin_us = 50;
	if (!n->o.poll_max_us)
		n->o.poll_max_us = 1000;
	if (!n->o.hold_us)
		n->o.hold_us = 100000;
	if (!n->o.peer_timeout_ms)
		n->o.peer_timeout_ms = DG_PEER_TIMEOUT_DEFAULT;
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
	for (i = 0; i < MAX_ACCEPTING; i++)
		if (n->acc[i].used && n->acc[i].tenant < 0)
			nic_reap(NULL, n->acc[i].link);
	nic_connect_shutdown(n); /* its links join, then go below */
	for (i = 0; i < MAX_PEERS; i++)
		if (n->peers[i].used)
			nic_peer_free(n, i);
	nic_pool_destroy(n);
	dg_rdma_listener_destroy(n->listener);
	nic_shm_close(n);
	nic_ctl_close(n);
	close(n->wake_fd);
	pthread_mutex_destroy(&n->lock);
	pthread_cond_destroy(&n->cond);
	free(n);
}
