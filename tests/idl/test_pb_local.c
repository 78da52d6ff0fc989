// SPDX-License-Identifier: MIT
/*
 * Typed stubs end to end on the local backend: an in-process NIC engine,
 * a server host running generated skeletons, a client host calling the
 * generated stubs. Every field kind of proto2 and proto3 (scalars, enums,
 * strings, bytes, nested and imported messages, repeated, maps, oneof,
 * defaults) goes through and back and is compared by re-encoding; sync,
 * async, multi-frame; garbage in place of a serialised message in either
 * direction gives the caller an error status; the writer and arena
 * primitives' errors.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "engine.h"
#include "keyed.dg.h"
#include "names/keywords_svc.dg.h"
#include "optional.dg.h"
#include "types2.dg.h"
#include "types3.dg.h"
#include "wkt.dg.h"

struct env {
	struct dg_nic *nic;
	pthread_t thr;
	struct dg_host *srv, *cli;
	struct dg_server *s2, *s3, *sg, *sr, *si, *so, *sw;
	struct dg__test2__store__server store;
	struct dg__test__v3__types__server types;
	struct dg__names__svc__registry__server registry;
	struct dg__names__svc__int__server kw;
	struct dg__test__opt__presence__server presence;
	struct dg__test__wkt__clock__server clock;
	/* connections: Store, Types, garbage, Registry, int, Presence, Clock */
	int c2, c3, cg, cr, ci, co, cw;
};

static struct env E;

static void *engine_main(void *arg)
{
	dg_nic_run(arg);
	return NULL;
}

/* ---- server handlers ----------------------------------------------------- */

static int put(void *arg, struct dg_flow *f, const Dg__Test2__Record *req,
	       Dg__Test2__Record *resp)
{
	(void)arg;
	(void)f;
	*resp = *req; /* req lives until the response is encoded */
	return 0;
}

static int ping(void *arg, struct dg_flow *f, const Dg__Test2__Empty *req,
		Dg__Test2__Empty *resp)
{
	(void)arg;
	(void)f;
	(void)req;
	(void)resp;
	return 0;
}

static int app_fail(void *arg, struct dg_flow *f, const Dg__Test2__Empty *req,
		    Dg__Test2__Empty *resp)
{
	(void)arg;
	(void)f;
	(void)req;
	(void)resp;
	return DG_ST_APP_BASE + 3;
}

static int echo(void *arg, struct dg_flow *f, const Dg__Test__V3__Bag *req,
		Dg__Test__V3__Bag *resp)
{
	(void)arg;
	(void)f;
	*resp = *req;
	return 0;
}

static int echo_list(void *arg, struct dg_flow *f,
		     const Dg__Test__V3__BagList *req,
		     Dg__Test__V3__BagList *resp)
{
	(void)arg;
	(void)f;
	*resp = *req;
	return 0;
}

/* Builds its answer in the serving flow's arena. */
static int count(void *arg, struct dg_flow *f, const Dg__Test__V3__Bag *req,
		 Dg__Common__Point *resp)
{
	char *label = dg_flow_alloc(f, 32);

	(void)arg;
	if (!label)
		return DG_ST_APP_BASE + 1;
	snprintf(label, 32, "%zu/%zu", req->n_counts, req->n_entries);
	resp->x = (int32_t)req->n_words;
	resp->y = -(int32_t)req->n_nums;
	resp->label = label;
	return 0;
}

/* Services and methods named after C keywords (names/keywords_svc.proto). */
static int kw_register(void *arg, struct dg_flow *f,
		       const Dg__Names__Fields *req, Dg__Names__Fields *resp)
{
	(void)arg;
	(void)f;
	*resp = *req;
	return 0;
}

static int kw_int(void *arg, struct dg_flow *f, const Dg__Names__Choice *req,
		  Dg__Names__Choice *resp)
{
	(void)arg;
	(void)f;
	*resp = *req;
	return 0;
}

static int kw_while(void *arg, struct dg_flow *f, const Dg__Names__Fields *req,
		    Dg__Names__Values *resp)
{
	(void)arg;
	(void)f;
	resp->has_keyword = 1;
	resp->keyword = req->has_while_ ? DG__NAMES__VALUES__KEYWORD__while
					: DG__NAMES__VALUES__KEYWORD___Bool;
	return 0;
}

/* Echoes; plain = how many of the optional fields the request had set. */
static int presence_echo(void *arg, struct dg_flow *f,
			 const Dg__Test__Opt__Opt *req,
			 Dg__Test__Opt__Opt *resp)
{
	(void)arg;
	(void)f;
	*resp = *req;
	resp->plain = !!req->_i32_case + !!req->_s64_case + !!req->_u64_case +
		      !!req->_db_case + !!req->_fl_case + !!req->_flag_case +
		      !!req->_str_case + !!req->_raw_case + !!req->_color_case +
		      !!req->_point_case + !!req->_restrict_case;
	return 0;
}

/* Well-known types as requests and responses (wkt.proto). */
static int clock_now(void *arg, struct dg_flow *f,
		     const Google__Protobuf__Empty *req,
		     Google__Protobuf__Timestamp *resp)
{
	(void)arg;
	(void)f;
	(void)req;
	resp->seconds = 1700000000;
	resp->nanos = 123456789;
	return 0;
}

static int clock_echo(void *arg, struct dg_flow *f,
		      const Dg__Test__Wkt__Known *req,
		      Dg__Test__Wkt__Known *resp)
{
	(void)arg;
	(void)f;
	*resp = *req;
	return 0;
}

static int clock_forget(void *arg, struct dg_flow *f,
			const Google__Protobuf__StringValue *req,
			Google__Protobuf__Empty *resp)
{
	(void)arg;
	(void)f;
	(void)resp;
	return strcmp(req->value, "key") ? DG_ST_APP_BASE + 1 : 0;
}

/* A raw service that answers every call with bytes that do not decode. */
static int garbage(void *arg, const struct dg_request *req,
		   struct dg_response *resp)
{
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xff, 0xff,
				       0xff, 0xff, 0xff, 0xff, 0xff};

	(void)arg;
	(void)req;
	memcpy(resp->data, junk, sizeof(junk));
	resp->len = sizeof(junk);
	return 0;
}

static const struct dg_handler garbage_h[] = {
	{DG__TEST2__STORE__PUT__FN, garbage},
	{DG__TEST__V3__TYPES__ECHO__FN, garbage}};
static const struct dg_service_def garbage_svc = {
	.name = "dg.test2.Garbage", .handlers = garbage_h, .nhandlers = 2};

