// SPDX-License-Identifier: MIT
/*
 * dagger-idlc - typed C stubs for Dagger services defined in protobuf IDL.
 *
 *   dagger-idlc [-I DIR]... --out DIR [--protoc PATH] FILE.proto...
 *   dagger-idlc --descriptor-set SET --out DIR [--protoc PATH] FILE.proto...
 *   dagger-idlc --ids [-I DIR]... FILE.proto...
 *
 * The first form runs protoc-c on the files for a FileDescriptorSet (with
 * imports and source info); the second reads a set made by `protoc
 * --include_imports --include_source_info --descriptor_set_out=SET`.
 * Nothing here parses .proto text: the descriptors come from protoc's own
 * parser. For every named file dagger-idlc writes the message code,
 * FILE.pb-c.c/h, and FILE.dg.h/.dg.c: per method a function id, an
 * asynchronous call, a typed take-response and a synchronous call; per
 * service a typed handler table and its server skeleton. --ids prints the
 * function-id table instead.
 *
 * The message code is protoc-c's, generated (protoc-c
 * --descriptor_set_in) from a copy of the set prepared for it:
 *  - without services: the stubs do not use protoc-c's generic service
 *    code, whose C names break on methods named after C keywords;
 *  - proto3 `optional` fields made plain members of the oneof they
 *    belong to in the descriptor (protoc's "synthetic" oneof `_NAME`,
 *    which protoc-c 1.4.1 refuses): the same encoding, and presence is
 *    the oneof's case;
 *  - fields whose C member name would be a C keyword or macro that
 *    protoc-c does not escape renamed NAME_ (protoc-c itself appends the
 *    '_' to C++ keywords). Field names are not on the wire.
 * Names that still cannot work in C (two elements with one C name, a
 * packageless type named like a macro, groups) are errors.
 *
 * Function ids: FNV-1a (32 bit) of "package.Service/Method", folded to 16
 * bits by XOR of the halves; 0 is never used (it becomes 1). They depend
 * on the name only, so re-ordering or adding methods keeps them. Two
 * methods of one service with the same id are an error here, not a
 * surprise at run time.
 *
 * Errors (streaming methods, options the stubs cannot honour, names too
 * long or not C, anything protoc rejects) are printed as "FILE:LINE: ..."
 * naming the element, and the exit status is 1.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
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
typedef Google__Protobuf__DescriptorProto MsgProto;
typedef Google__Protobuf__FieldDescriptorProto FieldProto;
typedef Google__Protobuf__EnumDescriptorProto EnumProto;
typedef Google__Protobuf__ServiceDescriptorProto ServiceProto;
typedef Google__Protobuf__MethodDescriptorProto MethodProto;

extern char **environ;

static int nerrors;

/* ---- memory: one arena for the whole run --------------------------------- */

struct block {
	struct block *next;
	size_t used, cap;
	max_align_t data[];
};

static struct block *blocks;

static void *amalloc(void *unused, size_t n)
{
	struct block *b = blocks;

	(void)unused;
	n = (n + sizeof(max_align_t) - 1) & ~(sizeof(max_align_t) - 1);
	if (!b || b->cap - b->used < n) {
		size_t cap = n > 65536 ? n : 65536;

		b = malloc(sizeof(*b) + cap);
		if (!b) {
			fprintf(stderr, "dagger-idlc: out of memory\n");
			exit(1);
		}
		b->next = blocks;
		b->used = 0;
		b->cap = cap;
		blocks = b;
	}
	b->used += n;
	return (unsigned char *)b->data + b->used - n;
}

/* Arena memory goes away as a whole, at exit. */
static void afree(void *unused, void *p)
{
	(void)unused;
	(void)p;
}

static ProtobufCAllocator arena_allocator = {amalloc, afree, NULL};

static void arena_release(void)
{
	while (blocks) {
		struct block *b = blocks;

		blocks = b->next;
		free(b);
	}
}

/* printf into the arena. */
static char *afmt(const char *fmt, ...)
{
	va_list ap;
	char *p;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0) {
		fprintf(stderr, "dagger-idlc: bad format\n");
		exit(1);
	}
	p = amalloc(NULL, (size_t)n + 1);
	va_start(ap, fmt);
	vsnprintf(p, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return p;
}

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

enum name_case { CAMEL, LOWER, UPPER, TOLOWER };

/*
 * One dotted component, the way protoc-c's ToCamel, CamelToLower,
 * CamelToUpper and ToLower (field names) do.
 */
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
		if (up && !was_upper && c != TOLOWER)
			str_addc(s, '_');
		str_addc(s, c == UPPER ? (char)toupper((unsigned char)p[i])
				       : (char)tolower((unsigned char)p[i]));
		was_upper = up;
	}
}

