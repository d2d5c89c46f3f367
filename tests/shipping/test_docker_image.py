"""The Cloud Run image's build context: the files ``docker build -f examples/cloud_run/Dockerfile .``
sends from the checkout's root after ``.dockerignore`` (computed with docker-py's implementation of
Docker's matching; no engine is needed). After either README command the checkout also holds a
``.venv`` of hundreds of MB, ``.git``, SQLite files and caches: none of it may reach the context or
the image, and the image installs cloudq from a wheel, not from the checkout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from shipping_helpers import ROOT, build_context, copy_step, run, stages

pytestmark = pytest.mark.slow

CONTEXT_LIMIT_BYTES = 2_000_000  # the sources are ~0.7 MB; a venv or a .git is far above
# what README commands 1 and 2 (and a wheel build, an editor, mypy) leave in a checkout: path -> bytes
LEFT_BY_USE = {
    ".venv/lib/python3.11/site-packages/pydantic_core/_pydantic_core.so": 4_000_000,
    ".venv/bin/python": 10_000,
    ".git/objects/pack/pack-1.pack": 3_000_000,
    "cloudq.db": 200_000,
    "cloudq.db-wal": 200_000,
    "examples/quickstart/cloudq.db": 200_000,
    "examples/cloud_run/cloudq.db-shm": 30_000,
    "cloudq/__pycache__/app.cpython-311.pyc": 20_000,
    "adapters/cloudq_gcp/__pycache__/pubsub.cpython-311.pyc": 20_000,
    ".mypy_cache/3.11/cloudq/app.data.json": 50_000,
    ".pytest_cache/v/cache/nodeids": 1_000,
    "dist/cloudq-0.1.0-py3-none-any.whl": 300_000,
    "build/lib/cloudq/app.py": 30_000,
    "tests/core/test_app.py": 1_000,
}


@pytest.fixture(scope="module")
def used_checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the checkout's files as they would be committed (tracked and new, not git-ignored),
    plus what using the checkout leaves beside them (LEFT_BY_USE)."""
    dest = tmp_path_factory.mktemp("checkout")
    listed = run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    for relative in filter(None, listed.split("\0")):
        source = ROOT / relative
        if source.is_file():
            (dest / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / relative)
    for relative, size in LEFT_BY_USE.items():
        (dest / relative).parent.mkdir(parents=True, exist_ok=True)
        (dest / relative).write_bytes(b"\0" * size)
    return dest


def _size(root: Path, files: list[str]) -> int:
    return sum((root / f).stat().st_size for f in files)


def test_used_checkout_sends_none_of_what_use_leaves(used_checkout: Path) -> None:
    context = build_context(used_checkout, used_checkout / "examples" / "cloud_run" / "Dockerfile")
    leaked = sorted(set(LEFT_BY_USE) & set(context))
    assert leaked == [], f"in the build context: {leaked}"
    assert _size(used_checkout, context) < CONTEXT_LIMIT_BYTES
    assert "examples/cloud_run/main.py" in context


def test_this_checkout_build_context_stays_small_and_holds_every_copy_source(tmp_path: Path) -> None:
    """The real checkout as it is now (its .venv, .git and databases included on disk)."""
    context = build_context(ROOT)
    size = _size(ROOT, context)
    assert size < CONTEXT_LIMIT_BYTES, f"build context is {size / 1e6:.1f} MB: {context[:20]}"
    assert not [f for f in context if f.startswith((".venv/", ".git/")) or f.endswith(".db")]
    for number, stage in enumerate(stages()):
        for sources, dest in stage.copies():
            copy_step(ROOT, context, sources, dest, tmp_path / str(number))  # asserts each source is there


def test_image_installs_cloudq_from_a_wheel_not_the_checkout() -> None:
    *build, final = stages()
    assert build, "the Dockerfile should build the wheel in a stage of its own"
    copied = [source for sources, _ in final.copies() for source in sources]
    assert copied == ["examples/cloud_run/main.py"], f"the service stage copies {copied} from the checkout"
    installs = " ".join(final.all("RUN"))
    assert ".whl" in installs and "[gcp]" in installs and "gunicorn" in installs
    assert any("--from=" in rest for rest in final.all("COPY"))
