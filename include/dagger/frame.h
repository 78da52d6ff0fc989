/* SPDX-License-Identifier: MIT */
/*
 * dagger/frame.h - the ring and frame contract between host/ and nic/.
 *
 * This header is the only definition of what lives in host memory. The host
 * library writes it with ordinary stores; the NIC engine reaches it only
 * through one-sided RDMA READ and WRITE (or, with the local backend, through
 * shared memory). docs/ARCHITECTURE.md gives the ordering argument in full;
 * the short form is next to each field.
 *
 * Frames. One 64-byte slot (a cache line) per frame. A message (request,
 * response or control message) of n payload bytes spans dg_frames_for(n)
 * consecutive slots of one flow's ring: a first frame (struct dg_frame: a
 * 32-byte header and the first 32 payload bytes) and, for n > 32,
 * continuation frames (struct dg_frame_cont: 56 more payload bytes, then a
 * checksum and a stamp). Only the first frame carries a header: the message
 * is whole when its cnt slots are all valid for their positions.
 *
 * A first frame's payload ends its slot and a continuation frame's begins
 * its slot, so a message of up to 88 bytes (two frames) whose slots do not
 * wrap around the ring's end is one contiguous run of bytes: it is written
 * with one copy and read in place (dg_msg_contig).
 *
 * Stamps. A slot is valid for the consumer's position p (a free-running
 * 32-bit counter) when its stamp equals dg_stamp(p) = p + 1. A slot still
 * holding the previous lap has stamp p + 1 - ring_size, and zeroed memory
 * has 0: neither can be mistaken for a new frame.
 *
 * Large messages. A message whose payload travels outside the ring
 * (DG_FF_PAY) is one first frame whose data holds a struct dg_pay_desc: the
 * payload's position in a payload area of the same region (the sender's
 * TX payload area in its TX ring, the receiver's RX payload area in its RX
 * ring). Its bytes are in place before the frame is published, and stay
 * until the frame's consumer released them: TX payload bytes by pay_head
 * (the engine's control line), RX payload bytes with the RX slot of their
 * frame (rx_head). docs/ARCHITECTURE.md, "Large messages".
 *
 * Checksums. On rings reached by RDMA (DG_RING_F_CSUM), every slot carries
 * CRC32C over its stamp and its other 56 bytes (bytes 8..63 of a first
 * frame, 0..55 of a continuation frame). A remote READ can overlap
 * the host's stores and a remote WRITE can land in any order; the checksum
 * makes a half-written slot look "not yet written" whatever order the bytes
 * move in, so the poller simply retries it. With shared memory (no flag)
 * the stamp alone suffices: it is stored last with release semantics and
 * loaded first with acquire semantics.
 */
#ifndef DAGGER_FRAME_H
#define DAGGER_FRAME_H

#include <assert.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define DG_SLOT_SIZE	 64u
#define DG_FRAME_HDR	 32u
#define DG_FRAME_PAYLOAD (DG_SLOT_SIZE - DG_FRAME_HDR)	  /* 32 bytes */
#define DG_CONT_TRAILER	 8u				  /* csum, stamp */
#define DG_CONT_PAYLOAD	 (DG_SLOT_SIZE - DG_CONT_TRAILER) /* 56 bytes */
/* Largest RPC payload (request or response). */
#define DG_MAX_MSG	 (8u * 1024u * 1024u)
/* Largest message carried in ring frames; larger ones go out of the ring. */
#define DG_MAX_INLINE	 (64u * 1024u)
#define DG_MAX_FRAMES                                                          \
	(1u + (DG_MAX_INLINE - DG_FRAME_PAYLOAD + DG_CONT_PAYLOAD - 1) /       \
		      DG_CONT_PAYLOAD)

/* frame.flags */
enum dg_frame_flags {
	DG_FF_REQ = 1u << 0,  /* request (client -> server) */
	DG_FF_RESP = 1u << 1, /* response (server -> client) */
	DG_FF_CTRL = 1u << 2, /* engine <-> host control (no RPC) */
	DG_FF_KEY = 1u << 3,  /* request: key carries a load-balancing key */
	/*
	 * A sampled RPC whose hops the engines time (dg_call_traced,
	 * dagger-bench --trace): on a request and on its response.
	 */
	DG_FF_TRACE = 1u << 4,
	/*
	 * A request or response whose len payload bytes lie in a payload
	 * area, not in the ring: a one-frame message whose data holds a
	 * struct dg_pay_desc.
	 */
	DG_FF_PAY = 1u << 5,
};
#define DG_FF_KIND (DG_FF_REQ | DG_FF_RESP | DG_FF_CTRL)