static struct dg_host *attach(uint32_t nflows)
{
	struct dg_host_opts o = {.attach_local = dg_nic_attach_cb,
				 .detach_local = dg_nic_detach_cb,
				 .local_arg = E.nic,
				 .nflows = nflows,
				 .slots = 2048};
	struct dg_host *h = NULL;

	assert_int_equal(dg_host_attach(&o, &h), 0);
	return h;
}

static int group_setup(void **state)
{
	static const struct dg__test2__store__handlers sh = {
		.put = put, .ping = ping, .fail = app_fail};
	static const struct dg__test__v3__types__handlers th = {
		.echo = echo, .echo_list = echo_list, .count = count};
	static const struct dg__names__svc__registry__handlers rh = {
		.register_ = kw_register, .int_ = kw_int};
	static const struct dg__names__svc__int__handlers ih = {
		.while_ = kw_while};
	static const struct dg__test__opt__presence__handlers ph = {
		.echo = presence_echo};
	static const struct dg__test__wkt__clock__handlers ch = {
		.now = clock_now, .echo = clock_echo, .forget = clock_forget};
	struct dg_flow *f;

	(void)state;
	assert_int_equal(dg_nic_create(NULL, &E.nic), 0);
	assert_int_equal(pthread_create(&E.thr, NULL, engine_main, E.nic), 0);
	E.srv = attach(7);
	E.cli = attach(2);
	assert_int_equal(dg__test2__store__server_start(E.srv, &E.store, &sh,
							NULL, DG_LB_ROUND_ROBIN,
							0, 1, &E.s2),
			 0);
	assert_int_equal(dg__test__v3__types__server_start(
				 E.srv, &E.types, &th, NULL, DG_LB_ROUND_ROBIN,
				 1, 1, &E.s3),
			 0);
	assert_int_equal(dg_server_start(E.srv, &garbage_svc, 2, 1, &E.sg), 0);
	assert_int_equal(dg__names__svc__registry__server_start(
				 E.srv, &E.registry, &rh, NULL,
				 DG_LB_ROUND_ROBIN, 3, 1, &E.sr),
			 0);
	assert_int_equal(dg__names__svc__int__server_start(
				 E.srv, &E.kw, &ih, NULL, DG_LB_ROUND_ROBIN, 4,
				 1, &E.si),
			 0);
	assert_int_equal(dg__test__opt__presence__server_start(
				 E.srv, &E.presence, &ph, NULL,
				 DG_LB_ROUND_ROBIN, 5, 1, &E.so),
			 0);
	assert_int_equal(dg__test__wkt__clock__server_start(
				 E.srv, &E.clock, &ch, NULL, DG_LB_ROUND_ROBIN,
				 6, 1, &E.sw),
			 0);
	f = dg_host_flow(E.cli, 0);
	E.c2 = dg_connect(f, NULL, 0, DG__TEST2__STORE__SERVICE, 5000);
	E.c3 = dg_connect(f, NULL, 0, DG__TEST__V3__TYPES__SERVICE, 5000);
	E.cg = dg_connect(f, NULL, 0, "dg.test2.Garbage", 5000);
	E.cr = dg_connect(f, NULL, 0, DG__NAMES__SVC__REGISTRY__SERVICE, 5000);
	E.ci = dg_connect(f, NULL, 0, DG__NAMES__SVC__INT__SERVICE, 5000);
	E.co = dg_connect(f, NULL, 0, DG__TEST__OPT__PRESENCE__SERVICE, 5000);
	E.cw = dg_connect(f, NULL, 0, DG__TEST__WKT__CLOCK__SERVICE, 5000);
	assert_true(E.c2 >= 0 && E.c3 >= 0 && E.cg >= 0 && E.cr >= 0 &&
		    E.ci >= 0 && E.co >= 0 && E.cw >= 0);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	dg_server_stop(E.s2);
	dg_server_stop(E.s3);
	dg_server_stop(E.sg);
	dg_server_stop(E.sr);
	dg_server_stop(E.si);
	dg_server_stop(E.so);
	dg_server_stop(E.sw);
	dg_host_detach(E.cli);
	dg_host_detach(E.srv);
	dg_nic_stop(E.nic);
	pthread_join(E.thr, NULL);
	dg_nic_destroy(E.nic);
	return 0;
}

/* Two messages are equal when they encode to the same bytes. */
static void assert_same(const ProtobufCMessage *a, const ProtobufCMessage *b)
{
	size_t la = protobuf_c_message_get_packed_size(a);
	size_t lb = protobuf_c_message_get_packed_size(b);
	uint8_t *pa = malloc(la + 1), *pb = malloc(lb + 1);

	assert_non_null(pa);
	assert_non_null(pb);
	assert_int_equal(la, lb);
	protobuf_c_message_pack(a, pa);
	protobuf_c_message_pack(b, pb);
	assert_memory_equal(pa, pb, la);
	free(pa);
	free(pb);
}

/* ---- proto2 -------------------------------------------------------------- */

