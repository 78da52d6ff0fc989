// SPDX-License-Identifier: MIT
/*
 * hostmem.c - the local (shared memory) and RDMA backends of hostmem.h.
 */
#include "hostmem.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "dagger/frame.h"
#include "dg_rdma.h"

/* ---- local backend ---------------------------------------------------- */

#define LOCAL_QDEPTH 1024

struct local_hm {
	struct dg_hostmem hm;
	uint8_t *host;
	/* Requests run at once; only their completions are queued. */
	struct dg_hostmem_comp q[LOCAL_QDEPTH];
	uint32_t qhead, qcount;
};

static bool range_ok(const struct dg_hostmem *hm, uint64_t off, uint32_t len)
{
	return len && off <= hm->size && len <= hm->size - off;
}

static int local_done(struct local_hm *l, uint64_t tag)
{
	if (l->qcount == LOCAL_QDEPTH)
		return -EAGAIN;
	l->q[(l->qhead + l->qcount) % LOCAL_QDEPTH] =
		(struct dg_hostmem_comp){.tag = tag, .status = 0};
	l->qcount++;
	return 0;
}

/*
 * Copies whole slots src -> dst the way a consumer must observe them: the
 * stamp is loaded first with acquire semantics (if it is new, the
 * producer's release made the rest visible), then the other 60 bytes.
 * The copy of a not-yet-new slot may be torn; its stale stamp rejects it.
 */
static void copy_slots_in(uint8_t *dst, const uint8_t *src, uint32_t len)
{
	uint32_t i, prev = 0;

	for (i = 0; i < len; i += DG_SLOT_SIZE) {
		const struct dg_frame *s = (const void *)(src + i);
		struct dg_frame *d = (void *)(dst + i);
		uint32_t stamp = __atomic_load_n(&s->stamp, __ATOMIC_ACQUIRE);

		/*
		 * Producers publish in position order, so consecutive slots
		 * of one read carry consecutive stamps up to the first one
		 * not yet written: past it nothing is new, stop copying
		 * (the shadow keeps older stamps, which the poller rejects).
		 */
		if (i && stamp != prev + 1) {
			d->stamp = stamp;
			break;
		}
		memcpy((uint8_t *)d + 4, (const uint8_t *)s + 4,
		       DG_SLOT_SIZE - 4);
		d->stamp = stamp;
		prev = stamp;
	}
}

/*
 * Copies whole slots as a producer publishes them: the other 60 bytes
 * first, then the stamp with a release store so the host, which acquires
 * the stamp, sees the complete frame.
 */
static void copy_slots_out(uint8_t *dst, const uint8_t *src, uint32_t len)
{
	uint32_t i;

	for (i = 0; i < len; i += DG_SLOT_SIZE) {
		const struct dg_frame *s = (const void *)(src + i);
		struct dg_frame *d = (void *)(dst + i);

		memcpy((uint8_t *)d + 4, (const uint8_t *)s + 4,
		       DG_SLOT_SIZE - 4);
		__atomic_store_n(&d->stamp, s->stamp, __ATOMIC_RELEASE);
	}
}

static int local_read(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		      uint64_t tag)
{
	struct local_hm *l = (struct local_hm *)hm;

	if (!range_ok(hm, off, len))
		return -EINVAL;
	if (l->qcount == LOCAL_QDEPTH)
		return -EAGAIN;
	if (len == 4) {
		/* A control word: pairs with the host's release store. */
		uint32_t v = __atomic_load_n((uint32_t *)(l->host + off),
					     __ATOMIC_ACQUIRE);
		memcpy(hm->shadow + off, &v, 4);
	} else if (!(off % DG_SLOT_SIZE) && !(len % DG_SLOT_SIZE)) {
		copy_slots_in(hm->shadow + off, l->host + off, len);
	} else {
		return -EINVAL;
	}
	return local_done(l, tag);
}

static int local_write(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		       uint64_t tag)
{
	struct local_hm *l = (struct local_hm *)hm;

	if (!range_ok(hm, off, len))
		return -EINVAL;
	if (l->qcount == LOCAL_QDEPTH)
		return -EAGAIN;
	if (len == 4) {
		uint32_t v;

		/*
		 * A control word (tx_head): release, so the host's reuse of
		 * the slots it frees happens after our reads of them.
		 */
		memcpy(&v, hm->shadow + off, 4);
		__atomic_store_n((uint32_t *)(l->host + off), v,
				 __ATOMIC_RELEASE);
	} else if (!(off % DG_SLOT_SIZE) && !(len % DG_SLOT_SIZE)) {
		copy_slots_out(l->host + off, hm->shadow + off, len);
	} else {
		return -EINVAL;
	}
	return local_done(l, tag);
}

