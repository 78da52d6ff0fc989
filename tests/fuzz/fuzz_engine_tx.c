// SPDX-License-Identifier: MIT
/*
 * fuzz_engine_tx: a hostile tenant's TX rings, against an in-process
 * engine driven by dg_nic_poll() on this thread.
 *
 * Every input starts from a fresh engine with three tenants attached
 * (nic/fuzz_entry.c's synchronous attach):
 *   S  an honest echo server of "echo" (the harness answers its requests);
 *   C  an honest client with a connection E to "echo" and F to "fz";
 *   T  the hostile tenant: flow 0 has connections A to "echo" and L to
 *      the engine's loopback service; flow 1 serves "fz" and holds C's
 *      first calls. Its rings are checksummed when the first byte says so.
 * Then the input is a script of steps: raw slots written into T's TX
 * rings (optionally sealed for their position, aimed at its connections
 * or at the requests it holds), whole messages and control messages from
 * T, engine iterations, S serving, C calling and polling, T reading or
 * not reading its RX rings, T writing any rx_head it likes.
 *
 * What must hold, whatever T writes (each failure aborts):
 *  - no crash, no sanitizer report, the engine's bookkeeping intact
 *    (nic_fuzz_check) after every iteration;
 *  - every message the engine publishes to any tenant is whole and well
 *    formed (fz_raw_recv);
 *  - C gets each of its calls answered at most once, on the connection
 *    it used, and an OK answer from S carries exactly its bytes; a
 *    request S or T is handed on one of C's connections is one C made and
 *    has not had answered, with C's bytes (T cannot call as C);
 *  - in the end, with T still not reading its RX ring, a call from C to
 *    S completes within a bound: T cannot stall the engine, or S's
 *    answers to others (an answer for T waits for room at most the
 *    engine's hold bound, 1 us here, then T is owed DROPPED);
 *  - T never serves "echo" next to S (its REGISTER is DENIED: the
 *    harness's tenants share no identity and S set no secret), so it
 *    never gets a share of C's calls to S.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "fuzz_entry.h"
#include "fuzz_util.h"
#include "fz_raw.h"

#define SLOTS	   64u
#define MAX_STEPS  512u
#define MAX_OUT	   256u /* C's calls outstanding that the harness tracks */
#define FINAL_MAX  400u /* rounds for the final call */
#define SETUP_POLL 16u

enum { FN_ECHO = 1 };

struct call {
	bool out;
	uint32_t conn, len, seed;
};

struct env {
	struct dg_nic *nic;
	struct fz_raw s, c, t;
	uint32_t rpc_s, rpc_c, rpc_t[2];
	uint32_t conn_a, conn_l, conn_e, conn_f;
	/* C's first calls, as T's flow 1 was handed them */
	uint32_t tpend_rpc[4], tpend_conn[4], ntpend;
	struct call calls[MAX_OUT]; /* by rpc id % MAX_OUT */
	uint32_t c_next;	    /* C's next rpc id */
	uint8_t buf[DG_MAX_MSG], pay[DG_MAX_MSG];
};

static struct env *E;

/* On a failure: the engine's counters, to see where things stand. */
static void print_stats(void)
{
	dg_nic_stats_print(E->nic, stderr);
}

/* n engine iterations, then a check of its bookkeeping (it costs). */
static void poll_engine(struct env *e, uint32_t n)
{
	uint32_t i;
	int rc;

	for (i = 0; i < n; i++)
		dg_nic_poll(e->nic);
	rc = nic_fuzz_check(e->nic);
	if (rc)
		fz_fail("engine bookkeeping broken: %d", rc);
	if (e->t.tenant >= 0 && nic_fuzz_serves(e->nic, "echo", e->t.tenant))
		fz_fail("T serves \"echo\" next to S: C's calls to S reach T");
}

static void fill(uint8_t *p, uint32_t len, uint32_t seed)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 131u + i * 7u + (i >> 8));
}

