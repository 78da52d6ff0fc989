// SPDX-License-Identifier: MIT
/*
 * hostmem.c - the direct (shared memory) and RDMA backends of hostmem.h.
 */
#define _GNU_SOURCE
#include "hostmem.h"

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dagger/frame.h"
#include "dg_rdma.h"

/* ---- direct backends (shared memory) ------------------------------------ */

struct direct_hm {
	struct dg_hostmem hm;
	int sock;    /* shm: the host process's socket, -1 otherwise */
	bool mapped; /* shm: we own the mapping */
	bool gone;   /* the socket hung up */
};

static int direct_none(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		       uint64_t tag)
{
	(void)hm;
	(void)off;
	(void)len;
	(void)tag;
	return -EOPNOTSUPP; /* the engine works on the region in place */
}

static int direct_flush(struct dg_hostmem *hm)
{
	(void)hm;
	return 0;
}

static int direct_poll(struct dg_hostmem *hm, struct dg_hostmem_comp *c, int n)
{
	(void)hm;
	(void)c;
	(void)n;
	return 0;
}

/* A system call: the engine asks now and then, never per frame. */
static int direct_check(struct dg_hostmem *hm)
{
	struct direct_hm *d = (struct direct_hm *)hm;
	struct pollfd p = {.fd = d->sock, .events = POLLIN | POLLRDHUP};
	char b;

	if (d->sock < 0)
		return 0;
	if (d->gone)
		return -ENOTCONN;
	if (poll(&p, 1, 0) <= 0)
		return 0;
	/* Nothing is sent on it after the attach: readable means EOF. */
	if ((p.revents & (POLLHUP | POLLERR | POLLRDHUP)) ||
	    recv(d->sock, &b, 1, MSG_DONTWAIT | MSG_PEEK) == 0)
		d->gone = true;
	return d->gone ? -ENOTCONN : 0;
}

static void direct_destroy(struct dg_hostmem *hm)
{
	struct direct_hm *d = (struct direct_hm *)hm;

	if (d->mapped)
		munmap(hm->shadow, hm->size);
	if (d->sock >= 0)
		close(d->sock);
	free(d);
}

static int direct_event_fd(struct dg_hostmem *hm)
{
	return ((struct direct_hm *)hm)->sock;
}

static const struct dg_hostmem_ops direct_ops = {
	.read = direct_none,
	.write = direct_none,
	.flush = direct_flush,
	.poll = direct_poll,
	.check = direct_check,
	.destroy = direct_destroy,
};

static const struct dg_hostmem_ops shm_ops = {
	.read = direct_none,
	.write = direct_none,
	.flush = direct_flush,
	.poll = direct_poll,
	.check = direct_check,
	.destroy = direct_destroy,
	.event_fd = direct_event_fd,
};

static int direct_new(void *region, uint64_t size, int sock, bool mapped,
		      const struct dg_hostmem_ops *ops, struct dg_hostmem **out)
{
	struct direct_hm *d;

	if (!region || !size || size % DG_SLOT_SIZE)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->hm.ops = ops;
	d->hm.shadow = region;
	d->hm.size = size;
	d->hm.shadow_size = size;
	d->hm.direct = true;
	d->sock = sock;
	d->mapped = mapped;
	*out = &d->hm;
	return 0;
}

int dg_hostmem_local_create(void *host_region, uint64_t size,
			    struct dg_hostmem **out)
{
	return direct_new(host_region, size, -1, false, &direct_ops, out);
}

int dg_hostmem_shm_create(void *map, uint64_t size, int sock,
			  struct dg_hostmem **out)
{
	return direct_new(map, size, sock, true, &shm_ops, out);
}

/* ---- RDMA backend ----------------------------------------------------- */

/* Whether [off, off + len) is inside the first size bytes. */
static bool range_ok(uint64_t size, uint64_t off, uint32_t len)
{
	return len && off <= size && len <= size - off;
}

/* Engine memory registered with a tenant's PD (reg): the staging pool. */
#define RDMA_HM_EXTRA 2

