// SPDX-License-Identifier: MIT
/*
 * wake.c - what follows a publication, and sleeping.
 *
 *  - Doorbell and push modes (RDMA): after frames are published, the host
 *    tells the engine how far its TX ring went with one RDMA WRITE WITH
 *    IMMEDIATE of its tx_db line into the engine's copy of its region
 *    (push mode: after RDMA WRITEs of the frames themselves into it). One
 *    doorbell in flight covers what follows: the next goes when it has
 *    completed and the ring went further.
 *  - An engine that sleeps (shared memory): kicked through its eventfd.
 *  - A flow whose thread sleeps: it marks itself asleep in its sleep line
 *    (RDMA: writes that line into the engine's copy, WITH IMMEDIATE, so
 *    the engine learns it at once), looks at its ring once more, then
 *    blocks on its eventfd. The engine wakes it after its next delivery:
 *    shared memory by writing the eventfd; RDMA by a WRITE WITH IMMEDIATE
 *    that the host's waker thread passes on to the eventfd.
 *
 * docs/ARCHITECTURE.md ("Interface modes", "Sleeping and waking") gives
 * the ordering arguments.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "dg_rdma.h"
#include "host_impl.h"

/* What a host's send-queue request was for (wr_id: kind << 32 | flow). */
enum { WR_DOORBELL = 1, WR_SLEEP = 2, WR_RECV = 3 };

static uint64_t wrid(uint32_t kind, uint32_t flow)
{
	return (uint64_t)kind << 32 | flow;
}

int dg_after_tx_slow(struct dg_flow *f)
{
	if (f->kick == DG_KICK_SHM)
		dg_kick_engine(f);
	else
		dg_doorbell(f);
	return 0;
}

void dg_kick_engine(struct dg_flow *f)
{
	uint64_t one = 1;

	/* Only when the engine sleeps: never on a busy path. A full
	 * counter (EAGAIN) means it is being woken anyway. */
	if (write(f->h->engine_fd, &one, sizeof(one)) == sizeof(one))
		f->st.kicks++;
}

/*
 * Takes completions from the host's queue, vlock held: doorbells done
 * (their flow may post the next), and the engine's wake-ups (passed on to
 * the flow's eventfd; the receive is posted again).
 */
static int reap(struct dg_host *h)
{
	struct dg_rdma_wc wc[32];
	int k, i, got = 0;

	while ((k = dg_rdma_poll(h->ep, wc, 32)) > 0) {
		for (i = 0; i < k; i++) {
			uint32_t kind = (uint32_t)(wc[i].wr_id >> 32);
			uint32_t fi = (uint32_t)wc[i].wr_id;

			if (wc[i].status)
				return wc[i].status; /* the endpoint failed */
			if (kind == WR_DOORBELL && fi < h->nflows) {
				__atomic_sub_fetch(&h->flows[fi].db_inflight, 1,
						   __ATOMIC_RELEASE);
			} else if (kind == WR_RECV && wc[i].has_imm) {
				uint32_t f = DG_IMM_FLOW(wc[i].imm);
				uint64_t one = 1;

				if (dg_rdma_post_recv0(h->ep, wrid(WR_RECV, 0)))
					return -EIO;
				if (DG_IMM_KIND(wc[i].imm) != DG_IMM_WAKE ||
				    f >= h->nflows)
					continue;
				/* A yielding request waiter gives way. */
				__atomic_add_fetch(&h->req_events, 1,
						   __ATOMIC_RELAXED);
				if (write(h->flows[f].evfd, &one, sizeof(one)) <
				    0)
					continue; /* full: it is awake anyway */
			}
		}
		got += k;
	}
	return k < 0 ? k : got;
}

/*
 * Posts the doorbell (and in push mode the frames) for what f published
 * since the last one, vlock held. The engine's copy has the same layout:
 * every offset is the same in both.
 */
