/* SPDX-License-Identifier: MIT */
/*
 * fz_raw.h - a host region driven by hand, for the engine's fuzz harnesses:
 * the harness writes frames into its TX rings and reads what the engine
 * wrote into its RX rings, on the thread that drives the engine. What the
 * engine writes is checked strictly (fz_raw_recv): a frame the engine
 * publishes must be a whole, well-formed message; anything else aborts.
 */
#ifndef DG_FZ_RAW_H
#define DG_FZ_RAW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dagger/ctrl.h"
#include "dagger/ring.h"

#define FZ_MAX_FLOWS DG_MAX_FLOWS

struct fz_raw {
	uint8_t *region;
	uint64_t size;
	struct dg_region_layout lay;
	uint32_t nflows, slots, mask, rflags;
	int tenant;
	bool owned;			 /* region allocated by fz_raw_init */
	uint32_t tx[FZ_MAX_FLOWS];	 /* next TX position to write */
	uint32_t rx[FZ_MAX_FLOWS];	 /* next RX position to read */
	uint32_t rx_freed[FZ_MAX_FLOWS]; /* RX released below this */
};

/* A message as read back from an RX ring. */
struct fz_msg {
	struct dg_frame h; /* first frame (header and first 32 bytes) */
	uint8_t *data;	   /* len bytes, in the caller's buffer */
	uint32_t len;
};

/* Allocates and lays out a zeroed region (header written). 0 or -errno. */
int fz_raw_init(struct fz_raw *r, uint32_t nflows, uint32_t slots,
		unsigned rflags);
/*
 * The same over memory the caller owns (zeroed, at least the layout's
 * bytes): fz_raw_free() then leaves it alone.
 */
int fz_raw_wrap(struct fz_raw *r, void *region, uint32_t nflows, uint32_t slots,
		unsigned rflags);
void fz_raw_free(struct fz_raw *r);

static inline struct dg_flow_ctrl *fz_ctrl(struct fz_raw *r, uint32_t f)
{
	return (struct dg_flow_ctrl *)(r->region + dg_ctrl_off(&r->lay, f));
}

static inline struct dg_frame *fz_tx_slot(struct fz_raw *r, uint32_t f,
					  uint32_t pos)
{
	return (struct dg_frame *)(r->region + dg_tx_ring_off(&r->lay, f)) +
	       (pos & r->mask);
}

static inline struct dg_frame *fz_rx_slot(struct fz_raw *r, uint32_t f,
					  uint32_t pos)
{
	return (struct dg_frame *)(r->region + dg_rx_ring_off(&r->lay, f)) +
	       (pos & r->mask);
}

/* TX slots the engine has freed (by the tx_head it stored). */
uint32_t fz_raw_tx_room(struct fz_raw *r, uint32_t f);

/*
 * Writes one whole message of len bytes (cnt = dg_frames_for(len)) into
 * flow f's TX ring and publishes it as the host library does. -EAGAIN: no
 * room; -EMSGSIZE: longer than the ring.
 */
int fz_raw_send(struct fz_raw *r, uint32_t f, uint8_t flags, uint8_t status,
		uint32_t rpc_id, uint32_t conn, uint16_t fn, const void *data,
		uint32_t len);

/*
 * Writes one slot's 64 bytes as they come at flow f's next TX position,
 * room permitting (-EAGAIN). seal: 0 leaves stamp and checksum as given,
 * 1 seals it as a first frame, 2 as a continuation frame.
 */
int fz_raw_put_slot(struct fz_raw *r, uint32_t f, const void *slot, int seal);

/*
 * Reads the next message the engine published in flow f's RX ring into m
 * (payload into buf, DG_MAX_MSG bytes). 1: a message; 0: none yet. Aborts
 * when the engine published something that is not a whole, valid message.
 */
int fz_raw_recv(struct fz_raw *r, uint32_t f, struct fz_msg *m, uint8_t *buf);

/* Tells the engine flow f's RX slots up to what was read are free. */
void fz_raw_release(struct fz_raw *r, uint32_t f);

/* The first control reply with rpc_id in flow f (others are skipped). */
int fz_raw_ctrl_reply(struct fz_raw *r, uint32_t f, uint32_t rpc_id,
		      struct fz_msg *m, uint8_t *buf);

/* Called by fz_fail() before it aborts (e.g. to print engine counters). */
extern void (*fz_on_fail)(void);

/* Aborts with a message: a harness's invariant does not hold. */
void fz_fail(const char *fmt, ...)
	__attribute__((format(printf, 1, 2), noreturn));

#endif
