// SPDX-License-Identifier: MIT
/*
 * dg_json.c - the JSON reader and writer of dg_json.h: a recursive-descent
 * parser with a depth bound (so no input can exhaust the stack) and a
 * growable output buffer with a size bound.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dg_json.h"

struct rd {
	const char *s;
	size_t len, pos;
	char *err;
	size_t errlen;
	int rc;
};

static int bad(struct rd *r, const char *why)
{
	if (!r->rc) {
		r->rc = -EINVAL;
		if (r->errlen)
			snprintf(r->err, r->errlen, "%s at byte %zu", why,
				 r->pos);
	}
	return r->rc;
}

static void ws(struct rd *r)
{
	while (r->pos < r->len &&
	       (r->s[r->pos] == ' ' || r->s[r->pos] == '\t' ||
		r->s[r->pos] == '\n' || r->s[r->pos] == '\r'))
		r->pos++;
}

static struct dg_json *node(struct rd *r, enum dg_json_type t)
{
	struct dg_json *j = calloc(1, sizeof(*j));

	if (!j && !r->rc)
		r->rc = -ENOMEM;
	if (j)
		j->type = t;
	return j;
}

static int hex4(struct rd *r, uint32_t *v)
{
	uint32_t i, x = 0;

	if (r->len - r->pos < 4)
		return bad(r, "short \\u escape");
	for (i = 0; i < 4; i++) {
		char c = r->s[r->pos++];

		x <<= 4;
		if (c >= '0' && c <= '9')
			x |= (uint32_t)(c - '0');
		else if (c >= 'a' && c <= 'f')
			x |= (uint32_t)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			x |= (uint32_t)(c - 'A' + 10);
		else
			return bad(r, "bad \\u escape");
	}
	*v = x;
	return 0;
}

static void put_utf8(char *d, size_t *k, uint32_t cp)
{
	if (cp < 0x80) {
		d[(*k)++] = (char)cp;
	} else if (cp < 0x800) {
		d[(*k)++] = (char)(0xc0 | cp >> 6);
		d[(*k)++] = (char)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		d[(*k)++] = (char)(0xe0 | cp >> 12);
		d[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		d[(*k)++] = (char)(0x80 | (cp & 0x3f));
	} else {
		d[(*k)++] = (char)(0xf0 | cp >> 18);
		d[(*k)++] = (char)(0x80 | ((cp >> 12) & 0x3f));
		d[(*k)++] = (char)(0x80 | ((cp >> 6) & 0x3f));
		d[(*k)++] = (char)(0x80 | (cp & 0x3f));
	}
}

/* A string at r->pos (its opening quote); malloc'd, NUL-terminated. */
static char *string(struct rd *r)
{
	size_t start, k = 0;
	char *d;

	r->pos++; /* the quote */
	start = r->pos;
	/* Escapes only shrink: the raw length bounds the decoded one. */
	while (r->pos < r->len && r->s[r->pos] != '"') {
		if (r->s[r->pos] == '\\')
			r->pos++;
		r->pos++;
	}
	if (r->pos >= r->len) {
		bad(r, "unterminated string");
		return NULL;
	}
	d = malloc(r->pos - start + 1);
	if (!d) {
		r->rc = -ENOMEM;
		return NULL;
	}
	r->pos = start;
	while (r->s[r->pos] != '"') {
		unsigned char c = (unsigned char)r->s[r->pos++];
		uint32_t cp, lo;

		if (c < 0x20) {
			bad(r, "control character in a string");
			goto fail;
		}
		if (c != '\\') {
			d[k++] = (char)c;
			continue;
		}
		c = (unsigned char)r->s[r->pos++];
		switch (c) {
		case '"':
		case '\\':
		case '/':
			d[k++] = (char)c;
			break;
		case 'b':
			d[k++] = '\b';
			break;
		case 'f':
			d[k++] = '\f';
			break;
		case 'n':
			d[k++] = '\n';
			break;
		case 'r':
			d[k++] = '\r';
			break;
		case 't':
			d[k++] = '\t';
			break;
		case 'u':
			if (hex4(r, &cp))
				goto fail;
			if (cp >= 0xd800 && cp < 0xdc00) {
				if (r->len - r->pos < 6 ||
				    r->s[r->pos] != '\\' ||
				    r->s[r->pos + 1] != 'u') {
					bad(r, "lone surrogate");
					goto fail;
				}
				r->pos += 2;
				if (hex4(r, &lo))
					goto fail;
				if (lo < 0xdc00 || lo > 0xdfff) {
					bad(r, "bad surrogate pair");
					goto fail;
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				bad(r, "lone surrogate");
				goto fail;
			}
			if (!cp) {
				bad(r, "NUL in a string");
				goto fail;
			}
			put_utf8(d, &k, cp);
			break;
		default:
			bad(r, "bad escape");
			goto fail;
		}
	}
	r->pos++;
	d[k] = 0;
	return d;
fail:
	free(d);
	return NULL;
}

static struct dg_json *value(struct rd *r, int depth);

static int number(struct rd *r, struct dg_json *j)
{
	size_t start = r->pos;
	bool integer = true;
	char buf[64], *end;

	if (r->s[r->pos] == '-') {
		integer = false;
		r->pos++;
	}
	if (r->pos >= r->len || r->s[r->pos] < '0' || r->s[r->pos] > '9')
		return bad(r, "bad number");
	if (r->s[r->pos] == '0' && r->pos + 1 < r->len &&
	    r->s[r->pos + 1] >= '0' && r->s[r->pos + 1] <= '9')
		return bad(r, "leading zero in a number");
	while (r->pos < r->len && r->s[r->pos] >= '0' && r->s[r->pos] <= '9')
		r->pos++;
	if (r->pos < r->len && r->s[r->pos] == '.') {
		integer = false;
		r->pos++;
		if (r->pos >= r->len || r->s[r->pos] < '0' ||
		    r->s[r->pos] > '9')
			return bad(r, "bad number");
		while (r->pos < r->len && r->s[r->pos] >= '0' &&
		       r->s[r->pos] <= '9')
			r->pos++;
	}
	if (r->pos < r->len && (r->s[r->pos] == 'e' || r->s[r->pos] == 'E')) {
		integer = false;
		r->pos++;
		if (r->pos < r->len &&
		    (r->s[r->pos] == '+' || r->s[r->pos] == '-'))
			r->pos++;
		if (r->pos >= r->len || r->s[r->pos] < '0' ||
		    r->s[r->pos] > '9')
			return bad(r, "bad number");
		while (r->pos < r->len && r->s[r->pos] >= '0' &&
		       r->s[r->pos] <= '9')
			r->pos++;
	}
	if (r->pos - start >= sizeof(buf))
		return bad(r, "number too long");
	memcpy(buf, r->s + start, r->pos - start);
	buf[r->pos - start] = 0;
	j->num = strtod(buf, NULL);
	if (integer) {
		errno = 0;
		j->u = strtoull(buf, &end, 10);
		j->is_uint = !errno && !*end;
	}
	return 0;
}

static bool word(struct rd *r, const char *w)
{
	size_t n = strlen(w);

	if (r->len - r->pos < n || memcmp(r->s + r->pos, w, n))
		return false;
	r->pos += n;
	return true;
}

static struct dg_json *members(struct rd *r, struct dg_json *j, int depth,
			       bool obj)
{
	struct dg_json **tail = &j->child;
	char close = obj ? '}' : ']';

	r->pos++;
	ws(r);
	if (r->pos < r->len && r->s[r->pos] == close) {
		r->pos++;
		return j;
	}
	for (;;) {
		char *key = NULL;
		struct dg_json *c;

		ws(r);
		if (obj) {
			if (r->pos >= r->len || r->s[r->pos] != '"') {
				bad(r, "expected a member name");
				return j;
			}
			key = string(r);
			if (!key)
				return j;
			ws(r);
			if (r->pos >= r->len || r->s[r->pos] != ':') {
				free(key);
				bad(r, "expected ':'");
				return j;
			}
			r->pos++;
		}
		c = value(r, depth + 1);
		if (!c) {
			free(key);
			return j;
		}
		c->key = key;
		*tail = c;
		tail = &c->next;
		j->n++;
		if (r->rc)
			return j;
		ws(r);
		if (r->pos < r->len && r->s[r->pos] == ',') {
			r->pos++;
			continue;
		}
		if (r->pos < r->len && r->s[r->pos] == close) {
			r->pos++;
			return j;
		}
		bad(r, obj ? "expected ',' or '}'" : "expected ',' or ']'");
		return j;
	}
}

static struct dg_json *value(struct rd *r, int depth)
{
	struct dg_json *j;
	char c;

	ws(r);
	if (r->pos >= r->len) {
		bad(r, "unexpected end");
		return NULL;
	}
	if (depth > DG_JSON_DEPTH) {
		bad(r, "nested too deep");
		return NULL;
	}
	c = r->s[r->pos];
	switch (c) {
	case '{':
	case '[':
		j = node(r, c == '{' ? DG_JSON_OBJ : DG_JSON_ARR);
		return j ? members(r, j, depth, c == '{') : NULL;
	case '"':
		j = node(r, DG_JSON_STR);
		if (j && !(j->str = string(r))) {
			free(j);
			return NULL;
		}
		return j;
	case 't':
	case 'f':
		j = node(r, DG_JSON_BOOL);
		if (!j)
			return NULL;
		j->b = c == 't';
		if (!word(r, j->b ? "true" : "false"))
			bad(r, "bad literal");
		return j;
	case 'n':
		j = node(r, DG_JSON_NULL);
		if (j && !word(r, "null"))
			bad(r, "bad literal");
		return j;
	default:
		j = node(r, DG_JSON_NUM);
		if (j)
			number(r, j);
		return j;
	}
}

int dg_json_parse(const char *s, size_t len, struct dg_json **out, char *err,
		  size_t errlen)
{
	struct rd r = {.s = s, .len = len, .err = err, .errlen = errlen};
	struct dg_json *j;

	if (errlen)
		err[0] = 0;
	*out = NULL;
	j = value(&r, 0);
	if (!r.rc) {
		ws(&r);
		if (r.pos < r.len)
			bad(&r, "trailing characters");
	}
	if (r.rc) {
		dg_json_free(j);
		if (r.rc == -ENOMEM && errlen)
			snprintf(err, errlen, "out of memory");
		return r.rc;
	}
	*out = j;
	return 0;
}

void dg_json_free(struct dg_json *j)
{
	while (j) {
		struct dg_json *next = j->next;

		dg_json_free(j->child);
		free(j->key);
		free(j->str);
		free(j);
		j = next;
	}
}

const struct dg_json *dg_json_get(const struct dg_json *o, const char *key)
{
	const struct dg_json *c;

	if (!o || o->type != DG_JSON_OBJ)
		return NULL;
	for (c = o->child; c; c = c->next)
		if (!strcmp(c->key, key))
			return c;
	return NULL;
}

const char *dg_json_str(const struct dg_json *o, const char *key)
{
	const struct dg_json *c = dg_json_get(o, key);

	return c && c->type == DG_JSON_STR ? c->str : NULL;
}

uint64_t dg_json_uint(const struct dg_json *o, const char *key, uint64_t def)
{
	const struct dg_json *c = dg_json_get(o, key);

	return c && c->type == DG_JSON_NUM && c->is_uint ? c->u : def;
}

double dg_json_num(const struct dg_json *o, const char *key, double def)
{
	const struct dg_json *c = dg_json_get(o, key);

	return c && c->type == DG_JSON_NUM ? c->num : def;
}

/* ---- writer ---------------------------------------------------------------
 */

void dg_buf_init(struct dg_buf *b, size_t max)
{
	memset(b, 0, sizeof(*b));
	b->max = max;
}

void dg_buf_free(struct dg_buf *b)
{
	free(b->p);
	memset(b, 0, sizeof(*b));
}

void dg_buf_reset(struct dg_buf *b)
{
	b->len = 0;
	b->err = 0;
	if (b->p)
		b->p[0] = 0;
}

static bool grow(struct dg_buf *b, size_t n)
{
	size_t cap;
	char *p;

	if (b->err)
		return false;
	if (b->len + n + 1 <= b->cap)
		return true;
	if (b->max && b->len + n + 1 > b->max) {
		b->err = -E2BIG;
		return false;
	}
	cap = b->cap ? b->cap : 256;
	while (cap < b->len + n + 1)
		cap *= 2;
	if (b->max && cap > b->max)
		cap = b->max;
	p = realloc(b->p, cap);
	if (!p) {
		b->err = -ENOMEM;
		return false;
	}
	b->p = p;
	b->cap = cap;
	return true;
}

void dg_buf_add(struct dg_buf *b, const void *p, size_t n)
{
	if (!grow(b, n))
		return;
	memcpy(b->p + b->len, p, n);
	b->len += n;
	b->p[b->len] = 0;
}

void dg_buf_printf(struct dg_buf *b, const char *fmt, ...)
{
	va_list ap;
	int k;

	va_start(ap, fmt);
	k = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (k < 0 || !grow(b, (size_t)k))
		return;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)k + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)k;
}

void dg_buf_jstr(struct dg_buf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;

	dg_buf_add(b, "\"", 1);
	for (; *p; p++) {
		if (*p == '"' || *p == '\\') {
			char e[2] = {'\\', (char)*p};

			dg_buf_add(b, e, 2);
		} else if (*p < 0x20) {
			dg_buf_printf(b, "\\u%04x", *p);
		} else {
			dg_buf_add(b, p, 1);
		}
	}
	dg_buf_add(b, "\"", 1);
}
