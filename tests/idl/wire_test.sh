#!/bin/sh
# Wire compatibility with protobuf's own implementation (Python,
# python3-protobuf from Debian): the generated stubs' requests, as they
# reached the server, parse in Python into the expected messages; Python's
# encodings of the responses decode through the stubs into the expected
# messages (test_pb_wire.c, wire_check.py).
#   wire_test.sh TEST_PB_WIRE PYTHON3 DESCRIPTOR_SET SRCDIR WORKDIR [EMULATOR...]
# EMULATOR: what runs TEST_PB_WIRE when it is built for another machine.
set -u
prog=$1 py=$2 set=$3 src=$4 work=$5
shift 5
rm -rf "$work" && mkdir -p "$work" || exit 1
"$py" -c 'import google.protobuf' 2>/dev/null || {
	echo "FAIL: $py cannot import google.protobuf (apt-get install python3-protobuf, or deploy/install-deps)"
	exit 1
}
rc=0
"$@" "$prog" requests "$work" || { echo "FAIL: the stubs' requests"; exit 1; }
"$py" "$src/wire_check.py" "$set" "$work" || { echo "FAIL: Python's checks"; rc=1; }
"$@" "$prog" responses "$work" || { echo "FAIL: Python's responses, through the stubs"; rc=1; }
[ $rc -eq 0 ] && echo "wire_test: requests and responses are protobuf's encoding both ways"
exit $rc