static int local_flush(struct dg_hostmem *hm)
{
	(void)hm;
	return 0;
}

static int local_poll(struct dg_hostmem *hm, struct dg_hostmem_comp *c, int n)
{
	struct local_hm *l = (struct local_hm *)hm;
	int k = 0;

	while (k < n && l->qcount) {
		c[k++] = l->q[l->qhead];
		l->qhead = (l->qhead + 1) % LOCAL_QDEPTH;
		l->qcount--;
	}
	return k;
}

static int local_check(struct dg_hostmem *hm)
{
	(void)hm;
	return 0;
}

static void local_destroy(struct dg_hostmem *hm)
{
	free(hm->shadow);
	free(hm);
}

static const struct dg_hostmem_ops local_ops = {
	.read = local_read,
	.write = local_write,
	.flush = local_flush,
	.poll = local_poll,
	.check = local_check,
	.destroy = local_destroy,
};

int dg_hostmem_local_create(void *host_region, uint64_t size,
			    struct dg_hostmem **out)
{
	struct local_hm *l;

	if (!host_region || !size || size % DG_SLOT_SIZE)
		return -EINVAL;
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->hm.shadow = aligned_alloc(DG_SLOT_SIZE, size);
	if (!l->hm.shadow) {
		free(l);
		return -ENOMEM;
	}
	memset(l->hm.shadow, 0, size);
	l->hm.ops = &local_ops;
	l->hm.size = size;
	l->host = host_region;
	*out = &l->hm;
	return 0;
}

/* ---- RDMA backend ----------------------------------------------------- */

struct rdma_hm {
	struct dg_hostmem hm;
	struct dg_rdma_ep *ep;
	struct dg_rdma_mr *mr;
	struct dg_rdma_remote remote;
};

static int rdma_read(struct dg_hostmem *hm, uint64_t off, uint32_t len,
		     uint64_t tag)
{
	struct rdma_hm *r = (struct rdma_hm *)hm;

	if (!range_ok(hm, off, len))
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

	if (!range_ok(hm, off, len))
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
	}
	return k;
}

static int rdma_check(struct dg_hostmem *hm)
{
	return dg_rdma_ep_check(((struct rdma_hm *)hm)->ep);
}

static void rdma_destroy(struct dg_hostmem *hm)
{
	struct rdma_hm *r = (struct rdma_hm *)hm;

	dg_rdma_dereg(r->mr);
	dg_rdma_ep_destroy(r->ep);
	free(hm->shadow);
	free(r);
}

static int rdma_event_fd(struct dg_hostmem *hm)
{
	return dg_rdma_ep_cq_fd(((struct rdma_hm *)hm)->ep);
}

static int rdma_arm(struct dg_hostmem *hm)
{
	return dg_rdma_ep_arm(((struct rdma_hm *)hm)->ep);
}

static void rdma_ack(struct dg_hostmem *hm)
{
	dg_rdma_ep_ack(((struct rdma_hm *)hm)->ep);
}

static const struct dg_hostmem_ops rdma_ops = {
	.event_fd = rdma_event_fd,
	.arm = rdma_arm,
	.ack = rdma_ack,
	.read = rdma_read,
	.write = rdma_write,
	.flush = rdma_flush,
	.poll = rdma_poll,
	.check = rdma_check,
	.destroy = rdma_destroy,
};

int dg_hostmem_rdma_create(struct dg_rdma_ep *ep,
			   const struct dg_rdma_remote *remote,
			   struct dg_hostmem **out)
{
	struct rdma_hm *r;
	int rc;

	if (!remote->len || remote->len % DG_SLOT_SIZE)
		return -EINVAL;
	r = calloc(1, sizeof(*r));
	if (!r)
		return -ENOMEM;
	r->hm.shadow = aligned_alloc(4096, (remote->len + 4095) & ~4095u);
	if (!r->hm.shadow) {
		free(r);
		return -ENOMEM;
	}
	memset(r->hm.shadow, 0, remote->len);
	rc = dg_rdma_reg(ep, r->hm.shadow, remote->len, DG_RDMA_ACC_LOCAL_WRITE,
			 &r->mr);
	if (rc) {
		free(r->hm.shadow);
		free(r);
		return rc;
	}
	r->hm.ops = &rdma_ops;
	r->hm.size = remote->len;
	r->ep = ep;
	r->remote = *remote;
	*out = &r->hm;
	return 0;
}
