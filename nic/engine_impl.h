/* SPDX-License-Identifier: MIT */
/*
 * engine_impl.h - the NIC engine's private state, shared by its files (one
 * per NIC block, after Dagger's hardware blocks and eRPC's rpc_impl):
 *
 *   tx.c      TX poller: READs of host TX rings, whole-message parsing,
 *             routing of requests and responses
 *   rx.c      RX delivery into host RX rings, credits
 *   lb.c      services and load balancing
 *   conn.c    connection table, pending-call tracking
 *   ctrl.c    host control messages (REGISTER, OPEN, CLOSE)
 *   route.c   peer routing: links to other engines
 *   tenant.c  tenants: attach (RDMA, shared memory, in-process), detach
 *   shm.c     the engine daemon's unix socket: shared-memory attaches
 *   loop.c    the loop, idle back-off, create/destroy
 *   stats.c   counters
 *   ctl.c     the control socket (dagger-ctl): statistics as JSON, live
 *             settings, tenants and services, reload
 *   payload.c large messages: the staging pool, payload transfers (one
 *             READ and one WRITE, or a copy), between engines too
 *
 * Nothing here is part of the engine's API (engine.h).
 *
 * Messages move through the engine without staging copies: the TX poller
 * takes a copy of a message's first frame (its header, validated once, and
 * the first 32 payload bytes: struct msg), and every destination (an RX
 * ring, a peer link) copies the continuation frames straight from where
 * they lie (the tenant's TX ring, its shadow, or a peer link's FIFO).
 */
#ifndef DG_NIC_ENGINE_IMPL_H
#define DG_NIC_ENGINE_IMPL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "dagger/ctrl.h"
#include "dagger/ring.h"
#include "dg_hist.h"
#include "dg_rdma.h"
#include "engine.h"
#include "hostmem.h"
#include "peer.h"

#define MAX_TENANTS	     64
#define MAX_CONNS	     4096
#define MAX_SERVICES	     64
#define MAX_SERVERS	     64 /* (tenant, flow) pairs per service */
/*
 * One tenant's share (DG_ST_QUOTA beyond it): connections it opened, and
 * services it created by registering first.
 */
#define TENANT_MAX_CONNS     (MAX_CONNS / 4)
#define TENANT_MAX_SERVICES  (MAX_SERVICES / 4)
/*
 * Tenants one identity may attach (-EDQUOT beyond): a shared-memory user,
 * an RDMA source address. In-process tenants are the engine's own.
 */
#define IDENT_MAX_TENANTS    (MAX_TENANTS / 4)
#define NO_IDX		     0xffffu
#define SVC_LOOPBACK	     0xfffeu	 /* conn.svc of DG_LOOPBACK_SERVICE */
#define NO_CONN		     0xffffffffu /* never a DG_CONN_ID (bit 31 is clear) */
#define MAX_PEERS	     16
#define PEER_FIFO	     4096u     /* frames; > DG_MAX_FRAMES + a batch */
#define PEER_UNBIND_Q	     MAX_CONNS /* one per connection at most */
#define MAX_CONNECTS	     8	       /* peer links being made at once */
#define MAX_WAITING	     256       /* OPENs waiting for those links */
#define NO_PEER		     0xffffu   /* a BINDING conn waiting for a link */
#define MAX_SHM_PENDING	     16 /* unix-socket attaches not yet complete */
#define MAX_ACCEPTING	     16 /* RDMA connections accepted, not established */
#define ACCEPT_MS	     5000 /* how long they may take to establish */
/* Receives an RDMA tenant keeps posted for its doorbells and sleeps. */
/*
 * Per flow at most one doorbell is in flight, and a sleep for each time
 * its thread went to sleep since we last reaped; room for a burst of
 * those, so that a host waits for a receive (RNR) only when this loop
 * has not run for a long while.
 */
#define TENANT_RECVS(nflows) (8u * (nflows) + 64u)

#define LIKELY(x)   __builtin_expect(!!(x), 1)
#define UNLIKELY(x) __builtin_expect(!!(x), 0)

enum tag_kind {
	TAG_TXREAD = 1,
	TAG_RXHEAD = 2,
	TAG_WRITE = 3,
	TAG_RECV = 4,	/* a receive for a host's WRITE WITH IMMEDIATE */
	TAG_NOTIFY = 5, /* a WRITE WITH IMMEDIATE that wakes a host flow */
	TAG_PAY = 6,	/* a payload READ or WRITE: seg is the transfer */
};

enum drop_reason {
	DROP_BAD_LEN = DG_NIC_DROP_BAD_LEN,
	DROP_BAD_FLAGS = DG_NIC_DROP_BAD_FLAGS,
	DROP_BAD_CONN = DG_NIC_DROP_BAD_CONN,
	DROP_BAD_CTRL = DG_NIC_DROP_BAD_CTRL,
	DROP_TOO_BIG = DG_NIC_DROP_TOO_BIG,
	DROP_NO_REQUEST = DG_NIC_DROP_NO_REQUEST,
	DROP_BAD_PAY = DG_NIC_DROP_BAD_PAY,
	DROP_NREASONS = DG_NIC_DROP_N,
};

