// SPDX-License-Identifier: MIT
/*
 * fuzz_idl: the IDL decode path (idl/pb.c, protobuf-c unpacking into the
 * flow's arena) through stubs dagger-idlc generated for tests/idl/protos
 * (dg.test.v3.Types, proto3, every field kind; dg.test2.Store, proto2,
 * required fields, defaults), with the input as the message bytes.
 *
 * A host attaches through an attach_local callback (the harness plays the
 * engine, as in fuzz_host_rx): flow 0 is a client connected to both
 * services, flow 1 serves Types, flow 2 serves Store, each through the
 * generated skeleton with handlers that echo what they decoded. The first
 * byte picks the side (a response to a typed call, taken with its _take
 * stub; or a request served by the skeleton), the method and the ring
 * kind; the rest is the serialised message, delivered whole.
 *
 * What must hold (each failure aborts): no crash, no sanitizer report; a
 * response decodes (0) exactly when protobuf-c decodes it with the system
 * allocator (else -EBADMSG, or -ENOMEM when the flow's arena is too
 * small), and what was decoded re-encodes to the same bytes as the system
 * allocator's copy; a request that does not decode is answered
 * DG_ST_BAD_FRAME without the handler, one that does reaches it and the
 * echo comes back as the re-encoding of the request.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dagger/ring.h"
#include "fuzz_util.h"
#include "fz_raw.h"
#include "types2.dg.h"
#include "types3.dg.h"

#define SLOTS  256u
#define CONN   0x10007u
#define NFLOWS 3u

struct env {
	struct dg_host *h;
	uint8_t *region;
	struct dg_region_layout lay;
	unsigned rflags;
	uint32_t rxw[NFLOWS], txr[NFLOWS];
	bool handled; /* a handler ran */
	struct dg__test__v3__types__server types;
	struct dg__test2__store__server store;
	uint8_t buf[DG_MAX_MSG], want[DG_MAX_MSG], got[DG_MAX_MSG];
	uint32_t tx_len, tx_status, tx_rpc;
};

static struct env *E;

static int attach_cb(void *arg, void *region, uint64_t size)
{
	(void)size;
	((struct env *)arg)->region = region;
	return 0;
}

static void detach_cb(void *arg, int tenant)
{
	(void)arg;
	(void)tenant;
}

static struct dg_frame *slot(struct env *e, uint64_t ring_off, uint32_t pos)
{
	return (struct dg_frame *)(e->region + ring_off) + (pos & (SLOTS - 1));
}

static struct dg_flow_ctrl *ctrl(struct env *e, uint32_t f)
{
	return (struct dg_flow_ctrl *)(e->region + dg_ctrl_off(&e->lay, f));
}

/* Writes and seals one whole message into flow f's RX ring. */
static void rx_put(struct env *e, uint32_t f, uint8_t flags, uint32_t rpc,
		   uint32_t conn, uint16_t fn, const uint8_t *p, uint32_t len)
{
	uint64_t off = dg_rx_ring_off(&e->lay, f);
	uint32_t cnt = dg_frames_for(len), pos = e->rxw[f], i, n;
	uint32_t head = __atomic_load_n(&ctrl(e, f)->rx_head, __ATOMIC_ACQUIRE);
	struct dg_frame *s;

	if (SLOTS - (pos - head) < cnt)
		fz_fail("flow %u: RX ring not released (head %u, at %u)", f,
			head, pos);
	n = len < DG_FRAME_PAYLOAD ? len : DG_FRAME_PAYLOAD;
	for (i = 1; i < cnt; i++) {
		struct dg_frame_cont *c = (void *)slot(e, off, pos + i);
		uint32_t k =
			len - n < DG_CONT_PAYLOAD ? len - n : DG_CONT_PAYLOAD;

		memcpy(c->data, p + n, k);
		n += k;
		dg_cont_publish(c, pos + i, e->rflags);
	}
	s = slot(e, off, pos);
	memset((uint8_t *)s + 4, 0, DG_SLOT_SIZE - 4);
	s->rpc_id = rpc;
	s->conn = conn;
	s->len = len;
	s->fn_id = fn;
	s->cnt = (uint16_t)cnt;
	s->flags = flags;
	s->flow = (uint8_t)f;
	if (len)
		memcpy(s->data, p,
		       len < DG_FRAME_PAYLOAD ? len : DG_FRAME_PAYLOAD);
	dg_slot_publish(s, pos, e->rflags);
	e->rxw[f] = pos + cnt;
}

