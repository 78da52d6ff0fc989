// SPDX-License-Identifier: MIT
/*
 * The deployment description parser (include/dagger/deploy.h). libyaml
 * builds the node tree; this file checks it against the schema (every
 * key known, every value of its type and range, names unique, references
 * resolved) and reports the first problem as "FILE:LINE: reason", with
 * the line of the offending node (libyaml's marks are 0-based).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>

#include "dagger/ctrl.h"
#include "dagger/dagger.h"
#include "dagger/deploy.h"
#include "dagger/frame.h"

struct ctx {
	yaml_document_t doc;
	const char *label;
	char *err;
	size_t errlen;
	struct dg_deploy *d;
};

#define NF(a) (sizeof(a) / sizeof((a)[0]))

/* One key a mapping may hold, and what was found for it. */
struct field {
	const char *key;
	yaml_node_t *val;
	int line;
};

static int line_of(const yaml_node_t *n)
{
	return n ? (int)n->start_mark.line + 1 : 0;
}

static int fail(struct ctx *c, const yaml_node_t *n, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct ctx *c, const yaml_node_t *n, const char *fmt, ...)
{
	int k = snprintf(c->err, c->errlen, "%s:%d: ", c->label, line_of(n));
	va_list ap;

	if (k >= 0 && (size_t)k < c->errlen) {
		va_start(ap, fmt);
		vsnprintf(c->err + k, c->errlen - (size_t)k, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static const char *type_name(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "a single value";
	case YAML_SEQUENCE_NODE:
		return "a list";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

static const char *scalar(const yaml_node_t *n)
{
	return (const char *)n->data.scalar.value;
}

static yaml_node_t *node(struct ctx *c, int id)
{
	return yaml_document_get_node(&c->doc, id);
}

/*
 * Matches the keys of mapping map against f[0..nf-1]; an unknown or
 * repeated key is an error. what names the mapping in messages.
 */
static int get_fields(struct ctx *c, yaml_node_t *map, const char *what,
		      struct field *f, size_t nf)
{
	yaml_node_pair_t *p;
	size_t i;

	if (map->type != YAML_MAPPING_NODE)
		return fail(c, map, "%s must be a mapping (key: value), not %s",
			    what, type_name(map));
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
		char known[256] = "";
		size_t len = 0;

		if (k->type != YAML_SCALAR_NODE)
			return fail(c, k, "%s: a key must be a single word",
				    what);
		for (i = 0; i < nf; i++)
			if (!strcmp(f[i].key, scalar(k)))
				break;
		if (i < nf && f[i].val)
			return fail(
				c, k,
				"%s: duplicate key \"%s\" (first at line %d)",
				what, scalar(k), f[i].line);
		if (i < nf) {
			f[i].val = v;
			f[i].line = line_of(k);
			continue;
		}
		for (i = 0; i < nf && len < sizeof(known); i++) {
			int w = snprintf(known + len, sizeof(known) - len,
					 "%s%s", i ? ", " : "", f[i].key);

			if (w > 0)
				len += (size_t)w;
		}
		return fail(c, k, "%s: unknown key \"%s\" (known: %s)", what,
			    scalar(k), known);
	}
	return 0;
}

static int need(struct ctx *c, yaml_node_t *map, const char *what,
		const struct field *f)
{
	if (f->val)
		return 0;
	return fail(c, map, "%s: missing required key \"%s\"", what, f->key);
}

static int want_scalar(struct ctx *c, const struct field *f, const char *what,
		       const char *kind)
{
	if (f->val->type == YAML_SCALAR_NODE)
		return 0;
	return fail(c, f->val, "%s: \"%s\" must be %s, not %s", what, f->key,
		    kind, type_name(f->val));
}

/* A non-empty string without control characters; *out is malloc'd. */
static int get_str(struct ctx *c, const struct field *f, const char *what,
		   char **out)
{
	const char *s;
	int rc;

	if (!f->val)
		return 0;
	rc = want_scalar(c, f, what, "a string");
	if (rc)
		return rc;
	s = scalar(f->val);
	if (!*s)
		return fail(c, f->val, "%s: \"%s\" must not be empty", what,
			    f->key);
	for (const char *p = s; *p; p++)
		if ((unsigned char)*p < 0x20 && *p != '\t')
			return fail(c, f->val,
				    "%s: \"%s\" holds a control character",
				    what, f->key);
	*out = strdup(s);
	return *out ? 0 : -ENOMEM;
}

/* Names end up in file names and command lines: a safe alphabet. */
static int get_name(struct ctx *c, const struct field *f, const char *what,
		    char **out)
{
	const char *s;
	int rc = get_str(c, f, what, out);

	if (rc || !*out)
		return rc;
	s = *out;
	if (strlen(s) >= DG_DEPLOY_NAME_MAX)
		return fail(c, f->val,
			    "%s: \"%s\" is longer than %d characters", what,
			    f->key, DG_DEPLOY_NAME_MAX - 1);
	if (s[0] == '.' || s[0] == '-')
		return fail(c, f->val,
			    "%s: \"%s\" must not start with '.' or '-': \"%s\"",
			    what, f->key, s);
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_' || *s == '-' ||
		      *s == '.'))
			return fail(c, f->val,
				    "%s: \"%s\" may hold only letters, digits, "
				    "'_', '-' and '.': \"%s\"",
				    what, f->key, *out);
	return 0;
}

static int get_uint(struct ctx *c, const struct field *f, const char *what,
		    uint64_t min, uint64_t max, uint64_t *out)
{
	const char *s;
	char *end;
	uint64_t v;
	int rc;

	if (!f->val)
		return 0;
	rc = want_scalar(c, f, what, "a number");
	if (rc)
		return rc;
	s = scalar(f->val);
	errno = 0;
	v = strtoull(s, &end, 10);
	if (*s < '0' || *s > '9' || *end || errno)
		return fail(c, f->val,
			    "%s: \"%s\" must be a number, not \"%s\"", what,
			    f->key, s);
	if (v < min || v > max)
		return fail(c, f->val,
			    "%s: \"%s\" is %llu, out of range %llu..%llu", what,
			    f->key, (unsigned long long)v,
			    (unsigned long long)min, (unsigned long long)max);
	*out = v;
	return 0;
}

static int get_bool(struct ctx *c, const struct field *f, const char *what,
		    bool *out)
{
	static const char *const yes[] = {"true", "yes", "on"};
	static const char *const no[] = {"false", "no", "off"};
	const char *s;
	size_t i;
	int rc;

	if (!f->val)
		return 0;
	rc = want_scalar(c, f, what, "true or false");
	if (rc)
		return rc;
	s = scalar(f->val);
	for (i = 0; i < 3; i++) {
		if (!strcasecmp(s, yes[i])) {
			*out = true;
			return 0;
		}
		if (!strcasecmp(s, no[i])) {
			*out = false;
			return 0;
		}
	}
	return fail(c, f->val, "%s: \"%s\" must be true or false, not \"%s\"",
		    what, f->key, s);
}

static int get_addr(struct ctx *c, const struct field *f, const char *what,
		    char **out)
{
	unsigned char buf[sizeof(struct in6_addr)];
	int rc = get_str(c, f, what, out);

	if (rc || !*out)
		return rc;
	if (inet_pton(AF_INET, *out, buf) != 1 &&
	    inet_pton(AF_INET6, *out, buf) != 1)
		return fail(
			c, f->val,
			"%s: \"%s\" must be a numeric IPv4 or IPv6 address, "
			"not \"%s\"",
			what, f->key, *out);
	return 0;
}

static void argv_free(char **v)
{
	if (!v)
		return;
	for (char **p = v; *p; p++)
		free(*p);
	free(v);
}

/* A list of strings, NULL-terminated; *n gets the count. */
static int get_strv(struct ctx *c, const struct field *f, const char *what,
		    char ***out, size_t *n)
{
	yaml_node_item_t *it;
	size_t cnt, i = 0;
	char **v;

	if (!f->val)
		return 0;
	if (f->val->type != YAML_SEQUENCE_NODE)
		return fail(c, f->val, "%s: \"%s\" must be a list, not %s",
			    what, f->key, type_name(f->val));
	cnt = (size_t)(f->val->data.sequence.items.top -
		       f->val->data.sequence.items.start);
	v = calloc(cnt + 1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (it = f->val->data.sequence.items.start;
	     it < f->val->data.sequence.items.top; it++) {
		yaml_node_t *e = node(c, *it);

		if (e->type != YAML_SCALAR_NODE) {
			argv_free(v);
			return fail(c, e,
				    "%s: every item of \"%s\" must be a single "
				    "value, not %s",
				    what, f->key, type_name(e));
		}
		v[i] = strdup(scalar(e));
		if (!v[i++]) {
			argv_free(v);
			return -ENOMEM;
		}
	}
	*out = v;
	if (n)
		*n = cnt;
	return 0;
}

/* The known app kinds: program, role and the service it registers. */
static const struct app {
	const char *name;
	const char *prog;
	const char *role; /* first argument: "server" or "client" */
	const char *service;
	const char *ready; /* a server's line once it serves */
} apps[] = {
	[DG_APP_COMMAND] = {"command", NULL, NULL, NULL, NULL},
	[DG_APP_ECHO_SERVER] = {"echo-server", "dagger-echo", "server", "echo",
				"serving"},
	[DG_APP_ECHO_CLIENT] = {"echo-client", "dagger-echo", "client", "echo",
				NULL},
	[DG_APP_KVS_SERVER] = {"kvs-server", "dagger-kvs", "server", "kvs.Kvs",
			       "serving"},
	[DG_APP_KVS_CLIENT] = {"kvs-client", "dagger-kvs", "client", "kvs.Kvs",
			       NULL},
};

static bool is_server(enum dg_deploy_app a)
{
	return apps[a].role && !strcmp(apps[a].role, "server");
}

/* Placeholders a tenant's command may use (dg_deploy_tenant_argv). */
static const char *const holders[] = {
	"engine",  "engine_addr", "engine_port", "remote", "service",
	"threads", "policy",	  "machine",	 "name",   "workers",
};

/* Checks the {...} placeholders in s; NULL or the unknown one's name. */
static int check_holders(struct ctx *c, yaml_node_t *n, const char *what,
			 const char *s)
{
	const char *p = s, *q;
	size_t i;

	while ((p = strchr(p, '{'))) {
		q = strchr(p, '}');
		if (!q)
			return fail(c, n,
				    "%s: unterminated placeholder in \"%s\"",
				    what, s);
		for (i = 0; i < sizeof(holders) / sizeof(holders[0]); i++)
			if (strlen(holders[i]) == (size_t)(q - p - 1) &&
			    !strncmp(holders[i], p + 1, (size_t)(q - p - 1)))
				break;
		if (i == sizeof(holders) / sizeof(holders[0]))
			return fail(c, n,
				    "%s: unknown placeholder \"%.*s\" (known: "
				    "{engine} {engine_addr} {engine_port} "
				    "{remote} {service} {threads} {workers} "
				    "{policy} {machine} {name})",
				    what, (int)(q - p + 1), p);
		p = q + 1;
	}
	return 0;
}

static int check_holders_seq(struct ctx *c, const struct field *f,
			     const char *what)
{
	yaml_node_item_t *it;
	int rc;

	if (!f->val)
		return 0;
	if (f->val->type == YAML_SCALAR_NODE)
		return check_holders(c, f->val, what, scalar(f->val));
	for (it = f->val->data.sequence.items.start;
	     it < f->val->data.sequence.items.top; it++) {
		yaml_node_t *e = node(c, *it);

		rc = check_holders(c, e, what, scalar(e));
		if (rc)
			return rc;
	}
	return 0;
}

/* The items of the top-level list key f, each a mapping. */
static int list_items(struct ctx *c, const struct field *f, size_t *n)
{
	*n = 0;
	if (!f->val)
		return 0;
	/* "tenants:" with nothing after it: an empty list. */
	if (f->val->type == YAML_SCALAR_NODE && !*scalar(f->val))
		return 0;
	if (f->val->type != YAML_SEQUENCE_NODE)
		return fail(c, f->val,
			    "\"%s\" must be a list (items start with '-'), "
			    "not %s",
			    f->key, type_name(f->val));
	*n = (size_t)(f->val->data.sequence.items.top -
		      f->val->data.sequence.items.start);
	return 0;
}

static yaml_node_t *item(struct ctx *c, const struct field *f, size_t i)
{
	return node(c, f->val->data.sequence.items.start[i]);
}

/* Reference by name: the named object's index, or an error. */
static int resolve(struct ctx *c, const struct field *f, const char *what,
		   const char *kind, long idx, size_t *out)
{
	if (idx < 0)
		return fail(c, f->val, "%s: unknown %s \"%s\"", what, kind,
			    scalar(f->val));
	*out = (size_t)idx;
	return 0;
}

/*
 * A required field naming a machine or an engine (find looks it up; desc
 * says what the value must be, e.g. "a machine's name").
 */
static int get_ref(struct ctx *c, yaml_node_t *n, const char *what,
		   const struct field *f, const char *kind, const char *desc,
		   long (*find)(const struct dg_deploy *, const char *),
		   size_t *out)
{
	int rc = need(c, n, what, f);

	if (!rc)
		rc = want_scalar(c, f, what, desc);
	if (!rc)
		rc = resolve(c, f, what, kind, find(c->d, scalar(f->val)), out);
	return rc;
}

/* Same name twice in one list: error at the second, naming the first. */
#define CHECK_DUP(c, arr, i, fld, kind)                                        \
	do {                                                                   \
		for (size_t j_ = 0; j_ < (i); j_++)                            \
			if (!strcmp((arr)[j_].name, (arr)[i].name))            \
				return fail((c), (fld)->val,                   \
					    "duplicate %s name \"%s\" (first " \
					    "at line %d)",                     \
					    (kind), (arr)[i].name,             \
					    (arr)[j_].line);                   \
	} while (0)

static int parse_machine(struct ctx *c, yaml_node_t *n, size_t i)
{
	struct dg_deploy_machine *m = &c->d->machines[i];
	struct field f[] = {{.key = "name"},	  {.key = "host"},
			    {.key = "rdma_addr"}, {.key = "rdma_device"},
			    {.key = "gid_index"}, {.key = "bin_dir"},
			    {.key = "launcher"}};
	uint64_t v;
	int rc;

	m->line = line_of(n);
	m->gid_index = -1;
	rc = get_fields(c, n, "machine", f, NF(f));
	if (!rc)
		rc = need(c, n, "machine", &f[0]);
	if (!rc)
		rc = get_name(c, &f[0], "machine", &m->name);
	if (rc)
		return rc;
	CHECK_DUP(c, c->d->machines, i, &f[0], "machine");
	rc = need(c, n, "machine", &f[2]);
	if (!rc)
		rc = get_str(c, &f[1], "machine", &m->host);
	if (!rc && m->host && strpbrk(m->host, " \t'\"\\"))
		rc = fail(c, f[1].val,
			  "machine: \"host\" must be one ssh "
			  "destination ([user@]host), not \"%s\"",
			  m->host);
	if (!rc)
		rc = get_addr(c, &f[2], "machine", &m->rdma_addr);
	if (!rc)
		rc = get_name(c, &f[3], "machine", &m->rdma_device);
	if (!rc && f[4].val) {
		rc = get_uint(c, &f[4], "machine", 0, 255, &v);
		m->gid_index = (int)v;
	}
	if (!rc)
		rc = get_str(c, &f[5], "machine", &m->bin_dir);
	if (!rc)
		rc = get_str(c, &f[6], "machine", &m->launcher);
	return rc;
}

static int parse_engine(struct ctx *c, yaml_node_t *n, size_t i)
{
	struct dg_deploy_engine *e = &c->d->engines[i];
	struct field f[] = {{.key = "name"},
			    {.key = "machine"},
			    {.key = "listen"},
			    {.key = "port"},
			    {.key = "id"},
			    {.key = "batch"},
			    {.key = "cpu"},
			    {.key = "spin_us"},
			    {.key = "idle_us"},
			    {.key = "verbose"},
			    {.key = "peer_timeout_ms"},
			    {.key = "poll_max_us"},
			    {.key = "shm"},
			    {.key = "busy_poll"},
			    {.key = "ctl"},
			    {.key = "hold_us"}};
	const char *w = "engine";
	uint64_t v;
	int rc;

	e->line = line_of(n);
	e->port = DG_DEPLOY_DEFAULT_PORT;
	e->id = (uint32_t)i + 1;
	e->cpu = -1;
	rc = get_fields(c, n, w, f, NF(f));
	if (!rc)
		rc = need(c, n, w, &f[0]);
	if (!rc)
		rc = get_name(c, &f[0], w, &e->name);
	if (rc)
		return rc;
	CHECK_DUP(c, c->d->engines, i, &f[0], "engine");
	rc = get_ref(c, n, w, &f[1], "machine", "a machine's name",
		     dg_deploy_find_machine, &e->machine);
	if (!rc)
		rc = get_addr(c, &f[2], w, &e->listen);
	if (!rc && !e->listen) {
		e->listen = strdup(c->d->machines[e->machine].rdma_addr);
		if (!e->listen)
			rc = -ENOMEM;
	}
	if (!rc && f[3].val) {
		rc = get_uint(c, &f[3], w, 1, 65535, &v);
		e->port = (uint16_t)v;
	}
	if (!rc && f[4].val) {
		rc = get_uint(c, &f[4], w, 1, UINT32_MAX, &v);
		e->id = (uint32_t)v;
	}
	if (!rc && f[5].val) {
		rc = get_uint(c, &f[5], w, 1, 1024, &v);
		e->batch = (uint32_t)v;
	}
	if (!rc && f[6].val) {
		rc = get_uint(c, &f[6], w, 0, 1023, &v);
		e->cpu = (int)v;
	}
	if (!rc && f[7].val) {
		rc = get_uint(c, &f[7], w, 1, 10000000, &v);
		e->spin_us = (uint32_t)v;
	}
	if (!rc && f[8].val) {
		rc = get_uint(c, &f[8], w, 1, 10000000, &v);
		e->idle_us = (uint32_t)v;
	}
	if (!rc)
		rc = get_bool(c, &f[9], w, &e->verbose);
	if (!rc && f[10].val) {
		rc = get_uint(c, &f[10], w, 60, 300000, &v);
		e->peer_timeout_ms = (uint32_t)v;
	}
	if (!rc && f[11].val) {
		rc = get_uint(c, &f[11], w, 1, 1000000, &v);
		e->poll_max_us = (uint32_t)v;
	}
	if (!rc)
		rc = get_str(c, &f[12], w, &e->shm);
	if (!rc)
		rc = get_bool(c, &f[13], w, &e->busy_poll);
	if (!rc && e->shm && (e->shm[0] != '/' || strlen(e->shm) >= 108))
		rc = fail(c, f[12].val,
			  "engine \"%s\": shm must be an absolute path of at "
			  "most 107 bytes",
			  e->name);
	if (!rc)
		rc = get_str(c, &f[14], w, &e->ctl);
	if (!rc && f[15].val) {
		rc = get_uint(c, &f[15], w, 1, 10000000, &v);
		e->hold_us = (uint32_t)v;
	}
	if (!rc && e->ctl && (e->ctl[0] != '/' || strlen(e->ctl) >= 108))
		rc = fail(c, f[14].val,
			  "engine \"%s\": ctl must be an absolute path of at "
			  "most 107 bytes",
			  e->name);
	if (rc)
		return rc;
	for (size_t j = 0; j < i; j++) {
		struct dg_deploy_engine *o = &c->d->engines[j];

		if (o->machine == e->machine && o->port == e->port &&
		    !strcmp(o->listen, e->listen))
			return fail(c, f[3].val ? f[3].val : n,
				    "engine \"%s\": %s port %u is already "
				    "engine \"%s\"'s (line %d)",
				    e->name, e->listen, e->port, o->name,
				    o->line);
	}
	return 0;
}

static int parse_service(struct ctx *c, yaml_node_t *n, size_t i)
{
	struct dg_deploy_service *s = &c->d->services[i];
	struct field f[] = {{.key = "name"},
			    {.key = "policy"},
			    {.key = "threads"},
			    {.key = "workers"}};
	const char *w = "service";
	uint64_t v;
	int rc, p;

	s->line = line_of(n);
	s->policy = DG_LB_ROUND_ROBIN;
	s->threads = 1;
	rc = get_fields(c, n, w, f, NF(f));
	if (!rc)
		rc = need(c, n, w, &f[0]);
	if (!rc)
		rc = get_name(c, &f[0], w, &s->name);
	if (rc)
		return rc;
	if (strlen(s->name) >= DG_NAME_MAX)
		return fail(c, f[0].val,
			    "service: \"name\" is longer than %d "
			    "characters",
			    DG_NAME_MAX - 1);
	CHECK_DUP(c, c->d->services, i, &f[0], "service");
	if (f[1].val) {
		rc = want_scalar(c, &f[1], w, "rr, static, random or key");
		if (rc)
			return rc;
		p = dg_deploy_policy_parse(scalar(f[1].val));
		if (p < 0)
			return fail(
				c, f[1].val,
				"service: unknown policy \"%s\" (known: rr, "
				"static, random, key)",
				scalar(f[1].val));
		s->policy = (uint8_t)p;
		s->policy_set = true;
	}
	if (f[2].val) {
		rc = get_uint(c, &f[2], w, 1, DG_MAX_FLOWS, &v);
		s->threads = (uint32_t)v;
	}
	if (!rc && f[3].val) {
		rc = get_uint(c, &f[3], w, 0, 1024, &v);
		s->workers = (uint32_t)v;
	}
	return rc;
}

static int parse_tenant(struct ctx *c, yaml_node_t *n, size_t i)
{
	struct dg_deploy_tenant *t = &c->d->tenants[i];
	struct field f[] = {
		{.key = "name"},     {.key = "machine"}, {.key = "engine"},
		{.key = "app"},	     {.key = "command"}, {.key = "args"},
		{.key = "service"},  {.key = "oneshot"}, {.key = "ready"},
		{.key = "timeout"},  {.key = "mode"},	 {.key = "spin_us"},
		{.key = "busy_poll"}};
	const char *w = "tenant";
	uint64_t v;
	size_t k;
	int rc;

	t->line = line_of(n);
	t->service = -1;
	rc = get_fields(c, n, w, f, NF(f));
	if (!rc)
		rc = need(c, n, w, &f[0]);
	if (!rc)
		rc = get_name(c, &f[0], w, &t->name);
	if (rc)
		return rc;
	CHECK_DUP(c, c->d->tenants, i, &f[0], "tenant");
	rc = get_ref(c, n, w, &f[1], "machine", "a machine's name",
		     dg_deploy_find_machine, &t->machine);
	if (!rc)
		rc = get_ref(c, n, w, &f[2], "engine", "an engine's name",
			     dg_deploy_find_engine, &t->engine);
	if (rc)
		return rc;
	if (f[3].val) {
		const char *a;

		rc = want_scalar(c, &f[3], w, "an app kind");
		if (rc)
			return rc;
		a = scalar(f[3].val);
		for (k = 0; k < NF(apps); k++)
			if (!strcmp(a, apps[k].name))
				break;
		if (k == NF(apps))
			return fail(c, f[3].val,
				    "tenant: unknown app \"%s\" (known: "
				    "echo-server, echo-client, kvs-server, "
				    "kvs-client, command)",
				    a);
		t->app = (enum dg_deploy_app)k;
	}
	if (t->app == DG_APP_COMMAND) {
		if (!f[4].val)
			return fail(c, n,
				    "tenant \"%s\": missing required key "
				    "\"command\" (or an app: kind)",
				    t->name);
		if (f[5].val)
			return fail(c, f[5].val,
				    "tenant \"%s\": \"args\" goes with an app "
				    "kind; put them in \"command\"",
				    t->name);
		if (f[4].val->type == YAML_SCALAR_NODE)
			rc = get_str(c, &f[4], w, &t->shell);
		else
			rc = get_strv(c, &f[4], w, &t->argv, &t->argc);
		if (!rc && t->argv && !t->argc)
			rc = fail(c, f[4].val, "tenant: \"command\" is empty");
		if (!rc)
			rc = check_holders_seq(c, &f[4], w);
	} else {
		if (f[4].val)
			return fail(c, f[4].val,
				    "tenant \"%s\": \"command\" does not go "
				    "with app %s (extra arguments go in "
				    "\"args\")",
				    t->name, dg_deploy_app_name(t->app));
		rc = get_strv(c, &f[5], w, &t->argv, &t->argc);
		if (!rc)
			rc = check_holders_seq(c, &f[5], w);
		if (!rc) {
			t->service_name = strdup(apps[t->app].service);
			rc = t->service_name ? 0 : -ENOMEM;
		}
	}
	if (rc)
		return rc;
	if (f[6].val) {
		char *s = NULL;

		rc = get_name(c, &f[6], w, &s);
		if (rc)
			return rc;
		if (t->service_name && strcmp(s, t->service_name)) {
			rc = fail(c, f[6].val,
				  "tenant \"%s\": app %s serves service "
				  "\"%s\", not \"%s\"",
				  t->name, dg_deploy_app_name(t->app),
				  t->service_name, s);
			free(s);
			return rc;
		}
		free(t->service_name);
		t->service_name = s;
	}
	if (t->service_name) {
		t->service = dg_deploy_find_service(c->d, t->service_name);
		if (f[6].val && t->service < 0)
			return fail(c, f[6].val,
				    "tenant \"%s\": unknown service \"%s\"",
				    t->name, t->service_name);
	}
	t->oneshot = t->app != DG_APP_COMMAND && !is_server(t->app);
	rc = get_bool(c, &f[7], w, &t->oneshot);
	if (!rc)
		rc = get_str(c, &f[8], w, &t->ready);
	if (!rc && !t->ready && !f[8].val && apps[t->app].ready) {
		t->ready = strdup(apps[t->app].ready);
		rc = t->ready ? 0 : -ENOMEM;
	}
	if (!rc && t->oneshot && t->ready)
		rc = fail(c, f[8].val ? f[8].val : n,
			  "tenant \"%s\": \"ready\" does not go with oneshot "
			  "(up waits for a oneshot tenant to finish)",
			  t->name);
	if (!rc && f[9].val) {
		rc = get_uint(c, &f[9], w, 1, 86400 * 7, &v);
		t->timeout_s = (uint32_t)v;
		if (!rc && !t->oneshot)
			rc = fail(c, f[9].val,
				  "tenant \"%s\": \"timeout\" goes with "
				  "oneshot tenants only",
				  t->name);
	}
	if (!rc && f[10].val) {
		rc = want_scalar(c, &f[10], w, "an interface mode");
		if (!rc) {
			t->mode = dg_mode_parse(scalar(f[10].val));
			if (t->mode < 0)
				rc = fail(c, f[10].val,
					  "tenant \"%s\": unknown mode \"%s\" "
					  "(poll, doorbell or push)",
					  t->name, scalar(f[10].val));
		}
	}
	if (!rc && f[11].val) {
		rc = get_uint(c, &f[11], w, 0, 10000000, &v);
		t->spin_us = (uint32_t)v;
	}
	if (!rc)
		rc = get_bool(c, &f[12], w, &t->busy_poll);
	return rc;
}

/* Parses the list at f with fn, into *arr of *n elements of size sz. */
static int parse_list(struct ctx *c, const struct field *f, void **arr,
		      size_t *n, size_t sz,
		      int (*fn)(struct ctx *, yaml_node_t *, size_t))
{
	size_t cnt, i;
	int rc = list_items(c, f, &cnt);

	if (rc || !cnt)
		return rc;
	*arr = calloc(cnt, sz);
	if (!*arr)
		return -ENOMEM;
	for (i = 0; i < cnt; i++) {
		*n = i + 1; /* so free sees the partly parsed one */
		rc = fn(c, item(c, f, i), i);
		if (rc)
			return rc;
	}
	return 0;
}

static int parse_root(struct ctx *c, yaml_node_t *root)
{
	struct dg_deploy *d = c->d;
	struct field f[] = {{.key = "name"},	      {.key = "ssh"},
			    {.key = "run_dir"},	      {.key = "bin_dir"},
			    {.key = "start_timeout"}, {.key = "stop_timeout"},
			    {.key = "machines"},      {.key = "engines"},
			    {.key = "services"},      {.key = "tenants"}};
	const char *w = "description";
	uint64_t v;
	int rc;

	d->start_timeout_s = 30;
	d->stop_timeout_s = 10;
	rc = get_fields(c, root, w, f, NF(f));
	if (!rc)
		rc = get_name(c, &f[0], w, &d->name);
	if (!rc && !d->name) {
		d->name = strdup("dagger");
		rc = d->name ? 0 : -ENOMEM;
	}
	if (!rc && f[1].val) {
		if (f[1].val->type == YAML_SEQUENCE_NODE) {
			size_t cnt = 0;

			rc = get_strv(c, &f[1], w, &d->ssh, &cnt);
			if (!rc && !cnt)
				rc = fail(c, f[1].val, "\"ssh\" is empty");
		} else {
			char *s = NULL, *tok, *save;
			size_t cnt = 0;

			rc = get_str(c, &f[1], w, &s);
			if (!rc)
				d->ssh = calloc(strlen(s) / 2 + 2,
						sizeof(*d->ssh));
			if (!rc && !d->ssh)
				rc = -ENOMEM;
			for (tok = rc ? NULL : strtok_r(s, " \t", &save); tok;
			     tok = strtok_r(NULL, " \t", &save)) {
				d->ssh[cnt] = strdup(tok);
				if (!d->ssh[cnt++]) {
					rc = -ENOMEM;
					break;
				}
			}
			if (!rc && !cnt)
				rc = fail(c, f[1].val, "\"ssh\" is empty");
			free(s);
		}
	}
	if (!rc)
		rc = get_str(c, &f[2], w, &d->run_dir);
	if (!rc)
		rc = get_str(c, &f[3], w, &d->bin_dir);
	if (!rc && f[4].val) {
		rc = get_uint(c, &f[4], w, 1, 86400, &v);
		d->start_timeout_s = (uint32_t)v;
	}
	if (!rc && f[5].val) {
		rc = get_uint(c, &f[5], w, 1, 3600, &v);
		d->stop_timeout_s = (uint32_t)v;
	}
	if (!rc)
		rc = need(c, root, w, &f[6]);
	if (!rc)
		rc = parse_list(c, &f[6], (void **)&d->machines, &d->nmachines,
				sizeof(*d->machines), parse_machine);
	if (!rc && !d->nmachines)
		rc = fail(c, f[6].val, "\"machines\" lists no machine");
	if (!rc)
		rc = need(c, root, w, &f[7]);
	if (!rc)
		rc = parse_list(c, &f[7], (void **)&d->engines, &d->nengines,
				sizeof(*d->engines), parse_engine);
	if (!rc && !d->nengines)
		rc = fail(c, f[7].val, "\"engines\" lists no engine");
	if (!rc)
		rc = parse_list(c, &f[8], (void **)&d->services, &d->nservices,
				sizeof(*d->services), parse_service);
	if (!rc)
		rc = parse_list(c, &f[9], (void **)&d->tenants, &d->ntenants,
				sizeof(*d->tenants), parse_tenant);
	return rc;
}

static int yaml_fail(struct ctx *c, const yaml_parser_t *p)
{
	const yaml_mark_t *m = &p->problem_mark;

	snprintf(c->err, c->errlen, "%s:%zu: not valid YAML: %s%s%s", c->label,
		 m->line + 1, p->problem ? p->problem : "error",
		 p->context ? " " : "", p->context ? p->context : "");
	return -EINVAL;
}

int dg_deploy_parse(const char *text, size_t len, const char *label,
		    struct dg_deploy **out, char *err, size_t errlen)
{
	struct ctx c = {.label = label ? label : "<description>",
			.err = err,
			.errlen = errlen};
	yaml_parser_t p;
	yaml_node_t *root;
	int rc;

	if (!errlen)
		return -EINVAL;
	err[0] = 0;
	c.d = calloc(1, sizeof(*c.d));
	if (!c.d)
		return -ENOMEM;
	c.d->path = strdup(c.label);
	if (!c.d->path) {
		free(c.d);
		return -ENOMEM;
	}
	if (!yaml_parser_initialize(&p)) {
		dg_deploy_free(c.d);
		return -ENOMEM;
	}
	yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
	if (!yaml_parser_load(&p, &c.doc)) {
		rc = yaml_fail(&c, &p);
		goto out_parser;
	}
	root = yaml_document_get_root_node(&c.doc);
	if (!root) {
		snprintf(err, errlen, "%s:1: the description is empty",
			 c.label);
		rc = -EINVAL;
		goto out_doc;
	}
	rc = parse_root(&c, root);
	if (rc)
		goto out_doc;
	/* One document per file: a second one is most likely a mistake. */
	yaml_document_delete(&c.doc);
	if (!yaml_parser_load(&p, &c.doc)) {
		rc = yaml_fail(&c, &p);
		goto out_parser;
	}
	root = yaml_document_get_root_node(&c.doc);
	if (root)
		rc = fail(&c, root, "a second document in the file ('---')");
out_doc:
	yaml_document_delete(&c.doc);
out_parser:
	yaml_parser_delete(&p);
	if (rc == -ENOMEM && !err[0])
		snprintf(err, errlen, "%s: out of memory", c.label);
	if (rc) {
		dg_deploy_free(c.d);
		return rc;
	}
	*out = c.d;
	return 0;
}

int dg_deploy_load(const char *path, const char *label, struct dg_deploy **out,
		   char *err, size_t errlen)
{
	FILE *f = strcmp(path, "-") ? fopen(path, "r") : stdin;
	char *buf = NULL;
	size_t len = 0, cap = 0, k;
	int rc;

	if (!label)
		label = strcmp(path, "-") ? path : "<stdin>";
	if (!f) {
		rc = -errno;
		snprintf(err, errlen, "%s: %s", label, strerror(errno));
		return rc;
	}
	for (;;) {
		if (len == cap) {
			char *nb = realloc(buf, cap ? cap * 2 : 4096);

			if (!nb) {
				rc = -ENOMEM;
				snprintf(err, errlen, "%s: out of memory",
					 label);
				goto out;
			}
			buf = nb;
			cap = cap ? cap * 2 : 4096;
		}
		k = fread(buf + len, 1, cap - len, f);
		len += k;
		if (k)
			continue;
		if (ferror(f)) {
			rc = -EIO;
			snprintf(err, errlen, "%s: read error", label);
			goto out;
		}
		break;
	}
	if (len > (1u << 20)) {
		rc = -EFBIG;
		snprintf(err, errlen, "%s: larger than 1 MiB", label);
		goto out;
	}
	rc = dg_deploy_parse(buf, len, label, out, err, errlen);
out:
	free(buf);
	if (f != stdin)
		fclose(f);
	return rc;
}

void dg_deploy_free(struct dg_deploy *d)
{
	size_t i;

	if (!d)
		return;
	for (i = 0; i < d->nmachines; i++) {
		struct dg_deploy_machine *m = &d->machines[i];

		free(m->name);
		free(m->host);
		free(m->rdma_addr);
		free(m->rdma_device);
		free(m->bin_dir);
		free(m->launcher);
	}
	for (i = 0; i < d->nengines; i++) {
		free(d->engines[i].name);
		free(d->engines[i].listen);
		free(d->engines[i].shm);
		free(d->engines[i].ctl);
	}
	for (i = 0; i < d->nservices; i++)
		free(d->services[i].name);
	for (i = 0; i < d->ntenants; i++) {
		struct dg_deploy_tenant *t = &d->tenants[i];

		free(t->name);
		free(t->service_name);
		free(t->shell);
		argv_free(t->argv);
		free(t->ready);
	}
	free(d->machines);
	free(d->engines);
	free(d->services);
	free(d->tenants);
	argv_free(d->ssh);
	free(d->path);
	free(d->name);
	free(d->run_dir);
	free(d->bin_dir);
	free(d);
}

#define FIND(arr, n)                                                           \
	do {                                                                   \
		for (size_t i_ = 0; i_ < (n); i_++)                            \
			if ((arr)[i_].name && !strcmp((arr)[i_].name, name))   \
				return (long)i_;                               \
		return -1;                                                     \
	} while (0)

long dg_deploy_find_machine(const struct dg_deploy *d, const char *name)
{
	FIND(d->machines, d->nmachines);
}

long dg_deploy_find_engine(const struct dg_deploy *d, const char *name)
{
	FIND(d->engines, d->nengines);
}

long dg_deploy_find_service(const struct dg_deploy *d, const char *name)
{
	FIND(d->services, d->nservices);
}

long dg_deploy_find_tenant(const struct dg_deploy *d, const char *name)
{
	FIND(d->tenants, d->ntenants);
}

const char *dg_deploy_policy_name(uint8_t policy)
{
	return dg_lb_policy_name(policy);
}

int dg_deploy_policy_parse(const char *s)
{
	return dg_lb_policy_parse(s);
}

const char *dg_deploy_app_name(enum dg_deploy_app app)
{
	return (size_t)app < NF(apps) ? apps[app].name : "command";
}

const char *dg_deploy_engine_addr(const struct dg_deploy *d,
				  const struct dg_deploy_engine *e)
{
	if (!strcmp(e->listen, "0.0.0.0") || !strcmp(e->listen, "::"))
		return d->machines[e->machine].rdma_addr;
	return e->listen;
}

const char *dg_deploy_bin_dir(const struct dg_deploy *d, size_t m)
{
	return d->machines[m].bin_dir ? d->machines[m].bin_dir : d->bin_dir;
}

/* "addr:port", with brackets around an IPv6 address. */
static void engine_ep(const struct dg_deploy *d,
		      const struct dg_deploy_engine *e, char *buf, size_t len)
{
	const char *a = dg_deploy_engine_addr(d, e);

	snprintf(buf, len, strchr(a, ':') ? "[%s]:%u" : "%s:%u", a, e->port);
}

/* The engine the service's server tenant attaches to, if another. */
static const struct dg_deploy_engine *remote_engine(const struct dg_deploy *d,
						    size_t tenant)
{
	const struct dg_deploy_tenant *t = &d->tenants[tenant];
	size_t i;

	if (!t->service_name)
		return NULL;
	for (i = 0; i < d->ntenants; i++) {
		const struct dg_deploy_tenant *s = &d->tenants[i];

		if (i == tenant || !s->service_name || s->oneshot ||
		    strcmp(s->service_name, t->service_name))
			continue;
		/* An app's client is served by that app's server. */
		if (t->app != DG_APP_COMMAND &&
		    (!is_server(s->app) ||
		     strcmp(apps[s->app].prog, apps[t->app].prog)))
			continue;
		return s->engine == t->engine ? NULL : &d->engines[s->engine];
	}
	return NULL;
}

/* s with its placeholders filled in, malloc'd. */
static char *fill(const struct dg_deploy *d, size_t tenant, const char *s)
{
	const struct dg_deploy_tenant *t = &d->tenants[tenant];
	const struct dg_deploy_engine *e = &d->engines[t->engine];
	const struct dg_deploy_engine *r = remote_engine(d, tenant);
	const struct dg_deploy_service *sv =
		t->service >= 0 ? &d->services[t->service] : NULL;
	char *buf = NULL, val[128];
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	const char *p = s, *q;

	if (!f)
		return NULL;
	while (*p) {
		if (*p != '{' || !(q = strchr(p, '}'))) {
			fputc(*p++, f);
			continue;
		}
		val[0] = 0;
#define IS(k)                                                                  \
	(strlen(k) == (size_t)(q - p - 1) && !strncmp(p + 1, k, strlen(k)))
		if (IS("engine"))
			engine_ep(d, e, val, sizeof(val));
		else if (IS("engine_addr"))
			snprintf(val, sizeof(val), "%s",
				 dg_deploy_engine_addr(d, e));
		else if (IS("engine_port"))
			snprintf(val, sizeof(val), "%u", e->port);
		else if (IS("remote") && r)
			engine_ep(d, r, val, sizeof(val));
		else if (IS("service") && t->service_name)
			snprintf(val, sizeof(val), "%s", t->service_name);
		else if (IS("threads"))
			snprintf(val, sizeof(val), "%u", sv ? sv->threads : 1);
		else if (IS("workers"))
			snprintf(val, sizeof(val), "%u", sv ? sv->workers : 0);
		else if (IS("policy"))
			snprintf(val, sizeof(val), "%s",
				 dg_deploy_policy_name(sv ? sv->policy : 0));
		else if (IS("machine"))
			snprintf(val, sizeof(val), "%s",
				 d->machines[t->machine].name);
		else if (IS("name"))
			snprintf(val, sizeof(val), "%s", t->name);
#undef IS
		fputs(val, f);
		p = q + 1;
	}
	if (fclose(f)) {
		free(buf);
		return NULL;
	}
	return buf;
}

void dg_deploy_argv_free(char **argv)
{
	argv_free(argv);
}

int dg_deploy_tenant_argv(const struct dg_deploy *d, size_t tenant, char ***out)
{
	const struct dg_deploy_tenant *t = &d->tenants[tenant];
	const struct dg_deploy_service *sv =
		t->service >= 0 ? &d->services[t->service] : NULL;
	const struct dg_deploy_engine *r = remote_engine(d, tenant);
	const char *bin = dg_deploy_bin_dir(d, t->machine);
	char **v = calloc(t->argc + 16, sizeof(*v));
	char ep[128];
	size_t n = 0, i;

	if (!v)
		return -ENOMEM;
#define ADD(expr)                                                              \
	do {                                                                   \
		if (!(v[n++] = (expr)))                                        \
			goto nomem;                                            \
	} while (0)
	if (t->shell) {
		ADD(strdup("/bin/sh"));
		ADD(strdup("-c"));
		ADD(fill(d, tenant, t->shell));
		*out = v;
		return 0;
	}
	if (t->app != DG_APP_COMMAND) {
		if (bin) {
			char *p;

			if (asprintf(&p, "%s/%s", bin, apps[t->app].prog) < 0)
				goto nomem;
			v[n++] = p;
		} else {
			ADD(strdup(apps[t->app].prog));
		}
		ADD(strdup(apps[t->app].role));
		ADD(strdup("--engine"));
		engine_ep(d, &d->engines[t->engine], ep, sizeof(ep));
		ADD(strdup(ep));
		if (is_server(t->app)) {
			snprintf(ep, sizeof(ep), "%u", sv ? sv->threads : 1);
			ADD(strdup("--threads"));
			ADD(strdup(ep));
			ADD(strdup("--lb"));
			ADD(strdup(dg_lb_policy_name(sv ? sv->policy : 0)));
			if (sv && sv->workers) {
				snprintf(ep, sizeof(ep), "%u", sv->workers);
				ADD(strdup("--workers"));
				ADD(strdup(ep));
			}
		} else {
			if (r) {
				engine_ep(d, r, ep, sizeof(ep));
				ADD(strdup("--remote"));
				ADD(strdup(ep));
			}
			snprintf(ep, sizeof(ep), "%u", d->start_timeout_s);
			ADD(strdup("--wait"));
			ADD(strdup(ep));
		}
	}
	for (i = 0; i < t->argc; i++)
		ADD(fill(d, tenant, t->argv[i]));
#undef ADD
	*out = v;
	return 0;
nomem:
	argv_free(v);
	return -ENOMEM;
}

int dg_ctl_default_path(const char *name, bool create, char *buf, size_t len)
{
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	char dir[256];
	struct stat st;
	int k;

	/* /run/dagger: there already, or made now (root). */
	if ((!stat("/run/dagger", &st) && S_ISDIR(st.st_mode) &&
	     !access("/run/dagger", W_OK | X_OK)) ||
	    (create && !mkdir("/run/dagger", 0755)))
		snprintf(dir, sizeof(dir), "/run/dagger");
	else if (xdg && xdg[0] == '/' && strlen(xdg) < 200)
		snprintf(dir, sizeof(dir), "%s/dagger", xdg);
	else
		snprintf(dir, sizeof(dir), "/tmp/dagger-%u",
			 (unsigned)getuid());
	if (create && mkdir(dir, 0700) && errno != EEXIST)
		return -errno;
	k = snprintf(buf, len, "%s/%s.ctl", dir, name);
	return k < 0 || (size_t)k >= len || (size_t)k >= 108 ? -ENAMETOOLONG
							     : 0;
}

int dg_deploy_ctl_path(const struct dg_deploy_engine *e, bool create, char *buf,
		       size_t len)
{
	if (e->ctl) {
		if (strlen(e->ctl) >= len)
			return -ENAMETOOLONG;
		strcpy(buf, e->ctl);
		return 0;
	}
	return dg_ctl_default_path(e->name, create, buf, len);
}
