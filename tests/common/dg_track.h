/* SPDX-License-Identifier: MIT */
/*
 * dg_track.h - book-keeping for tests that make many asynchronous calls
 * and must notice a duplicate, a loss or wrong bytes, not just count
 * answers (a duplicate plus a loss adds up to the right count).
 *
 * A test makes n logical calls, numbered 0..n-1 (a call answered BUSY is
 * sent again under a new rpc id, as the same logical call). Each request's
 * payload is derived from its number and length (dg_track_fill: the
 * number in its first bytes, then a pseudo-random stream seeded by both),
 * so an echo carrying another call's bytes is caught. Every rpc id in
 * flight has a slot (by rpc id modulo the table size, which must exceed
 * the window): an answer must match a slot in flight, and a logical call
 * completes once.
 */
#ifndef DG_TEST_TRACK_H
#define DG_TEST_TRACK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dagger/dagger.h"

#define DG_TRACK_SLOTS 4096u /* rpc ids in flight at most (power of two) */

enum dg_track_verdict {
	DG_TRACK_OK,	  /* right status, length and bytes */
	DG_TRACK_BUSY,	  /* answered BUSY: send the logical call again */
	DG_TRACK_STATUS,  /* another status: the call failed */
	DG_TRACK_UNKNOWN, /* no call in flight has this rpc id */
	DG_TRACK_DUP,	  /* its logical call had completed already */
	DG_TRACK_CORRUPT, /* status OK, wrong length or bytes */
};

struct dg_track_slot {
	bool live;
	uint32_t rpc, seq, len;
};

struct dg_track {
	uint32_t n;    /* logical calls */
	uint8_t *done; /* per logical call: completed */
	struct dg_track_slot slot[DG_TRACK_SLOTS];
	uint64_t ok, busy, failed, unknown, dup, corrupt, inflight;
	int last_status; /* of the last DG_TRACK_STATUS */
};

/* The payload of logical call seq, len bytes. */
static inline void dg_track_fill(uint8_t *p, uint32_t len, uint32_t seq)
{
	uint32_t x = seq * 2654435761u ^ (len * 40503u) ^ 0x9e3779b9u, i;

	for (i = 0; i < len; i++) {
		if (i < 4) {
			p[i] = (uint8_t)(seq >> (8 * i));
			continue;
		}
		x ^= x << 13;
		x ^= x >> 17;
		x ^= x << 5;
		p[i] = (uint8_t)x;
	}
}

/* Whether p (len bytes) is logical call seq's payload of len bytes. */
static inline bool dg_track_check(const uint8_t *p, uint32_t len, uint32_t seq)
{
	uint32_t x = seq * 2654435761u ^ (len * 40503u) ^ 0x9e3779b9u, i;

	for (i = 0; i < len; i++) {
		uint8_t want;

		if (i < 4) {
			want = (uint8_t)(seq >> (8 * i));
		} else {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			want = (uint8_t)x;
		}
		if (p[i] != want)
			return false;
	}
	return true;
}

/* 0, or -ENOMEM. */
static inline int dg_track_init(struct dg_track *t, uint32_t n)
{
	memset(t, 0, sizeof(*t));
	t->n = n;
	t->done = calloc(n ? n : 1, 1);
	return t->done ? 0 : -ENOMEM;
}

static inline void dg_track_free(struct dg_track *t)
{
	free(t->done);
	t->done = NULL;
}

/*
 * Call seq of len bytes went out as rpc. false: its slot is still in
 * flight (the window is larger than DG_TRACK_SLOTS: a test bug).
 */
static inline bool dg_track_sent(struct dg_track *t, uint32_t rpc, uint32_t seq,
				 uint32_t len)
{
	struct dg_track_slot *s = &t->slot[rpc % DG_TRACK_SLOTS];

	if (s->live)
		return false;
	*s = (struct dg_track_slot){true, rpc, seq, len};
	t->inflight++;
	return true;
}

/*
 * An answer. *seq gets its logical call (for DG_TRACK_BUSY, the one to
 * send again). Counts every verdict.
 */
static inline enum dg_track_verdict
dg_track_answer(struct dg_track *t, const struct dg_completion *c,
		uint32_t *seq)
{
	struct dg_track_slot *s = &t->slot[c->rpc_id % DG_TRACK_SLOTS];

	if (!s->live || s->rpc != c->rpc_id) {
		t->unknown++;
		return DG_TRACK_UNKNOWN;
	}
	s->live = false;
	t->inflight--;
	*seq = s->seq;
	if (s->seq >= t->n || t->done[s->seq]) {
		t->dup++;
		return DG_TRACK_DUP;
	}
	if (c->status == DG_ST_BUSY) {
		t->busy++;
		return DG_TRACK_BUSY;
	}
	t->done[s->seq] = 1;
	if (c->status) {
		t->failed++;
		t->last_status = c->status;
		return DG_TRACK_STATUS;
	}
	if (c->len != s->len || !dg_track_check(c->data, c->len, s->seq)) {
		t->corrupt++;
		return DG_TRACK_CORRUPT;
	}
	t->ok++;
	return DG_TRACK_OK;
}

/* Logical calls that never completed. */
static inline uint64_t dg_track_lost(const struct dg_track *t)
{
	uint64_t lost = 0;
	uint32_t i;

	for (i = 0; i < t->n; i++)
		lost += !t->done[i];
	return lost;
}

#endif
