// SPDX-License-Identifier: MIT
/*
 * dagger-idlc - typed C stubs for Dagger services defined in protobuf IDL.
 *
 *   dagger-idlc [-I DIR]... --out DIR [--protoc PATH] FILE.proto...
 *   dagger-idlc --descriptor-set SET --out DIR FILE.proto...
 *   dagger-idlc --ids [-I DIR]... FILE.proto...
 *
 * The first form runs protoc-c on the files (message code: FILE.pb-c.c/h,
 * and a FileDescriptorSet with imports and source info); the second reads
 * a set made by `protoc --include_imports --include_source_info
 * --descriptor_set_out=SET`. Nothing here parses .proto text: the
 * descriptors come from protoc's own parser. For every named file with
 * services, dagger-idlc writes FILE.dg.h and FILE.dg.c: per method a
 * function id, an asynchronous call, a typed take-response and a
 * synchronous call; per service a typed handler table and its server
 * skeleton. --ids prints the function-id table instead.
 *
 * Function ids: FNV-1a (32 bit) of "package.Service/Method", folded to 16
 * bits by XOR of the halves; 0 is never used (it becomes 1). They depend
 * on the name only, so re-ordering or adding methods keeps them. Two
 * methods of one service with the same id are an error here, not a
 * surprise at run time.
 *
 * Errors (streaming methods, options the stubs cannot honour, names too
 * long, anything protoc rejects) are printed as "FILE:LINE: ..." naming
 * the method, and the exit status is 1.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "google/protobuf/descriptor.pb-c.h"

#define DG_NAME_MAX 48 /* dagger/ctrl.h: service names, with the NUL */

typedef Google__Protobuf__FileDescriptorSet FileSet;
typedef Google__Protobuf__FileDescriptorProto FileProto;
typedef Google__Protobuf__ServiceDescriptorProto ServiceProto;
typedef Google__Protobuf__MethodDescriptorProto MethodProto;

extern char **environ;

static int nerrors;

/* ---- names, as protoc-c forms them --------------------------------------- */

/* A growable string. */
struct str {
	char *p;
	size_t len, cap;
};

static void str_addn(struct str *s, const char *p, size_t n)
{
	if (s->len + n + 1 > s->cap) {
		s->cap = (s->len + n + 1) * 2 + 64;
		s->p = realloc(s->p, s->cap);
		if (!s->p) {
			fprintf(stderr, "dagger-idlc: out of memory\n");
			exit(1);
		}
	}
	memcpy(s->p + s->len, p, n);
	s->len += n;
	s->p[s->len] = 0;
}

static void str_addc(struct str *s, char c)
{
	str_addn(s, &c, 1);
}

static void str_printf(struct str *s, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(buf)) {
		fprintf(stderr, "dagger-idlc: name too long\n");
		exit(1);
	}
	str_addn(s, buf, (size_t)n);
}

enum name_case { CAMEL, LOWER, UPPER };

/* One dotted component, the way protoc-c's ToCamel/CamelToLower/Upper do. */
static void piece(struct str *s, const char *p, size_t n, enum name_case c)
{
	bool was_upper = true, next_upper = true;
	size_t i;

	for (i = 0; i < n; i++) {
		bool up = isupper((unsigned char)p[i]);

		if (c == CAMEL) {
			if (p[i] == '_') {
				next_upper = true;
			} else if (next_upper) {
				str_addc(s, (char)toupper((unsigned char)p[i]));
				next_upper = false;
			} else {
				str_addc(s, p[i]);
			}
			continue;
		}
		if (up && !was_upper)
			str_addc(s, '_');
		str_addc(s, c == LOWER ? (char)tolower((unsigned char)p[i])
				       : (char)toupper((unsigned char)p[i]));
		was_upper = up;
	}
}

/* "pkg.Outer.Inner" -> Pkg__Outer__Inner / pkg__outer__inner / ... */
static char *c_name(const char *full, enum name_case c)
{
	struct str s = {0};
	const char *p = full;

	while (*p == '.')
		p++;
	while (*p) {
		const char *e = strchr(p, '.');
		size_t n = e ? (size_t)(e - p) : strlen(p);

		if (n) {
			if (s.len)
				str_addn(&s, "__", 2);
			piece(&s, p, n, c);
		}
		p += n;
		while (*p == '.')
			p++;
	}
	if (!s.p)
		str_addn(&s, "", 0);
	return s.p;
}

