"""The Lambda code archive: the app's code, cloudq, and the installed dependencies, as one zip.

Dependencies are copied from the environment ``cloudq deploy`` runs in (each distribution's
RECORD), so packaging needs no network and matches what was tested; boto3 and its closure are
left out because the Lambda Python runtime provides them. The archive is reproducible: entries
sorted, fixed timestamps and permissions, fixed compression level -- the same code gives the same
bytes, so the same ``CodeSha256``, so a redeploy without code changes updates nothing.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import importlib.util
import io
import platform
import re
import sys
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cloudq

LAMBDA_MAX_ZIP_BYTES = 50 * 1024**2  # direct upload (ZipFile); larger archives go through S3
LAMBDA_MAX_UNZIPPED_BYTES = 250 * 1024**2
LAMBDA_PYTHON_VERSIONS = ((3, 9), (3, 10), (3, 11), (3, 12), (3, 13))
ENTRY_HANDLER = "cloudq_aws.lambda_entry.handler"
# the Lambda Python runtime ships boto3 and everything it needs
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"})
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
COMPRESS_LEVEL = 6
_SKIP_DIRS = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".venv", "node_modules"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
_SKIP_DIST_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}  # install-local, not needed to run


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lambda_runtime() -> str:
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def lambda_architecture() -> str:
    return "arm64" if platform.machine().lower() in {"aarch64", "arm64"} else "x86_64"


def platform_problems() -> list[str]:
    """Copied dependencies (compiled ones like pydantic-core) only run on Lambda when built for it."""
    problems = []
    if not sys.platform.startswith("linux"):
        problems.append(
            f"Lambda packaging copies the installed dependencies, and this machine runs {sys.platform}: "
            "run `cloudq deploy` on Linux (e.g. in CI or a python:3 container) so compiled packages fit Lambda"
        )
    if sys.version_info[:2] not in LAMBDA_PYTHON_VERSIONS:
        supported = ", ".join(f"{a}.{b}" for a, b in LAMBDA_PYTHON_VERSIONS)
        problems.append(
            f"Lambda has no Python {sys.version_info.major}.{sys.version_info.minor} runtime (it has {supported}): "
            "run `cloudq deploy` with one of those"
        )
    return problems


@dataclass(frozen=True, slots=True)
class Package:
    data: bytes
    files: int
    unzipped_bytes: int

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        """Lambda's CodeSha256: base64 of the archive's SHA-256."""
        return base64.b64encode(hashlib.sha256(self.data).digest()).decode()

    def problems(self) -> list[str]:
        out = []
        if self.size > LAMBDA_MAX_ZIP_BYTES:
            out.append(
                f"the function archive is {self.size / 1e6:.1f} MB, above Lambda's {LAMBDA_MAX_ZIP_BYTES // 1024**2} MiB "
                "direct upload: leave large packages out with [tool.cloudq.deploy.package] exclude = [...]"
            )
        if self.unzipped_bytes > LAMBDA_MAX_UNZIPPED_BYTES:
            out.append(
                f"the function code is {self.unzipped_bytes / 1e6:.0f} MB unzipped, above Lambda's "
                f"{LAMBDA_MAX_UNZIPPED_BYTES // 1024**2} MiB: trim requirements or use a container image"
            )
        return out


def _tree(root: Path, arc_root: str) -> Iterator[tuple[str, Path]]:
    """Files under ``root`` (sorted, caches and bytecode skipped) with their archive names."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS for part in rel.parts) or not path.is_file() or path.name.endswith(_SKIP_SUFFIXES):
            continue
        yield f"{arc_root}/{rel.as_posix()}" if arc_root else rel.as_posix(), path


def _module_files(module: str) -> Iterator[tuple[str, Path]]:
    """The files of a top-level module or package, as it would be imported."""
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin in (None, "built-in", "frozen"):
        raise LookupError(f"cannot find the files of module {module!r}")
    if spec.submodule_search_locations:
        yield from _tree(Path(next(iter(spec.submodule_search_locations))), module)
    else:
        origin = Path(spec.origin)
        yield origin.name, origin