static void test_proto2_all_fields(void **state)
{
	struct dg_flow *f = dg_host_flow(E.cli, 0);
	Dg__Test2__Record__Inner kid = DG__TEST2__RECORD__INNER__INIT,
				 in = DG__TEST2__RECORD__INNER__INIT,
				 node = DG__TEST2__RECORD__INNER__INIT;
	Dg__Test2__Record__Inner *kids[] = {&kid}, *inners[] = {&kid, &in};
	Dg__Common__Point where = DG__COMMON__POINT__INIT;
	Dg__Test2__Record r = DG__TEST2__RECORD__INIT, *out;
	int64_t deltas[] = {-1, 0, 1, INT64_MIN, INT64_MAX};
	char *tags[] = {"a", "", "ünïcödé", "tag with spaces"};
	Dg__Common__Color colors[] = {DG__COMMON__COLOR__RED,
				      DG__COMMON__COLOR__BLUE};
	uint8_t blob[100];
	unsigned i;

	(void)state;
	for (i = 0; i < sizeof(blob); i++)
		blob[i] = (uint8_t)(i * 7);
	blob[3] = 0;
	kid.name = "kid";
	in.name = "inner";
	in.has_stamp = 1;
	in.stamp = 0xfedcba9876543210ull;
	in.n_children = 1;
	in.children = kids;
	node.name = "node";
	where.x = -5;
	where.y = 7;
	where.label = "here";
	r.id = 42;
	r.has_kind = 1;
	r.kind = DG__TEST2__RECORD__KIND__SMALL;
	r.note = "a note";
	r.has_blob = 1;
	r.blob.data = blob;
	r.blob.len = sizeof(blob);
	r.n_deltas = 5;
	r.deltas = deltas;
	r.n_tags = 4;
	r.tags = tags;
	r.inner = &in;
	r.n_inners = 2;
	r.inners = inners;
	r.has_ratio = 1;
	r.ratio = -1.5e300;
	r.has_weight = 1;
	r.weight = 3.25f;
	r.has_flag = 1;
	r.flag = 1;
	r.has_big = 1;
	r.big = -1234567890123ll;
	r.has_sf = 1;
	r.sf = -77;
	r.where = &where;
	r.n_colors = 2;
	r.colors = colors;
	r.choice_case = DG__TEST2__RECORD__CHOICE_NODE;
	r.node = &node;

	assert_int_equal(dg__test2__store__put_sync(f, E.c2, &r, &out, 5000),
			 0);
	assert_same(&r.base, &out->base);
	assert_int_equal(out->id, 42);
	assert_string_equal(out->tags[2], "ünïcödé");
	assert_int_equal(out->blob.len, sizeof(blob));
	assert_memory_equal(out->blob.data, blob, sizeof(blob));
	assert_int_equal(out->inner->children[0]->name[0], 'k');
	assert_int_equal(out->choice_case, DG__TEST2__RECORD__CHOICE_NODE);
	assert_string_equal(out->node->name, "node");

	/* Other oneof members, and proto2 defaults of absent fields. */
	r = (Dg__Test2__Record)DG__TEST2__RECORD__INIT;
	r.id = 1;
	r.choice_case = DG__TEST2__RECORD__CHOICE_NUMBER;
	r.number = UINT64_MAX;
	assert_int_equal(dg__test2__store__put_sync(f, E.c2, &r, &out, 5000),
			 0);
	assert_same(&r.base, &out->base);
	assert_int_equal(out->has_kind, 0);
	assert_int_equal(out->kind, DG__TEST2__RECORD__KIND__LARGE);
	assert_string_equal(out->note, "none");
	assert_true(out->number == UINT64_MAX);
	r.choice_case = DG__TEST2__RECORD__CHOICE_TEXT;
	r.text = "text";
	assert_int_equal(dg__test2__store__put_sync(f, E.c2, &r, &out, 5000),
			 0);
	assert_string_equal(out->text, "text");
}

static void test_empty_and_app_status(void **state)
{
	struct dg_flow *f = dg_host_flow(E.cli, 0);
	Dg__Test2__Empty e = DG__TEST2__EMPTY__INIT, *out = NULL;

	(void)state;
	assert_int_equal(dg__test2__store__ping_sync(f, E.c2, &e, &out, 5000),
			 0);
	assert_non_null(out);
	/* The handler's status travels back; there is no message. */
	assert_int_equal(dg__test2__store__fail_sync(f, E.c2, &e, &out, 5000),
			 DG_ST_APP_BASE + 3);
	assert_null(out);
	/* A method whose handler is NULL: DG_ST_NO_FUNCTION. */
	{
		Dg__Test__V3__Bag b = DG__TEST__V3__BAG__INIT, *bo;

		assert_int_equal(dg__test__v3__types__get_httpstatus_sync(
					 f, E.c3, &b, &bo, 5000),
				 DG_ST_NO_FUNCTION);
	}
}

/* ---- proto3 -------------------------------------------------------------- */

static void fill_bag(Dg__Test__V3__Bag *b, uint32_t seed, void **keep,
		     size_t nkeep)
{
	/* Backing storage for one bag (owned by the caller through keep). */
	struct store {
		int32_t nums[50];
		char *words[3];
		ProtobufCBinaryData blobs[2];
		uint8_t raw[300];
		Dg__Test__V3__Bag__Entry e[3], *ep[3];
		Dg__Test__V3__Bag__CountsEntry c[2], *cp[2];
		Dg__Test__V3__Bag__ByIdEntry id[2], *idp[2];
		Dg__Test__V3__Bag__PointsEntry p[1], *pp[1];
		Dg__Common__Point pt;
		Dg__Test__V3__Bag__Entry pick;
	} *s = calloc(1, sizeof(*s));
	unsigned i;

	assert_non_null(s);
	assert_true(nkeep >= 1);
	keep[0] = s;
	dg__test__v3__bag__init(b);
	b->i32 = -(int32_t)seed;
	b->i64 = INT64_MIN + seed;
	b->u32 = UINT32_MAX - seed;
	b->u64 = UINT64_MAX - seed;
	b->s32 = INT32_MIN;
	b->s64 = -3;
	b->f32 = 0xdeadbeef;
	b->f64 = 0x0123456789abcdefull;
	b->sf32 = -1;
	b->sf64 = INT64_MAX;
	b->fl = 0.5f;
	b->db = 2.718281828;
	b->b = 1;
	b->str = "string field";
	for (i = 0; i < sizeof(s->raw); i++)
		s->raw[i] = (uint8_t)(seed + i);
	b->raw.data = s->raw;
	b->raw.len = sizeof(s->raw);
	b->color = DG__COMMON__COLOR__GREEN;
	for (i = 0; i < 50; i++)
		s->nums[i] = (int32_t)(i * 1000003u * seed) - 7;
	b->n_nums = 50;
	b->nums = s->nums;
	s->words[0] = "one";
	s->words[1] = "";
	s->words[2] = "three";
	b->n_words = 3;
	b->words = s->words;
	s->blobs[0].data = s->raw;
	s->blobs[0].len = 5;
	s->blobs[1].data = NULL;
	s->blobs[1].len = 0;
	b->n_blobs = 2;
	b->blobs = s->blobs;
	for (i = 0; i < 3; i++) {
		dg__test__v3__bag__entry__init(&s->e[i]);
		s->e[i].key = i ? "k" : "first";
		s->e[i].value.data = s->raw + i;
		s->e[i].value.len = i * 10;
		s->e[i].state = (Dg__Test__V3__Bag__Entry__State)(i % 3);
		s->ep[i] = &s->e[i];
	}
	b->n_entries = 3;
	b->entries = s->ep;
	for (i = 0; i < 2; i++) {
		dg__test__v3__bag__counts_entry__init(&s->c[i]);
		s->c[i].key = i ? "b" : "a";
		s->c[i].value = (int64_t)i - 100;
		s->cp[i] = &s->c[i];
		dg__test__v3__bag__by_id_entry__init(&s->id[i]);
		s->id[i].key = 10 + i;
		s->id[i].value = &s->e[i];
		s->idp[i] = &s->id[i];
	}
	b->n_counts = 2;
	b->counts = s->cp;
	b->n_by_id = 2;
	b->by_id = s->idp;
	dg__common__point__init(&s->pt);
	s->pt.x = 1;
	s->pt.label = "pt";
	dg__test__v3__bag__points_entry__init(&s->p[0]);
	s->p[0].key = "origin";
	s->p[0].value = &s->pt;
	s->pp[0] = &s->p[0];
	b->n_points = 1;
	b->points = s->pp;
	switch (seed % 3) {
	case 0:
		b->pick_case = DG__TEST__V3__BAG__PICK_NAME;
		b->name = "picked";
		break;
	case 1:
		b->pick_case = DG__TEST__V3__BAG__PICK_CODE;
		b->code = -9;
		break;
	default:
		dg__test__v3__bag__entry__init(&s->pick);
		s->pick.key = "entry";
		b->pick_case = DG__TEST__V3__BAG__PICK_ENTRY;
		b->entry = &s->pick;
	}
}

