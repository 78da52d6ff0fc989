// SPDX-License-Identifier: MIT
/*
 * torn_stress: a poller that reads host slots with RDMA READ never accepts a
 * half-written slot (dagger/ring.h, DG_RING_F_CSUM).
 *
 * The "host" side (passive, DG_RXE_ADDR0) registers a region laid out by
 * dg_region_layout(1, 64): one flow's control lines and a TX ring of 64
 * slots. A producer thread fills the ring with frames whose payload is
 * random and carries an independent check (FNV-1a over bytes 8..59, mixed
 * with the position: deliberately not CRC32C, so it shares no blind spot
 * with the slot checksum). It reuses a slot only when the poller's tx_head,
 * which the poller RDMA WRITEs into the host's control line, says so.
 *
 * About half of the slots are written in a deliberately bad order: the new
 * stamp first, then the body in pieces with short busy pauses, then the
 * checksum. That is exactly the state a READ overlapping the host's stores
 * can copy out, and the checksum must make it look "not yet written".
 *
 * The "poller" side (the engine's role, the main thread) connects over
 * rdma_cm, READs up to 16 slots at its position into a registered shadow,
 * accepts them in order while dg_slot_ready() holds and writes its new
 * position to tx_head (queued in front of its next READ).
 *
 * Phase 1 (csum): the engine's rule. Every frame must arrive in order and
 * no accepted frame may fail the independent check; slots with the new
 * stamp whose checksum fails are the torn reads the checksum caught.
 * Phase 2 (stamp-only): the same traffic, accepted on the stamp alone (the
 * shared-memory rule). Frames accepted that fail the independent check
 * must appear (torn reads are real on this device: how many depends on
 * timing, at least one is asserted), and each of them must be one the
 * checksum rejects.
 *
 * DG_TORN_FRAMES=n changes the frames per phase (default 100000) and
 * DG_TORN_SEED=s fixes the payload seed (default: from the clock; printed).
 * Every wait is a polling loop bounded by a deadline; nothing sleeps.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "dagger/frame.h"
#include "dagger/ring.h"
#include "dg_rdma.h"
#include "rxe_env.h"

#define SLOTS	       DG_MIN_SLOTS /* smallest ring: the most laps */
#define BATCH	       16u	    /* slots per READ at most */
#define DEFAULT_FRAMES 100000u
#define CHECK_OFF      (DG_FRAME_PAYLOAD - 4u) /* data[28..31]: the check */
#define CHECKED_LEN    (DG_FRAME_HDR - 8u + CHECK_OFF) /* bytes 8..59 */
/* Bad-order slots: the body goes in this many pieces, a pause after each. */
#define PIECES	       4u
#define PAUSE_NS       10000u

#define CONNECT_MS 10000
/* As in peer_link: connecting may spend CONNECT_MS on each of three steps. */
#define ACCEPT_MS  (4 * CONNECT_MS)
#define WC_MS	   10000  /* one completion */
#define STALL_MS   30000  /* no frame accepted / no room for this long */
#define PHASE_MS   300000 /* one phase, end to end */

static_assert(8u + CHECKED_LEN + 4u == DG_SLOT_SIZE, "all but the check");

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000ull + (uint64_t)t.tv_nsec;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/*
 * The independent check: FNV-1a over rpc_id .. data[35] (bytes 8..59),
 * started from a basis mixed with the position.
 */
static uint32_t indep_check(const struct dg_frame *f, uint32_t pos)
{
	const uint8_t *b = (const uint8_t *)f + 8;
	uint32_t h = 2166136261u ^ (pos * 0x9e3779b1u);
	size_t i;

	for (i = 0; i < CHECKED_LEN; i++) {
		h ^= b[i];
		h *= 16777619u;
	}
	return h;
}

/* What the poller verifies on every frame it accepts. */
static bool frame_intact(const struct dg_frame *f, uint32_t pos)
{
	uint32_t chk;

	memcpy(&chk, f->data + CHECK_OFF, sizeof(chk));
	return f->rpc_id == pos && chk == indep_check(f, pos);
}

