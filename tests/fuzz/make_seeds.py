#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the hand-made seed inputs of the fuzz harnesses into
tests/fuzz/corpus/NAME/seed-*: short scripts in each harness's input
format (see the comment at the top of each fuzz_*.c), one per behaviour
a seed should start the fuzzer near. Inputs the fuzzer found and that
are worth keeping (reproducers above all) live next to them under other
names; this script does not touch those.

usage: tests/fuzz/make_seeds.py [HARNESS...]
"""
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))

REQ, RESP, CTRL, KEY = 1, 2, 4, 8
OP_REGISTER, OP_OPEN, OP_CLOSE = 1, 2, 3


def frame(stamp=0, csum=0, rpc=0, conn=0, length=0, fn=0, cnt=1, flags=0,
          status=0, flow=0, key=0, data=b""):
    return struct.pack("<IIIIIHHBBBBI", stamp, csum, rpc, conn, length, fn,
                       cnt, flags, status, flow, 0, key) + \
        data[:32].ljust(32, b"\0")


def ctrl_msg(op=0, lb=0, port=0, conn=0, service=b"", peer=b""):
    return struct.pack("<BBHI", op, lb, port, conn) + \
        service.ljust(48, b"\0") + peer.ljust(48, b"\0")


# ---- engine_tx ---------------------------------------------------------------

def tx_slot(f, fix, fr, payload=b""):
    """fix 64 (a whole message) reads min(len, 256) payload bytes."""
    b = bytes([0 | f << 3, fix]) + fr
    if fix & 64:
        n = min(struct.unpack_from("<I", fr, 16)[0] % (64 * 56), 256)
        b += payload[:n].ljust(n, b"\x5a")
    return b


def tx_ctrl(f, sel, msg, name=0, peer=False, length=None):
    aux = name | (8 if peer else 0) | (16 if length is not None else 0)
    b = bytes([1 | f << 3, sel, aux]) + msg
    if length is not None:
        b += bytes([length])
    return b


def tx_poll(n=1):
    return bytes([2 | (n - 1) << 4])


S_SERVE, C_DRAIN = bytes([3]), bytes([4])


def t_drain(f, release=True):
    return bytes([5 | f << 3 | (16 if release else 0)])


def rx_head(f, v):
    return bytes([6 | f << 3]) + struct.pack("<I", v)


def c_call(to_t, length):
    return bytes([7 | (16 if to_t else 0)]) + struct.pack("<H", length)


def engine_tx():
    seeds = {}
    # T calls S through A (fix 4) and the loopback through L (fix 8), whole
    # messages of one, two and many frames; S serves, T reads.
    s = b"\0"
    for n, ln in enumerate((5, 60, 700)):
        s += tx_slot(0, 64 | 4, frame(rpc=100 + n, length=ln, fn=1,
                                      flags=REQ), bytes(range(64)) * 4)
        s += tx_slot(0, 64 | 8, frame(rpc=200 + n, length=ln * 3, fn=2,
                                      flags=REQ | KEY, key=7))
    s += tx_poll(4) + S_SERVE + tx_poll(4) + t_drain(0)
    seeds["calls"] = s
    # The same on a checksummed ring.
    seeds["calls-csum"] = b"\1" + s[1:]
    # T answers C's calls it holds (fix 16), once and then again, and a
    # response to nothing; C reads.
    s = b"\0"
    s += tx_slot(1, 16 | 32 | 1, frame(rpc=0, length=3, flags=RESP,
                                       data=b"abc"))
    s += tx_slot(1, 16 | 32 | 1, frame(rpc=0, length=3, flags=RESP))
    s += tx_slot(1, 16 | 64, frame(rpc=1, length=90, flags=RESP))
    s += tx_slot(1, 32 | 1, frame(rpc=77, conn=5, length=1, flags=RESP))
    s += tx_poll(3) + C_DRAIN + c_call(True, 10) + tx_poll(2) + t_drain(1)
    seeds["responses"] = s
    # Control messages: OPEN (local, remote, unknown), CLOSE of A and of
    # a stranger's id, REGISTER of the loopback name and a new one, a bad
    # op, a truncated one.
    s = b"\0"
    s += tx_ctrl(0, 16 | 2, ctrl_msg(), name=0)
    s += tx_ctrl(0, 16 | 2, ctrl_msg(port=7471, peer=b"192.0.2.9"), name=0,
                 peer=True)
    s += tx_ctrl(0, 16 | 2, ctrl_msg(), name=4)
    s += tx_ctrl(0, 4 | 8 | 3, ctrl_msg())
    s += tx_ctrl(0, 3, ctrl_msg(conn=0x10005))
    s += tx_ctrl(1, 16 | 1, ctrl_msg(lb=9), name=2)
    s += tx_ctrl(1, 1, ctrl_msg(lb=2, service=b"other"))
    s += tx_ctrl(0, 0, ctrl_msg(op=99))
    s += tx_ctrl(0, 2, ctrl_msg(service=b"echo"), length=20)
    s += tx_poll(8) + t_drain(0) + t_drain(1)
    seeds["ctrl"] = s
    # Malformed first frames, sealed for their position: no kind, two
    # kinds, unknown flags, len over the maximum, cnt not matching, more
    # slots than the ring, a continuation frame where a first one goes,
    # and an unsealed slot.
    s = b"\0"
    for fl, ln, cnt in ((0, 1, 1), (REQ | RESP, 1, 1), (REQ | 0x80, 1, 1),
                        (REQ, 65537, 1172), (REQ, 1, 2), (REQ, 3584, 65),
                        (RESP | KEY, 1, 1)):
        s += tx_slot(0, 4 | 1, frame(rpc=9, length=ln, cnt=cnt, flags=fl))
    s += tx_slot(0, 2, frame(rpc=10, length=1, flags=REQ))
    s += tx_slot(0, 0, frame(rpc=11, length=1, flags=REQ))
    s += tx_poll(4) + t_drain(0)
    seeds["malformed"] = s
    # A message whose continuation frames come late, one at a time.
    s = b"\0"
    s += tx_slot(0, 4 | 1, frame(rpc=12, length=100, cnt=3, flags=REQ))
    s += tx_poll(2) + tx_slot(0, 2, bytes(64)) + tx_poll(2)
    s += tx_slot(0, 2, bytes(64)) + tx_poll(2) + S_SERVE + tx_poll(2)
    seeds["late-frames"] = s
    # T floods S and never reads its answers, lies about its credits;
    # C calls S meanwhile.
    s = b"\0"
    for n in range(40):
        s += tx_slot(0, 64 | 4, frame(rpc=300 + n, length=20, fn=1,
                                      flags=REQ))
        if n % 8 == 7:
            s += tx_poll(2) + S_SERVE + c_call(False, 50)
    s += rx_head(0, 0xffffffff) + tx_poll(4) + S_SERVE + C_DRAIN
    s += rx_head(0, 12345) + tx_poll(4) + C_DRAIN
    seeds["flood"] = s
    # C alone: calls of every size class to S and to T.
    s = b"\0"
    for ln in (0, 1, 32, 33, 88, 89, 500, 3000):
        s += c_call(False, ln) + c_call(True, ln)
    s += tx_poll(4) + S_SERVE + tx_poll(4) + C_DRAIN + t_drain(1, False)
    seeds["client"] = s
    # T forges S's answer to C. T answers the call of C's it holds with a
    # two-frame response whose continuation frame, at C's RX position 3,
    # carries in its first bytes the stamp of position 3 + 64 and a
    # header: an OK answer on C's connection to S (0x10003) for rpc 67.
    # Once C has read 63 one-frame answers from S, its next position is
    # 67 and that slot, not yet written in this lap, still holds T's
    # bytes: read as a first frame, they pass the stamp check (offset 0
    # of a continuation frame is payload, not a stamp). C takes T's bytes
    # as S's answer to its call 67, made just before.
    cont = struct.pack("<II", 3 + 64 + 1, 0) + struct.pack(
        "<IIIHHBBBBI", 67, 0x10003, 4, 1, 1, RESP, 0, 0, 0, 0) + b"evil"
    s = b"\0" + tx_slot(1, 16 | 64, frame(rpc=0, length=88),
                        bytes(32) + cont.ljust(56, b"\0"))
    s += tx_poll(2) + C_DRAIN
    for n in range(62):
        s += c_call(False, 8) + tx_poll(1) + S_SERVE + tx_poll(1) + C_DRAIN
    s += c_call(False, 8) + tx_poll(1) + S_SERVE + tx_poll(1)
    s += c_call(False, 8) + C_DRAIN
    seeds["repro-stale-continuation"] = s
    return seeds


# ---- attach -----------------------------------------------------------------

def shm(kind, nflows=1, slots_sel=6, flags=0, fix=0xe0, close_early=False,
        magic=None, version=None, length=None, fd_size=None, raw=None):
    """fix: 0x20 magic, 0x40 version, 0x80 length fixed up."""
    if raw is not None:
        return b"\0" + bytes([1 | kind << 1]) + bytes([len(raw)]) + raw
    form = kind << 1 | fix | (16 if close_early else 0)
    b = b"\0" + bytes([form, nflows, slots_sel])
    if slots_sel >= 192:
        b += struct.pack("<I", 100)
    b += struct.pack("<II", flags, 0)
    if not fix & 0x20:
        b += struct.pack("<I", magic)
    if not fix & 0x40:
        b += struct.pack("<I", version)
    if not fix & 0x80:
        b += struct.pack("<I", length)
    if kind == 2:
        b += struct.pack("<I", fd_size)
    return b


def rdma(form, plen, pd, host_len=100):
    return b"\1" + bytes([form, plen]) + pd.ljust(56, b"\0") + \
        struct.pack("<H", host_len)


def attach_req(magic=0, version=0, addr=0x10000, rkey=7, length=0, nflows=0,
               slots=0, flags=1):
    return struct.pack("<IIQIIIIII", magic, version, addr, rkey, length,
                       nflows, slots, flags, 0)


def hello(recv_bufs=64, buf_frames=64):
    return struct.pack("<IHHIII", 0, 0, 500, 9, recv_bufs, buf_frames)


def attach():
    return {
        "shm-valid": shm(1),
        "shm-valid-csum": shm(1, flags=1, nflows=3, slots_sel=7),
        "shm-none": shm(0),
        "shm-wrong-size": shm(2, fd_size=4096),
        "shm-unsealed": shm(3),
        "shm-shrink-only": shm(4),
        "shm-pipe": shm(5),
        "shm-two-fds": shm(6),
        "shm-plain-file": shm(7),
        "shm-version": shm(1, fix=0xa0, version=1),
        "shm-magic": shm(1, fix=0xc0, magic=0x44475331 ^ 1),
        "shm-length": shm(1, fix=0x60, length=4096),
        "shm-no-layout": shm(1, nflows=0),
        "shm-odd-slots": shm(1, slots_sel=200),
        "shm-closed-early": shm(1, close_early=True),
        "shm-short": shm(1, raw=bytes(10)),
        "shm-empty": shm(1, raw=b""),
        "rdma-valid": rdma(2 | 4 | 8 | 16 | 64, 40, attach_req()),
        "rdma-valid-plain": rdma(2 | 4 | 8 | 16 | 64, 40,
                                 attach_req(flags=0), 3000),
        "rdma-dropped": rdma(2 | 4 | 8 | 16 | 32 | 64, 56, attach_req()),
        "rdma-big": rdma(2 | 4 | 8, 40, attach_req(nflows=64, slots=65536)),
        "rdma-short": rdma(2 | 4 | 8 | 64, 20, attach_req()),
        "rdma-length": rdma(2 | 4 | 64, 40, attach_req(length=12345)),
        "rdma-garbage": rdma(0, 56, bytes(range(56))),
        "rdma-hello": rdma(1, 20, hello()),
        "rdma-bad-hello": rdma(1, 20, hello(recv_bufs=2)),
    }


# ---- peer -----------------------------------------------------------------

def pmsg(frames, hfix=0, declared=None, credits=None, seq=None, magic=None,
         n=None):
    """frames: (fix, frame bytes) pairs; fix 16 makes a whole BIND, fix 128
    repeats a frame up to n frames."""
    b = bytes([0, hfix, len(frames) if n is None else n])
    for fix, fr in frames:
        b += bytes([fix]) + fr
    if hfix & 8:
        b += bytes([declared])
    if hfix & 2:
        b += struct.pack("<I", credits)
    if hfix & 1:
        b += struct.pack("<I", seq)
    if hfix & 4:
        b += struct.pack("<I", magic)
    return b


def ppoll(n=1):
    return bytes([1 | (n - 1) << 4])


P_SERVE, P_DRAIN, P_TAKE, P_CREDIT = bytes([2]), bytes([3]), bytes([5]), \
    bytes([6])
P_OPEN = bytes([4 | 7 << 5])  # C opens another connection through the link


def pcall(to_s, length):
    return bytes([4 | (16 if to_s else 0)]) + struct.pack("<H", length)


def praw(data):
    return bytes([7]) + struct.pack("<H", len(data)) + data[:256]


def peer():
    seeds = {}
    req = frame(rpc=1, length=10, fn=1, flags=REQ)
    # The peer's client calls S over Y, one-, two- and many-frame
    # requests; S serves; the answers go back on the link.
    fr = [(1 | 4, frame(rpc=10, length=10, fn=1, flags=REQ)),
          (1 | 4, frame(rpc=11, length=60, fn=1, flags=REQ)), (0, bytes(64)),
          (1 | 4, frame(rpc=12, length=300, fn=1, flags=REQ))] + \
        [(0, bytes(64))] * 5
    s = b"\x20\x10" + pmsg(fr) + ppoll(2) + P_SERVE + ppoll(2) + P_TAKE
    s += P_CREDIT + ppoll(2) + P_TAKE
    seeds["requests"] = s
    # The peer answers C's calls on X, one of them twice; C reads.
    s = b"\x20\x10" + pmsg([(3, frame(rpc=0, length=3, flags=RESP))]) + \
        pmsg([(3, frame(rpc=0, length=3, flags=RESP))]) + \
        pmsg([(3 | 4, frame(rpc=1, length=100, flags=RESP)), (0, bytes(64)),
              (0, bytes(64))]) + ppoll(2) + P_DRAIN + pcall(False, 20) + \
        ppoll(2) + P_TAKE + P_DRAIN
    seeds["answers"] = s
    # UNBIND of Y, a request on it, BIND again (a whole one), BIND_ACK
    # for nothing, BIND of an unknown service, a control op of no kind.
    s = b"\x20\x10" + pmsg([(1 | 8, frame(rpc=2, length=1, cnt=1))])
    s += pmsg([(1 | 4, req)]) + ppoll(2) + P_TAKE
    s += pmsg([(16 | 32 | 64, frame(rpc=30))]) + ppoll(2) + P_TAKE
    s += pmsg([(2 | 8, frame(rpc=1, length=1, cnt=1))])
    s += pmsg([(16, frame(rpc=31, conn=0x20002))])
    s += pmsg([(1, frame(rpc=40, length=1, cnt=1, flags=CTRL,
                         data=bytes([99])))])
    s += ppoll(4) + P_TAKE + P_SERVE + ppoll(2) + P_TAKE
    seeds["binds"] = s
    # Headers that break the link: a sequence gap, a wrong magic, credits
    # the engine never spent, more frames declared than sent, a message
    # longer than the engine's buffers.
    for name, m in (("seq", pmsg([(1 | 4, req)], hfix=1, seq=7)),
                    ("magic", pmsg([(1 | 4, req)], hfix=4, magic=1)),
                    ("credits", pmsg([(1 | 4, req)], hfix=2,
                                     credits=1000)),
                    ("nframes", pmsg([(1 | 4, req)], hfix=8, declared=3)),
                    ("too-long", pmsg([(128 | 1 | 4, req)], n=70))):
        seeds["broken-" + name] = b"\x20\x10" + pcall(False, 5) + m + \
            ppoll(2) + P_DRAIN + pcall(False, 5) + ppoll(2) + P_DRAIN
    seeds["garbage"] = b"\x20\x10" + praw(bytes(range(200))) + ppoll(2) + \
        praw(b"") + ppoll(2) + P_DRAIN
    # A peer whose buffers hold one frame each and that never returns
    # credits: the engine's answers to it stall, its requests pile up in
    # the FIFO while it sends full 64-frame messages.
    s = b"\x00\x00"
    for n in range(80):
        s += pmsg([(128 | 1 | 4, frame(rpc=100 + n * 64, length=8, fn=1,
                                        flags=REQ))], n=64)
        s += ppoll(1)
    seeds["repro-fifo-overflow"] = s + ppoll(4)
    # A peer whose four buffers hold one frame each: C's five-frame call
    # through it could never be handed to the link and stopped C's TX
    # ring for good (its call to S behind it never went); now it is
    # answered TOO_BIG.
    seeds["repro-link-capacity"] = b"\x00\x00" + pcall(False, 220) + \
        ppoll(2) + P_TAKE
    # C's ring fills with S's answers right after C opened another
    # connection through the link: the peer's BIND_ACK waited at the
    # FIFO's head for C's room with no bound, and every call of the
    # peer's client behind it with it (now: owed after the hold bound).
    s = b"\x20\x10"
    for n in range(63):
        s += pcall(True, 8)
        if n % 16 == 15:
            s += ppoll(2) + P_SERVE + ppoll(2)
    s += ppoll(2) + P_SERVE + ppoll(2) + P_OPEN + ppoll(2) + P_TAKE
    s += pcall(True, 8) + ppoll(2) + P_SERVE + ppoll(2)
    s += pmsg([(2 | 8, frame(rpc=1, length=1, cnt=1))]) + ppoll(4)
    seeds["repro-bind-ack-held"] = s
    return seeds


# ---- host_rx ----------------------------------------------------------------

def hraw(f, fix, fr):
    return bytes([0 | f << 3, fix]) + fr


def hwhole(f, length, fn=1, status=None, conn=None, key=False):
    sel = (1 if conn is None else 0) | 2 | (4 if status is not None else 0) \
        | (8 if key else 0)
    b = bytes([1 | f << 3, sel]) + struct.pack("<H", length)
    if conn is not None:
        b += struct.pack("<I", conn)
    if status is not None:
        b += bytes([status])
    # sel & 2: fn = 1 + sel % 3
    return b


def hpoll(n):
    return bytes([2 | (n - 1) << 4])


H_SERVE = bytes([3])


def hcall(length):
    return bytes([4]) + struct.pack("<H", length)


def host_rx():
    seeds = {}
    sizes = (0, 1, 32, 33, 88, 89, 144, 145, 500, 1700)
    s = b""
    for k, ln in enumerate(sizes * 3):
        s += hwhole(0, ln, status=(0, 3, 64)[k % 3]) + \
            hpoll(1 if k % 2 else 16)
    seeds["client"] = b"\0" + s + hpoll(16)
    seeds["client-csum"] = b"\1" + s + hpoll(16)
    s = b""
    for k, ln in enumerate(sizes * 3):
        s += hwhole(1, ln) + H_SERVE
    s += hwhole(1, 10, conn=7) + H_SERVE
    seeds["server"] = b"\0" + s
    seeds["server-csum"] = b"\1" + s
    # Several whole messages before one poll takes them all, wrapping.
    s = b"".join(hwhole(0, ln) for ln in (40, 100, 300, 700, 20, 60)) + \
        hpoll(16) + b"".join(hwhole(0, ln) for ln in (1000, 10, 89)) + \
        hpoll(16) + hcall(50) + hcall(2000)
    seeds["batch"] = b"\0" + s
    # Raw slots: a header whose cnt does not match its len, len over the
    # maximum, more slots than the ring, a continuation frame where a
    # first one goes, an unsealed one, a control reply, a request on the
    # client's ring and a response on the server's, a first frame whose
    # continuation never comes, then whole messages again.
    s = b""
    for f in (0, 1):
        for fix, fr in ((1, frame(rpc=1, length=100, cnt=1, flags=RESP)),
                        (1, frame(rpc=2, length=70000, cnt=1252,
                                  flags=RESP)),
                        (1, frame(rpc=3, length=3584, cnt=65, flags=RESP)),
                        (1, frame(rpc=6, flags=CTRL, conn=9)),
                        (1, frame(rpc=7, length=5, flags=REQ)),
                        (1, frame(rpc=8, length=5, flags=RESP))):
            s += hraw(f, fix, fr) + (hpoll(4) if f == 0 else H_SERVE)
        s += hwhole(f, 50) + (hpoll(4) if f == 0 else H_SERVE)
        # A first frame whose continuation frames never come, a
        # continuation frame in a first frame's place, an unsealed slot:
        # the host waits there for good.
        for fix, fr in ((1 | 4 | 8 | 16, frame(rpc=9, length=200)),
                        (2, frame(rpc=4, length=1, flags=RESP)),
                        (0, frame(rpc=5, length=1, flags=RESP))):
            s += hraw(f, fix, fr) + (hpoll(4) if f == 0 else H_SERVE)
    seeds["raw"] = b"\0" + s
    seeds["raw-csum"] = b"\1" + s
    return seeds


# ---- idl --------------------------------------------------------------------

def varint(v):
    out = b""
    v &= (1 << 64) - 1
    while True:
        b = v & 0x7f
        v >>= 7
        if v:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def zz(v):
    return (v << 1) ^ (v >> 63)


def fv(n, v):
    return varint(n << 3) + varint(v)


def fl(n, data):
    return varint(n << 3 | 2) + varint(len(data)) + data


def f64(n, data):
    return varint(n << 3 | 1) + data


def f32(n, data):
    return varint(n << 3 | 5) + data


def point(x, y, label):
    return fv(1, zz(x)) + fv(2, zz(y)) + fl(3, label)


def entry(key, value, state):
    return fl(1, key) + fl(2, value) + fv(3, state)


def bag(big=False):
    b = fv(1, 2**32 - 5) + fv(2, 2**63 + 3) + fv(3, 7) + fv(4, 2**64 - 1)
    b += fv(5, zz(-9)) + fv(6, zz(-2**40)) + f32(7, b"\1\2\3\4")
    b += f64(8, bytes(8)) + f32(9, b"\xff" * 4) + f64(10, b"\x80" * 8)
    b += f32(11, struct.pack("<f", 1.5)) + f64(12, struct.pack("<d", -2.25))
    b += fv(13, 1) + fl(14, b"str") + fl(15, b"\0raw" * (2500 if big else 1))
    b += fv(16, 2) + fl(17, b"".join(varint(i) for i in (1, 300, 2**31)))
    b += fl(18, b"a") + fl(18, b"") + fl(19, b"\xff")
    b += fl(20, entry(b"k", b"v", 1)) + fl(20, b"")
    b += fl(21, fl(1, b"n") + fv(2, 5)) + fl(21, fl(1, b"n") + fv(2, 6))
    b += fl(22, fv(1, 3) + fl(2, entry(b"x", b"", 2)))
    b += fl(23, fl(1, b"p") + fl(2, point(-1, 2, b"l")))
    b += fl(24, b"name")
    return b


def record(with_id=True, depth=3):
    inner = fl(1, b"leaf")
    for k in range(depth):
        inner = fl(1, b"n%d" % k) + f64(2, bytes(8)) + fl(3, inner)
    r = fv(1, 42) if with_id else b""
    r += fv(2, 1) + fl(3, b"note") + fl(4, b"blob")
    r += fl(5, b"".join(varint(zz(v)) for v in (-1, 1, -2**62)))
    r += fl(6, b"t1") + fl(6, b"t2") + fl(7, inner) + fl(8, inner)
    r += f64(9, struct.pack("<d", 0.5)) + f32(10, struct.pack("<f", 2))
    r += fv(11, 1) + fv(12, 2**63) + f32(13, b"\xfe\xff\xff\xff")
    r += fl(14, point(3, -4, b"w")) + fv(15, 1) + fv(15, 9) + fv(17, 12345)
    return r


def idl():
    # sel: bit 0 server side, bits 1-3 the method (Echo, EchoList,
    # Count, Put, Ping), bit 7 checksummed rings.
    def sel(server, method, csum=False):
        return bytes([(1 if server else 0) | method << 1 |
                      (128 if csum else 0)])
    seeds = {}
    for side in (0, 1):
        name = ("client", "server")[side]
        seeds[name + "-bag"] = sel(side, 0) + bag()
        seeds[name + "-bag-big-csum"] = sel(side, 0, True) + bag(True)
        seeds[name + "-baglist"] = sel(side, 1) + fl(1, bag()) + fl(1, b"")
        seeds[name + "-count"] = sel(side, 2) + bag()
        seeds[name + "-point"] = sel(side, 2) + point(5, 6, b"p")
        seeds[name + "-record"] = sel(side, 3) + record()
        seeds[name + "-record-deep"] = sel(side, 3) + record(depth=60)
        seeds[name + "-record-no-id"] = sel(side, 3) + record(False)
        seeds[name + "-empty-unknown"] = sel(side, 4) + fv(9, 1) + \
            fl(10, b"x")
        seeds[name + "-truncated"] = sel(side, 0) + bag()[:-3]
        seeds[name + "-overlong"] = sel(side, 0) + varint(15 << 3 | 2) + \
            varint(2**40) + b"x"
        seeds[name + "-bad-wiretype"] = sel(side, 3) + bytes([0x0f, 1])
    return seeds


GENERATORS = {"engine_tx": engine_tx, "attach": attach, "peer": peer,
              "host_rx": host_rx, "idl": idl}


# ---- reproducers of fixed bugs (corpus/engine_tx/repro-*) ------------------

def repro_engine_tx():
    seeds = {}
    # T registers as a server of "echo", S's service (DENIED now); when
    # the engine took it, C's calls to S reached T in turn, which answered
    # one with other bytes and never the next.
    s = b"\0" + tx_ctrl(0, 16 | 1, ctrl_msg(), name=0) + tx_poll(2)
    s += t_drain(0) + c_call(False, 8) + c_call(False, 8) + tx_poll(2)
    s += S_SERVE + tx_poll(2) + C_DRAIN
    seeds["repro-service-hijack"] = s
    # T calls S through A without ever reading its RX ring: once it is
    # full, the engine held S's TX ring for good (now: for the hold
    # bound), and S could not answer C either.
    s = b"\0"
    for n in range(150):
        s += tx_slot(0, 64 | 4, frame(rpc=1000 + n, length=8, fn=1,
                                      flags=REQ))
        s += tx_poll(1) + S_SERVE
    s += c_call(False, 8) + tx_poll(4) + S_SERVE + tx_poll(4) + C_DRAIN
    seeds["repro-held-server"] = s
    return seeds


def main():
    names = sys.argv[1:] or sorted(GENERATORS)
    for name in names:
        d = os.path.join(HERE, "corpus", name)
        os.makedirs(d, exist_ok=True)
        gen = GENERATORS[name]()
        if name == "engine_tx":
            gen.update(repro_engine_tx())
        for seed, data in gen.items():
            if not seed.startswith("repro-"):
                seed = "seed-" + seed
            with open(os.path.join(d, seed), "wb") as f:
                f.write(data)


if __name__ == "__main__":
    main()