struct flow_stats {
	uint64_t rpcs_tx, frames_tx, bytes_tx; /* read from the host */
	uint64_t rpcs_rx, frames_rx;	       /* delivered to the host */
	uint64_t reads, read_slots, writes;
	uint64_t drops[DROP_NREASONS];
	/*
	 * Requests answered BUSY: to this server flow (its RX ring full, or
	 * 2 x slots requests held), or from this client flow (2 x slots of
	 * its calls waiting on peer links).
	 */
	uint64_t busy;
	uint64_t stalled;	   /* iterations an RPC waited for room */
	uint64_t doorbells, wakes; /* received; sent to its sleeping thread */
	/*
	 * Answers to this flow (a client) dropped because its RX ring stayed
	 * full past the hold bound; it was told DG_ST_DROPPED instead.
	 */
	uint64_t dropped;
	uint64_t pay_tx, pay_rx; /* large messages taken, delivered */
};

/* d += s, counter by counter. */
static inline void nic_flow_stats_add(struct flow_stats *d,
				      const struct flow_stats *s)
{
	uint32_t r;

	d->rpcs_tx += s->rpcs_tx;
	d->frames_tx += s->frames_tx;
	d->bytes_tx += s->bytes_tx;
	d->rpcs_rx += s->rpcs_rx;
	d->frames_rx += s->frames_rx;
	d->reads += s->reads;
	d->read_slots += s->read_slots;
	d->writes += s->writes;
	d->busy += s->busy;
	d->stalled += s->stalled;
	d->doorbells += s->doorbells;
	d->wakes += s->wakes;
	d->dropped += s->dropped;
	d->pay_tx += s->pay_tx;
	d->pay_rx += s->pay_rx;
	for (r = 0; r < DROP_NREASONS; r++)
		d->drops[r] += s->drops[r];
}

/*
 * A whole message being routed: a copy of its first frame (taken once,
 * then validated: the host may rewrite its ring while we look) and where
 * its continuation frames lie: ring[(pos + i) & mask] for i in 1..cnt-1.
 * A large message (DG_FF_PAY): where its len payload bytes are now (the
 * staging pool, or a shared-memory sender's payload area) and the
 * transfer that holds them in the pool (NO_XFER: none).
 */
struct msg {
	struct dg_frame h;
	const struct dg_frame *ring;
	uint32_t pos, mask;
	const uint8_t *pay;
	uint32_t px;
};

/* ---- large messages (payload.c) ----------------------------------------- */

#define MAX_XFERS 1024u
#define NO_XFER	  0xffffffffu
/* Delivered large messages a flow's host has not released yet. */
#define RXP_Q	  256u

/*
 * A payload transfer: len bytes of the staging pool (the local part, or
 * the part peer engines may READ from), and who holds them.
 */
enum xfer_state {
	X_FREE = 0,
	X_READ,	 /* a READ into the pool is in flight (tenant or link) */
	X_READY, /* the bytes are in the pool; the message waits to be routed */
	X_WRITE, /* a WRITE out of the pool into a tenant is in flight */
	X_SENT,	 /* sent to a peer engine, which READs it and says done */
};

enum { ARENA_LOCAL = 0, ARENA_PEER = 1 };

struct xfer {
	uint8_t state, arena;
	uint16_t tenant, peer; /* the holder (NO_IDX: not that kind) */
	uint16_t qt;	       /* the tenant whose staging quota it uses */
	uint32_t off, len;     /* in the arena */
	uint32_t ent;	       /* the arena's allocation */
	uint32_t rpos;	       /* a peer's READ: where, in its send area */
	uint32_t rtag;	       /* ... and its transfer, echoed when done */
	uint32_t next;	       /* free list */
};

/*
 * A byte ring with frees in any order: allocations are contiguous (one
 * that would run past the end starts over at the beginning) and are given
 * back when done; the ring's tail moves past every done allocation at its
 * head. Live allocations are bounded by ents.
 */
struct arena {
	uint8_t *base;
	uint64_t size, head, tail, used;
	uint64_t *ent_end; /* per allocation: where it ends; bit 63: done */
	uint32_t ehead, etail, emask;
};

struct pending {
	uint32_t rpc;
	uint32_t conn; /* as delivered to the server, or the client's REMOTE
			  connection; NO_CONN: answered */
	uint16_t fn;
	uint16_t svc;  /* delivered by nic_svc_deliver: its service */
	uint64_t t_ns; /* when (nic_clock); 0: not a service's request */
};

/*
 * An answer a client flow is owed (nic_owe): a status that takes the
 * place of a response it had no room for, sent once it has room.
 */
struct owed {
	uint32_t rpc, conn;
	uint16_t fn;
	uint8_t status;
	uint8_t flags; /* DG_FF_RESP: a call's answer; DG_FF_CTRL: a reply */
};

/* A request (by rpc id) that found its server's ring full once. */
struct busy {
	bool armed;
	uint32_t rpc;
	uint16_t tenant, flow; /* the server flow the retry must go to */
};

