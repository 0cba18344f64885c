"""Prometheus metrics: what operators watch in production.

Per-stage latency histograms, barge-ins, calls by outcome, errors, budget breaches, engine-seconds and
active calls. Served as Prometheus text on ``/metrics`` (settings section ``metrics``; port 0 turns it off).
The same figures, from the database over any time range, come from ``voiceivr stats``.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

# Buckets around what matters: a human turn gap is ~200 ms, our e2e goal 400 ms, other voice agents 500-800.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.5, 2.5, 5.0)

STAGE_LATENCY = Histogram(
    "voiceivr_stage_latency_seconds",
    "Latency of each stage of a turn (capture, intent, policy, tool, synthesis, e2e).",
    ["stage"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
BUDGET_BREACHES = Counter(
    "voiceivr_budget_breaches_total", "Turns whose stage latency exceeded its budget.", ["stage"], registry=REGISTRY
)
BARGE_INS = Counter("voiceivr_barge_ins_total", "Prompts cut short by the caller.", registry=REGISTRY)
BARGE_IN_DECISION = Histogram(
    "voiceivr_barge_in_decision_seconds",
    "Caller speech onset -> barge-in decision.",
    buckets=(0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0),
    registry=REGISTRY,
)
CALLS = Counter("voiceivr_calls_total", "Calls ended, by outcome.", ["outcome"], registry=REGISTRY)
ERRORS = Counter("voiceivr_errors_total", "Errors, by kind.", ["kind"], registry=REGISTRY)
ACTIVE_CALLS = Gauge("voiceivr_active_calls", "Calls in progress.", registry=REGISTRY,
                     multiprocess_mode="livesum")
ENGINE_SECONDS = Counter(
    "voiceivr_engine_seconds_total", "Compute spent in speech engines and router tiers.", ["engine"],
    registry=REGISTRY,
)
RESOLVED_TASKS = Counter("voiceivr_resolved_tasks_total", "Caller tasks completed.", registry=REGISTRY)
CALLS_ENDED_BY_LIMIT = Counter(
    "voiceivr_calls_ended_by_limit_total",
    "Calls we ended because a limit ran out: idle (caller silence), no_progress, max_duration.",
    ["limit"],
    registry=REGISTRY,
)
SIP_REFUSED = Counter(
    "voiceivr_sip_refused_total",
    "New calls refused at admission, by reason: forbidden_source (403), auth_failed (407 after wrong credentials), "
    "source_calls (486, too many calls from one source), source_rate (503, too many INVITEs from one source), "
    "no_capacity (503, every worker full), flood (dropped by Kamailio's pike).",
    ["reason"],
    registry=REGISTRY,
)
BACKEND_REQUESTS = Counter(
    "voiceivr_backend_requests_total",
    "Requests to HTTP backends (plugins.backends), by backend and outcome: ok, refused (4xx), http_5xx, "
    "connect_error, circuit_open, timeout, reset, bad_json, too_large, bad_schema, http_other, injection_flagged.",
    ["backend", "outcome"],
    registry=REGISTRY,
)
BACKEND_LATENCY = Histogram(
    "voiceivr_backend_latency_seconds", "Time of one request to an HTTP backend, reply read.", ["backend"],
    buckets=_LATENCY_BUCKETS, registry=REGISTRY,
)


def observe_stage(stage: str, ms: float, breached: bool) -> None:
    STAGE_LATENCY.labels(stage).observe(ms / 1000)
    if breached:
        BUDGET_BREACHES.labels(stage).inc()


def observe_call(summary: dict[str, Any], barge_in_decisions_s: list[float]) -> None:
    CALLS.labels(summary.get("outcome") or "unknown").inc()
    if summary.get("outcome") == "error":
        ERRORS.labels("call").inc()
    for seconds in barge_in_decisions_s:
        BARGE_INS.inc()
        BARGE_IN_DECISION.observe(seconds)
    for engine, seconds in summary.get("engine_seconds", {}).items():
        ENGINE_SECONDS.labels(engine).inc(seconds)
    RESOLVED_TASKS.inc(int(summary.get("resolved_tasks", 0)))
    if summary.get("ended_by_limit"):
        CALLS_ENDED_BY_LIMIT.labels(summary["ended_by_limit"]).inc()


def serve(port: int, host: str = "127.0.0.1") -> int:
    """Start the /metrics endpoint in a daemon thread; returns the port (useful with port=0 in tests)."""
    server, _thread = start_http_server(port, addr=host, registry=REGISTRY)
    bound = int(server.server_address[1])
    log.info("metrics endpoint listening", extra={"host": host, "port": bound})
    return bound
