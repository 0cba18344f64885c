"""Checking the trail: every link, then every checkpoint.

The walk stops at the first row that does not fit and names it: a gap or a repeat in the sequence numbers, a
``prev_hash`` that is not the link of the row before, or a link that does not verify under the row's key -- a
row forged by someone who could INSERT but had no key, or altered afterwards.

Legacy rows (plain SHA-256, before revision 0005) are accepted only as the start of the trail and only when a
keyed row follows them: the first keyed row's MAC covers the last legacy link, so the keyed chain vouches for
the legacy rows before it. A legacy row after the first keyed row is forged (since 0005 the database refuses
rows without a key id, and anyone can compute a SHA-256); a trail that is *all* legacy rows is not vouched
for by anything yet (``voiceivr db upgrade`` seals it with a keyed row).

Then the checkpoints (signed, kept outside the database): the row at each checkpoint's sequence number must
carry the checkpoint's link, and the trail must reach the newest checkpoint's sequence number -- fewer rows
means the tail was cut.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from voiceivr.audit.checkpoints import Checkpoint
from voiceivr.audit.keys import Keyring
from voiceivr.audit.records import GENESIS_HASH, AuditRecord, recompute

SEAL_HINT = "run `voiceivr db upgrade` to seal the legacy rows with a keyed row"


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    rows: int
    head: Checkpoint
    first_bad_seq: int | None = None
    reason: str = ""
    checkpoints: int = 0  # how many checkpoints the trail was held against
    newest: Checkpoint | None = None
    notes: tuple[str, ...] = field(default=())

    def summary(self) -> str:
        if self.ok:
            text = f"audit trail intact: {self.rows} rows, head seq {self.head.seq} hash {self.head.hash}"
            if self.newest is not None:
                text += (f"; matches {self.checkpoints} checkpoint(s), newest seq {self.newest.seq} "
                         f"from {self.newest.source or 'the command line'}")
            return text
        if self.first_bad_seq is None:
            return f"audit checkpoints BROKEN: {self.reason}"
        return f"audit trail BROKEN at seq {self.first_bad_seq}: {self.reason}"


def _named(cp: Checkpoint) -> str:
    return f"checkpoint {cp.source}" if cp.source else "checkpoint"


def verify_rows(
    rows: Iterable[AuditRecord],
    keyring: Keyring,
    checkpoints: Sequence[Checkpoint] = (),
    problems: Sequence[str] = (),
    *,
    after: Checkpoint | None = None,
) -> VerifyReport:
    """Walk the chain from the first row. ``checkpoints``: heads the trail must still have (already checked for
    their signatures); ``problems``: lines of the checkpoint files that failed that check (each one a failure,
    reported when the chain itself is intact).

    ``after``: a head this process verified before (a whole walk that ended intact there): ``rows`` then start
    at the row after it, whose ``prev_hash`` must be that head's link, and checkpoints at or before it are not
    held against rows again (a whole walk does that)."""
    expected_seq = 1 if after is None else after.seq + 1
    prev_hash = GENESIS_HASH if after is None else after.hash
    count = 0 if after is None else after.seq
    first_keyed: int | None = None if after is None or after.seq == 0 else after.seq  # an intact walk had one
    at_seq: dict[int, list[Checkpoint]] = {}
    for cp in checkpoints:
        if cp.seq > (0 if after is None else after.seq):
            at_seq.setdefault(cp.seq, []).append(cp)
    newest = max(checkpoints, key=lambda c: c.seq, default=None)

    def broken(seq: int | None, reason: str) -> VerifyReport:
        return VerifyReport(False, count, Checkpoint(expected_seq - 1, prev_hash), seq, reason,
                            len(checkpoints), newest)

    for r in rows:
        if r.seq != expected_seq:
            if r.seq > expected_seq:
                return broken(expected_seq, f"row {expected_seq} is missing (next row found is {r.seq})")
            return broken(r.seq, f"row {r.seq} appears again or out of order after row {expected_seq - 1}")
        if r.prev_hash != prev_hash:
            return broken(r.seq, "its prev_hash does not match the hash of the row before")
        if r.legacy:
            if first_keyed is not None:
                return broken(r.seq, "forged or altered: a row without a key id (a plain SHA-256 link, which "
                                     f"anyone can compute) after the keyed chain began at seq {first_keyed}")
            key = None
        else:
            key = keyring.get(r.key_id)
            if key is None:
                return broken(r.seq, f"forged or altered: it names key {r.key_id!r}, which is not in the keyring "
                                     "(a forged row, or a retired key missing from audit.key / audit.key_file)")
        try:
            recomputed = recompute(r, key)
        except (TypeError, ValueError, AttributeError) as exc:
            return broken(r.seq, f"its fields cannot be encoded ({exc})")
        if recomputed != r.hash:
            if key is None:
                return broken(r.seq, "its contents do not match its hash (the row was altered)")
            return broken(r.seq, f"forged or altered: its MAC does not verify with key {key.key_id}")
        for cp in at_seq.get(r.seq, ()):
            if r.hash != cp.hash:
                return broken(r.seq, f"its hash differs from the {_named(cp)}: the trail was rewritten")
        if key is not None and first_keyed is None:
            first_keyed = r.seq
        prev_hash = r.hash
        expected_seq += 1
        count += 1

    if count and first_keyed is None:
        return broken(1, f"rows 1-{count} are legacy SHA-256 rows that no keyed row vouches for yet "
                         f"({SEAL_HINT})")
    if newest is not None and newest.seq > count:
        return broken(count + 1, f"the trail ends at seq {count} but the {_named(newest)} names seq {newest.seq}: "
                                 "rows were removed from the tail")
    if problems:
        return broken(None, problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    return VerifyReport(True, count, Checkpoint(expected_seq - 1, prev_hash), checkpoints=len(checkpoints),
                        newest=newest)
