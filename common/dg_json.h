/* SPDX-License-Identifier: MIT */
/*
 * dg_json.h - a small JSON reader and writer for the engine's control
 * protocol (nic/ctl.c) and dagger-ctl. Not part of libdagger's API.
 *
 * The reader builds a tree of nodes from one JSON text (RFC 8259) and
 * refuses anything else with a reason: trailing bytes, nesting deeper
 * than DG_JSON_DEPTH, bad escapes, control characters in strings, and
 * strings holding NUL. Integers from 0 to 2^64-1 are kept exact (u, with
 * is_uint set); every number also has its double value.
 *
 * The writer is a growable buffer (dg_buf) with printf and escaped
 * strings; it refuses to grow past its limit (err set, output cut).
 */
#ifndef DG_JSON_H
#define DG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DG_JSON_DEPTH 32

enum dg_json_type {
	DG_JSON_NULL,
	DG_JSON_BOOL,
	DG_JSON_NUM,
	DG_JSON_STR,
	DG_JSON_ARR,
	DG_JSON_OBJ,
};

struct dg_json {
	enum dg_json_type type;
	char *key; /* the member's name, inside an object */
	char *str; /* DG_JSON_STR */
	double num;
	uint64_t u;   /* exact value of a non-negative integer */
	bool is_uint; /* u holds the value */
	bool b;
	size_t n; /* children of an array or object */
	struct dg_json *child, *next;
};

/*
 * Parses len bytes. 0 and the tree in *out (dg_json_free), or -EINVAL
 * with the reason and its byte offset in err, or -ENOMEM.
 */
int dg_json_parse(const char *s, size_t len, struct dg_json **out, char *err,
		  size_t errlen);
void dg_json_free(struct dg_json *j);

/* The member key of object o, or NULL (o not an object, or no member). */
const struct dg_json *dg_json_get(const struct dg_json *o, const char *key);
/* Member key as a string, or NULL when missing or not a string. */
const char *dg_json_str(const struct dg_json *o, const char *key);
/* Member key as an unsigned integer, or def when missing or not one. */
uint64_t dg_json_uint(const struct dg_json *o, const char *key, uint64_t def);
/* Member key as a number, or def. */
double dg_json_num(const struct dg_json *o, const char *key, double def);

/* ---- writer ---------------------------------------------------------------
 */

struct dg_buf {
	char *p;
	size_t len, cap, max; /* max: 0 = no limit */
	int err;	      /* -ENOMEM or -E2BIG once it failed */
};

void dg_buf_init(struct dg_buf *b, size_t max);
void dg_buf_free(struct dg_buf *b);
void dg_buf_reset(struct dg_buf *b);
void dg_buf_add(struct dg_buf *b, const void *p, size_t n);
void dg_buf_printf(struct dg_buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* s as a JSON string, quotes included. */
void dg_buf_jstr(struct dg_buf *b, const char *s);

#endif /* DG_JSON_H */