/* Takes the host's messages from flow f's TX ring; keeps the last one. */
static void tx_consume(struct env *e, uint32_t f)
{
	uint64_t off = dg_tx_ring_off(&e->lay, f);

	for (;;) {
		uint32_t pos = e->txr[f], i, n;
		const struct dg_frame *s = slot(e, off, pos);

		if (!dg_slot_ready(s, pos, e->rflags))
			break;
		if (s->len > DG_MAX_MSG || s->cnt != dg_frames_for(s->len) ||
		    s->cnt > SLOTS)
			fz_fail("flow %u: TX len %u cnt %u", f, s->len, s->cnt);
		n = s->len < DG_FRAME_PAYLOAD ? s->len : DG_FRAME_PAYLOAD;
		memcpy(e->got, s->data, n);
		for (i = 1; i < s->cnt; i++) {
			const struct dg_frame_cont *c =
				(const void *)slot(e, off, pos + i);
			uint32_t k = s->len - n < DG_CONT_PAYLOAD
					     ? s->len - n
					     : DG_CONT_PAYLOAD;

			if (!dg_cont_ready(c, pos + i, e->rflags))
				fz_fail("flow %u: TX frame %u not sealed", f,
					i);
			memcpy(e->got + n, c->data, k);
			n += k;
		}
		e->tx_len = s->len;
		e->tx_status = s->status;
		e->tx_rpc = s->rpc_id;
		e->txr[f] = pos + s->cnt;
	}
	__atomic_store_n(&ctrl(e, f)->tx_head, e->txr[f], __ATOMIC_RELEASE);
}

/* ---- handlers: each echoes what it decoded -------------------------- */

static int echo3(void *arg, struct dg_flow *f, const Dg__Test__V3__Bag *req,
		 Dg__Test__V3__Bag *resp)
{
	(void)f;
	((struct env *)arg)->handled = true;
	*resp = *req;
	return 0;
}

static int list3(void *arg, struct dg_flow *f, const Dg__Test__V3__BagList *req,
		 Dg__Test__V3__BagList *resp)
{
	(void)f;
	((struct env *)arg)->handled = true;
	*resp = *req;
	return 0;
}

static int count3(void *arg, struct dg_flow *f, const Dg__Test__V3__Bag *req,
		  Dg__Common__Point *resp)
{
	(void)f;
	((struct env *)arg)->handled = true;
	resp->x = (int32_t)req->n_nums;
	resp->y = (int32_t)req->n_entries;
	resp->label = req->str;
	return 0;
}

static int put2(void *arg, struct dg_flow *f, const Dg__Test2__Record *req,
		Dg__Test2__Record *resp)
{
	(void)f;
	((struct env *)arg)->handled = true;
	*resp = *req;
	return 0;
}

static int ping2(void *arg, struct dg_flow *f, const Dg__Test2__Empty *req,
		 Dg__Test2__Empty *resp)
{
	(void)f;
	(void)req;
	(void)resp;
	((struct env *)arg)->handled = true;
	return 0;
}

/* ---- the methods ------------------------------------------------------- */

enum side { CLIENT, SERVER };

struct method {
	uint32_t flow; /* the server flow */
	uint16_t fn;
	const ProtobufCMessageDescriptor *req, *resp;
	bool echo; /* the answer is the request, re-encoded */
};

static const struct method methods[] = {
	{1, DG__TEST__V3__TYPES__ECHO__FN, &dg__test__v3__bag__descriptor,
	 &dg__test__v3__bag__descriptor, true},
	{1, DG__TEST__V3__TYPES__ECHO_LIST__FN,
	 &dg__test__v3__bag_list__descriptor,
	 &dg__test__v3__bag_list__descriptor, true},
	{1, DG__TEST__V3__TYPES__COUNT__FN, &dg__test__v3__bag__descriptor,
	 &dg__common__point__descriptor, false},
	{2, DG__TEST2__STORE__PUT__FN, &dg__test2__record__descriptor,
	 &dg__test2__record__descriptor, true},
	{2, DG__TEST2__STORE__PING__FN, &dg__test2__empty__descriptor,
	 &dg__test2__empty__descriptor, false},
};
#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

