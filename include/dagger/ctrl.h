/* SPDX-License-Identifier: MIT */
/*
 * dagger/ctrl.h - control messages between a host and its NIC engine, and
 * the attach handshake. Control messages travel through the same rings as
 * RPCs, as frames with DG_FF_CTRL set (possibly several frames); the engine
 * answers in the flow's RX ring with a one-frame DG_FF_CTRL reply carrying
 * the request's rpc_id, a status and, for OPEN, the new connection id.
 */
#ifndef DAGGER_CTRL_H
#define DAGGER_CTRL_H

#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "dagger/frame.h"

#define DG_NAME_MAX	    48 /* service names, including the NUL */
#define DG_ADDR_MAX	    48 /* engine addresses "ip", including the NUL */
/*
 * A service every engine offers: it answers each request itself with the
 * request's bytes (status OK), touching no server host: NIC loopback, the
 * measure of the client host's own ceiling. Servers cannot register it.
 */
#define DG_LOOPBACK_SERVICE "dagger.loopback"

enum dg_ctrl_op {
	DG_CTRL_REGISTER = 1, /* this flow serves a service */
	DG_CTRL_OPEN = 2,     /* open a connection to a remote service */
	DG_CTRL_CLOSE = 3,    /* close a connection */
	DG_CTRL_MODE = 4,     /* this flow's interface mode becomes .lb */
};

enum dg_lb_policy {
	DG_LB_ROUND_ROBIN = 0,
	DG_LB_STATIC = 1, /* by connection id: one server flow per conn */
	DG_LB_RANDOM = 2,
	/*
	 * By the request's key (dg_call_key: DG_FF_KEY and dg_frame.key):
	 * requests with one key always reach the same server flow while the
	 * service's set of server flows stays the same; when a flow joins or
	 * leaves, only the keys of that flow's share move (consistent
	 * hashing, docs/ARCHITECTURE.md). Requests without a key are spread
	 * round-robin.
	 */
	DG_LB_KEY = 3,
};

/*
 * "rr" (or "round-robin"), "static", "random", "key" -> the policy, or
 * -EINVAL.
 */
static inline int dg_lb_policy_parse(const char *s)
{
	if (!strcmp(s, "rr") || !strcmp(s, "round-robin"))
		return DG_LB_ROUND_ROBIN;
	if (!strcmp(s, "static"))
		return DG_LB_STATIC;
	if (!strcmp(s, "random"))
		return DG_LB_RANDOM;
	if (!strcmp(s, "key"))
		return DG_LB_KEY;
	return -EINVAL;
}

/* The short name of a policy ("rr", "static", "random", "key"; "?"). */
static inline const char *dg_lb_policy_name(unsigned policy)
{
	switch (policy) {
	case DG_LB_ROUND_ROBIN:
		return "rr";
	case DG_LB_STATIC:
		return "static";
	case DG_LB_RANDOM:
		return "random";
	case DG_LB_KEY:
		return "key";
	default:
		return "?";
	}
}

struct dg_ctrl_msg {
	uint8_t op;    /* enum dg_ctrl_op */
	uint8_t lb;    /* REGISTER: enum dg_lb_policy; MODE: enum dg_mode */
	uint16_t port; /* OPEN: peer engine port; 0 = this engine */
	uint32_t conn; /* CLOSE: the connection */
	char service[DG_NAME_MAX];
	char peer[DG_ADDR_MAX]; /* OPEN: peer engine address; "" = local */
	/*
	 * REGISTER: the service's secret (dg_service_def.secret; 0: none).
	 * Older hosts send shorter messages: the engine reads 0.
	 */
	uint64_t secret;
};

#define DG_CTRL_MAX_FRAMES 4u
static_assert(sizeof(struct dg_ctrl_msg) <=
		      DG_FRAME_PAYLOAD +
			      (DG_CTRL_MAX_FRAMES - 1) * DG_CONT_PAYLOAD,
	      "a control message spans at most four frames");

/* Private data of an RDMA attach (host -> engine), fits rdma_cm's 56. */
#define DG_ATTACH_MAGIC 0x44474831u /* "DGH1" */

struct dg_attach_req {
	uint32_t magic; /* DG_ATTACH_MAGIC */
	uint32_t version;
	uint64_t addr; /* host region */
	uint32_t rkey;
	uint32_t len;
	uint32_t nflows;
	uint32_t slots;
	uint32_t flags;	    /* enum dg_ring_flags */
	uint32_t mode;	    /* enum dg_mode of every flow, at first */
	uint32_t pay_shift; /* payload areas (dg_region_hdr.pay_shift) */
};

static_assert(sizeof(struct dg_attach_req) <= 56, "rdma_cm private data");

struct dg_attach_rep {
	uint32_t magic;
	int32_t status; /* 0 or negative errno */
	uint32_t tenant;
	uint32_t engine_id;
	/*
	 * RDMA: the engine's copy of the region's rings part (same layout,
	 * dg_region_layout.pay_off bytes), which a host in doorbell or push
	 * mode writes into: its tx_db and sleep lines, and in push mode its
	 * TX frames.
	 */
	uint64_t shadow_addr;
	uint32_t shadow_rkey;
	uint32_t shadow_len;
};

static_assert(sizeof(struct dg_attach_rep) <= 196, "rdma_cm accept data");

/*
 * A shared-memory attach, to an engine daemon on this machine (dagger-nic
 * --shm PATH): one SOCK_SEQPACKET message on the daemon's unix socket
 * carrying this request and, as SCM_RIGHTS, a memfd of exactly len bytes
 * (dg_region_bytes), sealed against shrinking and growing (F_SEAL_SHRINK,
 * F_SEAL_GROW). The engine maps it shared and answers with a struct
 * dg_attach_rep (magic DG_SHM_MAGIC). The socket stays open while the host
 * is attached: its closing (detach, or the process's death) detaches it.
 */
#define DG_SHM_MAGIC 0x44475331u /* "DGS1" */

struct dg_shm_attach_req {
	uint32_t magic;	  /* DG_SHM_MAGIC */
	uint32_t version; /* DG_REGION_VERSION */
	uint32_t nflows;
	uint32_t slots;
	uint32_t flags;	    /* enum dg_ring_flags */
	uint32_t pay_shift; /* payload areas (dg_region_hdr.pay_shift) */
	uint64_t len;	    /* bytes of the memfd */
};

#endif /* DAGGER_CTRL_H */
