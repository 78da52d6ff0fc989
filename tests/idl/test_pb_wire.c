// SPDX-License-Identifier: MIT
/*
 * Wire compatibility, the C half (wire_test.sh runs it twice around
 * wire_check.py, protobuf's own Python implementation):
 *
 *   test_pb_wire requests DIR   the generated stubs call a raw server on
 *                               the local backend, which writes each
 *                               request's bytes as they arrived (what the
 *                               stubs put in the frames) to DIR/METHOD.req
 *                               and echoes them;
 *   test_pb_wire responses DIR  the raw server answers each call with
 *                               DIR/METHOD.resp (written by Python) and
 *                               the stubs' decoded response must equal
 *                               the message built here.
 *
 * The messages (wire.proto, wire2.proto) hold every field kind; Python
 * builds the same ones (wire_check.py). Equal here means equal encodings
 * by protobuf-c of the decoded and the expected message, which holds
 * because Python writes maps in key order (deterministic serialisation)
 * and the expected maps here are in that order.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "wire.dg.h"

enum mode { REQUESTS, RESPONSES };

static enum mode mode;
static const char *dir;
static int failures;

static const struct {
	const char *name;
	uint16_t fn;
} methods[] = {
	{"EchoScalars", DG__TEST__WIRE__WIRE__ECHO_SCALARS__FN},
	{"EchoCollections", DG__TEST__WIRE__WIRE__ECHO_COLLECTIONS__FN},
	{"EchoChoices", DG__TEST__WIRE__WIRE__ECHO_CHOICES__FN},
	{"EchoOptionals", DG__TEST__WIRE__WIRE__ECHO_OPTIONALS__FN},
	{"EchoUnset", DG__TEST__WIRE__WIRE__ECHO_UNSET__FN},
	{"EchoKnown", DG__TEST__WIRE__WIRE__ECHO_KNOWN__FN},
	{"EchoBig", DG__TEST__WIRE__WIRE__ECHO_BIG__FN},
	{"EchoLegacy", DG__TEST__WIRE__WIRE__ECHO_LEGACY__FN},
	{"Nothing", DG__TEST__WIRE__WIRE__NOTHING__FN},
	{"Merged", DG__TEST__WIRE__WIRE__MERGED__FN},
};

#define NMETHODS (sizeof(methods) / sizeof(methods[0]))

static const char *method_name(uint16_t fn)
{
	size_t i;

	for (i = 0; i < NMETHODS; i++)
		if (methods[i].fn == fn)
			return methods[i].name;
	return NULL;
}

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	va_list ap;

	printf("FAIL: ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	failures++;
}

/* ---- the raw server: records requests, replays Python's responses ------ */

static int serve(void *arg, const struct dg_request *rq, struct dg_response *rs)
{
	const char *name = method_name(rq->fn);
	char path[4096];
	FILE *f;
	size_t n;

	(void)arg;
	if (!name)
		return DG_ST_APP_BASE;
	snprintf(path, sizeof(path), "%s/%s.%s", dir, name,
		 mode == REQUESTS ? "req" : "resp");
	if (mode == REQUESTS) {
		f = fopen(path, "wb");
		if (!f || fwrite(rq->data, 1, rq->len, f) != rq->len ||
		    fclose(f))
			return DG_ST_APP_BASE + 1;
		memcpy(rs->data, rq->data, rq->len);
		rs->len = rq->len;
		return 0;
	}
	f = fopen(path, "rb");
	if (!f)
		return DG_ST_APP_BASE + 2;
	n = fread(rs->data, 1, rs->cap, f);
	if (ferror(f) || !feof(f)) {
		fclose(f);
		return DG_ST_APP_BASE + 3;
	}
	fclose(f);
	rs->len = (uint32_t)n;
	return 0;
}

/* ---- comparison ---------------------------------------------------------- */