struct rdma_hm {
	struct dg_hostmem hm;
	struct dg_rdma_ep *ep;
	struct dg_rdma_mr *mr;
	struct dg_rdma_remote remote;
	struct dg_rdma_mr *extra[RDMA_HM_EXTRA];
};

static int rdma_read(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		     uint64_t tag)
{
	struct rdma_hm *r = (struct rdma_hm *)hm;

	if (!range_ok(hm->shadow_size, off, len))
		return -EINVAL;
	/*
	 * Every request is signaled: the engine needs each READ's
	 * completion before it may look at the shadow bytes it filled.
	 */
	return dg_rdma_post_read(r->ep, r->mr, hm->shadow + off, len,
				 r->remote.addr + off, r->remote.rkey, tag,
				 DG_RDMA_SIGNALED | DG_RDMA_MORE);
}

static int rdma_write(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		      uint64_t tag)
{
	struct rdma_hm *r = (struct rdma_hm *)hm;

	if (!range_ok(hm->shadow_size, off, len))
		return -EINVAL;
	return dg_rdma_post_write(r->ep, r->mr, hm->shadow + off, len,
				  r->remote.addr + off, r->remote.rkey, tag,
				  DG_RDMA_SIGNALED | DG_RDMA_MORE);
}

static int rdma_flush(struct dg_hostmem *hm)
{
	return dg_rdma_flush(((struct rdma_hm *)hm)->ep);
}

static int rdma_poll(struct dg_hostmem *hm, struct dg_hostmem_comp *c, int n)
{
	struct rdma_hm *r = (struct rdma_hm *)hm;
	struct dg_rdma_wc wc[32];
	int k, i;

	if (n > 32)
		n = 32;
	k = dg_rdma_poll(r->ep, wc, n);
	for (i = 0; i < k; i++) {
		c[i].tag = wc[i].wr_id;
		c[i].status = wc[i].status;
		c[i].has_imm = wc[i].has_imm;
		c[i].imm = wc[i].imm;
	}
	return k;
}

static int rdma_check(struct dg_hostmem *hm)
{
	return dg_rdma_ep_check(((struct rdma_hm *)hm)->ep);
}

static int rdma_pread(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		      void *dst, struct dg_rdma_mr *mr, uint64_t tag)
{
	struct rdma_hm *r = (struct rdma_hm *)hm;

	/* The caller checked the range against the payload area too. */
	if (!range_ok(hm->size, off, len))
		return -EINVAL;
	return dg_rdma_post_read(r->ep, mr, dst, len, r->remote.addr + off,
				 r->remote.rkey, tag,
				 DG_RDMA_SIGNALED | DG_RDMA_MORE);
}

static int rdma_pwrite(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		       const void *src, struct dg_rdma_mr *mr, uint64_t tag)
{
	struct rdma_hm *r = (struct rdma_hm *)hm;

	if (!range_ok(hm->size, off, len))
		return -EINVAL;
	return dg_rdma_post_write(r->ep, mr, src, len, r->remote.addr + off,
				  r->remote.rkey, tag,
				  DG_RDMA_SIGNALED | DG_RDMA_MORE);
}

static int rdma_reg(struct dg_hostmem *hm, void *addr, size_t len,
		    struct dg_rdma_mr **mr)
{
	struct rdma_hm *r = (struct rdma_hm *)hm;
	uint32_t i;
	int rc;

	for (i = 0; i < RDMA_HM_EXTRA && r->extra[i]; i++)
		;
	if (i == RDMA_HM_EXTRA)
		return -ENOSPC;
	rc = dg_rdma_reg(r->ep, addr, len, DG_RDMA_ACC_LOCAL_WRITE,
			 &r->extra[i]);
	if (!rc)
		*mr = r->extra[i];
	return rc;
}

