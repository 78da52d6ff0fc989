// SPDX-License-Identifier: MIT
/*
 * fuzz_host_rx: libdagger's RX parsing (dg_poll on a client flow,
 * dg_serve_poll on a server flow) over RX rings whose slots the input
 * writes, on plain and checksummed rings. The harness plays the engine:
 * the host attaches through an attach_local callback that takes its
 * region, the harness writes the replies its OPEN and REGISTER wait for,
 * reads (and checks) what the host writes into its TX rings and moves
 * tx_head, and writes RX slots only where the host has released them
 * (rx_head), as an engine does.
 *
 * The input: the ring kind, then steps: raw slots (sealed for their
 * position as a first or a continuation frame, or not; header made
 * consistent, aimed at the connection, at a call in flight, or not),
 * whole messages of any size (continuation frames, ring wraps; their rpc
 * ids have the top bit set, which raw slots never carry), polls of
 * either flow with any max, calls.
 *
 * What must hold (each failure aborts): no crash, no sanitizer report
 * (every completion's and request's bytes are read); a completion or
 * request with a whole message's rpc id is exactly that message (length,
 * bytes, status, function, connection) and comes once; everything the
 * host writes into its TX rings is well formed, and a whole request is
 * answered once, with the handler's bytes (or NO_FUNCTION without it);
 * when the input wrote only whole messages, every one of them is handed
 * out, in order, and every request answered.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dagger/dagger.h"
#include "dagger/ring.h"
#include "fuzz_util.h"
#include "fz_raw.h"

#define SLOTS	   64u
#define MAX_STEPS  512u
#define MAX_MODEL  512u
#define CONN	   0x10005u
#define MODEL_BIT  0x80000000u
#define FN_ECHO	   1u
#define FN_APP	   2u
#define FN_TOO_BIG 3u

/* A whole message the harness wrote into an RX ring. */
struct model {
	uint32_t flow, rpc, len, seed, conn;
	uint16_t fn;
	uint8_t status;
	bool seen;     /* handed out (to the application, or the handler) */
	bool answered; /* server flow: its answer was written */
};

struct env {
	struct dg_host *h;
	uint8_t *region;
	struct dg_region_layout lay;
	unsigned rflags;
	uint32_t rxw[2]; /* next RX position the harness writes */
	uint32_t txr[2]; /* next TX position the harness reads */
	struct model m[MAX_MODEL];
	uint32_t nm, next_model, next_seen[2];
	bool raw_used;
	uint8_t pay[DG_MAX_MSG], buf[DG_MAX_MSG];
};

static struct env *E;

static int attach_cb(void *arg, void *region, uint64_t size)
{
	struct env *e = arg;

	(void)size;
	e->region = region;
	return 0;
}

static void detach_cb(void *arg, int tenant)
{
	(void)arg;
	(void)tenant;
}

static struct dg_frame *rx_slot(struct env *e, uint32_t f, uint32_t pos)
{
	return (struct dg_frame *)(e->region + dg_rx_ring_off(&e->lay, f)) +
	       (pos & (SLOTS - 1));
}

static struct dg_frame *tx_slot(struct env *e, uint32_t f, uint32_t pos)
{
	return (struct dg_frame *)(e->region + dg_tx_ring_off(&e->lay, f)) +
	       (pos & (SLOTS - 1));
}

static struct dg_flow_ctrl *ctrl(struct env *e, uint32_t f)
{
	return (struct dg_flow_ctrl *)(e->region + dg_ctrl_off(&e->lay, f));
}

static void fill(uint8_t *p, uint32_t len, uint32_t seed)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = (uint8_t)(seed * 29u + i * 11u + (i >> 9));
}

/* RX slots the host has released to the "engine". */
static uint32_t rx_room(struct env *e, uint32_t f)
{
	uint32_t head = __atomic_load_n(&ctrl(e, f)->rx_head, __ATOMIC_ACQUIRE);

	return SLOTS - (e->rxw[f] - head);
}

