// SPDX-License-Identifier: MIT
/*
 * fz_raw.c - a host region driven by hand (fz_raw.h).
 */
#include "fz_raw.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void (*fz_on_fail)(void);

void fz_fail(const char *fmt, ...)
{
	va_list ap;

	if (fz_on_fail)
		fz_on_fail();
	va_start(ap, fmt);
	fprintf(stderr, "fuzz invariant: ");
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	abort();
}

int fz_raw_wrap(struct fz_raw *r, void *region, uint32_t nflows, uint32_t slots,
		unsigned rflags)
{
	struct dg_region_hdr *h;

	memset(r, 0, sizeof(*r));
	if (nflows > FZ_MAX_FLOWS || dg_region_layout(nflows, slots, &r->lay))
		return -EINVAL;
	r->size = dg_region_bytes(&r->lay);
	r->region = region;
	h = (struct dg_region_hdr *)r->region;
	h->magic = DG_REGION_MAGIC;
	h->version = DG_REGION_VERSION;
	h->nflows = nflows;
	h->slots = slots;
	h->flags = rflags;
	r->nflows = nflows;
	r->slots = slots;
	r->mask = slots - 1;
	r->rflags = rflags & DG_RING_F_CSUM;
	r->tenant = -1;
	return 0;
}

int fz_raw_init(struct fz_raw *r, uint32_t nflows, uint32_t slots,
		unsigned rflags)
{
	struct dg_region_layout lay;
	uint8_t *p;
	int rc;

	if (dg_region_layout(nflows, slots, &lay))
		return -EINVAL;
	p = aligned_alloc(DG_REGION_ALIGN, dg_region_bytes(&lay));
	if (!p)
		return -ENOMEM;
	memset(p, 0, dg_region_bytes(&lay));
	rc = fz_raw_wrap(r, p, nflows, slots, rflags);
	if (rc)
		free(p);
	else
		r->owned = true;
	return rc;
}

void fz_raw_free(struct fz_raw *r)
{
	if (r->owned)
		free(r->region);
	r->region = NULL;
}

uint32_t fz_raw_tx_room(struct fz_raw *r, uint32_t f)
{
	uint32_t head =
		__atomic_load_n(&fz_ctrl(r, f)->tx_head, __ATOMIC_ACQUIRE);
	uint32_t used = r->tx[f] - head;

	return used > r->slots ? 0 : r->slots - used;
}

int fz_raw_send(struct fz_raw *r, uint32_t f, uint8_t flags, uint8_t status,
		uint32_t rpc_id, uint32_t conn, uint16_t fn, const void *data,
		uint32_t len)
{
	uint32_t cnt = dg_frames_for(len), pos = r->tx[f], i, n;
	const uint8_t *p = data;
	struct dg_frame *s;

	if (cnt > r->slots)
		return -EMSGSIZE;
	if (fz_raw_tx_room(r, f) < cnt)
		return -EAGAIN;
	n = len < DG_FRAME_PAYLOAD ? len : DG_FRAME_PAYLOAD;
	for (i = 1; i < cnt; i++) {
		struct dg_frame_cont *c =
			(struct dg_frame_cont *)fz_tx_slot(r, f, pos + i);
		uint32_t k =
			len - n < DG_CONT_PAYLOAD ? len - n : DG_CONT_PAYLOAD;

		memset(c->data, 0, DG_CONT_PAYLOAD);
		memcpy(c->data, p + n, k);
		n += k;
		dg_cont_publish(c, pos + i, r->rflags);
	}
	s = fz_tx_slot(r, f, pos);
	memset((uint8_t *)s + 4, 0, DG_SLOT_SIZE - 4);
	s->rpc_id = rpc_id;
	s->conn = conn;
	s->len = len;
	s->fn_id = fn;
	s->cnt = (uint16_t)cnt;
	s->flags = flags;
	s->status = status;
	if (len)
		memcpy(s->data, p,
		       len < DG_FRAME_PAYLOAD ? len : DG_FRAME_PAYLOAD);
	/* An honest host, as libdagger: on RDMA rings (dagger/ring.h). */
	if (r->rflags)
		dg_ring_guard(fz_tx_slot(r, f, 0), r->mask, pos + cnt);
	dg_slot_publish(s, pos, r->rflags);
	r->tx[f] = pos + cnt;
	return 0;
}

