"""Append audit rows the way a node does, run inside a node's namespace by the cluster harness:

    python -m voiceivr.cluster.audit_writer NODE_NAME COUNT

Binds the trail to the node's settings (database over the Unix socket, the cluster's shared audit key, the
node's own checkpoint file) and appends COUNT rows, as fast as it can; several nodes doing this at once is how
the cluster shows the chain never forks across nodes (the writer takes a PostgreSQL advisory lock before reading
the head: voiceivr/audit/chain.py). Prints the number of rows appended.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or not args[1].isdigit() or not 1 <= int(args[1]) <= 100_000:
        print("usage: python -m voiceivr.cluster.audit_writer NODE_NAME COUNT (1-100000)", file=sys.stderr)
        return 2
    name, count = args[0], int(args[1])
    from voiceivr.audit.chain import AuditTrail
    from voiceivr.audit.config import bind
    from voiceivr.db.engine import engine_from_settings
    from voiceivr.settings import load_settings

    settings = load_settings()[0]
    engine = engine_from_settings(settings)
    bind(engine, settings)
    trail = AuditTrail(engine)
    for i in range(count):
        trail.append("cluster.load", {"node": name, "i": i}, call_id=f"{name}-{i}")
    trail.flush_checkpoints()
    engine.dispose()
    print(count)
    return 0


if __name__ == "__main__":
    sys.exit(main())