/* Writes and seals a whole message into flow f's RX ring. */
static bool rx_put(struct env *e, uint32_t f, uint8_t flags, uint8_t status,
		   uint32_t rpc, uint32_t conn, uint16_t fn, const uint8_t *p,
		   uint32_t len)
{
	uint32_t cnt = dg_frames_for(len), pos = e->rxw[f], i, n;
	struct dg_frame *s;

	if (cnt > rx_room(e, f))
		return false;
	n = len < DG_FRAME_PAYLOAD ? len : DG_FRAME_PAYLOAD;
	for (i = 1; i < cnt; i++) {
		struct dg_frame_cont *c = (void *)rx_slot(e, f, pos + i);
		uint32_t k =
			len - n < DG_CONT_PAYLOAD ? len - n : DG_CONT_PAYLOAD;

		memset(c, 0, sizeof(*c));
		memcpy(c->data, p + n, k);
		n += k;
		dg_cont_publish(c, pos + i, e->rflags);
	}
	s = rx_slot(e, f, pos);
	memset(s, 0, sizeof(*s));
	s->rpc_id = rpc;
	s->conn = conn;
	s->len = len;
	s->fn_id = fn;
	s->cnt = (uint16_t)cnt;
	s->flags = flags;
	s->status = status;
	s->flow = (uint8_t)f;
	if (len)
		memcpy(s->data, p,
		       len < DG_FRAME_PAYLOAD ? len : DG_FRAME_PAYLOAD);
	/* Shared-memory rings: the engine guards, the host does not scrub. */
	if (!e->rflags)
		dg_ring_guard(rx_slot(e, f, 0), SLOTS - 1, pos + cnt);
	dg_slot_publish(s, pos, e->rflags);
	e->rxw[f] = pos + cnt;
	return true;
}

/* Whether the server has a handler for m (else it answers NO_FUNCTION). */
static bool m_known_fn(const struct model *m)
{
	return m->flow == 0 || (m->fn >= FN_ECHO && m->fn <= FN_TOO_BIG);
}

static struct model *model_of(struct env *e, uint32_t rpc)
{
	if (!(rpc & MODEL_BIT) || (rpc & ~MODEL_BIT) >= e->nm)
		return NULL;
	return &e->m[rpc & ~MODEL_BIT];
}

/* A message the host handed out: if it is a whole one, exactly that. */
static void check_model(struct env *e, uint32_t f, uint32_t rpc, uint32_t conn,
			uint16_t fn, int status, const void *data, uint32_t len)
{
	struct model *m = model_of(e, rpc);

	if (!m)
		return;
	if (m->flow != f || m->seen)
		fz_fail("flow %u: message %#x handed out %s", f, rpc,
			m->seen ? "twice" : "on the wrong flow");
	fill(e->pay, m->len, m->seed);
	if (len != m->len || memcmp(data, e->pay, len) || conn != m->conn ||
	    fn != m->fn || (f == 0 && status != m->status))
		fz_fail("flow %u: message %#x handed out as len %u conn %#x "
			"fn %u status %d (wrote len %u conn %#x fn %u status "
			"%u)",
			f, rpc, len, conn, fn, status, m->len, m->conn, m->fn,
			m->status);
	m->seen = true;
	/* In order: whole messages come out as they were written. */
	if (!e->raw_used) {
		uint32_t i = rpc & ~MODEL_BIT, j;

		for (j = e->next_seen[f]; j < i; j++)
			if (e->m[j].flow == f && !e->m[j].seen &&
			    m_known_fn(&e->m[j]))
				fz_fail("flow %u: message %#x before %#x", f,
					rpc, MODEL_BIT | j);
		e->next_seen[f] = i + 1;
	}
}

