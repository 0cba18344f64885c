"""All 49 RFC 4475 torture messages at `voiceivr serve`, directly (one pjsua2 worker on the port) and through
Kamailio (2 workers). The server must answer a plain OPTIONS after every one, and each answer must be what
../shared/sip-torture/expected.tsv says or the difference documented below (docs/sip-torture.md explains
each). A difference that goes away fails the test too, so the table stays true."""

from __future__ import annotations

import shutil
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, suppress
from pathlib import Path

import pytest

from tests.sip import sip_torture, siptools

pytestmark = pytest.mark.slow

# file -> the final answer we get instead of the expected one (None: no answer at all).
PJSIP_DIFFERENCES: dict[str, int | None] = {
    # pjsip answers nothing to a request no module handles: no 501 for unknown methods...
    "intmeth.dat": None,
    "esc02.dat": None,
    "mismatch02.dat": None,
    # ...and no 405 for REGISTER (a UA that is no registrar)
    "escnull.dat": None,
    "dblreq.dat": None,
    "cparam01.dat": None,
    "cparam02.dat": None,
    "regescrt.dat": None,
    "regaut01.dat": None,
    "regbadct.dat": None,
    "unksm2.dat": None,
    "scalar02.dat": None,
    # messages pjsip's parser rejects are dropped without an answer
    "badinv01.dat": None,
    "ncl.dat": None,
    "quotbal.dat": None,
    "ltgtruri.dat": None,
    "lwsruri.dat": None,
    "badvers.dat": None,
    "unkscm.dat": None,
    "novelsc.dat": None,
    # pjsip is lenient where RFC 4475 wants an error
    "clerr.dat": 200,
    "mismatch01.dat": 200,
    "multi01.dat": 200,
    "mcl01.dat": 200,
    "bext01.dat": 200,
    # pjsip refuses an RFC 2543 INVITE without Contact
    "inv2543.dat": 400,
}

KAMAILIO_DIFFERENCES: dict[str, int | None] = {
    # Kamailio 5.6's parser rejects these and, with no parsable Via to answer to, drops them
    "wsinv.dat": None,
    "intmeth.dat": None,
    "esc02.dat": None,
    "badinv01.dat": None,
    "ncl.dat": None,
    "quotbal.dat": None,
    "lwsruri.dat": None,
    "lwsstart.dat": None,
    "badvers.dat": None,
    "multi01.dat": None,
    "mcl01.dat": None,
    # sanity_check counts the second message in the datagram as body: Content-Length mismatch
    "dblreq.dat": 400,
    # relayed to a worker, whose pjsip refuses an RFC 2543 INVITE without Contact
    "inv2543.dat": 400,
}


def _rounds(tmp: Path, kamailio: str, groups: list[tuple[int, list[sip_torture.Expectation]]],
          results: dict[int, tuple[list[sip_torture.Outcome], list[tuple[str, int | None]]]]) -> None:
    """Fire ``groups`` (round number, messages), one server each, in order; the next round's server starts
    while this round fires (a start is ~3 s of mostly CPU, the rounds mostly wait for answers that never come)."""
    def start(i: int) -> tuple[ExitStack, siptools.Served]:
        work = tmp / f"round{i}"
        work.mkdir()
        stack = ExitStack()
        try:
            served = stack.enter_context(siptools.serve(work, workers=1 if kamailio == "no" else 2,
                                                        kamailio=kamailio, VOICEIVR_SIP_TCP="true"))
        except BaseException:
            stack.close()
            raise
        return stack, served

    with ThreadPoolExecutor(max_workers=1) as pool:
        pending: Future[tuple[ExitStack, siptools.Served]] | None = pool.submit(start, groups[0][0])
        for n, (i, group) in enumerate(groups):
            assert pending is not None
            stack, served = pending.result()
            pending = pool.submit(start, groups[n + 1][0]) if n + 1 < len(groups) else None
            try:
                with stack:
                    harness = sip_torture.TortureHarness(served.port)
                    try:
                        outcomes = [harness.fire(exp, wait=1.0) for exp in group]
                        results[i] = (outcomes, harness.bye_answers)
                    finally:
                        harness.close()
                    assert served.proc.poll() is None
            except BaseException:
                if pending is not None:  # stop the server started for the next round too
                    with suppress(BaseException):
                        pending.result()[0].close()
                raise


def run_mode(tmp: Path, kamailio: str, results: dict[str, object]) -> None:
    try:
        exps = sip_torture.expectations()
        # pjsip keys transactions on branch alone: one fresh server per round (see sip_torture.rounds), each
        # started while the round before fires. Kamailio's transaction layer also compares the Via, so one
        # server takes them all.
        groups = list(enumerate(sip_torture.rounds(exps) if kamailio == "no" else [exps]))
        done: dict[int, tuple[list[sip_torture.Outcome], list[tuple[str, int | None]]]] = {}
        _rounds(tmp, kamailio, groups, done)
        assert sorted(done) == [i for i, _ in groups], f"rounds finished: {sorted(done)} of {len(groups)}"
        results["outcomes"] = [o for i in sorted(done) for o in done[i][0]]
        results["byes"] = [b for i in sorted(done) for b in done[i][1]]
    except BaseException as exc:  # reported by the test thread
        results["error"] = exc


@pytest.mark.skipif(shutil.which("kamailio") is None, reason="Kamailio is not installed (scripts/test installs it)")
def test_rfc4475_torture_messages(tmp_path: Path) -> None:
    results: dict[str, dict[str, object]] = {"no": {}, "yes": {}}
    threads = []
    for mode in ("no", "yes"):
        (tmp_path / mode).mkdir()
        thread = threading.Thread(target=run_mode, args=(tmp_path / mode, mode, results[mode]))
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(240)
    report = []
    failures = []
    for mode, known in (("no", PJSIP_DIFFERENCES), ("yes", KAMAILIO_DIFFERENCES)):
        if "error" in results[mode]:
            raise results[mode]["error"]  # type: ignore[misc]
        outcomes: list[sip_torture.Outcome] = results[mode]["outcomes"]  # type: ignore[assignment]
        assert len(outcomes) == 49
        for o in outcomes:
            report.append(f"{'kamailio' if mode == 'yes' else 'direct':8} {o.file:15} expected {o.expected:14} "
                          f"got {o.final} alive={o.alive}")
            if not o.alive:
                failures.append(f"{mode}: server did not answer OPTIONS after {o.file}")
            if o.file in known:
                if o.ok or o.final != known[o.file]:
                    failures.append(f"{mode}: {o.file}: documented difference {known[o.file]}, got {o.final} "
                                    f"(expected {o.expected}): update the table and docs/sip-torture.md")
            elif not o.ok:
                failures.append(f"{mode}: {o.file}: expected {o.expected}, got {o.answers}")
        # Every call a torture INVITE started was hung up again (no call, and no RTP, left behind).
        for call_id, status in results[mode]["byes"]:  # type: ignore[attr-defined]
            if status != 200:
                failures.append(f"{mode}: BYE for {call_id} got {status}")
    print("\n".join(report))
    assert not failures, "\n".join(failures)
