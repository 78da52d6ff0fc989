/* SPDX-License-Identifier: MIT */
/*
 * fuzz_util.h - reading a fuzz input as a stream of choices: every read
 * past the end gives zeros, so any input is a complete script.
 */
#ifndef DG_FUZZ_UTIL_H
#define DG_FUZZ_UTIL_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct fz_in {
	const uint8_t *p;
	size_t n;
};

static inline size_t fz_left(const struct fz_in *in)
{
	return in->n;
}

static inline void fz_bytes(struct fz_in *in, void *out, size_t k)
{
	size_t t = k < in->n ? k : in->n;

	memcpy(out, in->p, t);
	memset((uint8_t *)out + t, 0, k - t);
	in->p += t;
	in->n -= t;
}

static inline uint8_t fz_u8(struct fz_in *in)
{
	uint8_t v;

	fz_bytes(in, &v, 1);
	return v;
}

static inline uint16_t fz_u16(struct fz_in *in)
{
	uint16_t v;

	fz_bytes(in, &v, 2);
	return v;
}

static inline uint32_t fz_u32(struct fz_in *in)
{
	uint32_t v;

	fz_bytes(in, &v, 4);
	return v;
}

#endif