/* A control message from flow f of r; returns the reply's status. */
static int ctrl(struct env *e, struct fz_raw *r, uint32_t f, uint32_t *rpc,
		uint8_t op, const char *svc, uint32_t *conn)
{
	struct dg_ctrl_msg m = {.op = op};
	struct fz_msg rep;
	uint32_t id = (*rpc)++, i;

	snprintf(m.service, sizeof(m.service), "%s", svc);
	if (fz_raw_send(r, f, DG_FF_CTRL, 0, id, 0, 0, &m, sizeof(m)))
		fz_fail("setup: no TX room for a control message");
	for (i = 0; i < SETUP_POLL; i++) {
		poll_engine(e, 1);
		if (fz_raw_ctrl_reply(r, f, id, &rep, e->buf)) {
			fz_raw_release(r, f);
			if (conn)
				*conn = rep.h.conn;
			return rep.h.status;
		}
	}
	fz_fail("setup: no reply to control op %u", op);
}

static void attach(struct env *e, struct fz_raw *r, uint32_t nflows,
		   unsigned rflags)
{
	if (fz_raw_init(r, nflows, SLOTS, rflags))
		fz_fail("setup: region");
	r->tenant = nic_fuzz_attach(e->nic, r->region, r->size);
	if (r->tenant < 0)
		fz_fail("setup: attach %d", r->tenant);
}

/*
 * C calls on conn, tracked by rpc id; ids whose slot still holds a call in
 * flight (T may never answer its own) are skipped. false: no TX room.
 */
static bool c_call(struct env *e, uint32_t conn, uint32_t len, uint32_t *rpc)
{
	struct call *k;
	uint32_t id, i;

	for (i = 0; i < MAX_OUT; i++, e->c_next++) {
		k = &e->calls[e->c_next % MAX_OUT];
		if (!k->out)
			break;
	}
	if (i == MAX_OUT)
		return false;
	id = e->c_next;
	fill(e->pay, len, id);
	if (fz_raw_send(&e->c, 0, DG_FF_REQ, 0, id, conn, FN_ECHO, e->pay, len))
		return false;
	*k = (struct call){true, conn, len, id};
	e->c_next++;
	if (rpc)
		*rpc = id;
	return true;
}

/* C reads its RX ring: every answer once, for a call it made. */
static void c_drain(struct env *e)
{
	struct fz_msg m;

	while (fz_raw_recv(&e->c, 0, &m, e->buf) == 1) {
		struct call *k = &e->calls[m.h.rpc_id % MAX_OUT];

		if (!(m.h.flags & DG_FF_RESP))
			fz_fail("C got flags %#x (rpc %u)", m.h.flags,
				m.h.rpc_id);
		if (!k->out || k->seed != m.h.rpc_id)
			fz_fail("C got an answer to rpc %u, which it is not "
				"waiting for (a duplicate or a forgery)",
				m.h.rpc_id);
		if (m.h.conn != k->conn)
			fz_fail("C's rpc %u answered on conn %#x, sent on %#x",
				m.h.rpc_id, m.h.conn, k->conn);
		if (k->conn == e->conn_e) {
			/*
			 * DROPPED: C's RX ring was full past the engine's
			 * hold bound (1 us here; C reads only when the
			 * input says) and S's answer was dropped.
			 */
			if (m.h.status != DG_ST_OK &&
			    m.h.status != DG_ST_BUSY &&
			    m.h.status != DG_ST_DROPPED)
				fz_fail("C's echo rpc %u: status %u",
					m.h.rpc_id, m.h.status);
			fill(e->pay, k->len, k->seed);
			if (m.h.status == DG_ST_OK &&
			    (m.len != k->len || memcmp(m.data, e->pay, m.len)))
				fz_fail("C's echo rpc %u: wrong bytes",
					m.h.rpc_id);
		}
		k->out = false;
	}
	fz_raw_release(&e->c, 0);
}

/*
 * A request on one of C's connections, as S or T was handed it: it must be
 * one C made and has not had answered, with C's bytes (nobody else can
 * send on C's connections).
 */
static void check_from_c(struct env *e, const struct fz_msg *m, const char *who)
{
	const struct call *k = &e->calls[m->h.rpc_id % MAX_OUT];

	if (!k->out || k->seed != m->h.rpc_id || k->conn != m->h.conn)
		fz_fail("%s handed rpc %u on C's conn %#x, which C did not "
			"send or had answered",
			who, m->h.rpc_id, m->h.conn);
	fill(e->pay, k->len, k->seed);
	if (m->len != k->len || memcmp(m->data, e->pay, m->len))
		fz_fail("%s handed C's rpc %u with other bytes", who,
			m->h.rpc_id);
}

