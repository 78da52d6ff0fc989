/* SPDX-License-Identifier: MIT */
/*
 * dagger/pb.h - libdagger-pb: protobuf-c messages over libdagger flows.
 *
 * What the stubs dagger-idlc generates are built on; applications call the
 * typed stubs rather than these. No malloc on the per-RPC path: requests
 * are encoded straight into their TX frames (dg_call_fill), and messages
 * are decoded into the flow's arena (dg_flow_alloc), so a decoded message
 * lives as long as the completion it came from: until the next dg_poll()
 * on that flow, or until a handler returns.
 *
 * Returns: 0; a positive status (enum dg_status, or an application status
 * >= DG_ST_APP_BASE) the server answered with; or a negative errno:
 * -EBADMSG (the bytes are not a valid encoding of the expected message),
 * -ENOMEM (the flow's arena is used up), and those of dg_call/dg_wait.
 */
#ifndef DAGGER_PB_H
#define DAGGER_PB_H

#include <protobuf-c/protobuf-c.h>

#include "dagger/dagger.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An allocator drawing on dg_flow_alloc(f); its free is a no-op. */
void dg_pb_allocator(struct dg_flow *f, ProtobufCAllocator *a);

/* Encodes m into the request's TX frames and queues it (see dg_call). */
int dg_pb_call(struct dg_flow *f, int conn, uint16_t fn,
	       const ProtobufCMessage *m, uint32_t *rpc_id);

/*
 * The same with a load-balancing key (dg_call_key): what the stubs of a
 * method whose request names its key field (docs: "dagger: key=FIELD")
 * call, with dg_key_hash() of that field.
 */
int dg_pb_call_key(struct dg_flow *f, int conn, uint16_t fn, uint32_t key,
		   const ProtobufCMessage *m, uint32_t *rpc_id);
int dg_pb_call_sync_key(struct dg_flow *f, int conn, uint16_t fn, uint32_t key,
			const ProtobufCMessage *m,
			const ProtobufCMessageDescriptor *d,
			ProtobufCMessage **out, int timeout_ms);

/* Decodes a completion's response as a message of type d into *out. */
int dg_pb_take(struct dg_flow *f, const struct dg_completion *c,
	       const ProtobufCMessageDescriptor *d, ProtobufCMessage **out);

/* dg_pb_call, dg_wait and dg_pb_take: the flow has no other calls out. */
int dg_pb_call_sync(struct dg_flow *f, int conn, uint16_t fn,
		    const ProtobufCMessage *m,
		    const ProtobufCMessageDescriptor *d, ProtobufCMessage **out,
		    int timeout_ms);

/* Decodes len bytes as a message of type d, into f's arena. */
int dg_pb_unpack(struct dg_flow *f, const ProtobufCMessageDescriptor *d,
		 const void *data, size_t len, ProtobufCMessage **out);

/*
 * Server side: encodes m as the response. 0, or DG_ST_TOO_BIG when it
 * does not fit r->cap (the caller gets that status).
 */
int dg_pb_respond(const ProtobufCMessage *m, struct dg_response *r);

#ifdef __cplusplus
}
#endif
#endif /* DAGGER_PB_H */