static void test_proto3_all_fields(void **state)
{
	struct dg_flow *f = dg_host_flow(E.cli, 0);
	Dg__Test__V3__Bag b, *out;
	Dg__Common__Point *pt;
	void *keep[1];
	uint32_t seed;

	(void)state;
	for (seed = 1; seed <= 3; seed++) {
		fill_bag(&b, seed, keep, 1);
		assert_int_equal(
			dg__test__v3__types__echo_sync(f, E.c3, &b, &out, 5000),
			0);
		assert_same(&b.base, &out->base);
		assert_int_equal(out->n_counts, 2);
		assert_string_equal(out->points[0]->value->label, "pt");
		assert_int_equal(out->by_id[1]->value->value.len, 10);
		assert_int_equal(out->pick_case, b.pick_case);
		/* A response of another type, built in the server's arena. */
		assert_int_equal(
			dg__test__v3__types__count_sync(f, E.c3, &b, &pt, 5000),
			0);
		assert_int_equal(pt->x, 3);
		assert_int_equal(pt->y, -50);
		assert_string_equal(pt->label, "2/3");
		free(keep[0]);
	}
	/* The all-default message is zero bytes on the wire. */
	dg__test__v3__bag__init(&b);
	assert_int_equal(
		dg__test__v3__types__echo_sync(f, E.c3, &b, &out, 5000), 0);
	assert_same(&b.base, &out->base);
}

/* Many frames each way: a list of bags, tens of KiB. */
static void test_multi_frame(void **state)
{
	struct dg_flow *f = dg_host_flow(E.cli, 0);
	Dg__Test__V3__BagList l = DG__TEST__V3__BAG_LIST__INIT, *out;
	Dg__Test__V3__Bag bags[40], *bp[40];
	void *keep[40];
	size_t len;
	unsigned i;

	(void)state;
	for (i = 0; i < 40; i++) {
		fill_bag(&bags[i], i + 1, &keep[i], 1);
		bp[i] = &bags[i];
	}
	l.n_bags = 40;
	l.bags = bp;
	len = protobuf_c_message_get_packed_size(&l.base);
	assert_true(len > 20000 && len < DG_MAX_MSG);
	assert_int_equal(
		dg__test__v3__types__echo_list_sync(f, E.c3, &l, &out, 5000),
		0);
	assert_same(&l.base, &out->base);
	/* Larger than DG_MAX_MSG: refused before anything is queued. */
	{
		Dg__Test__V3__Bag big;
		uint8_t *raw = calloc(1, DG_MAX_MSG + 1);
		uint32_t id;

		dg__test__v3__bag__init(&big);
		big.raw.data = raw;
		big.raw.len = DG_MAX_MSG + 1;
		assert_int_equal(
			dg__test__v3__types__echo_call(f, E.c3, &big, &id),
			-EMSGSIZE);
		free(raw);
	}
	for (i = 0; i < 40; i++)
		free(keep[i]);
}

/* Asynchronous: many calls in flight, responses taken from completions. */
static void test_async(void **state)
{
	struct dg_flow *f = dg_host_flow(E.cli, 1);
	int c3 = dg_connect(f, NULL, 0, DG__TEST__V3__TYPES__SERVICE, 5000);
	uint32_t sent = 0, done = 0, ids[64];
	/* Only to fail instead of hanging: a loaded machine is slow. */
	time_t until = time(NULL) + 60;
	Dg__Test__V3__Bag b;
	void *keep[1];
	enum { N = 2000 };

	(void)state;
	assert_true(c3 >= 0);
	fill_bag(&b, 2, keep, 1);
	while (done < N && time(NULL) <= until) {
		struct dg_completion c[16];
		int n, i;

		while (sent < N && sent - done < 16) {
			b.i32 = (int32_t)sent;
			if (dg__test__v3__types__echo_call(f, c3, &b,
							   &ids[sent % 64]))
				break;
			sent++;
		}
		n = dg_poll(f, c, 16);
		assert_true(n >= 0);
		for (i = 0; i < n; i++) {
			Dg__Test__V3__Bag *out;

			assert_int_equal(
				dg__test__v3__types__echo_take(f, &c[i], &out),
				0);
			assert_int_equal(c[i].rpc_id, ids[done % 64]);
			assert_int_equal(out->i32, (int32_t)done);
			assert_int_equal(out->n_nums, 50);
			done++;
		}
	}
	assert_int_equal(done, N);
	free(keep[0]);
}

/* ---- well-known types ---------------------------------------------------- */

/*
 * Empty, Timestamp, Duration, every wrapper, Any, Struct/Value/ListValue
 * and FieldMask, in a message and as whole requests and responses: code
 * from libdagger-wkt, through the stubs and back.
 */