static bool c_keyword(const char *w)
{
	static const char *const kw[] = {
		"auto",	    "break",   "case",	   "char",    "const",
		"continue", "default", "do",	   "double",  "else",
		"enum",	    "extern",  "float",	   "for",     "goto",
		"if",	    "inline",  "int",	   "long",    "register",
		"restrict", "return",  "short",	   "signed",  "sizeof",
		"static",   "struct",  "switch",   "typedef", "union",
		"unsigned", "void",    "volatile", "while",   "bool",
		"true",	    "false",   "arg",	   "f",	      "s"};
	size_t i;

	for (i = 0; i < sizeof(kw) / sizeof(kw[0]); i++)
		if (!strcmp(w, kw[i]))
			return true;
	return false;
}

/* "sub/foo.proto" -> "sub/foo" */
static char *strip_proto(const char *name)
{
	size_t n = strlen(name);
	char *r;

	if (n > 6 && !strcmp(name + n - 6, ".proto"))
		n -= 6;
	r = strndup(name, n);
	if (!r)
		exit(1);
	return r;
}

/* ---- function ids -------------------------------------------------------- */

static uint16_t fn_id(const char *pkg, const char *svc, const char *method)
{
	uint32_t h = 2166136261u;
	const char *parts[4] = {pkg, *pkg ? "." : "", svc, "/"};
	const unsigned char *p;
	int i;

	for (i = 0; i < 5; i++) {
		p = (const unsigned char *)(i < 4 ? parts[i] : method);
		for (; *p; p++) {
			h ^= *p;
			h *= 16777619u;
		}
	}
	h = (h >> 16) ^ (h & 0xffffu);
	return h ? (uint16_t)h : 1u;
}

/* ---- source positions ---------------------------------------------------- */

/* 1-based line of the element at path (e.g. {6, s, 2, m}), 0 if unknown. */
static int line_of(const FileProto *f, const int32_t *path, size_t n)
{
	const Google__Protobuf__SourceCodeInfo *sci = f->source_code_info;
	size_t i;

	if (!sci)
		return 0;
	for (i = 0; i < sci->n_location; i++) {
		const Google__Protobuf__SourceCodeInfo__Location *l =
			sci->location[i];

		if (l->n_path == n && l->n_span >= 1 &&
		    !memcmp(l->path, path, n * sizeof(*path)))
			return l->span[0] + 1;
	}
	return 0;
}

static void error_at(const FileProto *f, int line, const char *fmt, ...)
{
	va_list ap;

	if (line)
		fprintf(stderr, "%s:%d: error: ", f->name, line);
	else
		fprintf(stderr, "%s: error: ", f->name);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	nerrors++;
}

/* ---- checks -------------------------------------------------------------- */

struct method_info {
	const MethodProto *m;
	uint16_t id;
	char *lower; /* method name, lower_case */
	char *upper;
	char *in_c, *in_lower; /* request type: C type, descriptor prefix */
	char *out_c, *out_lower;
};

struct service_info {
	const ServiceProto *s;
	char *full; /* pkg.Service */
	char *lower, *upper;
	struct method_info *m;
	size_t n;
};

static void check_method(const FileProto *f, const char *svc_full,
			 const MethodProto *m, int line)
{
	const Google__Protobuf__MethodOptions *o = m->options;

	if ((m->has_client_streaming && m->client_streaming) ||
	    (m->has_server_streaming && m->server_streaming))
		error_at(f, line,
			 "method %s.%s: streaming methods are not supported "
			 "(a Dagger RPC is one request and one response)",
			 svc_full, m->name);
	if (o && (o->has_idempotency_level || o->n_uninterpreted_option ||
		  o->base.n_unknown_fields))
		error_at(f, line,
			 "method %s.%s: unsupported option (%s); only "
			 "\"deprecated\" is accepted on methods",
			 svc_full, m->name,
			 o->has_idempotency_level ? "idempotency_level"
						  : "custom option");
}

static int analyse_service(const FileProto *f, size_t si,
			   struct service_info *out)
{
	const ServiceProto *s = f->service[si];
	const char *pkg = f->package ? f->package : "";
	int32_t path[4] = {6, (int32_t)si, 2, 0};
	int sline = line_of(f, path, 2);
	struct str full = {0};
	size_t i, j;
	int before = nerrors;

