#!/bin/sh
# dagger-idlc: the function-id table against its golden copy, the
# descriptor-set input mode, and every promised error (file, line,
# method, exit status 1).
#   idlc_test.sh IDLC PROTOC_C SRCDIR WORKDIR
set -u
idlc=$1 protoc=$2 src=$3 work=$4
rm -rf "$work" && mkdir -p "$work" || exit 1
rc=0
fail() { echo "FAIL: $*"; rc=1; }

# 1. Golden function ids (they must never change for a given name).
"$idlc" --ids --protoc "$protoc" -I "$src/protos" "$src/protos/types2.proto" \
	"$src/protos/types3.proto" "$src/protos/sub/common.proto" \
	>"$work/ids.txt" || fail "--ids exit status"
diff -u "$src/golden/ids.txt" "$work/ids.txt" || fail "function ids differ"

# 2. A descriptor set made by protoc itself, read with --descriptor-set.
"$protoc" -I "$src/protos" --include_imports --include_source_info \
	--descriptor_set_out="$work/set.pb" "$src/protos/types3.proto" ||
	fail "protoc-c"
"$idlc" --descriptor-set "$work/set.pb" --out "$work/out" types3.proto ||
	fail "--descriptor-set exit status"
[ -s "$work/out/types3.dg.h" ] && [ -s "$work/out/types3.dg.c" ] ||
	fail "--descriptor-set wrote no stubs"
grep -q "DG__TEST__V3__TYPES__ECHO__FN 0x6cc2u" "$work/out/types3.dg.h" ||
	fail "--descriptor-set: function id not in the header"

# 3. Errors: exit status 1 and one message naming file, line and method.
expect() { # expect NAME EXPECTED-STDERR-LINE ARGS...
	name=$1 want=$2
	shift 2
	"$idlc" --protoc "$protoc" "$@" >"$work/$name.out" 2>"$work/$name.err"
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
"$idlc" --bogus >/dev/null 2>&1
[ $? -eq 2 ] || fail "unknown option: exit status"
[ $rc -eq 0 ] && echo "idlc_test: all checks passed"
exit $rc
