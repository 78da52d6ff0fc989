// SPDX-License-Identifier: MIT
/*
 * engine.c - the NIC engine's poll loop.
 *
 * Per iteration: take in new tenants; for every tenant, reap hostmem
 * completions (TX READs -> parse and route whole RPCs; rx_head READs ->
 * credits), post the next TX READ of every flow, then write back what was
 * produced (RX frames, tx_head) and flush once per tenant.
 *
 * Whole RPCs only: the TX poller forwards an RPC only when all its frames
 * are in the shadow, so every RPC reaches an RX ring (or a peer link) as one
 * contiguous run of frames; no receiver ever reassembles interleaved RPCs.
 */
#define _GNU_SOURCE
#include "engine.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "dagger/ctrl.h"
#include "dagger/ring.h"
#include "dg_rdma.h"
#include "hostmem.h"
#include "peer.h"

#define MAX_TENANTS  64
#define MAX_CONNS    4096
#define MAX_SERVICES 64
#define MAX_SERVERS  64 /* (tenant, flow) pairs per service */
#define NO_IDX	     0xffffu
#define SVC_LOOPBACK 0xfffeu /* conn.svc of DG_LOOPBACK_SERVICE */
#define MAX_PEERS    16
#define PEER_FIFO    4096u /* frames; > DG_MAX_FRAMES + a batch */

enum tag_kind {
	TAG_TXREAD = 1,
	TAG_RXHEAD = 2,
	TAG_WRITE = 3,
};

static uint64_t mktag(enum tag_kind k, uint32_t flow, uint32_t seg)
{
	return ((uint64_t)k << 56) | ((uint64_t)flow << 32) | seg;
}

enum drop_reason {
	DROP_BAD_LEN,
	DROP_BAD_IDX,
	DROP_BAD_FLAGS,
	DROP_BAD_CONN,
	DROP_BAD_CTRL,
	DROP_TOO_BIG,
	DROP_NREASONS,
};

static const char *const drop_names[DROP_NREASONS] = {
	"bad_len", "bad_idx", "bad_flags", "bad_conn", "bad_ctrl", "too_big",
};

struct flow_stats {
	uint64_t rpcs_tx, frames_tx, bytes_tx; /* read from the host */
	uint64_t rpcs_rx, frames_rx;	       /* delivered to the host */
	uint64_t reads, read_slots, writes;
	uint64_t drops[DROP_NREASONS];
	uint64_t busy;	  /* requests refused: this flow's RX ring full */
	uint64_t stalled; /* iterations an RPC waited for room */
};

struct pending {
	uint32_t rpc;
	uint16_t conn; /* as delivered to the server, or the client's REMOTE
			  connection; NO_IDX: answered */
	uint16_t fn;
};

/* A request (by rpc id) that found its server's ring full once. */
struct busy {
	bool armed;
	uint32_t rpc;
	uint16_t tenant, flow; /* the server flow the retry must go to */
};

struct flow {
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
	 * Requests not yet answered, in the order they were handed on:
	 * those delivered to this flow as a server (if the tenant dies, each
	 * caller is answered UNREACHABLE instead of waiting forever), and
	 * those this flow sent as a client through a peer link (if the link
	 * dies, this flow gets UNREACHABLE for each). Responses mostly come
	 * in order, so the head is usually matched by the next one.
	 */
	struct pending *pend;
	uint32_t pend_head, pend_tail, pend_mask;
	struct flow_stats st;
};

struct tenant {
	bool used;
	bool dead;
	struct dg_hostmem *hm;
	struct dg_region_layout lay;
	uint32_t nflows, slots, mask, rflags;
	struct flow *flows;
	void *local_region; /* local backend: the host's region */
};

struct server_ref {
	uint16_t tenant, flow;
};

struct service {
	bool used;
	char name[DG_NAME_MAX];
	uint8_t lb;
	uint32_t rr;
	uint32_t nservers;
	struct server_ref servers[MAX_SERVERS];
};

/*
 * Connection table. A client's connection id is its index here at the
 * client's own engine; a connection that arrives from a peer engine gets an
 * INBOUND entry at the server's engine, whose index is what the server host
 * sees (and echoes in its responses).
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
	uint16_t tenant, flow; /* client: the owner */
	uint16_t svc;	       /* OPEN, INBOUND: local service (NO_IDX: none) */
	uint16_t peer;	       /* BINDING, REMOTE, INBOUND */
	uint16_t remote;       /* INBOUND: the client's conn id at 'peer' */
	uint32_t rpc;	       /* BINDING: the host's OPEN request */
};

/* Engine-to-engine control (DG_FF_CTRL frames on a peer link). */
enum peer_op {
	PEER_BIND = 16,	    /* conn_id: client conn; dg_ctrl_msg.service */
	PEER_BIND_ACK = 17, /* conn_id: client conn; status */
	PEER_UNBIND = 18,   /* conn_id: client conn */
};

struct peer_stats {
	uint64_t rpcs_tx, frames_tx, rpcs_rx, frames_rx, busy, drops;
};

struct peer_ref {
	bool used, dead, outbound;
	struct dg_peer *link;
	char addr[DG_ADDR_MAX]; /* outbound: where we connected */
	uint16_t port;
	uint16_t *inmap; /* peer's client conn id -> INBOUND entry */
	/*
	 * Frames from the link wait here until they are routed; the link is
	 * polled only while the FIFO has room for what a poll may bring, so
	 * a receiver that cannot deliver stops the sender (credits), and
	 * nothing is dropped.
	 */
	struct dg_frame *fifo;
	uint32_t head, tail;
	struct busy busy;
	struct peer_stats st;
};

struct pending_attach {
	void *region;
	uint64_t size;
	int tenant; /* result */
	bool done;
};

struct dg_nic {
	struct dg_nic_opts o;
	struct tenant tenants[MAX_TENANTS];
	struct service services[MAX_SERVICES];
	struct conn conns[MAX_CONNS];
	uint32_t conn_hint;
	struct peer_ref peers[MAX_PEERS];
	uint64_t rng;
	struct dg_rdma_listener *listener;
	volatile int stop;

	/* Hand-over of local attaches/detaches from other threads. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct pending_attach *pend_attach;
	int pend_detach; /* tenant id, or -1 */
	int pend_flag;	 /* atomic: something is pending */
	uint64_t loops;
	bool remote_sweep; /* remote_fail() still owes answers */
	uint64_t
		next_due_us; /* earliest idle-flow READ put off (tenant_poll) */
};

static uint64_t rng_next(struct dg_nic *n)
{
	/* xorshift64*: fast, good enough for load balancing. */
	n->rng ^= n->rng >> 12;
	n->rng ^= n->rng << 25;
	n->rng ^= n->rng >> 27;
	return n->rng * 2685821657736338717ull;
}

static struct dg_frame *tx_slot(struct tenant *t, uint32_t f, uint32_t pos)
{
	return (struct dg_frame *)(t->hm->shadow + dg_tx_ring_off(&t->lay, f) +
				   (uint64_t)(pos & t->mask) * DG_SLOT_SIZE);
}

static struct dg_frame *rx_slot(struct tenant *t, uint32_t f, uint32_t pos)
{
	return (struct dg_frame *)(t->hm->shadow + dg_rx_ring_off(&t->lay, f) +
				   (uint64_t)(pos & t->mask) * DG_SLOT_SIZE);
}

static struct dg_flow_ctrl *ctrl_of(struct tenant *t, uint32_t f)
{
	return (struct dg_flow_ctrl *)(t->hm->shadow + dg_ctrl_off(&t->lay, f));
}

/* ---- RX delivery ------------------------------------------------------ */

static uint32_t rx_room(struct tenant *t, struct flow *fl)
{
	return t->slots - (fl->rx_tail - fl->rx_head);
}

/* Asks the host how far it consumed its RX ring (credits). */
static void rx_refresh(struct tenant *t, uint32_t f)
{
	struct flow *fl = &t->flows[f];

	if (fl->rx_head_pending)
		return;
	if (t->hm->ops->read(t->hm,
			     dg_ctrl_off(&t->lay, f) +
				     offsetof(struct dg_flow_ctrl, rx_head),
			     4, mktag(TAG_RXHEAD, f, 0)) == 0)
		fl->rx_head_pending = true;
}

