#!/usr/bin/env python3
"""Detection and false-positive rates of the injection filter on the corpus in tests/data/injection/.

    .venv/bin/python scripts/eval_injection.py [--write docs/injection.md] [--show-misses]

Prints a table per category and kind for each set. Round 2 lines say where they arrive and the technique
(``address:slot``, ``speech:homophone``): those sets also get a table per technique, and the lines answered at
an address slot one for what the slot refuses (the filter, and the address check when there is one). With
--write, replaces the figures section of the given Markdown file (between the markers) with the tables and
the command that produced them.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voiceivr.injection import scan  # noqa: E402

DATA = ROOT / "tests" / "data" / "injection"
BEGIN, END = "<!-- eval_injection:begin -->", "<!-- eval_injection:end -->"
SETS = (
    ("round 1, development set (the filter was tuned on it)", "attacks.txt", "benign.txt"),
    ("round 1, held-out set (written after the round 1 filter was frozen; never tuned on)", "holdout_attacks.txt",
     "holdout_benign.txt"),
    ("round 2, development set (tuned on)", "round2_attacks.txt", "round2_benign.txt"),
    ("round 2, held-out set (written with the development set, before any tuning; never tuned on)",
     "round2_holdout_attacks.txt", "round2_holdout_benign.txt"),
)


def load(name: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, source, text = line.split("\t", 2)
        rows.append((label, source, text))
    return rows


def address_refusal() -> Callable[[str], bool] | None:
    """What an address slot refuses besides flagged text, if this version has an address check."""
    try:
        from voiceivr.dialplan.freetext import address_problem_in
    except ImportError:
        return None
    return lambda text: address_problem_in(text, filtered=False) is not None


def _rate(hit: int, n: int) -> str:
    return f"{hit}/{n} | {hit / n:.1%}" if n else "0/0 | -"


def _table(title: str, counts: dict[str, tuple[int, int]], total_label: str) -> list[str]:
    out = [f"| {title} | n | rate |", "|---|---:|---:|"]
    for key in sorted(counts):
        hit, n = counts[key]
        out.append(f"| {key} | {_rate(hit, n)} |")
    hit, n = sum(h for h, _ in counts.values()), sum(n for _, n in counts.values())
    out.append(f"| **{total_label}** | **{hit}/{n}** | **{hit / n:.1%}** |\n" if n else "")
    return out


def _tally(rows: list[tuple[str, str, bool]]) -> dict[str, tuple[int, int]]:
    hit: Counter[str] = Counter()
    total: Counter[str] = Counter()
    for key, _text, ok in rows:
        total[key] += 1
        hit[key] += ok
    return {k: (hit[k], total[k]) for k in total}


def evaluate(show_misses: bool) -> str:
    out: list[str] = []
    refuses_address = address_refusal()
    for title, attacks_file, benign_file in SETS:
        if not (DATA / attacks_file).exists():
            continue
        attacks, benign = load(attacks_file), load(benign_file)
        flagged_attacks = [(cat, src, text, scan(text).flagged) for cat, src, text in attacks]
        flagged_benign = [(kind, src, text, scan(text)) for kind, src, text in benign]
        out.append(f"### {title}\n")
        out += _table("attacks, by category", _tally([(c, t, f) for c, _, t, f in flagged_attacks]), "all attacks")
        out += _table("benign: flagged (false positives)", _tally([(k, t, f.flagged) for k, _, t, f in flagged_benign]),
                      "all benign")
        if any(":" in src for _, src, _ in attacks):
            out += _table("attacks, by where:technique",
                          _tally([(s, t, f) for _, s, t, f in flagged_attacks]), "all attacks")
            at_slot = [(src, text) for _, src, text in attacks if src.startswith("address:")]
            real = [(src, text) for _, src, text in benign if src.startswith("address:")]
            out.append(f"At an address slot ({len(at_slot)} attacks, {len(real)} real addresses):\n")
            out.append("| refused by | attacks refused | rate | real addresses refused | rate |")
            out.append("|---|---:|---:|---:|---:|")
            checks: list[tuple[str, Callable[[str], bool]]] = [("the filter", lambda t: scan(t).flagged)]
            if refuses_address is not None:
                checks.append(("the address check", refuses_address))
                checks.append(("either (what the slot does)", lambda t: scan(t).flagged or refuses_address(t)))
            for name, refuses in checks:
                a = sum(refuses(t) for _, t in at_slot)
                r = sum(refuses(t) for _, t in real)
                out.append(f"| {name} | {_rate(a, len(at_slot))} | {_rate(r, len(real))} |")
            out.append("")
            if show_misses and refuses_address is not None:
                for src, text in at_slot:
                    if not (scan(text).flagged or refuses_address(text)):
                        out.append(f"ADDRESS SLOT MISS {src}: {text}")
                for src, text in real:
                    if scan(text).flagged or refuses_address(text):
                        out.append(f"ADDRESS SLOT REFUSED {src}: {text}")
        if show_misses:
            for cat, src, text, flagged in flagged_attacks:
                if not flagged:
                    out.append(f"MISS {cat} {src}: {text}")
            for kind, src, text, f in flagged_benign:
                if f.flagged:
                    out.append(f"FALSE POSITIVE {kind} {src}: {text}  {f.rules}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--write", type=Path, help="Markdown file whose figures section to replace")
    ap.add_argument("--show-misses", action="store_true")
    args = ap.parse_args()
    table = evaluate(args.show_misses)
    print(table)
    if args.write:
        doc = args.write.read_text(encoding="utf-8")
        if BEGIN not in doc or END not in doc:
            print(f"{args.write}: no {BEGIN} ... {END} markers", file=sys.stderr)
            return 1
        head, rest = doc.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        command = f".venv/bin/python scripts/eval_injection.py --write {args.write}"
        block = f"{BEGIN}\nProduced by `{command}`:\n\n{table}\n{END}"
        args.write.write_text(head + block + tail, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
