/* SPDX-License-Identifier: MIT */
/*
 * dagger/ring.h - publishing and accepting slots, the two halves of the
 * protocol that dagger/frame.h lays out. Used by the host library (TX
 * producer, RX consumer) and by the NIC engine (TX consumer, RX producer).
 */
#ifndef DAGGER_RING_H
#define DAGGER_RING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dagger/frame.h"

/* CRC32C (Castagnoli); SSE4.2 when the CPU has it, else a table. */
uint32_t dg_crc32c(uint32_t seed, const void *buf, size_t len);

/*
 * The checksum a first frame must carry for stamp: CRC32C over the stamp's
 * four bytes, then bytes 8..63. The stamp is checksummed as data, not
 * passed as the seed: a seed is only XORed into the first four bytes
 * covered (rpc_id), so the check would see stamp ^ rpc_id alone, and a
 * torn slot whose stamp and rpc_id have landed over an older lap (rpc ids
 * advance with positions) would keep its old checksum valid. Equal to
 * dg_crc32c(dg_crc32c(0, &stamp, 4), slot + 8, 56); one call, unrolled, on
 * the CRC32C instructions where the CPU has them.
 */
uint32_t dg_slot_csum(const void *slot, uint32_t stamp);
/* A continuation frame's: CRC32C over the stamp, then bytes 0..55. */
uint32_t dg_cont_csum(const void *slot, uint32_t stamp);

/*
 * DG_RING_F_CRC_INLINE: never a ring's flag, a build choice. A fast path
 * built with it as a constant computes the checksums above in line (x86-64:
 * the SSE4.2 CRC32 instruction, eight per slot) instead of calling them;
 * the library builds such an instance next to the portable one and lets
 * the program's loader pick it only on CPUs that have the instruction.
 * Elsewhere the flag changes nothing.
 */
#define DG_RING_F_CRC_INLINE (1u << 31)

#if defined(__x86_64__)
/* CRC32C over stamp, then the 56 bytes at p (not the instructions' CPU
 * check: the caller was chosen for a CPU that has them). */
static inline __attribute__((always_inline)) uint32_t
dg_csum56_inline(const void *p, uint32_t stamp)
{
	const uint8_t *b = (const uint8_t *)p;
	uint64_t c = 0xffffffffu;

	__asm__("crc32l %1, %k0" : "+r"(c) : "rm"(stamp));
	/* Written out: seven dependent instructions, no loop around them. */
#define DG_CRC_WORD(i)                                                         \
	do {                                                                   \
		uint64_t v_;                                                   \
		__builtin_memcpy(&v_, b + 8 * (i), 8);                         \
		__asm__("crc32q %1, %0" : "+r"(c) : "rm"(v_));                 \
	} while (0)
	DG_CRC_WORD(0);
	DG_CRC_WORD(1);
	DG_CRC_WORD(2);
	DG_CRC_WORD(3);
	DG_CRC_WORD(4);
	DG_CRC_WORD(5);
	DG_CRC_WORD(6);
#undef DG_CRC_WORD
	return ~(uint32_t)c;
}
#endif

static inline __attribute__((always_inline)) uint32_t
dg_slot_csum_as(const void *slot, uint32_t stamp, unsigned ring_flags)
{
#if defined(__x86_64__)
	if (ring_flags & DG_RING_F_CRC_INLINE)
		return dg_csum56_inline((const uint8_t *)slot + 8, stamp);
#endif
	(void)ring_flags;
	return dg_slot_csum(slot, stamp);
}

static inline __attribute__((always_inline)) uint32_t
dg_cont_csum_as(const void *slot, uint32_t stamp, unsigned ring_flags)
{
#if defined(__x86_64__)
	if (ring_flags & DG_RING_F_CRC_INLINE)
		return dg_csum56_inline(slot, stamp);
#endif
	(void)ring_flags;
	return dg_cont_csum(slot, stamp);
}

/*
 * Producer side: the slot's other bytes are already written in place.
 * Seals a first frame (dg_slot_publish) or a continuation frame
 * (dg_cont_publish) for free-running position pos. The release store of
 * the stamp orders every earlier store to the slot before it, so a
 * consumer that acquires the new stamp from the same memory (shared
 * memory) sees the whole frame; a remote copy that moves bytes in another
 * order is caught by the checksum instead.
 */