struct flow {
	/* Where the rings are: the shadow (RDMA) or the host's memory. */
	struct dg_frame *txr, *rxr;
	struct dg_flow_ctrl *ctrl;
	/*
	 * RDMA tenants: the interface mode (enum dg_mode) and, in doorbell
	 * and push modes, the TX position the host announced last.
	 */
	uint8_t mode;
	uint32_t db;
	uint32_t mode_req_seq; /* dagger-ctl set mode: requests sent */
	/*
	 * Sleep and wake-up: the host's sleep_seq while its thread sleeps
	 * (odd; 0: awake), the one last woken, and (RDMA) a wake-up to send
	 * with the next flush. Direct tenants: the flow's eventfd, and
	 * whether a delivery this loop iteration wants its sleep looked at.
	 */
	uint32_t sleep_seq, woken_seq;
	bool wake_due, delivered;
	int wake_fd;
	/* TX ring: the host produces, we consume. */
	uint32_t tx_tail;      /* next position to consume */
	uint32_t tx_head_sent; /* tx_head last written to the host */
	uint32_t tx_want;      /* slots the next READ must cover */
	uint32_t read_pending; /* READ segments in flight */
	uint32_t read_pos, read_n;
	/* Adaptive polling (tenant_poll): READs in a row that found nothing,
	 * and when an idle flow is READ next (0: not scheduled yet). */
	uint32_t idle_reads;
	uint64_t next_read_us;
	/* Slots the next READ covers (tx_process sizes it; 0: READ_MIN). */
	uint32_t read_size;
	bool blocked; /* the last tx_process stopped at an RPC it must retry */
	/* RX ring: we produce, the host consumes. */
	uint32_t rx_tail;     /* next position to produce */
	uint32_t rx_head;     /* host's consumer index, as last read */
	uint32_t rx_dirty;    /* first produced position not yet written */
	bool rx_head_pending; /* a READ of rx_head is in flight */
	struct busy busy;
	/*
	 * Large messages. px: the transfer of the large message at tx_tail
	 * (a READ of its payload, then its bytes in the pool), px_pos its
	 * position, px_h its header as taken when the READ began (routed
	 * with that, whatever the ring says later). pay_head: the host's TX
	 * payload area is consumed up to here (told like tx_head). rxp_*:
	 * the RX payload area we fill: allocated up to rxp_tail, released
	 * up to rxp_free (the host releases a payload with its frame's RX
	 * slot: rxp_q remembers, per delivered message, the RX position
	 * past its frame and the payload position past its bytes).
	 */
	uint32_t px, px_pos;
	struct dg_frame px_h;
	uint32_t pay_head, pay_head_sent;
	uint32_t rxp_tail, rxp_free;
	uint32_t (*rxp_q)[2];
	uint32_t rxp_qh, rxp_qt;
	/*
	 * Requests not yet answered, in the order they were handed on:
	 * those delivered to this flow as a server (if the tenant dies, each
	 * caller is answered UNREACHABLE instead of waiting forever), and
	 * those this flow sent as a client through a peer link (if the link
	 * dies, this flow gets UNREACHABLE for each). Responses mostly come
	 * in order, so the head is usually matched by the next one.
	 */
	struct pending *pend;
	uint32_t pend_head, pend_tail, pend_mask;
	/*
	 * Client side: answers owed (a ring of pend_mask + 1). A response
	 * that found this flow's RX ring full for longer than the hold bound
	 * was dropped and is owed as DG_ST_DROPPED (an answer to a dead
	 * server's call, as DG_ST_UNREACHABLE); nic_owed_flush sends them as
	 * room appears. While any is owed, responses that find no room are
	 * not held at all, and the flow's new requests wait in its TX ring.
	 */
	struct owed *owed;
	uint32_t owed_head, owed_tail;
	/*
	 * Server side: since when (nic_clock) the response at the head of
	 * this flow's TX ring has waited for room at its client; 0: none.
	 */
	uint64_t hold_ns;
	struct flow_stats st;
};

/* A tenant with no identity to share (RDMA, fuzz harnesses). */
#define NO_UID (-1)

struct tenant {
	bool used;
	/*
	 * Its identity, for joining another's service: the engine's user
	 * (in-process tenants), the peer's user (shared memory: SO_PEERCRED),
	 * NO_UID (RDMA: nothing authenticates it).
	 */
	int64_t uid;
	/* RDMA: the source address it attached from (addr_set). */
	uint8_t addr[16];
	bool addr_set;
	bool dead;
	bool draining;	/* its server flows take no new requests (ctl) */
	bool accepting; /* its connection is not established yet */
	bool direct;	/* hm->direct: rings in place, no READ/WRITE */
	bool delivered; /* direct: some flow's delivered flag is set */
	int *fds;	/* shm: eventfds received with the attach (closed) */
	struct dg_hostmem *hm;
	struct dg_region_layout lay;
	uint32_t nflows, slots, mask, rflags;
	struct flow *flows;
	void *local_region; /* in-process host: its region */
	struct dg_nic *nic;
	/* RDMA: the staging pool registered with this tenant's PD. */
	struct dg_rdma_mr *pool_mr;
	uint64_t stage_used; /* staging bytes its READs hold (a quota) */
};

struct server_ref {
	uint16_t tenant, flow;
};

/* Key-based load balancing: hash slots, each owned by one server flow. */
#define KEY_SLOTS 4096u

