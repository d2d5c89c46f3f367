"""The pages and the actions (one function each). Actions are POST forms: they need the token and
the session's CSRF token (``auth.Guard``), act (in a thread: the backends block) through ``cloudq.deadletters`` / ``app.control``,
empty the read cache so their effect shows at once, and redirect back (reloading repeats nothing)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from .. import deadletters as dl
from .. import states
from ..runtime import series as ts
from .auth import COOKIE, CSRF_FIELD, SESSION_S
from .charts import page_charts
from .redact import Argument, scrub
from .state import Dashboard

MAX_ID = 200  # longest task id accepted from a form or a URL
DONE = {  # what a redirect after an action says (codes, so no text from the URL is shown)
    "redriven": "{n} dead letter(s) put back on the queue",
    "purged": "{n} dead letter(s) deleted",
    "revoked": "task revoked: it will not run",
    "finished": "the task had already finished: revoking it changed nothing",
    "login": "logged in: actions are enabled",
    "logout": "logged out",
}


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def count(value: int) -> str:
    return "?" if value < 0 else str(value)


def _dash(request: Request) -> Dashboard:
    found: Dashboard = request.app.state.dashboard
    return found


def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    dash = _dash(request)
    session = dash.guard.session(request.cookies)
    done = DONE.get(request.query_params.get("done", ""), "")
    n = request.query_params.get("n", "")
    context.update(
        request=request,
        actions=dash.guard.actions,
        read_only=dash.guard.read_only,
        logged_in=session is not None,
        csrf=session.csrf if session is not None else "",
        csrf_field=CSRF_FIELD,
        done=done.format(n=int(n) if n.isdigit() else "?"),
        cache_s=dash.backends.cache.ttl_s,
        when=when,
        count=count,
    )
    response = dash.templates.TemplateResponse(request, template, context, status_code=status)
    return response


def _queue(request: Request) -> str:
    queue = str(request.path_params["queue"])
    if queue not in _dash(request).backends.queues():  # never create or address a queue the app does not use
        raise HTTPException(404, f"the app has no queue {queue!r}")
    return queue


def _task_id(value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_ID:
        raise HTTPException(400, f"a task id is 1 to {MAX_ID} characters")
    return value


async def _authorized_form(request: Request) -> Any:
    """The POSTed form, or 403 when the request may not act."""
    form = await request.form()
    dash = _dash(request)
    if not dash.guard.actions:
        raise HTTPException(403, "actions are disabled (read-only, or no --token given)")
    if not dash.guard.may_act(request.cookies, request.headers, str(form.get(CSRF_FIELD, ""))):
        raise HTTPException(403, "log in with the token first (or the form's CSRF token is missing or stale)")
    return form


def _back(path: str, **query: Any) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode(query)}" if query else path, status_code=303)


def home(request: Request) -> Response:
    return RedirectResponse("/queues", status_code=307)


def queues(request: Request) -> Response:
    dash = _dash(request)
    refresh = request.query_params.get("refresh", "")
    every = max(int(dash.backends.cache.ttl_s), min(int(refresh), 300)) if refresh.isdigit() else 0
    backends, now = dash.backends, time.time()
    rows = backends.stats()
    series = backends.series(now)
    charts = page_charts(series, backends.depths, backends.queues(), now)
    presence = backends.workers() is not None
    return page(
        request,
        "queues.html",
        rows=rows,
        refresh=every,
        charts=charts,
        presence=presence,
        fine=ts.FINE_MIN,
        block=ts.BLOCK_MIN,
    )


def dead_letters(request: Request) -> Response:
    queue = _queue(request)
    params = request.query_params
    chosen = dl.Selection(error_type=params.get("error_type") or None, task=params.get("task") or None)
    dash = _dash(request)
    rows = dash.backends.dead_letters(queue, chosen)
    return page(
        request, "dead_letters.html", queue=queue, rows=rows, chosen=chosen, can_redrive=dash.backends.can_redrive
    )


def _chosen(form: Any) -> dl.Selection:
    """The ids ticked in the form, or with ``all`` every dead letter the page's filters match
    (they ride along as hidden fields, so "all" never means more than the page listed)."""
    error_type, task_name = str(form.get("error_type", "")) or None, str(form.get("task", "")) or None
    if form.get("all") == "1":
        return dl.Selection(error_type=error_type, task=task_name)
    ids = frozenset(str(v) for v in form.getlist("id") if str(v))
    if not ids:
        raise HTTPException(400, "tick at least one dead letter (or use the button for all of them)")
    return dl.Selection(ids=ids, error_type=error_type, task=task_name)


async def redrive(request: Request) -> Response:
    queue = _queue(request)
    form = await _authorized_form(request)
    dash = _dash(request)
    chosen = _chosen(form)
    moved = await run_in_threadpool(lambda: dl.redrive(dash.app, queue, dash.backends.chosen_letters(queue, chosen)))
    dash.backends.cache.clear()
    return _back(f"/queues/{queue}/dead-letters", done="redriven", n=moved)


async def purge(request: Request) -> Response:
    queue = _queue(request)
    form = await _authorized_form(request)
    if form.get("confirm") != "yes":
        raise HTTPException(400, "tick 'yes, delete them for good' to purge dead letters")
    dash = _dash(request)
    chosen = _chosen(form)
    deleted = await run_in_threadpool(lambda: dl.delete(dash.app, queue, dash.backends.chosen_letters(queue, chosen)))
    dash.backends.cache.clear()
    return _back(f"/queues/{queue}/dead-letters", done="purged", n=deleted)


def tasks(request: Request) -> Response:
    wanted = request.query_params.get("id", "").strip()
    if wanted:
        return _back(f"/tasks/{_task_id(wanted)}")
    name = request.query_params.get("name", "").strip()
    state = request.query_params.get("state", "").strip().upper()
    recent = _dash(request).backends.recent()
    if recent is not None:
        recent = [t for t in recent if (not name or name in t.task_name) and (not state or t.state == state)]
        failed = (states.FAILURE, states.REVOKED)
        recent.sort(key=lambda t: (t.state not in failed, -t.updated_at))  # failures first, then newest
    return page(request, "tasks.html", recent=recent, name=name, state=state, states=states.ALL_STATES)


def task(request: Request) -> Response:
    task_id = _task_id(str(request.path_params["task_id"]))
    dash = _dash(request)
    view = dash.backends.task(task_id)
    record = view.record
    shown: list[Argument] | None = None
    error = trace = None
    if record is not None:
        extended = record.args is not None or record.kwargs is not None
        found, hidden = dash.backends.shown(record.task_name, record.args, record.kwargs)
        shown = found if extended else None
        error, trace = scrub(record.error_message, hidden), scrub(record.traceback, hidden)
    return page(
        request,
        "task.html",
        task_id=task_id,
        record=record,
        view=view,
        arguments=shown,
        error_message=error,
        traceback=trace,
        extended=dash.app.settings.result_extended,
        revocable=record is None or not record.terminal,
    )


async def revoke(request: Request) -> Response:
    task_id = _task_id(str(request.path_params["task_id"]))
    await _authorized_form(request)
    dash = _dash(request)
    report = await run_in_threadpool(dash.app.control.revoke, task_id)
    dash.backends.cache.clear()
    return _back(f"/tasks/{task_id}", done="revoked" if report.revoked else "finished")


def workers(request: Request) -> Response:
    return page(request, "workers.html", workers=_dash(request).backends.workers(), now=time.time())


def login_form(request: Request) -> Response:
    return page(request, "login.html", failed=False)


async def login(request: Request) -> Response:
    form = await request.form()
    dash = _dash(request)
    if not dash.guard.actions:
        raise HTTPException(403, "actions are disabled (read-only, or no --token given): there is nothing to log in to")
    session_id = dash.guard.login(str(form.get("token", "")))
    if session_id is None:
        return page(request, "login.html", status=403, failed=True)
    response = _back("/queues", done="login")
    secure = request.url.scheme == "https"
    response.set_cookie(
        COOKIE, session_id, max_age=int(SESSION_S), httponly=True, samesite="strict", secure=secure, path="/"
    )
    return response


async def logout(request: Request) -> Response:
    await _authorized_form(request)
    _dash(request).guard.logout(request.cookies)
    response = _back("/queues", done="logout")
    response.delete_cookie(COOKIE, path="/")
    return response
