#!/bin/sh
# dagger-idlc: the function-id table against its golden copy, the
# descriptor-set input mode, names that are not C (generated code compiled
# with CC), and every promised error (file, line, element, exit status 1).
#   idlc_test.sh IDLC PROTOC_C SRCDIR WORKDIR CC [EMULATOR...]
# EMULATOR: what runs IDLC when it is built for another machine.
set -u
idlc=$1 protoc=$2 src=$3 work=$4 cc=$5
shift 5
emu=$*
run_idlc() { $emu "$idlc" "$@"; }
root=$(cd "$src/../.." && pwd)
rm -rf "$work" && mkdir -p "$work" || exit 1
rc=0
fail() { echo "FAIL: $*"; rc=1; }

# 1. Golden function ids (they must never change for a given name).
run_idlc --ids --protoc "$protoc" -I "$src/protos" "$src/protos/types2.proto" \
	"$src/protos/types3.proto" "$src/protos/sub/common.proto" \
	>"$work/ids.txt" || fail "--ids exit status"
diff -u "$src/golden/ids.txt" "$work/ids.txt" || fail "function ids differ"

# 2. A descriptor set made by protoc itself, read with --descriptor-set.
"$protoc" -I "$src/protos" --include_imports --include_source_info \
	--descriptor_set_out="$work/set.pb" "$src/protos/types3.proto" ||
	fail "protoc-c"
run_idlc --descriptor-set "$work/set.pb" --out "$work/out" types3.proto ||
	fail "--descriptor-set exit status"
[ -s "$work/out/types3.dg.h" ] && [ -s "$work/out/types3.dg.c" ] ||
	fail "--descriptor-set wrote no stubs"
grep -q "DG__TEST__V3__TYPES__ECHO__FN 0x6cc2u" "$work/out/types3.dg.h" ||
	fail "--descriptor-set: function id not in the header"

# 3. Errors: exit status 1 and one message naming file, line and method.
expect() { # expect NAME EXPECTED-STDERR-LINE ARGS...
	name=$1 want=$2
	shift 2
	run_idlc --protoc "$protoc" "$@" >"$work/$name.out" 2>"$work/$name.err"
	st=$?
	[ $st -eq 1 ] || fail "$name: exit status $st, want 1"
	grep -qxF -- "$want" "$work/$name.err" ||
		{ fail "$name: message"; echo "  want: $want"; sed 's/^/  got:  /' "$work/$name.err"; }
	[ ! -e "$work/$name/$name.dg.h" ] || fail "$name: wrote output"
}
bad="$src/bad"
expect syntax 'syntax.proto:6:1: Expected ";".' \
	-I "$bad" --out "$work/syntax" "$bad/syntax.proto"
expect stream 'stream.proto:8: error: method dg.bad.S.Watch: streaming methods are not supported (a Dagger RPC is one request and one response)' \
	-I "$bad" --out "$work/stream" "$bad/stream.proto"
expect option 'option.proto:8: error: method dg.bad.S.Look: unsupported option (idempotency_level); only "deprecated" is accepted on methods' \
	-I "$bad" --out "$work/option" "$bad/option.proto"
expect custom 'custom.proto:13: error: method dg.bad.S.Get: unsupported option (custom option); only "deprecated" is accepted on methods' \
	-I "$bad" --out "$work/custom" "$bad/custom.proto"
expect collide 'collide.proto:9: error: method dg.bad.C.M469: function id 0xf9f9 collides with dg.bad.C.M37 (line 8); rename one of them' \
	-I "$bad" --out "$work/collide" "$bad/collide.proto"
expect fileopt "fileopt.proto:10: error: unsupported option (custom file option, e.g. protobuf-c's c_package): the stubs use protoc-c's default names" \
	-I "$bad" --out "$work/fileopt" "$bad/fileopt.proto"
expect longname 'longname.proto:6: error: service dg.bad.with.a.rather.long.package.name.ServiceNameTooLong: the name is 57 characters, the engine takes at most 47' \
	-I "$bad" --out "$work/longname" "$bad/longname.proto"
expect missing "Could not make proto path relative: $bad/missing.proto: No such file or directory" \
	-I "$bad" --out "$work/missing" "$bad/missing.proto"
printf 'not a descriptor set' >"$work/junk.pb"
expect junk "dagger-idlc: $work/junk.pb is not a FileDescriptorSet (protoc --descriptor_set_out)" \
	--descriptor-set "$work/junk.pb" --out "$work/junk" x.proto
expect notinset 'dagger-idlc: other.proto: not in the descriptor set' \
	--descriptor-set "$work/set.pb" --out "$work/notinset" other.proto