struct svc_stats {
	uint64_t requests;    /* delivered to a server flow */
	uint64_t busy;	      /* answered BUSY */
	uint64_t unreachable; /* answered UNREACHABLE (no server there) */
	struct dg_hist lat;   /* request seen -> response seen, ns */
};

struct service {
	bool used;
	char name[DG_NAME_MAX];
	/*
	 * Who may join its servers (nic_ctrl_register): the identity of the
	 * tenant that registered it while it had none (NO_UID: none to
	 * share), and its secret (0: none).
	 */
	int64_t owner_uid;
	uint64_t secret;
	uint8_t lb;
	bool lb_fixed; /* set by the operator or the description (ctl.c):
			  registrations do not change it */
	uint32_t rr;
	uint32_t nservers;
	struct server_ref servers[MAX_SERVERS];
	/* The servers that take new requests (not draining): indices. */
	uint32_t nact;
	uint8_t act[MAX_SERVERS];
	/* DG_LB_KEY: slot -> index into servers; rebuilt when dirty. */
	bool ktab_dirty;
	uint8_t ktab[KEY_SLOTS];
	struct svc_stats st;
};

/* A policy the description or the operator set for a service name. */
struct svc_conf {
	char name[DG_NAME_MAX];
	uint8_t lb;
};

/*
 * Connection table. A client's connection id names its entry here at the
 * client's own engine (index and generation, DG_CONN_ID); a connection that
 * arrives from a peer engine gets an INBOUND entry at the server's engine,
 * whose id is what the server host sees (and echoes in its responses).
 */
enum conn_state {
	CONN_FREE = 0,
	CONN_OPEN,    /* client; the service is behind this engine */
	CONN_BINDING, /* client; waiting for the peer engine's BIND_ACK */
	CONN_REMOTE,  /* client; the service is behind peer engine 'peer' */
	CONN_INBOUND, /* server side of a client behind engine 'peer' */
	CONN_DEAD,    /* client; its peer link died: calls get UNREACHABLE */
};

struct conn {
	uint8_t state;
	uint16_t gen;	       /* bumped each time the entry is allocated */
	uint16_t tenant, flow; /* client: the owner */
	uint16_t svc;	       /* OPEN, INBOUND: local service (NO_IDX: none) */
	uint16_t peer;	       /* BINDING, REMOTE, INBOUND */
	uint32_t remote;       /* INBOUND: the client's conn id at 'peer' */
	uint32_t rpc;	       /* BINDING: the host's OPEN request */
};

/* Engine-to-engine control (DG_FF_CTRL frames on a peer link). */
enum peer_op {
	PEER_BIND = 16,	    /* conn: client conn; dg_ctrl_msg.service */
	PEER_BIND_ACK = 17, /* conn: client conn; status */
	PEER_UNBIND = 18,   /* conn: client conn */
	PEER_PAY_DONE = 19, /* conn: send-area offset, rpc_id: transfer */
};

struct peer_stats {
	uint64_t rpcs_tx, frames_tx, rpcs_rx, frames_rx, busy, drops;
};

/*
 * An outbound peer link being made on a thread of its own (connect.c);
 * done, rc and link are the thread's, read by the loop once done is set.
 */
struct connect_job {
	bool used;
	char addr[DG_ADDR_MAX];
	uint16_t port;
	pthread_t thr;
	struct dg_nic *n;
	struct dg_peer_opts po;
	int done; /* atomic: release by the thread, acquire by the loop */
	int rc;
	struct dg_peer *link;
};

/* An OPEN waiting for connect_job job: the BIND it will send. */
struct waiting_open {
	bool used;
	uint16_t job;
	uint32_t conn; /* its id (generation): freed meanwhile, skipped */
	char service[DG_NAME_MAX];
};

struct peer_ref {
	bool used, dead, outbound;
	bool overflow; /* the peer sent more than its credits allowed */
	/* UNBINDs that found no room on the link (nic_peer_unbind). */
	uint32_t unbind[PEER_UNBIND_Q];
	uint32_t nunbind;
	struct dg_peer *link;
	char addr[DG_ADDR_MAX]; /* outbound: where we connected */
	uint16_t port;
	uint16_t *inmap; /* peer's client conn index -> INBOUND entry */
	/*
	 * Frames from the link wait here until they are routed; the link is
	 * polled only while the FIFO has room for what a poll may bring, so
	 * a receiver that cannot deliver stops the sender (credits), and
	 * nothing is dropped.
	 */
	struct dg_frame *fifo;
	uint32_t head, tail;
	struct busy busy;
	/* Since when the FIFO's head response waits for its client (as
	 * flow.hold_ns); 0: none. */
	uint64_t hold_ns;
	struct peer_stats st;
	/*
	 * Large messages from the peer: the transfer of the one at the FIFO
	 * head (our READ of its payload from the peer's send area), and the
	 * PAY_DONEs owed to the peer (its transfers we have read), which
	 * go as soon as the link has room.
	 */
	uint32_t px, px_pos;
	uint32_t done_q[16][2];
	uint32_t dq_head, dq_tail;
	struct dg_nic *nic;
};

