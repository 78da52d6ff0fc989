/* SPDX-License-Identifier: MIT */
/*
 * What the large-message tests share (tests/unit/test_large.c on shared
 * memory, tests/rxe/large_rdma.c over RDMA): a byte pattern no two sizes
 * or seeds share, and a caller under back-pressure that sends each of n
 * messages until it is answered OK, checking every answer.
 */
#ifndef DG_LARGE_H
#define DG_LARGE_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>

#include "dagger/dagger.h"

static inline uint8_t dg_large_pat(uint32_t s, uint32_t i)
{
	return (uint8_t)(s * 131u + i * 7u + (i >> 8) * 13u + (i >> 16));
}

static inline void dg_large_fill(uint8_t *p, uint32_t len, uint32_t s)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		p[i] = dg_large_pat(s, i);
}

/* The first byte where p differs from the pattern of seed s, or len. */
static inline uint32_t dg_large_check(const uint8_t *p, uint32_t len,
				      uint32_t s)
{
	uint32_t i;

	for (i = 0; i < len; i++)
		if (p[i] != dg_large_pat(s, i))
			return i;
	return len;
}

struct dg_large_run {
	uint32_t done;	 /* answered OK and intact, each once */
	uint32_t eagain; /* -EAGAIN from dg_call (ring or payload area) */
	uint32_t busy;	 /* BUSY answers (the message sent again) */
	int err;	 /* 0, or what went wrong (a negative errno, or
			    EPROTO: a wrong, duplicated or corrupt answer) */
};

/*
 * n echo calls of len bytes (message i has seed i) on conn of f, window
 * in flight, for at most timeout_s seconds: a message answered BUSY is
 * sent again. Stops at the first wrong answer (r.err).
 */
static inline struct dg_large_run
dg_large_pressure(struct dg_flow *f, int conn, uint16_t fn, uint32_t n,
		  uint32_t len, uint32_t window, int timeout_s)
{
	enum { MAXWIN = 64 };
	/* The calls out: each id with its message, found by id. */
	struct {
		uint32_t id, seq;
		bool used;
	} out[MAXWIN] = {{0}};
	struct dg_large_run r = {0};
	bool *answered = calloc(n, sizeof(*answered));
	uint8_t *buf = malloc(len);
	uint32_t again[MAXWIN], nagain = 0, next = 0, nout = 0, i, j;
	time_t until = time(NULL) + timeout_s;

	if (!answered || !buf || window > MAXWIN) {
		r.err = -ENOMEM;
		goto done;
	}
	while (r.done < n && time(NULL) < until && !r.err) {
		struct dg_completion c[4];
		int k, rc;

		if ((nagain || next < n) && nout < window) {
			uint32_t seq = nagain ? again[nagain - 1] : next, id;

			dg_large_fill(buf, len, seq);
			rc = dg_call(f, conn, fn, buf, len, &id);
			if (rc == -EAGAIN) {
				r.eagain++;
			} else if (rc) {
				r.err = rc;
				break;
			} else {
				for (j = 0; out[j].used; j++)
					;
				out[j].id = id;
				out[j].seq = seq;
				out[j].used = true;
				nout++;
				if (nagain)
					nagain--;
				else
					next++;
			}
		}
		k = dg_poll(f, c, 4);
		if (k < 0) {
			r.err = k;
			break;
		}
		for (i = 0; i < (uint32_t)k; i++) {
			uint32_t seq;

			for (j = 0; j < window; j++)
				if (out[j].used && out[j].id == c[i].rpc_id)
					break;
			if (j == window) {
				r.err = EPROTO; /* not a call of ours out */
				break;
			}
			seq = out[j].seq;
			out[j].used = false;
			nout--;
			if (c[i].status == DG_ST_BUSY) {
				r.busy++;
				again[nagain++] = seq;
				continue;
			}
			if (answered[seq] || c[i].status || c[i].len != len ||
			    dg_large_check(c[i].data, len, seq) != len) {
				r.err = EPROTO;
				break;
			}
			answered[seq] = true;
			r.done++;
		}
	}
done:
	free(answered);
	free(buf);
	return r;
}

#endif