static void check(const char *name, int rc, const ProtobufCMessage *want,
		  const ProtobufCMessage *got)
{
	size_t lw, lg;
	uint8_t *pw, *pg;

	if (rc) {
		fail("%s: the call returned %d", name, rc);
		return;
	}
	lw = protobuf_c_message_get_packed_size(want);
	lg = protobuf_c_message_get_packed_size(got);
	pw = malloc(lw + 1);
	pg = malloc(lg + 1);
	if (!pw || !pg) {
		fail("%s: out of memory", name);
	} else {
		protobuf_c_message_pack(want, pw);
		protobuf_c_message_pack(got, pg);
		if (lw != lg || memcmp(pw, pg, lw)) {
			size_t i = 0;

			while (i < lw && i < lg && pw[i] == pg[i])
				i++;
			fail("%s: the decoded message differs from the "
			     "expected one (%zu vs %zu bytes re-encoded, first "
			     "difference at byte %zu)",
			     name, lg, lw, i);
		} else {
			printf("ok: %s (%zu bytes)\n", name, lw);
		}
	}
	free(pw);
	free(pg);
}

/* ---- the messages (wire_check.py builds the same) ------------------------ */

static uint8_t all_bytes[256];

static void build_scalars(Dg__Test__Wire__Scalars *m)
{
	dg__test__wire__scalars__init(m);
	m->i32 = -123456;
	m->i64 = INT64_MIN;
	m->u32 = UINT32_MAX;
	m->u64 = UINT64_MAX;
	m->s32 = INT32_MIN;
	m->s64 = INT64_MAX;
	m->f32 = 0xdeadbeefu;
	m->f64 = 0x0123456789abcdefull;
	m->sf32 = -2;
	m->sf64 = INT64_MIN + 1;
	m->fl = 3.5f;
	m->db = -1e300;
	m->b = 1;
	m->str = "h\xc3\xa9llo w\xc3\xb6rld \xe2\x9c\x93";
	m->raw.data = all_bytes;
	m->raw.len = sizeof(all_bytes);
	m->level = DG__TEST__WIRE__LEVEL__HIGH;
	m->open_level = (Dg__Test__Wire__Level)7;
	m->zero = 0;
}

static Dg__Test__Wire__Inner *inner(Dg__Test__Wire__Inner *m, char *name,
				    int32_t n, Dg__Test__Wire__Inner *child)
{
	dg__test__wire__inner__init(m);
	m->name = name;
	m->n = n;
	m->child = child;
	return m;
}

