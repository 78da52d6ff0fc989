/* SPDX-License-Identifier: MIT */
/*
 * fake_rdma.h - an in-memory stand-in for transport_rdma/ (dg_rdma.h), for
 * the fuzz harnesses: the engine (nic/, peer.c, hostmem.c) is linked
 * against it instead of verbs, so that RDMA attaches, RDMA tenants and
 * peer links run without a device, deterministically, in one thread.
 *
 * What it models:
 *  - a listener whose connection requests the harness queues
 *    (fake_rdma_queue_connect), each with its private data and,
 *    optionally, the "host memory" its READs and WRITEs reach;
 *  - active endpoints (ep_create/ep_connect) that fail at once with
 *    -EHOSTUNREACH unless the harness scripted a connection
 *    (fake_rdma_script_connect);
 *  - READ and WRITE executed when they are handed over (dg_rdma_flush, or
 *    a post without DG_RDMA_MORE) against the endpoint's host memory,
 *    checked like a device checks them (local range inside the local MR,
 *    remote range inside the remote region and matching its rkey: else a
 *    failed completion and the endpoint in error);
 *  - SENDs captured, in order, for the harness to read (fake_ep_take_send)
 *    and completed at once (the far side's device acknowledged them);
 *  - RECVs posted by the engine, filled by the harness (fake_ep_deliver).
 * Completions come back through dg_rdma_poll in order.
 */
#ifndef DG_FAKE_RDMA_H
#define DG_FAKE_RDMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dg_rdma.h"

/* Forgets every script and queued request (endpoints stay as they are). */
void fake_rdma_reset(void);

/*
 * Queues a connection request for the next dg_rdma_listener_next(): its
 * private data (len <= DG_RDMA_CONNECT_PDATA_MAX) and, when mem is not
 * NULL, the host memory its endpoint's READs and WRITEs reach: len bytes
 * at mem, known to the engine as address base with key rkey. Returns 0,
 * or -ENOSPC when too many are queued.
 */
int fake_rdma_queue_connect(const void *pdata, size_t plen, void *mem,
			    uint64_t base, uint32_t mem_len, uint32_t rkey);

/*
 * The next dg_rdma_ep_create() succeeds and its dg_rdma_ep_connect()
 * receives reply (rlen bytes) as the passive side's private data. Without
 * a script, ep_create fails with -EHOSTUNREACH.
 */
void fake_rdma_script_connect(const void *reply, size_t rlen);

/* The endpoint most recently accepted (passive) or connected (active). */
struct dg_rdma_ep *fake_rdma_last_ep(void);
/* The private data the engine answered its last accept with. */
size_t fake_ep_accept_pdata(const struct dg_rdma_ep *ep, void *buf, size_t cap);

/*
 * Delivers one message of len bytes into the oldest RECV the endpoint has
 * posted: a RECV completion with byte_len = len. A message longer than the
 * buffer completes with an error (the endpoint fails), as on a device.
 * -ENOBUFS: no RECV posted (the sender's credits were wrong); -ENOTCONN:
 * the endpoint is in error or gone.
 */
int fake_ep_deliver(struct dg_rdma_ep *ep, const void *msg, size_t len);

/*
 * Takes the oldest SEND the endpoint posted: copies up to cap bytes,
 * returns its length, or -ENOENT when none is waiting.
 */
int fake_ep_take_send(struct dg_rdma_ep *ep, void *buf, size_t cap);

/* The endpoint's connection drops (dg_rdma_ep_check: -ENOTCONN). */
void fake_ep_disconnect(struct dg_rdma_ep *ep);

/* Endpoints alive now (created and not destroyed), for leak checks. */
int fake_rdma_live_eps(void);
/*
 * Whether ep is alive: the engine destroys a link's endpoint when the link
 * dies, and a harness must stop using its pointer then. Compares the
 * pointer only, never dereferences it.
 */
bool fake_ep_alive(const struct dg_rdma_ep *ep);

#endif
