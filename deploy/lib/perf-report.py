#!/usr/bin/env python3
"""Turns the results of deploy/bench into docs/PERFORMANCE.md and its plots.

usage: perf-report.py OUT_DIR REPORT.md PLOT_DIR COMMAND_LINE

OUT_DIR holds results.jsonl (one JSON object per line, from dagger-bench,
dagger-hostrpc, dagger-rdma-lat, dagger-pingpong and perftest), the
latency CDFs (cdf-*.txt), the callgrind dumps (cg-*), machine.txt and
vm.txt. Plots are rendered to PNG with gnuplot.
"""
import glob
import json
import os
import re
import subprocess
import sys


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except ValueError:
                    pass
    return rows


def pick(rows, **kw):
    for r in rows:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def picks(rows, **kw):
    return [r for r in rows if all(r.get(k) == v for k, v in kw.items())]


def cg_dumps(out, label):
    """(trigger, total) of every callgrind dump of a run."""
    got = []
    for path in glob.glob(os.path.join(out, "cg-%s.*" % label)):
        trig, total = None, None
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("desc: Trigger:"):
                    trig = line.split(":")[-1].strip()
                elif line.startswith("totals:") or line.startswith("summary:"):
                    total = int(line.split()[1])
        if total is not None:
            got.append((trig, total))
    return got


def cg_totals(out, label, side=""):
    """Instructions in the 'rpcs', 'empty' and 'wrap' dumps of a callgrind
    run (side 'server-': the server's 'server-rpcs', ...)."""
    got = {}
    for trig, total in cg_dumps(out, label):
        if trig in (side + "rpcs", side + "empty", side + "wrap"):
            got[trig[len(side):]] = total
    return got.get("rpcs"), got.get("empty"), got.get("wrap")


def instr_per_rpc(out, label, rpcs, empty, calib=10000, side="",
                  wrapped=None):
    """(instructions per RPC, per empty poll) with empty polls taken out,
    and, given the number of counted calls (wrapped) and a 'wrap' dump,
    the collection wrapper's own instructions in the calls that were not
    empty polls (an empty poll's measured cost includes its wrapper)."""
    ir, ir_empty, ir_wrap = cg_totals(out, label, side)
    if ir is None or ir_empty is None or not rpcs:
        return None, None
    per_empty = ir_empty / calib
    ir -= empty * per_empty
    if wrapped is not None and ir_wrap is not None:
        ir -= (wrapped - empty) * (ir_wrap / calib)
    return ir / rpcs, per_empty


