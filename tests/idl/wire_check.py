#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Wire compatibility, the Python half: protobuf's own implementation
(Debian's python3-protobuf) against the bytes the generated C stubs sent.

    wire_check.py SET DIR

SET is a FileDescriptorSet of wire.proto with its imports (protoc
--include_imports); the message classes are built from it. For every
method, DIR/METHOD.req (what test_pb_wire.c's stubs put on the wire) must
parse into a message equal to the one built here, with the same fields
present; then DIR/METHOD.resp gets this implementation's encoding of the
response test_pb_wire.c expects (maps in key order: deterministic).
"""
import sys

from google.protobuf import descriptor_pb2, message_factory
from google.protobuf.internal import api_implementation

INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
UINT32_MAX, UINT64_MAX = (1 << 32) - 1, (1 << 64) - 1


def classes(set_path):
    fds = descriptor_pb2.FileDescriptorSet()
    with open(set_path, "rb") as f:
        fds.ParseFromString(f.read())
    return message_factory.GetMessages(list(fds.file))


def build(c):
    """The messages test_pb_wire.c builds, by method."""
    W = "dg.test.wire."
    Inner = c[W + "Inner"]

    def inner(name="", n=0, child=None):
        m = Inner(name=name, n=n)
        if child is not None:
            m.child.CopyFrom(child)
        return m

    scalars = c[W + "Scalars"](
        i32=-123456, i64=INT64_MIN, u32=UINT32_MAX, u64=UINT64_MAX,
        s32=INT32_MIN, s64=INT64_MAX, f32=0xDEADBEEF,
        f64=0x0123456789ABCDEF, sf32=-2, sf64=INT64_MIN + 1, fl=3.5,
        db=-1e300, b=True, str="héllo wörld ✓", raw=bytes(range(256)),
        level=2, open_level=7, zero=0)

    def collections():
        m = c[W + "Collections"](
            packed_i32=[0, -1, 1, INT32_MIN, INT32_MAX],
            packed_s64=[-1, 1, INT64_MIN, INT64_MAX],
            packed_db=[0.5, -2.25, 1e-300], packed_f32=[0, 1, UINT32_MAX],
            packed_b=[True, False, True], levels=[1, 2, 0, 9],
            unpacked_u64=[1, 300, UINT64_MAX], strs=["", "a", "ünï"],
            blobs=[b"", b"\x00\x01\x02"])
        m.inners.add().CopyFrom(inner("x", -1))
        m.inners.add().CopyFrom(inner("", 0, inner("c", 5)))
        m.counts["a"] = 1
        m.counts["b"] = -2
        m.by_id[-5].CopyFrom(inner("", 3))
        m.by_id[1].CopyFrom(inner("one"))
        m.names[0] = "zero"
        m.names[UINT64_MAX] = "max"
        m.flags[False] = b""
        m.flags[True] = b"\xff"
        m.levels_by[-1] = 1
        m.levels_by[2] = 2
        return m

    choices = c[W + "Choices"](seq=[1, 2, 3])
    choices.inner.CopyFrom(inner("in", 7, inner("deep", 0, inner("", -9))))
    choices.nested.CopyFrom(inner("nest", 0, inner("l2", 0, inner("l3", 3))))

    Optionals = c[W + "Optionals"]
    optionals = Optionals(i32=0, str="", raw=b"", level=0, db=0.0, b=False,
                          u64=0)
    optionals.inner.SetInParent()
    unset = Optionals(plain=5)

    known = c[W + "Known"]()
    known.at.seconds, known.at.nanos = 1700000000, 999999999
    known.took.seconds, known.took.nanos = -5, -500
    known.i64.value = INT64_MIN
    known.u64.value = UINT64_MAX
    known.i32.value = -1
    known.u32.value = UINT32_MAX
    known.f.value = 0.25
    known.d.value = -0.5
    known.b.value = True
    known.s.value = "wrapped"
    known.raw.value = b"\x00\xff"
    known.any.type_url = "type.googleapis.com/dg.test.wire.Inner"
    known.any.value = inner("any", 1).SerializeToString()
    lst = known.doc.fields["list"].list_value
    lst.values.add().bool_value = True
    lst.values.add().null_value = 0
    lst.values.add().struct_value.fields["k"].string_value = "v"
    known.doc.fields["num"].number_value = 2.5
    known.doc.fields["str"].string_value = "s"

    big = c[W + "Big"](
        chunks=[bytes((i * 7 + ch * 13) & 0xFF for i in range(3000))
                for ch in range(3)],
        values=[i * 1000003 * (-1 if i % 2 else 1) for i in range(1000)],
        text="".join(chr(ord("a") + i % 26) for i in range(5000)))
    for _ in range(3):
        big.parts.add().CopyFrom(collections())

    Legacy = c["dg.test.wire2.Legacy"]
    legacy = Legacy(id=42, kind=1, delta=0, unpacked=[1, -1, 1000],
                    packed=[5, 6], blob=b"\x00")
    legacy.next.CopyFrom(Legacy(id=43, note="n"))

    Choices = c[W + "Choices"]
    merge_a = Choices(i32=5, seq=[1, 2], tags={"k": 1})
    merge_a.nested.CopyFrom(inner("a", 1))
    merge_b = Choices(str="s", seq=[3], tags={"k": 2, "m": 3})
    merge_b.nested.CopyFrom(inner("", 2, inner("c")))

    return {
        "EchoScalars": scalars,
        "EchoCollections": collections(),
        "EchoChoices": choices,
        "EchoOptionals": optionals,
        "EchoUnset": unset,
        "EchoKnown": known,
        "EchoBig": big,
        "EchoLegacy": legacy,
        "Nothing": c["google.protobuf.Empty"](),
        "Merged": (merge_a, merge_b),
    }


def present(m):
    return sorted(f.name for f, _ in m.ListFields())


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: wire_check.py SET DIR")
    set_path, d = sys.argv[1:]
    c = classes(set_path)
    failures = 0
    print("wire_check: python3-protobuf, %s implementation"
          % api_implementation.Type())
    for name, want in build(c).items():
        merge = isinstance(want, tuple)
        sent = want[0] if merge else want
        with open("%s/%s.req" % (d, name), "rb") as f:
            data = f.read()
        got = type(sent)()
        try:
            got.ParseFromString(data)
        except Exception as e:  # a DecodeError is the finding
            print("FAIL: %s: the stubs' %d bytes do not parse: %s"
                  % (name, len(data), e))
            failures += 1
            continue
        if got != sent or present(got) != present(sent):
            print("FAIL: %s: the stubs sent\n%s\nexpected\n%s"
                  % (name, got, sent))
            failures += 1
        else:
            print("ok: %s request (%d bytes, fields %s)"
                  % (name, len(data), ",".join(present(got)) or "none"))
        if merge:
            out = b"".join(m.SerializeToString(deterministic=True)
                           for m in want)
        else:
            out = want.SerializeToString(deterministic=True)
        with open("%s/%s.resp" % (d, name), "wb") as f:
            f.write(out)
    # The checks themselves: presence, defaults, the merge.
    w = build(c)
    if not all(w["EchoOptionals"].HasField(n) for n in
               ("i32", "str", "raw", "inner", "level", "db", "b", "u64")):
        print("FAIL: Optionals: a field set to zero has no presence here")
        failures += 1
    merged = type(w["Merged"][0])()
    merged.MergeFrom(w["Merged"][0])
    merged.MergeFrom(w["Merged"][1])
    if (merged.WhichOneof("pick") != "str" or merged.nested.name != "a"
            or merged.nested.n != 2 or list(merged.seq) != [1, 2, 3]
            or dict(merged.tags) != {"k": 2, "m": 3}):
        print("FAIL: Merged: this implementation merges otherwise")
        failures += 1
    print("wire_check: %d failure(s)" % failures)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