static void build_collections(Dg__Test__Wire__Collections *m)
{
	static int32_t i32[] = {0, -1, 1, INT32_MIN, INT32_MAX};
	static int64_t s64[] = {-1, 1, INT64_MIN, INT64_MAX};
	static double db[] = {0.5, -2.25, 1e-300};
	static uint32_t f32[] = {0, 1, UINT32_MAX};
	static protobuf_c_boolean b[] = {1, 0, 1};
	static Dg__Test__Wire__Level lv[] = {
		DG__TEST__WIRE__LEVEL__LOW, DG__TEST__WIRE__LEVEL__HIGH,
		DG__TEST__WIRE__LEVEL__LEVEL_UNSPECIFIED,
		(Dg__Test__Wire__Level)9};
	static uint64_t u64[] = {1, 300, UINT64_MAX};
	static char *strs[] = {"", "a", "\xc3\xbcn\xc3\xaf"};
	static uint8_t blob[] = {0, 1, 2};
	static ProtobufCBinaryData blobs[] = {{0, NULL}, {3, blob}};
	static Dg__Test__Wire__Inner in[4], *inners[2], v[2];
	static Dg__Test__Wire__Collections__CountsEntry c[2], *cp[2];
	static Dg__Test__Wire__Collections__ByIdEntry id[2], *idp[2];
	static Dg__Test__Wire__Collections__NamesEntry nm[2], *nmp[2];
	static Dg__Test__Wire__Collections__FlagsEntry fl[2], *flp[2];
	static Dg__Test__Wire__Collections__LevelsByEntry lb[2], *lbp[2];
	static uint8_t ff = 0xff;
	int i;

	dg__test__wire__collections__init(m);
	m->n_packed_i32 = 5;
	m->packed_i32 = i32;
	m->n_packed_s64 = 4;
	m->packed_s64 = s64;
	m->n_packed_db = 3;
	m->packed_db = db;
	m->n_packed_f32 = 3;
	m->packed_f32 = f32;
	m->n_packed_b = 3;
	m->packed_b = b;
	m->n_levels = 4;
	m->levels = lv;
	m->n_unpacked_u64 = 3;
	m->unpacked_u64 = u64;
	m->n_strs = 3;
	m->strs = strs;
	m->n_blobs = 2;
	m->blobs = blobs;
	inners[0] = inner(&in[0], "x", -1, NULL);
	inners[1] = inner(&in[1], "", 0, inner(&in[2], "c", 5, NULL));
	m->n_inners = 2;
	m->inners = inners;
	/* Maps in key order, as Python's deterministic encoding writes them. */
	for (i = 0; i < 2; i++) {
		dg__test__wire__collections__counts_entry__init(&c[i]);
		dg__test__wire__collections__by_id_entry__init(&id[i]);
		dg__test__wire__collections__names_entry__init(&nm[i]);
		dg__test__wire__collections__flags_entry__init(&fl[i]);
		dg__test__wire__collections__levels_by_entry__init(&lb[i]);
		cp[i] = &c[i];
		idp[i] = &id[i];
		nmp[i] = &nm[i];
		flp[i] = &fl[i];
		lbp[i] = &lb[i];
	}
	c[0].key = "a";
	c[0].value = 1;
	c[1].key = "b";
	c[1].value = -2;
	id[0].key = -5;
	id[0].value = inner(&v[0], "", 3, NULL);
	id[1].key = 1;
	id[1].value = inner(&v[1], "one", 0, NULL);
	nm[0].key = 0;
	nm[0].value = "zero";
	nm[1].key = UINT64_MAX;
	nm[1].value = "max";
	fl[0].key = 0;
	fl[1].key = 1;
	fl[1].value.data = &ff;
	fl[1].value.len = 1;
	lb[0].key = -1;
	lb[0].value = DG__TEST__WIRE__LEVEL__LOW;
	lb[1].key = 2;
	lb[1].value = DG__TEST__WIRE__LEVEL__HIGH;
	m->n_counts = 2;
	m->counts = cp;
	m->n_by_id = 2;
	m->by_id = idp;
	m->n_names = 2;
	m->names = nmp;
	m->n_flags = 2;
	m->flags = flp;
	m->n_levels_by = 2;
	m->levels_by = lbp;
}

static void build_choices(Dg__Test__Wire__Choices *m)
{
	static Dg__Test__Wire__Inner in[6];
	static int32_t seq[] = {1, 2, 3};

	dg__test__wire__choices__init(m);
	m->pick_case = DG__TEST__WIRE__CHOICES__PICK_INNER;
	m->inner = inner(&in[0], "in", 7,
			 inner(&in[1], "deep", 0, inner(&in[2], "", -9, NULL)));
	m->nested = inner(&in[3], "nest", 0,
			  inner(&in[4], "l2", 0, inner(&in[5], "l3", 3, NULL)));
	m->n_seq = 3;
	m->seq = seq;
}

/* Every optional field set to its zero value: all present. */
static void build_optionals(Dg__Test__Wire__Optionals *m)
{
	static Dg__Test__Wire__Inner empty;

	dg__test__wire__optionals__init(m);
	dg__test__wire__inner__init(&empty);
	m->_i32_case = DG__TEST__WIRE__OPTIONALS___I32_I32;
	m->_str_case = DG__TEST__WIRE__OPTIONALS___STR_STR;
	m->str = "";
	m->_raw_case = DG__TEST__WIRE__OPTIONALS___RAW_RAW;
	m->_inner_case = DG__TEST__WIRE__OPTIONALS___INNER_INNER;
	m->inner = &empty;
	m->_level_case = DG__TEST__WIRE__OPTIONALS___LEVEL_LEVEL;
	m->_db_case = DG__TEST__WIRE__OPTIONALS___DB_DB;
	m->_b_case = DG__TEST__WIRE__OPTIONALS___B_B;
	m->_u64_case = DG__TEST__WIRE__OPTIONALS___U64_U64;
}

