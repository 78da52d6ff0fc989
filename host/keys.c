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
	return dg_call_fill_as(f, conn, fn, DG_FF_REQ | DG_FF_KEY, key, len,
			       fill, arg, rpc_id);
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
	int rc;

	if (len && !req)
		return -EINVAL;
	if (len <= DG_MAX_MSG && dg_pay_use(f, len)) {
		rc = dg_own(f);
		if (rc || conn < 0)
			return rc ? rc : -EINVAL;
		/* In place when req is dg_call_buf's, like dg_call. */
		return dg_call_pay(f, conn, fn, DG_FF_REQ | DG_FF_KEY, key, req,
				   (uint32_t)len, rpc_id);
	}
	return dg_call_fill_key(f, conn, fn, key, len, put_bytes, &b, rpc_id);
}