/* S answers every request it has (echo), as TX room allows. */
static void s_serve(struct env *e)
{
	struct fz_msg m;

	for (;;) {
		uint32_t pos = e->s.rx[0];

		if (fz_raw_recv(&e->s, 0, &m, e->buf) != 1)
			break;
		if (!(m.h.flags & DG_FF_REQ))
			fz_fail("S got flags %#x", m.h.flags);
		if (m.h.conn == e->conn_e)
			check_from_c(e, &m, "S");
		if (fz_raw_send(&e->s, 0, DG_FF_RESP, 0, m.h.rpc_id, m.h.conn,
				m.h.fn_id, m.data, m.len)) {
			e->s.rx[0] = pos; /* no room: serve it later */
			break;
		}
	}
	fz_raw_release(&e->s, 0);
}

/* T reads its RX ring of flow f (and releases it, or not). */
static void t_drain(struct env *e, uint32_t f, bool release)
{
	struct fz_msg m;

	while (fz_raw_recv(&e->t, f, &m, e->buf) == 1)
		if ((m.h.flags & DG_FF_REQ) &&
		    (m.h.conn == e->conn_f || m.h.conn == e->conn_e))
			check_from_c(e, &m, "T");
	if (release)
		fz_raw_release(&e->t, f);
}

static void setup(struct env *e, unsigned t_rflags)
{
	struct dg_nic_opts o = {.hold_us = 1};
	struct fz_msg m;
	uint32_t i;

	memset(e, 0, offsetof(struct env, buf));
	if (dg_nic_create(&o, &e->nic))
		fz_fail("setup: engine");
	attach(e, &e->s, 1, 0);
	attach(e, &e->c, 1, 0);
	attach(e, &e->t, 2, t_rflags);
	if (ctrl(e, &e->s, 0, &e->rpc_s, DG_CTRL_REGISTER, "echo", NULL) ||
	    ctrl(e, &e->t, 1, &e->rpc_t[1], DG_CTRL_REGISTER, "fz", NULL) ||
	    ctrl(e, &e->t, 0, &e->rpc_t[0], DG_CTRL_OPEN, "echo", &e->conn_a) ||
	    ctrl(e, &e->t, 0, &e->rpc_t[0], DG_CTRL_OPEN, DG_LOOPBACK_SERVICE,
		 &e->conn_l) ||
	    ctrl(e, &e->c, 0, &e->rpc_c, DG_CTRL_OPEN, "fz", &e->conn_f) ||
	    ctrl(e, &e->c, 0, &e->rpc_c, DG_CTRL_OPEN, "echo", &e->conn_e))
		fz_fail("setup: a control message failed");
	/* C's rpc ids follow its control messages' (one counter per flow). */
	e->c_next = e->rpc_c;
	for (i = 0; i < 2; i++)
		if (!c_call(e, e->conn_f, 4 + i * 40, NULL))
			fz_fail("setup: C's call");
	poll_engine(e, 2);
	while (fz_raw_recv(&e->t, 1, &m, e->buf) == 1 && e->ntpend < 4) {
		e->tpend_rpc[e->ntpend] = m.h.rpc_id;
		e->tpend_conn[e->ntpend++] = m.h.conn;
	}
	fz_raw_release(&e->t, 1);
	if (e->ntpend != 2)
		fz_fail("setup: T holds %u requests, not 2", e->ntpend);
}

static void teardown(struct env *e)
{
	/* FZ_TRACE=1: what the engine counted, to see what an input does. */
	if (getenv("FZ_TRACE"))
		dg_nic_stats_print(e->nic, stderr);
	dg_nic_destroy(e->nic); /* frees the tenants */
	fz_raw_free(&e->s);
	fz_raw_free(&e->c);
	fz_raw_free(&e->t);
}

static const char *const names[] = {"echo", "fz", DG_LOOPBACK_SERVICE, "",
				    "nosuch"};

/*
 * A control message from T, fields from the input: sel picks the op (1-3,
 * 0: as given), aims CLOSE at A or L, names a known service; aux keeps the
 * peer address (a remote OPEN) or cuts the message short.
 */
