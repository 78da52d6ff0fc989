// SPDX-License-Identifier: MIT
/*
 * keys.c - keyed calls: requests that carry a load-balancing key
 * (DG_FF_KEY and dg_frame.key), for services balanced by key
 * (DG_LB_KEY: the engine sends every request of one key to one server
 * flow). Apart from dg_call so that its fast path stays as it is.
 */
#include <errno.h>
#include <string.h>

#include "host_impl.h"

uint32_t dg_key_hash(const void *key, size_t len)
{
	const uint8_t *p = key;
	uint32_t h = 2166136261u; /* FNV-1a, 32 bits */
	size_t i;

	for (i = 0; i < len; i++) {
		h ^= p[i];
		h *= 16777619u;
	}
	return h;
}

int dg_call_fill_key(struct dg_flow *f, int conn, uint16_t fn, uint32_t key,
		     size_t len, dg_fill_fn fill, void *arg, uint32_t *rpc_id)
{
	struct dg_writer w;
	uint32_t cnt, i, pos;
	struct dg_frame *s;
	int rc = dg_own(f);

	if (rc)
		return rc;
	if (len > DG_MAX_MSG)
		return -EMSGSIZE;
	if (!fill || conn < 0)
		return -EINVAL;
	cnt = dg_frames_for((uint32_t)len);
	if (cnt > f->slots)
		return -EMSGSIZE;
	if (dg_tx_reserve(f, cnt)) {
		f->st.eagain++;
		return -EAGAIN;
	}
	/* As dg_call_fill: the frames from tx_tail on are ours, unsealed. */
	pos = f->tx_tail;
	w = (struct dg_writer){.ring = f->tx,
			       .mask = f->mask,
			       .pos = pos,
			       .first = pos,
			       .left = (uint32_t)len};
	rc = fill(arg, &w);
	if (rc)
		return rc < 0 ? rc : -EIO;
	if (w.left || w.overrun)
		return -EPROTO;
	*rpc_id = f->next_rpc++;
	/*
	 * The header with the key, then each stamp (release,
	 * dg_slot_publish): continuation frames first, the first frame
	 * last, as dg_tx_put. The key is stored before the first frame's
	 * release store, so whoever sees the stamp sees the key.
	 */
	s = &f->tx[pos & f->mask];
	dg_frame_head(s, DG_FF_REQ | DG_FF_KEY, 0, *rpc_id, (uint32_t)conn, fn,
		      (uint32_t)len, cnt);
	s->key = key;
	for (i = 1; i < cnt; i++)
		dg_cont_publish(dg_tx_cont(f, pos + i), pos + i, f->rflags);
	if (f->rflags)
		dg_ring_guard(f->tx, f->mask, pos + cnt);
	dg_slot_publish(s, pos, f->rflags);
	f->tx_tail = pos + cnt;
	f->st.calls++;
	return 0;
}

struct bytes {
	const void *p;
	size_t n;
};

static int put_bytes(void *arg, struct dg_writer *w)
{
	const struct bytes *b = arg;

	dg_writer_put(w, b->p, b->n);
	return 0;
}

int dg_call_key(struct dg_flow *f, int conn, uint16_t fn, uint32_t key,
		const void *req, size_t len, uint32_t *rpc_id)
{
	struct bytes b = {req, len};

	if (len && !req)
		return -EINVAL;
	return dg_call_fill_key(f, conn, fn, key, len, put_bytes, &b, rpc_id);
}
