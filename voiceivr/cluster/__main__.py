"""``python -m voiceivr.cluster`` (``scripts/cluster``): start a cluster, print how to call it, run until Ctrl-C
or SIGTERM (or ``--for`` seconds), then tear it all down.

    scripts/cluster [--nodes 2] [--workers 1] [--subnet 10.77.0.0/24] [--demo] [--handler package.module:factory]
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from voiceivr.cluster.harness import Cluster, ClusterConfig
from voiceivr.cluster.netns import can_make_namespaces
from voiceivr.errors import VoiceivrError
from voiceivr.telephony.front import FrontOptions

MAX_RUN_S = 7 * 24 * 3600.0
ROOT = Path(__file__).resolve().parents[2]
# What scripts/serve does before serving the demo bank.
DEMO_SETUP = [["demo", "seed"], ["dialplan", "publish", str(ROOT / "dialplans" / "bank.yaml")]]


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="scripts/cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=2, help="voiceivr nodes, each in its own namespace (1-8)")
    p.add_argument("--workers", type=int, default=1, help="worker processes per node (4 calls each)")
    p.add_argument("--subnet", default="10.77.0.0/24", help="private test range: .1 is this host, nodes .11, .12...")
    p.add_argument("--port", type=int, default=5060, help="front dispatcher's SIP port on the subnet's .1")
    p.add_argument("--dir", type=Path, default=Path("var/cluster"), help="logs and node var directories")
    p.add_argument("--database-url", default="", help="shared PostgreSQL (default: a scratch database, dropped)")
    p.add_argument("--admin-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
                   help="server for the scratch database")
    p.add_argument("--db-socket-dir", default="/var/run/postgresql",
                   help="the server's Unix socket directory (how nodes in namespaces reach it)")
    p.add_argument("--handler", default="", help="sip.handler of every node (default: its settings')")
    p.add_argument("--demo", action="store_true",
                   help="the demo bank like scripts/serve: plugin demo, demo seed, dialplans/bank.yaml published")
    p.add_argument("--drain-timeout", type=float, default=30.0, help="sip.drain_timeout_s of every node")
    p.add_argument("--set", action="append", default=[], metavar="VOICEIVR_X=Y",
                   help="an environment setting for every node (repeatable)")
    p.add_argument("--for", dest="run_for", type=float, default=0.0,
                   help="stop after this many seconds (default: until Ctrl-C / SIGTERM)")
    return p.parse_args(argv)


def config_from(args: argparse.Namespace) -> ClusterConfig:
    env: dict[str, str] = {}
    if args.demo:
        env.update({"VOICEIVR_PLUGINS_ENABLED": "demo", "VOICEIVR_DIALPLAN_LIVE_NAME": "bank"})
    if args.handler:
        env["VOICEIVR_SIP_HANDLER"] = args.handler
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("VOICEIVR_"):
            raise SystemExit(f"--set {item!r}: expected VOICEIVR_NAME=value")
        env[key] = value
    return ClusterConfig(nodes=args.nodes, workers=args.workers, subnet=args.subnet, front_port=args.port,
                         directory=args.dir, database_url=args.database_url, admin_url=args.admin_url,
                         db_socket_dir=args.db_socket_dir, env=env, drain_timeout_s=args.drain_timeout,
                         front=FrontOptions(), setup=DEMO_SETUP if args.demo else [])


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    why_not = can_make_namespaces()
    if why_not:
        print(f"cluster: {why_not}", file=sys.stderr)
        return 2
    stop = threading.Event()
    up = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        stop.set()
        if not up.is_set():
            raise KeyboardInterrupt  # still starting: abort the start; Cluster.__enter__ tears down what is up

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        with Cluster(config_from(args)) as cluster:
            up.set()
            info = {"front": cluster.front_uri, "nodes": [n.uri for n in cluster.nodes],
                    "namespaces": [n.net.namespace for n in cluster.nodes], "database": cluster.database_url,
                    "logs": str(cluster.directory)}
            print(json.dumps(info), flush=True)
            print(f"cluster up: call {cluster.front_uri} from this host, e.g.\n"
                  f"  .venv/bin/voiceivr call {cluster.front_uri} --wait-prompt 5 --duration 10\n"
                  f"kill a node: ip netns pids {cluster.nodes[0].net.namespace} | xargs kill -9\n"
                  "Ctrl-C tears it all down.", file=sys.stderr, flush=True)
            limit = args.run_for if args.run_for > 0 else MAX_RUN_S
            deadline = time.monotonic() + limit
            while not stop.wait(0.5) and time.monotonic() < deadline:
                if cluster.front_proc is not None and cluster.front_proc.poll() is not None:
                    print("cluster: the front Kamailio exited; stopping", file=sys.stderr)
                    return 1
    except KeyboardInterrupt:
        print("cluster: interrupted while starting; torn down", file=sys.stderr)
        return 130
    except VoiceivrError as exc:
        print(f"cluster: {exc}" + (f"\n  hint: {exc.hint}" if exc.hint else ""), file=sys.stderr)
        return 1
    print("cluster: torn down", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
