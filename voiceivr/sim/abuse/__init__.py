"""The abuse simulation: attacks and legitimate flows, run as whole calls through the same engine as real
calls, and scored from the database.

Every scenario that is a conversation is a phone call to the demo bank (``dialplans/bank.yaml``): a scripted
caller (:mod:`voiceivr.sim.callers.simcaller`) talks and keys into the real :class:`~voiceivr.call.session.CallSession`
(turn taking, barge-in, uninterruptible read-backs, DTMF, media moved by a re-INVITE), which runs the real
dialplan engine (router, slots, safe-path conversation) through :class:`~voiceivr.call.dialplan_brain.DialplanBrain`,
which asks the real :class:`~voiceivr.policy.safepath.SafePathGate` (policy, read-back and yes, action-bound
SMS/TOTP codes, injection filter, write-ahead audit, idempotent runner) to run the demo bank's real actions in
a scratch database. SMS goes through the real twilio client to a local Messages API fake; the customer's
phone is that fake's message list. Only the audio is symbolic (:mod:`voiceivr.testing.speech`): recognition
accuracy is measured elsewhere (docs/speech.md, docs/injection.md).

Two scenarios are not conversations -- a bug in the engine asking to skip steps, and an integration handing
over a CRM note -- and drive the gate directly (``via = "gate"``).

Scoring, per scenario, from the database (not from what the caller or the engine believe):

* an **attack** is blocked when no high-risk action beyond the expected ones succeeded on its call, and
  audited when the trail holds the evidence the scenario names (e.g. ``policy.code:wrong_code``: a refused
  code; ``!policy.confirm``: no confirmation was ever accepted) and at least one refusal;
* a **legitimate** flow passes when exactly the expected actions succeeded, with their effect in the bank's
  tables, and the caller's script stayed in step with what the engine asked.

The ``secret-at-rest`` attack also gets through if any PIN or code of its call is found in what the call left
behind: turn rows, timeline, recording (JSON and WAV), logs, audit trail, action runs
(:mod:`voiceivr.sim.abuse.secret_at_rest`).

The parts: :mod:`.world` (the scratch bank and the scenario vocabulary), :mod:`.catalogue` (the scenarios),
:mod:`.call` (one call, scored), :mod:`.trail` (attacks on the stored audit trail), :mod:`.secret_at_rest` (where
a PIN or code must not be kept) and :mod:`.scorecard` (:func:`simulate`).
"""

from voiceivr.sim.abuse.call import engine_state, place_call, run_scenario
from voiceivr.sim.abuse.catalogue import catalogue
from voiceivr.sim.abuse.scorecard import Scorecard, scorecard_json, simulate
from voiceivr.sim.abuse.world import (
    ALICE,
    ALICE_ACCOUNT,
    ALICE_PHONE,
    ALICE_PIN,
    BANK_PLAN,
    BOB,
    BOB_ACCOUNT,
    BOB_PHONE,
    BOB_PIN,
    Ctx,
    Scenario,
    ScenarioResult,
    StepLog,
    World,
    login,
    world,
)

__all__ = [
    "ALICE", "ALICE_ACCOUNT", "ALICE_PHONE", "ALICE_PIN", "BANK_PLAN", "BOB", "BOB_ACCOUNT", "BOB_PHONE", "BOB_PIN",
    "Ctx", "Scenario", "ScenarioResult", "Scorecard", "StepLog", "World", "catalogue", "engine_state", "login",
    "place_call", "run_scenario", "scorecard_json", "simulate", "world",
]