/*
 * The rule without DG_RING_F_CSUM, copied here so that phase 2 does not
 * depend on how dg_slot_ready() treats the flag: the stamp alone. The
 * acquire load pairs with nothing remote (the READ completed before we
 * look); it mirrors dg_slot_ready().
 */
static bool stamp_only_ready(const struct dg_frame *slot, uint32_t pos)
{
	return __atomic_load_n(&slot->stamp, __ATOMIC_ACQUIRE) == dg_stamp(pos);
}

/* ---- busy pauses ---------------------------------------------------- */

static void spin(uint32_t n)
{
	while (n--)
		__asm__ __volatile__("" ::: "memory"); /* compiler barrier */
}

/* Iterations of spin() per PAUSE_NS, measured once (emulated CPUs vary). */
static uint32_t calibrate_pause(void)
{
	const uint32_t n = 1u << 20;
	uint64_t t0, dt;
	double per;

	spin(n); /* warm-up: an emulator translates the loop the first time */
	t0 = now_ns();
	spin(n);
	dt = now_ns() - t0;
	if (!dt)
		dt = 1;
	per = (double)n * PAUSE_NS / (double)dt;
	return per < 1 ? 1 : per > 1e7 ? 10000000u : (uint32_t)per;
}

/* ---- the host side ---------------------------------------------------- */

struct producer {
	/* in */
	struct dg_frame *ring;
	uint32_t *tx_head; /* the host's control word, RDMA-written */
	uint32_t start, count;
	uint64_t seed;
	uint32_t pause_spins;
	int *stop; /* set by the poller when it gives up */
	/* out */
	uint32_t produced; /* next position to write (relaxed, for messages) */
	uint32_t bad_order;
	int failed;
	char err[160];
};

/*
 * Waits until slot p may be written: p - tx_head < SLOTS. tx_head arrives
 * by RDMA WRITE, sent by the poller only after its READ of the slots below
 * it completed.
 */
static int wait_room(struct producer *pr, uint32_t p)
{
	uint64_t limit = 0;
	uint32_t spins = 0;

	for (;;) {
		/*
		 * Acquire: the stores that refill slot p must not be hoisted
		 * above the load that said the poller is done with its
		 * previous lap (on x86 a compiler barrier; the device's
		 * WRITE is ordinary memory traffic for us).
		 */
		uint32_t head = __atomic_load_n(pr->tx_head, __ATOMIC_ACQUIRE);

		if (p - head < SLOTS)
			return 0;
		/* Relaxed: a plain flag; nothing is published with it. */
		if (__atomic_load_n(pr->stop, __ATOMIC_RELAXED))
			return -1;
		if ((++spins & 1023) == 0) {
			uint64_t t = now_ns();

			if (!limit)
				limit = t + STALL_MS * 1000000ull;
			else if (t > limit) {
				snprintf(pr->err, sizeof(pr->err),
					 "producer: no room for position "
					 "%" PRIu32
					 " for %d ms (tx_head %" PRIu32 ")",
					 p, STALL_MS, head);
				return -1;
			}
			sched_yield(); /* let the rxe tasks run */
		}
	}
}

/* The frame for position p: random bytes, fixed header, the check. */
static void make_frame(struct dg_frame *f, uint32_t p, uint64_t *rng)
{
	uint64_t w[(CHECK_OFF + 7) / 8];
	uint32_t chk;

	memset(f, 0, sizeof(*f));
	f->rpc_id = p;
	f->conn = p & 0xffff;
	f->fn_id = 7;
	f->cnt = 1;
	f->len = DG_FRAME_PAYLOAD;
	f->flags = DG_FF_REQ;
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++)
		w[i] = splitmix64(rng);
	memcpy(f->data, w, CHECK_OFF);
	chk = indep_check(f, p);
	memcpy(f->data + CHECK_OFF, &chk, sizeof(chk));
}

