#!/usr/bin/env python3
"""Scale-out under steady load: a node killed, then a rolling restart of every node (needs root: namespaces).

    sudo .venv/bin/python scripts/bench_cluster.py [--nodes 2] [--calls 6] [--call-s 12] [--json out.json]

Starts a cluster (voiceivr/cluster/: NODES nodes of WORKERS workers in network namespaces, the front Kamailio,
a scratch PostgreSQL database), keeps CALLS calls up through the front (one caller process per call,
voiceivr/cluster/caller.py, a new one every CALL_S / CALLS seconds, each call CALL_S long), and meanwhile:

1. after ``--warmup`` s, ``kill -9`` of every process of node0; it is started again ``--down-s`` s later;
2. once it is back, a rolling restart: each node in turn gets SIGTERM (it drains: no new calls, its calls end
   normally), is started again when it has exited, and the next one follows once the front sees it up.

Reported: for the kill, the calls node0 carried (each should be ended by the front's BYE, shortly after the
kill: "dead air" is the time from the kill to that BYE), calls on the other nodes cut short (should be 0),
calls that failed to connect after the kill, the time the front took to see node0 down, and to see it up
again after its restart; for the rolling restart, calls dropped (cut short or not connected: should be 0)
and each node's drain time. Each call's node comes from the nodes' logs (its SIP Call-ID). Everything is
bounded (``--max-minutes``). The default call session is the SIP tests' scripted one (tests/sip/sip_handlers):
the pipeline's own per-node limits are bench_load's business; ``--demo`` runs the demo bank instead, and with
``--dtmf "2w10000001#w1234#w1"`` every caller logs in and hears Alice's balance (two actions through the safe path,
audit rows from every node): then ``voiceivr audit verify`` runs over every node's checkpoints at the end, and the
action runs are counted by status, with any call that ran one action twice. With ``--demo``, once node0 is back,
a new version of the bank dialplan is published from the host, and the time until each node's next call runs it
(no restart) is reported; and the calls node0 carried at the kill are counted as lost: the time until none of its
rows is still open (node0 started again marks them at once, or node1 when their lease lapses: voiceivr/call/lost.py),
the calls marked lost by node, and what ``voiceivr stats`` says.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voiceivr.cluster import Cluster, ClusterConfig, can_make_namespaces  # noqa: E402
from voiceivr.cluster.harness import ClusterError, wait_for  # noqa: E402

CALL_ID = re.compile(r"incoming call .*?sip_call_id=(\S+)")


class Load:
    """Keep ``calls`` calls up: start a one-call caller process every ``call_s / calls`` seconds."""

    def __init__(self, cluster: Cluster, calls: int, call_s: float, dtmf: str = "") -> None:
        self.cluster, self.calls, self.call_s, self.dtmf = cluster, calls, call_s, dtmf
        self.results: list[dict[str, Any]] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="load", daemon=True)
        self._lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        gap = self.call_s / self.calls
        env = self.cluster.env()
        while not self._stop.wait(gap):
            proc = subprocess.Popen([sys.executable, "-m", "voiceivr.cluster.caller", self.cluster.front_uri, "1",
                                     str(self.call_s), "--bind", self.cluster.front_address,
                                     *(["--dtmf", self.dtmf] if self.dtmf else [])], env=env, cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._collect, args=(proc,), daemon=True).start()

    def _collect(self, proc: subprocess.Popen[str]) -> None:
        with self._lock:
            self._procs.append(proc)
        try:
            out, _ = proc.communicate(timeout=self.call_s + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out = ""
        lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        with self._lock:
            self.results.extend(lines or [{"answered": False, "by": "caller died", "dialed_at": time.time()}])

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(5)
        deadline = time.monotonic() + self.call_s + 70
        while time.monotonic() < deadline:
            with self._lock:
                if all(p.poll() is not None for p in self._procs) and len(self.results) >= len(self._procs):
                    break
            time.sleep(0.2)
        with self._lock:
            return list(self.results)


def node_of_calls(cluster: Cluster) -> dict[str, int]:
    out: dict[str, int] = {}
    for node in cluster.nodes:
        text = node.log_path.read_text(errors="replace") if node.log_path.exists() else ""
        for m in CALL_ID.finditer(text):
            out[m.group(1).strip('"')] = node.net.index
    return out


def cut_short(call: dict[str, Any], call_s: float) -> bool:
    """Answered, but ended by the far end (or never ended) well before its length."""
    if not call.get("answered"):
        return False
    if call.get("by") != "far end":
        return call.get("by") not in ("caller",)
    return call["ended_at"] - call["answered_at"] < call_s - 0.5


LIVE = "new dialplan version live for new calls dialplan=bank version="


def publish_reaches_every_node(cluster: Cluster, directory: Path, timeout: float) -> dict[str, Any]:
    """Publish a new version of the bank dialplan from the host (the same file plus a comment) while the nodes
    run, and time how long until each node's next call runs it (its log says so; no node restarts)."""
    def newest(index: int) -> int:
        text = cluster.nodes[index].log_path.read_text(errors="replace")
        found = [int(line.rsplit(LIVE, 1)[1].split()[0]) for line in text.splitlines() if LIVE in line]
        return max(found, default=0)

    before = max(newest(n.net.index) for n in cluster.nodes)
    copy = directory / "bank-republished.yaml"
    source = (ROOT / "dialplans" / "bank.yaml").read_text()
    copy.write_text(source + f"\n# republished by bench_cluster {time.time()}\n")
    published = time.time()
    cluster.run_voiceivr(["dialplan", "publish", str(copy)])
    seen: dict[str, float | None] = {f"node{n.net.index}": None for n in cluster.nodes}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(v is None for v in seen.values()):
        for n in cluster.nodes:
            if seen[f"node{n.net.index}"] is None and newest(n.net.index) > before:
                seen[f"node{n.net.index}"] = round(time.time() - published, 2)
        time.sleep(0.2)
    return {"version_before": before, "first_call_on_it_after_s": seen}