/*
 * Copies one whole RPC (cnt frames at src, contiguous) into the shadow of
 * a tenant's RX ring and seals each slot. The bytes reach the host when the
 * tenant's dirty range is written at the end of the iteration. Returns
 * -ENOSPC (and asks for fresh credits) when the ring has no room.
 */
static int rx_deliver_as(struct tenant *t, uint32_t f,
			 const struct dg_frame *src, uint32_t cnt,
			 uint16_t conn_id, uint8_t flags)
{
	struct flow *fl = &t->flows[f];
	uint32_t i;

	if (rx_room(t, fl) < cnt) {
		rx_refresh(t, f);
		return -ENOSPC;
	}
	for (i = 0; i < cnt; i++) {
		uint32_t pos = fl->rx_tail + i;
		struct dg_frame *d = rx_slot(t, f, pos);

		memcpy(d, &src[i], DG_SLOT_SIZE);
		d->conn_id = conn_id;
		d->src_flow = (uint8_t)f;
		if (flags) {
			d->flags = flags;
			d->status = 0;
		}
		dg_slot_publish(d, pos, t->rflags);
	}
	fl->rx_tail += cnt;
	fl->st.rpcs_rx++;
	fl->st.frames_rx += cnt;
	/* Its host is about to answer or call again: poll it hot. */
	fl->idle_reads = 0;
	fl->next_read_us = 0;
	return 0;
}

static int rx_deliver(struct tenant *t, uint32_t f, const struct dg_frame *src,
		      uint32_t cnt, uint16_t conn_id)
{
	return rx_deliver_as(t, f, src, cnt, conn_id, 0);
}

/* A one-frame response with an error status (or a control reply). */
/* A one-frame message carrying only a status (and a control op). */
static struct dg_frame status_frame(uint8_t flags, uint32_t rpc_id,
				    uint16_t fn_id, uint8_t status, uint8_t op)
{
	struct dg_frame e = {0};

	e.rpc_id = rpc_id;
	e.fn_id = fn_id;
	e.cnt = 1;
	e.flags = flags;
	e.status = status;
	if (op) {
		e.len = 1;
		e.data[0] = op;
	}
	return e;
}

static int rx_status(struct tenant *t, uint32_t f, uint8_t flags,
		     uint32_t rpc_id, uint16_t conn_id, uint16_t fn_id,
		     uint8_t status)
{
	struct dg_frame e = status_frame(flags, rpc_id, fn_id, status, 0);

	return rx_deliver(t, f, &e, 1, conn_id);
}

/* Writes every RX slot produced since the last call, split at the wrap. */
static void rx_write_back(struct tenant *t, uint32_t f)
{
	struct flow *fl = &t->flows[f];
	uint32_t n = fl->rx_tail - fl->rx_dirty;

	while (n) {
		uint32_t start = fl->rx_dirty & t->mask;
		uint32_t run = t->slots - start < n ? t->slots - start : n;
		int rc = t->hm->ops->write(
			t->hm,
			dg_rx_ring_off(&t->lay, f) +
				(uint64_t)start * DG_SLOT_SIZE,
			run * DG_SLOT_SIZE, mktag(TAG_WRITE, f, 0));
		if (rc)
			return; /* queue full: the rest goes next time */
		fl->st.writes++;
		fl->rx_dirty += run;
		n -= run;
	}
}

/* ---- services, connections, load balancing ---------------------------- */

static struct service *svc_find(struct dg_nic *n, const char *name)
{
	uint32_t i;

	for (i = 0; i < MAX_SERVICES; i++)
		if (n->services[i].used &&
		    !strncmp(n->services[i].name, name, DG_NAME_MAX))
			return &n->services[i];
	return NULL;
}

/*
 * A service callers can open: one with a server flow now. An entry whose
 * servers all left stays (its connections answer UNREACHABLE, and work
 * again when a server registers the name anew) but takes no new callers.
 */
static struct service *svc_open(struct dg_nic *n, const char *name)
{
	struct service *s = svc_find(n, name);

	return s && s->nservers ? s : NULL;
}

/* A free service slot, or one no server and no connection uses any more. */
static struct service *svc_slot(struct dg_nic *n)
{
	uint32_t i, c;

	for (i = 0; i < MAX_SERVICES; i++)
		if (!n->services[i].used)
			return &n->services[i];
	for (i = 0; i < MAX_SERVICES; i++) {
		if (n->services[i].nservers)
			continue;
		for (c = 0; c < MAX_CONNS; c++)
			if ((n->conns[c].state == CONN_OPEN ||
			     n->conns[c].state == CONN_INBOUND) &&
			    n->conns[c].svc == i)
				break;
		if (c == MAX_CONNS)
			return &n->services[i];
	}
	return NULL;
}

/*
 * Load-balancing policies: pick the server flow for a new request. The
 * policy is per service, chosen by the server at registration.
 */
static const struct server_ref *lb_pick(struct dg_nic *n, struct service *s,
					uint16_t conn_id)
{
	uint32_t i;

	if (!s->nservers)
		return NULL;
	switch (s->lb) {
	case DG_LB_STATIC:
		i = conn_id % s->nservers;
		break;
	case DG_LB_RANDOM:
		i = (uint32_t)(rng_next(n) % s->nservers);
		break;
	default:
		i = s->rr++ % s->nservers;
		break;
	}
	return &s->servers[i];
}

static int ctrl_register(struct dg_nic *n, uint32_t tid, uint32_t f,
			 const struct dg_ctrl_msg *m)
{
	struct service *s = svc_find(n, m->service);
	uint32_t i;

	if (!m->service[0] || memchr(m->service, 0, DG_NAME_MAX) == NULL ||
	    !strcmp(m->service, DG_LOOPBACK_SERVICE))
		return DG_ST_BAD_FRAME;
	if (!s) {
		s = svc_slot(n);
		if (!s)
			return DG_ST_BUSY;
		memset(s, 0, sizeof(*s));
		s->used = true;
		memcpy(s->name, m->service, DG_NAME_MAX);
		s->lb = m->lb <= DG_LB_RANDOM ? m->lb : DG_LB_ROUND_ROBIN;
	}
	for (i = 0; i < s->nservers; i++)
		if (s->servers[i].tenant == tid && s->servers[i].flow == f)
			return DG_ST_OK;
	if (s->nservers == MAX_SERVERS)
		return DG_ST_BUSY;
	s->servers[s->nservers++] =
		(struct server_ref){(uint16_t)tid, (uint16_t)f};
	if (n->o.verbose)
		fprintf(stderr, "dagger-nic: tenant %u flow %u serves %s\n",
			tid, f, s->name);
	return DG_ST_OK;
}

static int conn_alloc(struct dg_nic *n)
{
	uint32_t i, c;

	for (i = 0; i < MAX_CONNS; i++) {
		c = (n->conn_hint + i) % MAX_CONNS;
		if (n->conns[c].state == CONN_FREE) {
			n->conn_hint = c + 1;
			return (int)c;
		}
	}
	return -1;
}

/* ---- unanswered requests (struct flow's pend ring) --------------------- */

/* Drops the answered entries at the head. */
static void pend_advance(struct flow *fl)
{
	while (fl->pend_head != fl->pend_tail &&
	       fl->pend[fl->pend_head & fl->pend_mask].conn == NO_IDX)
		fl->pend_head++;
}

static bool pend_full(const struct flow *fl)
{
	return fl->pend_tail - fl->pend_head > fl->pend_mask;
}

/*
 * Full only if the flow holds 2 x slots requests unanswered: a server
 * flow's then stay untracked; a client flow is held back (do_request).
 */
static void pend_push(struct flow *fl, const struct dg_frame *f, uint16_t cid)
{
	if (pend_full(fl))
		return;
	fl->pend[fl->pend_tail++ & fl->pend_mask] =
		(struct pending){f->rpc_id, cid, f->fn_id};
}

/*
 * The client closed conn: its calls still in flight are no longer
 * waited for (their late responses are dropped), so stop tracking them.
 */
static void pend_forget(struct flow *fl, uint16_t conn)
{
	uint32_t i;

	for (i = fl->pend_head; i != fl->pend_tail; i++)
		if (fl->pend[i & fl->pend_mask].conn == conn)
			fl->pend[i & fl->pend_mask].conn = NO_IDX;
	pend_advance(fl);
}