/* Every byte of a payload: the sanitizers see a read past its end. */
static uint32_t touch(const void *p, uint32_t len)
{
	const volatile uint8_t *b = p;
	uint32_t s = 0, i;

	for (i = 0; i < len; i++)
		s += b[i];
	return s;
}

/* ---- the server flow's handlers ------------------------------------- */

static int handler(void *arg, const struct dg_request *req,
		   struct dg_response *resp)
{
	struct env *e = arg;

	touch(req->data, req->len);
	if (req->len > DG_MAX_MSG || req->flow != dg_host_flow(e->h, 1))
		fz_fail("server: request of %u bytes", req->len);
	check_model(e, 1, req->rpc_id, req->conn, req->fn, 0, req->data,
		    req->len);
	if (req->fn == FN_TOO_BIG) {
		resp->len = DG_MAX_MSG + 1;
		return 0;
	}
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return req->fn == FN_APP ? DG_ST_APP_BASE + 1 : 0;
}

static const struct dg_handler handlers[] = {
	{FN_ECHO, handler}, {FN_APP, handler}, {FN_TOO_BIG, handler}};

/* ---- what the host writes --------------------------------------------- */

/* Reads flow f's TX ring like an engine, checks it, frees the slots. */
static void tx_consume(struct env *e, uint32_t f)
{
	for (;;) {
		uint32_t pos = e->txr[f], i, n, len;
		const struct dg_frame *s = tx_slot(e, f, pos);
		uint8_t want = f ? DG_FF_RESP : DG_FF_REQ, kind;
		struct dg_frame h;

		if (!dg_slot_ready(s, pos, e->rflags))
			break;
		memcpy(&h, s, sizeof(h));
		/* A server answers a sampled (traced) request with the mark. */
		kind = h.flags & (uint8_t)~DG_FF_TRACE;
		if ((kind != want && h.flags != DG_FF_CTRL) ||
		    h.len > DG_MAX_MSG || h.cnt != dg_frames_for(h.len) ||
		    h.cnt > SLOTS)
			fz_fail("flow %u: TX %u passes the stamp check with "
				"flags %#x len %u cnt %u: not a message the "
				"host wrote there",
				f, pos, h.flags, h.len, h.cnt);
		len = h.len;
		n = len < DG_FRAME_PAYLOAD ? len : DG_FRAME_PAYLOAD;
		memcpy(e->buf, h.data, n);
		for (i = 1; i < h.cnt; i++) {
			const struct dg_frame_cont *c =
				(const void *)tx_slot(e, f, pos + i);
			uint32_t k = len - n < DG_CONT_PAYLOAD
					     ? len - n
					     : DG_CONT_PAYLOAD;

			if (!dg_cont_ready(c, pos + i, e->rflags))
				fz_fail("flow %u: TX %u published before its "
					"frame %u",
					f, pos, i);
			memcpy(e->buf + n, c->data, k);
			n += k;
		}
		if (kind == DG_FF_RESP && model_of(e, h.rpc_id)) {
			/* A whole request's answer: once, and the right one. */
			struct model *m = model_of(e, h.rpc_id);

			if (m->flow != 1 || m->answered)
				fz_fail("server answered %#x %s", h.rpc_id,
					m->answered ? "twice" : "(not its)");
			m->answered = true;
			fill(e->pay, m->len, m->seed);
			if (h.conn != m->conn || h.fn_id != m->fn)
				fz_fail("server's answer to %#x: conn %#x fn "
					"%u",
					h.rpc_id, h.conn, h.fn_id);
			if (!m->seen && (h.status != DG_ST_NO_FUNCTION || len))
				fz_fail("server answered %#x without its "
					"handler: status %u, %u bytes",
					h.rpc_id, h.status, len);
			if (m->seen && h.status == DG_ST_OK &&
			    (len != m->len || memcmp(e->buf, e->pay, len)))
				fz_fail("server's answer to %#x: wrong bytes",
					h.rpc_id);
		}
		/*
		 * As an engine on plain (shared-memory) rings: consumed
		 * continuation frames are scrubbed before tx_head frees them
		 * (dagger/ring.h); on checksummed rings the host guards.
		 */
		if (!e->rflags && h.cnt > 1)
			dg_ring_scrub(tx_slot(e, f, 0), SLOTS - 1, pos + 1,
				      pos + h.cnt);
		e->txr[f] = pos + h.cnt;
	}
	/* Release: our reads of the slots come first. */
	__atomic_store_n(&ctrl(e, f)->tx_head, e->txr[f], __ATOMIC_RELEASE);
}