	if (*pkg)
		str_printf(&full, "%s.", pkg);
	str_printf(&full, "%s", s->name);
	out->s = s;
	out->full = full.p;
	out->lower = c_name(full.p, LOWER);
	out->upper = c_name(full.p, UPPER);
	out->n = s->n_method;
	out->m = calloc(s->n_method + 1, sizeof(*out->m));
	if (!out->m)
		exit(1);
	if (strlen(full.p) >= DG_NAME_MAX)
		error_at(f, sline,
			 "service %s: the name is %zu characters, the engine "
			 "takes at most %d",
			 full.p, strlen(full.p), DG_NAME_MAX - 1);
	if (s->options && (s->options->n_uninterpreted_option ||
			   s->options->base.n_unknown_fields))
		error_at(f, sline,
			 "service %s: unsupported option (custom option); "
			 "only \"deprecated\" is accepted on services",
			 full.p);
	for (i = 0; i < s->n_method; i++) {
		const MethodProto *m = s->method[i];
		struct method_info *mi = &out->m[i];
		int line;

		path[3] = (int32_t)i;
		line = line_of(f, path, 4);
		check_method(f, full.p, m, line);
		mi->m = m;
		mi->id = fn_id(pkg, s->name, m->name);
		mi->lower = c_name(m->name, LOWER);
		mi->upper = c_name(m->name, UPPER);
		if (c_keyword(mi->lower)) {
			struct str k = {0};

			str_printf(&k, "%s_", mi->lower);
			free(mi->lower);
			mi->lower = k.p;
		}
		mi->in_c = c_name(m->input_type, CAMEL);
		mi->in_lower = c_name(m->input_type, LOWER);
		mi->out_c = c_name(m->output_type, CAMEL);
		mi->out_lower = c_name(m->output_type, LOWER);
		for (j = 0; j < i; j++) {
			if (out->m[j].id == mi->id)
				error_at(f, line,
					 "method %s.%s: function id 0x%04x "
					 "collides with %s.%s (line %d); "
					 "rename one of them",
					 full.p, m->name, mi->id, full.p,
					 out->m[j].m->name,
					 line_of(f,
						 (int32_t[]){6, (int32_t)si, 2,
							     (int32_t)j},
						 4));
			if (!strcmp(out->m[j].lower, mi->lower))
				error_at(f, line,
					 "method %s.%s: its C name %s clashes "
					 "with %s.%s",
					 full.p, m->name, mi->lower, full.p,
					 out->m[j].m->name);
		}
	}
	return nerrors == before ? 0 : -1;
}

static void free_services(struct service_info *sv, size_t n)
{
	size_t i, j;

	for (i = 0; i < n; i++) {
		for (j = 0; j < sv[i].n && sv[i].m; j++) {
			struct method_info *m = &sv[i].m[j];

			free(m->lower);
			free(m->upper);
			free(m->in_c);
			free(m->in_lower);
			free(m->out_c);
			free(m->out_lower);
		}
		free(sv[i].m);
		free(sv[i].full);
		free(sv[i].lower);
		free(sv[i].upper);
	}
	free(sv);
}

/* ---- output -------------------------------------------------------------- */

static int mkdirs(const char *path)
{
	char *p = strdup(path), *q;

	if (!p)
		return -1;
	for (q = p + 1; *q; q++) {
		if (*q != '/')
			continue;
		*q = 0;
		if (mkdir(p, 0777) && errno != EEXIST) {
			free(p);
			return -1;
		}
		*q = '/';
	}
	free(p);
	return 0;
}