/*
 * An RDMA connection accepted and not established yet (nic_accept_poll):
 * an attach (its tenant, not polled until then) or a peer link (added
 * then). The loop waits for nobody's handshake.
 */
struct accepting {
	bool used;
	int tenant;	       /* an attach's tenant; -1: a peer link */
	struct dg_rdma_ep *ep; /* the attach's (its tenant's hostmem owns it) */
	struct dg_peer *link;  /* the peer link's */
	uint64_t deadline_us;  /* mono_us; past it the connection is dropped */
};

struct pending_attach {
	void *region;
	uint64_t size;
	int tenant; /* result */
	bool done;
};

/* A function another thread asks the loop thread to run (nic_call). */
struct pending_call {
	void (*fn)(struct dg_nic *n, void *arg);
	void *arg;
	bool done;
};

/* A unix-socket connection whose attach request has not arrived yet. */
struct shm_pending {
	int fd; /* -1: free */
	uint64_t deadline_ms;
};

struct dg_nic {
	struct dg_nic_opts o;
	struct tenant tenants[MAX_TENANTS];
	struct service services[MAX_SERVICES];
	struct conn conns[MAX_CONNS];
	uint32_t conn_hint;
	struct peer_ref peers[MAX_PEERS];
	/* The tenants and links in use, for the loop (nic_lists_update). */
	uint8_t tact[MAX_TENANTS], pact[MAX_PEERS];
	uint32_t ntact, npact;
	uint64_t rng;
	struct dg_rdma_listener *listener;
	int shm_fd; /* the daemon's listening unix socket, -1: none */
	char shm_path[108];
	struct shm_pending shm_pend[MAX_SHM_PENDING];
	struct accepting acc[MAX_ACCEPTING];
	uint32_t naccepting;
	volatile int stop;

	/* Hand-over of local attaches/detaches from other threads. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pending_attach *pend_attach;
	struct pending_call *pend_call;
	int pend_detach; /* tenant id, or -1 */
	int pend_flag;	 /* atomic: something is pending */
	int wake_fd;	 /* eventfd: wakes a sleeping loop for the above */
	pthread_t loop_thread;
	int running; /* atomic: dg_nic_run is running on loop_thread */
	uint64_t attach_refused;
	uint64_t quota_refused; /* OPENs and REGISTERs over a tenant's share */
	uint64_t denied; /* REGISTERs into another tenant's service (DENIED) */
	uint64_t loops, sleeps;
	/* Peer links being made off the loop thread (connect.c). */
	struct connect_job connects[MAX_CONNECTS];
	struct waiting_open waiting[MAX_WAITING];
	uint32_t nconnects;
	/* The counters of tenants that left (totals only grow). */
	struct flow_stats gone;
	bool sweep;	       /* this round looks at connection states */
	uint64_t missed_wakes; /* direct_missed() after a timed-out sleep */
	bool remote_sweep;     /* remote_fail() still owes answers */
	uint32_t nowing;       /* flows with answers owed (nic_owed_flush) */
	uint64_t owed_wait_us, owed_next_us; /* the next look while they owe */
	bool any_direct; /* some tenant is direct (shared memory) */
	uint64_t
		next_due_us; /* earliest idle-flow READ put off (tenant_poll) */
	uint64_t clk_ns;     /* nic_clock: read once per loop iteration */
	uint64_t start_ns;   /* when the engine was created */
	struct nic_ctl *ctl; /* the control socket (ctl.c), NULL: none */
	dg_nic_reload_fn reload; /* "reload" (dg_nic_set_reload) */
	void *reload_arg;
	struct svc_conf svc_conf[MAX_SERVICES];
	/*
	 * The per-hop trace of sampled RPCs (DG_FF_TRACE), ns: server, a
	 * request delivered to its server's RX ring -> the response taken
	 * from its TX ring (the server host and both detections); remote, a
	 * client's request sent to a peer engine -> its response back here.
	 */
	struct dg_hist trace_server, trace_remote;
	uint32_t nsvc_conf;
	/*
	 * Large messages (payload.c): the staging pool (one allocation:
	 * the local arena, then the arena peer engines may READ), made when
	 * the first RDMA tenant or peer link needs it, and the transfers.
	 */
	uint8_t *pool;
	uint64_t pool_len;
	struct arena ar[2];
	struct xfer *xf;
	uint32_t xf_free, xf_used;
	uint64_t pay_bytes; /* payload bytes moved */
};

static inline uint64_t mono_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/*
 * The time for statistics (request seen, response seen): read at most
 * once per loop iteration, when first asked for (dg_nic_poll clears it),
 * so a batch of RPCs costs one clock read, not one per RPC.
 */
static inline uint64_t nic_clock(struct dg_nic *n)
{
	if (!n->clk_ns)
		n->clk_ns = mono_ns();
	return n->clk_ns;
}

static inline uint64_t mktag(enum tag_kind k, uint32_t flow, uint32_t seg)
{
	return ((uint64_t)k << 56) | ((uint64_t)flow << 32) | seg;
}

static inline uint64_t rng_next(struct dg_nic *n)
{
	/* xorshift64*: fast, good enough for load balancing. */
	n->rng ^= n->rng >> 12;
	n->rng ^= n->rng << 25;
	n->rng ^= n->rng >> 27;
	return n->rng * 2685821657736338717ull;
}

