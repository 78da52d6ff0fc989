/* SPDX-License-Identifier: MIT */
/*
 * fuzz_entry.h - the engine's internal entry points for the fuzz harnesses
 * (implemented in nic/fuzz_entry.c, built only into them). Everything here
 * runs on the one thread that drives the engine with dg_nic_poll(); no
 * other thread may touch it.
 */
#ifndef DG_FUZZ_ENTRY_H
#define DG_FUZZ_ENTRY_H

#include <stdbool.h>
#include <stdint.h>

struct dg_nic;

/*
 * Attaches a region of this process as a tenant at once, on the calling
 * thread (dg_nic_attach_local() hands it to a running loop instead and
 * waits): what the loop does with a local attach. Returns the tenant id or
 * a negative errno.
 */
int nic_fuzz_attach(struct dg_nic *n, void *region, uint64_t size);
/* Frees tenant (as a local detach does), on the calling thread. */
void nic_fuzz_detach(struct dg_nic *n, int tenant);

/* Whether a flow of tenant serves the service called name. */
bool nic_fuzz_serves(struct dg_nic *n, const char *name, int tenant);

/*
 * Frames peer link pi's FIFO still waits for to complete its last message
 * (a peer that sent part of an RPC): 0 when every message there is whole,
 * or pi is no link.
 */
uint32_t nic_fuzz_peer_need(struct dg_nic *n, uint32_t pi);

/* Reasons nic_fuzz_check() reports. */
enum nic_fuzz_broken {
	NIC_FUZZ_OK = 0,
	NIC_FUZZ_PEND = 1,    /* a flow's pending-call ring over its size */
	NIC_FUZZ_RX = 2,      /* RDMA: more RX produced than written back */
	NIC_FUZZ_FIFO = 3,    /* a peer link's FIFO over its size */
	NIC_FUZZ_CONN = 4,    /* a connection owned by no tenant or link */
	NIC_FUZZ_SERVICE = 5, /* a service naming a gone tenant or flow */
};

/*
 * Checks the engine's own bookkeeping (not what hosts or peers wrote):
 * returns NIC_FUZZ_OK or the first thing found broken, and describes it on
 * stderr.
 */
int nic_fuzz_check(struct dg_nic *n);

#endif