def _requirement(text: str) -> str | None:
    """The distribution a requirement names, or None when its marker excludes it here."""
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pragma: no cover - packaging is nearly always installed
        if ";" in text and "extra" in text.split(";", 1)[1]:
            return None
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", text)
        return match.group(1) if match else None
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        return None
    return req.name


def dependency_closure(roots: Iterable[str], exclude: frozenset[str] = RUNTIME_PROVIDED) -> list[metadata.Distribution]:
    """Installed distributions ``roots`` need (themselves included), minus ``exclude``; sorted by name."""
    found: dict[str, metadata.Distribution] = {}
    pending = [normalize(r) for r in roots]
    while pending:
        name = pending.pop()
        if name in found or name in exclude:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            raise LookupError(
                f"distribution {name!r} is required but not installed here: pip install it before deploying"
            ) from None
        found[name] = dist
        pending.extend(normalize(r) for r in (_requirement(t) for t in dist.requires or []) if r)
    return [found[name] for name in sorted(found)]


def _distribution_files(dist: metadata.Distribution) -> Iterator[tuple[str, Path]]:
    name = dist.metadata["Name"]
    files = dist.files
    if not files:
        raise LookupError(f"distribution {name!r} was installed without a file list (RECORD): reinstall it with pip")
    usable = [f for f in files if not f.parts or f.parts[0] != ".."]
    if not any(f.suffix in {".py", ".so", ".pyd"} for f in usable):
        raise LookupError(
            f"distribution {name!r} is installed in editable/development mode, so its code is elsewhere: "
            "install it normally (pip install .) or add its folder to [tool.cloudq.deploy.package] include"
        )
    for f in sorted(usable, key=str):
        if "__pycache__" in f.parts or f.name.endswith(_SKIP_SUFFIXES) or f.name in _SKIP_DIST_FILES:
            continue
        yield f.as_posix(), Path(str(dist.locate_file(f)))


def project_requirements(project: Path) -> list[str]:
    """``[project].dependencies`` of the project being deployed, when it has a pyproject.toml."""
    pyproject = project / "pyproject.toml"
    if not pyproject.is_file():
        return []
    data = tomllib.loads(pyproject.read_text())
    names = [_requirement(text) for text in data.get("project", {}).get("dependencies", [])]
    return [n for n in names if n and normalize(n) != "cloudq"]


def collect(
    app_module: str,
    project: Path,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    requirements: Iterable[str] = (),
) -> dict[str, Path]:
    """Archive name -> file: the app's top-level module, extra project files, cloudq + cloudq_aws,
    and the dependencies of cloudq, the project and ``requirements``."""
    entries: dict[str, Path] = {}
    top = app_module.split(".")[0]
    entries.update(_module_files(top))
    for pattern in include:
        for path in sorted(project.glob(pattern)):
            if path.is_file():
                entries.setdefault(path.relative_to(project).as_posix(), path)
    entries.update(_tree(Path(cloudq.__file__).parent, "cloudq"))
    entries.update(_tree(Path(__file__).parent, "cloudq_aws"))
    cloudq_requires = [r for r in (_requirement(t) for t in metadata.distribution("cloudq").requires or []) if r]
    roots = [*cloudq_requires, *project_requirements(project), *requirements]
    for dist in dependency_closure(roots):
        entries.update(_distribution_files(dist))
    skip = list(exclude)
    return {name: path for name, path in entries.items() if not any(fnmatch.fnmatch(name, p) for p in skip)}


def build_zip(entries: dict[str, Path]) -> Package:
    """A reproducible zip of ``entries``: sorted names, fixed time, mode and compression."""
    buffer = io.BytesIO()
    unzipped = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as archive:
        for name in sorted(entries):
            data = entries[name].read_bytes()
            unzipped += len(data)
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr holds the mode
            info.external_attr = (0o100000 | FILE_MODE) << 16
            archive.writestr(info, data, compresslevel=COMPRESS_LEVEL)
    return Package(buffer.getvalue(), len(entries), unzipped)


def package_app(
    app_module: str,
    project: Path,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    requirements: Iterable[str] = (),
) -> Package:
    return build_zip(collect(app_module, project, include, exclude, requirements))