/* The server answered (conn, rpc): forget it. */
static void pend_pop(struct flow *fl, const struct dg_frame *f)
{
	uint32_t i;

	for (i = fl->pend_head; i != fl->pend_tail; i++) {
		struct pending *p = &fl->pend[i & fl->pend_mask];

		if (p->conn == f->conn_id && p->rpc == f->rpc_id) {
			p->conn = NO_IDX;
			break;
		}
	}
	pend_advance(fl);
}

/* ---- peer links ---------------------------------------------------------- */

static int peer_add(struct dg_nic *n, struct dg_peer *link, bool outbound,
		    const char *addr, uint16_t port)
{
	struct peer_ref *p;
	uint32_t i;

	for (i = 0; i < MAX_PEERS && n->peers[i].used; i++)
		;
	if (i == MAX_PEERS)
		return -EUSERS;
	p = &n->peers[i];
	memset(p, 0, sizeof(*p));
	p->inmap = malloc(65536 * sizeof(*p->inmap));
	p->fifo = aligned_alloc(DG_SLOT_SIZE, PEER_FIFO * DG_SLOT_SIZE);
	if (!p->inmap || !p->fifo) {
		free(p->inmap);
		free(p->fifo);
		return -ENOMEM;
	}
	memset(p->inmap, 0xff, 65536 * sizeof(*p->inmap));
	p->used = true;
	p->link = link;
	p->outbound = outbound;
	if (addr)
		snprintf(p->addr, sizeof(p->addr), "%s", addr);
	p->port = port;
	return (int)i;
}

/*
 * Answers UNREACHABLE to every request that some client flow sent through
 * peer link pi (pi == NO_IDX: through any link already down) and that is
 * still unanswered. An answer that finds the client's RX ring full is
 * left pending and retried by the next sweep (dg_nic_poll), so no caller
 * is left waiting. Returns false while some answer is still due.
 */
static bool remote_fail(struct dg_nic *n, uint32_t pi)
{
	bool done = true;
	uint32_t tid, f, i;

	for (tid = 0; tid < MAX_TENANTS; tid++) {
		struct tenant *t = &n->tenants[tid];

		if (!t->used || t->dead)
			continue;
		for (f = 0; f < t->nflows; f++) {
			struct flow *fl = &t->flows[f];

			for (i = fl->pend_head; i != fl->pend_tail; i++) {
				struct pending *p =
					&fl->pend[i & fl->pend_mask];
				struct conn *c;

				if (p->conn >= MAX_CONNS)
					continue;
				c = &n->conns[p->conn];
				if (c->tenant != tid || c->flow != f ||
				    (pi == NO_IDX ? c->state != CONN_DEAD
						  : c->state != CONN_REMOTE ||
							    c->peer != pi))
					continue;
				if (rx_status(t, f, DG_FF_RESP, p->rpc, p->conn,
					      p->fn, DG_ST_UNREACHABLE)) {
					done = false;
					continue;
				}
				p->conn = NO_IDX;
			}
			pend_advance(fl);
		}
	}
	return done;
}

/*
 * Marks a peer link dead: its inbound connections go away; client
 * connections through it answer UNREACHABLE from now on.
 */
static void peer_kill(struct dg_nic *n, uint32_t pi, int why)
{
	struct peer_ref *p = &n->peers[pi];
	uint32_t i;

	if (p->dead)
		return;
	p->dead = true;
	fprintf(stderr, "dagger-nic: peer link %u (%s, engine %u) down: %s\n",
		pi, p->addr[0] ? p->addr : "inbound",
		dg_peer_remote_engine(p->link), strerror(-why));
	/* Before the states change below; what is left, the sweep retries. */
	if (!remote_fail(n, pi))
		n->remote_sweep = true;
	for (i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &n->conns[i];

		if (c->peer != pi)
			continue;
		if (c->state == CONN_INBOUND) {
			c->state = CONN_FREE;
		} else if (c->state == CONN_REMOTE) {
			c->state = CONN_DEAD;
		} else if (c->state == CONN_BINDING) {
			/* Best effort; without room the host's OPEN times
			 * out instead. */
			rx_status(&n->tenants[c->tenant], c->flow, DG_FF_CTRL,
				  c->rpc, (uint16_t)i, 0, DG_ST_UNREACHABLE);
			c->state = CONN_FREE;
		}
	}
}

static void peer_free(struct dg_nic *n, uint32_t pi)
{
	struct peer_ref *p = &n->peers[pi];

	peer_kill(n, pi, -ECONNRESET);
	dg_peer_destroy(p->link);
	free(p->inmap);
	free(p->fifo);
	memset(p, 0, sizeof(*p));
}

/*
 * Puts one whole message (cnt frames) on peer link pi with conn_id
 * rewritten, or nothing: -EAGAIN without room (credits), -ENOTCONN once
 * the link is dead.
 */
static int peer_send(struct dg_nic *n, uint32_t pi, const struct dg_frame *fr,
		     uint32_t cnt, uint16_t conn_id)
{
	struct peer_ref *p = &n->peers[pi];
	uint32_t i;

	if (p->dead)
		return -ENOTCONN;
	if (dg_peer_room(p->link) < cnt)
		return -EAGAIN;
	for (i = 0; i < cnt; i++) {
		struct dg_frame *slot;
		int rc = dg_peer_reserve(p->link, 1, &slot);

		if (!rc) {
			*slot = fr[i];
			slot->conn_id = conn_id;
			slot->stamp = 0;
			slot->csum = 0;
			rc = dg_peer_commit(p->link, 1);
		}
		if (rc) {
			/* room said yes: only a dead link gets here */
			peer_kill(n, pi, rc);
			return -ENOTCONN;
		}
	}
	p->st.rpcs_tx++;
	p->st.frames_tx += cnt;
	return 0;
}

static int peer_status(struct dg_nic *n, uint32_t pi, uint8_t flags,
		       uint32_t rpc_id, uint16_t conn_id, uint16_t fn_id,
		       uint8_t status, uint8_t op)
{
	struct dg_frame e = status_frame(flags, rpc_id, fn_id, status, op);

	return peer_send(n, pi, &e, 1, conn_id);
}

/* Finds or makes the outbound link to addr:port. Blocks while connecting. */
static int peer_get(struct dg_nic *n, const char *addr, uint16_t port)
{
	struct dg_peer_opts po = {.send_bufs = 32,
				  .engine_id = n->o.engine_id,
				  .timeout_ms = n->o.peer_timeout_ms};
	struct dg_peer *link;
	uint32_t i;
	int rc;

	for (i = 0; i < MAX_PEERS; i++) {
		struct peer_ref *p = &n->peers[i];

		if (p->used && p->outbound && !p->dead && p->port == port &&
		    !strcmp(p->addr, addr))
			return (int)i;
	}
	rc = dg_peer_connect(NULL, addr, port, &po, 5000, &link);
	if (rc) {
		if (n->o.verbose)
			fprintf(stderr, "dagger-nic: peer %s:%u: %s\n", addr,
				port, strerror(-rc));
		return rc;
	}
	rc = peer_add(n, link, true, addr, port);
	if (rc < 0)
		dg_peer_destroy(link);
	else if (n->o.verbose)
		fprintf(stderr, "dagger-nic: peer link %d to %s:%u\n", rc, addr,
			port);
	return rc;
}

/* ---- control ------------------------------------------------------------- */

/* Sentinel status: the reply to the host comes later (BIND_ACK). */
#define ST_PENDING 0x100

static bool is_self(struct dg_nic *n, const struct dg_ctrl_msg *m)
{
	return n->o.listen_addr && m->port == dg_nic_port(n) &&
	       !strcmp(m->peer, n->o.listen_addr);
}