static inline void dg_slot_publish(struct dg_frame *s, uint32_t pos,
				   unsigned ring_flags)
{
	uint32_t stamp = dg_stamp(pos);

	if (ring_flags & DG_RING_F_CSUM)
		s->csum = dg_slot_csum_as(s, stamp, ring_flags);
	__atomic_store_n(&s->stamp, stamp, __ATOMIC_RELEASE);
}

static inline void dg_cont_publish(struct dg_frame_cont *s, uint32_t pos,
				   unsigned ring_flags)
{
	uint32_t stamp = dg_stamp(pos);

	if (ring_flags & DG_RING_F_CSUM)
		s->csum = dg_cont_csum_as(s, stamp, ring_flags);
	__atomic_store_n(&s->stamp, stamp, __ATOMIC_RELEASE);
}

/*
 * Stale continuation frames. Word 0 of a continuation frame is payload,
 * and a slot keeps its bytes after it is consumed: one lap later, when the
 * consumer looks for a first frame there, payload that happens to equal
 * (or was written to equal) the stamp of that position, with a checksum
 * to match, would pass for a frame nobody wrote. Two rules close it; each
 * leaves in word 0 the stamp of a first frame one lap back, which no
 * consumer accepts (frame.h):
 *
 *  - dg_ring_guard, the producer of a ring whose consumer may look past
 *    what was announced (the engine polling a TX ring): before it
 *    publishes a message that ends before position next, it stores that
 *    stamp into slot next, the consumer's next look. The slot is free (its
 *    previous lap consumed), or, when the ring is exactly full, the first
 *    frame of the oldest message, whose stamp is that value already. The
 *    release store of the message's stamp orders it first; a remote READ
 *    that moves bytes front to back reads it after the message.
 *  - dg_ring_scrub, the consumer: before it releases slots [from, to) to
 *    the producer (release store of its head), it stores that stamp into
 *    every one of them that held a continuation frame.
 *
 * Either one per ring suffices. RX rings: on checksummed rings (RDMA) the
 * host scrubs (a WRITE cannot fix a slot ahead of a message in the same
 * WRITE); on shared memory the engine, which writes the ring in place,
 * guards (its store is one per message, where the host's scrub would be
 * one per continuation frame it consumes, on the host's path). TX rings:
 * on RDMA the host guards (the engine cannot store into host memory
 * cheaply); on shared memory the engine scrubs the continuation frames it
 * consumed (a guard would store into the very line the engine polls next:
 * a cache-line transfer per call).
 */
static inline void dg_ring_guard(struct dg_frame *ring, uint32_t mask,
				 uint32_t next)
{
	__atomic_store_n(&ring[next & mask].stamp, dg_stamp(next - mask - 1),
			 __ATOMIC_RELAXED);
}

static inline void dg_ring_scrub(struct dg_frame *ring, uint32_t mask,
				 uint32_t from, uint32_t to)
{
	for (; from != to; from++)
		__atomic_store_n(&ring[from & mask].stamp,
				 dg_stamp(from - mask - 1), __ATOMIC_RELAXED);
}

/*
 * Consumer side: true when the slot holds a complete first frame
 * (dg_slot_ready) or continuation frame (dg_cont_ready) for position pos.
 * The acquire load of the stamp orders the loads of the frame's other
 * bytes after it (shared memory: those bytes were stored before the
 * producer's release). With DG_RING_F_CSUM a slot whose stamp is new but
 * whose bytes are not all there yet fails the checksum and is reported as
 * not ready; the caller retries it later, it is not an error.
 */
static inline bool dg_slot_ready(const struct dg_frame *s, uint32_t pos,
				 unsigned ring_flags)
{
	uint32_t stamp = __atomic_load_n(&s->stamp, __ATOMIC_ACQUIRE);

	if (stamp != dg_stamp(pos))
		return false;
	if (!(ring_flags & DG_RING_F_CSUM))
		return true;
	return s->csum == dg_slot_csum_as(s, stamp, ring_flags);
}

static inline bool dg_cont_ready(const struct dg_frame_cont *s, uint32_t pos,
				 unsigned ring_flags)
{
	uint32_t stamp = __atomic_load_n(&s->stamp, __ATOMIC_ACQUIRE);

	if (stamp != dg_stamp(pos))
		return false;
	if (!(ring_flags & DG_RING_F_CSUM))
		return true;
	return s->csum == dg_cont_csum_as(s, stamp, ring_flags);
}

#endif /* DAGGER_RING_H */