static void emit_header(FILE *o, const FileProto *f, const char *stem,
			const struct service_info *sv, size_t nsv)
{
	struct str guard = {0};
	const char *p;
	size_t i, j;

	str_printf(&guard, "DG_IDL_");
	for (p = stem; *p; p++)
		str_addc(&guard, isalnum((unsigned char)*p)
					 ? (char)toupper((unsigned char)*p)
					 : '_');
	fprintf(o,
		"/* Generated by dagger-idlc from %s. Do not edit. */\n"
		"#ifndef %s_DG_H\n#define %s_DG_H\n\n"
		"#include <stdint.h>\n\n#include \"dagger/pb.h\"\n"
		"#include \"%s.pb-c.h\"\n\n"
		"#ifdef __cplusplus\nextern \"C\" {\n#endif\n",
		f->name, guard.p, guard.p, stem);
	for (i = 0; i < nsv; i++) {
		const struct service_info *s = &sv[i];

		fprintf(o,
			"\n/* ---- service %s "
			"------------------------------------------------------"
			"---- */\n\n"
			"/* The name the service registers under. */\n"
			"#define %s__SERVICE \"%s\"\n",
			s->full, s->upper, s->full);
		for (j = 0; j < s->n; j++)
			fprintf(o, "#define %s__%s__FN 0x%04xu /* %s */\n",
				s->upper, s->m[j].upper, s->m[j].id,
				s->m[j].m->name);
		fprintf(o, "\n");
		for (j = 0; j < s->n; j++) {
			const struct method_info *m = &s->m[j];

			fprintf(o,
				"/* %s.%s(%s) returns (%s) */\n"
				"int %s__%s_call(struct dg_flow *f, int conn, "
				"const %s *req,\n\t\tuint32_t *rpc_id);\n"
				"int %s__%s_take(struct dg_flow *f, "
				"const struct dg_completion *c,\n\t\t%s "
				"**resp);\n"
				"int %s__%s_sync(struct dg_flow *f, int conn, "
				"const %s *req,\n\t\t%s **resp, int "
				"timeout_ms);\n",
				s->full, m->m->name, m->m->input_type + 1,
				m->m->output_type + 1, s->lower, m->lower,
				m->in_c, s->lower, m->lower, m->out_c, s->lower,
				m->lower, m->in_c, m->out_c);
		}
		fprintf(o,
			"\n/*\n * Server side: one handler per method (NULL: "
			"answered DG_ST_NO_FUNCTION).\n"
			" * resp is initialised; return 0, or a status >= "
			"DG_ST_APP_BASE.\n"
			" * req and memory from dg_flow_alloc(f) are valid "
			"until the handler\n * returns; resp is encoded "
			"after it returns.\n */\n"
			"struct %s__handlers {\n",
			s->lower);
		for (j = 0; j < s->n; j++)
			fprintf(o,
				"\tint (*%s)(void *arg, struct dg_flow *f, "
				"const %s *req,\n\t\t%s *resp);\n",
				s->m[j].lower, s->m[j].in_c, s->m[j].out_c);
		fprintf(o,
			"};\n\n"
			"struct %s__server {\n"
			"\tstruct dg_service_def def;\n"
			"\tstruct dg_handler table[%zu];\n"
			"\tstruct %s__handlers h;\n"
			"\tvoid *arg;\n};\n\n"
			"/*\n * Fills srv (which must outlive serving) and "
			"returns its definition,\n"
			" * for dg_serve() or dg_server_start().\n */\n"
			"const struct dg_service_def *\n"
			"%s__service(struct %s__server *srv,\n"
			"\t\tconst struct %s__handlers *h, void *arg, "
			"uint8_t lb);\n"
			"/* Registers the service and starts nthreads "
			"dispatch threads. */\n"
			"int %s__server_start(struct dg_host *host, struct "
			"%s__server *srv,\n"
			"\t\tconst struct %s__handlers *h, void *arg, "
			"uint8_t lb,\n"
			"\t\tuint32_t first_flow, uint32_t nthreads,\n"
			"\t\tstruct dg_server **out);\n",
			s->lower, s->n ? s->n : 1, s->lower, s->lower, s->lower,
			s->lower, s->lower, s->lower, s->lower);
	}
	fprintf(o, "\n#ifdef __cplusplus\n}\n#endif\n#endif\n");
	free(guard.p);
}

