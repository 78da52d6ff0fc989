// SPDX-License-Identifier: MIT
/*
 * pb.c - libdagger-pb: protobuf-c messages over libdagger flows, without
 * malloc per RPC (encode into the TX frames, decode into the flow arena).
 */
#include "dagger/pb.h"

#include <errno.h>
#include <stdbool.h>
#include <sched.h>
#include <string.h>
#include <time.h>

static uint64_t now_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

struct arena {
	ProtobufCAllocator a;
	struct dg_flow *f;
	int nomem;
};

static void *arena_alloc(void *data, size_t n)
{
	struct arena *ar = data;
	void *p = dg_flow_alloc(ar->f, n);

	if (!p)
		ar->nomem = 1;
	return p;
}

static void *flow_alloc(void *data, size_t n)
{
	return dg_flow_alloc(data, n);
}

/* Arena memory goes away as a whole (next dg_poll, next request). */
static void arena_free(void *data, void *p)
{
	(void)data;
	(void)p;
}

void dg_pb_allocator(struct dg_flow *f, ProtobufCAllocator *a)
{
	a->alloc = flow_alloc;
	a->free = arena_free;
	a->allocator_data = f;
}

int dg_pb_unpack(struct dg_flow *f, const ProtobufCMessageDescriptor *d,
		 const void *data, size_t len, ProtobufCMessage **out)
{
	struct arena ar = {.a = {.alloc = arena_alloc, .free = arena_free},
			   .f = f};

	ar.a.allocator_data = &ar;
	if (!d || !out || (len && !data))
		return -EINVAL;
	*out = protobuf_c_message_unpack(d, &ar.a, len, data);
	if (*out)
		return 0;
	return ar.nomem ? -ENOMEM : -EBADMSG;
}

/* Scatters protobuf-c's appends over the reserved frames' payloads. */
struct scatter {
	ProtobufCBuffer b;
	struct dg_writer *w;
};

static void scatter_append(ProtobufCBuffer *b, size_t len, const uint8_t *data)
{
	dg_writer_put(((struct scatter *)b)->w, data, len);
}

struct fill_arg {
	const ProtobufCMessage *m;
	size_t len;
};

static int fill(void *arg, struct dg_writer *w)
{
	const struct fill_arg *a = arg;
	struct scatter sc = {.b = {.append = scatter_append}, .w = w};
	void *p;

	/* Fits one frame: encode in place, contiguously (the common case). */
	p = dg_writer_room(w, a->len);
	if (p) {
		protobuf_c_message_pack(a->m, p);
		return 0;
	}
	protobuf_c_message_pack_to_buffer(a->m, &sc.b);
	return 0;
}

static int pb_call(struct dg_flow *f, int conn, uint16_t fn, bool keyed,
		   uint32_t key, const ProtobufCMessage *m, uint32_t *rpc_id)
{
	struct fill_arg a = {.m = m};

	if (!m)
		return -EINVAL;
	a.len = protobuf_c_message_get_packed_size(m);
	if (a.len > DG_MAX_MSG)
		return -EMSGSIZE;
	if (keyed)
		return dg_call_fill_key(f, conn, fn, key, a.len, fill, &a,
					rpc_id);
	return dg_call_fill(f, conn, fn, a.len, fill, &a, rpc_id);
}

int dg_pb_call(struct dg_flow *f, int conn, uint16_t fn,
	       const ProtobufCMessage *m, uint32_t *rpc_id)
{
	return pb_call(f, conn, fn, false, 0, m, rpc_id);
}

int dg_pb_call_key(struct dg_flow *f, int conn, uint16_t fn, uint32_t key,
		   const ProtobufCMessage *m, uint32_t *rpc_id)
{
	return pb_call(f, conn, fn, true, key, m, rpc_id);
}

int dg_pb_take(struct dg_flow *f, const struct dg_completion *c,
	       const ProtobufCMessageDescriptor *d, ProtobufCMessage **out)
{
	if (c->status)
		return c->status;
	return dg_pb_unpack(f, d, c->data, c->len, out);
}

static int pb_call_sync(struct dg_flow *f, int conn, uint16_t fn, bool keyed,
			uint32_t key, const ProtobufCMessage *m,
			const ProtobufCMessageDescriptor *d,
			ProtobufCMessage **out, int timeout_ms)
{
	struct dg_completion c;
	uint32_t id;
	int rc;

	uint64_t t0 = 0, spins = 0;

	if (timeout_ms <= 0)
		timeout_ms = 10000;
	/*
	 * TX ring full (the engine has not taken earlier frames yet): poll
	 * and retry, within the timeout.
	 */
	while ((rc = pb_call(f, conn, fn, keyed, key, m, &id)) == -EAGAIN) {
		rc = dg_poll(f, &c, 1);
		if (rc < 0)
			return rc;
		if ((++spins & 1023) == 0) {
			uint64_t t = now_ms();

			if (!t0)
				t0 = t;
			else if (t - t0 > (uint64_t)timeout_ms)
				return -ETIMEDOUT;
			sched_yield();
		}
	}
	if (rc)
		return rc;
	rc = dg_wait(f, id, &c, timeout_ms);
	if (rc)
		return rc;
	return dg_pb_take(f, &c, d, out);
}

int dg_pb_call_sync(struct dg_flow *f, int conn, uint16_t fn,
		    const ProtobufCMessage *m,
		    const ProtobufCMessageDescriptor *d, ProtobufCMessage **out,
		    int timeout_ms)
{
	return pb_call_sync(f, conn, fn, false, 0, m, d, out, timeout_ms);
}

int dg_pb_call_sync_key(struct dg_flow *f, int conn, uint16_t fn, uint32_t key,
			const ProtobufCMessage *m,
			const ProtobufCMessageDescriptor *d,
			ProtobufCMessage **out, int timeout_ms)
{
	return pb_call_sync(f, conn, fn, true, key, m, d, out, timeout_ms);
}

int dg_pb_respond(const ProtobufCMessage *m, struct dg_response *r)
{
	size_t len = protobuf_c_message_get_packed_size(m);

	r->len = 0;
	if (len > r->cap)
		return DG_ST_TOO_BIG;
	r->len = (uint32_t)protobuf_c_message_pack(m, r->data);
	return 0;
}