/* pack(m) into out; its length. */
static size_t repack(const ProtobufCMessage *m, uint8_t *out)
{
	size_t n = protobuf_c_message_get_packed_size(m);

	if (n > DG_MAX_MSG)
		return (size_t)-1;
	return protobuf_c_message_pack(m, out);
}

/* A typed call, then the input as its response, taken by the stub. */
static void client_side(struct env *e, const struct method *m, const uint8_t *p,
			uint32_t len)
{
	struct dg_flow *f = dg_host_flow(e->h, 0);
	ProtobufCMessage *ref, *dec = NULL;
	Dg__Test__V3__Bag bag = DG__TEST__V3__BAG__INIT;
	Dg__Test__V3__BagList list = DG__TEST__V3__BAG_LIST__INIT;
	Dg__Test2__Record rec = DG__TEST2__RECORD__INIT;
	Dg__Test2__Empty empty = DG__TEST2__EMPTY__INIT;
	struct dg_completion c;
	uint32_t id = 0;
	size_t a, b;
	int rc = -1;

	switch (m->fn) {
	case DG__TEST__V3__TYPES__ECHO__FN:
		rc = dg__test__v3__types__echo_call(f, (int)CONN, &bag, &id);
		break;
	case DG__TEST__V3__TYPES__ECHO_LIST__FN:
		rc = dg__test__v3__types__echo_list_call(f, (int)CONN, &list,
							 &id);
		break;
	case DG__TEST__V3__TYPES__COUNT__FN:
		rc = dg__test__v3__types__count_call(f, (int)CONN, &bag, &id);
		break;
	case DG__TEST2__STORE__PUT__FN:
		rc = dg__test2__store__put_call(f, (int)CONN, &rec, &id);
		break;
	default:
		rc = dg__test2__store__ping_call(f, (int)CONN, &empty, &id);
		break;
	}
	if (rc)
		fz_fail("typed call: %d", rc);
	tx_consume(e, 0);
	rx_put(e, 0, DG_FF_RESP, id, CONN, m->fn, p, len);
	if (dg_poll(f, &c, 1) != 1 || c.rpc_id != id || c.len != len)
		fz_fail("the response was not handed out whole");
	switch (m->fn) {
	case DG__TEST__V3__TYPES__ECHO__FN: {
		Dg__Test__V3__Bag *r;

		rc = dg__test__v3__types__echo_take(f, &c, &r);
		dec = rc ? NULL : &r->base;
		break;
	}
	case DG__TEST__V3__TYPES__ECHO_LIST__FN: {
		Dg__Test__V3__BagList *r;

		rc = dg__test__v3__types__echo_list_take(f, &c, &r);
		dec = rc ? NULL : &r->base;
		break;
	}
	case DG__TEST__V3__TYPES__COUNT__FN: {
		Dg__Common__Point *r;

		rc = dg__test__v3__types__count_take(f, &c, &r);
		dec = rc ? NULL : &r->base;
		break;
	}
	case DG__TEST2__STORE__PUT__FN: {
		Dg__Test2__Record *r;

		rc = dg__test2__store__put_take(f, &c, &r);
		dec = rc ? NULL : &r->base;
		break;
	}
	default: {
		Dg__Test2__Empty *r;

		rc = dg__test2__store__ping_take(f, &c, &r);
		dec = rc ? NULL : &r->base;
		break;
	}
	}
	ref = protobuf_c_message_unpack(m->resp, NULL, len, p);
	if (rc != 0 && rc != -EBADMSG && rc != -ENOMEM)
		fz_fail("_take: %d", rc);
	if ((rc == -EBADMSG) != !ref || (rc == 0 && !ref))
		fz_fail("_take %d where protobuf-c %s the bytes", rc,
			ref ? "decodes" : "refuses");
	if (rc == 0) {
		a = repack(dec, e->got);
		b = repack(ref, e->want);
		if (a != b || (a != (size_t)-1 && memcmp(e->got, e->want, a)))
			fz_fail("decoded in the arena, re-encoded: %zu bytes, "
				"not the %zu of protobuf-c's own copy",
				a, b);
	}
	if (ref)
		protobuf_c_message_free_unpacked(ref, NULL);
}