static void test_well_known_types(void **state)
{
	struct dg_flow *f = dg_host_flow(E.cli, 0);
	Google__Protobuf__Empty empty = GOOGLE__PROTOBUF__EMPTY__INIT, *eo;
	Google__Protobuf__Timestamp *now,
		at = GOOGLE__PROTOBUF__TIMESTAMP__INIT,
		h1 = GOOGLE__PROTOBUF__TIMESTAMP__INIT, *hist[2] = {&at, &h1};
	Google__Protobuf__Duration took = GOOGLE__PROTOBUF__DURATION__INIT,
				   *inner;
	Google__Protobuf__DoubleValue d = GOOGLE__PROTOBUF__DOUBLE_VALUE__INIT;
	Google__Protobuf__FloatValue fl = GOOGLE__PROTOBUF__FLOAT_VALUE__INIT;
	Google__Protobuf__Int64Value i64 = GOOGLE__PROTOBUF__INT64_VALUE__INIT;
	Google__Protobuf__UInt64Value u64 =
		GOOGLE__PROTOBUF__UINT64_VALUE__INIT;
	Google__Protobuf__Int32Value i32 = GOOGLE__PROTOBUF__INT32_VALUE__INIT;
	Google__Protobuf__UInt32Value u32 =
		GOOGLE__PROTOBUF__UINT32_VALUE__INIT;
	Google__Protobuf__BoolValue b = GOOGLE__PROTOBUF__BOOL_VALUE__INIT;
	Google__Protobuf__StringValue sv = GOOGLE__PROTOBUF__STRING_VALUE__INIT;
	Google__Protobuf__BytesValue raw = GOOGLE__PROTOBUF__BYTES_VALUE__INIT;
	Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
	Google__Protobuf__Struct doc = GOOGLE__PROTOBUF__STRUCT__INIT;
	Google__Protobuf__Struct__FieldsEntry e[3],
		*ep[3] = {&e[0], &e[1], &e[2]};
	Google__Protobuf__Value v[5], *lv[2] = {&v[3], &v[4]};
	Google__Protobuf__ListValue list = GOOGLE__PROTOBUF__LIST_VALUE__INIT;
	Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
	Dg__Test__Wkt__Known__TimeoutsEntry
		te = DG__TEST__WKT__KNOWN__TIMEOUTS_ENTRY__INIT,
		*tep[1] = {&te};
	Dg__Test__Wkt__Known k = DG__TEST__WKT__KNOWN__INIT, *out;
	char *paths[] = {"at.seconds", "doc"};
	uint8_t packed[32], bytes[] = {0, 1, 2, 0xff};
	ProtobufCMessage *m;
	unsigned i;

	(void)state;
	/* Empty in, Timestamp out. */
	assert_int_equal(
		dg__test__wkt__clock__now_sync(f, E.cw, &empty, &now, 5000), 0);
	assert_int_equal(now->seconds, 1700000000);
	assert_int_equal(now->nanos, 123456789);
	/* A wrapper in, Empty out; and the handler's status. */
	sv.value = "key";
	assert_int_equal(
		dg__test__wkt__clock__forget_sync(f, E.cw, &sv, &eo, 5000), 0);
	assert_non_null(eo);
	sv.value = "other";
	assert_int_equal(
		dg__test__wkt__clock__forget_sync(f, E.cw, &sv, &eo, 5000),
		DG_ST_APP_BASE + 1);

	/* Every kind in one message. */
	at.seconds = -62135596800; /* 0001-01-01 */
	at.nanos = 1;
	h1.seconds = 253402300799; /* 9999-12-31 */
	took.seconds = -315576000000;
	took.nanos = -999999999;
	d.value = -0.0;
	fl.value = 1e-38f;
	i64.value = INT64_MIN;
	u64.value = UINT64_MAX;
	i32.value = -1;
	u32.value = UINT32_MAX;
	b.value = 1;
	sv.value = "wrapped";
	raw.value.data = bytes;
	raw.value.len = sizeof(bytes);
	any.type_url = "type.googleapis.com/google.protobuf.Duration";
	any.value.data = packed;
	any.value.len = google__protobuf__duration__pack(&took, packed);
	for (i = 0; i < 5; i++)
		google__protobuf__value__init(&v[i]);
	v[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
	v[0].number_value = 1.5;
	v[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
	v[1].string_value = "x";
	v[2].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
	v[2].list_value = &list;
	v[3].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
	v[3].bool_value = 1;
	v[4].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
	v[4].null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
	list.n_values = 2;
	list.values = lv;
	for (i = 0; i < 3; i++) {
		google__protobuf__struct__fields_entry__init(&e[i]);
		e[i].value = &v[i];
	}
	e[0].key = "n";
	e[1].key = "s";
	e[2].key = "l";
	doc.n_fields = 3;
	doc.fields = ep;
	mask.n_paths = 2;
	mask.paths = paths;
	te.key = "read";
	te.value = &took;
	k.at = &at;
	k.took = &took;
	k.d = &d;
	k.f = &fl;
	k.i64 = &i64;
	k.u64 = &u64;
	k.i32 = &i32;
	k.u32 = &u32;
	k.b = &b;
	k.s = &sv;
	k.raw = &raw;
	k.any = &any;
	k.doc = &doc;
	k.value = &v[2];
	k.list = &list;
	k.mask = &mask;
	k.n_history = 2;
	k.history = hist;
	k.n_timeouts = 1;
	k.timeouts = tep;
	assert_int_equal(
		dg__test__wkt__clock__echo_sync(f, E.cw, &k, &out, 5000), 0);
	assert_same(&k.base, &out->base);
	assert_true(out->at->seconds == -62135596800);
	assert_true(out->i64->value == INT64_MIN);
	assert_true(out->u64->value == UINT64_MAX);
	assert_string_equal(out->s->value, "wrapped");
	assert_int_equal(out->doc->n_fields, 3);
	assert_int_equal(
		out->doc->fields[2]->value->list_value->values[1]->kind_case,
		GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE);
	assert_string_equal(out->mask->paths[0], "at.seconds");
	/* The Any's payload decodes as what it says it is. */
	assert_string_equal(out->any->type_url,
			    "type.googleapis.com/google.protobuf.Duration");
	assert_int_equal(
		dg_pb_unpack(f, &google__protobuf__duration__descriptor,
			     out->any->value.data, out->any->value.len, &m),
		0);
	inner = (Google__Protobuf__Duration *)m;
	assert_true(inner->seconds == -315576000000);
	assert_int_equal(inner->nanos, -999999999);
}

/* ---- proto3 optional ----------------------------------------------------- */

/*
 * proto3 `optional` keeps presence (a field set to zero is sent and comes
 * back set; an unset one is neither) and protoc's encoding: in C it is a
 * member of its oneof, `_NAME`.
 */
static void test_proto3_optional(void **state)
{
	struct dg_flow *f = dg_host_flow(E.cli, 0);
	Dg__Test__Opt__Opt o, *out;
	Dg__Common__Point origin = DG__COMMON__POINT__INIT;
	static const uint8_t zero_i32[] = {0x08, 0x00};
	uint8_t buf[64];

	(void)state;
	/*
	 * The init function, not protoc-c's initialiser macro: `{0}` for a
	 * union of a bytes field trips -Wmissing-braces.
	 */
	dg__test__opt__opt__init(&o);
	/* Nothing set: zero bytes, and nothing set on either side. */
	assert_int_equal(protobuf_c_message_get_packed_size(&o.base), 0);
	assert_int_equal(
		dg__test__opt__presence__echo_sync(f, E.co, &o, &out, 5000), 0);
	assert_int_equal(out->plain, 0);
	assert_int_equal(out->_i32_case, DG__TEST__OPT__OPT___I32__NOT_SET);
	assert_int_equal(out->_str_case, DG__TEST__OPT__OPT___STR__NOT_SET);
	assert_int_equal(out->_point_case, DG__TEST__OPT__OPT___POINT__NOT_SET);
	assert_int_equal(out->_restrict_case,
			 DG__TEST__OPT__OPT___RESTRICT__NOT_SET);

	/* One field set to 0: its tag and a zero, as protoc encodes it. */
	o._i32_case = DG__TEST__OPT__OPT___I32_I32;
	o.i32 = 0;
	assert_int_equal(protobuf_c_message_pack(&o.base, buf),
			 sizeof(zero_i32));
	assert_memory_equal(buf, zero_i32, sizeof(zero_i32));

	/* Every optional field set to its zero value: all sent, all set. */
	o._s64_case = DG__TEST__OPT__OPT___S64_S64;
	o._u64_case = DG__TEST__OPT__OPT___U64_U64;
	o._db_case = DG__TEST__OPT__OPT___DB_DB;
	o._fl_case = DG__TEST__OPT__OPT___FL_FL;
	o._flag_case = DG__TEST__OPT__OPT___FLAG_FLAG;
	o._str_case = DG__TEST__OPT__OPT___STR_STR;
	o.str = "";
	o._raw_case = DG__TEST__OPT__OPT___RAW_RAW;
	o._color_case = DG__TEST__OPT__OPT___COLOR_COLOR;
	o.color = DG__COMMON__COLOR__COLOR_UNSPECIFIED;
	o._point_case = DG__TEST__OPT__OPT___POINT_POINT;
	o.point = &origin;
	o._restrict_case = DG__TEST__OPT__OPT___RESTRICT_RESTRICT_;
	o.plain = 0; /* no presence: not sent */
	/* 2 bytes per varint/length field, 9 for the double, 5 per fixed32 */
	assert_int_equal(protobuf_c_message_get_packed_size(&o.base),
			 8 * 2 + 9 + 5 + 5);
	assert_int_equal(
		dg__test__opt__presence__echo_sync(f, E.co, &o, &out, 5000), 0);
	assert_int_equal(out->plain, 11);
	out->plain = 0;
	assert_same(&o.base, &out->base);
	assert_int_equal(out->_i32_case, DG__TEST__OPT__OPT___I32_I32);
	assert_int_equal(out->i32, 0);
	assert_int_equal(out->_flag_case, DG__TEST__OPT__OPT___FLAG_FLAG);
	assert_int_equal(out->flag, 0);
	assert_int_equal(out->_str_case, DG__TEST__OPT__OPT___STR_STR);
	assert_string_equal(out->str, "");
	assert_int_equal(out->_raw_case, DG__TEST__OPT__OPT___RAW_RAW);
	assert_int_equal(out->raw.len, 0);
	assert_int_equal(out->_point_case, DG__TEST__OPT__OPT___POINT_POINT);
	assert_non_null(out->point);
	assert_int_equal(out->_restrict_case,
			 DG__TEST__OPT__OPT___RESTRICT_RESTRICT_);

	/* Values, and a real oneof next to the optional ones. */
	o.i32 = -1;
	o.s64 = INT64_MIN;
	o.u64 = UINT64_MAX;
	o.db = 0.25;
	o.str = "s";
	o.restrict_ = 0xfffffffe;
	o.pick_case = DG__TEST__OPT__OPT__PICK_CODE;
	o.code = 0;
	assert_int_equal(
		dg__test__opt__presence__echo_sync(f, E.co, &o, &out, 5000), 0);
	assert_int_equal(out->plain, 11);
	out->plain = 0;
	assert_same(&o.base, &out->base);
	assert_int_equal(out->i32, -1);
	assert_true(out->s64 == INT64_MIN && out->u64 == UINT64_MAX);
	assert_int_equal(out->pick_case, DG__TEST__OPT__OPT__PICK_CODE);
	assert_int_equal(out->restrict_, 0xfffffffe);
}

/* ---- names that are not C ------------------------------------------------ */

/*
 * Fields, oneofs, enum values, services and methods named after C keywords,
 * reserved identifiers and macros: escaped NAME_ in C, on the wire as any
 * other field.
 */
static void test_names_not_c(void **state)
{
	struct dg_flow *f = dg_host_flow(E.cli, 0);
	Dg__Names__Fields in = DG__NAMES__FIELDS__INIT, *out;
	Dg__Names__Choice ch = DG__NAMES__CHOICE__INIT, *cho;
	Dg__Names__Values *v;
	const ProtobufCFieldDescriptor *fd;
	uint8_t raw[] = {0, 'x', 0};

	(void)state;
	in.has_register_ = 1; /* protoc-c's own escape (C++ keywords) */
	in.register_ = 3;
	in.has_restrict_ = 1; /* renamed for protoc-c by dagger-idlc */
	in.restrict_ = -7;
	in.linux_ = "tux";
	in.has_unix_ = 1;
	in.unix_.data = raw;
	in.unix_.len = sizeof(raw);
	in.has_errno_ = 1;
	in.errno_ = EINVAL;
	in.has___x86_64___ = 1;
	in.__x86_64___ = 64;
	in.has__bool = 1;
	in._bool = 1;
	in.has_base_ = 1;
	in.base_ = 42;
	in.null = "null";
	in.has_while_ = 1;
	in.while_ = 0;
	assert_int_equal(dg__names__svc__registry__register__sync(f, E.cr, &in,
								  &out, 5000),
			 0);
	assert_same(&in.base, &out->base);
	assert_int_equal(out->restrict_, -7);
	assert_string_equal(out->linux_, "tux");
	assert_int_equal(out->unix_.len, 3);
	assert_int_equal(out->errno_, EINVAL);
	assert_int_equal(out->__x86_64___, 64);
	assert_int_equal(out->base_, 42);
	assert_int_equal(out->has_static_assert_, 0);
	/* Defaults of absent fields. */
	assert_string_equal(out->extern_default, "x");
	assert_int_equal(out->volatile_default, 7);
	/* A renamed field carries its C name in protobuf-c's descriptor. */
	fd = protobuf_c_message_descriptor_get_field(
		&dg__names__fields__descriptor, 21);
	assert_non_null(fd);
	assert_string_equal(fd->name, "restrict_");
	fd = protobuf_c_message_descriptor_get_field(
		&dg__names__fields__descriptor, 20);
	assert_string_equal(fd->name, "register");

	/* Oneofs named after keywords, members too. */
	ch.switch_case = DG__NAMES__CHOICE__SWITCH___ATOMIC;
	ch._atomic = &in;
	ch.__generic_case = DG__NAMES__CHOICE____GENERIC_UNSIGNED;
	ch.unsigned_ = 1;
	assert_int_equal(
		dg__names__svc__registry__int__sync(f, E.cr, &ch, &cho, 5000),
		0);
	assert_same(&ch.base, &cho->base);
	assert_int_equal(cho->switch_case, DG__NAMES__CHOICE__SWITCH___ATOMIC);
	assert_int_equal(cho->_atomic->restrict_, -7);
	assert_int_equal(cho->unsigned_, 1);

	/* A service named int, a method named while, enum values too. */
	assert_int_equal(
		dg__names__svc__int__while__sync(f, E.ci, &in, &v, 5000), 0);
	assert_int_equal(v->keyword, DG__NAMES__VALUES__KEYWORD__while);
	in.has_while_ = 0;
	assert_int_equal(
		dg__names__svc__int__while__sync(f, E.ci, &in, &v, 5000), 0);
	assert_int_equal(v->keyword, DG__NAMES__VALUES__KEYWORD___Bool);
	/* Its other methods have no handler. */
	assert_int_equal(
		dg__names__svc__int__register__sync(f, E.ci, &in, &v, 5000),
		DG_ST_NO_FUNCTION);
}

/* ---- garbage on the wire ------------------------------------------------- */

static void test_garbage_request(void **state)
{
	struct dg_flow *f = dg_host_flow(E.cli, 0);
	static const struct {
		const char *what;
		uint8_t b[12];
		uint32_t len;
	} cases[] = {
		{"all ones", {0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 6},
		{"length past the end", {0x1a, 0x7f, 'a'}, 3},
		{"wire type 7", {0x0f, 0x01}, 2},
		{"varint never ends",
		 {0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
		  0x80},
		 11},
		{"field number 0", {0x00, 0x01}, 2},
		/* proto2 Record without its required id */
		{"required field missing", {0x1a, 0x01, 'x'}, 3},
	};
	uint8_t resp[64];
	size_t i, rlen;

	(void)state;
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		rlen = sizeof(resp);
		/* The raw frames carry the typed method's function id. */
		assert_int_equal(dg_call_sync(f, E.c2,
					      DG__TEST2__STORE__PUT__FN,
					      cases[i].b, cases[i].len, resp,
					      &rlen, 5000),
				 DG_ST_BAD_FRAME);
		assert_int_equal(rlen, 0);
	}
	/* Garbage spanning several frames, to the proto3 service. */
	{
		static uint8_t junk[5000];

		memset(junk, 0xff, sizeof(junk));
		rlen = sizeof(resp);
		assert_int_equal(
			dg_call_sync(f, E.c3, DG__TEST__V3__TYPES__ECHO__FN,
				     junk, sizeof(junk), resp, &rlen, 5000),
			DG_ST_BAD_FRAME);
	}
	/* The services still work. */
	test_empty_and_app_status(state);
}

static void test_garbage_response(void **state)
{
	struct dg_flow *f = dg_host_flow(E.cli, 0);
	Dg__Test2__Record r = DG__TEST2__RECORD__INIT, *out = NULL;
	Dg__Test__V3__Bag b, *bo = NULL;
	struct dg_completion c = {0};

	(void)state;
	r.id = 5;
	assert_int_equal(dg__test2__store__put_sync(f, E.cg, &r, &out, 5000),
			 -EBADMSG);
	assert_null(out);
	dg__test__v3__bag__init(&b);
	assert_int_equal(dg__test__v3__types__echo_sync(f, E.cg, &b, &bo, 5000),
			 -EBADMSG);
	/* A completion that carries an error status is not decoded. */
	c.status = DG_ST_UNREACHABLE;
	assert_int_equal(dg__test__v3__types__echo_take(f, &c, &bo),
			 DG_ST_UNREACHABLE);
}

/* A message whose decoded form does not fit the flow arena: -ENOMEM. */
static void test_arena_exhausted(void **state)
{
	struct dg_flow *f = dg_host_flow(E.cli, 0);
	static uint8_t wire[1000000];
	ProtobufCMessage *m;
	size_t i;

	(void)state;
	/*
	 * 500,000 empty bags: 2 bytes each on the wire (a large message),
	 * far more than the arena decoded.
	 */
	for (i = 0; i + 1 < sizeof(wire); i += 2) {
		wire[i] = 0x0a;
		wire[i + 1] = 0;
	}
	assert_int_equal(dg_pb_unpack(f, &dg__test__v3__bag_list__descriptor,
				      wire, sizeof(wire), &m),
			 -ENOMEM);
	/* On the server side the same gives the caller an error status. */
	{
		uint8_t resp[16];
		size_t rlen = sizeof(resp);

		assert_int_equal(
			dg_call_sync(f, E.c3,
				     DG__TEST__V3__TYPES__ECHO_LIST__FN, wire,
				     sizeof(wire), resp, &rlen, 20000),
			DG_ST_BAD_FRAME);
	}
	assert_int_equal(dg_pb_unpack(f, &dg__test__v3__bag_list__descriptor,
				      wire, 2000, &m),
			 0);
	assert_int_equal(((Dg__Test__V3__BagList *)m)->n_bags, 1000);
}

/* ---- the host primitives under the stubs --------------------------------- */

static int fill_short(void *arg, struct dg_writer *w)
{
	(void)arg;
	dg_writer_put(w, "abc", 3);
	return 0;
}

static int fill_long(void *arg, struct dg_writer *w)
{
	(void)arg;
	dg_writer_put(w, "abcdefgh", 8);
	return 0;
}

static int fill_err(void *arg, struct dg_writer *w)
{
	(void)arg;
	dg_writer_put(w, "abcd", 4);
	return -ENOSPC;
}

static int fill_ok(void *arg, struct dg_writer *w)
{
	const uint8_t *src = arg;
	uint8_t *p = dg_writer_room(w, 41); /* crosses a frame: refused */

	if (p)
		return -EINVAL;
	p = dg_writer_room(w, 10);
	if (!p)
		return -EINVAL;
	memcpy(p, src, 10);
	dg_writer_put(w, src + 10, 90);
	return 0;
}

static int raw_echo(void *arg, const struct dg_request *req,
		    struct dg_response *resp)
{
	(void)arg;
	memcpy(resp->data, req->data, req->len);
	resp->len = req->len;
	return 0;
}

/* ---- keyed stubs: "dagger: key=FIELD" ------------------------------------ */

static struct dg_host *shard_host;

static int shard_where(struct dg_flow *f, Dg__Test__Keyed__Resp *resp)
{
	uint32_t i;

	for (i = 0; i < dg_host_nflows(shard_host); i++)
		if (dg_host_flow(shard_host, i) == f)
			resp->flow = i;
	return 0;
}

static int shard_h(void *arg, struct dg_flow *f, const Dg__Test__Keyed__Req *r,
		   Dg__Test__Keyed__Resp *resp)
{
	(void)arg;
	(void)r;
	return shard_where(f, resp);
}

/*
 * A service balanced by key over 4 server flows: the stubs of methods
 * that name a key field send each key to one flow every time (string and
 * integer keys), several flows in all; a method without a key goes
 * round-robin.
 */
static void test_keyed_stubs(void **state)
{
	static const struct dg__test__keyed__shard__handlers hs = {
		.by_name = shard_h, .by_id = shard_h, .any = shard_h};
	static struct dg__test__keyed__shard__server srv;
	struct dg_host *cli = attach(1);
	struct dg_flow *f = dg_host_flow(cli, 0);
	/* 15 keys, 3 calls each round: round-robin would not be sticky. */
	uint32_t by_name[15], by_id[15], used = 0, any = 0, i, k;
	struct dg_server *s;
	int conn;

	(void)state;
	shard_host = attach(4);
	assert_int_equal(
		dg__test__keyed__shard__server_start(shard_host, &srv, &hs,
						     NULL, DG_LB_KEY, 0, 4, &s),
		0);
	conn = dg_connect(f, NULL, 0, DG__TEST__KEYED__SHARD__SERVICE, 5000);
	assert_true(conn >= 0);
	for (i = 0; i < 15 * 6; i++) {
		Dg__Test__Keyed__Req rq = DG__TEST__KEYED__REQ__INIT;
		Dg__Test__Keyed__Resp *rs;
		char name[16];

		k = i % 15;
		snprintf(name, sizeof(name), "user-%u", k);
		rq.name = name;
		rq.id = 1000 + k;
		assert_int_equal(dg__test__keyed__shard__by_name_sync(
					 f, conn, &rq, &rs, 5000),
				 0);
		if (i < 15)
			by_name[k] = rs->flow;
		assert_int_equal(rs->flow, by_name[k]);
		used |= 1u << rs->flow;
		/* The other key field: its own mapping, as sticky. */
		rq.name = "same-for-all";
		assert_int_equal(dg__test__keyed__shard__by_id_sync(
					 f, conn, &rq, &rs, 5000),
				 0);
		if (i < 15)
			by_id[k] = rs->flow;
		assert_int_equal(rs->flow, by_id[k]);
		assert_int_equal(dg__test__keyed__shard__any_sync(f, conn, &rq,
								  &rs, 5000),
				 0);
		any |= 1u << rs->flow;
	}
	assert_true(__builtin_popcount(used) >= 2);
	assert_int_equal(any, 0xf); /* no key: round-robin over all four */
	dg_close(f, conn);
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(shard_host);
}

static void test_writer_and_arena(void **state)
{
	static const struct dg_handler h[] = {{1, raw_echo}};
	static const struct dg_service_def svc = {
		.name = "raw", .handlers = h, .nhandlers = 1};
	struct dg_host *srv = attach(1), *cli = attach(1);
	struct dg_flow *f = dg_host_flow(cli, 0);
	struct dg_completion c;
	struct dg_server *s;
	uint8_t src[100];
	uint32_t id;
	void *a, *b;
	int conn, i;

	(void)state;
	for (i = 0; i < 100; i++)
		src[i] = (uint8_t)(i * 3 + 1);
	assert_int_equal(dg_server_start(srv, &svc, 0, 1, &s), 0);
	conn = dg_connect(f, NULL, 0, "raw", 5000);
	assert_true(conn >= 0);
	/* Length mismatches and fill errors send nothing. */
	assert_int_equal(dg_call_fill(f, conn, 1, 5, fill_short, NULL, &id),
			 -EPROTO);
	assert_int_equal(dg_call_fill(f, conn, 1, 5, fill_long, NULL, &id),
			 -EPROTO);
	assert_int_equal(dg_call_fill(f, conn, 1, 5, fill_err, NULL, &id),
			 -ENOSPC);
	assert_int_equal(
		dg_call_fill(f, conn, 1, DG_MAX_MSG + 1, fill_ok, src, &id),
		-EMSGSIZE);
	assert_int_equal(dg_call_fill(f, conn, 1, 5, NULL, NULL, &id), -EINVAL);
	/* A good one, its bytes spread over three frames. */
	assert_int_equal(dg_call_fill(f, conn, 1, 100, fill_ok, src, &id), 0);
	assert_int_equal(dg_wait(f, id, &c, 5000), 0);
	assert_int_equal(c.status, 0);
	assert_int_equal(c.len, 100);
	assert_memory_equal(c.data, src, 100);

	/* Arena: aligned, bounded, reset by dg_poll. */
	a = dg_flow_alloc(f, 1);
	b = dg_flow_alloc(f, 24);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal((uintptr_t)b % 16, 0);
	assert_null(dg_flow_alloc(f, DG_FLOW_ARENA));
	assert_int_equal(dg_poll(f, &c, 1), 0);
	assert_non_null(dg_flow_alloc(f, DG_FLOW_ARENA));
	assert_null(dg_flow_alloc(f, 1));
	dg_server_stop(s);
	dg_host_detach(cli);
	dg_host_detach(srv);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keyed_stubs),
		cmocka_unit_test(test_proto2_all_fields),
		cmocka_unit_test(test_empty_and_app_status),
		cmocka_unit_test(test_proto3_all_fields),
		cmocka_unit_test(test_multi_frame),
		cmocka_unit_test(test_well_known_types),
		cmocka_unit_test(test_proto3_optional),
		cmocka_unit_test(test_names_not_c),
		cmocka_unit_test(test_async),
		cmocka_unit_test(test_garbage_request),
		cmocka_unit_test(test_garbage_response),
		cmocka_unit_test(test_arena_exhausted),
		cmocka_unit_test(test_writer_and_arena),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