/* The right way: body in place, then dg_slot_publish() (stamp last). */
static void write_good(struct dg_frame *slot, const struct dg_frame *f,
		       uint32_t p)
{
	memcpy((uint8_t *)slot + 8, (const uint8_t *)f + 8, DG_SLOT_SIZE - 8);
	/* csum, then the release store of the stamp (see dagger/ring.h). */
	dg_slot_publish(slot, p, DG_RING_F_CSUM);
}

/*
 * ON PURPOSE the wrong way round: new stamp first, the body in PIECES
 * pieces (starting at a random one) with a busy pause after each, the
 * checksum last. Between the first and the last store the slot carries the
 * new stamp over a mix of old and new bytes under the previous lap's
 * checksum: a READ that lands in that window copies a torn slot, which
 * is exactly what the checksum has to survive. The end state is the same
 * as dg_slot_publish() leaves.
 */
static void write_bad(struct dg_frame *slot, const struct dg_frame *f,
		      uint32_t p, uint32_t first, uint32_t pause)
{
	const uint32_t body = DG_SLOT_SIZE - 8, piece = body / PIECES;
	uint32_t stamp = dg_stamp(p);
	uint32_t csum = dg_slot_csum(f, stamp);
	uint32_t k;

	static_assert((DG_SLOT_SIZE - 8) % PIECES == 0, "even pieces");
	/* Relaxed: nothing is ordered before the stamp here, on purpose. */
	__atomic_store_n(&slot->stamp, stamp, __ATOMIC_RELAXED);
	/*
	 * Release fence: keeps the stamp store ahead of the body stores that
	 * follow (for the compiler; x86 stores are not reordered among
	 * themselves anyway), so the device really sees the bad order.
	 */
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (k = 0; k < PIECES; k++) {
		uint32_t off = 8 + ((first + k) % PIECES) * piece;

		memcpy((uint8_t *)slot + off, (const uint8_t *)f + off, piece);
		/* Same fence: this piece is out before the pause starts. */
		__atomic_thread_fence(__ATOMIC_RELEASE);
		spin(pause);
	}
	/* Release: every body store is ordered before the checksum. */
	__atomic_store_n(&slot->csum, csum, __ATOMIC_RELEASE);
}

static void *producer_main(void *arg)
{
	struct producer *pr = arg;
	uint64_t rng = pr->seed;
	uint32_t i;

	for (i = 0; i < pr->count; i++) {
		uint32_t p = pr->start + i;
		struct dg_frame *slot = &pr->ring[p % SLOTS];
		struct dg_frame f;
		uint64_t r;

		if (wait_room(pr, p)) {
			/* Release: pr->err is written before the flag. */
			__atomic_store_n(&pr->failed, 1, __ATOMIC_RELEASE);
			break;
		}
		make_frame(&f, p, &rng);
		r = splitmix64(&rng);
		if (r & 1) {
			write_bad(slot, &f, p, (uint32_t)(r >> 8) % PIECES,
				  pr->pause_spins);
			pr->bad_order++;
		} else {
			write_good(slot, &f, p);
		}
		/* Relaxed: a progress counter for messages only. */
		__atomic_store_n(&pr->produced, p + 1, __ATOMIC_RELAXED);
	}
	return NULL;
}

struct host {
	struct dg_rdma_listener *l;
	struct dg_rdma_ep *ep;
	struct dg_rdma_mr *mr;
	uint8_t *region;
	struct dg_flow_ctrl *ctrl;
	struct dg_frame *ring;
	int rc;
};