def action_runs(url: str) -> dict[str, Any]:
    """What the safe path ran (action_runs): by status, and any call with one action type run more than once."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            by_status = dict(conn.execute(sa.text("SELECT status, count(*) FROM action_runs GROUP BY status")).all())
            twice = conn.execute(sa.text(
                "SELECT count(*) FROM (SELECT call_id, action_type FROM action_runs WHERE call_id IS NOT NULL "
                "GROUP BY call_id, action_type HAVING count(*) > 1) t")).scalar_one()
    finally:
        engine.dispose()
    return {"by_status": {str(k): int(v) for k, v in by_status.items()}, "calls_with_an_action_run_twice": twice}


def open_calls_of(url: str, node: str, before: float) -> int:
    """Calls of ``node`` started before ``before`` (epoch s) whose rows are still open (not ended, not marked lost)."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM calls WHERE node = :node AND ended_at IS NULL AND started_at < :before"),
                {"node": node, "before": dt.datetime.fromtimestamp(before, dt.UTC)}).scalar_one())
    finally:
        engine.dispose()


def lost_calls(cluster: Cluster, since: float) -> dict[str, Any]:
    """The calls marked lost, by node, and what `voiceivr stats` says about the run."""
    import sqlalchemy as sa

    engine = sa.create_engine(cluster.database_url)
    try:
        with engine.connect() as conn:
            by_node: dict[Any, Any] = dict(conn.execute(sa.text(
                "SELECT node, count(*) FROM calls WHERE outcome = 'lost' GROUP BY node")).all())
    finally:
        engine.dispose()
    minutes = max(1, int((time.time() - since) / 60) + 2)
    report = json.loads(cluster.run_voiceivr(["stats", "--since", f"{minutes}m", "--json"]))
    return {"by_node": {str(k): int(v) for k, v in by_node.items()}, "voiceivr_stats_lost": report["lost"],
            "voiceivr_stats_outcomes": report["outcomes"]}


def stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"n": 0, "median": None, "max": None}
    return {"n": len(values), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=2)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--calls", type=int, default=6, help="calls kept up at once")
    p.add_argument("--call-s", type=float, default=12.0, help="length of each call")
    p.add_argument("--warmup", type=float, default=15.0)
    p.add_argument("--down-s", type=float, default=10.0, help="node0 stays dead this long")
    p.add_argument("--drain-timeout", type=float, default=30.0)
    p.add_argument("--subnet", default="10.77.0.0/24")
    p.add_argument("--dir", type=Path, default=ROOT / "var" / "bench-cluster")
    p.add_argument("--demo", action="store_true", help="the demo bank on every node (speech models: heavy)")
    p.add_argument("--dtmf", default="", help="keys every caller presses after the greeting (demo bank: "
                   "2w10000001#w1234#w1 = Alice's balance, an action with audit rows)")
    p.add_argument("--json", type=Path, help="write the results here too")
    p.add_argument("--max-minutes", type=float, default=10.0)
    args = p.parse_args()
    args.dir = args.dir.resolve()  # the cluster runs its commands from inside it
    why = can_make_namespaces()
    if why:
        print(f"bench_cluster: {why}", file=sys.stderr)
        return 2
    if args.call_s * 2 > args.drain_timeout:
        print("bench_cluster: --drain-timeout should be at least twice --call-s (calls must end while draining)",
              file=sys.stderr)
        return 2
    env = {"VOICEIVR_SIP_SOURCE_MAX_CALLS": "0", "VOICEIVR_SIP_SOURCE_MAX_INVITES": "0",
           "VOICEIVR_SIP_NAMESERVERS": "127.0.0.1", "VOICEIVR_CONFIG": str(args.dir / "none.toml"),
           "VOICEIVR_RECORDING_ENABLED": "false"}
    if args.demo:
        env.update({"VOICEIVR_PLUGINS_ENABLED": "demo", "VOICEIVR_DIALPLAN_LIVE_NAME": "bank"})
    else:
        env.update({"VOICEIVR_SIP_HANDLER": "tests.sip.sip_handlers:ScriptedIvr",
                    "VIVR_TEST_OUT": str(args.dir / "calls")})
    args.dir.mkdir(parents=True, exist_ok=True)
    (args.dir / "none.toml").write_text("")
    config = ClusterConfig(nodes=args.nodes, workers=args.workers, subnet=args.subnet, directory=args.dir, env=env,
                           drain_timeout_s=args.drain_timeout,
                           setup=[["demo", "seed"], ["dialplan", "publish", str(ROOT / "dialplans" / "bank.yaml")]]
                           if args.demo else [])
    hard_stop = time.monotonic() + args.max_minutes * 60
    result: dict[str, Any] = {"nodes": args.nodes, "workers": args.workers, "calls": args.calls,
                              "call_s": args.call_s, "handler": "demo bank" if args.demo else "scripted (tests)"}
    started_at = time.time()
    with Cluster(config) as cluster:
        load = Load(cluster, args.calls, args.call_s, args.dtmf)
        load.start()
        time.sleep(args.warmup)
        # ---- 1. a node lost
        cluster.kill_node(0)
        killed = time.time()
        marking = None
        if args.demo:  # node0's calls up at the kill get marked lost: by node1 when node0's lease lapses, or sooner
            # by node0 started again (its own dead pids). Watched from the kill on.
            def watch_marking() -> None:
                try:
                    wait_for("node0's calls marked lost",
                             lambda: open_calls_of(cluster.database_url, "node0", killed) == 0, timeout=40.0,
                             interval=0.5)
                    result["node0_calls_marked_lost_after_kill_s"] = round(time.time() - killed, 2)
                except ClusterError as exc:
                    result["node0_calls_marked_lost_after_kill_s"] = str(exc)

            marking = threading.Thread(target=watch_marking, daemon=True)
            marking.start()
        result["front_saw_down_s"] = round(cluster.wait_front_sees(0, active=False, timeout=10.0), 2)
        time.sleep(max(0.0, args.down_s - (time.time() - killed)))
        restarted = time.time()
        cluster.start_node(0)
        cluster.wait_front_sees(0, active=True, timeout=30.0)
        result["node0_restart_to_in_rotation_s"] = round(time.time() - restarted, 2)
        if marking is not None:
            marking.join(40.0)
        time.sleep(args.call_s + 2)  # the calls up at the kill are all over now
        if args.demo:
            result["dialplan_publish"] = publish_reaches_every_node(cluster, args.dir, timeout=args.call_s + 30)
        # ---- 2. a rolling restart
        rolling_from = time.time()
        drains = []
        for node in cluster.nodes:
            if time.monotonic() > hard_stop:
                break
            i = node.net.index
            t0 = time.time()
            cluster.drain_node(i)
            cluster.wait_node_exit(i, args.drain_timeout + 20)
            drains.append(round(time.time() - t0, 2))
            cluster.start_node(i)
            cluster.wait_front_sees(i, active=True, timeout=30.0)
        rolling_to = time.time()
        time.sleep(2.0)
        calls = load.stop()
        nodes = node_of_calls(cluster)
        audit = cluster.verify_audit() if args.demo else "(scripted calls append no audit rows)"
        actions = action_runs(cluster.database_url) if args.demo else {}
        lost = lost_calls(cluster, started_at) if args.demo else {}
    for c in calls:
        c["node"] = nodes.get(c.get("sip_call_id") or "", -1)
    up_at_kill = [c for c in calls if c.get("answered") and c["answered_at"] < killed < c["ended_at"]]
    on_dead = [c for c in up_at_kill if c["node"] == 0]
    on_live = [c for c in up_at_kill if c["node"] != 0]
    after_kill = [c for c in calls if killed <= c["dialed_at"] < restarted]
    rolling = [c for c in calls if rolling_from - args.call_s <= c["dialed_at"] <= rolling_to]
    result.update({
        "calls_placed": len(calls),
        "calls_failed_in_all": sum(1 for c in calls if not c.get("answered")),
        "kill": {
            "calls_on_killed_node": len(on_dead),
            "ended_by_front_bye": sum(1 for c in on_dead if c["by"] == "far end"),
            "front_bye_after_kill_s": stats([c["ended_at"] - killed for c in on_dead if c["by"] == "far end"]),
            "ended_by_their_caller_anyway": sum(1 for c in on_dead if c["by"] == "caller"),
            "calls_on_other_nodes": len(on_live),
            "other_nodes_calls_cut_short": sum(1 for c in on_live if cut_short(c, args.call_s)),
            "new_calls_while_down": len(after_kill),
            "new_calls_failed_while_down": sum(1 for c in after_kill if not c.get("answered")),
            "setup_while_down_s": stats([c["answered_at"] - c["dialed_at"] for c in after_kill if c.get("answered")]),
            "first_new_call_answered_after_kill_s": round(min(
                (c["answered_at"] - killed for c in after_kill if c.get("answered")), default=float("nan")), 2),
        },
        "rolling_restart": {
            "seconds": round(rolling_to - rolling_from, 1),
            "drain_s_per_node": drains,
            "calls": len(rolling),
            "failed": sum(1 for c in rolling if not c.get("answered")),
            "cut_short": sum(1 for c in rolling if cut_short(c, args.call_s)),
            "per_node": {f"node{i}": sum(1 for c in rolling if c["node"] == i) for i in range(args.nodes)},
        },
        "audit": audit.strip(),
        "action_runs": actions,
        "lost_calls": lost,
    })
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({**result, "calls_detail": calls, "killed_at": killed}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