static int ctrl_open(struct dg_nic *n, uint32_t tid, uint32_t f,
		     const struct dg_ctrl_msg *m, uint32_t rpc_id,
		     uint16_t *conn_out)
{
	struct dg_ctrl_msg bind;
	struct dg_frame fr[4];
	struct service *s;
	uint32_t cnt, i;
	int c, pi;

	if (memchr(m->service, 0, DG_NAME_MAX) == NULL ||
	    memchr(m->peer, 0, DG_ADDR_MAX) == NULL || !m->service[0])
		return DG_ST_BAD_FRAME;
	if (!m->peer[0] || is_self(n, m)) {
		bool lo = !strcmp(m->service, DG_LOOPBACK_SERVICE);

		s = lo ? NULL : svc_open(n, m->service);
		if (!s && !lo)
			return DG_ST_NO_SERVICE;
		c = conn_alloc(n);
		if (c < 0)
			return DG_ST_BUSY;
		n->conns[c] = (struct conn){
			.state = CONN_OPEN,
			.tenant = (uint16_t)tid,
			.flow = (uint16_t)f,
			.svc = lo ? SVC_LOOPBACK : (uint16_t)(s - n->services)};
		*conn_out = (uint16_t)c;
		return DG_ST_OK;
	}
	/* A service behind another engine: bind it there first. */
	pi = peer_get(n, m->peer, m->port ? m->port : 7471);
	if (pi < 0)
		return DG_ST_UNREACHABLE;
	c = conn_alloc(n);
	if (c < 0)
		return DG_ST_BUSY;
	memset(&bind, 0, sizeof(bind));
	bind.op = PEER_BIND;
	memcpy(bind.service, m->service, DG_NAME_MAX);
	cnt = dg_frames_for(sizeof(bind));
	memset(fr, 0, sizeof(fr));
	for (i = 0; i < cnt; i++) {
		uint32_t off = i * DG_FRAME_PAYLOAD;
		uint32_t len = sizeof(bind) - off < DG_FRAME_PAYLOAD
				       ? sizeof(bind) - off
				       : DG_FRAME_PAYLOAD;

		fr[i].rpc_id = rpc_id;
		fr[i].idx = (uint16_t)i;
		fr[i].cnt = (uint16_t)cnt;
		fr[i].len = (uint8_t)len;
		fr[i].flags = DG_FF_CTRL;
		memcpy(fr[i].data, (uint8_t *)&bind + off, len);
	}
	if (peer_send(n, (uint32_t)pi, fr, cnt, (uint16_t)c))
		return DG_ST_UNREACHABLE;
	n->conns[c] = (struct conn){.state = CONN_BINDING,
				    .tenant = (uint16_t)tid,
				    .flow = (uint16_t)f,
				    .peer = (uint16_t)pi,
				    .rpc = rpc_id};
	*conn_out = (uint16_t)c;
	return ST_PENDING;
}

static int ctrl_close(struct dg_nic *n, uint32_t tid, uint32_t f,
		      const struct dg_ctrl_msg *m)
{
	struct conn *c;

	if (m->conn >= MAX_CONNS)
		return DG_ST_NO_CONN;
	c = &n->conns[m->conn];
	if ((c->state != CONN_OPEN && c->state != CONN_REMOTE &&
	     c->state != CONN_DEAD) ||
	    c->tenant != tid || c->flow != f)
		return DG_ST_NO_CONN;
	/* Best effort: a dead or busy link forgets the binding itself. */
	if (c->state == CONN_REMOTE)
		peer_status(n, c->peer, DG_FF_CTRL, 0, m->conn, 0, 0,
			    PEER_UNBIND);
	if (c->state != CONN_OPEN)
		pend_forget(&n->tenants[tid].flows[f], m->conn);
	c->state = CONN_FREE;
	return DG_ST_OK;
}

/* ---- TX processing ------------------------------------------------------ */

enum verdict {
	V_DONE,	 /* consumed (delivered, answered or dropped) */
	V_RETRY, /* keep it in the TX ring, try again next iteration */
};

static enum verdict drop(struct flow *fl, enum drop_reason r)
{
	fl->st.drops[r]++;
	return V_DONE;
}

/* Gathers a control message's payload from its frames. */
static void ctrl_gather(struct dg_ctrl_msg *m, const struct dg_frame *fr,
			uint32_t cnt)
{
	uint32_t i, len = 0;

	memset(m, 0, sizeof(*m));
	for (i = 0; i < cnt && len < sizeof(*m); i++) {
		uint32_t take = fr[i].len;

		if (len + take > sizeof(*m))
			take = sizeof(*m) - len;
		memcpy((uint8_t *)m + len, fr[i].data, take);
		len += take;
	}
}

/*
 * A control message from host flow f. Its reply goes to f's own RX ring;
 * without room the message stays in the TX ring (back-pressure).
 */
static enum verdict do_ctrl(struct dg_nic *n, uint32_t tid, uint32_t f,
			    const struct dg_frame *fr, uint32_t cnt)
{
	struct tenant *t = &n->tenants[tid];
	struct flow *fl = &t->flows[f];
	struct dg_ctrl_msg m;
	uint16_t conn = 0;
	int st;

	if (cnt > 4)
		return drop(fl, DROP_BAD_CTRL);
	if (rx_room(t, fl) < 1) {
		rx_refresh(t, f);
		return V_RETRY;
	}
	ctrl_gather(&m, fr, cnt);
	switch (m.op) {
	case DG_CTRL_REGISTER:
		st = ctrl_register(n, tid, f, &m);
		break;
	case DG_CTRL_OPEN:
		st = ctrl_open(n, tid, f, &m, fr[0].rpc_id, &conn);
		break;
	case DG_CTRL_CLOSE:
		st = ctrl_close(n, tid, f, &m);
		conn = m.conn;
		break;
	default:
		fl->st.drops[DROP_BAD_CTRL]++;
		st = DG_ST_BAD_FRAME;
		break;
	}
	if (st != ST_PENDING)
		rx_status(t, f, DG_FF_CTRL, fr[0].rpc_id, conn, 0, (uint8_t)st);
	return V_DONE;
}

/*
 * Delivers a request to a server flow of service svc, chosen by its load
 * balancer. 0: delivered; DG_ST_*: the status to answer the caller with;
 * -EAGAIN: try again (the server's credits are being refreshed).
 */
static int svc_deliver(struct dg_nic *n, struct busy *b, uint16_t svc,
		       const struct dg_frame *fr, uint32_t cnt, uint16_t cid)
{
	const struct server_ref *srv;
	struct tenant *st;
	uint32_t flow;
	bool armed;
	int rc;

	if (svc == NO_IDX || !n->services[svc].used)
		return DG_ST_NO_SERVICE;
	/*
	 * Before answering BUSY, learn the server's real credits: a request
	 * that found the ring full is retried, on the same server flow, once
	 * the rx_head READ that the failed delivery posted has come back, and
	 * only then refused. (A fresh pick would hit another flow whose
	 * cached credits may be as stale, and refuse without asking it.)
	 */
	armed = b->armed && b->rpc == fr[0].rpc_id;
	if (armed) {
		st = &n->tenants[b->tenant];
		flow = b->flow;
	} else {
		srv = lb_pick(n, &n->services[svc], cid);
		st = srv ? &n->tenants[srv->tenant] : NULL;
		flow = srv ? srv->flow : 0;
	}
	if (!st || !st->used || st->dead || flow >= st->nflows) {
		b->armed = false;
		return DG_ST_UNREACHABLE;
	}
	if (armed && st->flows[flow].rx_head_pending)
		return -EAGAIN;
	rc = rx_deliver(st, flow, fr, cnt, cid);
	if (rc && !armed) {
		b->armed = true;
		b->rpc = fr[0].rpc_id;
		b->tenant = (uint16_t)(st - n->tenants);
		b->flow = (uint16_t)flow;
		return -EAGAIN;
	}
	b->armed = false;
	if (rc) {
		st->flows[flow].st.busy++;
		return DG_ST_BUSY;
	}
	pend_push(&st->flows[flow], &fr[0], cid);
	return 0;
}

