#!/usr/bin/env python3
"""How many concurrent calls this box carries with the whole pipeline running, within the latency budget.

    .venv/bin/python scripts/bench_load.py [--levels 4,8,12,16,20,24,28,32] [--workers N] [--write]

Starts the bank demo (see scripts/bench_latency.py: db upgrade, demo seed, dialplan publish, SMS stand-in)
as `voiceivr serve --workers N` behind Kamailio on a free 127.0.0.1 port (N = enough workers of 4 calls
for the largest level), then for each level C places C calls at once (their starts spread over
``--stagger`` seconds) from ceil(C/4) caller processes of up to 4 calls each (pjsua2: 4 calls per
process). Every call runs the whole pipeline: it waits for the greeting and menu, says "opening hours"
(voice-to-voice measured at the caller), talks over the answer a second in with "check my balance"
(barge-in stop measured at the caller), waits for the next prompt and hangs up.

Per level it reports, from the callers' audio: voice-to-voice and barge-in stop p50/p95, failed calls; from
each call's recording JSON in the server: the worst frame gap of the media clock (``frame_gaps``); from
/proc: CPU seconds of the server (supervisor, workers, Kamailio) and of the caller processes per second of
wall time and per call, and the workers' RSS. The callers run on the same 2 cores as the server, so their
CPU is part of the load; it is shown separately. A level passes when p95 voice-to-voice <= ``--budget-ms``,
no frame gap reaches 40 ms and no call failed. Each level is bounded (``--step-timeout``), the whole run
too (``--max-minutes``). ``--write`` replaces the section "## Concurrent calls on 2 cores
(scripts/bench_load.py)" in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_latency import (
    DEFAULT_VOICES,
    DOC,
    BankServer,
    caller_figures,
    collect,
    cpu_seconds,
    machine,
    ms,
    proc_cmd,
    proc_rss_mb,
    settings_env,
    spawn_caller,
    write_section,
)

TITLE = "## Concurrent calls on 2 cores (scripts/bench_load.py)"
GAP_LIMIT_MS = 40.0


GROUPS = ("supervisor", "worker", "helper", "kamailio", "other")


def classify(pid: int, root: int) -> str:
    """supervisor / worker (serve-worker) / helper (a worker's multiprocessing children) / kamailio / other."""
    if pid == root:
        return "supervisor"
    cmd = proc_cmd(pid)
    if "kamailio" in cmd.split(" ", 1)[0]:
        return "kamailio"
    if "serve-worker" in cmd:
        return "worker"
    if "multiprocessing" in cmd:
        return "helper"
    return "other"


def process_groups(server: BankServer) -> dict[str, list[int]]:
    pids = server.pids()
    groups: dict[str, list[int]] = {g: [] for g in GROUPS}
    for p in pids:
        groups[classify(p, pids[0])].append(p)
    return groups


class RssSampler(threading.Thread):
    """Samples the summed RSS of the worker processes every 0.5 s; keeps the peak."""

    def __init__(self, server: BankServer) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.peak_mb = 0.0
        self.stop_flag = threading.Event()

    def run(self) -> None:
        n = 0
        while not self.stop_flag.is_set():
            if n % 4 == 0:  # pick up helper processes started during the step
                groups = process_groups(self.server)
                pids = groups["worker"] + groups["helper"]
            self.peak_mb = max(self.peak_mb, sum(proc_rss_mb(p) for p in pids))
            n += 1
            self.stop_flag.wait(0.5)


def children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def db_misroutes(server: BankServer, since: dt.datetime) -> tuple[int, int]:
    """(barge-in turns routed to something other than 'balance', barge-in turns) since ``since``."""
    routes = server.barge_in_routes(since)
    return sum(1 for _, intent in routes if intent != "balance"), len(routes)


def run_level(server: BankServer, level: int, args: argparse.Namespace, voices: list[str]) -> dict[str, Any]:
    since = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=0.5)
    calls = [{"voice": voices[i % len(voices)], "delay_s": round(i * args.stagger / level, 3)} for i in range(level)]
    # call i goes to process i % nproc, so every process's calls are spread over the whole stagger window
    nproc = math.ceil(level / 4)
    specs = [{"uri": server.uri, "calls": calls[p::nproc], "rounds": 1, "barge_after_s": 1.0,
              "lead_in_ms": args.lead_in_ms, "hold_s": args.stagger + args.hold if args.hold else 0}
             for p in range(nproc)]
    step_timeout = max(args.step_timeout, args.stagger + args.hold + 60) if args.hold else args.step_timeout
    groups = process_groups(server)
    cpu0 = cpu_seconds([p for g in groups.values() for p in g])
    callers0 = children_cpu()
    sampler = RssSampler(server)
    sampler.start()
    t0 = time.monotonic()
    procs = [spawn_caller(s) for s in specs]
    rows: list[dict[str, Any]] = []
    errors = []
    for proc in procs:
        got, err = collect(proc, timeout=max(1.0, step_timeout - (time.monotonic() - t0)))
        rows += got
        if "killed" in err or proc.returncode:
            errors.append(err.strip()[-300:])
    wall = time.monotonic() - t0
    groups = process_groups(server)  # processes started during the step count from 0
    cpu1 = cpu_seconds([p for g in groups.values() for p in g])
    callers_cpu = children_cpu() - callers0
    sampler.stop_flag.set()
    sampler.join()
    by_group = {g: sum(cpu1.get(p, 0.0) - cpu0.get(p, 0.0) for p in pids) for g, pids in groups.items()}
    server_cpu = sum(by_group.values())
    time.sleep(1.0)  # recordings' JSON are written within 250 ms of each call's end
    ids = {r.get("sip_call_id") for r in rows if r.get("sip_call_id")}
    docs = [d for d in server.recordings() if d.get("sip", {}).get("sip_call_id") in ids]
    gaps = [d["frame_gaps"] for d in docs if d.get("frame_gaps", {}).get("frames")]
    if args.hold:
        # steady state: the calls that started once every line was busy (the ramp's calls had less company)
        measured = [r for r in rows if r.get("started_s", 0.0) >= args.stagger]
        missing = 0 if measured else level
    else:
        measured = rows
        missing = level - len(rows)
    figs = caller_figures(measured)
    failed = figs["failed"] + ["no report from the caller"] * missing
    misrouted, barged = db_misroutes(server, since)
    try:
        stages = server.stats(since).get("stages", {})
    except SystemExit:
        stages = {}
    result = {
        "level": level, "wall_s": round(wall, 1), "calls": len(measured), "reports": len(rows), "failed": failed,
        "caller_errors": errors, "v2v": figs["v2v"], "barge": figs["barge"],
        "gap_max_ms": max((g["max_ms"] for g in gaps), default=math.nan),
        "gap_p99_worst_ms": max((g["p99_ms"] for g in gaps), default=math.nan),
        "gaps_over_40": sum(g["over_40ms"] for g in gaps), "gap_frames": sum(g["frames"] for g in gaps),
        "recordings": len(docs),
        "server_cpu_s": round(server_cpu, 2), "cpu_by_group": {g: round(v, 2) for g, v in by_group.items()},
        "callers_cpu_s": round(callers_cpu, 2),
        "worker_rss_peak_mb": round(sampler.peak_mb, 1),
        "misrouted_barge_ins": misrouted, "barge_in_turns": barged,
        "server_stages": {k: {"p50": v.get("p50"), "p95": v.get("p95")} for k, v in stages.items()},
    }
    result["pass"] = bool(result["v2v"]["p95"] <= args.budget_ms and result["gap_max_ms"] < GAP_LIMIT_MS
                          and not failed and len(docs) >= len(measured))
    return result