/* None set, a plain field set. */
static void build_unset(Dg__Test__Wire__Optionals *m)
{
	dg__test__wire__optionals__init(m);
	m->plain = 5;
}

static void build_known(Dg__Test__Wire__Known *m)
{
	static Google__Protobuf__Timestamp at;
	static Google__Protobuf__Duration took;
	static Google__Protobuf__Int64Value i64;
	static Google__Protobuf__UInt64Value u64;
	static Google__Protobuf__Int32Value i32;
	static Google__Protobuf__UInt32Value u32;
	static Google__Protobuf__FloatValue f;
	static Google__Protobuf__DoubleValue d;
	static Google__Protobuf__BoolValue b;
	static Google__Protobuf__StringValue s;
	static Google__Protobuf__BytesValue raw;
	static Google__Protobuf__Any any;
	static Dg__Test__Wire__Inner payload;
	static uint8_t packed[32], rawb[] = {0, 0xff};
	static Google__Protobuf__Struct doc, sub;
	static Google__Protobuf__Struct__FieldsEntry e[4], *ep[3], *sp[1];
	static Google__Protobuf__Value v[7], *lv[3];
	static Google__Protobuf__ListValue list;
	int i;

	google__protobuf__timestamp__init(&at);
	at.seconds = 1700000000;
	at.nanos = 999999999;
	google__protobuf__duration__init(&took);
	took.seconds = -5;
	took.nanos = -500;
	google__protobuf__int64_value__init(&i64);
	i64.value = INT64_MIN;
	google__protobuf__uint64_value__init(&u64);
	u64.value = UINT64_MAX;
	google__protobuf__int32_value__init(&i32);
	i32.value = -1;
	google__protobuf__uint32_value__init(&u32);
	u32.value = UINT32_MAX;
	google__protobuf__float_value__init(&f);
	f.value = 0.25f;
	google__protobuf__double_value__init(&d);
	d.value = -0.5;
	google__protobuf__bool_value__init(&b);
	b.value = 1;
	google__protobuf__string_value__init(&s);
	s.value = "wrapped";
	google__protobuf__bytes_value__init(&raw);
	raw.value.data = rawb;
	raw.value.len = sizeof(rawb);
	google__protobuf__any__init(&any);
	any.type_url = "type.googleapis.com/dg.test.wire.Inner";
	any.value.data = packed;
	any.value.len = dg__test__wire__inner__pack(
		inner(&payload, "any", 1, NULL), packed);
	/* {"list": [true, null, {"k": "v"}], "num": 2.5, "str": "s"} */
	for (i = 0; i < 7; i++)
		google__protobuf__value__init(&v[i]);
	for (i = 0; i < 4; i++)
		google__protobuf__struct__fields_entry__init(&e[i]);
	google__protobuf__struct__init(&doc);
	google__protobuf__struct__init(&sub);
	google__protobuf__list_value__init(&list);
	v[0].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_BOOL_VALUE;
	v[0].bool_value = 1;
	v[1].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NULL_VALUE;
	v[1].null_value = GOOGLE__PROTOBUF__NULL_VALUE__NULL_VALUE;
	v[2].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRUCT_VALUE;
	v[2].struct_value = &sub;
	v[3].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
	v[3].string_value = "v";
	e[3].key = "k";
	e[3].value = &v[3];
	sp[0] = &e[3];
	sub.n_fields = 1;
	sub.fields = sp;
	lv[0] = &v[0];
	lv[1] = &v[1];
	lv[2] = &v[2];
	list.n_values = 3;
	list.values = lv;
	v[4].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_LIST_VALUE;
	v[4].list_value = &list;
	v[5].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_NUMBER_VALUE;
	v[5].number_value = 2.5;
	v[6].kind_case = GOOGLE__PROTOBUF__VALUE__KIND_STRING_VALUE;
	v[6].string_value = "s";
	e[0].key = "list";
	e[0].value = &v[4];
	e[1].key = "num";
	e[1].value = &v[5];
	e[2].key = "str";
	e[2].value = &v[6];
	for (i = 0; i < 3; i++)
		ep[i] = &e[i];
	doc.n_fields = 3;
	doc.fields = ep;

	dg__test__wire__known__init(m);
	m->at = &at;
	m->took = &took;
	m->i64 = &i64;
	m->u64 = &u64;
	m->i32 = &i32;
	m->u32 = &u32;
	m->f = &f;
	m->d = &d;
	m->b = &b;
	m->s = &s;
	m->raw = &raw;
	m->any = &any;
	m->doc = &doc;
}