/* "pkg.Outer.Inner" -> Pkg__Outer__Inner / pkg__outer__inner / ... */
static char *c_name(const char *full, enum name_case c)
{
	struct str s = {0};
	const char *p = full;
	char *r;

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
	r = afmt("%s", s.p ? s.p : "");
	free(s.p);
	return r;
}

static bool in_list(const char *w, const char *const *l, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(w, l[i]))
			return true;
	return false;
}

#define IN_LIST(w, l) in_list(w, l, sizeof(l) / sizeof(l[0]))

/* protoc-c appends '_' to a field name that is one of these. */
static const char *const cxx_keywords[] = {"and",
					   "and_eq",
					   "asm",
					   "auto",
					   "bitand",
					   "bitor",
					   "bool",
					   "break",
					   "case",
					   "catch",
					   "char",
					   "class",
					   "compl",
					   "const",
					   "const_cast",
					   "continue",
					   "default",
					   "delete",
					   "do",
					   "double",
					   "dynamic_cast",
					   "else",
					   "enum",
					   "explicit",
					   "extern",
					   "false",
					   "float",
					   "for",
					   "friend",
					   "goto",
					   "if",
					   "inline",
					   "int",
					   "long",
					   "mutable",
					   "namespace",
					   "new",
					   "not",
					   "not_eq",
					   "operator",
					   "or",
					   "or_eq",
					   "private",
					   "protected",
					   "public",
					   "register",
					   "reinterpret_cast",
					   "return",
					   "short",
					   "signed",
					   "sizeof",
					   "static",
					   "static_cast",
					   "struct",
					   "switch",
					   "template",
					   "this",
					   "throw",
					   "true",
					   "try",
					   "typedef",
					   "typeid",
					   "typename",
					   "union",
					   "unsigned",
					   "using",
					   "virtual",
					   "void",
					   "volatile",
					   "wchar_t",
					   "while",
					   "xor",
					   "xor_eq"};

/* C11 (ISO/IEC 9899:2011, 6.4.1). */
static const char *const c_keywords[] = {
	"auto",	      "break",	   "case",	     "char",
	"const",      "continue",  "default",	     "do",
	"double",     "else",	   "enum",	     "extern",
	"float",      "for",	   "goto",	     "if",
	"inline",     "int",	   "long",	     "register",
	"restrict",   "return",	   "short",	     "signed",
	"sizeof",     "static",	   "struct",	     "switch",
	"typedef",    "union",	   "unsigned",	     "void",
	"volatile",   "while",	   "_Alignas",	     "_Alignof",
	"_Atomic",    "_Bool",	   "_Complex",	     "_Generic",
	"_Imaginary", "_Noreturn", "_Static_assert", "_Thread_local"};

/*
 * Lower-case names that are object-like macros where generated code is
 * compiled: predefined by GCC and Clang in GNU mode, or defined by C11's
 * standard headers (errno.h, assert.h, stdio.h, iso646.h, stdbool.h,
 * stdalign.h, stdnoreturn.h, threads.h, complex.h, math.h).
 */
static const char *const c_macros[] = {"linux",
				       "unix",
				       "i386",
				       "errno",
				       "static_assert",
				       "stdin",
				       "stdout",
				       "stderr",
				       "and",
				       "and_eq",
				       "bitand",
				       "bitor",
				       "compl",
				       "not",
				       "not_eq",
				       "or",
				       "or_eq",
				       "xor",
				       "xor_eq",
				       "bool",
				       "true",
				       "false",
				       "alignas",
				       "alignof",
				       "noreturn",
				       "thread_local",
				       "complex",
				       "imaginary",
				       "math_errhandling"};

/*
 * A name that cannot be a struct member or a function name component of
 * its own: a C keyword, a macro, or reserved for the implementation
 * (which defines lower-case macros such as __x86_64__).
 */
static bool c_unusable(const char *w)
{
	return IN_LIST(w, c_keywords) || IN_LIST(w, c_macros) ||
	       (w[0] == '_' && (w[1] == '_' || isupper((unsigned char)w[1])));
}

/*
 * A field's C member name (protoc-c: the name in lower case, '_' appended
 * to C++ keywords); *rename is set when dagger-idlc has to rename the
 * field NAME_ for protoc-c (a C keyword or macro it does not escape, or
 * "base", protobuf-c's own first member).
 */
static char *field_member(const char *name, bool *rename)
{
	char *l = c_name(name, TOLOWER);

	*rename = false;
	if (IN_LIST(l, cxx_keywords))
		return afmt("%s_", l);
	if (c_unusable(l) || !strcmp(l, "base")) {
		*rename = true;
		return afmt("%s_", l);
	}
	return l;
}

/* A method's name in the stubs' C names and handler table members. */
static char *method_c_name(const char *name)
{
	static const char *const params[] = {"arg", "f", "s"};
	char *l = c_name(name, LOWER);

	if (c_unusable(l) || IN_LIST(l, params))
		return afmt("%s_", l);
	return l;
}