def fmt_row(r: dict[str, Any], idle_cores: float, idle_rss: float) -> str:
    wall = r["wall_s"] or 1.0
    srv_cores = r["server_cpu_s"] / wall
    per_call_ms = 1000 * (srv_cores - idle_cores) / r["level"]  # ms of CPU per second of call
    rss_per_call = (r["worker_rss_peak_mb"] - idle_rss) / r["level"]
    verdict = "pass" if r["pass"] else "fail"

    def stage(name: str) -> str:
        st = r.get("server_stages", {}).get(name, {})
        return f"{ms(st.get('p95'))} ms"

    fails = len(r["failed"])
    return (f"| {r['level']} | {ms(r['v2v']['p50'])} / {ms(r['v2v']['p95'])} ms | "
            f"{ms(r['barge']['p50'])} / {ms(r['barge']['p95'])} ms | {stage('capture')} | {stage('e2e')} | "
            f"{stage('policy')} / {stage('tool')} | {ms(r['gap_max_ms'], 1)} ms "
            f"({r['gaps_over_40']} of {r['gap_frames']} > 40) | {fails} of {r['calls']} | "
            f"{r['misrouted_barge_ins']} of {r['barge_in_turns']} | {srv_cores:.2f} | {per_call_ms:.0f} ms/s | "
            f"{r['callers_cpu_s'] / wall:.2f} | {r['worker_rss_peak_mb']:.0f} MB (+{rss_per_call:.1f}/call) | "
            f"{verdict} |")