/* Accepts the poller, registers the region, returns its description. */
static void *host_accept(void *arg)
{
	struct host *h = arg;
	struct dg_rdma_ep_attr attr = {.sq_depth = 16};
	struct dg_region_layout lay;
	struct dg_rdma_remote r;
	char pd[DG_RDMA_CONNECT_PDATA_MAX];
	size_t plen = sizeof(pd);

	dg_region_layout(1, SLOTS, &lay);
	h->rc = dg_rdma_listener_next(h->l, &attr, ACCEPT_MS, pd, &plen,
				      &h->ep);
	if (h->rc)
		return NULL;
	h->rc = dg_rdma_reg(h->ep, h->region, lay.total,
			    DG_RDMA_ACC_REMOTE_READ | DG_RDMA_ACC_REMOTE_WRITE,
			    &h->mr);
	if (h->rc)
		return NULL;
	r = dg_rdma_mr_remote(h->mr);
	h->rc = dg_rdma_ep_accept(h->ep, &r, sizeof(r), ACCEPT_MS);
	return NULL;
}

/* ---- the poller side -------------------------------------------------- */

struct stats {
	const char *name;
	uint32_t frames;	  /* accepted in order */
	uint64_t reads;		  /* READ completions */
	uint64_t torn;		  /* new stamp, checksum failed: rejected */
	uint64_t not_yet;	  /* stopped at a slot with an older stamp */
	uint64_t corrupt;	  /* accepted but failed rpc_id/indep check */
	uint64_t corrupt_csum_ok; /* of those, passing the checksum too */
	uint64_t stale_csum;	  /* accepted, intact, checksum not yet right */
	uint32_t bad_order;	  /* slots the producer wrote the bad way */
	double secs;
};

struct fixture {
	struct host host;
	struct dg_rdma_ep *ep;
	struct dg_rdma_mr *mr;
	struct dg_frame *shadow; /* SLOTS slots, then one line for tx_head */
	uint32_t *head_src;	 /* the value the tx_head WRITE sends */
	uint64_t ring_raddr, head_raddr;
	uint32_t rkey;
	uint32_t pos;	    /* poller position, free-running across phases */
	uint32_t head_sent; /* last tx_head value written to the host */
	uint32_t frames;    /* per phase */
	uint64_t seed;
	uint32_t pause_spins;
	int stop;
	bool broken;
	char err[200];
};