static void emit_source(FILE *o, const FileProto *f, const char *stem,
			const struct service_info *sv, size_t nsv)
{
	size_t i, j;

	fprintf(o,
		"/* Generated by dagger-idlc from %s. Do not edit. */\n"
		"#include \"%s.dg.h\"\n",
		f->name, stem);
	for (i = 0; i < nsv; i++) {
		const struct service_info *s = &sv[i];

		for (j = 0; j < s->n; j++) {
			const struct method_info *m = &s->m[j];

			fprintf(o,
				"\nint %s__%s_call(struct dg_flow *f, int "
				"conn, const %s *req,\n\t\tuint32_t *rpc_id)\n"
				"{\n\treturn dg_pb_call(f, conn, %s__%s__FN, "
				"&req->base, rpc_id);\n}\n",
				s->lower, m->lower, m->in_c, s->upper,
				m->upper);
			fprintf(o,
				"\nint %s__%s_take(struct dg_flow *f, const "
				"struct dg_completion *c,\n\t\t%s **resp)\n"
				"{\n\tProtobufCMessage *m = NULL;\n"
				"\tint rc = dg_pb_take(f, c, "
				"&%s__descriptor, &m);\n\n"
				"\t*resp = rc ? NULL : (%s *)m;\n"
				"\treturn rc;\n}\n",
				s->lower, m->lower, m->out_c, m->out_lower,
				m->out_c);
			fprintf(o,
				"\nint %s__%s_sync(struct dg_flow *f, int "
				"conn, const %s *req,\n\t\t%s **resp, int "
				"timeout_ms)\n"
				"{\n\tProtobufCMessage *m = NULL;\n"
				"\tint rc = dg_pb_call_sync(f, conn, "
				"%s__%s__FN, &req->base,\n"
				"\t\t\t\t &%s__descriptor, &m, timeout_ms);\n\n"
				"\t*resp = rc ? NULL : (%s *)m;\n"
				"\treturn rc;\n}\n",
				s->lower, m->lower, m->in_c, m->out_c, s->upper,
				m->upper, m->out_lower, m->out_c);
			fprintf(o,
				"\nstatic int %s__%s_serve(void *arg, const "
				"struct dg_request *rq,\n\t\tstruct "
				"dg_response *rs)\n"
				"{\n\tstruct %s__server *srv = arg;\n"
				"\tProtobufCMessage *in = NULL;\n"
				"\t%s out;\n\tint st;\n\n"
				"\tif (dg_pb_unpack(rq->flow, "
				"&%s__descriptor, rq->data,\n"
				"\t\t\t rq->len, &in))\n"
				"\t\treturn DG_ST_BAD_FRAME;\n"
				"\tprotobuf_c_message_init(&%s__descriptor, "
				"&out);\n"
				"\tst = srv->h.%s(srv->arg, rq->flow, "
				"(const %s *)in, &out);\n"
				"\tif (st) {\n\t\trs->len = 0;\n"
				"\t\treturn st;\n\t}\n"
				"\treturn dg_pb_respond(&out.base, rs);\n}\n",
				s->lower, m->lower, s->lower, m->out_c,
				m->in_lower, m->out_lower, m->lower, m->in_c);
		}
		fprintf(o,
			"\nconst struct dg_service_def *\n"
			"%s__service(struct %s__server *srv,\n"
			"\t\tconst struct %s__handlers *h, void *arg, "
			"uint8_t lb)\n{\n"
			"\tuint32_t n = 0;\n\n"
			"\tsrv->h = *h;\n\tsrv->arg = arg;\n",
			s->lower, s->lower, s->lower);
		for (j = 0; j < s->n; j++)
			fprintf(o,
				"\tif (h->%s)\n"
				"\t\tsrv->table[n++] = (struct dg_handler){"
				"%s__%s__FN,\n\t\t\t\t\t\t\t  %s__%s_serve};\n",
				s->m[j].lower, s->upper, s->m[j].upper,
				s->lower, s->m[j].lower);
		fprintf(o,
			"\tsrv->def = (struct dg_service_def){.name = "
			"%s__SERVICE,\n"
			"\t\t\t\t\t    .handlers = srv->table,\n"
			"\t\t\t\t\t    .nhandlers = n,\n"
			"\t\t\t\t\t    .arg = srv,\n"
			"\t\t\t\t\t    .lb = lb};\n"
			"\treturn &srv->def;\n}\n",
			s->upper);
		fprintf(o,
			"\nint %s__server_start(struct dg_host *host, struct "
			"%s__server *srv,\n"
			"\t\tconst struct %s__handlers *h, void *arg, "
			"uint8_t lb,\n"
			"\t\tuint32_t first_flow, uint32_t nthreads,\n"
			"\t\tstruct dg_server **out)\n{\n"
			"\treturn dg_server_start(host, %s__service(srv, h, "
			"arg, lb),\n"
			"\t\t\t       first_flow, nthreads, out);\n}\n",
			s->lower, s->lower, s->lower, s->lower);
	}
}