/*
 * frame.status: carried by responses. Values above DG_ST_APP_BASE are
 * application errors returned by handlers; the rest are the stack's own.
 */
enum dg_status {
	DG_ST_OK = 0,
	DG_ST_NO_SERVICE = 1,  /* the connection names no registered service */
	DG_ST_NO_FUNCTION = 2, /* the service has no handler for fn_id */
	DG_ST_BUSY = 3,	       /* the server's ring had no room */
	DG_ST_UNREACHABLE = 4, /* the peer engine or server tenant is gone */
	DG_ST_BAD_FRAME = 5,   /* a frame failed validation */
	DG_ST_TOO_BIG = 6,     /* larger than the receiver takes (ring, area) */
	DG_ST_NO_CONN = 7,     /* unknown or closed connection id */
	DG_ST_QUOTA = 8,       /* the tenant holds its share already */
	/*
	 * The call ran, but its answer was discarded: the caller's RX ring
	 * stayed full for longer than the engine holds an answer
	 * (dg_nic_opts.hold_us), so it did not read while others waited.
	 */
	DG_ST_DROPPED = 9,
	/*
	 * REGISTER refused: another tenant serves the service, and the
	 * registrant neither shares its identity (the same process, or the
	 * same user of a shared-memory tenant) nor knows its secret.
	 */
	DG_ST_DENIED = 10,
	DG_ST_APP_BASE = 64,
};

/*
 * Connection ids. A connection id names an entry of the engine's
 * connection table (its low 16 bits) and that entry's generation (bits
 * 16..30), so an id that was closed and reused elsewhere never matches
 * again. Ids are non-negative ints for the host API.
 */
#define DG_CONN_IDX(c) ((c)&0xffffu)
#define DG_CONN_GEN(c) (((c) >> 16) & 0x7fffu)
#define DG_CONN_ID(idx, gen)                                                   \
	((uint32_t)(idx) | ((uint32_t)((gen)&0x7fffu) << 16))

/* The first frame of a message. */
struct dg_frame {
	/*
	 * Offset 0, the producer's last store (release) and the consumer's
	 * first load (acquire). Under a front-to-back copy a remote READ also
	 * sees it first; the checksum covers every other order.
	 */
	uint32_t stamp;
	uint32_t csum;	 /* CRC32C(stamp, bytes 8..63); unused without CSUM */
	uint32_t rpc_id; /* chosen by the client flow, echoed in responses */
	uint32_t conn; /* connection id (DG_CONN_ID) at the receiver's engine */
	uint32_t len;  /* payload bytes: 0..DG_MAX_INLINE,
			  DG_FF_PAY: 1..DG_MAX_MSG */
	uint16_t fn_id; /* function within the service */
	uint16_t cnt;	/* slots of the message: dg_frames_for(len) */
	uint8_t flags;	/* enum dg_frame_flags */
	uint8_t status; /* enum dg_status (responses) */
	uint8_t flow;	/* engine-set: the host flow that sent/receives it */
	uint8_t rsvd;
	uint32_t key; /* DG_FF_KEY: the load-balancing key of a request */
	uint8_t data[DG_FRAME_PAYLOAD];
};

/*
 * Every further slot of a message: the payload first (it continues the
 * previous slot's), then the checksum (CRC32C(stamp, bytes 0..55)) and the
 * stamp, the producer's last store (release) and the consumer's first load
 * (acquire), as in struct dg_frame. Under a front-to-back copy a remote
 * WRITE also lands it last; the checksum covers every other order.
 */
struct dg_frame_cont {
	uint8_t data[DG_CONT_PAYLOAD];
	uint32_t csum;
	uint32_t stamp;
};

static_assert(sizeof(struct dg_frame) == DG_SLOT_SIZE, "one cache line");
static_assert(sizeof(struct dg_frame_cont) == DG_SLOT_SIZE, "one line");
static_assert(offsetof(struct dg_frame, stamp) == 0, "stamp first");
static_assert(offsetof(struct dg_frame, csum) == 4, "csum");
static_assert(offsetof(struct dg_frame, rpc_id) == 8, "rpc_id");
static_assert(offsetof(struct dg_frame, conn) == 12, "conn");
static_assert(offsetof(struct dg_frame, len) == 16, "len");
static_assert(offsetof(struct dg_frame, fn_id) == 20, "fn_id");
static_assert(offsetof(struct dg_frame, cnt) == 22, "cnt");
static_assert(offsetof(struct dg_frame, flags) == 24, "flags");
static_assert(offsetof(struct dg_frame, status) == 25, "status");
static_assert(offsetof(struct dg_frame, flow) == 26, "flow");
static_assert(offsetof(struct dg_frame, key) == 28, "key");
static_assert(offsetof(struct dg_frame, data) == DG_FRAME_HDR, "data");
static_assert(offsetof(struct dg_frame_cont, data) == 0, "data first");
static_assert(offsetof(struct dg_frame_cont, csum) == DG_CONT_PAYLOAD, "csum");
static_assert(offsetof(struct dg_frame_cont, stamp) == DG_SLOT_SIZE - 4,
	      "stamp last");