/* Tens of KiB: hundreds of frames each way. */
static void build_big(Dg__Test__Wire__Big *m)
{
	static uint8_t chunk[3][3000];
	static ProtobufCBinaryData chunks[3];
	static int64_t values[1000];
	static char text[5001];
	static Dg__Test__Wire__Collections parts[3], *pp[3];
	int c, i;

	dg__test__wire__big__init(m);
	for (c = 0; c < 3; c++) {
		for (i = 0; i < 3000; i++)
			chunk[c][i] = (uint8_t)(i * 7 + c * 13);
		chunks[c].data = chunk[c];
		chunks[c].len = sizeof(chunk[c]);
		build_collections(&parts[c]);
		pp[c] = &parts[c];
	}
	for (i = 0; i < 1000; i++)
		values[i] = (int64_t)i * 1000003 * (i % 2 ? -1 : 1);
	for (i = 0; i < 5000; i++)
		text[i] = (char)('a' + i % 26);
	m->n_chunks = 3;
	m->chunks = chunks;
	m->n_values = 1000;
	m->values = values;
	m->text = text;
	m->n_parts = 3;
	m->parts = pp;
}

static void build_legacy(Dg__Test__Wire2__Legacy *m)
{
	static Dg__Test__Wire2__Legacy next;
	static int32_t unpacked[] = {1, -1, 1000}, packed[] = {5, 6};
	static uint8_t blob[] = {0};

	dg__test__wire2__legacy__init(m);
	dg__test__wire2__legacy__init(&next);
	next.id = 43;
	next.note = "n";
	m->id = 42;
	m->has_kind = 1;
	m->kind = DG__TEST__WIRE2__LEGACY__KIND__A;
	m->has_delta = 1; /* present though zero */
	m->delta = 0;
	m->n_unpacked = 3;
	m->unpacked = unpacked;
	m->n_packed = 2;
	m->packed = packed;
	m->has_blob = 1;
	m->blob.data = blob;
	m->blob.len = 1;
	m->next = &next;
}

static Dg__Test__Wire__Choices__TagsEntry *
tag(Dg__Test__Wire__Choices__TagsEntry *e, char *key, int32_t value)
{
	dg__test__wire__choices__tags_entry__init(e);
	e->key = key;
	e->value = value;
	return e;
}

/* What Merged sends: A. What it gets back: A then B, merged. */
static void build_merge_a(Dg__Test__Wire__Choices *m)
{
	static Dg__Test__Wire__Inner nested;
	static int32_t seq[] = {1, 2};
	static Dg__Test__Wire__Choices__TagsEntry t[1], *tp[1];

	dg__test__wire__choices__init(m);
	m->pick_case = DG__TEST__WIRE__CHOICES__PICK_I32;
	m->i32 = 5;
	m->nested = inner(&nested, "a", 1, NULL);
	m->n_seq = 2;
	m->seq = seq;
	tp[0] = tag(&t[0], "k", 1);
	m->n_tags = 1;
	m->tags = tp;
}