static void rdma_destroy(struct dg_hostmem *hm)
{
	struct rdma_hm *r = (struct rdma_hm *)hm;
	uint32_t i;

	/* Registrations before the endpoint: it frees their PD. */
	for (i = 0; i < RDMA_HM_EXTRA; i++)
		dg_rdma_dereg(r->extra[i]);
	dg_rdma_dereg(r->mr);
	dg_rdma_ep_destroy(r->ep);
	free(hm->shadow);
	free(r);
}

static int rdma_event_fd(struct dg_hostmem *hm)
{
	return dg_rdma_ep_cq_fd(((struct rdma_hm *)hm)->ep);
}

static int rdma_state_fd(struct dg_hostmem *hm)
{
	return dg_rdma_ep_fd(((struct rdma_hm *)hm)->ep);
}

static int rdma_arm(struct dg_hostmem *hm)
{
	return dg_rdma_ep_arm(((struct rdma_hm *)hm)->ep);
}

static void rdma_ack(struct dg_hostmem *hm)
{
	dg_rdma_ep_ack(((struct rdma_hm *)hm)->ep);
}

static int rdma_recv(struct dg_hostmem *hm, uint64_t tag)
{
	return dg_rdma_post_recv0(((struct rdma_hm *)hm)->ep, tag);
}

static int rdma_notify(struct dg_hostmem *hm, uint32_t imm, uint64_t tag)
{
	struct rdma_hm *r = (struct rdma_hm *)hm;

	/*
	 * Zero bytes at the region's start: the host consumes a receive and
	 * gets imm. Unsignaled: the engine waits for nothing.
	 */
	return dg_rdma_post_write_imm(r->ep, NULL, NULL, 0, r->remote.addr,
				      r->remote.rkey, imm, tag, DG_RDMA_MORE);
}

static int rdma_shadow(struct dg_hostmem *hm, struct dg_rdma_remote *out)
{
	*out = dg_rdma_mr_remote(((struct rdma_hm *)hm)->mr);
	return 0;
}

static const struct dg_hostmem_ops rdma_ops = {
	.recv = rdma_recv,
	.notify = rdma_notify,
	.shadow = rdma_shadow,
	.event_fd = rdma_event_fd,
	.state_fd = rdma_state_fd,
	.arm = rdma_arm,
	.ack = rdma_ack,
	.read = rdma_read,
	.write = rdma_write,
	.flush = rdma_flush,
	.poll = rdma_poll,
	.check = rdma_check,
	.destroy = rdma_destroy,
	.pread = rdma_pread,
	.pwrite = rdma_pwrite,
	.reg = rdma_reg,
};

int dg_hostmem_rdma_create(struct dg_rdma_ep *ep,
			   const struct dg_rdma_remote *remote,
			   uint64_t shadow_len, struct dg_hostmem **out)
{
	struct rdma_hm *r;
	int rc;

	if (!remote->len || remote->len % DG_SLOT_SIZE || !shadow_len ||
	    shadow_len > remote->len || shadow_len % DG_SLOT_SIZE)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	/* 64-bit: a length near 4 GiB must not wrap to a small buffer. */
	r->hm.shadow =
		aligned_alloc(4096, (shadow_len + 4095) & ~(uint64_t)4095);
	if (!r->hm.shadow) {
		free(r);
		return -ENOMEM;
	}
	memset(r->hm.shadow, 0, shadow_len);
	/*
	 * The host may WRITE into its own shadow (doorbell and push modes):
	 * its tx_db and sleep lines, and in push mode its TX frames. The
	 * key is the tenant's alone (its endpoint's protection domain), and
	 * the engine reads nothing in the shadow without checking it as it
	 * would the host's own memory.
	 */
	rc = dg_rdma_reg(ep, r->hm.shadow, shadow_len,
			 DG_RDMA_ACC_LOCAL_WRITE | DG_RDMA_ACC_REMOTE_WRITE,
			 &r->mr);
	if (rc) {
		free(r->hm.shadow);
		free(r);
		return rc;
	}
	r->hm.ops = &rdma_ops;
	r->hm.size = remote->len;
	r->hm.shadow_size = shadow_len;
	r->ep = ep;
	r->remote = *remote;
	*out = &r->hm;
	return 0;
}