/* The input as a request, served by the generated skeleton. */
static void server_side(struct env *e, const struct method *m, const uint8_t *p,
			uint32_t len)
{
	struct dg_flow *f = dg_host_flow(e->h, m->flow);
	ProtobufCMessage *ref = protobuf_c_message_unpack(m->req, NULL, len, p);
	size_t b;

	e->handled = false;
	e->tx_rpc = 0;
	rx_put(e, m->flow, DG_FF_REQ, 77, CONN, m->fn, p, len);
	if (dg_serve_poll(f, 1) != 1)
		fz_fail("the request was not served");
	tx_consume(e, m->flow);
	if (e->tx_rpc != 77)
		fz_fail("no answer to the request");
	if (!ref) {
		if (e->handled || e->tx_status != DG_ST_BAD_FRAME)
			fz_fail("a request protobuf-c refuses: handler %s, "
				"status %u",
				e->handled ? "called" : "not called",
				e->tx_status);
		return;
	}
	/* It decodes with the system allocator; the arena is 1 MB. */
	if (!e->handled) {
		if (e->tx_status != DG_ST_BAD_FRAME)
			fz_fail("handler not called, status %u", e->tx_status);
	} else if (m->echo) {
		b = repack(ref, e->want);
		if (b == (size_t)-1
			    ? e->tx_status != DG_ST_TOO_BIG
			    : e->tx_status != DG_ST_OK || e->tx_len != b ||
				      memcmp(e->got, e->want, b))
			fz_fail("the echo is not the request re-encoded "
				"(status %u, %u bytes, want %zu)",
				e->tx_status, e->tx_len, b);
	} else if (e->tx_status != DG_ST_OK) {
		fz_fail("Count: status %u", e->tx_status);
	}
	protobuf_c_message_free_unpacked(ref, NULL);
}

static void setup(struct env *e, unsigned rflags)
{
	struct dg_host_opts o = {
		.attach_local = attach_cb,
		.detach_local = detach_cb,
		.nflows = NFLOWS,
		.slots = SLOTS,
		.csum = rflags ? 1 : 0,
		/* The ring paths (payload areas: test_large). */
		.payload = DG_PAYLOAD_NONE};
	static const struct dg__test__v3__types__handlers th = {
		.echo = echo3, .echo_list = list3, .count = count3};
	static const struct dg__test2__store__handlers sh = {.put = put2,
							     .ping = ping2};
	uint32_t f;

	memset(e, 0, offsetof(struct env, buf));
	o.local_arg = e;
	e->rflags = rflags;
	if (dg_host_attach(&o, &e->h) ||
	    dg_region_layout(NFLOWS, SLOTS, &e->lay))
		fz_fail("setup: attach");
	/* The engine's replies to OPEN and REGISTER, there before asked. */
	for (f = 0; f < NFLOWS; f++)
		rx_put(e, f, DG_FF_CTRL, 0, f ? 0 : CONN, 0, NULL, 0);
	if (dg_connect(dg_host_flow(e->h, 0), NULL, 0, "x", 1000) !=
		    (int)CONN ||
	    dg_serve(dg_host_flow(e->h, 1),
		     dg__test__v3__types__service(&e->types, &th, e, 0),
		     1000) ||
	    dg_serve(dg_host_flow(e->h, 2),
		     dg__test2__store__service(&e->store, &sh, e, 0), 1000))
		fz_fail("setup: connect or serve");
	for (f = 0; f < NFLOWS; f++)
		tx_consume(e, f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fz_in in = {data, size};
	struct env *e = E;
	uint8_t sel = fz_u8(&in);
	const struct method *m = &methods[((sel >> 1) & 7) % NMETHODS];
	/* A message fits the ring (with a slot to spare for the wrap). */
	uint32_t max = DG_FRAME_PAYLOAD + (SLOTS - 2) * DG_CONT_PAYLOAD;
	uint32_t len = fz_left(&in) < max ? (uint32_t)fz_left(&in) : max;

	if (!e) {
		e = E = calloc(1, sizeof(*E));
		if (!e)
			abort();
	}
	setup(e, sel & 128 ? DG_RING_F_CSUM : 0);
	memcpy(e->buf, in.p, len);
	if (sel & 1)
		server_side(e, m, e->buf, len);
	else
		client_side(e, m, e->buf, len);
	dg_host_detach(e->h);
	return 0;
}
