"""docs/coming-from-celery.md stays true: every row's cloudq side imports or resolves, every
row marked missing says so, and every Celery setting cloudq's table knows has a row."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Any

import pytest

from cloudq import App, AsyncResult, Task
from cloudq.celery_names import SETTINGS
from cloudq.config import Settings
from cloudq.task import Request

DOC = Path(__file__).resolve().parents[2] / "docs" / "coming-from-celery.md"
STATUSES = {"as-is", "rename", "differs", "refused", "missing"}


def rows() -> list[tuple[str, str, str]]:
    text = DOC.read_text()
    table = text[text.index("<!-- table:start -->") : text.index("<!-- table:end -->")]
    found = []
    for line in table.splitlines()[3:]:
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        found.append((cells[0], cells[1], cells[2]))
    return found


def resolve(ref: str, app: App) -> None:
    """Raise unless ``ref`` exists in cloudq: a dotted name, a class attribute, a setting, a task
    option accepted by app.task, an apply_async option, or a worker flag."""
    classes: dict[str, Any] = {"App": App, "Task": Task, "AsyncResult": AsyncResult}
    head, _, attr = ref.partition(".")
    if ref.startswith("cloudq worker "):
        from cloudq.cli import worker

        flags = {opt for param in worker.params for opt in getattr(param, "opts", [])}
        assert ref.split()[2] in flags, ref
    elif ref.startswith(("app.task(", "apply_async(")):
        call = ast.parse(ref).body[0].value  # type: ignore[attr-defined]
        options = {kw.arg: _literal(kw.value) for kw in call.keywords}
        if ref.startswith("apply_async("):  # the eager app runs it here
            app.task()(lambda: None).apply_async(**options).get()
        else:
            app.task(**options)(lambda *a, **k: None)
    elif head == "Settings":
        assert attr in Settings.model_fields, ref
    elif head == "Request":
        assert attr in Request.__dataclass_fields__ or hasattr(Request, attr), ref
    elif head in classes:
        assert hasattr(classes[head], attr), ref
    elif head == "cloudq":
        module, _, name = ref.rpartition(".")
        value: Any = None
        for cut in range(len(ref.split(".")), 0, -1):
            try:
                value = importlib.import_module(".".join(ref.split(".")[:cut]))
            except ImportError:
                continue
            for part in ref.split(".")[cut:]:
                value = getattr(value, part)
            break
        assert value is not None, (module, name)
    else:
        raise AssertionError(f"cannot resolve {ref!r}")


def _literal(node: ast.expr) -> Any:
    if isinstance(node, ast.Attribute):  # base=cloudq.Task
        return getattr(importlib.import_module(ast.unparse(node.value)), node.attr)
    if isinstance(node, ast.Tuple) and all(isinstance(e, ast.Name) for e in node.elts):
        import builtins

        return tuple(getattr(builtins, e.id) for e in node.elts)  # type: ignore[attr-defined]
    return ast.literal_eval(node)


@pytest.mark.parametrize(("celery", "cloudq_side", "status"), rows(), ids=[r[0][:50] for r in rows()])
def test_every_rows_cloudq_side_resolves(celery: str, cloudq_side: str, status: str) -> None:
    assert status in STATUSES, status
    if status == "missing" and cloudq_side == "—":
        return
    refs = re.findall(r"`([^`]+)`", cloudq_side)
    assert refs, f"row {celery}: the cloudq side names nothing"
    app = App("doc", broker="memory://", results="memory://", eager=True)
    try:
        resolve(refs[0], app)
    finally:
        app.close()


def test_rows_marked_missing_are_not_claimed_elsewhere() -> None:
    for celery, cloudq_side, status in rows():
        if cloudq_side == "—":
            assert status == "missing", celery


def test_every_celery_setting_of_the_table_has_a_row() -> None:
    text = DOC.read_text()
    for name in SETTINGS:
        assert f"`{name}`" in text, f"{name} has no row in docs/coming-from-celery.md"


def test_refused_rows_are_refused_by_app_conf() -> None:
    from cloudq import ConfigurationError

    for celery, _, status in rows():
        names = [n for n in re.findall(r"`([a-z_]+)`", celery) if n in SETTINGS]
        for name in names:
            target = SETTINGS[name][0]
            if status == "refused":
                assert target is None, name
                app = App("doc", broker="memory://", results="memory://")
                with pytest.raises(ConfigurationError, match=name):
                    app.conf.update({name: "pickle-or-other"})