# Every message of a run, exactly (stdin), exit status 1, nothing written.
expect_all() { # expect_all NAME ARGS...
	name=$1
	shift
	cat >"$work/$name.want"
	run_idlc --protoc "$protoc" "$@" >"$work/$name.out" 2>"$work/$name.err"
	st=$?
	[ $st -eq 1 ] || fail "$name: exit status $st, want 1"
	diff -u "$work/$name.want" "$work/$name.err" || fail "$name: messages"
	[ -z "$(ls -A "$work/$name" 2>/dev/null)" ] || fail "$name: wrote output"
}
expect_all clash -I "$bad" --out "$work/clash" "$bad/clash.proto" <<'E'
clash.proto:7: error: field dg.bad.M.has_x: its C member name has_x is also that of the presence flag of field dg.bad.M.x (line 6); rename one of them
clash.proto:9: error: field dg.bad.M.n_y: its C member name n_y is also that of the count of field dg.bad.M.y (line 8); rename one of them
clash.proto:11: error: field dg.bad.M.foobar: its C member name foobar is also that of field dg.bad.M.fooBar (line 10); rename one of them
clash.proto:15: error: enum value dg.bad.FOO.INIT: its C name DG__BAD__FOO__INIT is also that of message dg.bad.Foo (clash.proto:14); rename one of them
clash.proto:19: error: method dg.bad.S.get: its C name DG__BAD__S__GET__FN is also that of method dg.bad.S.Get (clash.proto:18); rename one of them
clash.proto:15: error: enum dg.bad.FOO: its C name dg__bad__foo__descriptor is also that of message dg.bad.Foo (clash.proto:14); rename one of them
E
expect_all key -I "$bad" --out "$work/key" "$bad/key.proto" <<'E'
key.proto:12: error: method dg.bad.K.A: key field "nope" is not a field of dg.bad.M
key.proto:14: error: method dg.bad.K.B: key field "tags" must be a single string, bytes, integer, bool or enum
key.proto:16: error: method dg.bad.K.C: bad dagger directive in its comment (the one known is "dagger: key=FIELD")
key.proto:18: error: method dg.bad.K.D: key field "sub" must be a single string, bytes, integer, bool or enum
E
expect_all group -I "$bad" --out "$work/group" "$bad/group.proto" <<'E'
group.proto:5: error: field dg.bad.M.inner: groups are not supported (protoc-c cannot generate them); use a message field
E
expect_all bare -I "$bad" --out "$work/bare" "$bad/bare.proto" <<'E'
bare.proto:4: error: message NULL: its C name NULL is the macro NULL; give the file a package or rename it
bare.proto:5: error: message ENOENT: its C name ENOENT is a macro of <errno.h>; give the file a package or rename it
bare.proto:6: error: enum ProtobufCBuffer: its C name ProtobufCBuffer is in protobuf-c's namespace (ProtobufC...); give the file a package or rename it
E

# 4. Names protoc accepts that are not C: every C11 keyword and a few
#    reserved identifiers and macros as services, methods, messages,
#    fields, oneofs and enum values. The generated code compiles with
#    -Werror in C11 and GNU C (where linux and unix are macros), also after
#    the standard headers that define the macros dagger-idlc escapes.
names=$work/names
run_idlc --protoc "$protoc" -I "$src/protos" --out "$names" \
	"$src/protos/names/keywords.proto" \
	"$src/protos/names/keywords_svc.proto" || fail "names: exit status"
cat >"$names/user.c" <<'C'
#include <assert.h>
#include <complex.h>
#include <errno.h>
#include <iso646.h>
#include <math.h>
#include <stdalign.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdnoreturn.h>
#include <threads.h>

#include "names/keywords_svc.dg.h"

int main(void)
{
	Dg__Names__Fields f = DG__NAMES__FIELDS__INIT;

	f.restrict_ = f.linux_ ? 1 : 0;
	f.errno_ = f.__x86_64___ + f.static_assert_ + f.stdin_ + f.base_;
	return f.register_ + f.i386_ + f.complex_;
}
C
for std in c11 gnu11; do
	for c in "$names"/names/*.c "$names/user.c"; do
		"$cc" -std=$std -pedantic -Wall -Wextra -Werror -I "$names" \
			-I "$root/include" -I "$root/idl/include" -c "$c" \
			-o "$names/out.o" 2>"$names/cc.err" || {
			fail "names: ${c#"$names"/} does not compile (-std=$std)"
			head -n 5 "$names/cc.err"
		}
	done
done
# protoc-c's service code is gone; the stubs and handler tables escape.
for want in 'int32_t restrict_;' 'char \*linux_;' 'int32_t __x86_64___;' \
	'int32_t base_;' 'protobuf_c_boolean has_errno_;'; do
	grep -q "^ *$want\$" "$names/names/keywords.pb-c.h" ||
		fail "names: no \"$want\" in keywords.pb-c.h"
done
grep -q ProtobufCService "$names/names/keywords_svc.pb-c.h" &&
	fail "names: protoc-c's service code was generated"
for want in 'int (\*register_)(' 'int (\*int_)(' 'int (\*static_assert_)(' \
	'int (\*__static_assert_)('; do
	grep -q "^	$want" "$names/names/keywords_svc.dg.h" ||
		fail "names: no \"$want\" in keywords_svc.dg.h"
done

# 5. proto3 optional: accepted (protoc-c alone refuses it); in C the field
#    is the only member of its oneof, `_NAME`, whose case is its presence.
run_idlc --protoc "$protoc" -I "$src/protos" --out "$work/opt" \
	"$src/protos/optional.proto" "$src/protos/sub/common.proto" ||
	fail "optional: exit status"
for want in 'Dg__Test__Opt__Opt__I32Case _i32_case;' 'int32_t i32;' \
	'Dg__Test__Opt__Opt__RestrictCase _restrict_case;' 'uint32_t restrict_;' \
	'DG__TEST__OPT__OPT___I32_I32 = 1' 'int32_t plain;'; do
	grep -q "^ *$want\$" "$work/opt/optional.pb-c.h" ||
		fail "optional: no \"$want\" in optional.pb-c.h"
done
"$cc" -std=c11 -Wall -Wextra -Werror -Wno-missing-braces -I "$work/opt" \
	-I "$root/include" -I "$root/idl/include" \
	-c "$work/opt/optional.pb-c.c" -o "$work/opt/out.o" ||
	fail "optional: optional.pb-c.c does not compile"

run_idlc --bogus >/dev/null 2>&1
[ $? -eq 2 ] || fail "unknown option: exit status"
[ $rc -eq 0 ] && echo "idlc_test: all checks passed"
exit $rc