static int post_doorbell(struct dg_flow *f)
{
	struct dg_host *h = f->h;
	uint32_t from = f->db_sent, to = f->tx_tail;
	uint64_t ctrl = (uint64_t)((uint8_t *)f->ctrl - h->region);
	int rc;

	if (f->mode == DG_MODE_PUSH) {
		uint64_t ring = (uint64_t)((uint8_t *)f->tx - h->region);

		while (from != to) {
			uint32_t at = from & f->mask;
			uint32_t run = to - from < f->slots - at
					       ? to - from
					       : f->slots - at;

			rc = dg_rdma_post_write(
				h->ep, h->mr, (uint8_t *)&f->tx[at],
				run * DG_SLOT_SIZE,
				h->shadow_addr + ring +
					(uint64_t)at * DG_SLOT_SIZE,
				h->shadow_rkey, 0, DG_RDMA_MORE);
			if (rc)
				return rc;
			from += run;
		}
	}
	/*
	 * Our own copy of tx_db is the WRITE's source; it is read by the
	 * device after we post (no later change to it can matter: the next
	 * doorbell waits for this one's completion).
	 */
	__atomic_store_n(&f->ctrl->tx_db, to, __ATOMIC_RELAXED);
	rc = dg_rdma_post_write_imm(
		h->ep, h->mr, &f->ctrl->tx_db, sizeof(f->ctrl->tx_db),
		h->shadow_addr + ctrl + offsetof(struct dg_flow_ctrl, tx_db),
		h->shadow_rkey, DG_IMM(DG_IMM_DOORBELL, f->idx),
		wrid(WR_DOORBELL, f->idx), DG_RDMA_SIGNALED | DG_RDMA_MORE);
	if (rc)
		return rc;
	rc = dg_rdma_flush(h->ep);
	if (rc)
		return rc;
	__atomic_add_fetch(&f->db_inflight, 1, __ATOMIC_RELAXED);
	f->db_sent = to;
	f->st.doorbells++;
	return 0;
}

void dg_doorbell(struct dg_flow *f)
{
	struct dg_host *h = f->h;

	pthread_mutex_lock(&h->vlock);
	reap(h);
	/* One in flight covers later frames: the next goes after it. */
	if (!__atomic_load_n(&f->db_inflight, __ATOMIC_ACQUIRE) &&
	    f->db_sent != f->tx_tail && post_doorbell(f) == -EAGAIN) {
		/* The send queue is full: reaped, then again next time. */
		f->st.eagain++;
	}
	pthread_mutex_unlock(&h->vlock);
}

/* Whether the next RX slot holds a frame (a cheap look, no parsing). */
static bool rx_pending(const struct dg_flow *f)
{
	const struct dg_frame *s = &f->rx[f->rx_tail & f->mask];

	return __atomic_load_n(&s->stamp, __ATOMIC_ACQUIRE) ==
	       dg_stamp(f->rx_tail);
}

/*
 * Marks f asleep where the engine sees it. Returns 0 when the caller may
 * block on f->evfd, -EAGAIN when frames are there already (then it is
 * not asleep), or a negative errno.
 */