static int write_file(const char *out_dir, const char *stem, const char *ext,
		      const FileProto *f, const struct service_info *sv,
		      size_t nsv)
{
	struct str path = {0};
	FILE *o;
	int rc;

	str_printf(&path, "%s/%s%s", out_dir, stem, ext);
	if (mkdirs(path.p) || !(o = fopen(path.p, "w"))) {
		fprintf(stderr, "dagger-idlc: cannot write %s: %s\n", path.p,
			strerror(errno));
		free(path.p);
		return -1;
	}
	if (!strcmp(ext, ".dg.h"))
		emit_header(o, f, stem, sv, nsv);
	else
		emit_source(o, f, stem, sv, nsv);
	rc = ferror(o) | fclose(o);
	if (rc)
		fprintf(stderr, "dagger-idlc: cannot write %s\n", path.p);
	free(path.p);
	return rc ? -1 : 0;
}

/* ---- driver -------------------------------------------------------------- */

static void usage(FILE *o)
{
	fprintf(o, "usage: dagger-idlc [-I DIR]... --out DIR [--protoc PATH] "
		   "FILE.proto...\n"
		   "       dagger-idlc --descriptor-set SET --out DIR "
		   "FILE.proto...\n"
		   "       dagger-idlc --ids [-I DIR]... [--descriptor-set "
		   "SET] FILE.proto...\n");
}

/*
 * Runs protoc-c: message code into out_dir (when given), the descriptor
 * set into set_path. Its diagnostics ("file:line:col: message") go to our
 * stderr as they are; any failure is ours.
 */
static int run_protoc(const char *protoc, char **incs, int ninc,
		      const char *out_dir, const char *set_path, char **files,
		      int nfiles)
{
	char **av = calloc((size_t)(ninc + nfiles + 8), sizeof(*av));
	struct str setarg = {0}, outarg = {0};
	int i, n = 0, status;
	pid_t pid;

	if (!av)
		return -1;
	av[n++] = (char *)protoc;
	for (i = 0; i < ninc; i++)
		av[n++] = incs[i];
	av[n++] = "--include_imports";
	av[n++] = "--include_source_info";
	str_printf(&setarg, "--descriptor_set_out=%s", set_path);
	av[n++] = setarg.p;
	if (out_dir) {
		str_printf(&outarg, "--c_out=%s", out_dir);
		av[n++] = outarg.p;
	}
	for (i = 0; i < nfiles; i++)
		av[n++] = files[i];
	av[n] = NULL;
	if (posix_spawnp(&pid, protoc, NULL, NULL, av, environ)) {
		fprintf(stderr, "dagger-idlc: cannot run %s: %s\n", protoc,
			strerror(errno));
		status = -1;
	} else if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
		   WEXITSTATUS(status)) {
		fprintf(stderr,
			"dagger-idlc: %s rejected the input (see "
			"above)\n",
			protoc);
		status = -1;
	}
	free(av);
	free(setarg.p);
	free(outarg.p);
	return status ? -1 : 0;
}

static uint8_t *read_all(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t cap = 0, n = 0, r;

	if (!f)
		return NULL;
	do {
		if (n == cap) {
			uint8_t *nb = realloc(buf, cap = cap * 2 + 65536);

			if (!nb) {
				free(buf);
				fclose(f);
				return NULL;
			}
			buf = nb;
		}
		r = fread(buf + n, 1, cap - n, f);
		n += r;
	} while (r);
	fclose(f);
	*len = n;
	return buf;
}