/*
 * B is {str: "s", nested {n: 2, child {name: "c"}}, seq [3], tags {k: 2,
 * m: 3}}. Merged: the oneof's last member, the messages merged, the lists
 * concatenated; the map key k twice, as protobuf-c keeps entries (Python
 * keeps the last).
 */
static void build_merged(Dg__Test__Wire__Choices *m)
{
	static Dg__Test__Wire__Inner nested, child;
	static int32_t seq[] = {1, 2, 3};
	static Dg__Test__Wire__Choices__TagsEntry t[3], *tp[3];

	dg__test__wire__choices__init(m);
	m->pick_case = DG__TEST__WIRE__CHOICES__PICK_STR;
	m->str = "s";
	m->nested = inner(&nested, "a", 2, inner(&child, "c", 0, NULL));
	m->n_seq = 3;
	m->seq = seq;
	tp[0] = tag(&t[0], "k", 1);
	tp[1] = tag(&t[1], "k", 2);
	tp[2] = tag(&t[2], "m", 3);
	m->n_tags = 3;
	m->tags = tp;
}

/* ---- the calls, through the generated stubs ------------------------------ */

static void run(struct dg_flow *f, int conn)
{
	const int ms = 10000;
	int rc;

	{
		Dg__Test__Wire__Scalars m, *out = NULL;

		build_scalars(&m);
		rc = dg__test__wire__wire__echo_scalars_sync(f, conn, &m, &out,
							     ms);
		check("EchoScalars", rc, &m.base,
		      (const ProtobufCMessage *)out);
	}
	{
		Dg__Test__Wire__Collections m, *out = NULL;

		build_collections(&m);
		rc = dg__test__wire__wire__echo_collections_sync(f, conn, &m,
								 &out, ms);
		check("EchoCollections", rc, &m.base,
		      (const ProtobufCMessage *)out);
	}
	{
		Dg__Test__Wire__Choices m, *out = NULL;

		build_choices(&m);
		rc = dg__test__wire__wire__echo_choices_sync(f, conn, &m, &out,
							     ms);
		check("EchoChoices", rc, &m.base,
		      (const ProtobufCMessage *)out);
	}
	{
		Dg__Test__Wire__Optionals m, *out = NULL;

		build_optionals(&m);
		rc = dg__test__wire__wire__echo_optionals_sync(f, conn, &m,
							       &out, ms);
		check("EchoOptionals", rc, &m.base,
		      (const ProtobufCMessage *)out);
		if (!rc &&
		    (out->_i32_case != DG__TEST__WIRE__OPTIONALS___I32_I32 ||
		     out->_u64_case != DG__TEST__WIRE__OPTIONALS___U64_U64))
			fail("EchoOptionals: a field set to zero arrived "
			     "unset");
	}
	{
		Dg__Test__Wire__Optionals m, *out = NULL;

		build_unset(&m);
		rc = dg__test__wire__wire__echo_unset_sync(f, conn, &m, &out,
							   ms);
		check("EchoUnset", rc, &m.base, (const ProtobufCMessage *)out);
		if (!rc && (out->_i32_case || out->_str_case ||
			    out->_inner_case || out->_b_case))
			fail("EchoUnset: an unset field arrived set");
	}
	{
		Dg__Test__Wire__Known m, *out = NULL;

		build_known(&m);
		rc = dg__test__wire__wire__echo_known_sync(f, conn, &m, &out,
							   ms);
		check("EchoKnown", rc, &m.base, (const ProtobufCMessage *)out);
	}
	{
		Dg__Test__Wire__Big m, *out = NULL;

		build_big(&m);
		rc = dg__test__wire__wire__echo_big_sync(f, conn, &m, &out, ms);
		check("EchoBig", rc, &m.base, (const ProtobufCMessage *)out);
	}
	{
		Dg__Test__Wire2__Legacy m, *out = NULL;

		build_legacy(&m);
		rc = dg__test__wire__wire__echo_legacy_sync(f, conn, &m, &out,
							    ms);
		check("EchoLegacy", rc, &m.base, (const ProtobufCMessage *)out);
		if (!rc && (!out->has_delta || out->has_ratio ||
			    strcmp(out->absent, "d")))
			fail("EchoLegacy: presence or defaults lost");
	}
	{
		Google__Protobuf__Empty m, *out = NULL;

		google__protobuf__empty__init(&m);
		rc = dg__test__wire__wire__nothing_sync(f, conn, &m, &out, ms);
		check("Nothing", rc, &m.base, (const ProtobufCMessage *)out);
	}
	{
		Dg__Test__Wire__Choices m, want, *out = NULL;

		build_merge_a(&m);
		if (mode == RESPONSES)
			build_merged(&want);
		else
			want = m;
		rc = dg__test__wire__wire__merged_sync(f, conn, &m, &out, ms);
		check("Merged", rc, &want.base, (const ProtobufCMessage *)out);
	}
}