static int fixture_fail(struct fixture *f, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int fixture_fail(struct fixture *f, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(f->err, sizeof(f->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* Waits (bounded) for the completion of wr_id. */
static int wait_wc(struct fixture *f, uint64_t wr_id)
{
	uint64_t limit = 0;
	uint32_t spins = 0;
	struct dg_rdma_wc wc;

	for (;;) {
		int n = dg_rdma_poll(f->ep, &wc, 1);

		if (n < 0)
			return fixture_fail(f, "dg_rdma_poll: %d", n);
		if (n == 1) {
			if (wc.status)
				return fixture_fail(
					f, "completion %" PRIu64 ": %s (%d)",
					wc.wr_id, dg_rdma_wc_str(&wc),
					wc.status);
			if (wc.wr_id != wr_id)
				return fixture_fail(f,
						    "completion %" PRIu64
						    ", expected %" PRIu64,
						    wc.wr_id, wr_id);
			return 0;
		}
		if ((++spins & 255) == 0) {
			uint64_t t = now_ns();

			if (!limit)
				limit = t + WC_MS * 1000000ull;
			else if (t > limit)
				return fixture_fail(
					f, "no completion for %d ms", WC_MS);
		}
	}
}

/*
 * One READ round: the new tx_head (when it moved) and the READ of up to
 * BATCH slots at pos, one doorbell, one completion.
 */
static int read_round(struct fixture *f, uint32_t idx, uint32_t n,
		      uint64_t wr_id)
{
	int rc;

	if (f->pos != f->head_sent) {
		/*
		 * head_src is free to change: the previous WRITE from it was
		 * followed by a signaled READ on the same send queue, whose
		 * completion (waited for) implies the WRITE's.
		 */
		*f->head_src = f->pos;
		/*
		 * tx_head = pos tells the host that every slot below pos is
		 * consumed. Only READs that already completed covered those
		 * slots, and the READ below starts at pos, so the host can
		 * never refill a slot a READ is still copying.
		 */
		rc = dg_rdma_post_write(f->ep, f->mr, f->head_src,
					sizeof(*f->head_src), f->head_raddr,
					f->rkey, wr_id, DG_RDMA_MORE);
		if (rc)
			return fixture_fail(f, "post WRITE tx_head: %d", rc);
		f->head_sent = f->pos;
	}
	/*
	 * RC executes the WRITE before this READ at the responder, so the host
	 * may already be refilling slots below pos + SLOTS while the READ
	 * copies: those are exactly the slots it may tear.
	 */
	rc = dg_rdma_post_read(f->ep, f->mr, &f->shadow[idx], n * DG_SLOT_SIZE,
			       f->ring_raddr + (uint64_t)idx * DG_SLOT_SIZE,
			       f->rkey, wr_id, DG_RDMA_SIGNALED | DG_RDMA_MORE);
	if (rc)
		return fixture_fail(f, "post READ: %d", rc);
	rc = dg_rdma_flush(f->ep);
	if (rc)
		return fixture_fail(f, "flush: %d", rc);
	/* The completion orders the shadow's bytes before our loads. */
	return wait_wc(f, wr_id);
}

/*
 * Consumes the shadow's slots idx..idx+n-1 from f->pos on; stops at the
 * first one not ready. csum selects the engine's rule or stamp-only.
 */
static void scan(struct fixture *f, uint32_t idx, uint32_t n, bool csum,
		 uint32_t end, struct stats *st)
{
	uint32_t k;

	for (k = 0; k < n && f->pos != end; k++) {
		const struct dg_frame *s = &f->shadow[idx + k];
		bool ok_csum = dg_slot_ready(s, f->pos, DG_RING_F_CSUM);
		bool ready = csum ? ok_csum : stamp_only_ready(s, f->pos);

		if (!ready) {
			/* New stamp, bad checksum: a torn copy, caught. */
			if (stamp_only_ready(s, f->pos))
				st->torn++;
			else
				st->not_yet++;
			return;
		}
		if (!frame_intact(s, f->pos)) {
			if (st->corrupt == 0)
				print_message(
					"# %s: pos %" PRIu32
					" accepted corrupt (rpc_id %" PRIu32
					", csum %s)\n",
					st->name, f->pos, s->rpc_id,
					ok_csum ? "ok" : "bad");
			st->corrupt++;
			if (ok_csum)
				st->corrupt_csum_ok++;
		} else if (!ok_csum) {
			st->stale_csum++;
		}
		f->pos++;
		st->frames++;
	}
}

/* Runs one phase of f->frames frames; 0, or -1 with f->err set. */
static int run_phase(struct fixture *f, bool csum, struct stats *st)
{
	struct producer pr = {
		.ring = f->host.ring,
		.tx_head = &f->host.ctrl->tx_head,
		.start = f->pos,
		.count = f->frames,
		.seed = f->seed ^ (csum ? 0 : 0x5bd1e995u),
		.pause_spins = f->pause_spins,
		.stop = &f->stop,
	};
	uint32_t end = f->pos + f->frames, last_pos = f->pos;
	uint64_t t0 = now_ns(), wr_id = 0, last_t = t0;
	pthread_t thr;
	int rc = 0;

	/* Relaxed: the thread start below orders it before the producer. */
	__atomic_store_n(&f->stop, 0, __ATOMIC_RELAXED);
	if (pthread_create(&thr, NULL, producer_main, &pr))
		return fixture_fail(f, "pthread_create failed");
	while (f->pos != end) {
		uint32_t idx = f->pos % SLOTS;
		uint32_t n = SLOTS - idx < BATCH ? SLOTS - idx : BATCH;

		if (end - f->pos < n)
			n = end - f->pos;
		rc = read_round(f, idx, n, ++wr_id);
		if (rc)
			break;
		st->reads++;
		scan(f, idx, n, csum, end, st);
		if ((wr_id & 63) == 0 || f->pos == last_pos) {
			uint64_t t = now_ns();

			if (f->pos != last_pos) {
				last_pos = f->pos;
				last_t = t;
			}
			/* Acquire: pairs with the producer's release. */
			if (__atomic_load_n(&pr.failed, __ATOMIC_ACQUIRE)) {
				rc = fixture_fail(f, "%s", pr.err);
				break;
			}
			if (t - last_t > STALL_MS * 1000000ull ||
			    t - t0 > PHASE_MS * 1000000ull) {
				rc = fixture_fail(
					f,
					"poller stuck at %" PRIu32
					" (producer at %" PRIu32
					", end %" PRIu32 ")",
					f->pos,
					__atomic_load_n(&pr.produced,
							__ATOMIC_RELAXED),
					end);
				break;
			}
		}
	}
	/* Relaxed: a plain flag; pthread_join below is the real sync. */
	__atomic_store_n(&f->stop, 1, __ATOMIC_RELAXED);
	pthread_join(thr, NULL); /* orders all of pr's fields before ours */
	if (!rc && pr.failed)
		rc = fixture_fail(f, "%s", pr.err);
	st->bad_order = pr.bad_order;
	st->secs = (double)(now_ns() - t0) / 1e9;
	if (rc)
		f->broken = true;
	return rc;
}

static void print_stats(const struct stats *st)
{
	print_message("# %s: %" PRIu32 " frames (%" PRIu32
		      " written in the bad order), %" PRIu64
		      " torn reads caught, %" PRIu64 " reads (%" PRIu64
		      " stopped at an older stamp), elapsed %.1f s\n",
		      st->name, st->frames, st->bad_order, st->torn, st->reads,
		      st->not_yet, st->secs);
	print_message("# %s: %" PRIu64 " accepted corrupt (%" PRIu64
		      " of them passing the checksum too), %" PRIu64
		      " accepted intact before their checksum\n",
		      st->name, st->corrupt, st->corrupt_csum_ok,
		      st->stale_csum);
}

/* ---- set-up ------------------------------------------------------------ */

static uint32_t env_u32(const char *name, uint32_t dflt)
{
	const char *s = getenv(name);

	return s && *s ? (uint32_t)strtoul(s, NULL, 0) : dflt;
}

static int setup(void **state)
{
	struct dg_rdma_ep_attr attr = {.sq_depth = 64, .rd_depth = 4};
	struct fixture *f = calloc(1, sizeof(*f));
	struct dg_region_layout lay;
	struct dg_rdma_remote remote;
	size_t rlen = sizeof(remote);
	const char *seed = getenv("DG_TORN_SEED");
	/* The shadow ring, then one line for head_src. */
	size_t shadow_len = (SLOTS + 1) * DG_SLOT_SIZE;
	pthread_t thr;
	int rc;

	assert_non_null(f);
	assert_int_equal(dg_region_layout(1, SLOTS, &lay), 0);
	f->frames = env_u32("DG_TORN_FRAMES", DEFAULT_FRAMES);
	assert_true(f->frames > 0);
	f->seed = seed && *seed ? strtoull(seed, NULL, 0) : now_ns();
	f->pause_spins = calibrate_pause();
	print_message("# seed %" PRIu64 ", %" PRIu32 " frames per phase, "
		      "%u ns pause = %" PRIu32 " spins\n",
		      f->seed, f->frames, PAUSE_NS, f->pause_spins);

	f->host.region = aligned_alloc(4096, (lay.total + 4095) & ~4095ull);
	f->shadow = aligned_alloc(4096, (shadow_len + 4095) & ~(size_t)4095);
	assert_non_null(f->host.region);
	assert_non_null(f->shadow);
	memset(f->host.region, 0, lay.total); /* stamp 0: never a frame */
	memset(f->shadow, 0, shadow_len);
	f->host.ctrl =
		(struct dg_flow_ctrl *)(f->host.region + dg_ctrl_off(&lay, 0));
	f->host.ring =
		(struct dg_frame *)(f->host.region + dg_tx_ring_off(&lay, 0));
	f->head_src = (uint32_t *)&f->shadow[SLOTS];

	rc = dg_rdma_listen(dg_rxe_addr(0), 0, 4, &f->host.l);
	assert_int_equal(rc, 0);
	assert_int_equal(pthread_create(&thr, NULL, host_accept, &f->host), 0);
	rc = dg_rdma_ep_create(dg_rxe_src(), dg_rxe_addr(0),
			       dg_rdma_listener_port(f->host.l), &attr,
			       CONNECT_MS, &f->ep);
	if (!rc)
		rc = dg_rdma_reg(f->ep, f->shadow, shadow_len,
				 DG_RDMA_ACC_LOCAL_WRITE, &f->mr);
	if (!rc)
		rc = dg_rdma_ep_connect(f->ep, "torn", 4, &remote, &rlen,
					CONNECT_MS);
	pthread_join(thr, NULL); /* bounded: ACCEPT_MS */
	assert_int_equal(rc, 0);
	assert_int_equal(f->host.rc, 0);
	assert_true(rlen >= sizeof(remote));
	assert_true(remote.len >= lay.total);
	f->ring_raddr = remote.addr + dg_tx_ring_off(&lay, 0);
	f->head_raddr = remote.addr + dg_ctrl_off(&lay, 0) +
			offsetof(struct dg_flow_ctrl, tx_head);
	f->rkey = remote.rkey;
	print_message("# connected %s -> %s\n", dg_rdma_ep_device(f->ep),
		      dg_rdma_ep_device(f->host.ep));
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	dg_rdma_dereg(f->mr);
	dg_rdma_ep_destroy(f->ep);
	dg_rdma_dereg(f->host.mr);
	dg_rdma_ep_destroy(f->host.ep);
	dg_rdma_listener_destroy(f->host.l);
	free(f->shadow);
	free(f->host.region);
	free(f);
	return 0;
}

/* ---- the tests --------------------------------------------------------- */

/* The engine's rule: every frame, in order, none corrupt. */
static void test_csum_rejects_torn(void **state)
{
	struct fixture *f = *state;
	struct stats st = {.name = "csum"};
	uint32_t start = f->pos;
	int rc;

	rc = run_phase(f, true, &st);
	print_stats(&st);
	if (rc)
		fail_msg("%s", f->err);
	assert_int_equal(f->pos - start, f->frames);
	assert_int_equal(st.frames, f->frames);
	assert_int_equal(st.corrupt, 0);
}

/*
 * Stamp only: the shared-memory rule on the same traffic accepts torn
 * slots, and each of them is one the checksum rule rejects. This is the
 * evidence that the checksum is needed over RDMA (and that phase 1's
 * "none corrupt" was tested against real torn reads): at least one frame
 * accepted on its stamp alone fails the independent check, and none of
 * those passes dg_slot_ready() with DG_RING_F_CSUM.
 */
static void test_stamp_only_evidence(void **state)
{
	struct fixture *f = *state;
	struct stats st = {.name = "stamp-only"};
	int rc;

	if (f->broken)
		fail_msg("the csum phase left the fixture broken");
	rc = run_phase(f, false, &st);
	print_stats(&st);
	if (rc)
		fail_msg("%s", f->err);
	print_message("# stamp-only: %" PRIu64 " torn frames accepted, %" PRIu64
		      " of them with a valid checksum\n",
		      st.corrupt, st.corrupt_csum_ok);
	assert_true(st.bad_order > 0);
	assert_true(st.corrupt > 0);
	assert_int_equal(st.corrupt_csum_ok, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csum_rejects_torn),
		cmocka_unit_test(test_stamp_only_evidence),
	};

	dg_rxe_require();
	return cmocka_run_group_tests_name("torn_stress", tests, setup,
					   teardown);
}