static_assert(DG_MAX_FRAMES <= UINT16_MAX, "cnt fits 16 bits");

/*
 * What a DG_FF_PAY frame carries in its data: where the payload is. In a
 * host's rings, pos is a free-running byte position in a payload area of
 * the flow (the sender's TX area, the receiver's RX area) whose offset is
 * pos & (area - 1); the len bytes from there lie inside the area (a
 * payload never wraps around its end). Between engines (peer links), pos
 * is the byte offset in the sending engine's send area.
 */
struct dg_pay_desc {
	uint32_t pos;
	uint32_t rsvd[7];
};

static_assert(sizeof(struct dg_pay_desc) == DG_FRAME_PAYLOAD, "frame data");
static_assert(DG_MAX_MSG <= UINT32_MAX / 2, "positions wrap safely");
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "frames are little-endian: the host and the engine store words whole"
#endif

static inline uint32_t dg_stamp(uint32_t pos)
{
	return pos + 1u;
}

/* Slots a message of len payload bytes takes (1..DG_MAX_FRAMES for len up
 * to DG_MAX_MSG; no wrap near UINT32_MAX). */
static inline uint32_t dg_frames_for(uint32_t len)
{
	return len <= DG_FRAME_PAYLOAD
		       ? 1u
		       : (len - DG_FRAME_PAYLOAD - 1) / DG_CONT_PAYLOAD + 2u;
}

/*
 * Whether the two-frame message whose first frame is at ring position pos
 * (of a ring of mask + 1 slots) lies in one piece: its payload is then the
 * len bytes from the first frame's data on.
 */
static inline int dg_msg_contig(uint32_t pos, uint32_t mask)
{
	return (pos & mask) != mask;
}

/*
 * Host memory region. One registered region per attached host holds a
 * header, per-flow control lines, per-flow rings and per-flow payload
 * areas, laid out by dg_region_layout_pay() from (nflows, slots,
 * pay_shift) so both sides agree:
 *
 *   [dg_region_hdr][flow 0 ctrl][flow 1 ctrl]...[flow 0 TX][flow 0 RX]...
 *   (next page) [flow 0 TX payload][flow 0 RX payload][flow 1 ...]...
 *
 * The part before the payload areas (pay_off bytes) is what an RDMA
 * engine keeps a copy of; payload areas are reached only by payload
 * transfers. pay_shift 0: no payload areas (every message inline).
 */
#define DG_REGION_MAGIC	  0x44474731u /* "DGG1" */
#define DG_REGION_VERSION 4u
#define DG_MAX_FLOWS	  64u
#define DG_MIN_SLOTS	  64u
#define DG_MAX_SLOTS	  65536u
/* Payload areas: 1 << pay_shift bytes each, 4 KiB .. 64 MiB. */
#define DG_PAY_MIN_SHIFT  12u
#define DG_PAY_MAX_SHIFT  26u

enum dg_ring_flags {
	DG_RING_F_CSUM = 1u << 0, /* slots carry CRC32C (RDMA backends) */
};

struct dg_region_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t nflows;
	uint32_t slots; /* per ring, power of two */
	uint32_t flags; /* enum dg_ring_flags */
	/*
	 * Shared memory only, written by the engine: non-zero while it sleeps
	 * (it waits on its eventfd then; a host that published frames and
	 * finds this set writes that eventfd: dg_engine_kick). See
	 * docs/ARCHITECTURE.md, "Sleeping and waking".
	 */
	uint32_t engine_sleep;
	/* In-process engines: the engine's eventfd (same process). */
	int32_t engine_fd;
	/* Each flow's two payload areas are 1 << pay_shift bytes; 0: none. */
	uint32_t pay_shift;
	uint32_t rsvd[8];
};

static_assert(sizeof(struct dg_region_hdr) == DG_SLOT_SIZE, "one line");
static_assert(offsetof(struct dg_region_hdr, engine_sleep) == 20, "sleep");
static_assert(offsetof(struct dg_region_hdr, pay_shift) == 28, "pay_shift");