static void *engine_main(void *arg)
{
	dg_nic_run(arg);
	return NULL;
}

static struct dg_host *attach(struct dg_nic *nic)
{
	struct dg_host_opts o = {.attach_local = dg_nic_attach_cb,
				 .detach_local = dg_nic_detach_cb,
				 .local_arg = nic,
				 .nflows = 1,
				 .slots = 2048};
	struct dg_host *h = NULL;
	int rc = dg_host_attach(&o, &h);

	if (rc) {
		fprintf(stderr, "test_pb_wire: attach: %s\n", strerror(-rc));
		exit(1);
	}
	return h;
}

int main(int argc, char **argv)
{
	struct dg_handler handlers[NMETHODS];
	struct dg_service_def svc = {.name = DG__TEST__WIRE__WIRE__SERVICE,
				     .handlers = handlers,
				     .nhandlers = NMETHODS};
	struct dg_host *srv, *cli;
	struct dg_server *server;
	struct dg_nic *nic;
	pthread_t thr;
	size_t i;
	int conn;

	if (argc != 3 ||
	    (strcmp(argv[1], "requests") && strcmp(argv[1], "responses"))) {
		fprintf(stderr, "usage: test_pb_wire requests|responses DIR\n");
		return 2;
	}
	mode = strcmp(argv[1], "requests") ? RESPONSES : REQUESTS;
	dir = argv[2];
	for (i = 0; i < sizeof(all_bytes); i++)
		all_bytes[i] = (uint8_t)i;
	for (i = 0; i < NMETHODS; i++)
		handlers[i] = (struct dg_handler){methods[i].fn, serve};

	if (dg_nic_create(NULL, &nic) ||
	    pthread_create(&thr, NULL, engine_main, nic)) {
		fprintf(stderr, "test_pb_wire: no engine\n");
		return 1;
	}
	srv = attach(nic);
	cli = attach(nic);
	if (dg_server_start(srv, &svc, 0, 1, &server)) {
		fprintf(stderr, "test_pb_wire: no server\n");
		return 1;
	}
	conn = dg_connect(dg_host_flow(cli, 0), NULL, 0,
			  DG__TEST__WIRE__WIRE__SERVICE, 5000);
	if (conn < 0) {
		fprintf(stderr, "test_pb_wire: connect: %s\n", strerror(-conn));
		return 1;
	}
	run(dg_host_flow(cli, 0), conn);
	dg_server_stop(server);
	dg_host_detach(cli);
	dg_host_detach(srv);
	dg_nic_stop(nic);
	pthread_join(thr, NULL);
	dg_nic_destroy(nic);
	printf("test_pb_wire %s: %d failure(s)\n", argv[1], failures);
	return failures ? 1 : 0;
}