static int arm(struct dg_flow *f)
{
	struct dg_host *h = f->h;
	uint64_t v;
	int rc = 0;

	/* A wake-up left over from an earlier sleep must not end this one. */
	while (read(f->evfd, &v, sizeof(v)) > 0)
		;
	/* What was published and not yet announced goes first. */
	if (f->kick == DG_KICK_RDMA && f->db_sent != f->tx_tail)
		dg_doorbell(f);
	f->sleep_seq = (f->sleep_seq + 2) | 1;
	__atomic_store_n(&f->ctrl->sleep_rx, f->rx_tail, __ATOMIC_RELAXED);
	/*
	 * Shared memory: our sleep word before our last look at the ring;
	 * the engine publishes a frame, fences, then reads the word. One of
	 * us sees the other's store.
	 */
	__atomic_store_n(&f->ctrl->sleep_seq, f->sleep_seq, __ATOMIC_SEQ_CST);
	if (h->ep) {
		uint64_t ctrl = (uint64_t)((uint8_t *)f->ctrl - h->region);

		/*
		 * RDMA: the line goes to the engine's copy; its receive
		 * completion tells the engine at once. The engine compares
		 * the RX position we had reached with its own: if it wrote
		 * more meanwhile, it wakes us at once (docs/ARCHITECTURE.md).
		 */
		pthread_mutex_lock(&h->vlock);
		rc = dg_rdma_post_write_imm(
			h->ep, h->mr, &f->ctrl->tx_db, 16,
			h->shadow_addr + ctrl +
				offsetof(struct dg_flow_ctrl, tx_db),
			h->shadow_rkey, DG_IMM(DG_IMM_SLEEP, f->idx),
			wrid(WR_SLEEP, f->idx), 0);
		if (rc == -EAGAIN) {
			reap(h);
			rc = dg_rdma_post_write_imm(
				h->ep, h->mr, &f->ctrl->tx_db, 16,
				h->shadow_addr + ctrl +
					offsetof(struct dg_flow_ctrl, tx_db),
				h->shadow_rkey, DG_IMM(DG_IMM_SLEEP, f->idx),
				wrid(WR_SLEEP, f->idx), 0);
		}
		pthread_mutex_unlock(&h->vlock);
		if (rc)
			return rc;
	}
	if (rx_pending(f)) {
		__atomic_store_n(&f->ctrl->sleep_seq, f->sleep_seq + 1,
				 __ATOMIC_RELAXED);
		return -EAGAIN;
	}
	f->st.sleeps++;
	return 0;
}

/* Back from a sleep: awake again for a shared-memory engine. */
static void disarm(struct dg_flow *f)
{
	uint64_t v;

	__atomic_store_n(&f->ctrl->sleep_seq, f->sleep_seq + 1,
			 __ATOMIC_RELAXED);
	while (read(f->evfd, &v, sizeof(v)) > 0)
		;
}

