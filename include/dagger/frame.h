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
 * Frames. One 64-byte slot (a cache line) per frame. An RPC of n payload
 * bytes spans max(1, ceil(n / DG_FRAME_PAYLOAD)) consecutive frames of one
 * flow's ring, all carrying the same rpc id, each with its index.
 *
 * Stamps. A slot is valid for the consumer's position p (a free-running
 * 32-bit counter) when its stamp equals dg_stamp(p) = p + 1. A slot still
 * holding the previous lap has stamp p + 1 - ring_size, and zeroed memory
 * has 0: neither can be mistaken for a new frame.
 *
 * Checksums. On rings reached by RDMA (DG_RING_F_CSUM), every slot carries
 * CRC32C over the stamp and bytes 8..63. A remote READ can overlap
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

#define DG_SLOT_SIZE	 64u
#define DG_FRAME_HDR	 24u
#define DG_FRAME_PAYLOAD (DG_SLOT_SIZE - DG_FRAME_HDR) /* 40 bytes */
/* Largest RPC payload (request or response). */
#define DG_MAX_MSG	 (64u * 1024u)
#define DG_MAX_FRAMES	 ((DG_MAX_MSG + DG_FRAME_PAYLOAD - 1) / DG_FRAME_PAYLOAD)

/* frame.flags */
enum dg_frame_flags {
	DG_FF_REQ = 1u << 0,  /* request (client -> server) */
	DG_FF_RESP = 1u << 1, /* response (server -> client) */
	DG_FF_CTRL = 1u << 2, /* engine <-> host control (no RPC) */
};

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
	DG_ST_TOO_BIG = 6,     /* larger than DG_MAX_MSG or the ring */
	DG_ST_NO_CONN = 7,     /* unknown or closed connection id */
	DG_ST_APP_BASE = 64,
};

struct dg_frame {
	/*
	 * Offset 0, the producer's last store (release) and the consumer's
	 * first load (acquire). Under a front-to-back copy a remote READ also
	 * sees it first; the checksum covers every other order.
	 */
	uint32_t stamp;
	uint32_t csum;	  /* CRC32C(stamp, bytes 8..63); 0 without CSUM */
	uint32_t rpc_id;  /* chosen by the client flow, echoed in responses */
	uint16_t conn_id; /* client's connection id at its own engine */
	uint16_t fn_id;	  /* function within the service */
	uint16_t idx;	  /* frame index within the RPC, 0..cnt-1 */
	uint16_t cnt;	  /* frames in the RPC, 1..DG_MAX_FRAMES */
	uint8_t len;	  /* payload bytes in this frame, 0..40 */
	uint8_t flags;	  /* enum dg_frame_flags */
	uint8_t status;	  /* enum dg_status (responses) */
	uint8_t src_flow; /* engine-set: the host flow that sent/receives it */
	uint8_t data[DG_FRAME_PAYLOAD];
};

static_assert(sizeof(struct dg_frame) == DG_SLOT_SIZE, "one cache line");
static_assert(offsetof(struct dg_frame, stamp) == 0, "stamp first");
static_assert(offsetof(struct dg_frame, csum) == 4, "csum");
static_assert(offsetof(struct dg_frame, rpc_id) == 8, "rpc_id");
static_assert(offsetof(struct dg_frame, conn_id) == 12, "conn_id");
static_assert(offsetof(struct dg_frame, fn_id) == 14, "fn_id");
static_assert(offsetof(struct dg_frame, idx) == 16, "idx");
static_assert(offsetof(struct dg_frame, cnt) == 18, "cnt");
static_assert(offsetof(struct dg_frame, len) == 20, "len");
static_assert(offsetof(struct dg_frame, flags) == 21, "flags");
static_assert(offsetof(struct dg_frame, status) == 22, "status");
static_assert(offsetof(struct dg_frame, data) == DG_FRAME_HDR, "data");
static_assert(DG_MAX_FRAMES <= UINT16_MAX, "cnt fits 16 bits");

static inline uint32_t dg_stamp(uint32_t pos)
{
	return pos + 1u;
}

static inline uint32_t dg_frames_for(uint32_t len)
{
	/* (len - 1) / n + 1, not (len + n - 1) / n: no wrap near UINT32_MAX */
	return len ? (len - 1) / DG_FRAME_PAYLOAD + 1 : 1u;
}

/*
 * Host memory region. One registered region per attached host holds a
 * header, per-flow control lines and per-flow rings, laid out by
 * dg_region_layout() from (nflows, slots) so both sides agree:
 *
 *   [dg_region_hdr][flow 0 ctrl][flow 1 ctrl]...[flow 0 TX][flow 0 RX]...
 */
#define DG_REGION_MAGIC	  0x44474731u /* "DGG1" */
#define DG_REGION_VERSION 1u
#define DG_MAX_FLOWS	  64u
#define DG_MIN_SLOTS	  64u
#define DG_MAX_SLOTS	  65536u

enum dg_ring_flags {
	DG_RING_F_CSUM = 1u << 0, /* slots carry CRC32C (RDMA backends) */
};

struct dg_region_hdr {
	uint32_t magic;
	uint32_t version;
	uint32_t nflows;
	uint32_t slots; /* per ring, power of two */
	uint32_t flags; /* enum dg_ring_flags */
	uint32_t rsvd[11];
};

static_assert(sizeof(struct dg_region_hdr) == DG_SLOT_SIZE, "one line");

/*
 * Per-flow control. Each index has its own cache line: its single writer
 * (engine or host) must not share a line with what the other side writes.
 *
 * tx_head: written by the engine (RDMA WRITE) after it consumed TX slots up
 *   to this free-running position; the host may reuse slots below it. The
 *   engine writes it only after its READ of those slots completed, so the
 *   host can never overwrite a slot the engine is still reading.
 * rx_head: written by the host after it consumed RX slots up to this
 *   position (a release store: its loads of those slots happen first); the
 *   engine READs it to learn how much RX room it has (credits).
 * host_epoch: bumped by the host library on detach so a late engine can
 *   tell; engine_epoch: written by the engine while it serves the region.
 */
struct dg_flow_ctrl {
	uint32_t tx_head;
	uint32_t engine_epoch;
	uint8_t pad0[DG_SLOT_SIZE - 8];
	uint32_t rx_head;
	uint32_t host_epoch;
	uint8_t pad1[DG_SLOT_SIZE - 8];
};

static_assert(sizeof(struct dg_flow_ctrl) == 2 * DG_SLOT_SIZE, "two lines");
static_assert(offsetof(struct dg_flow_ctrl, rx_head) == DG_SLOT_SIZE,
	      "rx_head on its own line");

struct dg_region_layout {
	uint64_t ctrl_off;  /* first struct dg_flow_ctrl */
	uint64_t rings_off; /* first ring */
	uint64_t ring_size; /* bytes per ring */
	uint64_t total;	    /* bytes in the region */
};

static inline int dg_region_layout(uint32_t nflows, uint32_t slots,
				   struct dg_region_layout *l)
{
	if (!nflows || nflows > DG_MAX_FLOWS || slots < DG_MIN_SLOTS ||
	    slots > DG_MAX_SLOTS || (slots & (slots - 1)))
		return -EINVAL;
	l->ctrl_off = sizeof(struct dg_region_hdr);
	l->rings_off =
		l->ctrl_off + (uint64_t)nflows * sizeof(struct dg_flow_ctrl);
	l->ring_size = (uint64_t)slots * DG_SLOT_SIZE;
	l->total = l->rings_off + 2ull * nflows * l->ring_size;
	return 0;
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

#endif /* DAGGER_FRAME_H */