static void t_ctrl(struct env *e, uint32_t f, struct fz_in *in)
{
	struct dg_ctrl_msg m;
	uint8_t sel = fz_u8(in), aux = fz_u8(in);
	uint32_t len = sizeof(m);

	fz_bytes(in, &m, sizeof(m));
	if (sel & 3)
		m.op = sel & 3;
	if (sel & 4)
		m.conn = (sel & 8) ? e->conn_a : e->conn_l;
	if (sel & 16) {
		memset(m.service, 0, sizeof(m.service));
		snprintf(m.service, sizeof(m.service), "%s",
			 names[(aux & 7) % 5]);
	}
	if (!(aux & 8))
		memset(m.peer, 0, sizeof(m.peer));
	if (aux & 16)
		len = fz_u8(in) % sizeof(m);
	fz_raw_send(&e->t, f, DG_FF_CTRL, 0, e->rpc_t[f]++, 0, 0, &m, len);
}

/* One raw slot (or a whole message) into T's TX ring of flow f. */
static void t_slot(struct env *e, uint32_t f, struct fz_in *in)
{
	uint8_t fix = fz_u8(in);
	struct dg_frame s;
	uint32_t k;

	fz_bytes(in, &s, sizeof(s));
	if (fix & 4)
		s.conn = e->conn_a;
	if (fix & 8)
		s.conn = e->conn_l;
	if ((fix & 16) && e->ntpend) {
		/* An answer to a request T holds (or held). */
		k = s.rpc_id % e->ntpend;
		s.rpc_id = e->tpend_rpc[k];
		s.conn = e->tpend_conn[k];
		s.flags = DG_FF_RESP;
	}
	if (fix & 32) {
		s.len %= 8 * DG_CONT_PAYLOAD;
		s.cnt = (uint16_t)dg_frames_for(s.len);
	}
	if (fix & 64) {
		/* A whole message: header as given, payload from the input. */
		uint32_t len = s.len % (SLOTS * DG_CONT_PAYLOAD);

		fz_bytes(in, e->pay, len < 256 ? len : 256);
		if (len > 256)
			fill(e->pay + 256, len - 256, s.rpc_id);
		fz_raw_send(&e->t, f, s.flags, s.status, s.rpc_id, s.conn,
			    s.fn_id, e->pay, len);
		return;
	}
	fz_raw_put_slot(&e->t, f, &s, fix & 3 ? (fix & 3) == 2 ? 2 : 1 : 0);
}

/*
 * T stops writing but still does not read: S and C carry on, C's next
 * echo call completes (S's answers to T that find no room are dropped
 * after the hold bound).
 */
static void final_check(struct env *e)
{
	uint32_t i, id, r;
	bool sent = false;

	for (r = 0; r < FINAL_MAX; r++) {
		s_serve(e);
		c_drain(e);
		if (!sent) {
			sent = c_call(e, e->conn_e, 40, &id);
		} else if (!e->calls[id % MAX_OUT].out) {
			break;
		}
		poll_engine(e, 1);
	}
	if (r == FINAL_MAX)
		fz_fail("C's echo call %s after %u rounds",
			sent ? "not answered" : "never sent", FINAL_MAX);
	/* The engine keeps C's calls to S in order: all are answered. */
	for (i = 0; i < MAX_OUT; i++)
		if (e->calls[i].out && e->calls[i].conn == e->conn_e)
			fz_fail("C's echo rpc %u still unanswered",
				e->calls[i].seed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	struct env *e = E;
	uint32_t step;

	if (!e) {
		e = E = calloc(1, sizeof(*E));
		if (!e)
			abort();
		fz_on_fail = print_stats;
	}
	setup(e, fz_u8(&in) & 1 ? DG_RING_F_CSUM : 0);
	for (step = 0; step < MAX_STEPS && fz_left(&in); step++) {
		uint8_t op = fz_u8(&in);
		uint32_t f = (op >> 3) & 1;

		switch (op & 7) {
		case 0:
			t_slot(e, f, &in);
			break;
		case 1:
			t_ctrl(e, f, &in);
			break;
		case 2:
			poll_engine(e, 1 + (op >> 4));
			break;
		case 3:
			s_serve(e);
			break;
		case 4:
			c_drain(e);
			break;
		case 5:
			t_drain(e, f, op & 16);
			break;
		case 6:
			/* Any credit T likes: the engine must not believe it.
			 */
			__atomic_store_n(&fz_ctrl(&e->t, f)->rx_head,
					 fz_u32(&in), __ATOMIC_RELEASE);
			break;
		case 7:
			c_call(e, op & 16 ? e->conn_f : e->conn_e,
			       fz_u16(&in) % (4 * DG_CONT_PAYLOAD), NULL);
			break;
		}
	}
	final_check(e);
	teardown(e);
	return 0;
}
