#!/usr/bin/env python3
"""Detection and false-positive rates of the injection filter on the corpus in tests/data/injection/.

    .venv/bin/python scripts/eval_injection.py [--write docs/injection.md] [--show-misses]

Prints a table per category and source. With --write, replaces the figures section of the given Markdown
file (between the markers) with the table and the command that produced it.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from voiceivr.policy.injection import scan  # noqa: E402

DATA = ROOT / "tests" / "data" / "injection"
BEGIN, END = "<!-- eval_injection:begin -->", "<!-- eval_injection:end -->"


def load(name: str) -> list[tuple[str, str, str]]:
    rows = []
    for line in (DATA / name).read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, source, text = line.split("\t", 2)
        rows.append((label, source, text))
    return rows


def evaluate(show_misses: bool) -> str:
    out: list[str] = []
    for title, attacks_file, benign_file in (
        ("development set (the filter was tuned on it)", "attacks.txt", "benign.txt"),
        ("held-out set (written after the filter was frozen; never tuned on)", "holdout_attacks.txt",
         "holdout_benign.txt"),
    ):
        if not (DATA / attacks_file).exists():
            continue
        attacks, benign = load(attacks_file), load(benign_file)
        hit: Counter[str] = Counter()
        total: Counter[str] = Counter()
        misses = []
        for cat, _source, text in attacks:
            total[cat] += 1
            if scan(text).flagged:
                hit[cat] += 1
            else:
                misses.append((cat, text))
        fp_total: Counter[str] = Counter()
        fp: Counter[str] = Counter()
        false_pos = []
        for kind, _source, text in benign:
            fp_total[kind] += 1
            f = scan(text)
            if f.flagged:
                fp[kind] += 1
                false_pos.append((kind, text, f.rules))
        out.append(f"### {title}\n")
        out.append("| attacks | detected | rate |\n|---|---:|---:|")
        for cat in sorted(total):
            out.append(f"| {cat} | {hit[cat]}/{total[cat]} | {hit[cat] / total[cat]:.1%} |")
        n, h = sum(total.values()), sum(hit.values())
        out.append(f"| **all attacks** | **{h}/{n}** | **{h / n:.1%}** |\n")
        out.append("| benign | flagged (false positives) | rate |\n|---|---:|---:|")
        for kind in sorted(fp_total):
            out.append(f"| {kind} | {fp[kind]}/{fp_total[kind]} | {fp[kind] / fp_total[kind]:.1%} |")
        n, h = sum(fp_total.values()), sum(fp.values())
        out.append(f"| **all benign** | **{h}/{n}** | **{h / n:.1%}** |\n")
        if show_misses:
            for cat, text in misses:
                out.append(f"MISS {cat}: {text}")
            for kind, text, rules in false_pos:
                out.append(f"FALSE POSITIVE {kind}: {text}  {rules}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
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
