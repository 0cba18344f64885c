"""The console's dialplan routes: the list and the editor page, the JSON endpoints the editor calls (validate,
simulate, what-if and its audio), and publish and rollback."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response

from voiceivr.console import drafts, views, whatif
from voiceivr.console.accounts import Session
from voiceivr.console.http import SECURITY_HEADERS, Refused, console_of, form_of, json_body, needs, page, text_field
from voiceivr.dialplan.loader import DialplanInvalid
from voiceivr.dialplan.split import clear_split, get_split, set_split
from voiceivr.errors import VoiceivrError

# --- dialplans --------------------------------------------------------------------------------------------


@needs("viewer")
async def home(request: Request, session: Session) -> Response:
    return RedirectResponse("/dialplans", status_code=303, headers=SECURITY_HEADERS)


@needs("viewer")
async def dialplan_list(request: Request, session: Session) -> Response:
    names = await run_in_threadpool(views.dialplan_names, console_of(request).engine)
    return page(request, "dialplans.html", session=session, names=names,
                live_name=console_of(request).settings.dialplan.live_name)


@needs("viewer")
async def dialplan_page(request: Request, session: Session) -> Response:
    console = console_of(request)
    name = request.path_params["name"]
    versions = await run_in_threadpool(views.versions_of, console.engine, name)
    if not versions:
        raise Refused(404, "no published dialplan of that name")
    wanted = request.query_params.get("from", "")
    start = next((v for v in versions if str(v.version) == wanted), versions[-1])
    calls = await run_in_threadpool(whatif.recordings, console.settings, 20)
    split = await run_in_threadpool(get_split, console.engine, name[:128])
    return page(request, "dialplan.html", session=session, name=name, versions=list(reversed(versions)),
                live=versions[-1], draft=start.source, draft_from=start.version, recordings=calls, split=split,
                whatif_calls=console.settings.console.whatif_calls,
                flash=_flash(name, request.query_params), problems=[], note="")


def _flash(name: str, q: Mapping[str, str]) -> str:
    """What the last publish or rollback did, worded here: a link cannot make the page say anything else."""
    def number(key: str) -> str:
        value = q.get(key, "")
        return value if value.isdigit() and len(value) < 10 else ""

    if number("published"):
        return f"published {name} version {number('published')}"
    if number("unchanged"):
        return f"{name} version {number('unchanged')} is already live with this exact content"
    if number("rolled_back_to") and number("now"):
        return f"rolled back to version {number('rolled_back_to')}: now version {number('now')}"
    if number("split") and number("percent"):
        return f"split set: version {number('split')} gets {number('percent')} % of new calls"
    if q.get("split") == "cleared":
        return "split ended: every new call runs the live version"
    return ""




@needs("editor")
async def api_validate(request: Request, session: Session) -> Response:
    console = console_of(request)
    text = text_field(await json_body(request), "text")
    try:
        problems = await run_in_threadpool(drafts.problems_of, text, console.registry)
    except drafts.DraftRefused as exc:
        return JSONResponse({"refused": str(exc)}, status_code=413, headers=SECURITY_HEADERS)
    return JSONResponse({"problems": [views.problem_json(p) for p in problems]}, headers=SECURITY_HEADERS)


@needs("editor")
async def api_simulate(request: Request, session: Session) -> Response:
    console = console_of(request)
    body = await json_body(request)
    text, script = text_field(body, "text"), text_field(body, "script")
    try:
        result = await run_in_threadpool(console.simulator.run, text, script)
    except DialplanInvalid as exc:
        return JSONResponse({"problems": [views.problem_json(p) for p in exc.problems]}, status_code=422,
                            headers=SECURITY_HEADERS)
    except drafts.DraftRefused as exc:
        return JSONResponse({"refused": str(exc) + (f" ({exc.hint})" if exc.hint else "")}, status_code=400,
                            headers=SECURITY_HEADERS)
    return JSONResponse({"lines": result.lines, "ended": result.ended}, headers=SECURITY_HEADERS)


@needs("editor")
async def api_whatif(request: Request, session: Session) -> Response:
    console = console_of(request)
    body = await json_body(request)
    text, name = text_field(body, "text"), text_field(body, "name")
    chosen = body.get("calls") or []
    if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
        raise Refused(400, "calls must be a list of call ids")
    try:
        problems = await run_in_threadpool(drafts.problems_of, text, console.registry)
    except drafts.DraftRefused as exc:
        return JSONResponse({"refused": str(exc)}, status_code=413, headers=SECURITY_HEADERS)
    if problems:
        return JSONResponse({"problems": [views.problem_json(p) for p in problems]}, status_code=422,
                            headers=SECURITY_HEADERS)
    versions = await run_in_threadpool(views.versions_of, console.engine, name)
    if not versions:
        raise Refused(404, "no published dialplan of that name to compare with")
    known = await run_in_threadpool(whatif.recordings, console.settings, 200)
    # Only recordings found in the recording directory: a call id is never turned into a path.
    picked = [r for r in known if r.call_id in set(chosen)][:whatif.MAX_CHOSEN] if chosen \
        else known[:console.settings.console.whatif_calls]
    if not picked:
        raise Refused(404, "no recorded calls to replay (voiceivr serve records calls in recording.dir)")
    if not console.whatif_lock.acquire(blocking=False):
        raise Refused(429, "another what-if is running: try again when it has finished")
    try:
        diffs = await run_in_threadpool(whatif.compare, console.settings, versions[-1].source, text, picked)
    finally:
        console.whatif_lock.release()
    calls = []
    for d in diffs:
        out = d.to_json()
        for side, wav in (("live", d.live_audio), ("draft", d.draft_audio)):
            out[f"{side}_audio"] = f"/whatif/audio/{console.clips.add(session.admin.name, wav)}" if wav else ""
        calls.append(out)
    return JSONResponse({"live_version": versions[-1].version, "calls": calls}, headers=SECURITY_HEADERS)


@needs("editor")
async def whatif_audio(request: Request, session: Session) -> Response:
    wav = console_of(request).clips.get(session.admin.name, request.path_params["clip"])
    if wav is None:
        raise Refused(404, "no such clip (clips of a what-if are kept for its admin, for the last 40 only)")
    return Response(wav, media_type="audio/wav", headers=SECURITY_HEADERS)


@needs("publisher")
async def publish(request: Request, session: Session) -> Response:
    console = console_of(request)
    form = await form_of(request)
    text, note = text_field(form, "text"), text_field(form, "note")
    name = request.path_params["name"]
    try:
        result = await run_in_threadpool(drafts.publish_draft, console.engine, text, console.registry,
                                         session.admin, note)
    except (DialplanInvalid, drafts.DraftRefused) as exc:
        problems = exc.problems if isinstance(exc, DialplanInvalid) else []
        versions = await run_in_threadpool(views.versions_of, console.engine, name)
        split = await run_in_threadpool(get_split, console.engine, name[:128])
        return page(request, "dialplan.html", 422, session, name=name, versions=list(reversed(versions)),
                    live=versions[-1] if versions else None, draft=text, draft_from=None, flash="", note=note,
                    split=split,
                    recordings=[], whatif_calls=console.settings.console.whatif_calls,
                    problems=[views.problem_json(p) for p in problems],
                    error="Not published: " + (f"{len(problems)} problem(s) below" if problems else str(exc))
                          + "; the live version is unchanged.")
    except VoiceivrError as exc:
        raise Refused(409, f"not published: {exc}") from None
    v = result.version
    done = "published" if result.created else "unchanged"
    return RedirectResponse(f"/dialplans/{quote(v.name)}?{done}={v.version}", status_code=303,
                            headers=SECURITY_HEADERS)


@needs("publisher")
async def rollback(request: Request, session: Session) -> Response:
    console = console_of(request)
    form = await form_of(request)
    name = request.path_params["name"]
    version = str(form.get("version", ""))
    if not version.isdigit():
        raise Refused(400, "choose a version to roll back to")
    try:
        result = await run_in_threadpool(drafts.rollback_to, console.engine, name, int(version), console.registry,
                                         session.admin, text_field(form, "note"))
    except VoiceivrError as exc:
        raise Refused(409, f"not rolled back: {exc}") from None
    v = result.version
    return RedirectResponse(f"/dialplans/{quote(v.name)}?rolled_back_to={version}&now={v.version}",
                            status_code=303, headers=SECURITY_HEADERS)


@needs("publisher")
async def split(request: Request, session: Session) -> Response:
    """Set, change or end the A/B split of this dialplan's new calls; audited (console.split) with the admin."""
    console = console_of(request)
    form = await form_of(request)
    name = request.path_params["name"][:128]
    try:
        note = drafts.clean_note(text_field(form, "note"))
    except VoiceivrError as exc:
        raise Refused(400, str(exc)) from None
    if form.get("action") == "clear":
        try:
            await run_in_threadpool(lambda: clear_split(console.engine, name, actor=session.admin.actor,
                                                        kind="console.split", note=note))
        except VoiceivrError as exc:
            raise Refused(409, f"split not ended: {exc}") from None
        return RedirectResponse(f"/dialplans/{quote(name)}?split=cleared", status_code=303, headers=SECURITY_HEADERS)
    version, percent = str(form.get("version", "")).strip(), str(form.get("percent", "")).strip()
    if not (version.isdigit() and len(version) < 10 and percent.isdigit() and len(percent) < 4):
        raise Refused(400, "choose a version and a whole percentage (1 to 99)")
    try:
        done = await run_in_threadpool(lambda: set_split(console.engine, name, int(version), int(percent),
                                                         actor=session.admin.actor, kind="console.split",
                                                         note=note))
    except VoiceivrError as exc:
        raise Refused(409, f"split not set: {exc}" + (f" ({exc.hint})" if exc.hint else "")) from None
    return RedirectResponse(f"/dialplans/{quote(name)}?split={done.version}&percent={done.percent}",
                            status_code=303, headers=SECURITY_HEADERS)
