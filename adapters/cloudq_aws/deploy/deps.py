"""The function's dependencies, installed by pip for Lambda's Python and platform, and cached.

Building for the target instead of copying the local install is what makes compiled packages
(pydantic-core) load on the function whatever machine deploys; pinning to the local versions keeps
what ships equal to what was tested. A tree is installed once per (requirements, pins, target) into
the user's cache and reused, so repeated deploys and tests don't download again; it is written to a
scratch folder and renamed into place, so an interrupted install is never used.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CACHE_LAYOUT = 1  # bump when the tree's layout changes, so old entries are not reused
_COMPLETE = ".complete"
_PLATFORMS = {"x86_64": "manylinux2014_x86_64", "arm64": "manylinux2014_aarch64"}
_NO_MATCH = re.compile(r"No matching distribution found for (\S+)")
_OFFLINE = ("NewConnectionError", "Network is unreachable", "Name or service not known", "Temporary failure in name")
PIP_TIMEOUT_S = 600


class DependencyError(LookupError):
    """The function's dependencies cannot be installed for its target (one line saying why)."""


@dataclass(frozen=True, slots=True)
class Target:
    """A Lambda runtime (``python3.13``) and architecture (``x86_64`` | ``arm64``)."""

    runtime: str
    architecture: str

    @property
    def python_version(self) -> str:
        return self.runtime.removeprefix("python")

    @property
    def platform(self) -> str:
        return _PLATFORMS[self.architecture]

    def __str__(self) -> str:
        return f"{self.runtime} on {self.architecture}"


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cloudq" / "lambda-deps"


def cache_key(roots: Sequence[str], pins: Mapping[str, str], target: Target) -> str:
    text = json.dumps(
        {"layout": CACHE_LAYOUT, "roots": sorted(roots), "pins": dict(sorted(pins.items())), "target": str(target)}
    )
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def pip_command(requirements: Sequence[str], constraints: Path, target: Target, into: Path) -> list[str]:
    return [
        sys.executable, "-m", "pip", "install", "--quiet", "--no-input", "--disable-pip-version-check",
        "--no-compile", "--target", str(into),
        "--platform", target.platform, "--implementation", "cp", "--python-version", target.python_version,
        "--only-binary=:all:", "--constraint", str(constraints), *requirements,
    ]  # fmt: skip


def _failure(stderr: str, target: Target) -> DependencyError:
    """One line for a failed pip install: which package has no wheel for the target, or why else."""
    if any(mark in stderr for mark in _OFFLINE):
        return DependencyError(
            f"cannot download the function's dependencies for {target}: the package index is unreachable "
            "(check the network, or PIP_INDEX_URL)"
        )
    missing = _NO_MATCH.search(stderr)
    if missing:
        return DependencyError(
            f"{missing.group(1)} has no wheel for {target} (pip --platform {target.platform} --python-version "
            f"{target.python_version} --only-binary=:all:): pin a version that publishes one, choose another "
            "lambda_runtime / lambda_architecture, or leave the package out of the function"
        )
    errors = [line.strip() for line in stderr.splitlines() if line.startswith("ERROR:")]
    detail = errors[0] if errors else (stderr.strip().splitlines() or ["pip failed"])[-1]
    return DependencyError(f"cannot install the function's dependencies for {target}: {detail}")


def installed_tree(roots: Sequence[str], pins: Mapping[str, str], target: Target) -> Path:
    """A folder holding ``roots`` and their dependencies installed for ``target``; the installed
    version of each is pinned by ``pins``. Reused from the cache when it was installed before."""
    root = cache_root()
    final = root / cache_key(roots, pins, target)
    if (final / _COMPLETE).is_file():
        return final
    root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"{final.name}.", dir=root))
    try:
        constraints = scratch / "constraints.txt"
        constraints.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
        tree = scratch / "tree"
        requirements = [f"{r}=={pins[r]}" if r in pins else r for r in roots]
        try:
            done = subprocess.run(
                pip_command(requirements, constraints, target, tree),
                capture_output=True,
                text=True,
                timeout=PIP_TIMEOUT_S,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise DependencyError(
                f"installing the function's dependencies for {target} took over {PIP_TIMEOUT_S} s: "
                "check the network, or PIP_INDEX_URL"
            ) from None
        if done.returncode != 0:
            raise _failure(done.stderr, target)
        tree.mkdir(exist_ok=True)
        (tree / _COMPLETE).write_text(json.dumps({"roots": list(roots), "pins": dict(pins), "target": str(target)}))
        try:
            tree.rename(final)
        except OSError:  # another deploy finished the same tree first
            if not (final / _COMPLETE).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final
