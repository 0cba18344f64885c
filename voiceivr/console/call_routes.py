"""The console's read-only routes over what happened: calls (list, detail, recording), statistics and the
audit trail."""

from __future__ import annotations

import datetime as dt

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from voiceivr.console import views, whatif
from voiceivr.console.accounts import Session
from voiceivr.console.http import SECURITY_HEADERS, Refused, console_of, needs, page
from voiceivr.errors import VoiceivrError

# --- calls and audit --------------------------------------------------------------------------------------


@needs("viewer")
async def calls(request: Request, session: Session) -> Response:
    where = views.CallFilter.from_query(request.query_params)
    rows = await run_in_threadpool(views.recent_calls, console_of(request).engine, 200, where)
    outcomes = await run_in_threadpool(views.call_outcomes, console_of(request).engine)
    return page(request, "calls.html", session=session, calls=rows, where=where, outcomes=outcomes)


@needs("viewer")
async def call_page(request: Request, session: Session) -> Response:
    call_id = request.path_params["call_id"]
    found = await run_in_threadpool(views.call_detail, console_of(request).engine, call_id)
    if found is None:
        raise Refused(404, "no call with that id")
    recorded = await run_in_threadpool(whatif.recording_of, console_of(request).settings, call_id)
    return page(request, "call.html", session=session, call=found[0], turns=found[1], recorded=recorded is not None)


@needs("viewer")
async def call_recording(request: Request, session: Session) -> Response:
    path = await run_in_threadpool(whatif.recording_of, console_of(request).settings, request.path_params["call_id"])
    if path is None:
        raise Refused(404, "this call has no recording")
    try:
        wav = await run_in_threadpool(whatif.playable_wav, path)
    except VoiceivrError as exc:
        raise Refused(409, f"the recording cannot be read: {exc}") from None
    return Response(wav, media_type="audio/wav", headers=SECURITY_HEADERS)


@needs("viewer")
async def stats_page(request: Request, session: Session) -> Response:
    from voiceivr.console import charts
    from voiceivr.stats import compute_stats, parse_when

    console = console_of(request)
    since_text = request.query_params.get("since", "24h").strip()[:32] or "24h"
    error = ""
    try:
        since = parse_when(since_text)
    except (VoiceivrError, ValueError, OverflowError):
        error, since_text = f"{since_text!r} is not a time: give e.g. 1h, 24h, 7d or 2026-12-01; showing 24h", "24h"
        since = parse_when(since_text)
    figures = await run_in_threadpool(compute_stats, console.engine, since, dt.datetime.now(dt.UTC))
    return page(request, "stats.html", session=session, stats=figures, since=since_text, error=error,
                latency=charts.latency_chart(figures, console.settings.budget),
                outcomes=charts.outcome_chart(figures))


@needs("viewer")
async def audit(request: Request, session: Session) -> Response:
    console = console_of(request)
    report, rows, how = await run_in_threadpool(views.audit_view, console.engine, 200, console.audit_status)
    return page(request, "audit.html", session=session, report=report, rows=rows, how=how)