static inline uint64_t mono_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* The connection a (full) id names, or NULL: no entry, or another
 * generation of it. */
static inline struct conn *conn_get(struct dg_nic *n, uint32_t id)
{
	struct conn *c;

	if (DG_CONN_IDX(id) >= MAX_CONNS || (id >> 31))
		return NULL;
	c = &n->conns[DG_CONN_IDX(id)];
	return c->gen == DG_CONN_GEN(id) ? c : NULL;
}

static inline uint32_t conn_id(struct dg_nic *n, const struct conn *c)
{
	return DG_CONN_ID(c - n->conns, c->gen);
}

/* A continuation frame of m. */
static inline const struct dg_frame_cont *msg_cont(const struct msg *m,
						   uint32_t i)
{
	return (const struct dg_frame_cont *)&m->ring[(m->pos + i) & m->mask];
}

/* TX processing outcome (tx.c, ctrl.c, route.c). */
enum verdict {
	V_DONE,	 /* consumed (delivered, answered or dropped) */
	V_RETRY, /* keep it in the TX ring, try again next iteration */
};

/* Sentinel status: the reply to the host comes later (BIND_ACK). */
#define ST_PENDING 0x100

/* Empty READs in a row after which consumed TX slots are reported. */
#define TXHEAD_IDLE    3u
/* Smallest READ of a TX ring: one message of up to 88 payload bytes. */
#define READ_MIN       2u
/* READs in a row that found nothing before a flow counts as idle. */
#define POLL_HOT_READS 1u
/* First interval between an idle flow's READs; it doubles per empty READ. */
#define POLL_BASE_US   8u

/* rx.c */
void nic_rx_refresh(struct tenant *t, uint32_t f);
int nic_rx_put(struct tenant *t, uint32_t f, const struct msg *m, uint32_t conn,
	       uint8_t flags);
void nic_status_msg(struct msg *m, uint8_t flags, uint32_t rpc_id,
		    uint16_t fn_id, uint8_t status, uint8_t op);
int nic_rx_status(struct tenant *t, uint32_t f, uint8_t flags, uint32_t rpc_id,
		  uint32_t conn, uint16_t fn_id, uint8_t status);
void nic_rx_write_back(struct tenant *t, uint32_t f);

/*
 * Free RX slots by the host's consumer index. The host writes rx_head: a
 * value ahead of what we produced (a broken or hostile host) reads as a
 * full ring, never as more room than the ring has.
 */
static inline uint32_t nic_rx_room(struct tenant *t, struct flow *fl)
{
	uint32_t used = fl->rx_tail - fl->rx_head;

	return used > t->slots ? 0 : t->slots - used;
}

/*
 * Writes one whole message into flow f's RX ring, with its connection id
 * set to conn (and its kind to flags, when not 0: the loopback service
 * turns a request into its response) and each slot sealed for its
 * position: continuation frames first, the first frame last (so a host
 * that sees the first frame of a message in shared memory sees all of
 * it). RDMA tenants get the bytes when the dirty range is written at the
 * end of the iteration. Returns -ENOSPC (and asks for fresh credits) when
 * the ring has no room.
 */
static inline int rx_frames(struct tenant *t, uint32_t f, const struct msg *m,
			    uint32_t conn, uint8_t flags)
{
	struct flow *fl = &t->flows[f];
	uint32_t cnt = m->h.cnt, pos = fl->rx_tail, i;
	struct dg_frame *d;

	if (UNLIKELY(nic_rx_room(t, fl) < cnt)) {
		nic_rx_refresh(t, f);
		if (!t->direct || nic_rx_room(t, fl) < cnt)
			return -ENOSPC;
	}
	for (i = 1; i < cnt; i++) {
		struct dg_frame_cont *c =
			(struct dg_frame_cont *)&fl->rxr[(pos + i) & t->mask];

		memcpy(c->data, msg_cont(m, i)->data, DG_CONT_PAYLOAD);
		dg_cont_publish(c, pos + i, t->rflags);
	}
	d = &fl->rxr[pos & t->mask];
	__builtin_prefetch(&fl->rxr[(pos + cnt + 3) & t->mask], 1);
	/* Everything but stamp and checksum (the first 8 bytes). */
	memcpy(&d->rpc_id, &m->h.rpc_id, DG_SLOT_SIZE - 8);
	d->conn = conn;
	d->flow = (uint8_t)f;
	if (flags) {
		d->flags = flags;
		d->status = 0;
	}
	/*
	 * Direct tenants: the slot after the message gets the stamp of a
	 * first frame one lap back (dg_ring_guard: a continuation frame left
	 * there can never pass for a first frame), stored before the release
	 * store of the first frame's stamp below, so a host that takes the
	 * message sees it. Their hosts do not scrub what they consume on
	 * shared-memory rings (dagger/ring.h). With the ring exactly full
	 * that slot is the first frame of the oldest message the host holds,
	 * whose stamp is that value already.
	 */
	if (t->direct)
		dg_ring_guard(fl->rxr, t->mask, pos + cnt);
	dg_slot_publish(d, pos, t->rflags);
	fl->rx_tail = pos + cnt;
	fl->st.rpcs_rx++;
	fl->st.frames_rx += cnt;
	/* Its host is about to answer or call again: poll it hot. */
	fl->idle_reads = 0;
	fl->next_read_us = 0;
	/*
	 * A host flow that may sleep: RDMA tenants told us (sleep_seq, engine
	 * memory); direct tenants are looked at once per loop iteration,
	 * after a fence (nic_wake_direct).
	 */
	if (t->direct) {
		fl->delivered = true;
		t->delivered = true;
	} else if (fl->sleep_seq && fl->sleep_seq != fl->woken_seq) {
		fl->wake_due = true;
	}
	return 0;
}