/* ---- steps ------------------------------------------------------------ */

static void raw_slot(struct env *e, uint32_t f, struct fz_in *in)
{
	uint8_t fix = fz_u8(in);
	struct dg_frame s;
	uint32_t pos = e->rxw[f];

	fz_bytes(in, &s, sizeof(s));
	if (!rx_room(e, f))
		return;
	e->raw_used = true;
	s.rpc_id &= ~MODEL_BIT;
	if (fix & 4) {
		s.len %= 8 * DG_CONT_PAYLOAD;
		s.cnt = (uint16_t)dg_frames_for(s.len);
	}
	if (fix & 8)
		s.flags = f ? DG_FF_REQ : DG_FF_RESP;
	if (fix & 16)
		s.conn = CONN;
	memcpy(rx_slot(e, f, pos), &s, sizeof(s));
	if ((fix & 3) == 2)
		dg_cont_publish((void *)rx_slot(e, f, pos), pos, e->rflags);
	else if (fix & 3)
		dg_slot_publish(rx_slot(e, f, pos), pos, e->rflags);
	e->rxw[f] = pos + 1;
}

static void whole_msg(struct env *e, uint32_t f, struct fz_in *in)
{
	uint8_t sel = fz_u8(in);
	uint32_t len = fz_u16(in) % (SLOTS * DG_CONT_PAYLOAD / 2);
	struct model *m;
	uint8_t flags;

	if (e->nm == MAX_MODEL)
		return;
	m = &e->m[e->nm];
	*m = (struct model){
		.flow = f,
		.rpc = MODEL_BIT | e->nm,
		.len = len,
		.seed = e->nm,
		.conn = sel & 1 ? CONN : fz_u32(in),
		.fn = (uint16_t)(sel & 2 ? FN_ECHO + sel % 3 : fz_u16(in)),
		.status = sel & 4 ? fz_u8(in) : 0};
	flags = f ? DG_FF_REQ : DG_FF_RESP;
	if (sel & 8)
		flags |= f ? DG_FF_KEY : 0;
	fill(e->pay, len, m->seed);
	if (rx_put(e, f, flags, m->status, m->rpc, m->conn, m->fn, e->pay, len))
		e->nm++;
}

static void client_poll(struct env *e, int max)
{
	struct dg_flow *f = dg_host_flow(e->h, 0);
	struct dg_completion c[16];
	int k = dg_poll(f, c, max), i;

	if (k < 0 || k > max)
		fz_fail("dg_poll(%d): %d", max, k);
	for (i = 0; i < k; i++) {
		if (c[i].len > DG_MAX_MSG)
			fz_fail("completion of %u bytes", c[i].len);
		touch(c[i].data, c[i].len);
		check_model(e, 0, c[i].rpc_id, c[i].conn, c[i].fn, c[i].status,
			    c[i].data, c[i].len);
	}
}

static void server_poll(struct env *e)
{
	int k;

	/* Room for any one answer: serve one request at a time. */
	tx_consume(e, 1);
	k = dg_serve_poll(dg_host_flow(e->h, 1), 1);
	if (k < 0 || k > 1)
		fz_fail("dg_serve_poll: %d", k);
	tx_consume(e, 1);
}

/* ---- set-up ----------------------------------------------------------- */