/* A request from client flow f on connection conn_id. */
static enum verdict do_request(struct dg_nic *n, uint32_t tid, uint32_t f,
			       const struct dg_frame *fr, uint32_t cnt)
{
	struct tenant *t = &n->tenants[tid];
	struct flow *fl = &t->flows[f];
	uint16_t cid = fr[0].conn_id;
	struct conn *c = cid < MAX_CONNS ? &n->conns[cid] : NULL;
	int st;

	if (!c ||
	    (c->state != CONN_OPEN && c->state != CONN_REMOTE &&
	     c->state != CONN_DEAD) ||
	    c->tenant != tid || c->flow != f) {
		/* Tell the caller; without room, retry later. */
		if (rx_status(t, f, DG_FF_RESP, fr[0].rpc_id, cid, fr[0].fn_id,
			      DG_ST_NO_CONN))
			return V_RETRY;
		fl->st.drops[DROP_BAD_CONN]++;
		return V_DONE;
	}
	if (c->state == CONN_DEAD) {
		st = DG_ST_UNREACHABLE;
	} else if (c->state == CONN_REMOTE) {
		/* Every call through a link is tracked: wait for answers. */
		if (pend_full(fl)) {
			fl->st.stalled++;
			return V_RETRY;
		}
		st = peer_send(n, c->peer, fr, cnt, cid);
		if (st == -EAGAIN)
			return V_RETRY; /* the link's credits: back-pressure */
		if (!st)		/* tracked: answered if the link dies */
			pend_push(fl, &fr[0], cid);
		st = st ? DG_ST_UNREACHABLE : 0;
	} else if (c->svc == SVC_LOOPBACK) {
		/* Back to the caller as its own response; no room: retry. */
		if (rx_deliver_as(t, f, fr, cnt, cid, DG_FF_RESP))
			return V_RETRY;
		st = 0;
	} else {
		st = svc_deliver(n, &fl->busy, c->svc, fr, cnt, cid);
		if (st == -EAGAIN)
			return V_RETRY;
	}
	if (st && rx_status(t, f, DG_FF_RESP, fr[0].rpc_id, cid, fr[0].fn_id,
			    (uint8_t)st))
		return V_RETRY;
	return V_DONE;
}

/*
 * A response from server flow f. conn_id is what the server was delivered
 * with: a client connection at this engine, or an INBOUND entry whose
 * client is behind a peer engine.
 */
static enum verdict do_response(struct dg_nic *n, uint32_t tid, uint32_t f,
				const struct dg_frame *fr, uint32_t cnt)
{
	struct flow *fl = &n->tenants[tid].flows[f];
	uint16_t cid = fr[0].conn_id;
	struct tenant *ct;
	struct conn *c;
	int rc;

	if (cid >= MAX_CONNS)
		return drop(fl, DROP_BAD_CONN);
	c = &n->conns[cid];
	pend_pop(fl, &fr[0]);
	if (c->state == CONN_INBOUND) {
		rc = peer_send(n, c->peer, fr, cnt, c->remote);
		if (rc == -EAGAIN) {
			fl->st.stalled++;
			return V_RETRY;
		}
		return rc ? drop(fl, DROP_BAD_CONN) : V_DONE;
	}
	if (c->state != CONN_OPEN)
		return drop(fl, DROP_BAD_CONN); /* client went away */
	ct = &n->tenants[c->tenant];
	if (!ct->used || ct->dead)
		return drop(fl, DROP_BAD_CONN);
	/* No room at the client: hold the server's ring (back-pressure). */
	if (rx_deliver(ct, c->flow, fr, cnt, cid)) {
		fl->st.stalled++;
		return V_RETRY;
	}
	return V_DONE;
}

/*
 * Checks one frame of an RPC against the rules every frame must keep.
 * The host is not trusted: nothing it writes may crash the engine.
 */
static int frame_check(const struct dg_frame *fr, const struct dg_frame *first,
		       uint32_t idx)
{
	uint8_t kind = fr->flags & (DG_FF_REQ | DG_FF_RESP | DG_FF_CTRL);

	if (kind != DG_FF_REQ && kind != DG_FF_RESP && kind != DG_FF_CTRL)
		return DROP_BAD_FLAGS;
	if (fr->len > DG_FRAME_PAYLOAD)
		return DROP_BAD_LEN;
	if (fr->idx != idx || fr->cnt != first->cnt ||
	    fr->rpc_id != first->rpc_id || fr->flags != first->flags ||
	    fr->conn_id != first->conn_id)
		return DROP_BAD_IDX;
	/* Every frame but the last is full. */
	if (idx + 1u < fr->cnt && fr->len != DG_FRAME_PAYLOAD)
		return DROP_BAD_LEN;
	return -1;
}

/* Empty READs in a row after which consumed TX slots are reported. */
#define TXHEAD_IDLE 3u
/* Smallest READ of a TX ring: one RPC of up to 80 payload bytes. */
#define READ_MIN    2u

/*
 * Consumes whole RPCs from the shadow of flow f's TX ring, from tx_tail up
 * to avail slots that the last READ brought in. Stops at the first slot not
 * ready, at an RPC whose frames are not all in yet (and asks the next READ
 * to cover it), or when routing wants a retry.
 */
static uint32_t tx_process(struct dg_nic *n, uint32_t tid, uint32_t f,
			   uint32_t avail)
{
	struct tenant *t = &n->tenants[tid];
	struct flow *fl = &t->flows[f];
	/* Frames of one RPC, gathered contiguous (the ring may wrap). */
	static __thread struct dg_frame rpc[DG_MAX_FRAMES];
	uint32_t done = 0;
	bool seen = false;

	fl->tx_want = 0;
	fl->blocked = false;
	while (done < avail) {
		uint32_t pos = fl->tx_tail;
		struct dg_frame *first = tx_slot(t, f, pos);
		uint32_t cnt, i;
		enum verdict v;
		int bad = -1;

		if (!dg_slot_ready(first, pos, t->rflags))
			break;
		seen = true;
		cnt = first->cnt;
		if (first->idx != 0 || cnt == 0 || cnt > DG_MAX_FRAMES ||
		    cnt > t->slots) {
			/* Not the start of an RPC: skip this one slot. */
			fl->st.drops[cnt > DG_MAX_FRAMES || cnt > t->slots
					     ? DROP_TOO_BIG
					     : DROP_BAD_IDX]++;
			fl->tx_tail++;
			done++;
			continue;
		}
		if (cnt > avail - done) {
			fl->tx_want = cnt; /* the next READ brings it all */
			break;
		}
		for (i = 0; i < cnt; i++) {
			struct dg_frame *s = tx_slot(t, f, pos + i);

			if (!dg_slot_ready(s, pos + i, t->rflags))
				break;
			bad = frame_check(s, first, i);
			if (bad >= 0)
				break;
			rpc[i] = *s;
		}
		if (i < cnt && bad < 0)
			break; /* rest not written yet */
		if (bad >= 0) {
			/* Drop the frames up to and including the bad one. */
			fl->st.drops[bad]++;
			fl->tx_tail += i + 1;
			done += i + 1;
			continue;
		}
		if (rpc[0].flags & DG_FF_CTRL)
			v = do_ctrl(n, tid, f, rpc, cnt);
		else if (rpc[0].flags & DG_FF_REQ)
			v = do_request(n, tid, f, rpc, cnt);
		else
			v = do_response(n, tid, f, rpc, cnt);
		if (v == V_RETRY) {
			fl->blocked = true;
			break;
		}
		fl->st.rpcs_tx++;
		fl->st.frames_tx += cnt;
		fl->st.bytes_tx += (uint64_t)(cnt - 1) * DG_FRAME_PAYLOAD +
				   rpc[cnt - 1].len;
		fl->tx_tail += cnt;
		done += cnt;
	}
	if (seen)
		fl->idle_reads = 0;
	else if (fl->idle_reads < UINT32_MAX)
		fl->idle_reads++;
	/*
	 * The next READ covers twice what this one brought (read_batch at
	 * most, READ_MIN at least): a quiet flow costs small READs (on
	 * soft-RoCE the kernel copies and checksums every byte), a stream
	 * grows to full batches within a few READs.
	 */
	fl->read_size = done * 2 < READ_MIN ? READ_MIN : done * 2;
	return done;
}

/* Posts the READ of the next TX slots of flow f (two segments at a wrap). */
static void tx_post_read(struct dg_nic *n, struct tenant *t, uint32_t f)
{
	struct flow *fl = &t->flows[f];
	uint32_t want = fl->read_size ? fl->read_size : READ_MIN, start, first;

	if (want > n->o.read_batch)
		want = n->o.read_batch;
	if (fl->tx_want > want)
		want = fl->tx_want;
	if (want > t->slots)
		want = t->slots;
	start = fl->tx_tail & t->mask;
	first = t->slots - start < want ? t->slots - start : want;
	if (t->hm->ops->read(t->hm,
			     dg_tx_ring_off(&t->lay, f) +
				     (uint64_t)start * DG_SLOT_SIZE,
			     first * DG_SLOT_SIZE, mktag(TAG_TXREAD, f, 0)))
		return;
	fl->read_pending = 1;
	if (want > first && t->hm->ops->read(t->hm, dg_tx_ring_off(&t->lay, f),
					     (want - first) * DG_SLOT_SIZE,
					     mktag(TAG_TXREAD, f, 1)) == 0)
		fl->read_pending = 2;
	fl->read_pos = fl->tx_tail;
	fl->read_n = fl->read_pending == 2 ? want : first;
	fl->st.reads++;
	fl->st.read_slots += fl->read_n;
}