/* payload.c: rx_put of a large message. */
int nic_pay_rx_put(struct tenant *t, uint32_t f, const struct msg *m,
		   uint32_t conn, uint8_t flags);

/*
 * rx_frames, or for a large message: its payload into the flow's RX
 * payload area, then its descriptor frame (nic_pay_rx_put). Large
 * messages can also fail with -EMSGSIZE (they never fit this flow: the
 * caller answers DG_ST_TOO_BIG) and -EAGAIN (the engine's staging pool is
 * full: retry, the receiver is not at fault).
 */
static inline int rx_put(struct tenant *t, uint32_t f, const struct msg *m,
			 uint32_t conn, uint8_t flags)
{
	if (UNLIKELY(m->h.flags & DG_FF_PAY))
		return nic_pay_rx_put(t, f, m, conn, flags);
	return rx_frames(t, f, m, conn, flags);
}

/* lb.c */
struct service *nic_svc_open(struct dg_nic *n, const char *name);
int nic_ctrl_register(struct dg_nic *n, uint32_t tid, uint32_t f,
		      const struct dg_ctrl_msg *m);
int nic_svc_deliver(struct dg_nic *n, struct busy *b, uint16_t svc,
		    const struct msg *m, uint32_t cid);
/* Tenant tid is gone: its flows leave every service. */
void nic_svc_drop_tenant(struct dg_nic *n, uint32_t tid);
/* The set of servers that take requests changed (drain, join, leave). */
void nic_svc_rebuild(struct service *s, const struct dg_nic *n);
/* The server flow a key maps to (index into s->servers), for tests. */
uint32_t nic_svc_key_pick(struct service *s, const struct dg_nic *n,
			  uint32_t key);
/* The configured policy of a service name (svc_conf), or -1. */
int nic_svc_conf_policy(const struct dg_nic *n, const char *name);

/*
 * A response answered p, a request a server flow was handed: the service
 * counts it and its latency (request seen -> response seen). Called once
 * per pending entry, before nic_pend_done.
 */
static inline void nic_svc_answered(struct dg_nic *n, const struct pending *p)
{
	struct service *s;
	uint64_t now;

	if (!p->t_ns || p->svc >= MAX_SERVICES)
		return;
	s = &n->services[p->svc];
	now = nic_clock(n);
	dg_hist_add(&s->st.lat, now > p->t_ns ? now - p->t_ns : 0);
}

/* conn.c */
struct conn *nic_conn_alloc(struct dg_nic *n);
bool nic_hold_over(struct dg_nic *n, uint64_t *since, const struct flow *cf);
int nic_owe(struct dg_nic *n, struct flow *cf, uint32_t rpc, uint32_t conn,
	    uint16_t fn, uint8_t status);
/* The same for a control reply (an OPEN's answer from a peer engine). */
int nic_owe_reply(struct dg_nic *n, struct flow *cf, uint32_t rpc,
		  uint32_t conn, uint8_t status);
void nic_owed_flush(struct dg_nic *n);
void nic_pend_advance(struct flow *fl);
bool nic_pend_full(const struct flow *fl);
void nic_pend_push(struct flow *fl, const struct dg_frame *h, uint32_t cid);
void nic_pend_forget(struct flow *fl, uint32_t conn);
bool nic_pend_pop(struct flow *fl, const struct dg_frame *h);
struct pending *nic_pend_find(struct flow *fl, const struct dg_frame *h);
void nic_pend_done(struct flow *fl, struct pending *p);
void nic_pend_fail(struct dg_nic *n, struct tenant *t);

/* route.c */
int nic_peer_add(struct dg_nic *n, struct dg_peer *link, bool outbound,
		 const char *addr, uint16_t port);
void nic_peer_kill(struct dg_nic *n, uint32_t pi, int why);
void nic_peer_free(struct dg_nic *n, uint32_t pi);
int nic_peer_send(struct dg_nic *n, uint32_t pi, const struct msg *m,
		  uint32_t conn);
/*
 * Tells peer pi to forget our connection conn: at once, or (no room on
 * the link) from a queue flushed as the link drains, so a closed
 * connection never stays bound at the peer while the link lives.
 */
void nic_peer_unbind(struct dg_nic *n, uint32_t pi, uint32_t conn);
int nic_peer_status(struct dg_nic *n, uint32_t pi, uint8_t flags,
		    uint32_t rpc_id, uint32_t conn, uint16_t fn_id,
		    uint8_t status, uint8_t op);