/*
 * Per-flow control. Each line has one writer (engine or host), so neither
 * side's stores move a line the other keeps writing:
 *
 * line 0, the engine's:
 * tx_head: the engine consumed TX slots up to this free-running position;
 *   the host may reuse slots below it. Over RDMA the engine writes it
 *   only after its READ of those slots completed, so the host can never
 *   overwrite a slot the engine is still reading.
 * engine_epoch: written by the engine while it serves the region.
 * pay_head: the engine consumed the flow's TX payload area up to this
 *   free-running byte position; the host may reuse payload bytes below
 *   it. Over RDMA written only after the READ of those bytes completed.
 *
 * line 1, the host's (hot):
 * rx_head: the host consumed RX slots up to this position (a release
 *   store: its loads of those slots happen first); the engine reads it to
 *   learn how much RX room it has (credits).
 * host_epoch: bumped by the host library on detach.
 *
 * line 2, the host's (cold: written only on doorbells and sleeps):
 * tx_db: doorbell and push modes: the TX position the host announced (its
 *   RDMA WRITE WITH IMMEDIATE lands it in the engine's copy of this line).
 * sleep_seq: odd while the flow's thread sleeps waiting for the engine;
 *   a new value each time it sleeps. sleep_rx: the RX position it had
 *   consumed then. The engine wakes it after its next delivery.
 * host_fd: in-process hosts: the flow's eventfd (same process).
 */
struct dg_flow_ctrl {
	uint32_t tx_head;
	uint32_t engine_epoch;
	/*
	 * An operator's request (dagger-ctl set mode): sequence << 8 | enum
	 * dg_mode, written by the engine; the host switches the flow the
	 * next time it is idle with no call outstanding, once per sequence.
	 */
	uint32_t mode_req;
	uint32_t pay_head;
	uint8_t pad0[DG_SLOT_SIZE - 16];
	uint32_t rx_head;
	uint32_t host_epoch;
	uint8_t pad1[DG_SLOT_SIZE - 8];
	uint32_t tx_db;
	uint32_t sleep_seq;
	uint32_t sleep_rx;
	int32_t host_fd;
	uint8_t pad2[DG_SLOT_SIZE - 16];
};

static_assert(sizeof(struct dg_flow_ctrl) == 3 * DG_SLOT_SIZE, "three lines");
static_assert(DG_MAX_FLOWS <= 256, "a flow fits an immediate's low byte");
static_assert(offsetof(struct dg_flow_ctrl, mode_req) == 8, "mode_req");
static_assert(offsetof(struct dg_flow_ctrl, rx_head) == DG_SLOT_SIZE,
	      "rx_head on its own line");
static_assert(offsetof(struct dg_flow_ctrl, pay_head) == 12,
	      "pay_head on the engine's line, written with tx_head");
static_assert(offsetof(struct dg_flow_ctrl, tx_db) == 2 * DG_SLOT_SIZE,
	      "doorbell and sleep state on a line of their own");

/*
 * Host -> NIC interface modes of an RDMA tenant's flows (dg_host_opts.mode,
 * dg_flow_set_mode). 0 asks for the default, doorbell. Shared-memory
 * tenants are always polled in place (the engine loads the next slot's
 * stamp), whatever the mode says.
 */
enum dg_mode {
	DG_MODE_DEFAULT = 0,
	DG_MODE_POLL = 1,     /* the engine READs the TX ring; host: no verb */
	DG_MODE_DOORBELL = 2, /* host WRITEs its TX tail; engine READs it */
	DG_MODE_PUSH = 3,     /* host WRITEs the frames into the engine */
	DG_MODE_COUNT,
};

/* "poll", "doorbell", "push" -> enum dg_mode, or -EINVAL. */
static inline int dg_mode_parse(const char *s)
{
	if (!strcmp(s, "poll"))
		return DG_MODE_POLL;
	if (!strcmp(s, "doorbell"))
		return DG_MODE_DOORBELL;
	if (!strcmp(s, "push"))
		return DG_MODE_PUSH;
	return -EINVAL;
}

static inline const char *dg_mode_name(int mode)
{
	switch (mode) {
	case DG_MODE_POLL:
		return "poll";
	case DG_MODE_DEFAULT:
	case DG_MODE_DOORBELL:
		return "doorbell";
	case DG_MODE_PUSH:
		return "push";
	default:
		return "?";
	}
}

/*
 * The immediate value of a host's or an engine's WRITE WITH IMMEDIATE:
 * what it is for (DG_IMM_*) and the flow it concerns.
 */