/*
 * Tells the host how far its TX ring was consumed: once a quarter of the
 * ring was, or (force) once the flow has gone quiet, which includes a host
 * that stopped because it saw its ring full, or once consumption stopped
 * at an RPC that must wait (back-pressure): its host may be waiting for
 * TX room, e.g. a server thread with a response to write, and must learn
 * of every slot already freed. Not on the first empty READ: a closed-loop
 * caller usually writes again before the third, and the WRITE would cost
 * as much as a READ.
 */
static void tx_write_head(struct tenant *t, uint32_t f, bool force)
{
	struct flow *fl = &t->flows[f];
	uint32_t progress = fl->tx_tail - fl->tx_head_sent;

	if (!progress || (!force && progress < t->slots / 4))
		return;
	ctrl_of(t, f)->tx_head = fl->tx_tail;
	if (t->hm->ops->write(t->hm,
			      dg_ctrl_off(&t->lay, f) +
				      offsetof(struct dg_flow_ctrl, tx_head),
			      4, mktag(TAG_WRITE, f, 1)) == 0)
		fl->tx_head_sent = fl->tx_tail;
}

/* ---- frames from peer engines -------------------------------------------- */

static void peer_rx(void *arg, const struct dg_frame *f)
{
	struct peer_ref *p = arg;

	/* peer_poll polls only while the FIFO has room for a whole poll. */
	p->fifo[p->tail++ & (PEER_FIFO - 1)] = *f;
}

/* Engine-to-engine control: BIND, BIND_ACK, UNBIND. */
static enum verdict peer_ctrl(struct dg_nic *n, uint32_t pi,
			      const struct dg_frame *fr, uint32_t cnt)
{
	struct peer_ref *p = &n->peers[pi];
	uint16_t x = fr[0].conn_id;
	struct dg_ctrl_msg m;
	struct service *s;
	struct conn *c;
	int i, rc;

	ctrl_gather(&m, fr, cnt);
	switch (m.op) {
	case PEER_BIND: {
		uint8_t st = DG_ST_OK;

		if (dg_peer_room(p->link) < 1)
			return V_RETRY;
		s = memchr(m.service, 0, DG_NAME_MAX) ? svc_open(n, m.service)
						      : NULL;
		if (!s) {
			st = DG_ST_NO_SERVICE;
		} else if (p->inmap[x] == NO_IDX) {
			i = conn_alloc(n);
			if (i < 0) {
				st = DG_ST_BUSY;
			} else {
				n->conns[i] = (struct conn){
					.state = CONN_INBOUND,
					.svc = (uint16_t)(s - n->services),
					.peer = (uint16_t)pi,
					.remote = x};
				p->inmap[x] = (uint16_t)i;
			}
		}
		peer_status(n, pi, DG_FF_CTRL, fr[0].rpc_id, x, 0, st,
			    PEER_BIND_ACK);
		return V_DONE;
	}
	case PEER_BIND_ACK:
		c = x < MAX_CONNS ? &n->conns[x] : NULL;
		if (!c || c->state != CONN_BINDING || c->peer != pi) {
			p->st.drops++;
			return V_DONE;
		}
		/* The host's OPEN gets its answer now. */
		rc = rx_status(&n->tenants[c->tenant], c->flow, DG_FF_CTRL,
			       c->rpc, x, 0, fr[0].status);
		if (rc)
			return V_RETRY;
		c->state = fr[0].status == DG_ST_OK ? CONN_REMOTE : CONN_FREE;
		return V_DONE;
	case PEER_UNBIND:
		if (p->inmap[x] != NO_IDX) {
			n->conns[p->inmap[x]].state = CONN_FREE;
			p->inmap[x] = NO_IDX;
		}
		return V_DONE;
	default:
		p->st.drops++;
		return V_DONE;
	}
}

/* A request from a client behind peer engine pi. */
static enum verdict peer_request(struct dg_nic *n, uint32_t pi,
				 const struct dg_frame *fr, uint32_t cnt)
{
	struct peer_ref *p = &n->peers[pi];
	uint16_t x = fr[0].conn_id, i = p->inmap[x];
	int st;

	if (dg_peer_room(p->link) < 1)
		return V_RETRY; /* keep room for an error answer */
	if (i == NO_IDX)
		st = DG_ST_NO_CONN;
	else
		st = svc_deliver(n, &p->busy, n->conns[i].svc, fr, cnt, i);
	if (st == -EAGAIN)
		return V_RETRY;
	if (st == DG_ST_BUSY)
		p->st.busy++;
	if (st)
		peer_status(n, pi, DG_FF_RESP, fr[0].rpc_id, x, fr[0].fn_id,
			    (uint8_t)st, 0);
	return V_DONE;
}

/* A response for one of our client connections through peer pi. */
static enum verdict peer_response(struct dg_nic *n, uint32_t pi,
				  const struct dg_frame *fr, uint32_t cnt)
{
	uint16_t x = fr[0].conn_id;
	struct conn *c = x < MAX_CONNS ? &n->conns[x] : NULL;
	struct tenant *ct;

	if (!c || c->state != CONN_REMOTE || c->peer != pi) {
		n->peers[pi].st.drops++; /* closed meanwhile */
		return V_DONE;
	}
	ct = &n->tenants[c->tenant];
	if (!ct->used || ct->dead) {
		n->peers[pi].st.drops++;
		return V_DONE;
	}
	/* No room: the FIFO holds it, then the link's credits stop. */
	if (rx_deliver(ct, c->flow, fr, cnt, x))
		return V_RETRY;
	pend_pop(&ct->flows[c->flow], &fr[0]);
	return V_DONE;
}

/* Routes whole messages from peer pi's FIFO; returns frames consumed. */
static uint32_t peer_process(struct dg_nic *n, uint32_t pi)
{
	static __thread struct dg_frame msg[DG_MAX_FRAMES];
	struct peer_ref *p = &n->peers[pi];
	uint32_t done = 0;

	while (p->tail != p->head) {
		const struct dg_frame *first =
			&p->fifo[p->head & (PEER_FIFO - 1)];
		uint32_t cnt = first->cnt, i;
		enum verdict v;
		int bad = -1;

		if (first->idx != 0 || !cnt || cnt > DG_MAX_FRAMES) {
			p->st.drops++; /* a broken peer: skip the frame */
			p->head++;
			continue;
		}
		if (p->tail - p->head < cnt)
			break; /* the rest is still on its way */
		for (i = 0; i < cnt && bad < 0; i++) {
			msg[i] = p->fifo[(p->head + i) & (PEER_FIFO - 1)];
			bad = frame_check(&msg[i], &msg[0], i);
		}
		if (bad >= 0) {
			p->st.drops++;
			p->head += i;
			continue;
		}
		if (msg[0].flags & DG_FF_CTRL)
			v = peer_ctrl(n, pi, msg, cnt);
		else if (msg[0].flags & DG_FF_REQ)
			v = peer_request(n, pi, msg, cnt);
		else
			v = peer_response(n, pi, msg, cnt);
		if (v == V_RETRY)
			break;
		p->st.rpcs_rx++;
		p->st.frames_rx += cnt;
		p->head += cnt;
		done += cnt;
	}
	return done;
}

static int peer_poll(struct dg_nic *n, uint32_t pi)
{
	struct peer_ref *p = &n->peers[pi];
	uint32_t room = PEER_FIFO - (p->tail - p->head);
	uint32_t msgs = room / dg_peer_batch_frames(p->link);
	int rc = 0;

	if (msgs && !p->dead) {
		rc = dg_peer_poll(p->link, peer_rx, p, msgs);
		if (rc < 0)
			peer_kill(n, pi, rc);
	}
	return (int)peer_process(n, pi) + (rc > 0 ? rc : 0);
}

/* ---- tenants ------------------------------------------------------------ */