/* The live outbound link to addr:port, or -ENOENT (connect.c makes one). */
int nic_peer_find(struct dg_nic *n, const char *addr, uint16_t port);
int nic_peer_poll(struct dg_nic *n, uint32_t pi);
void nic_peer_timers(struct dg_nic *n);

/* ctrl.c */
void nic_ctrl_gather(struct dg_ctrl_msg *cm, const struct msg *m);
enum verdict nic_do_ctrl(struct dg_nic *n, uint32_t tid, uint32_t f,
			 const struct msg *m);

/* tx.c */
int nic_frame_check(const struct dg_frame *h);
uint32_t nic_tx_process(struct dg_nic *n, uint32_t tid, uint32_t f,
			uint32_t avail);
void nic_tx_post_read(struct dg_nic *n, struct tenant *t, uint32_t f);
void nic_tx_write_head(struct tenant *t, uint32_t f, bool force);
bool nic_read_due(struct dg_nic *n, struct tenant *t, struct flow *fl,
		  uint64_t *now);

/* connect.c */
/*
 * An OPEN of a service behind addr:port, an engine we have no link to:
 * starts making the link (or joins the one being made) and returns
 * ST_PENDING with *conn_out; the BIND goes when the link is up, or the
 * OPEN is answered UNREACHABLE. DG_ST_BUSY when too many wait already.
 */
int nic_connect_open(struct dg_nic *n, uint32_t tid, uint32_t f,
		     const char *addr, uint16_t port, const char *service,
		     uint32_t rpc_id, uint32_t *conn_out);
void nic_connect_poll(struct dg_nic *n);     /* finishes what is done */
void nic_connect_shutdown(struct dg_nic *n); /* waits for the threads */
/* ctrl.c: sends c's BIND of service on link pi (c->peer = pi). */
int nic_peer_bind(struct dg_nic *n, uint32_t pi, struct conn *c,
		  const char *service);

/* loop.c */
void nic_lists_update(struct dg_nic *n);
void nic_wake_direct(struct dg_nic *n);

/* tenant.c */
int nic_tenant_init(struct dg_nic *n, struct dg_hostmem *hm,
		    const struct dg_region_hdr *hdr, void *local_region,
		    uint32_t mode, const int *fds, uint32_t nfds);
void nic_tenant_free(struct dg_nic *n, uint32_t tid);
void nic_take_pending(struct dg_nic *n);
void nic_accept_rdma(struct dg_nic *n);
void nic_accept_poll(struct dg_nic *n);
uint32_t nic_ident_tenants(const struct dg_nic *n, int64_t uid,
			   const uint8_t *addr);
void nic_reap(struct dg_hostmem *hm, struct dg_peer *link);
int nic_call(struct dg_nic *n, void (*fn)(struct dg_nic *, void *), void *arg,
	     int timeout_ms);
void nic_wake(struct dg_nic *n);

/* ctl.c: the socket; ctl_cmd.c: the commands */
struct dg_buf;
void nic_ctl_handle(struct dg_nic *n, const char *line, size_t len,
		    struct dg_buf *out);
int nic_ctl_listen(struct dg_nic *n, const char *path);
void nic_ctl_poll(struct dg_nic *n);
void nic_ctl_tick(struct dg_nic *n);	/* polls once a millisecond at most */
int nic_ctl_fd(const struct dg_nic *n); /* to sleep on; -1: none */
void nic_ctl_close(struct dg_nic *n);

/* payload.c */
int nic_pool_ensure(struct dg_nic *n);
void nic_pool_destroy(struct dg_nic *n);
int nic_pay_tenant_init(struct dg_nic *n, struct tenant *t);
void nic_pay_tenant_free(struct dg_nic *n, uint32_t tid);
void nic_pay_peer_free(struct dg_nic *n, uint32_t pi);
enum verdict nic_pay_tx(struct dg_nic *n, uint32_t tid, uint32_t f,
			struct msg *m);
enum verdict nic_pay_peer_rx(struct dg_nic *n, uint32_t pi, struct msg *m);
int nic_pay_peer_send(struct dg_nic *n, uint32_t pi, const struct msg *m,
		      uint32_t conn);
void nic_pay_peer_done(struct dg_nic *n, uint32_t pi, uint32_t pos,
		       uint32_t xi);
void nic_pay_peer_flush(struct dg_nic *n, uint32_t pi);
void nic_pay_complete(struct dg_nic *n, uint32_t tid, uint32_t xi, int status);
void nic_pay_peer_init(struct dg_nic *n, uint32_t pi);
/* The staging pool as a new link's bulk memory and send area. */
void nic_peer_bulk(struct dg_nic *n, struct dg_peer_opts *po);
/* tx.c, route.c: a message's routing (after its payload is staged). */
enum verdict nic_tx_route(struct dg_nic *n, uint32_t tid, uint32_t f,
			  const struct msg *m);
enum verdict nic_peer_route(struct dg_nic *n, uint32_t pi, const struct msg *m);

/* shm.c */
int nic_shm_listen(struct dg_nic *n, const char *path);
void nic_shm_accept(struct dg_nic *n);
void nic_shm_close(struct dg_nic *n);

#endif /* DG_NIC_ENGINE_IMPL_H */