#define DG_IMM_DOORBELL	   1u /* host -> engine: tx_db of the flow moved */
#define DG_IMM_SLEEP	   2u /* host -> engine: the flow sleeps (line 2) */
#define DG_IMM_WAKE	   3u /* engine -> host: wake the flow */
#define DG_IMM(kind, flow) ((uint32_t)(kind) << 24 | ((uint32_t)(flow)&0xffu))
#define DG_IMM_KIND(imm)   ((imm) >> 24)
#define DG_IMM_FLOW(imm)   ((imm)&0xffu)

struct dg_region_layout {
	uint64_t ctrl_off;  /* first struct dg_flow_ctrl */
	uint64_t rings_off; /* first ring */
	uint64_t ring_size; /* bytes per ring */
	uint64_t pay_off;   /* first payload area: the rings part ends here */
	uint64_t pay_size;  /* bytes per payload area, 0: none */
	uint64_t total;	    /* bytes in the region */
};

#define DG_REGION_ALIGN 4096u

static inline int dg_region_layout_pay(uint32_t nflows, uint32_t slots,
				       uint32_t pay_shift,
				       struct dg_region_layout *l)
{
	if (!nflows || nflows > DG_MAX_FLOWS || slots < DG_MIN_SLOTS ||
	    slots > DG_MAX_SLOTS || (slots & (slots - 1)) ||
	    (pay_shift &&
	     (pay_shift < DG_PAY_MIN_SHIFT || pay_shift > DG_PAY_MAX_SHIFT)))
		return -EINVAL;
	l->ctrl_off = sizeof(struct dg_region_hdr);
	l->rings_off =
		l->ctrl_off + (uint64_t)nflows * sizeof(struct dg_flow_ctrl);
	l->ring_size = (uint64_t)slots * DG_SLOT_SIZE;
	l->pay_off = l->rings_off + 2ull * nflows * l->ring_size;
	l->pay_size = pay_shift ? 1ull << pay_shift : 0;
	/* Payload areas start on a page (one READ or WRITE moves each). */
	if (pay_shift)
		l->pay_off = (l->pay_off + DG_REGION_ALIGN - 1) &
			     ~(uint64_t)(DG_REGION_ALIGN - 1);
	l->total = l->pay_off + 2ull * nflows * l->pay_size;
	return 0;
}

/* A region without payload areas (every message in ring frames). */
static inline int dg_region_layout(uint32_t nflows, uint32_t slots,
				   struct dg_region_layout *l)
{
	return dg_region_layout_pay(nflows, slots, 0, l);
}

/*
 * Bytes of a host region: the layout rounded up to whole pages. A host
 * allocates (and registers, or maps) exactly this; an engine takes an
 * attach only with this length.
 */
static inline uint64_t dg_region_bytes(const struct dg_region_layout *l)
{
	return (l->total + DG_REGION_ALIGN - 1) &
	       ~(uint64_t)(DG_REGION_ALIGN - 1);
}

static inline uint64_t dg_ctrl_off(const struct dg_region_layout *l,
				   uint32_t flow)
{
	return l->ctrl_off + (uint64_t)flow * sizeof(struct dg_flow_ctrl);
}

static inline uint64_t dg_tx_ring_off(const struct dg_region_layout *l,
				      uint32_t flow)
{
	return l->rings_off + 2ull * flow * l->ring_size;
}

static inline uint64_t dg_rx_ring_off(const struct dg_region_layout *l,
				      uint32_t flow)
{
	return dg_tx_ring_off(l, flow) + l->ring_size;
}

/* A flow's TX payload area (the host writes, the engine reads). */
static inline uint64_t dg_pay_tx_off(const struct dg_region_layout *l,
				     uint32_t flow)
{
	return l->pay_off + 2ull * flow * l->pay_size;
}

/* A flow's RX payload area (the engine writes, the host reads). */
static inline uint64_t dg_pay_rx_off(const struct dg_region_layout *l,
				     uint32_t flow)
{
	return dg_pay_tx_off(l, flow) + l->pay_size;
}

/*
 * Whether a payload of len bytes at free-running position pos lies inside
 * a payload area of size bytes (a power of two) without wrapping: what
 * both sides check of every descriptor they are handed.
 */
static inline int dg_pay_fits(uint32_t pos, uint32_t len, uint64_t size)
{
	return size && len && len <= DG_MAX_MSG && len <= size &&
	       (pos & (size - 1)) <= size - len;
}

#endif /* DAGGER_FRAME_H */