def table(results: list[dict[str, Any]], idle: dict[str, float]) -> str:
    lines = [
        "| calls | voice-to-voice p50 / p95 | barge-in stop p50 / p95 | server capture p95 | server e2e p95 | "
        "server policy / tool p95 | worst frame gap | failed calls | "
        "barge-ins misrouted | server CPU (cores) | server CPU per call | callers' CPU (cores) | "
        "workers' RSS (peak) | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [fmt_row(r, idle["cores"], idle["rss_mb"]) for r in results]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", default="4,8,12,16,20,24,28,32", help="Concurrent calls per step.")
    parser.add_argument("--workers", type=int, default=0, help="Worker processes (default: max level / 4).")
    parser.add_argument("--no-kamailio", action="store_true", help="One worker, no dispatcher (levels <= 4).")
    parser.add_argument("--stagger", type=float, default=2.0, help="Spread each step's call starts over this (s).")
    parser.add_argument("--voices", default=DEFAULT_VOICES)
    parser.add_argument("--lead-in-ms", type=float, default=40.0,
                        help="Keep this much of each fixture's leading line noise (see bench_latency.py).")
    parser.add_argument("--budget-ms", type=float, default=400.0, help="p95 voice-to-voice budget.")
    parser.add_argument("--postgres", metavar="ADMIN_URL",
                        help="Run the demo on a fresh database on this PostgreSQL server (e.g. "
                             "postgresql://postgres@127.0.0.1:5432/postgres), dropped afterwards; default SQLite.")
    parser.add_argument("--step-timeout", type=float, default=60.0, help="Seconds at most per step.")
    parser.add_argument("--hold", type=float, default=0.0,
                        help="Steady load: each of a step's lines starts within --stagger and places calls back "
                             "to back for this many seconds more; only calls started after the ramp are measured "
                             "(0: one call per line, all started within --stagger).")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="Stop ramping after this long.")
    parser.add_argument("--keep-going", action="store_true", help="Do not stop when calls fail or media gaps "
                        "reach 40 ms (the default goes one level past the first such level, to show the trend).")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="A server setting for this run (repeatable), e.g. sip.calls_per_worker=2.")
    parser.add_argument("--write", action="store_true", help=f"Replace the section in {DOC.name}.")
    parser.add_argument("--json", type=Path, help="Also dump the raw results here.")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    voices = args.voices.split(",")
    workers = args.workers or (1 if args.no_kamailio else max(2, math.ceil(max(levels) / 4)))
    t_start = time.monotonic()
    server = BankServer(workers=workers, kamailio=not args.no_kamailio, extra_env=settings_env(args.set),
                        postgres=args.postgres)
    results: list[dict[str, Any]] = []
    try:
        server.start()
        groups = process_groups(server)
        print(f"serve pid {groups['supervisor']}: {len(groups['worker'])} worker(s) with "
              f"{len(groups['helper'])} helper process(es), {len(groups['kamailio'])} kamailio process(es), "
              f"{len(groups['other'])} other", flush=True)
        # idle baseline: what the server burns with no calls
        all_pids = [p for g in groups.values() for p in g]
        c0, t0 = cpu_seconds(all_pids), time.monotonic()
        time.sleep(5.0)
        c1, idle_wall = cpu_seconds(all_pids), time.monotonic() - t0
        idle = {"cores": sum(c1.get(p, 0) - c0.get(p, 0) for p in all_pids) / idle_wall,
                "rss_mb": sum(proc_rss_mb(p) for p in groups["worker"] + groups["helper"])}
        print(f"idle: {idle['cores']:.3f} cores, workers' RSS {idle['rss_mb']:.0f} MB", flush=True)
        failed_once = False
        for level in levels:
            if time.monotonic() - t_start > args.max_minutes * 60 - args.step_timeout:
                print(f"stopping before {level}: --max-minutes", flush=True)
                break
            if level > 4 * workers:
                print(f"skipping {level}: {workers} workers carry at most {4 * workers}", flush=True)
                continue
            r = run_level(server, level, args, voices)
            results.append(r)
            print(fmt_row(r, idle["cores"], idle["rss_mb"]), flush=True)
            if r["failed"]:
                print("  failures: " + "; ".join(sorted(set(r["failed"]))), flush=True)
            # stop one level after the media or the calls break down (or latency doubles the budget); a
            # level over the latency budget alone does not stop the ramp (it may be over at 4 calls already)
            broken = bool(r["failed"]) or not r["gap_max_ms"] < GAP_LIMIT_MS or r["v2v"]["p95"] > 2 * args.budget_ms
            if broken and not args.keep_going:
                if failed_once:
                    break
                failed_once = True
            time.sleep(2.0)
    finally:
        server.stop()
        log_tail = server.log.read_text(errors="replace")[-1500:] if hasattr(server, "log") else ""
        server.cleanup()
    out = table(results, idle)
    passing = [r["level"] for r in results if r["pass"]]
    clean = [r["level"] for r in results if r["gap_max_ms"] < GAP_LIMIT_MS and not r["failed"]]
    best = max(passing, default=None)
    v2v_p95 = {r["level"]: r["v2v"]["p95"] for r in results}
    lowest = results[0] if results else None
    summary = [
        f"Most concurrent calls within all three limits (p95 voice-to-voice <= {args.budget_ms:.0f} ms, frame "
        f"gaps < {GAP_LIMIT_MS:.0f} ms, no failed call): "
        + (f"**{best}**." if best is not None else "**none of the levels tried**"
           + (f" — p95 voice-to-voice is already {ms(lowest['v2v']['p95'])} ms at {lowest['level']} calls, "
              "over the budget before load matters (see the single-call section above)." if lowest else ".")),
        f"Most concurrent calls with clean media and no failed call (latency aside): "
        f"**{max(clean) if clean else 'none'}**.",
    ]
    cpu_note = ""
    if results:
        top = results[-1]
        wall = top["wall_s"] or 1.0
        cpu_note = (f"At {top['level']} calls the server used {top['server_cpu_s'] / wall:.2f} cores "
                    f"(workers {top['cpu_by_group']['worker'] / wall:.2f}, their helper processes "
                    f"{top['cpu_by_group']['helper'] / wall:.2f}, Kamailio "
                    f"{top['cpu_by_group']['kamailio'] / wall:.2f}, supervisor "
                    f"{top['cpu_by_group']['supervisor'] / wall:.2f}) and the caller processes "
                    f"{top['callers_cpu_s'] / wall:.2f} cores, out of 2.")
    print()
    print(out)
    print()
    print("\n".join(summary))
    print(cpu_note)
    print(f"({time.monotonic() - t_start:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps({"idle": idle, "results": results, "v2v_p95": v2v_p95}, indent=1,
                                        default=str))
    if not results:
        print(log_tail)
        raise SystemExit("no level ran")
    if args.write:
        cmd = ".venv/bin/python scripts/bench_load.py " + " ".join(sys.argv[1:])
        text = "\n\n".join([
            f"Command: `{cmd.strip()}`  \nMachine: {machine()}  \nDate: {dt.date.today().isoformat()}",
            f"`voiceivr serve --workers {workers}` behind Kamailio on 127.0.0.1 (bank dialplan, default "
            f"settings{', ' + ', '.join(args.set) if args.set else ''}, "
            f"{'one PostgreSQL database' if args.postgres else 'one SQLite database'} for all workers); "
            + (f"each step keeps that many lines busy (**steady load**): each line starts within {args.stagger:g} s "
               f"and places calls back to back for {args.hold:g} s more, so calls are at every phase at once; only "
               "calls started after the ramp are measured ('calls' in the failed column)"
               if args.hold else
               f"each step places that many calls at once (starts spread over {args.stagger:g} s), so the callers "
               "speak at nearly the same moments (a burst, the worst case)")
            + ". Callers run in processes of up to 4 calls each, **on the same 2 cores**. Each call waits for the "
            "menu, says \"opening hours\" (voice-to-voice), talks over the answer with \"check my balance\" (barge-in "
            "stop), waits for the next prompt and hangs up (~20 s). Latencies are read off the audio at the "
            "caller; frame gaps are the worst interval between the worker's media-clock ticks in each call's "
            "recording JSON (`frame_gaps.max_ms`); CPU is utime+stime from /proc of serve and all its children "
            "(supervisor, workers, Kamailio) over the step's wall time, per call after subtracting the idle "
            f"server ({idle['cores']:.3f} cores, workers' RSS {idle['rss_mb']:.0f} MB idle); the callers' CPU is "
            "from getrusage of the finished caller processes. \"Barge-ins misrouted\": the barge-in turn's "
            "intent in the `turns` table was not `balance` (a misheard \"check my balance\").",
            out, "\n".join(summary), cpu_note])
        write_section(DOC, None, text, title=TITLE)
        print(f"wrote {DOC}")


if __name__ == "__main__":
    main()