int dg_flow_sleep(struct dg_flow *f, int timeout_ms, int also_fd)
{
	struct pollfd p[2] = {{.fd = f->evfd, .events = POLLIN},
			      {.fd = also_fd, .events = POLLIN}};
	int rc;

	if (f->evfd < 0 || f->busy_poll)
		return 0;
	rc = arm(f);
	if (rc)
		return rc == -EAGAIN ? 0 : rc;
	rc = poll(p, also_fd >= 0 ? 2 : 1, timeout_ms);
	/*
	 * Ran to the timeout with a frame waiting: the engine's wake-up did
	 * not come in time. Sleeps are bounded by a caller's deadline only,
	 * or not at all, so this is a lost (or grossly late) wake-up.
	 */
	if (rc == 0 && rx_pending(f))
		f->st.missed_wakes++;
	disarm(f);
	return rc < 0 ? -errno : 1;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

/*
 * The host's yield token for threads waiting for requests: the end of its
 * holder's yield phase (ns), 0 when free; one that has passed is free too,
 * so a holder that stops polling (its thread ended) keeps it no longer.
 */
static bool take_yield(struct dg_flow *f, uint64_t now, uint64_t end)
{
	uint64_t v = __atomic_load_n(&f->h->req_yielder, __ATOMIC_RELAXED);

	/* Nothing is handed over with the token: relaxed is enough. */
	if (v > now ||
	    !__atomic_compare_exchange_n(&f->h->req_yielder, &v, end, false,
					 __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		return false;
	f->yield_end = end;
	f->st.yield_phases++;
	f->yield_seen = __atomic_load_n(&f->h->req_events, __ATOMIC_RELAXED);
	return true;
}

static void unyield(struct dg_flow *f)
{
	uint64_t v = f->yield_end;

	if (!f->yielding)
		return;
	f->yielding = false;
	/* Only if still ours (it may have passed on after its end). */
	(void)__atomic_compare_exchange_n(&f->h->req_yielder, &v, 0, false,
					  __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

int dg_flow_idle(struct dg_flow *f, uint64_t *idle_since_ns, int timeout_ms,
		 int also_fd, int own_calls)
{
	uint64_t now = now_ns(), end;

	if (!*idle_since_ns) {
		/*
		 * A new idle spell. Work that came while this thread yielded
		 * waiting for requests was worth the wait: it may yield
		 * again. (One that yielded while other threads of the host
		 * got the requests skips its next phases: below.)
		 */
		if (f->yielding)
			f->yield_backoff = 0;
		if (!own_calls)
			__atomic_add_fetch(&f->h->req_events, 1,
					   __ATOMIC_RELAXED);
		unyield(f);
		f->yield_skip_spell = f->yield_skip > 0;
		if (f->yield_skip)
			f->yield_skip--;
		*idle_since_ns = now;
		return 0;
	}
	if (f->busy_poll || now - *idle_since_ns < f->spin_us * 1000ull)
		return 0;
	/*
	 * Then look on, giving the CPU away at each look: on fewer CPUs than
	 * pollers (two engines and their hosts on two vCPUs) the others run,
	 * and an answer or request due soon costs no sleep and wake-up. A
	 * thread waiting for answers to its own calls always does. Of the
	 * threads waiting for requests (a server's), one per host at a time
	 * (the token req_yielder), and only while no other thread of the host
	 * takes a request or is woken for one (req_events): a load balancer
	 * that spreads calls over many threads sends them to sleeping ones,
	 * and a thread that keeps yielding then only delays their wake-ups
	 * (measured: a client beside 64 server threads 3.6x slower with one
	 * such thread yielding on). The phase ends at the first such event,
	 * and the thread skips its next 1, 2, 4 ... 64 spells' phases; one
	 * that ran out with no request anywhere (slow traffic) does not.
	 */
	end = *idle_since_ns + ((uint64_t)f->spin_us + f->yield_us) * 1000ull;
	if (f->yielding && __atomic_load_n(&f->h->req_events,
					   __ATOMIC_RELAXED) != f->yield_seen) {
		f->st.yield_given_way++;
		f->yield_backoff = f->yield_backoff ? f->yield_backoff * 2 : 1;
		if (f->yield_backoff > 64)
			f->yield_backoff = 64;
		f->yield_skip = f->yield_backoff;
	} else if (now < end &&
		   (own_calls || f->yielding ||
		    (!f->yield_skip_spell && take_yield(f, now, end)))) {
		if (!own_calls)
			f->yielding = true;
		sched_yield();
		return 0;
	}
	unyield(f);
	return dg_flow_sleep(f, timeout_ms, also_fd);
}

int dg_flow_fd(struct dg_flow *f)
{
	return f->evfd;
}

int dg_flow_arm(struct dg_flow *f)
{
	int rc = dg_own(f);

	if (rc)
		return rc;
	return f->evfd < 0 ? -ENOTSUP : arm(f);
}

void dg_flow_disarm(struct dg_flow *f)
{
	if (!dg_own(f) && f->evfd >= 0)
		disarm(f);
}

void dg_flow_set_spin(struct dg_flow *f, uint32_t spin_us, int busy_poll)
{
	f->spin_us = spin_us;
	f->busy_poll = busy_poll != 0;
}

/* Wakes every flow's thread: the engine's connection is gone. */
static void wake_all(struct dg_host *h)
{
	uint64_t one = 1;
	uint32_t i;

	for (i = 0; i < h->nflows; i++)
		if (write(h->flows[i].evfd, &one, sizeof(one)) < 0)
			continue; /* full: it is awake anyway */
}

/*
 * The waker thread of an RDMA host: sleeps on the completion channel and
 * passes every wake-up from the engine on to its flow's eventfd (reap).
 * The flows' threads reap too, while they post doorbells. It also watches
 * the connection: when the engine goes (a disconnect, a failed queue),
 * every sleeping thread is woken, so that a wait never outlives the
 * engine and needs no timeout of its own to notice.
 */
static void *waker(void *arg)
{
	struct dg_host *h = arg;
	struct pollfd p[3] = {{h->waker_stop, POLLIN, 0},
			      {dg_rdma_ep_cq_fd(h->ep), POLLIN, 0},
			      {dg_rdma_ep_fd(h->ep), POLLIN, 0}};
	nfds_t np = 3;

	for (;;) {
		int rc;

		pthread_mutex_lock(&h->vlock);
		dg_rdma_ep_arm(h->ep);
		/* After arming: what came before it is taken here. */
		rc = reap(h);
		if (np == 3 && (rc < 0 || (p[2].revents &&
					   dg_rdma_ep_check(h->ep) != 0))) {
			np = 2; /* gone: nothing more to watch there */
			if (rc < 0)
				__atomic_store_n(&h->broken, 1,
						 __ATOMIC_RELEASE);
			wake_all(h);
		}
		pthread_mutex_unlock(&h->vlock);
		if (poll(p, np, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (p[1].revents)
			dg_rdma_ep_ack(h->ep);
	}
	return NULL;
}

/*
 * An RDMA host's receives for the engine's wake-ups, and its waker. The
 * receives are posted before the connection is made.
 */
int dg_wake_start(struct dg_host *h)
{
	uint32_t i;
	int rc;

	for (i = 0; i < DG_HOST_RECVS(h->nflows); i++) {
		rc = dg_rdma_post_recv0(h->ep, wrid(WR_RECV, 0));
		if (rc)
			return rc;
	}
	return 0;
}

static int waker_run(struct dg_host *h)
{
	h->waker_stop = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (h->waker_stop < 0)
		return -errno;
	if (pthread_create(&h->waker, NULL, waker, h)) {
		close(h->waker_stop);
		h->waker_stop = -1;
		return -EAGAIN;
	}
	h->waker_on = true;
	return 0;
}

int dg_wake_run(struct dg_host *h)
{
	return waker_run(h);
}

void dg_wake_stop(struct dg_host *h)
{
	uint64_t one = 1;

	if (!h->waker_on)
		return;
	if (write(h->waker_stop, &one, sizeof(one)) < 0)
		return;
	pthread_join(h->waker, NULL);
	close(h->waker_stop);
	h->waker_on = false;
}

/* ---- interface modes ----------------------------------------------------- */

int dg_mode_req(struct dg_flow *f)
{
	uint32_t r = __atomic_load_n(&f->ctrl->mode_req, __ATOMIC_RELAXED);
	int mode = (int)(r & 0xff);

	/* Our calls' completions must not meet the switch's reply. */
	if (dg_outstanding(f))
		return 0;
	/* Once per request; the switch's own polls see it taken. */
	f->mode_req_seen = r;
	/* A failure leaves the mode as it was: tenant list shows it. */
	if (mode > DG_MODE_DEFAULT && mode < DG_MODE_COUNT && mode != f->mode)
		(void)dg_flow_set_mode(f, mode, 10000);
	return 0;
}

int dg_flow_mode(const struct dg_flow *f)
{
	return f->h->ep ? f->mode : DG_MODE_POLL;
}

int dg_flow_set_mode(struct dg_flow *f, int mode, int timeout_ms)
{
	struct dg_ctrl_msg m = {.op = DG_CTRL_MODE, .lb = (uint8_t)mode};
	uint32_t after;
	int rc, st;

	if (mode <= DG_MODE_DEFAULT || mode >= DG_MODE_COUNT)
		return -EINVAL;
	rc = dg_own(f);
	if (rc)
		return rc;
	if (!f->h->ep)
		return 0; /* shared memory: polled in place, whatever the mode
			   */
	if (mode == f->mode)
		return 0;
	/*
	 * The message goes the current way; the engine switches when it
	 * takes it, so everything before it came the old way. What we write
	 * after it (a server answers while it waits) goes out the new way
	 * once the engine has answered: announced from just after it.
	 */
	after = f->tx_tail + dg_frames_for(sizeof(m));
	st = dg_ctrl_call(f, &m, timeout_ms, NULL);
	if (st)
		return dg_status_errno(st);
	f->mode = (uint8_t)mode;
	f->kick = mode == DG_MODE_POLL ? DG_KICK_NONE : DG_KICK_RDMA;
	if (f->kick == DG_KICK_RDMA) {
		/* Push what came after it; announce all of it. */
		f->db_sent = after;
		dg_doorbell(f);
	}
	return 0;
}
