"""Hostile dialplan files: each is refused with one clear line and exit 1, in bounded memory and time.

Every case runs the real `voiceivr dialplan ...` command in a child process (tests/support/measure.py) and compares
its peak memory with the same command on a small valid dialplan.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.measure import Run, assert_refused, run_voiceivr
from voiceivr import yamlpos
from voiceivr.db import migrate
from voiceivr.db.engine import make_engine

ROOT = Path(__file__).resolve().parents[1]
TAIL = "nodes: {a: {say: hi, end: hangup}}\n"


def billion_laughs() -> str:
    """Nine lists of nine aliases of the list before: 9**9 (387 million) strings from about 490 bytes."""
    lines = ["name: bomb", "start: a", 'l0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"l{i}: &a{i} [{','.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n" + TAIL


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    db = tmp_path_factory.mktemp("db") / "voiceivr.sqlite3"
    engine = make_engine(f"sqlite:///{db}")
    migrate.upgrade(engine)  # so publish gets as far as reading the file
    engine.dispose()
    yield {"VOICEIVR_DATABASE_URL": f"sqlite:///{db}", "VOICEIVR_DIALPLAN_TIERS": "0,1"}


@pytest.fixture(scope="module")
def baseline(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Run:
    run = run_voiceivr(["dialplan", "validate", str(ROOT / "dialplans" / "bank.yaml")], tmp_path_factory.mktemp("b"),
                       env)
    assert run.returncode == 0, run.output
    return run


def write(tmp_path: Path, text: str, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
@pytest.mark.parametrize("command", ["validate", "simulate", "publish"])
def test_billion_laughs_is_refused_by_every_command(command: str, env: dict[str, str], baseline: Run,
                                                    tmp_path: Path) -> None:
    text = billion_laughs()
    assert len(text.encode()) < 500
    plan = write(tmp_path, text)
    args = ["dialplan", command, str(plan)] + (["--say", "hello"] if command == "simulate" else [])
    run = run_voiceivr(args, tmp_path, env)
    # Where the count runs out: the first alias of l5 (l0-l4 expand to 74,000 values, l5 to 600,000).
    assert_refused(run, baseline, f"{plan}:8:10: more than {yamlpos.MAX_VALUES:,} values once its aliases are "
                                  "expanded (an alias bomb?)")
    if command != "validate":
        assert len(run.error_lines()) == 1, run.stderr
    if command == "publish":
        assert "the live version is unchanged" in run.stderr


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
@pytest.mark.parametrize("text, where", [
    ("name: s\nstart: a\nvars: &v\n  x: *v\n" + TAIL, ":4:6:"),  # a mapping holding itself
    ("name: s\nstart: a\nvars:\n  x: &l [a, [b, *l]]\n" + TAIL, ":4:17:"),  # a list inside a list holding it
], ids=["mapping", "list"])
def test_an_alias_inside_itself_is_refused(text: str, where: str, env: dict[str, str], baseline: Run,
                                            tmp_path: Path) -> None:
    run = run_voiceivr(["dialplan", "validate", str(write(tmp_path, text))], tmp_path, env)
    assert_refused(run, baseline, f"{where} an alias refers to the list or mapping that contains it")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
@pytest.mark.parametrize("text", [
    "name: d\nvars: " + "[" * 20_000 + "]" * 20_000 + "\n",
    "name: d\nvars:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(100)),
    # Each line two levels deep as written, each alias one level deeper than the one it names.
    "name: d\na0: &a0 [x]\n" + "".join(f"a{i}: &a{i} [*a{i - 1}]\n" for i in range(1, 1500)),
], ids=["flow", "block", "through-an-alias"])
def test_deep_nesting_is_refused(text: str, env: dict[str, str], baseline: Run, tmp_path: Path) -> None:
    run = run_voiceivr(["dialplan", "validate", str(write(tmp_path, text))], tmp_path, env)
    assert_refused(run, baseline, f"nested more than {yamlpos.MAX_DEPTH} levels deep")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_27_mb_file_is_refused_before_it_is_read(env: dict[str, str], baseline: Run, tmp_path: Path) -> None:
    body = "".join(f"  k{i}: value number {i}\n" for i in range(1_000_000))
    plan = write(tmp_path, "name: big\nstart: a\nvars:\n" + body + TAIL)
    assert plan.stat().st_size > 27_000_000
    for command in ("validate", "simulate", "publish"):
        run = run_voiceivr(["dialplan", command, str(plan)], tmp_path, env)
        assert_refused(run, baseline, f"{plan}:1:1: {plan.stat().st_size:,} bytes; a dialplan may be at most "
                                      f"{yamlpos.MAX_BYTES:,}")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_file_just_under_the_size_limit_with_too_many_values(env: dict[str, str], baseline: Run,
                                                               tmp_path: Path) -> None:
    # The cheapest values YAML has, as many as fit in the size limit: refused once the count is passed.
    text = "name: f\nstart: a\nvars:\n  x: [" + ",".join(["a"] * 400_000) + "]\n" + TAIL
    assert len(text) < yamlpos.MAX_BYTES
    run = run_voiceivr(["dialplan", "validate", str(write(tmp_path, text))], tmp_path, env)
    assert_refused(run, baseline, f"more than {yamlpos.MAX_VALUES:,} values in the file")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
@pytest.mark.parametrize("value, words", [
    ("2026-13-45", "'2026-13-45' reads as a date but is not a valid one (month must be in 1..12)"),
    ("9" * 5000, f"'{'9' * 37}...' reads as a whole number but is not a valid one (Exceeds the limit (4300 digits) "
                 "for integer string conversion)"),
], ids=["date", "integer"])
def test_a_scalar_yaml_cannot_build_is_a_problem_with_its_position(value: str, words: str, env: dict[str, str],
                                                                   baseline: Run, tmp_path: Path) -> None:
    plan = write(tmp_path, f"name: t\nstart: a\nvars:\n  d: {value}\n" + TAIL)
    run = run_voiceivr(["dialplan", "validate", str(plan)], tmp_path, env)
    assert_refused(run, baseline, f"{plan}:4:6: {words}; put it in quotes if it is text")


@pytest.mark.slow  # over 1 s measured under load: scripts/test --fast skips it
def test_a_long_chain_of_nodes_is_checked_without_recursion(env: dict[str, str], baseline: Run,
                                                            tmp_path: Path) -> None:
    # 3,000 nodes each going to the next, ending in a loop back to the first: the loop check walked the
    # chain recursively and hit Python's recursion limit.
    n = 3000
    nodes = "".join(f"  n{i}:\n    say: step\n    goto: n{(i + 1) % n}\n" for i in range(n))
    plan = write(tmp_path, "name: chain\nstart: n0\nnodes:\n" + nodes)
    run = run_voiceivr(["dialplan", "validate", str(plan)], tmp_path, env)
    assert_refused(run, baseline, f"{plan}:4:3: nodes n0 -> n1 -> n2 -> ")
    assert "n2999 -> n0 loop without ever waiting for the caller" in run.stdout


def test_a_control_character_is_a_problem_at_its_place_not_a_crash() -> None:
    from voiceivr.demo.actions import registry as demo_registry
    from voiceivr.dialplan.loader import check_text

    _, problems = check_text("name: x\nstart: a\n  \x00\n", "nul.yaml", demo_registry())
    assert [str(p) for p in problems] == [
        "nul.yaml:3:3: not valid YAML: character U+0000 is not allowed (a control character or a lone surrogate)"]
