/* SPDX-License-Identifier: MIT */
/*
 * hostmem.h - how the NIC engine reaches one host's memory region.
 *
 * The engine keeps a shadow of the host region with the same layout
 * (dagger/frame.h). It never touches host memory directly: it asks the
 * backend to READ a byte range of the host region into the same range of
 * the shadow, or to WRITE a range of the shadow into the host region.
 * Requests are queued, handed over in one batch by flush(), and complete
 * in order through poll(), each with the caller's tag.
 *
 * Two kinds of backend:
 *  - rdma:   one-sided RDMA READ/WRITE on the tenant's endpoint; the shadow
 *            is the engine's registered staging memory (the product);
 *  - direct: the host region is memory the engine can address (shared
 *            memory: a host process attached through the engine daemon's
 *            socket, or a host in the engine's own process). There is no
 *            shadow and no copy: hm->shadow IS the host region, hm->direct
 *            is set, and the engine works on the rings in place, loading
 *            stamps with acquire and storing them with release semantics
 *            exactly as a host does (dagger/ring.h). read/write/flush/poll
 *            are not used for it. The host writes this memory while the
 *            engine reads it: the engine copies every header it acts on
 *            once and never reads a field twice (docs/ARCHITECTURE.md).
 */
#ifndef DG_HOSTMEM_H
#define DG_HOSTMEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dg_hostmem;
struct dg_rdma_remote;
struct dg_rdma_mr;

struct dg_hostmem_comp {
	uint64_t tag;
	int status; /* 0 or negative errno */
	/* A host's WRITE WITH IMMEDIATE (a doorbell, a sleep): its value. */
	int has_imm;
	uint32_t imm;
};

struct dg_hostmem_ops {
	int (*read)(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		    uint64_t tag);
	int (*write)(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		     uint64_t tag);
	int (*flush)(struct dg_hostmem *hm);
	int (*poll)(struct dg_hostmem *hm, struct dg_hostmem_comp *c, int n);
	/* 0 while the host is reachable, else -ENOTCONN / -EIO. */
	int (*check)(struct dg_hostmem *hm);
	void (*destroy)(struct dg_hostmem *hm);
	/*
	 * Optional (NULL for the local backend): a file descriptor that turns
	 * readable when a completion arrives after arm(); ack() consumes it.
	 * Lets an idle engine sleep instead of spinning.
	 */
	int (*event_fd)(struct dg_hostmem *hm);
	int (*arm)(struct dg_hostmem *hm);
	void (*ack)(struct dg_hostmem *hm);
	/*
	 * Optional: a file descriptor that turns readable when check() may
	 * have changed (the connection's events); a sleeping engine watches it
	 * so a host that died is noticed without waiting for a sweep.
	 */
	int (*state_fd)(struct dg_hostmem *hm);
	/*
	 * RDMA only (NULL otherwise). recv: posts one receive for a host's
	 * WRITE WITH IMMEDIATE (it completes with tag and the immediate).
	 * notify: queues a zero-byte WRITE WITH IMMEDIATE to the host (after
	 * every WRITE queued before it, on the same QP: the host sees those
	 * bytes first). shadow: where the host may write into the shadow.
	 */
	int (*recv)(struct dg_hostmem *hm, uint64_t tag);
	int (*notify)(struct dg_hostmem *hm, uint32_t imm, uint64_t tag);
	int (*shadow)(struct dg_hostmem *hm, struct dg_rdma_remote *out);
	/*
	 * RDMA only: payload transfers between the host region's payload
	 * areas (anywhere in the region, not only the shadowed part) and
	 * engine memory registered with reg() (the staging pool). One READ
	 * or WRITE each, queued like read/write, always signaled. reg:
	 * registers engine memory with this tenant's protection domain, for
	 * local access only; the backend deregisters it when destroyed.
	 */
	int (*pread)(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		     void *dst, struct dg_rdma_mr *mr, uint64_t tag);
	int (*pwrite)(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		      const void *src, struct dg_rdma_mr *mr, uint64_t tag);
	int (*reg)(struct dg_hostmem *hm, void *addr, size_t len,
		   struct dg_rdma_mr **mr);
};

struct dg_hostmem {
	const struct dg_hostmem_ops *ops;
	uint8_t *shadow;      /* engine side, same layout as the host region */
	uint64_t size;	      /* bytes in the region */
	uint64_t shadow_size; /* bytes of the shadow: the rings part */
	bool direct;	      /* shadow is the host region itself */
};

/*
 * Direct backend over a region in this address space (an in-process host:
 * the caller keeps it mapped until destroy). check() is always 0.
 */
int dg_hostmem_local_create(void *host_region, uint64_t size,
			    struct dg_hostmem **out);
/*
 * Direct backend over a shared mapping of another process's region: the
 * backend owns the mapping (munmap on destroy) and the process's socket
 * (closed on destroy); check() reports -ENOTCONN once the socket hung up,
 * i.e. the process detached or died. event_fd is the socket.
 */
int dg_hostmem_shm_create(void *map, uint64_t size, int sock,
			  struct dg_hostmem **out);

struct dg_rdma_ep;
struct dg_rdma_remote;
/*
 * RDMA backend over a connected endpoint to the host; remote describes the
 * host region (from the attach private data). Registers its own shadow of
 * the region's first shadow_len bytes (its rings part: the payload areas
 * are not copied, payload transfers reach them directly).
 */
int dg_hostmem_rdma_create(struct dg_rdma_ep *ep,
			   const struct dg_rdma_remote *remote,
			   uint64_t shadow_len, struct dg_hostmem **out);

#endif /* DG_HOSTMEM_H */