def cg_functions(path):
    """Self instructions by source file and function of one callgrind
    dump (code inlined from a header counts under that header)."""
    try:
        text = subprocess.run(
            ["callgrind_annotate", "--inclusive=no", "--threshold=100",
             "--show-percs=no", path], capture_output=True, text=True,
            check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    got, body = {}, False
    for line in text.splitlines():
        if line.strip().endswith("file:function"):
            body = True
            continue
        if not body or not line.strip():
            if body and got:
                break
            continue
        m = re.match(r"\s*([\d,]+)\s+(\S+?):(\S+)", line)
        if not m:
            continue
        fn = m.group(3).split(".")[0]  # .isra.0, .constprop.0
        # A dump taken while the thread runs charges its whole cost to
        # the thread's entry frames too: not code of ours.
        if fn in ("clone", "clone3", "start_thread"):
            continue
        key = "%s (%s)" % (os.path.basename(m.group(2)), fn)
        got[key] = got.get(key, 0) + int(m.group(1).replace(",", ""))
    return got


def cg_profile(out, label, rpcs, empty, calib=10000, side="",
               wrapped=None):
    """Where instr_per_rpc's figure goes: instructions per RPC by source
    file and function, the empty polls' and the wrapper's profiles taken
    out the same way (what is left sums to the figure)."""
    dumps = {}
    for path in glob.glob(os.path.join(out, "cg-%s.*" % label)):
        with open(path, errors="replace") as f:
            for line in f:
                if line.startswith("desc: Trigger:"):
                    dumps[line.split(":")[-1].strip()] = path
                    break
    if side + "rpcs" not in dumps or not rpcs:
        return None
    prof = cg_functions(dumps[side + "rpcs"])
    if prof is None:
        return None
    # An empty poll runs the same functions: taken out of each.
    if empty and side + "empty" in dumps:
        for k, v in (cg_functions(dumps[side + "empty"]) or {}).items():
            prof[k] = prof.get(k, 0) - empty * v / calib
    # The wrapper (its toggles around an empty function): one figure.
    if wrapped is not None and side + "wrap" in dumps:
        wrap = cg_functions(dumps[side + "wrap"]) or {}
        prof["wrapper measured apart"] = \
            -(wrapped - empty) * sum(wrap.values()) / calib
    return {k: v / rpcs for k, v in prof.items()}


def fmt(v, nd=1):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return ("%%.%df" % nd) % v
    return str(v)


def met(ok):
    return "**met**" if ok else "**not met**"


def gnuplot(script):
    subprocess.run(["gnuplot"], input=script.encode(), check=True)


def main():
    out, report, plots, cmdline = sys.argv[1:5]
    rows = load(os.path.join(out, "results.jsonl"))
    os.makedirs(plots, exist_ok=True)
    rel = os.path.relpath(plots, os.path.dirname(report))
    machine = open(os.path.join(out, "machine.txt")).read().strip()
    vm = ""
    if os.path.exists(os.path.join(out, "vm.txt")):
        vm = open(os.path.join(out, "vm.txt")).read().strip()

    def pt(tool):
        return pick(rows, bench="perftest", tool=tool)

    def rl(op):
        return pick(rows, bench="rdma-lat", op=op)

    def dg(label):
        return pick(rows, bench="dagger", label=label)

    def hr(label):
        return pick(rows, bench="hostrpc", label=label)

    L = []
    w = L.append
    w("# Performance")
    w("")
    w("Written by `deploy/bench` (do not edit by hand: run it again). Every "
      "figure below was measured in one run of the suite, on the machine "
      "described here, and each is shown next to the baseline it should be "
      "read against. Soft-RoCE inside a software-emulated VM is slow in "
      "absolute terms; read the ratios, not the microseconds.")
    w("")
    w("## Machine and commands")
    w("")
    w("```")
    w(machine)
    if vm:
        w(vm)
    w("```")
    w("")
    w("Command: `%s`. The RDMA part runs through `deploy/rxe-run` (two rxe "
      "devices; in a VM when the kernel has none) with "
      "`deploy/lib/bench-vm.sh`, which lists every command line. Clients "
      "and servers there run with `--yield` (they give the core away when "
      "a poll finds nothing: the VM has fewer cores than pollers). With 2 "
      "or more CPUs the dagger engines run on CPU 0, their NIC core, and "
      "the dagger hosts on the other CPUs (an engine is a NIC: it does not "
      "share a core with the hosts it serves; on soft-RoCE the engine's "
      "core also does the kernel's RDMA work). The host-driven baseline's "
      "client and server are left to the scheduler on all CPUs; both "
      "stacks use the same CPUs." % cmdline)
    w("")

    # ---- transport baselines
    w("## The transport's own limit (same devices, same run)")
    w("")
    w("| measure | p50 / typical (us) | p99 (us) |")
    w("|---|---|---|")
    for tool, what in (("ib_send_lat", "ib_send_lat (half round trip)"),
                       ("ib_write_lat", "ib_write_lat (half round trip)"),
                       ("ib_read_lat", "ib_read_lat (one READ)")):
        r = pt(tool)
        if r:
            w("| %s | %s | %s |" % (what, fmt(r["typical_us"], 2),
                                    fmt(r["p99_us"], 2)))
    for op, what in (("write", "WRITE ping-pong round trip"),
                     ("read", "READ round trip"),
                     ("send", "SEND ping-pong round trip")):
        r = rl(op)
        if r:
            w("| dagger-rdma-lat %s | %s | %s |" % (what, fmt(r["p50_us"], 2),
                                                    fmt(r["p99_us"], 2)))
    bw = pt("ib_send_bw")
    if bw:
        w("")
        w("ib_send_bw, 64-byte messages: %.4f million messages/s "
          "(%.0f thousand/s)." % (bw["mpps"], bw["mpps"] * 1e3))
    w("")

    # ---- latency
    w("## Latency: 64-byte echo, one call in flight")
    w("")
    w("| path | p50 | p90 | p99 | p99.9 | max | Krps | errors |")
    w("|---|---|---|---|---|---|---|---|")
    lat_rows = [
        ("dagger, one engine (client on rxe1, server on rxe0)", dg("lat-echo")),
        ("dagger, engine loopback service (no server)", dg("lat-loopback")),
        ("dagger, two engines (client -> A -> B -> server)",
         dg("lat-two-engines")),
        ("dagger, local backend at both ends, engines linked by RDMA",
         dg("lat-local-both-ends")),
        ("host-driven SEND/RECV RPC (baseline)", hr("lat-echo")),
    ]
    for name, r in lat_rows:
        if r:
            w("| %s | %s | %s | %s | %s | %s | %s | %d |" % (
                name, fmt(r["p50_us"]), fmt(r["p90_us"]), fmt(r["p99_us"]),
                fmt(r["p999_us"]), fmt(r["max_us"]), fmt(r["krps"], 2),
                r["errors"]))
    w("")
    w("All latencies in microseconds, measured by the client from the call "
      "to its completion.")
    w("")
    cdfs = []
    for name, f in (("dagger", "cdf-dagger.txt"),
                    ("host-driven", "cdf-hostrpc.txt")):
        p = os.path.join(out, f)
        if os.path.exists(p) and os.path.getsize(p):
            cdfs.append((name, p))
    if cdfs:
        png = os.path.join(plots, "latency-cdf.png")
        gnuplot("set terminal pngcairo size 800,500\nset output '%s'\n"
                "set logscale x\nset xlabel 'round trip (us)'\n"
                "set ylabel 'fraction of calls'\nset key bottom right\n"
                "set grid\nset title '64-byte echo, one call in flight'\n"
                "plot %s\n" % (png, ", ".join(
                    "'%s' using 1:2 with lines lw 2 title '%s'" % (p, n)
                    for n, p in cdfs)))
        w("![latency CDF](%s/latency-cdf.png)" % rel)
        w("")

    # ---- throughput vs load
    w("## Throughput against offered load (open loop, Poisson arrivals)")
    w("")
    w("Offered load as fractions of each stack's closed-loop peak with 16 "
      "calls in flight (measured just before). Latency counts from each "
      "call's scheduled time.")
    w("")
    w("| stack | closed-loop peak (Krps, window 16) | offered (Krps) | "
      "achieved (Krps) | p50 (us) | p99 (us) |")
    w("|---|---|---|---|---|---|")
    series = []
    for name, fn in (("dagger", dg), ("host-driven", hr)):
        peak = fn("tput-w16")
        pts = []
        for f in ("0.1", "0.25", "0.5", "0.75", "0.9", "1.1"):
            r = fn("open-" + f)
            if r and r["rpcs"]:
                pts.append((r["rate"] / 1e3, r["krps"], r["p50_us"],
                            r["p99_us"]))
                w("| %s | %s | %.2f | %.2f | %s | %s |" % (
                    name, fmt(peak["krps"], 2) if peak else "n/a",
                    r["rate"] / 1e3, r["krps"], fmt(r["p50_us"]),
                    fmt(r["p99_us"])))
        if pts:
            p = os.path.join(out, "load-%s.txt" % name)
            with open(p, "w") as f:
                for x in pts:
                    f.write("%f %f %f %f\n" % x)
            series.append((name, p))
    w("")
    if series:
        png = os.path.join(plots, "throughput-vs-load.png")
        gnuplot("set terminal pngcairo size 800,500\nset output '%s'\n"
                "set xlabel 'offered load (Krps)'\n"
                "set ylabel 'achieved (Krps)'\nset y2label 'p99 (us)'\n"
                "set logscale y2\nset ytics nomirror\nset y2tics\n"
                "set grid\nset key top left\n"
                "set title '64-byte echo, open loop'\nplot %s\n" % (
                    png, ", ".join(
                        "'%s' using 1:2 with linespoints lw 2 title '%s "
                        "achieved', '%s' using 1:4 axes x1y2 with "
                        "linespoints dt 2 title '%s p99'" % (p, n, p, n)
                        for n, p in series)))
        w("![throughput vs offered load](%s/throughput-vs-load.png)" % rel)
        w("")

    # ---- host CPU
    w("## Host CPU per RPC")
    w("")
    w("Instructions: `valgrind --tool=callgrind` on a fixed number of "
      "calls, collecting only inside the stack's calls (dagger, in its "
      "default doorbell mode, whose doorbell is an RDMA WRITE posted "
      "through the verbs library: `dg_call` "
      "and `dg_poll` on the client, `dg_serve_poll` with the echo handler "
      "on the server; host-driven: posting, doorbell and completion "
      "polling); the polls that found nothing are measured separately and "
      "taken out, and so, for dagger, whose calls are collected one at a "
      "time inside a wrapper, is the wrapper's own cost (its toggles, call "
      "and return, measured around an empty function in the same run; the "
      "host-driven loop toggles once per iteration, around its bookkeeping "
      "too, and keeps it). Cycles: the TSC around the same calls in the normal "
      "(non-valgrind) latency runs, busy work only. The instructions are "
      "user space only: on rxe the host-driven baseline also enters the "
      "kernel for every doorbell, which they leave out and the cycles "
      "include.")
    w("")
    w("| stack | client instructions/RPC | server instructions/RPC | "
      "client cycles/RPC | server cycles/RPC |")
    w("|---|---|---|---|---|")
    cpu = {}
    for name, bench, prefix, lat_fn in (
            ("dagger", "dagger", "dagger", dg),
            ("host-driven", "hostrpc", "hostrpc", hr)):
        c = pick(rows, bench=bench, label="cg-%s-client" % prefix)
        s = pick(rows, bench=bench + "-server",
                 label="cg-%s-server" % prefix)
        ci = si = None
        if c:
            ci, _ = instr_per_rpc(out, prefix + "-client", c["rpcs"],
                                  c["polls_empty"],
                                  wrapped=c.get("cg_wrapped"))
        if s:
            si, _ = instr_per_rpc(out, prefix + "-server", s["served"],
                                  s["polls_empty"],
                                  side="server-" if bench == "dagger"
                                  else "", wrapped=s.get("cg_wrapped"))
        lat = lat_fn("lat-echo")
        srv = pick(rows, bench=bench + "-server",
                   label="server-echo" if bench == "dagger"
                   else "hostrpc-server")
        cpu[name] = (ci, si)
        w("| %s | %s | %s | %s | %s |" % (
            name, fmt(ci, 0), fmt(si, 0),
            fmt(lat["cyc_rpc"], 0) if lat else "n/a",
            fmt(srv["cyc_rpc"], 0) if srv else "n/a"))
    w("")
    if all(cpu.get(k, (None,))[0] for k in ("dagger", "host-driven")):
        png = os.path.join(plots, "host-cpu.png")
        p = os.path.join(out, "cpu.txt")
        with open(p, "w") as f:
            for k in ("dagger", "host-driven"):
                f.write("%s %f %f\n" % (k, cpu[k][0] or 0, cpu[k][1] or 0))
        gnuplot("set terminal pngcairo size 700,450\nset output '%s'\n"
                "set style data histograms\nset style fill solid 0.8\n"
                "set ylabel 'instructions per RPC'\nset grid ytics\n"
                "set title 'host CPU per 64-byte RPC (user space)'\n"
                "plot '%s' using 2:xtic(1) title 'client', '' using 3 "
                "title 'server'\n" % (png, p))
        w("![host CPU per RPC](%s/host-cpu.png)" % rel)
        w("")

    # ---- scaling
    w("## Scaling (dagger, one engine, 64-byte echo unless stated)")
    w("")
    w("| what | value | Krps | p50 (us) | p99 (us) | errors | BUSY, sent again |")
    w("|---|---|---|---|---|---|---|")
    for what, key, vals in (
            ("client threads (window 8 each)", "scale-threads-", (1, 2, 4)),
            ("server threads (2 client threads)", "scale-sthreads-", (1, 2)),
            ("connections per client thread (window 8)", "scale-conns-",
             (1, 10, 100, 1000)),
            ("payload bytes, one call in flight", "size-lat-",
             (64, 1024, 8192, 65536)),
            ("payload bytes, window 4", "size-tput-",
             (64, 1024, 8192, 65536))):
        for v in vals:
            r = dg(key + str(v))
            if r:
                w("| %s | %s | %s | %s | %s | %d | %d |" % (
                    what, v, fmt(r["krps"], 2), fmt(r["p50_us"]),
                    fmt(r["p99_us"]), r["errors"], r.get("busy", 0)))
    w("")

    # ---- threading models
    models = [(k, w) for k in ("spin", "sleep")
              for w in (1000, 10000, 100000)
              if dg("model-dispatch-%s-%d" % (k, w)) or
              dg("model-pool-%s-%d" % (k, w))]
    if models:
        w("## Threading models: dispatch threads and a worker pool")
        w("")
        w("One server thread (one flow); 8 connections, 8 calls in flight "
          "(more connections than server threads); 64-byte requests whose "
          "handler works 1, 10 or 100 us: spinning (CPU work) or sleeping "
          "(work that waits: storage, a device). Dispatch threads run the "
          "handler on the thread that polls the flow; the worker pool "
          "(`--workers 4`) has that thread hand each request to one of 4 "
          "workers and send the responses as they finish "
          "(`dagger-bench server --workers`, `--work-sleep`).")
        w("")
        w("| work | handler | dispatch threads: Krps | p99 (us) | "
          "worker pool: Krps | p99 (us) | pool / dispatch |")
        w("|---|---|---|---|---|---|---|")
        for k, wk in models:
            d = dg("model-dispatch-%s-%d" % (k, wk))
            p = dg("model-pool-%s-%d" % (k, wk))
            ratio = (p["krps"] / d["krps"]) if d and p and d["krps"] \
                else None
            w("| %d us | %s | %s | %s | %s | %s | %s |" % (
                wk // 1000, k,
                fmt(d["krps"], 2) if d else "n/a",
                fmt(d["p99_us"]) if d else "n/a",
                fmt(p["krps"], 2) if p else "n/a",
                fmt(p["p99_us"]) if p else "n/a",
                "%.2fx" % ratio if ratio else "n/a"))
        w("")
        w("The hosts have one CPU here (the engine has the other): CPU work "
          "cannot run in parallel, so there the pool can win only on "
          "latency (no request waits behind another's handler on its "
          "flow); work that waits runs in parallel on the workers.")
        w("")

    # ---- natively: host cost and shared memory
    native = {}

    def ncg(side, k, size):
        label = "native-%s-%s-%d" % (side, k, size)
        if side == "client":
            r = pick(rows, bench="dagger", label="cg-" + label)
            return instr_per_rpc(out, label, r["rpcs"], r["polls_empty"],
                                 wrapped=r.get("cg_wrapped"))[0] \
                if r else None
        r = pick(rows, bench="dagger-server", label="cg-" + label)
        return instr_per_rpc(out, label, r["served"], r["polls_empty"],
                             side="server-",
                             wrapped=r.get("cg_wrapped"))[0] if r else None

    w("## Host and engine cost per RPC (natively, callgrind)")
    w("")
    w("User-space instructions per RPC, call plus completion, the polls "
      "that found nothing measured apart and taken out "
      "(`dagger-bench local --callgrind`, the stack's calls collected "
      "alone; the collection wrapper's own instructions, its toggles, call "
      "and return, measured around an empty function in the same run and "
      "taken out). Client: `dg_call` and `dg_poll` against the engine's "
      "loopback service. Server: `dg_serve_poll` with the echo handler "
      "(its copy of the request into the response included). "
      "Shared-memory rings, and the same with every slot checksummed "
      "(CRC32C), which is the ring format RDMA tenants use: the host's "
      "side of an RDMA RPC in poll mode is exactly this code (it posts no "
      "verb); in doorbell mode (the default) and push mode it also posts "
      "an RDMA WRITE per batch, whose user-space cost in the verbs library "
      "shows in Host CPU per RPC (over rxe, default mode). The "
      "host-driven SEND/RECV baseline is measured over rxe there.")
    w("")
    w("| ring | payload bytes | client instr/RPC | server instr/RPC | "
      "target |")
    w("|---|---|---|---|---|")
    for k, name, bound in (("plain", "shared memory", 150),
                           ("csum", "checksummed (RDMA format)", 250)):
        for size in (32, 64):
            ci, si = ncg("client", k, size), ncg("server", k, size)
            native[(k, size)] = (ci, si)
            # Client and server each against the bound (the 64-byte
            # figures are the issue's; 32 bytes is reported beside them).
            cok = ci is not None and ci <= bound
            sok = si is not None and si <= bound
            w("| %s | %d | %s | %s | <= %d: client %s, server %s |" % (
                name, size, fmt(ci, 0), fmt(si, 0), bound, met(cok),
                met(sok)))
    eng = pick(rows, bench="dagger", label="cg-native-engine")
    eng_ir = sum(t for _, t in cg_dumps(out, "native-engine"))
    if eng and eng.get("rpcs"):
        native["engine"] = eng_ir / eng["rpcs"]
        w("")
        w("Engine: %.0f instructions per 64-byte RPC through its loopback "
          "service (`nic_tx_process` and all it routes and delivers; idle "
          "rounds not collected)." % native["engine"])
    w("")

    # Where they go: the same dumps by source file and function.
    profs = []
    for side, k, name in (("client", "plain", "client, shared memory"),
                          ("client", "csum", "client, checksummed"),
                          ("server", "plain", "server, shared memory"),
                          ("server", "csum", "server, checksummed")):
        label = "native-%s-%s-64" % (side, k)
        bench = "dagger" if side == "client" else "dagger-server"
        r = pick(rows, bench=bench, label="cg-" + label)
        if r:
            profs.append((name, cg_profile(
                out, label, r["rpcs"] if side == "client" else r["served"],
                r["polls_empty"], side="" if side == "client" else "server-",
                wrapped=r.get("cg_wrapped"))))
    if eng and eng.get("rpcs"):
        got = {}
        for path in glob.glob(os.path.join(out, "cg-native-engine.*")):
            for kk, v in (cg_functions(path) or {}).items():
                got[kk] = got.get(kk, 0) + v / eng["rpcs"]
        profs.append(("engine, loopback service", got or None))
    if any(p for _, p in profs):
        w("Where the 64-byte figures go: the same dumps by source file "
          "and function (code inlined from a header counts under the "
          "header, with the function it was inlined into), the empty "
          "polls' profile taken out of each function and the wrapper's "
          "measured cost as one figure, as above (`bench` is the wrapper's "
          "side of each call); `other`: functions under 2 per RPC.")
        w("")
        w("| where | instr/RPC | by source (instructions per RPC) |")
        w("|---|---|---|")
        for name, prof in profs:
            if not prof:
                continue
            top = sorted(prof.items(), key=lambda kv: -kv[1])
            big = [(kk, v) for kk, v in top
                   if v >= 2 or kk == "wrapper measured apart"]
            rest = sum(v for kk, v in top if v < 2 and
                       kk != "wrapper measured apart")
            parts = ["%s %.0f" % (kk.replace("dagger_bench.c", "bench"), v)
                     for kk, v in big]
            if abs(rest) >= 0.5:
                parts.append("other %.0f" % rest)
            w("| %s | %.0f | %s |" % (name, sum(prof.values()),
                                      "; ".join(parts)))
        w("")
        w("Read against the bounds: on checksummed rings, `ring.h` is "
          "mostly the CRC32C itself (one CRC32 instruction per 8 bytes, "
          "eight per frame, two frames each way for 64 bytes) and the "
          "stamps; the server's own figure carries the handler interface "
          "(`server.c`, `host_impl.h`: a request and a response struct "
          "built per call, the handler called through a pointer, its "
          "result checked, and the response copied from the handler's "
          "buffer into the ring, `memmove`/`bench (h_echo)` being the "
          "handler's copy of the request); a bound under that needs a "
          "handler that answers in the ring in place. The engine's "
          "figure is one message routed both ways (`nic_tx_process`: "
          "the TX ring read and validated, the connection looked up; "
          "`rx_put`: the answer written into the caller's RX ring), "
          "against which the ping-pong below moves a line each way and "
          "nothing else.")
        w("")

    w("## Shared memory, natively: in-process and across processes")
    w("")
    w("The client on CPU 0, the engine on the last CPU; the same two cores "
      "carry the bare cache-line ping-pong (`dagger-pingpong`: 64-byte "
      "lines through a ring and back, nothing else), the reference limit, "
      "in the same run. In-process: the engine a thread of the client's "
      "process (`dagger-bench local`). Across processes: `dagger-nic "
      "--shm` as a daemon, the client (and the echo server) separate "
      "processes attached with `--engine unix:PATH`; the echo server "
      "shares CPU 0 with the client (two CPUs, three processes).")
    w("")
    w("| path | payload bytes | window | Mrps | p50 (us) | p99 (us) | "
      "ping-pong just before | ratio |")
    w("|---|---|---|---|---|---|---|---|")
    local = {}
    for label, name in (("local-loopback-32", "in-process, loopback"),
                        ("local-loopback-64", "in-process, loopback"),
                        ("local-echo-server", "in-process, echo server"),
                        ("shm-loopback-32", "daemon, loopback"),
                        ("shm-loopback-64", "daemon, loopback"),
                        ("shm-echo", "daemon, echo server process")):
        for r in sorted(picks(rows, bench="dagger", label=label),
                        key=lambda r: r["window"]):
            pp = pick(rows, bench="pingpong",
                      label="pp-%s-%d" % (label, r["window"]))
            if r["window"] == 1 and pp:
                base = "%.3f us round trip" % (pp["rtt_ns"] / 1e3)
                ratio = r["p50_us"] * 1e3 / pp["rtt_ns"]
                vs = "%.2fx its latency" % ratio
            elif pp:
                base = "%.2f Mrps" % pp["mrps"]
                ratio = r["krps"] / 1e3 / pp["mrps"]
                vs = "%.2fx its rate" % ratio
            else:
                base, ratio, vs = "", None, ""
            w("| %s | %d | %d | %.2f | %s | %s | %s | %s |" % (
                name, r["size"], r["window"], r["krps"] / 1e3,
                fmt(r["p50_us"], 2), fmt(r["p99_us"], 2), base, vs))
            local[(label, r["window"])] = (r, pp, ratio)
    w("")

    # ---- interface modes
    def ctl(label):
        return pick(rows, bench="ctl", label=label)

    def delta(c, k):
        return c["after"][k] - c["before"][k]

    rd, wr, sd = rl("read"), rl("write"), rl("send")
    modes = [m for m in ("poll", "doorbell", "push") if dg("mode-lat-" + m)]
    # Targets of the modes (issue: poll 1.5x, doorbell and push 1.25x of
    # the primitives on their path), filled below, listed under Targets.
    bound = {"poll": 1.5, "doorbell": 1.25, "push": 1.25}
    mode_targets = []
    if modes and rd and wr:
        # Round trips of the primitives on each mode's path: READs of the
        # TX rings (client's, server's), one-way WRITEs (half a WRITE
        # ping-pong): doorbells, pushed frames, RX deliveries.
        prim = {"poll": 2 * rd["p50_us"] + wr["p50_us"],
                "doorbell": 2 * rd["p50_us"] + 2 * wr["p50_us"],
                "push": 2 * wr["p50_us"]}
        path = {"poll": "2 READ + 2 one-way WRITE",
                "doorbell": "2 doorbell WRITE + 2 READ + 2 WRITE",
                "push": "2 pushed WRITE + 2 WRITE"}
        w("## Interface modes (one engine, 64-byte echo, default settings)")
        w("")
        w("Hosts spin, then sleep (the defaults, as `deploy/demo` runs); "
          "every 10th call is traced. READs, doorbells and wake-ups are "
          "the engine's own counters (`dagger-ctl stats --json`) over the "
          "latency run, per RPC. The primitives are this run's "
          "`dagger-rdma-lat` medians.")
        w("")
        w("| mode | p50 (us) | p99 (us) | primitives on the path | "
          "their sum (us) | ratio | Krps, window 16 | client cycles/RPC | "
          "READs/RPC | doorbells/RPC | wake-ups/RPC | server hop p50 (us) |")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|")
        for m in modes:
            r, t = dg("mode-lat-" + m), dg("mode-tput-" + m)
            c = ctl("mode-lat-" + m)
            rpcs = delta(c, "rpcs_tx") / 2.0 if c else 0
            per = (lambda k: fmt(delta(c, k) / rpcs, 2)) if rpcs else (
                lambda k: "-")
            mode_targets.append((
                "one engine, %s mode, default settings: p50 within %.2fx "
                "of its path's primitives (%s)" % (m, bound[m], path[m]),
                r["p50_us"], prim[m], bound[m]))
            w("| %s | %s | %s | %s | %.1f | %.2fx | %s | %s | %s | %s | %s | "
              "%s |"
              % (m, fmt(r["p50_us"]), fmt(r["p99_us"]), path[m], prim[m],
                 r["p50_us"] / prim[m], fmt(t["krps"], 2) if t else "-",
                 fmt(r.get("cyc_rpc", 0) / 1e3, 1) + "k",
                 per("reads"), per("doorbells"), per("wakes"),
                 fmt(c["after"]["trace_server_p50_us"], 1) if c else "-"))
        for m in modes:
            r = dg("mode-lat-yield-" + m)
            c = ctl("mode-lat-yield-" + m)
            if not r:
                continue
            rpcs = delta(c, "rpcs_tx") / 2.0 if c else 0
            per = (lambda k: fmt(delta(c, k) / rpcs, 2)) if rpcs else (
                lambda k: "-")
            mode_targets.append((
                "one engine, %s mode, hosts never sleep: p50 within %.2fx "
                "of its path's primitives" % (m, bound[m]),
                r["p50_us"], prim[m], bound[m]))
            w("| %s, hosts never sleep (`--yield`) | %s | %s | %s | %.1f | "
              "%.2fx | - | %s | %s | %s | %s | %s |"
              % (m, fmt(r["p50_us"]), fmt(r["p99_us"]), path[m], prim[m],
                 r["p50_us"] / prim[m],
                 fmt(r.get("cyc_rpc", 0) / 1e3, 1) + "k", per("reads"), per("doorbells"),
                 per("wakes"),
                 fmt(c["after"]["trace_server_p50_us"], 1) if c else "-"))
        w("")
        w("The server hop is what the engine saw of the server: a traced "
          "request written into its RX ring until the response was taken "
          "from its TX ring.")
        w("")
        # Where the time goes, from the hops: the server's share and the
        # rest (the client's side and the engine's turn-around).
        for m in modes:
            r, c = dg("mode-lat-" + m), ctl("mode-lat-" + m)
            if not c or not c["after"]["trace_server_p50_us"]:
                continue
            hop = c["after"]["trace_server_p50_us"]
            w("- %s: of the p50's %.1f us, the server hop takes %.1f us "
              "(%.0f%%): the request's WRITE landing, the server thread "
              "finding it (awake or woken), its handler, and the engine "
              "finding the response (%s); the other %.1f us are the "
              "client's side: its request reaching the engine, the "
              "response's WRITE into its RX ring and its poll finding it. "
              "The primitives on the whole path sum to %.1f us." % (
                  m, r["p50_us"], hop, 100.0 * hop / r["p50_us"],
                  {"poll": "a READ of the server's TX ring",
                   "doorbell": "its doorbell, then a READ",
                   "push": "its pushed WRITE"}[m],
                  r["p50_us"] - hop, prim[m]))
        w("")
        w("Each hop is several times its own primitives. Here two vCPUs "
          "carry the engine, both hosts and soft-RoCE's kernel work (which "
          "does every RDMA operation in software on the same CPUs): the "
          "rows with hosts that never sleep, and the price of waking "
          "under Idle cost, show how much of the remainder moves with "
          "scheduling alone.")
        w("")
        two = [m for m in modes if dg("mode-two-" + m)]
        if two and sd:
            w("Two engines (client -> A -> B -> server), the same hosts "
              "plus one SEND each way between the engines:")
            w("")
            w("| mode | p50 (us) | p99 (us) | primitives (us) | ratio | "
              "A: remote hop p50 (us) | B: server hop p50 (us) |")
            w("|---|---|---|---|---|---|---|")
            for m in two:
                r = dg("mode-two-" + m)
                pr = prim[m] + sd["p50_us"]
                mode_targets.append((
                    "two engines, %s mode, default settings: p50 within "
                    "%.2fx of its path's primitives" % (m, bound[m]),
                    r["p50_us"], pr, bound[m]))
                ca, cb = ctl("mode-two-a-" + m), ctl("mode-two-b-" + m)
                w("| %s | %s | %s | %.1f | %.2fx | %s | %s |" % (
                    m, fmt(r["p50_us"]), fmt(r["p99_us"]), pr,
                    r["p50_us"] / pr,
                    fmt(ca["after"]["trace_remote_p50_us"], 1) if ca else "-",
                    fmt(cb["after"]["trace_server_p50_us"], 1) if cb else "-"))
            w("")

    idle = picks(rows, bench="idle")
    if idle:
        w("## Idle cost")
        w("")
        w("An engine (on its own CPU) with idle server flows attached "
          "(`dagger-echo server --threads 64` per 64 flows, their threads "
          "asleep), over a quiet interval: its CPU use from /proc, READs "
          "and sleeps from its counters.")
        w("")
        w("| mode | idle flows | engine CPU (% of a core) | READs/s | "
          "engine sleeps/s | a client's p50 beside them (us) |")
        w("|---|---|---|---|---|---|")
        for r in idle:
            sec = float(r["seconds"])
            c = dg("idle-client-%s-%d" % (r["mode"], r["flows"]))
            w("| %s | %d | %.1f | %.0f | %.0f | %s |" % (
                r["mode"], r["flows"], r["ticks"] / sec,
                (r["after"]["reads"] - r["before"]["reads"]) / sec,
                (r["after"]["sleeps"] - r["before"]["sleeps"]) / sec,
                fmt(c["p50_us"]) if c else "-"))
        w("")
        w("The client calls the engine's loopback service (one call in "
          "flight) after the quiet interval, so the idle flows' cost is "
          "what it sees.")
        for r in idle:
            if r["mode"] == "doorbell" and r["flows"] == 64:
                ecpu = r["ticks"] / float(r["seconds"])
                w("")
                w("An idle engine with 64 idle flows (doorbell mode, hosts "
                  "asleep): %.1f%% of a core (target <= 2%%: %s)." % (
                      ecpu, "met" if ecpu <= 2 else "not met"))
        w("")
    t1, t64 = dg("idle-threads-1"), dg("idle-threads-64")
    ws, wb = dg("wake-sleep"), dg("wake-busy")
    if t1 and t64:
        w("A client (one call in flight) beside a server of 1 dispatch "
          "thread: p50 %.1f us; of 64 (63 idle, asleep): p50 %.1f us, "
          "%.2fx (target <= 1.2x: %s)." % (
              t1["p50_us"], t64["p50_us"], t64["p50_us"] / t1["p50_us"],
              "met" if t64["p50_us"] <= 1.2 * t1["p50_us"] else "not met"))
        w("")
    if ws and wb:
        d = ws["p50_us"] - wb["p50_us"]
        w("The price of waking: 200 calls/s (open loop, up to 16 in flight) "
          "to hosts and an engine that spin briefly, then sleep between "
          "calls: p50 %.1f us (p99 %.1f). The same with `--busy-poll` on "
          "the engine, the server and the client (nothing sleeps): p50 "
          "%.1f us (p99 %.1f). %s" % (
              ws["p50_us"], ws["p99_us"], wb["p50_us"], wb["p99_us"],
              "Sleeping costs %.1f us per call here." % d if d >= 0 else
              "Busy polling is %.1f us slower per call here: three pollers "
              "that never sleep on fewer CPUs take the time the kernel's "
              "RDMA work (soft-RoCE) and the other side need." % -d))
        w("")

    # ---- large messages
    large_targets = []
    lsz = [4096, 65536, 1048576, 8388608]
    mib = 1048576.0

    def mbs(r, size):
        # From the run's own counts (krps is rounded to 3 decimals).
        if not r:
            return None
        if r.get("rpcs") and r.get("seconds"):
            return r["rpcs"] * size / r["seconds"] / mib
        return r["krps"] * 1e3 * size / mib

    if any(dg("large-%d-w1" % z) for z in lsz):
        w("## Large messages")
        w("")
        w("Echo of S bytes through one engine over rxe (doorbell mode, the "
          "default). Above 4 KiB the payload travels outside the rings: "
          "the client builds its request in place in its payload area "
          "(`dg_call_buf`), the server its response "
          "(`dg_response_buf`), and the engine moves each with one RDMA "
          "READ into its staging pool and one RDMA WRITE into the "
          "receiver's payload area; 4 KiB still travels in ring frames. "
          "MB/s each way (2^20 bytes), beside perftest's `ib_read_bw` and "
          "`ib_write_bw` of the same message size between the same "
          "devices in this run.")
        w("")
        w("| size | window 1: MB/s each way | p50 (ms) | window 4: MB/s "
          "each way | p50 (ms) | ib_read_bw (MB/s) | ib_write_bw (MB/s) | "
          "best / ib_read_bw |")
        w("|---|---|---|---|---|---|---|---|")
        for z in lsz:
            r1, r4 = dg("large-%d-w1" % z), dg("large-%d-w4" % z)
            rb = pick(rows, bench="perftest", label="read_bw_%d" % z)
            wb = pick(rows, bench="perftest", label="write_bw_%d" % z)
            best = max([v for v in (mbs(r1, z), mbs(r4, z)) if v] or [0])
            ratio = best / rb["mbps"] if rb and rb["mbps"] else None
            wr = best / wb["mbps"] if wb and wb["mbps"] else None
            w("| %s | %s | %s | %s | %s | %s | %s | %s |" % (
                "%d KiB" % (z // 1024) if z < mib else "%d MiB" % (z // mib),
                fmt(mbs(r1, z), 2), fmt(r1["p50_us"] / 1e3, 2) if r1 else "-",
                fmt(mbs(r4, z), 2), fmt(r4["p50_us"] / 1e3, 2) if r4 else "-",
                fmt(rb["mbps"], 2) if rb else "no result",
                fmt(wb["mbps"], 2) if wb else "no result",
                "%.2fx" % ratio if ratio is not None else
                "- (%.2fx ib_write_bw)" % wr if wr is not None else "-"))
            if z >= 65536 and (r1 or r4):
                large_targets.append((
                    "rxe, %s echo: MB/s each way >= 0.7x ib_read_bw of "
                    "the same size" % ("%d KiB" % (z // 1024) if z < mib
                                       else "%d MiB" % (z // mib)),
                    "%.2f MB/s" % best,
                    "%.2f MB/s" % rb["mbps"] if rb else
                    "no result (ib_read_bw did not complete)", ratio,
                    ratio is not None and ratio >= 0.7))
        w("")
        w("Each payload byte of an echo crosses soft-RoCE four times (the "
          "engine's READ and WRITE each way: the engine stores and "
          "forwards, as a NIC between two hosts' memories must with "
          "one-sided operations), where `ib_read_bw` moves it once; and "
          "soft-RoCE copies and checksums every byte in the kernel, on the "
          "same two CPUs as the engine and both hosts.")
        w("")
    ssz = [65536, 1048576, 8388608]
    if any(dg("local-large-%d-w1" % z) for z in ssz):
        w("The same through the engine on shared memory (in-process: the "
          "engine copies each payload once, from the sender's payload area "
          "into the receiver's), beside this machine's memcpy bandwidth for "
          "the same size (`dagger-bench memcpy`):")
        w("")
        w("| size | window 1: MB/s each way | window 4: MB/s each way | "
          "memcpy (MB/s) | best / memcpy |")
        w("|---|---|---|---|---|")
        for z in ssz:
            r1, r4 = dg("local-large-%d-w1" % z), dg("local-large-%d-w4" % z)
            mc = pick(rows, bench="memcpy", label="memcpy-%d" % z)
            best = max([v for v in (mbs(r1, z), mbs(r4, z)) if v] or [0])
            ratio = best / mc["mbps"] if mc and mc["mbps"] else None
            name = "%d KiB" % (z // 1024) if z < mib else "%d MiB" % (z // mib)
            w("| %s | %s | %s | %s | %s |" % (
                name, fmt(mbs(r1, z), 1), fmt(mbs(r4, z), 1),
                fmt(mc["mbps"], 1) if mc else "-",
                "%.2fx" % ratio if ratio is not None else "-"))
            if ratio is not None:
                large_targets.append((
                    "shared memory, %s echo: MB/s each way >= 0.7x memcpy"
                    % name, "%.1f MB/s" % best, "%.1f MB/s" % mc["mbps"],
                    ratio, ratio >= 0.7))
        w("")
    c64, c64k = ncg("client", "plain", 64), ncg("client", "plain", 65536)
    s64, s64k = ncg("server", "plain", 64), ncg("server", "plain", 65536)
    if c64 and c64k:
        copy = 0.0
        r = pick(rows, bench="dagger-server",
                 label="cg-native-server-plain-65536")
        prof = cg_profile(out, "native-server-plain-65536", r["served"],
                          r["polls_empty"], side="server-",
                          wrapped=r.get("cg_wrapped")) if r else None
        for k, v in (prof or {}).items():
            if "memmove" in k or "memcpy" in k:
                copy += v
        w("Host instructions per RPC (callgrind, shared-memory rings, as "
          "above): client %.0f at 64 KiB against %.0f at 64 bytes "
          "(%.2fx); server %s at 64 KiB%s against %s at 64 bytes." % (
              c64k, c64, c64k / c64, fmt(s64k, 0),
              " (%.0f of them the echo handler's own copy of the request "
              "into the response)" % copy if copy else "", fmt(s64, 0)))
        w("")
        large_targets.append((
            "host instructions per 64 KiB RPC within 3x of a 64-byte RPC: "
            "client", "%.0f" % c64k, "%.0f" % c64, c64k / c64,
            c64k <= 3 * c64))
        if s64 and s64k:
            v = s64k - copy
            large_targets.append((
                "host instructions per 64 KiB RPC within 3x of a 64-byte "
                "RPC: server, the handler's own copy left out", "%.0f" % v,
                "%.0f" % s64, v / s64, v <= 3 * s64))

    # ---- targets
    w("## Targets")
    w("")
    w("| target | measured | baseline | ratio | |")
    w("|---|---|---|---|---|")
    e, rd, wr = dg("lat-echo"), rl("read"), rl("write")
    if e and rd and wr:
        prim = 2 * rd["p50_us"] + wr["p50_us"]
        ratio = e["p50_us"] / prim
        w("| rxe 64 B echo p50 within 1.5x of its primitives (2 READ round "
          "trips + 2 one-way WRITEs) | %.1f us | %.1f us | %.2fx | %s |" % (
              e["p50_us"], prim, ratio, met(ratio <= 1.5)))
    lb, sl = dg("lat-local-both-ends"), pt("ib_send_lat")
    if lb and sl:
        base = 2 * sl["typical_us"]
        ratio = lb["p50_us"] / base
        w("| local backend at both ends: p50 within 1.2x of the "
          "ib_send_lat round trip | %.1f us | %.1f us | %.2fx | %s |" % (
              lb["p50_us"], base, ratio, met(ratio <= 1.2)))
    if cpu.get("dagger", (None,))[0] and cpu.get("host-driven", (None,))[0]:
        ratio = cpu["host-driven"][0] / cpu["dagger"][0]
        w("| client instructions per RPC at least 10x fewer than "
          "host-driven | %.0f | %.0f | %.1fx fewer | %s |" % (
              cpu["dagger"][0], cpu["host-driven"][0], ratio,
              met(ratio >= 10)))
    for size in (32, 64):
        d = local.get(("local-loopback-%d" % size, 32))
        if d and d[1]:
            w("| in-process loopback, %d B, window 32: >= 0.8x the bare "
              "ping-pong | %.2f Mrps | %.2f Mrps | %.2fx | %s |" % (
                  size, d[0]["krps"] / 1e3, d[1]["mrps"], d[2],
                  met(d[2] >= 0.8)))
        d = local.get(("local-loopback-%d" % size, 1))
        if d and d[1]:
            w("| in-process loopback, %d B, window 1: p50 within 1.5x of "
              "the ping-pong round trip | %.3f us | %.3f us | %.2fx | "
              "%s |" % (size, d[0]["p50_us"], d[1]["rtt_ns"] / 1e3, d[2],
                        met(d[2] <= 1.5)))
    for what, v, base, b in (mode_targets if rd and wr and modes else []):
        w("| %s | %.1f us | %.1f us | %.2fx | %s |" % (
            what, v, base, v / base, met(v <= b * base)))
    # The main job (deploy/demo, run in this suite as a user runs it)
    # against the best figure of the same path here (two engines, the
    # default doorbell mode): within 1.3x.
    demo = pick(rows, bench="demo")
    same = [r["p50_us"] for r in (dg("lat-two-engines"),
                                  dg("mode-two-doorbell")) if r]
    if demo and same:
        ratio = demo["p50_us"] / min(same)
        w("| `deploy/demo` (two engines, defaults) p50 within 1.3x of this "
          "run's best figure for its path | %.1f us | %.1f us | %.2fx | "
          "%s |" % (demo["p50_us"], min(same), ratio, met(ratio <= 1.3)))
    for what, v, base, ratio, ok in large_targets:
        w("| %s | %s | %s | %s | %s |" % (
            what, v, base, "%.2fx" % ratio if ratio is not None else "-",
            met(ok) if ratio is not None else "**not measured**"))
    best = max([v[0]["krps"] / 1e3 for k, v in local.items()
                if k[0].startswith("local-loopback")] or [0])
    if best:
        w("| one client thread reaches Dagger's 21.5 Mrps per core | %.2f "
          "Mrps | 21.5 Mrps | %.2fx | %s |" % (best, best / 21.5,
                                              met(best >= 21.5)))
    w("")
    failed = os.path.join(out, "failed.txt")
    if os.path.exists(failed) and os.path.getsize(failed):
        w("## Runs that failed")
        w("")
        w("These points are missing above (their output is in the "
          "suite's stderr.log):")
        w("")
        for line in open(failed):
            w("- `%s`" % line.strip().replace("bench-vm: ", ""))
        w("")
    with open(report, "w") as f:
        f.write("\n".join(L) + "\n")


if __name__ == "__main__":
    main()