/* The set's entry for a named file: exact name, or its path below a -I. */
static const FileProto *find_file(const FileSet *set, const char *name,
				  char **incdirs, int ninc)
{
	size_t i;
	int d;

	for (i = 0; i < set->n_file; i++)
		if (!strcmp(set->file[i]->name, name))
			return set->file[i];
	for (d = 0; d < ninc; d++) {
		size_t n = strlen(incdirs[d]);

		if (!strncmp(name, incdirs[d], n) && name[n] == '/')
			return find_file(set, name + n + 1, NULL, 0);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	const char *out_dir = NULL, *set_in = NULL, *protoc = "protoc-c";
	char **incs = calloc((size_t)argc + 1, sizeof(char *));
	char **incdirs = calloc((size_t)argc + 1, sizeof(char *));
	char **files = calloc((size_t)argc + 1, sizeof(char *));
	int ninc = 0, nfiles = 0, i, rc = 1;
	char set_tmp[] = "/tmp/dagger-idlc-XXXXXX";
	bool ids = false, tmp = false;
	FileSet *set = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;

	if (!incs || !incdirs || !files)
		goto out;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--out") && i + 1 < argc) {
			out_dir = argv[++i];
		} else if (!strcmp(a, "--protoc") && i + 1 < argc) {
			protoc = argv[++i];
		} else if (!strcmp(a, "--descriptor-set") && i + 1 < argc) {
			set_in = argv[++i];
		} else if (!strcmp(a, "--ids")) {
			ids = true;
		} else if (!strcmp(a, "-I") && i + 1 < argc) {
			incdirs[ninc] = argv[++i];
			if (asprintf(&incs[ninc], "-I%s", incdirs[ninc]) < 0)
				goto out;
			ninc++;
		} else if (!strncmp(a, "-I", 2) && a[2]) {
			incdirs[ninc] = (char *)a + 2;
			incs[ninc++] = (char *)a;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			usage(stdout);
			rc = 0;
			goto out;
		} else if (a[0] == '-') {
			fprintf(stderr, "dagger-idlc: unknown option %s\n", a);
			usage(stderr);
			rc = 2;
			goto out;
		} else {
			files[nfiles++] = argv[i];
		}
	}
	if (!nfiles || (!ids && !out_dir)) {
		usage(stderr);
		rc = 2;
		goto out;
	}
	if (out_dir && !ids) {
		struct str d = {0};

		str_printf(&d, "%s/", out_dir);
		if (mkdirs(d.p)) {
			fprintf(stderr, "dagger-idlc: cannot create %s: %s\n",
				out_dir, strerror(errno));
			free(d.p);
			goto out;
		}
		free(d.p);
	}
	if (!set_in) {
		int fd = mkstemp(set_tmp);

		if (fd < 0) {
			perror("dagger-idlc: mkstemp");
			goto out;
		}
		close(fd);
		tmp = true;
		if (run_protoc(protoc, incs, ninc, ids ? NULL : out_dir,
			       set_tmp, files, nfiles))
			goto out;
		set_in = set_tmp;
	}
	buf = read_all(set_in, &len);
	if (!buf) {
		fprintf(stderr, "dagger-idlc: cannot read %s: %s\n", set_in,
			strerror(errno));
		goto out;
	}
	set = google__protobuf__file_descriptor_set__unpack(NULL, len, buf);
	if (!set) {
		fprintf(stderr,
			"dagger-idlc: %s is not a FileDescriptorSet "
			"(protoc --descriptor_set_out)\n",
			set_in);
		goto out;
	}
	for (i = 0; i < nfiles; i++) {
		const FileProto *f = find_file(set, files[i], incdirs, ninc);
		struct service_info *sv;
		size_t s, ok = 0;
		char *stem;

		if (!f) {
			fprintf(stderr,
				"dagger-idlc: %s: not in the "
				"descriptor set\n",
				files[i]);
			nerrors++;
			continue;
		}
		if (f->options && f->options->base.n_unknown_fields)
			error_at(f, line_of(f, (int32_t[]){8}, 1),
				 "unsupported option (custom file option, "
				 "e.g. protobuf-c's c_package): the stubs "
				 "use protoc-c's default names");
		sv = calloc(f->n_service + 1, sizeof(*sv));
		if (!sv)
			goto out;
		for (s = 0; s < f->n_service; s++)
			if (!analyse_service(f, s, &sv[s]))
				ok++;
		stem = strip_proto(f->name);
		if (ids) {
			size_t j;

			for (s = 0; s < f->n_service; s++)
				for (j = 0; j < sv[s].n; j++)
					printf("%s/%s 0x%04x\n", sv[s].full,
					       sv[s].m[j].m->name,
					       sv[s].m[j].id);
		} else if (!nerrors) {
			if (write_file(out_dir, stem, ".dg.h", f, sv,
				       f->n_service) ||
			    write_file(out_dir, stem, ".dg.c", f, sv,
				       f->n_service))
				nerrors++;
		}
		free(stem);
		free_services(sv, f->n_service);
		(void)ok;
	}
	rc = nerrors ? 1 : 0;
out:
	if (tmp)
		unlink(set_tmp);
	if (set)
		google__protobuf__file_descriptor_set__free_unpacked(set, NULL);
	free(buf);
	for (i = 0; incs && i < ninc; i++)
		if (incs[i] != incdirs[i] - 2)
			free(incs[i]);
	free(incs);
	free(incdirs);
	free(files);
	return rc;
}
