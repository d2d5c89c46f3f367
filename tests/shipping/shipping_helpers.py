"""Shared pieces of the shipping tests: reading the Cloud Run Dockerfile, the build context that
``docker build`` would send, fresh virtual environments, and subprocesses whose output is shown when
they fail.

The Dockerfile is read, not re-stated: the tests copy what its COPY lines copy, set what its ENV lines
set and run its CMD, so a change to the image is a change to what the tests run.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from docker.utils.build import exclude_paths

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "examples" / "cloud_run" / "Dockerfile"


@dataclass
class Stage:
    """One FROM ... stage of a Dockerfile: its base image, name and (KEYWORD, rest of line) steps."""

    base: str
    name: str | None
    steps: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for key, rest in self.steps if key == keyword]

    def copies(self) -> list[tuple[list[str], str]]:
        """The COPY steps that read the build context (not ``--from``): (sources, destination)."""
        out = []
        for rest in self.all("COPY"):
            words = shlex.split(rest)
            if any(w.startswith("--from") for w in words):
                continue
            words = [w for w in words if not w.startswith("--")]
            out.append((words[:-1], words[-1]))
        return out

    def env(self) -> dict[str, str]:
        """The ENV steps' KEY=VALUE pairs."""
        pairs: dict[str, str] = {}
        for rest in self.all("ENV"):
            for word in shlex.split(rest):
                key, _, value = word.partition("=")
                pairs[key] = value
        return pairs

    def python_version(self) -> str:
        """X.Y of a ``python:X.Y-...`` base image."""
        tag = self.base.split(":", 1)[1]
        return ".".join(tag.split("-")[0].split(".")[:2])


def stages(dockerfile: Path = DOCKERFILE) -> list[Stage]:
    """Parse a Dockerfile into its stages (comments dropped, continuation lines joined)."""
    logical: list[str] = []
    pending = ""
    for raw in dockerfile.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    out: list[Stage] = []
    for line in logical:
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = rest.split()
            out.append(Stage(words[0], words[2] if len(words) > 2 and words[1].upper() == "AS" else None))
        else:
            out[-1].steps.append((keyword, rest.strip()))
    return out


def build_context(root: Path, dockerfile: Path = DOCKERFILE) -> list[str]:
    """The files ``docker build -f DOCKERFILE ROOT`` sends, after ROOT/.dockerignore (docker-py's
    implementation of Docker's matching rules), as sorted relative paths."""
    ignore = root / ".dockerignore"
    patterns = []
    if ignore.is_file():
        patterns = [line.strip() for line in ignore.read_text().splitlines()]
        patterns = [p for p in patterns if p and not p.startswith("#")]
    found = exclude_paths(str(root), patterns, dockerfile=str(dockerfile.relative_to(root)))
    return sorted(p for p in found if (root / p).is_file())


def run(argv: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 600) -> str:
    """Run a command; return its output, or fail the test showing it."""
    done = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"{shlex.join(argv)} exited {done.returncode}:\n{output[-6000:]}"
    return output


def clean_environment(**extra: str) -> dict[str, str]:
    """os.environ without the developer's virtualenv, PYTHONPATH and CLOUDQ_* settings, plus ``extra``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME") and not k.startswith("CLOUDQ_")
    }
    venv_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
    env.update(extra)
    return env


def base_python(version: str | None = None) -> Path | None:
    """A base (non-venv) interpreter of ``version`` X.Y (default: this one's): this interpreter's base
    when it matches, else a pyenv one; None when the machine has none."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if version in (None, here):
        base = Path(sys.base_prefix) / "bin" / f"python{here}"
        return base if base.exists() else Path(sys.executable)
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for candidate in sorted(pyenv.glob(f"{version}.*"), reverse=True):
        python = candidate / "bin" / f"python{version}"
        if python.exists():
            return python
    return None


def make_venv(where: Path, python: Path) -> Path:
    """A fresh virtual environment (pip included) made by ``python``; returns its bin folder."""
    run([str(python), "-m", "venv", "--clear", str(where)])
    return where / "bin"


def copy_step(
    root: Path, context: list[str], sources: list[str], dest: str, workdir: Path, image_root: Path | None = None
) -> None:
    """Do what ``COPY SOURCES DEST`` does in an image whose WORKDIR is ``workdir``, reading only the
    files in ``context`` (the build context): a folder's contents go into DEST; files go into DEST
    when it is a folder (ends with /, exists, or several sources), else become DEST. An absolute DEST
    is under ``image_root`` (default: ``workdir``), never on this machine's own file system."""
    workdir.mkdir(parents=True, exist_ok=True)  # WORKDIR creates it
    target = (image_root or workdir) / dest.lstrip("/") if dest.startswith("/") else workdir / dest
    for source in sources:
        prefix = "" if source.strip("./") == "" else source.rstrip("/") + "/"
        inside = [p for p in context if p == source or p.startswith(prefix)]
        assert inside, f"COPY {source}: not in the build context (.dockerignore leaves it out?)"
        if (root / source).is_dir():
            for path in inside:
                out = target / path[len(prefix) :]
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(root / path, out)
        elif dest.endswith("/") or len(sources) > 1 or target.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / source, target / Path(source).name)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(root / source, target)
