// SPDX-License-Identifier: MIT
/*
 * payload.c - large messages: a flow's TX payload area, descriptor frames.
 *
 * A message over the flow's threshold (dg_host_opts.large) is written
 * into the flow's TX payload area, in one piece, and announced by a
 * one-frame message with DG_FF_PAY whose data is a struct dg_pay_desc:
 * the payload's free-running position in the area. The area is a byte
 * ring: payloads are taken in the order they are sent, and the engine
 * tells how far it has read them (dg_flow_ctrl.pay_head), exactly as it
 * tells how far it has read the TX ring (tx_head). A payload that would
 * run past the area's end starts the next lap instead, so the engine
 * moves each with one READ (or one copy).
 *
 * Nothing here runs for messages under the threshold: dg_call's and
 * dg_poll's fast paths are unchanged (a descriptor frame has one slot and
 * more than 32 bytes, so it always takes their slow paths).
 */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "host_impl.h"

int dg_pay_reserve(struct dg_flow *f, uint32_t len, uint32_t *pos)
{
	uint32_t size = f->pay_size, p = f->pay_tail, off = p & (size - 1);

	if (off > size - len)
		p += size - off; /* a payload never wraps: start the next lap */
	if (p + len - f->pay_head > size) {
		/*
		 * Acquire: the engine stores pay_head only after it is done
		 * with the bytes below it (its copy out of them on shared
		 * memory, the completion of its READ over RDMA); our stores
		 * into them come after.
		 */
		f->pay_head =
			__atomic_load_n(&f->ctrl->pay_head, __ATOMIC_ACQUIRE);
		/*
		 * Nothing taken is outstanding: the whole area is free, the
		 * bytes skipped to start a lap too.
		 */
		if (p + len - f->pay_head > size && f->pay_head != f->pay_tail)
			return -EAGAIN;
	}
	*pos = p;
	return 0;
}

void dg_pay_put(struct dg_flow *f, uint8_t flags, uint8_t status,
		uint32_t rpc_id, uint32_t conn, uint16_t fn, uint32_t key,
		uint32_t ppos, uint32_t len)
{
	uint32_t pos = f->tx_tail;
	struct dg_frame *s = &f->tx[pos & f->mask];
	struct dg_pay_desc d = {.pos = ppos};

	dg_frame_head(s, flags | DG_FF_PAY, status, rpc_id, conn, fn, len, 1);
	s->key = key;
	memcpy(s->data, &d, sizeof(d));
	/*
	 * Release (dg_slot_publish): the payload's bytes, stored before this
	 * (by the application in place, or by our copy), and the frame's
	 * come before its stamp. A shared-memory engine that acquires the
	 * stamp sees them; an RDMA engine READs the payload only after it
	 * has taken this frame (whole: its checksum), so after these stores
	 * were visible (docs/ARCHITECTURE.md, "Large messages").
	 */
	dg_slot_publish(s, pos, f->rflags);
	f->tx_tail = pos + 1;
	f->pay_tail = ppos + len;
	f->res_buf = NULL;
	f->st.pay_sent++;
}

/* Whether p points into f's TX payload area. */
static bool in_tx_area(const struct dg_flow *f, const void *p)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)f->pay_tx;

	return f->pay_size && a >= b && a - b < f->pay_size;
}

int dg_call_pay(struct dg_flow *f, int conn, uint16_t fn, uint8_t flags,
		uint32_t key, const void *req, uint32_t len, uint32_t *rpc_id)
{
	bool in_place = f->res_buf && req == f->res_buf && len <= f->res_len;
	uint32_t ppos, id;

	/* A buffer dg_call_buf handed out before another large call. */
	if (!in_place && in_tx_area(f, req))
		return -EINVAL;
	if (dg_tx_reserve(f, 1)) {
		f->st.eagain++;
		return -EAGAIN;
	}
	if (in_place) {
		ppos = f->res_pos;
	} else {
		if (dg_pay_reserve(f, len, &ppos)) {
			f->st.eagain++;
			return -EAGAIN;
		}
		memcpy(f->pay_tx + (ppos & (f->pay_size - 1)), req, len);
		f->st.pay_copies++;
	}
	id = f->next_rpc++;
	dg_pay_put(f, flags, 0, id, (uint32_t)conn, fn, key, ppos, len);
	*rpc_id = id;
	f->st.calls++;
	dg_after_tx(f);
	return 0;
}

int dg_fill_pay(struct dg_flow *f, int conn, uint16_t fn, uint8_t flags,
		uint32_t key, uint32_t len, dg_fill_fn fill, void *arg,
		uint32_t *rpc_id)
{
	struct dg_writer w;
	uint32_t ppos, id;
	int rc;

	if (dg_tx_reserve(f, 1) || dg_pay_reserve(f, len, &ppos)) {
		f->st.eagain++;
		return -EAGAIN;
	}
	/* The payload bytes at ppos are ours until dg_pay_put takes them. */
	w = (struct dg_writer){.buf = f->pay_tx + (ppos & (f->pay_size - 1)),
			       .left = len};
	rc = fill(arg, &w);
	if (rc)
		return rc < 0 ? rc : -EIO;
	if (w.left || w.overrun)
		return -EPROTO;
	id = f->next_rpc++;
	dg_pay_put(f, flags, 0, id, (uint32_t)conn, fn, key, ppos, len);
	*rpc_id = id;
	f->st.calls++;
	dg_after_tx(f);
	return 0;
}

int dg_call_buf(struct dg_flow *f, size_t len, void **buf)
{
	uint32_t pos;
	int rc = dg_own(f);

	if (rc)
		return rc;
	if (!buf || !len)
		return -EINVAL;
	if (len > DG_MAX_MSG || len > f->pay_size)
		return -EMSGSIZE;
	if (dg_pay_reserve(f, (uint32_t)len, &pos)) {
		f->st.eagain++;
		return -EAGAIN;
	}
	f->res_buf = f->pay_tx + (pos & (f->pay_size - 1));
	f->res_pos = pos;
	f->res_len = (uint32_t)len;
	*buf = f->res_buf;
	return 0;
}