static void setup(struct env *e, unsigned rflags)
{
	struct dg_host_opts o = {
		.attach_local = attach_cb,
		.detach_local = detach_cb,
		.nflows = 2,
		.slots = SLOTS,
		.csum = rflags ? 1 : 0,
		/* The ring paths (payload areas: test_large). */
		.payload = DG_PAYLOAD_NONE};
	static struct dg_service_def def = {
		.name = "echo", .handlers = handlers, .nhandlers = 3};
	int rc;

	memset(e, 0, offsetof(struct env, pay));
	o.local_arg = e;
	def.arg = e;
	e->rflags = rflags;
	if (dg_host_attach(&o, &e->h) || dg_region_layout(2, SLOTS, &e->lay))
		fz_fail("setup: attach");
	/* The engine's replies to OPEN and REGISTER, there before asked. */
	rx_put(e, 0, DG_FF_CTRL, DG_ST_OK, 0, CONN, 0, NULL, 0);
	rx_put(e, 1, DG_FF_CTRL, DG_ST_OK, 0, 0, 0, NULL, 0);
	rc = dg_connect(dg_host_flow(e->h, 0), NULL, 0, "echo", 1000);
	if (rc != (int)CONN)
		fz_fail("setup: dg_connect %d", rc);
	rc = dg_serve(dg_host_flow(e->h, 1), &def, 1000);
	if (rc)
		fz_fail("setup: dg_serve %d", rc);
	tx_consume(e, 0);
	tx_consume(e, 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	struct env *e = E;
	uint32_t step, i;

	if (!e) {
		e = E = calloc(1, sizeof(*E));
		if (!e)
			abort();
	}
	setup(e, fz_u8(&in) & 1 ? DG_RING_F_CSUM : 0);
	for (step = 0; step < MAX_STEPS && fz_left(&in); step++) {
		uint8_t op = fz_u8(&in);
		uint32_t f = (op >> 3) & 1;

		switch (op & 7) {
		case 0:
			raw_slot(e, f, &in);
			break;
		case 1:
			whole_msg(e, f, &in);
			break;
		case 2:
			client_poll(e, 1 + (op >> 4) % 16);
			break;
		case 3:
			server_poll(e);
			break;
		case 4: {
			uint32_t len = fz_u16(&in) % 3000, id;

			fill(e->pay, len, len);
			dg_call(dg_host_flow(e->h, 0), (int)CONN, FN_ECHO,
				e->pay, len, &id);
			tx_consume(e, 0);
			break;
		}
		default:
			/* The "engine" lets the host's RX ring be, a step. */
			break;
		}
	}
	/* Drain: everything written is handed out, when it was all whole. */
	for (i = 0; i < 4 * SLOTS; i++) {
		client_poll(e, 16);
		server_poll(e);
	}
	if (!e->raw_used)
		for (i = 0; i < e->nm; i++)
			if ((!e->m[i].seen && m_known_fn(&e->m[i])) ||
			    (e->m[i].flow == 1 && !e->m[i].answered))
				fz_fail("flow %u: message %#x never %s",
					e->m[i].flow, e->m[i].rpc,
					e->m[i].seen ? "answered"
						     : "handed out");
	if (getenv("FZ_TRACE")) {
		struct dg_flow_stats st[2];
		uint32_t seen = 0;

		for (i = 0; i < e->nm; i++)
			seen += e->m[i].seen;
		dg_flow_stats(dg_host_flow(e->h, 0), &st[0]);
		dg_flow_stats(dg_host_flow(e->h, 1), &st[1]);
		fprintf(stderr,
			"whole messages %u, handed out %u; client: %llu "
			"completions, %llu bad frames; server: %llu requests, "
			"%llu bad frames\n",
			e->nm, seen, (unsigned long long)st[0].completions,
			(unsigned long long)st[0].bad_frames,
			(unsigned long long)st[1].requests,
			(unsigned long long)st[1].bad_frames);
	}
	dg_host_detach(e->h);
	return 0;
}