static int tenant_init(struct dg_nic *n, struct dg_hostmem *hm,
		       void *local_region)
{
	const struct dg_region_hdr *h = (const void *)hm->shadow;
	struct dg_region_hdr hdr;
	struct tenant *t;
	uint32_t i, j;

	/* The header was copied into the shadow by the caller. */
	memcpy(&hdr, h, sizeof(hdr));
	if (hdr.magic != DG_REGION_MAGIC || hdr.version != DG_REGION_VERSION)
		return -EPROTO;
	for (i = 0; i < MAX_TENANTS && n->tenants[i].used; i++)
		;
	if (i == MAX_TENANTS)
		return -EUSERS;
	t = &n->tenants[i];
	memset(t, 0, sizeof(*t));
	if (dg_region_layout(hdr.nflows, hdr.slots, &t->lay) ||
	    t->lay.total > hm->size)
		return -EINVAL;
	t->flows = calloc(hdr.nflows, sizeof(*t->flows));
	if (!t->flows)
		return -ENOMEM;
	for (j = 0; j < hdr.nflows; j++) {
		struct flow *fl = &t->flows[j];

		fl->pend_mask = 2 * hdr.slots - 1;
		fl->pend = calloc(2 * hdr.slots, sizeof(*fl->pend));
		if (!fl->pend) {
			while (j--)
				free(t->flows[j].pend);
			free(t->flows);
			t->flows = NULL;
			return -ENOMEM;
		}
	}
	t->used = true;
	t->hm = hm;
	t->nflows = hdr.nflows;
	t->slots = hdr.slots;
	t->mask = hdr.slots - 1;
	t->rflags = hdr.flags & DG_RING_F_CSUM;
	t->local_region = local_region;
	if (n->o.verbose)
		fprintf(stderr,
			"dagger-nic: tenant %u attached: %u flows x %u slots\n",
			i, t->nflows, t->slots);
	return (int)i;
}

/*
 * A server tenant is gone: every request it was handed and had not answered
 * is answered UNREACHABLE, so its callers get an error now rather than at
 * their deadline.
 */
static void pend_fail(struct dg_nic *n, struct tenant *t)
{
	uint32_t f, i;

	for (f = 0; t->flows && f < t->nflows; f++) {
		struct flow *fl = &t->flows[f];

		for (i = fl->pend_head; i != fl->pend_tail; i++) {
			struct pending *p = &fl->pend[i & fl->pend_mask];
			struct conn *c;

			if (p->conn >= MAX_CONNS)
				continue;
			c = &n->conns[p->conn];
			if (c->state == CONN_INBOUND)
				peer_status(n, c->peer, DG_FF_RESP, p->rpc,
					    c->remote, p->fn, DG_ST_UNREACHABLE,
					    0);
			else if (c->state == CONN_OPEN &&
				 n->tenants[c->tenant].used &&
				 !n->tenants[c->tenant].dead &&
				 &n->tenants[c->tenant] != t)
				rx_status(&n->tenants[c->tenant], c->flow,
					  DG_FF_RESP, p->rpc, p->conn, p->fn,
					  DG_ST_UNREACHABLE);
		}
		fl->pend_head = fl->pend_tail;
	}
}

static void tenant_free(struct dg_nic *n, uint32_t tid)
{
	struct tenant *t = &n->tenants[tid];
	uint32_t i, j;

	pend_fail(n, t);
	/* Forget its services and connections. */
	for (i = 0; i < MAX_SERVICES; i++) {
		struct service *s = &n->services[i];

		for (j = 0; j < s->nservers;) {
			if (s->servers[j].tenant == tid)
				s->servers[j] = s->servers[--s->nservers];
			else
				j++;
		}
	}
	for (i = 0; i < MAX_CONNS; i++) {
		struct conn *c = &n->conns[i];

		/* Its client connections (INBOUND ones have no tenant). */
		if (c->state == CONN_FREE || c->state == CONN_INBOUND ||
		    c->tenant != tid)
			continue;
		if (c->state == CONN_REMOTE)
			peer_status(n, c->peer, DG_FF_CTRL, 0, (uint16_t)i, 0,
				    0, PEER_UNBIND);
		c->state = CONN_FREE;
	}
	t->hm->ops->destroy(t->hm);
	for (i = 0; t->flows && i < t->nflows; i++)
		free(t->flows[i].pend);
	free(t->flows);
	memset(t, 0, sizeof(*t));
}

static void take_pending(struct dg_nic *n)
{
	if (!__atomic_load_n(&n->pend_flag, __ATOMIC_ACQUIRE))
		return;
	pthread_mutex_lock(&n->lock);
	if (n->pend_attach && !n->pend_attach->done) {
		struct pending_attach *p = n->pend_attach;
		struct dg_hostmem *hm;
		int rc = dg_hostmem_local_create(p->region, p->size, &hm);

		if (!rc) {
			memcpy(hm->shadow, p->region,
			       sizeof(struct dg_region_hdr));
			rc = tenant_init(n, hm, p->region);
			if (rc < 0)
				hm->ops->destroy(hm);
		}
		p->tenant = rc;
		p->done = true;
	}
	if (n->pend_detach >= 0) {
		if (n->tenants[n->pend_detach].used)
			tenant_free(n, (uint32_t)n->pend_detach);
		n->pend_detach = -1;
	}
	__atomic_store_n(&n->pend_flag, 0, __ATOMIC_RELEASE);
	pthread_cond_broadcast(&n->cond);
	pthread_mutex_unlock(&n->lock);
}

int dg_nic_attach_local(struct dg_nic *n, void *region, uint64_t size)
{
	struct pending_attach p = {.region = region, .size = size};

	pthread_mutex_lock(&n->lock);
	while (n->pend_attach)
		pthread_cond_wait(&n->cond, &n->lock);
	n->pend_attach = &p;
	__atomic_store_n(&n->pend_flag, 1, __ATOMIC_RELEASE);
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
static void accept_rdma(struct dg_nic *n)
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
	struct dg_peer *link;
	struct dg_attach_rep rep = {.magic = DG_ATTACH_MAGIC,
				    .engine_id = n->o.engine_id};
	struct dg_rdma_remote rem;
	struct dg_rdma_ep *ep;
	struct dg_hostmem *hm;
	size_t plen = sizeof(pd);
	int rc;

	if (!n->listener)
		return;
	/* One set of queue sizes that fits both kinds of connection. */
	dg_peer_ep_attr(&po, &attr);
	if (attr.sq_depth < 256)
		attr.sq_depth = 256;
	if (attr.rd_depth < 16)
		attr.rd_depth = 16;
	memset(&pd, 0, sizeof(pd));
	if (dg_rdma_listener_next(n->listener, &attr, 0, &pd, &plen, &ep))
		return;
	if (dg_peer_is_hello(&pd, plen)) {
		rc = dg_peer_accept(ep, &pd, plen, &po, 5000, &link);
		if (rc) {
			fprintf(stderr, "dagger-nic: peer accept: %s\n",
				strerror(-rc));
			return;
		}
		rc = peer_add(n, link, false, NULL, 0);
		if (rc < 0)
			dg_peer_destroy(link);
		else if (n->o.verbose)
			fprintf(stderr,
				"dagger-nic: peer link %d from engine "
				"%u\n",
				rc, dg_peer_remote_engine(link));
		return;
	}
	memcpy(&req, &pd, sizeof(req));
	if (plen < sizeof(req) || req.magic != DG_ATTACH_MAGIC) {
		fprintf(stderr, "dagger-nic: refused a connection: bad "
				"attach request\n");
		dg_rdma_ep_destroy(ep);
		return;
	}
	rem = (struct dg_rdma_remote){req.addr, req.rkey, req.len};
	rc = dg_hostmem_rdma_create(ep, &rem, &hm);
	if (rc) {
		dg_rdma_ep_destroy(ep);
		return;
	}
	/* The region header comes from the request, not a READ. */
	*(struct dg_region_hdr *)hm->shadow = (struct dg_region_hdr){
		.magic = DG_REGION_MAGIC,
		.version = DG_REGION_VERSION,
		.nflows = req.nflows,
		.slots = req.slots,
		.flags = req.flags,
	};
	rc = tenant_init(n, hm, NULL);
	rep.status = rc < 0 ? rc : 0;
	rep.tenant = rc < 0 ? 0 : (uint32_t)rc;
	if (rc < 0) {
		hm->ops->destroy(hm); /* also rejects */
		return;
	}
	if (dg_rdma_ep_accept(ep, &rep, sizeof(rep), 5000)) {
		tenant_free(n, (uint32_t)rc);
		return;
	}
}

/* ---- the loop ------------------------------------------------------------ */

static uint64_t mono_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000u + (uint64_t)t.tv_nsec / 1000u;
}