/* "sub/foo.proto" -> "sub/foo" */
static char *strip_proto(const char *name)
{
	size_t n = strlen(name);

	if (n > 6 && !strcmp(name + n - 6, ".proto"))
		n -= 6;
	return afmt("%.*s", (int)n, name);
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

/* ---- the C names of a whole set ------------------------------------------ */

/*
 * An element of the set (message, field, ...) where its source info
 * puts it.
 */
struct where {
	const FileProto *f;
	const char *what; /* "message pkg.M", "field pkg.M.f", ... */
	int32_t *path;
	size_t n;
};

static int line_at(const struct where *w)
{
	return line_of(w->f, w->path, w->n);
}

/* Every file-scope C name the generated code declares, and its element. */
struct c_id {
	const char *name;
	const struct where *w;
	size_t seq;
};

static struct c_id *ids;
static size_t nids, capids;

static void add_id(const struct where *w, const char *name)
{
	if (nids == capids) {
		struct c_id *n = amalloc(NULL, (capids * 2 + 256) * sizeof(*n));

		if (nids)
			memcpy(n, ids, nids * sizeof(*n));
		ids = n;
		capids = capids * 2 + 256;
	}
	ids[nids] = (struct c_id){name, w, nids};
	nids++;
}

/* An element one level below parent's path: parent + {tag, index}. */
static struct where *where_below(const struct where *parent, const FileProto *f,
				 int32_t tag, size_t index, const char *what)
{
	struct where *w = amalloc(NULL, sizeof(*w));
	size_t n = parent ? parent->n : 0;

	w->f = f;
	w->what = what;
	w->path = amalloc(NULL, (n + 2) * sizeof(*w->path));
	if (n)
		memcpy(w->path, parent->path, n * sizeof(*w->path));
	w->path[n] = tag;
	w->path[n + 1] = (int32_t)index;
	w->n = n + 2;
	return w;
}

/*
 * A packageless top-level type's C name is a bare identifier: it must not
 * be a macro of the headers generated code includes, nor protobuf-c's.
 */
static void check_bare_type(const struct where *w, const char *c)
{
	static const char *const errno_aliases[] = {"EWOULDBLOCK", "EDEADLOCK",
						    "ENOTSUP"};
	const char *why = NULL;
	int e;

	if (!strncmp(c, "ProtobufC", 9))
		why = "is in protobuf-c's namespace (ProtobufC...)";
	else if (!strcmp(c, "NULL"))
		why = "is the macro NULL";
	else if (IN_LIST(c, errno_aliases))
		why = "is a macro of <errno.h>";
	for (e = 1; !why && e < 512; e++) {
		const char *n = strerrorname_np(e);

		if (n && !strcmp(n, c))
			why = "is a macro of <errno.h>";
	}
	if (why)
		error_at(w->f, line_at(w),
			 "%s: its C name %s %s; give the file a package or "
			 "rename it",
			 w->what, c, why);
}

static const char *file_scope(const FileProto *f)
{
	return f->package ? f->package : "";
}

static const char *join(const char *scope, const char *name)
{
	return *scope ? afmt("%s.%s", scope, name) : name;
}

static void walk_enum(const FileProto *f, const struct where *parent,
		      int32_t tag, size_t index, const char *scope,
		      const EnumProto *e)
{
	const char *full = join(scope, e->name);
	struct where *w =
		where_below(parent, f, tag, index, afmt("enum %s", full));
	const char *C = c_name(full, CAMEL), *L = c_name(full, LOWER);
	const char *U = c_name(full, UPPER);
	size_t k;

	if (!parent && !*file_scope(f))
		check_bare_type(w, C);
	add_id(w, C);
	add_id(w, afmt("_%s_IS_INT_SIZE", U));
	add_id(w, afmt("%s__descriptor", L));
	add_id(w, afmt("%s__enum_values_by_number", L));
	add_id(w, afmt("%s__value_ranges", L));
	add_id(w, afmt("%s__enum_values_by_name", L));
	for (k = 0; k < e->n_value; k++) {
		const char *v = e->value[k]->name;

		add_id(where_below(w, f, 2, k,
				   afmt("enum value %s.%s", full, v)),
		       afmt("%s__%s", U, v));
	}
}

/* A struct member of the generated message, and its element. */
struct member {
	const char *name;
	const char *what; /* "the presence flag of field ...", ... */
	const struct where *w;
};

static bool is_proto3(const FileProto *f)
{
	return f->syntax && !strcmp(f->syntax, "proto3");
}

/* One error per pair of elements whose struct members clash. */
static void check_members(const struct member *m, size_t n)
{
	const struct where **seen = amalloc(NULL, (2 * n + 1) * sizeof(*seen));
	size_t i, j, k, nseen = 0;

	for (i = 0; i < n; i++)
		for (j = 0; j < i; j++) {
			bool dup = false;

			if (strcmp(m[i].name, m[j].name))
				continue;
			for (k = 0; k < nseen && !dup; k += 2)
				dup = seen[k] == m[i].w &&
				      seen[k + 1] == m[j].w;
			if (dup)
				continue;
			seen[nseen++] = m[i].w;
			seen[nseen++] = m[j].w;
			error_at(m[i].w->f, line_at(m[i].w),
				 "%s: its C member name %s is also that of "
				 "%s (line %d); rename one of them",
				 m[i].w->what, m[i].name, m[j].what,
				 line_at(m[j].w));
		}
}

static void walk_message(const FileProto *f, const struct where *parent,
			 int32_t tag, size_t index, const char *scope,
			 const MsgProto *m)
{
	const char *full = join(scope, m->name);
	struct where *w =
		where_below(parent, f, tag, index, afmt("message %s", full));
	const char *C = c_name(full, CAMEL), *L = c_name(full, LOWER);
	const char *U = c_name(full, UPPER);
	struct member *mem;
	size_t k, nmem = 0;
	static const char *const fns[] = {"init",
					  "get_packed_size",
					  "pack",
					  "pack_to_buffer",
					  "unpack",
					  "free_unpacked",
					  "descriptor",
					  "field_descriptors",
					  "field_indices_by_name",
					  "number_ranges"};

	if (!parent && !*file_scope(f))
		check_bare_type(w, C);
	add_id(w, C);
	add_id(w, afmt("%s_Closure", C));
	add_id(w, afmt("%s__INIT", U));
	for (k = 0; k < sizeof(fns) / sizeof(fns[0]); k++)
		add_id(w, afmt("%s__%s", L, fns[k]));

	mem = amalloc(NULL,
		      (2 * m->n_field + m->n_oneof_decl + 1) * sizeof(*mem));
	mem[nmem++] = (struct member){"base", "protobuf-c's base", w};
	for (k = 0; k < m->n_oneof_decl; k++) {
		const char *o = m->oneof_decl[k]->name;
		struct where *ow =
			where_below(w, f, 8, k, afmt("oneof %s.%s", full, o));

		add_id(ow, afmt("%s__%sCase", C, c_name(o, CAMEL)));
		add_id(ow, afmt("%s__%s__NOT_SET", U, c_name(o, UPPER)));
		add_id(ow,
		       afmt("_%s__%s__CASE_IS_INT_SIZE", U, c_name(o, UPPER)));
		mem[nmem++] = (struct member){
			afmt("%s_case", c_name(o, LOWER)),
			afmt("the case of oneof %s.%s", full, o), ow};
	}
	for (k = 0; k < m->n_field; k++) {
		const FieldProto *fl = m->field[k];
		const char *fq = afmt("%s.%s", full, fl->name);
		struct where *fw =
			where_below(w, f, 2, k, afmt("field %s", fq));
		bool rename, str_or_msg;
		char *c = field_member(fl->name, &rename);
		const char *pname = rename ? afmt("%s_", fl->name) : fl->name;

		if (fl->type ==
		    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP) {
			error_at(f, line_at(fw),
				 "field %s: groups are not supported "
				 "(protoc-c cannot generate them); use a "
				 "message field",
				 fq);
			continue;
		}
		mem[nmem++] = (struct member){c, afmt("field %s", fq), fw};
		str_or_msg =
			fl->type ==
				GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING ||
			fl->type ==
				GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE;
		if (fl->label ==
		    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED)
			mem[nmem++] = (struct member){
				afmt("n_%s", c),
				afmt("the count of field %s", fq), fw};
		else if (fl->has_oneof_index &&
			 (size_t)fl->oneof_index < m->n_oneof_decl)
			add_id(fw,
			       afmt("%s__%s_%s", U,
				    c_name(m->oneof_decl[fl->oneof_index]->name,
					   UPPER),
				    c_name(pname, UPPER)));
		else if (
			fl->label ==
				GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_OPTIONAL &&
			!is_proto3(f) && !str_or_msg)
			mem[nmem++] = (struct member){
				afmt("has_%s", c),
				afmt("the presence flag of field %s", fq), fw};
		if (fl->default_value)
			add_id(fw,
			       afmt("%s__default_value",
				    c_name(afmt("%s.%s", full, pname), LOWER)));
	}
	check_members(mem, nmem);
	for (k = 0; k < m->n_nested_type; k++)
		walk_message(f, w, 3, k, full, m->nested_type[k]);
	for (k = 0; k < m->n_enum_type; k++)
		walk_enum(f, w, 4, k, full, m->enum_type[k]);
}

static int id_cmp(const void *a, const void *b)
{
	const struct c_id *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* One error per pair of elements that share C names. */
static void check_ids(void)
{
	const struct where **seen;
	size_t i, j, nseen = 0;

	qsort(ids, nids, sizeof(*ids), id_cmp);
	seen = amalloc(NULL, 2 * (nids + 1) * sizeof(*seen));
	for (i = 1; i < nids; i++) {
		const struct c_id *a, *b = &ids[i];
		bool dup = false;

		for (j = i; j > 0 && !strcmp(ids[j - 1].name, b->name); j--)
			;
		if (j == i)
			continue;
		a = &ids[j]; /* the first of the group */
		if (a->w == b->w)
			continue;
		for (j = 0; j < nseen && !dup; j += 2)
			dup = seen[j] == a->w && seen[j + 1] == b->w;
		if (dup)
			continue;
		seen[nseen++] = a->w;
		seen[nseen++] = b->w;
		error_at(b->w->f, line_at(b->w),
			 "%s: its C name %s is also that of %s (%s:%d); "
			 "rename one of them",
			 b->w->what, b->name, a->w->what, a->w->f->name,
			 line_at(a->w));
	}
}

/* Every file's messages and enums (the services: analyse_service). */
static void check_names(const FileSet *set)
{
	size_t i, k;

	for (i = 0; i < set->n_file; i++) {
		const FileProto *f = set->file[i];

		for (k = 0; k < f->n_message_type; k++)
			walk_message(f, NULL, 4, k, file_scope(f),
				     f->message_type[k]);
		for (k = 0; k < f->n_enum_type; k++)
			walk_enum(f, NULL, 5, k, file_scope(f),
				  f->enum_type[k]);
	}
}

/* ---- the set protoc-c generates message code from ------------------------ */

static void transform_message(MsgProto *m)
{
	size_t k;

	for (k = 0; k < m->n_field; k++) {
		FieldProto *fl = m->field[k];
		bool rename;

		/* A member of its (synthetic) oneof, as in the descriptor. */
		fl->has_proto3_optional = 0;
		fl->proto3_optional = 0;
		field_member(fl->name, &rename);
		if (rename)
			fl->name = afmt("%s_", fl->name);
	}
	for (k = 0; k < m->n_nested_type; k++)
		transform_message(m->nested_type[k]);
}

static void transform(FileSet *set)
{
	size_t i, k;

	for (i = 0; i < set->n_file; i++) {
		FileProto *f = set->file[i];

		f->n_service = 0;
		for (k = 0; k < f->n_message_type; k++)
			transform_message(f->message_type[k]);
	}
}

/* ---- services ------------------------------------------------------------ */

struct method_info {
	const MethodProto *m;
	uint16_t id;
	char *key;   /* the request's key hash (C expression), NULL: none */
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

/* The whole set, for looking up request types (key fields). */
static const FileSet *all_set;

/* The leading comment of the element at path, or NULL. */
static const char *comment_of(const FileProto *f, const int32_t *path, size_t n)
{
	const Google__Protobuf__SourceCodeInfo *sci = f->source_code_info;
	size_t i;

	for (i = 0; sci && i < sci->n_location; i++) {
		const Google__Protobuf__SourceCodeInfo__Location *l =
			sci->location[i];

		if (l->n_path == n && !memcmp(l->path, path, n * sizeof(*path)))
			return l->leading_comments;
	}
	return NULL;
}

static const MsgProto *find_in(const MsgProto *m, const char *prefix,
			       const char *full)
{
	char *name = afmt("%s.%s", prefix, m->name);
	size_t k;

	if (!strcmp(name, full))
		return m;
	for (k = 0; k < m->n_nested_type; k++) {
		const MsgProto *r = find_in(m->nested_type[k], name, full);

		if (r)
			return r;
	}
	return NULL;
}

/* The message of full name ".pkg.Msg" anywhere in the set. */
static const MsgProto *find_message(const char *full)
{
	size_t i, k;

	for (i = 0; all_set && i < all_set->n_file; i++) {
		const FileProto *f = all_set->file[i];
		const char *pkg = f->package && f->package[0]
					  ? afmt(".%s", f->package)
					  : "";

		for (k = 0; k < f->n_message_type; k++) {
			const MsgProto *r =
				find_in(f->message_type[k], pkg, full);

			if (r)
				return r;
		}
	}
	return NULL;
}

/*
 * A method's key field: its leading comment may hold a line
 * "dagger: key=FIELD" naming a field of the request (string, bytes, an
 * integer, bool or enum; not repeated): the stubs then make keyed calls
 * (dg_pb_call_key) with dg_key_hash() of that field, for services
 * balanced by key. Returns the C expression of the hash, or NULL.
 */
static char *method_key(const FileProto *f, const char *svc_full,
			const MethodProto *m, const int32_t *path, int line)
{
	const char *c = comment_of(f, path, 4), *p;
	const MsgProto *in;
	const FieldProto *fl = NULL;
	char name[128];
	bool rename;
	size_t k, n;

	for (p = c; p && *p;) {
		const char *eol = strchr(p, '\n');

		while (*p == ' ' || *p == '\t')
			p++;
		if (!strncmp(p, "dagger:", 7))
			break;
		p = eol ? eol + 1 : NULL;
	}
	if (!p || !*p)
		return NULL;
	p += 7;
	while (*p == ' ' || *p == '\t')
		p++;
	n = 0;
	if (!strncmp(p, "key", 3)) {
		p += 3;
		while (*p == ' ' || *p == '\t')
			p++;
		if (*p == '=') {
			p++;
			while (*p == ' ' || *p == '\t')
				p++;
			while ((isalnum((unsigned char)p[n]) || p[n] == '_') &&
			       n < sizeof(name) - 1)
				n++;
		}
	}
	memcpy(name, p, n);
	name[n] = 0;
	for (p += n; *p == ' ' || *p == '\t' || *p == '\r'; p++)
		;
	if (!n || (*p && *p != '\n')) {
		error_at(f, line,
			 "method %s.%s: bad dagger directive in its comment "
			 "(the one known is \"dagger: key=FIELD\")",
			 svc_full, m->name);
		return NULL;
	}
	in = find_message(m->input_type);
	for (k = 0; in && k < in->n_field; k++)
		if (!strcmp(in->field[k]->name, name))
			fl = in->field[k];
	if (!fl) {
		error_at(f, line,
			 "method %s.%s: key field \"%s\" is not a field of "
			 "%s",
			 svc_full, m->name, name, m->input_type + 1);
		return NULL;
	}
	if (fl->label ==
		    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__LABEL__LABEL_REPEATED ||
	    fl->type ==
		    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_MESSAGE ||
	    fl->type ==
		    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_GROUP ||
	    fl->type ==
		    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_FLOAT ||
	    fl->type ==
		    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_DOUBLE) {
		error_at(f, line,
			 "method %s.%s: key field \"%s\" must be a single "
			 "string, bytes, integer, bool or enum",
			 svc_full, m->name, name);
		return NULL;
	}
	c = field_member(fl->name, &rename);
	if (fl->type ==
	    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_STRING)
		return afmt("dg_key_hash(req->%s, req->%s ? strlen(req->%s) : "
			    "0)",
			    c, c, c);
	if (fl->type ==
	    GOOGLE__PROTOBUF__FIELD_DESCRIPTOR_PROTO__TYPE__TYPE_BYTES)
		return afmt("dg_key_hash(req->%s.data, req->%s.len)", c, c);
	return afmt("dg_key_hash(&(uint64_t){(uint64_t)req->%s}, 8)", c);
}

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

static void analyse_service(const FileProto *f, size_t si,
			    struct service_info *out)
{
	const ServiceProto *s = f->service[si];
	const char *pkg = file_scope(f);
	const char *full = join(pkg, s->name);
	struct where *sw =
		where_below(NULL, f, 6, si, afmt("service %s", full));
	int sline = line_at(sw);
	size_t i, j;

	out->s = s;
	out->full = (char *)full;
	out->lower = c_name(full, LOWER);
	out->upper = c_name(full, UPPER);
	out->n = s->n_method;
	out->m = amalloc(NULL, (s->n_method + 1) * sizeof(*out->m));
	if (strlen(full) >= DG_NAME_MAX)
		error_at(f, sline,
			 "service %s: the name is %zu characters, the engine "
			 "takes at most %d",
			 full, strlen(full), DG_NAME_MAX - 1);
	if (s->options && (s->options->n_uninterpreted_option ||
			   s->options->base.n_unknown_fields))
		error_at(f, sline,
			 "service %s: unsupported option (custom option); "
			 "only \"deprecated\" is accepted on services",
			 full);
	add_id(sw, afmt("%s__SERVICE", out->upper));
	add_id(sw, afmt("%s__service", out->lower));
	add_id(sw, afmt("%s__server_start", out->lower));
	for (i = 0; i < s->n_method; i++) {
		const MethodProto *m = s->method[i];
		struct method_info *mi = &out->m[i];
		struct where *mw = where_below(
			sw, f, 2, i, afmt("method %s.%s", full, m->name));
		int line = line_at(mw);

		check_method(f, full, m, line);
		mi->m = m;
		mi->key = method_key(f, full, m, mw->path, line);
		mi->id = fn_id(pkg, s->name, m->name);
		mi->lower = method_c_name(m->name);
		mi->upper = c_name(m->name, UPPER);
		mi->in_c = c_name(m->input_type, CAMEL);
		mi->in_lower = c_name(m->input_type, LOWER);
		mi->out_c = c_name(m->output_type, CAMEL);
		mi->out_lower = c_name(m->output_type, LOWER);
		add_id(mw, afmt("%s__%s__FN", out->upper, mi->upper));
		add_id(mw, afmt("%s__%s_call", out->lower, mi->lower));
		add_id(mw, afmt("%s__%s_take", out->lower, mi->lower));
		add_id(mw, afmt("%s__%s_sync", out->lower, mi->lower));
		add_id(mw, afmt("%s__%s_serve", out->lower, mi->lower));
		for (j = 0; j < i; j++)
			if (out->m[j].id == mi->id)
				error_at(f, line,
					 "method %s.%s: function id 0x%04x "
					 "collides with %s.%s (line %d); "
					 "rename one of them",
					 full, m->name, mi->id, full,
					 out->m[j].m->name,
					 line_of(f,
						 (int32_t[]){6, (int32_t)si, 2,
							     (int32_t)j},
						 4));
	}
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

			if (m->key)
				fprintf(o,
					"/* Keyed calls: %s, for services "
					"balanced by key. */\n",
					m->key);
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
		"#include <string.h>\n\n"
		"#include \"%s.dg.h\"\n",
		f->name, stem);
	for (i = 0; i < nsv; i++) {
		const struct service_info *s = &sv[i];

		for (j = 0; j < s->n; j++) {
			const struct method_info *m = &s->m[j];

			if (m->key)
				fprintf(o,
					"\nint %s__%s_call(struct dg_flow *f, "
					"int conn, const %s "
					"*req,\n\t\tuint32_t "
					"*rpc_id)\n"
					"{\n\treturn dg_pb_call_key(f, conn, "
					"%s__%s__FN,\n\t\t\t      %s,\n"
					"\t\t\t      &req->base, rpc_id);\n}\n",
					s->lower, m->lower, m->in_c, s->upper,
					m->upper, m->key);
			else
				fprintf(o,
					"\nint %s__%s_call(struct dg_flow *f, "
					"int conn, const %s "
					"*req,\n\t\tuint32_t "
					"*rpc_id)\n"
					"{\n\treturn dg_pb_call(f, conn, "
					"%s__%s__FN, &req->base, rpc_id);\n}\n",
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
				"\tint rc = dg_pb_call_sync%s(f, conn, "
				"%s__%s__FN, %s%s&req->base,\n"
				"\t\t\t\t &%s__descriptor, &m, timeout_ms);\n\n"
				"\t*resp = rc ? NULL : (%s *)m;\n"
				"\treturn rc;\n}\n",
				s->lower, m->lower, m->in_c, m->out_c,
				m->key ? "_key" : "", s->upper, m->upper,
				m->key ? m->key : "", m->key ? ", " : "",
				m->out_lower, m->out_c);
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
		   "[--protoc PATH] FILE.proto...\n"
		   "       dagger-idlc --ids [-I DIR]... [--descriptor-set "
		   "SET] FILE.proto...\n");
}

/*
 * Runs protoc-c with args (NULL-terminated) and then files. Its
 * diagnostics ("file:line:col: message") go to our stderr as they are;
 * any failure is ours.
 */
static int run_protoc(const char *protoc, char **args, char **files, int nfiles)
{
	char **av;
	int i, n = 0, na = 0, status;
	pid_t pid;

	while (args[na])
		na++;
	av = amalloc(NULL, (size_t)(na + nfiles + 2) * sizeof(*av));
	av[n++] = (char *)protoc;
	for (i = 0; i < na; i++)
		av[n++] = args[i];
	for (i = 0; i < nfiles; i++)
		av[n++] = files[i];
	av[n] = NULL;
	errno = posix_spawnp(&pid, protoc, NULL, NULL, av, environ);
	if (errno) {
		fprintf(stderr, "dagger-idlc: cannot run %s: %s\n", protoc,
			strerror(errno));
		return -1;
	}
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status)) {
		fprintf(stderr,
			"dagger-idlc: %s rejected the input (see above)\n",
			protoc);
		return -1;
	}
	return 0;
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
static FileProto *find_file(const FileSet *set, const char *name,
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

/* A temporary file's name (in TMPDIR), created empty; NULL on error. */
static char *temp_file(void)
{
	const char *d = getenv("TMPDIR");
	char *p = afmt("%s/dagger-idlc-XXXXXX", d && *d ? d : "/tmp");
	int fd = mkstemp(p);

	if (fd < 0) {
		perror("dagger-idlc: mkstemp");
		return NULL;
	}
	close(fd);
	return p;
}

/* Writes the prepared set where protoc-c --descriptor_set_in reads it. */
static int write_set(const FileSet *set, const char *path)
{
	size_t len =
		google__protobuf__file_descriptor_set__get_packed_size(set);
	uint8_t *buf = amalloc(NULL, len + 1);
	FILE *o = fopen(path, "wb");
	int rc;

	if (!o) {
		fprintf(stderr, "dagger-idlc: cannot write %s: %s\n", path,
			strerror(errno));
		return -1;
	}
	google__protobuf__file_descriptor_set__pack(set, buf);
	rc = fwrite(buf, 1, len, o) != len;
	rc |= fclose(o);
	if (rc)
		fprintf(stderr, "dagger-idlc: cannot write %s\n", path);
	return rc ? -1 : 0;
}

int main(int argc, char **argv)
{
	const char *out_dir = NULL, *set_in = NULL, *protoc = "protoc-c";
	char **incs = amalloc(NULL, ((size_t)argc + 1) * sizeof(char *));
	char **incdirs = amalloc(NULL, ((size_t)argc + 1) * sizeof(char *));
	char **files = amalloc(NULL, ((size_t)argc + 1) * sizeof(char *));
	FileProto **named = amalloc(NULL, ((size_t)argc + 1) * sizeof(*named));
	struct service_info **sv =
		amalloc(NULL, ((size_t)argc + 1) * sizeof(*sv));
	size_t *nsv = amalloc(NULL, ((size_t)argc + 1) * sizeof(*nsv));
	char *set_tmp = NULL, *prep_tmp = NULL;
	int ninc = 0, nfiles = 0, i, rc = 1;
	bool ids_only = false;
	FileSet *set = NULL;
	uint8_t *buf = NULL;
	size_t len = 0;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (!strcmp(a, "--out") && i + 1 < argc) {
			out_dir = argv[++i];
		} else if (!strcmp(a, "--protoc") && i + 1 < argc) {
			protoc = argv[++i];
		} else if (!strcmp(a, "--descriptor-set") && i + 1 < argc) {
			set_in = argv[++i];
		} else if (!strcmp(a, "--ids")) {
			ids_only = true;
		} else if (!strcmp(a, "-I") && i + 1 < argc) {
			incdirs[ninc] = argv[++i];
			incs[ninc++] = afmt("-I%s", argv[i]);
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
	if (!nfiles || (!ids_only && !out_dir)) {
		usage(stderr);
		rc = 2;
		goto out;
	}
	if (out_dir && !ids_only) {
		if (mkdirs(afmt("%s/", out_dir))) {
			fprintf(stderr, "dagger-idlc: cannot create %s: %s\n",
				out_dir, strerror(errno));
			goto out;
		}
	}
	if (!set_in) {
		if (!(set_tmp = temp_file()))
			goto out;
		incs[ninc] = "--include_imports";
		incs[ninc + 1] = "--include_source_info";
		incs[ninc + 2] = afmt("--descriptor_set_out=%s", set_tmp);
		incs[ninc + 3] = NULL;
		if (run_protoc(protoc, incs, files, nfiles))
			goto out;
		set_in = set_tmp;
	}
	buf = read_all(set_in, &len);
	if (!buf) {
		fprintf(stderr, "dagger-idlc: cannot read %s: %s\n", set_in,
			strerror(errno));
		goto out;
	}
	set = google__protobuf__file_descriptor_set__unpack(&arena_allocator,
							    len, buf);
	if (!set) {
		fprintf(stderr,
			"dagger-idlc: %s is not a FileDescriptorSet "
			"(protoc --descriptor_set_out)\n",
			set_in);
		goto out;
	}
	all_set = set;
	for (i = 0; i < nfiles; i++) {
		FileProto *f = find_file(set, files[i], incdirs, ninc);
		size_t s;

		named[i] = f;
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
		nsv[i] = f->n_service;
		sv[i] = amalloc(NULL, (f->n_service + 1) * sizeof(*sv[i]));
		for (s = 0; s < f->n_service; s++)
			analyse_service(f, s, &sv[i][s]);
	}
	check_names(set);
	check_ids();
	if (ids_only) {
		for (i = 0; i < nfiles; i++) {
			size_t s, j;

			for (s = 0; named[i] && s < nsv[i]; s++)
				for (j = 0; j < sv[i][s].n; j++)
					printf("%s/%s 0x%04x\n", sv[i][s].full,
					       sv[i][s].m[j].m->name,
					       sv[i][s].m[j].id);
		}
		rc = nerrors ? 1 : 0;
		goto out;
	}
	if (nerrors)
		goto out;

	/* protoc-c's message code, from the prepared set. */
	{
		char **names =
			amalloc(NULL, (size_t)(nfiles + 1) * sizeof(*names));
		char *args[3];

		for (i = 0; i < nfiles; i++)
			names[i] = named[i]->name;
		transform(set);
		if (!(prep_tmp = temp_file()) || write_set(set, prep_tmp))
			goto out;
		args[0] = afmt("--descriptor_set_in=%s", prep_tmp);
		args[1] = afmt("--c_out=%s", out_dir);
		args[2] = NULL;
		if (run_protoc(protoc, args, names, nfiles))
			goto out;
	}
	for (i = 0; i < nfiles; i++) {
		const FileProto *f = named[i];
		char *stem = strip_proto(f->name);

		if (write_file(out_dir, stem, ".dg.h", f, sv[i], nsv[i]) ||
		    write_file(out_dir, stem, ".dg.c", f, sv[i], nsv[i]))
			goto out;
	}
	rc = 0;
out:
	if (set_tmp)
		unlink(set_tmp);
	if (prep_tmp)
		unlink(prep_tmp);
	free(buf);
	arena_release();
	return rc;
}