int fz_raw_put_slot(struct fz_raw *r, uint32_t f, const void *slot, int seal)
{
	uint32_t pos = r->tx[f];
	struct dg_frame *s = fz_tx_slot(r, f, pos);

	if (fz_raw_tx_room(r, f) < 1)
		return -EAGAIN;
	memcpy(s, slot, DG_SLOT_SIZE);
	if (seal == 1)
		dg_slot_publish(s, pos, r->rflags);
	else if (seal == 2)
		dg_cont_publish((struct dg_frame_cont *)s, pos, r->rflags);
	r->tx[f] = pos + 1;
	return 0;
}

int fz_raw_recv(struct fz_raw *r, uint32_t f, struct fz_msg *m, uint8_t *buf)
{
	uint32_t pos = r->rx[f], cnt, i, n, kind;
	const struct dg_frame *s = fz_rx_slot(r, f, pos);

	if (!dg_slot_ready(s, pos, r->rflags)) {
		/* A stamp without its checksum is a torn write by the engine.
		 */
		if (__atomic_load_n(&s->stamp, __ATOMIC_ACQUIRE) ==
		    dg_stamp(pos))
			fz_fail("tenant %d flow %u: RX slot %u stamped, "
				"checksum wrong",
				r->tenant, f, pos);
		return 0;
	}
	memcpy(&m->h, s, sizeof(m->h));
	kind = m->h.flags & DG_FF_KIND;
	if ((kind != DG_FF_REQ && kind != DG_FF_RESP && kind != DG_FF_CTRL) ||
	    (m->h.flags & ~(DG_FF_KIND | DG_FF_KEY | DG_FF_TRACE)) ||
	    ((m->h.flags & DG_FF_TRACE) && kind == DG_FF_CTRL) ||
	    ((m->h.flags & DG_FF_KEY) && kind != DG_FF_REQ))
		fz_fail("tenant %d flow %u: RX %u has flags %#x", r->tenant, f,
			pos, m->h.flags);
	if (m->h.len > DG_MAX_MSG || m->h.cnt != dg_frames_for(m->h.len) ||
	    m->h.cnt > r->slots)
		fz_fail("tenant %d flow %u: RX %u has len %u cnt %u", r->tenant,
			f, pos, m->h.len, m->h.cnt);
	if (m->h.flow != f)
		fz_fail("tenant %d flow %u: RX %u names flow %u", r->tenant, f,
			pos, m->h.flow);
	cnt = m->h.cnt;
	n = m->h.len < DG_FRAME_PAYLOAD ? m->h.len : DG_FRAME_PAYLOAD;
	memcpy(buf, m->h.data, n);
	for (i = 1; i < cnt; i++) {
		const struct dg_frame_cont *c =
			(const void *)fz_rx_slot(r, f, pos + i);
		uint32_t k = m->h.len - n < DG_CONT_PAYLOAD ? m->h.len - n
							    : DG_CONT_PAYLOAD;

		/* The engine publishes the first frame last. */
		if (!dg_cont_ready(c, pos + i, r->rflags))
			fz_fail("tenant %d flow %u: RX %u published before "
				"its frame %u",
				r->tenant, f, pos, i);
		memcpy(buf + n, c->data, k);
		n += k;
	}
	m->data = buf;
	m->len = m->h.len;
	r->rx[f] = pos + cnt;
	return 1;
}

void fz_raw_release(struct fz_raw *r, uint32_t f)
{
	/* An honest host, as libdagger (dagger/ring.h). */
	if (r->rx[f] - r->rx_freed[f] <= r->slots)
		dg_ring_scrub(fz_rx_slot(r, f, 0), r->mask, r->rx_freed[f],
			      r->rx[f]);
	r->rx_freed[f] = r->rx[f];
	__atomic_store_n(&fz_ctrl(r, f)->rx_head, r->rx[f], __ATOMIC_RELEASE);
}

int fz_raw_ctrl_reply(struct fz_raw *r, uint32_t f, uint32_t rpc_id,
		      struct fz_msg *m, uint8_t *buf)
{
	while (fz_raw_recv(r, f, m, buf) == 1)
		if ((m->h.flags & DG_FF_CTRL) && m->h.rpc_id == rpc_id)
			return 1;
	return 0;
}