/* READs in a row that found nothing before a flow counts as idle. */
#define POLL_HOT_READS 1u
/* First interval between an idle flow's READs; it doubles per empty READ. */
#define POLL_BASE_US   8u

/*
 * Whether flow f's next READ may go now. Busy flows: always (one READ in
 * flight per flow, back to back). Idle flows of RDMA tenants: at doubling
 * intervals up to poll_max_us; a READ is the engine's costliest act (a
 * device round trip, on soft-RoCE a system call and the kernel's work),
 * and idle flows READ back to back would slow down the busy ones in
 * proportion to their number. A flow with requests delivered and not
 * answered, or with frames just delivered to it, is busy: its host is
 * expected to write. Local tenants (a READ is a copy) are always busy.
 */
static bool read_due(struct dg_nic *n, struct tenant *t, struct flow *fl,
		     uint64_t *now)
{
	uint32_t k;
	uint64_t iv;

	if (!t->hm->ops->arm || fl->idle_reads < POLL_HOT_READS ||
	    fl->pend_head != fl->pend_tail)
		return true;
	if (!*now)
		*now = mono_us(); /* once per tenant poll, not per flow */
	if (!fl->next_read_us) {
		k = fl->idle_reads - POLL_HOT_READS;
		iv = k >= 20 ? n->o.poll_max_us : (uint64_t)POLL_BASE_US << k;
		if (iv > n->o.poll_max_us)
			iv = n->o.poll_max_us;
		fl->next_read_us = *now + iv;
	}
	if (*now < fl->next_read_us) {
		if (fl->next_read_us < n->next_due_us)
			n->next_due_us = fl->next_read_us;
		return false;
	}
	fl->next_read_us = 0; /* the READ's outcome schedules the next */
	return true;
}

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
					tx_process(n, tid, fi, fl->read_n);
				work += (int)got;
				tx_write_head(t, fi,
					      fl->blocked ||
						      fl->idle_reads >=
							      TXHEAD_IDLE);
			} else if (kind == TAG_RXHEAD) {
				fl->rx_head_pending = false;
				fl->rx_head = __atomic_load_n(
					&ctrl_of(t, fi)->rx_head,
					__ATOMIC_RELAXED);
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
		    read_due(n, t, &t->flows[f], &now))
			tx_post_read(n, t, f);
	return work;
}

static void tenant_flush(struct dg_nic *n, uint32_t tid)
{
	struct tenant *t = &n->tenants[tid];
	uint32_t f;

	(void)n;
	for (f = 0; f < t->nflows; f++)
		rx_write_back(t, f);
	t->hm->ops->flush(t->hm);
}

/*
 * Peer link liveness, a few times per keepalive interval (the clock is
 * read here, once in 64 loop iterations, never per frame), and answers
 * still owed for calls through links that went down.
 */
static void peer_timers(struct dg_nic *n)
{
	uint64_t now = mono_us() / 1000u;
	uint32_t i;

	for (i = 0; i < MAX_PEERS; i++) {
		struct peer_ref *p = &n->peers[i];
		int rc;

		if (p->used && !p->dead && (rc = dg_peer_tick(p->link, now)))
			peer_kill(n, i, rc);
	}
	if (n->remote_sweep)
		n->remote_sweep = !remote_fail(n, NO_IDX);
}

int dg_nic_poll(struct dg_nic *n)
{
	uint32_t i;
	int work = 0;

	take_pending(n);
	n->next_due_us = UINT64_MAX;
	if (n->listener && (n->loops & 255) == 0)
		accept_rdma(n);
	if ((n->loops & 63) == 0)
		peer_timers(n);
	n->loops++;
	for (i = 0; i < MAX_TENANTS; i++) {
		struct tenant *t = &n->tenants[i];

		if (!t->used)
			continue;
		if (t->dead && t->hm->ops->check(t->hm) != 0 &&
		    !t->local_region) {
			if (n->o.verbose)
				fprintf(stderr, "dagger-nic: tenant %u gone\n",
					i);
			tenant_free(n, i);
			continue;
		}
		work += tenant_poll(n, i);
	}
	for (i = 0; i < MAX_PEERS; i++) {
		struct peer_ref *p = &n->peers[i];

		if (!p->used)
			continue;
		if (p->dead) {
			peer_free(n, i);
			continue;
		}
		work += peer_poll(n, i);
	}
	/* Deliveries above may have touched any tenant's RX rings. */
	for (i = 0; i < MAX_TENANTS; i++)
		if (n->tenants[i].used && !n->tenants[i].dead)
			tenant_flush(n, i);
	/* One SEND per link for what this iteration queued. */
	for (i = 0; i < MAX_PEERS; i++)
		if (n->peers[i].used && !n->peers[i].dead) {
			int rc = dg_peer_flush(n->peers[i].link);

			if (rc && rc != -EAGAIN)
				peer_kill(n, i, rc);
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
	struct pollfd fds[MAX_TENANTS + MAX_PEERS + 1];
	struct timespec ts;
	uint64_t tmo;
	nfds_t k = 0;
	uint32_t i;

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
	if (n->listener && ppoll(fds, k, &ts, NULL) > 0 && fds[k - 1].revents)
		accept_rdma(n);
	else if (!n->listener)
		ppoll(fds, k, &ts, NULL);
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
		if (now - last_work > 100000)
			usleep(n->o.idle_us);
	}
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
	n->pend_detach = -1;
	pthread_mutex_init(&n->lock, NULL);
	pthread_cond_init(&n->cond, NULL);
	if (n->o.listen_addr) {
		rc = dg_rdma_listen(n->o.listen_addr, n->o.port, 64,
				    &n->listener);
		if (rc) {
			free(n);
			return rc;
		}
	}
	*out = n;
	return 0;
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
			tenant_free(n, i);
	for (i = 0; i < MAX_PEERS; i++)
		if (n->peers[i].used)
			peer_free(n, i);
	dg_rdma_listener_destroy(n->listener);
	pthread_mutex_destroy(&n->lock);
	pthread_cond_destroy(&n->cond);
	free(n);
}

void dg_nic_stats_print(struct dg_nic *n, FILE *f)
{
	uint32_t i, j, r;

	fprintf(f, "# dagger-nic statistics\n");
	for (i = 0; i < MAX_PEERS; i++) {
		struct peer_ref *p = &n->peers[i];
		struct dg_peer_stats ls;

		if (!p->used)
			continue;
		dg_peer_stats(p->link, &ls);
		fprintf(f,
			"peer %u %s%s: rpcs_tx %llu frames_tx %llu rpcs_rx "
			"%llu frames_rx %llu busy %llu drops %llu keepalives "
			"%llu\n",
			i, p->outbound ? p->addr : "inbound",
			p->dead ? " (down)" : "",
			(unsigned long long)p->st.rpcs_tx,
			(unsigned long long)p->st.frames_tx,
			(unsigned long long)p->st.rpcs_rx,
			(unsigned long long)p->st.frames_rx,
			(unsigned long long)p->st.busy,
			(unsigned long long)p->st.drops,
			(unsigned long long)ls.keepalives);
	}
	for (i = 0; i < MAX_TENANTS; i++) {
		struct tenant *t = &n->tenants[i];

		if (!t->used)
			continue;
		for (j = 0; j < t->nflows; j++) {
			struct flow_stats *s = &t->flows[j].st;

			if (!s->frames_tx && !s->frames_rx && !s->reads)
				continue;
			fprintf(f,
				"tenant %u flow %u: rpcs_tx %llu frames_tx "
				"%llu bytes_tx %llu rpcs_rx %llu frames_rx "
				"%llu reads %llu avg_batch %.1f writes %llu "
				"busy %llu stalled %llu",
				i, j, (unsigned long long)s->rpcs_tx,
				(unsigned long long)s->frames_tx,
				(unsigned long long)s->bytes_tx,
				(unsigned long long)s->rpcs_rx,
				(unsigned long long)s->frames_rx,
				(unsigned long long)s->reads,
				s->reads ? (double)s->frames_tx / s->reads : 0,
				(unsigned long long)s->writes,
				(unsigned long long)s->busy,
				(unsigned long long)s->stalled);
			for (r = 0; r < DROP_NREASONS; r++)
				if (s->drops[r])
					fprintf(f, " drop_%s %llu",
						drop_names[r],
						(unsigned long long)
							s->drops[r]);
			fputc('\n', f);
		}
	}
}
