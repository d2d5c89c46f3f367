"""The Lambda code archive: the app's code, cloudq (with its dist-info), and the dependencies built
for the function's runtime and architecture, as one zip.

Dependencies are installed the way SAM and Chalice do it: ``pip install --platform
manylinux2014_<arch> --implementation cp --python-version X.Y --only-binary=:all: --target DIR``,
pinned to the versions installed here (what ships is what was tested), so compiled packages such
as pydantic-core fit the function, whatever machine deploys. The installed tree is cached, keyed
by the requirements and the target (deps.py). boto3 and its closure are left out because the
Lambda Python runtime provides them. cloudq's own dist-info goes in too, because its entry points
are how ``sqs://`` and ``dynamodb://`` find their adapters. The archive is reproducible: entries
sorted, fixed timestamps and permissions, fixed compression level -- the same code gives the same
bytes, so the same ``CodeSha256``, so a redeploy without code changes updates nothing.
"""

from __future__ import annotations

import base64
import fnmatch
import hashlib
import importlib.util
import io
import re
import tomllib
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import cloudq
from cloudq.deploy.settings import DEFAULT_LAMBDA_ARCHITECTURE, DEFAULT_LAMBDA_RUNTIME

from .deps import Target, installed_tree

LAMBDA_MAX_ZIP_BYTES = 50 * 1024**2  # direct upload (ZipFile); larger archives go through S3
LAMBDA_MAX_UNZIPPED_BYTES = 250 * 1024**2
ENTRY_HANDLER = "cloudq_aws.lambda_entry.handler"
# the Lambda Python runtime ships boto3 and everything it needs
RUNTIME_PROVIDED = frozenset({"boto3", "botocore", "s3transfer", "jmespath", "python-dateutil", "six", "urllib3"})
SHIPPED_MODULES = ("cloudq", "cloudq_aws")  # copied from their source folders, with cloudq's dist-info
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
COMPRESS_LEVEL = 6
_SKIP_DIRS = {"__pycache__", ".git", ".mypy_cache", ".pytest_cache", ".ruff_cache", ".venv", "node_modules"}
_SKIP_SUFFIXES = (".pyc", ".pyo")
_SKIP_DIST_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}  # install-local, not needed to run

DEFAULT_TARGET = Target(DEFAULT_LAMBDA_RUNTIME, DEFAULT_LAMBDA_ARCHITECTURE)


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


@dataclass(frozen=True, slots=True)
class Package:
    data: bytes
    files: int
    unzipped_bytes: int
    target: Target = DEFAULT_TARGET

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


def _tree(root: Path, arc_root: str) -> Iterator[tuple[str, Path | bytes]]:
    """Files under ``root`` (sorted, caches and bytecode skipped) with their archive names."""
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part in _SKIP_DIRS for part in rel.parts) or not path.is_file() or path.name.endswith(_SKIP_SUFFIXES):
            continue
        yield f"{arc_root}/{rel.as_posix()}" if arc_root else rel.as_posix(), path


def _module_files(module: str) -> Iterator[tuple[str, Path | bytes]]:
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
    except ImportError:  # pragma: no cover - packaging is not a dependency of cloudq
        if ";" in text and "extra" in text.split(";", 1)[1]:
            return None
        match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", text)
        return match.group(1) if match else None
    req = Requirement(text)
    if req.marker is not None and not req.marker.evaluate({"extra": ""}):
        return None
    return req.name


def _installed(name: str) -> metadata.Distribution | None:
    try:
        return metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return None


def local_pins(roots: Iterable[str], exclude: frozenset[str] = RUNTIME_PROVIDED) -> dict[str, str]:
    """``name -> version`` of the installed distributions ``roots`` need (themselves included),
    minus ``exclude``: what the function's dependencies are pinned to. Not installed here: not pinned."""
    found: dict[str, str] = {}
    pending = [normalize(r) for r in roots]
    while pending:
        name = pending.pop()
        if name in found or name in exclude:
            continue
        dist = _installed(name)
        if dist is None:
            continue
        found[name] = dist.version
        pending.extend(normalize(r) for r in (_requirement(t) for t in dist.requires or []) if r)
    return dict(sorted(found.items()))


def _distribution_files(dist: metadata.Distribution) -> Iterator[tuple[str, Path | bytes]]:
    name = dist.metadata["Name"]
    files = dist.files
    if not files:
        raise LookupError(f"distribution {name!r} was installed without a file list (RECORD)")
    for f in sorted(files, key=str):
        if (f.parts and f.parts[0] in {"..", "bin"}) or "__pycache__" in f.parts:
            continue  # console scripts (they name the deploying machine's interpreter) and bytecode
        if f.name.endswith(_SKIP_SUFFIXES) or f.name in _SKIP_DIST_FILES:
            continue
        yield f.as_posix(), Path(str(dist.locate_file(f)))


def cloudq_dist_info() -> dict[str, Path | bytes]:
    """``cloudq-<version>.dist-info`` for the archive: the METADATA headers and the entry points
    whose modules ship in it, whether cloudq is installed from a wheel or in editable mode."""
    dist = _installed("cloudq")
    if dist is None:
        raise LookupError(
            "cloudq is not installed in this environment (pip install 'cloudq[aws]'), so its entry "
            "points cannot be packaged"
        )
    folder = f"cloudq-{dist.version}.dist-info"
    headers = (dist.read_text("METADATA") or "").split("\n\n", 1)[0].rstrip("\n") + "\n"
    groups: dict[str, list[str]] = {}
    for ep in sorted(dist.entry_points, key=lambda e: (e.group, e.name)):
        if ep.module.split(".")[0] in SHIPPED_MODULES:
            groups.setdefault(ep.group, []).append(f"{ep.name} = {ep.value}")
    entry_points = "".join(
        f"[{group}]\n" + "".join(f"{line}\n" for line in lines) + "\n" for group, lines in groups.items()
    )
    return {f"{folder}/METADATA": headers.encode(), f"{folder}/entry_points.txt": entry_points.encode()}


def project_requirements(project: Path) -> list[str]:
    """``[project].dependencies`` of the project being deployed, when it has a pyproject.toml."""
    pyproject = project / "pyproject.toml"
    if not pyproject.is_file():
        return []
    data = tomllib.loads(pyproject.read_text())
    names = [_requirement(text) for text in data.get("project", {}).get("dependencies", [])]
    return [n for n in names if n and normalize(n) != "cloudq"]


def function_requirements(project: Path, requirements: Iterable[str] = ()) -> tuple[list[str], dict[str, str]]:
    """What pip installs for the function: cloudq's, the project's and the extra requirements
    (boto3 and its closure left out), and the local versions to pin them and their dependencies to."""
    cloudq_requires = [r for r in (_requirement(t) for t in metadata.requires("cloudq") or []) if r]
    roots = sorted({normalize(r) for r in (*cloudq_requires, *project_requirements(project), *requirements)})
    roots = [r for r in roots if r not in RUNTIME_PROVIDED]
    return roots, local_pins(roots)


def collect(
    app_module: str,
    project: Path,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    requirements: Iterable[str] = (),
    target: Target = DEFAULT_TARGET,
) -> dict[str, Path | bytes]:
    """Archive name -> file (or content): the app's top-level module, extra project files, cloudq +
    cloudq_aws and cloudq's dist-info, and the dependencies built for ``target``."""
    entries: dict[str, Path | bytes] = {}
    roots, pins = function_requirements(project, requirements)
    tree = installed_tree(roots, pins, target)
    for dist in sorted(metadata.distributions(path=[str(tree)]), key=lambda d: normalize(d.metadata["Name"])):
        if normalize(dist.metadata["Name"]) not in RUNTIME_PROVIDED:
            entries.update(_distribution_files(dist))
    entries.update(_module_files(app_module.split(".")[0]))
    for pattern in include:
        for path in sorted(project.glob(pattern)):
            if path.is_file():
                entries.setdefault(path.relative_to(project).as_posix(), path)
    entries.update(_tree(Path(cloudq.__file__).parent, "cloudq"))
    entries.update(_tree(Path(__file__).parents[1], "cloudq_aws"))
    entries.update(cloudq_dist_info())
    skip = list(exclude)
    return {name: path for name, path in entries.items() if not any(fnmatch.fnmatch(name, p) for p in skip)}


def build_zip(entries: dict[str, Path | bytes], target: Target = DEFAULT_TARGET) -> Package:
    """A reproducible zip of ``entries``: sorted names, fixed time, mode and compression."""
    buffer = io.BytesIO()
    unzipped = 0
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as archive:
        for name in sorted(entries):
            source = entries[name]
            data = source if isinstance(source, bytes) else source.read_bytes()
            unzipped += len(data)
            info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3  # unix, so external_attr holds the mode
            info.external_attr = (0o100000 | FILE_MODE) << 16
            archive.writestr(info, data, compresslevel=COMPRESS_LEVEL)
    return Package(buffer.getvalue(), len(entries), unzipped, target)


def package_app(
    app_module: str,
    project: Path,
    include: Iterable[str] = (),
    exclude: Iterable[str] = (),
    requirements: Iterable[str] = (),
    target: Target = DEFAULT_TARGET,
) -> Package:
    return build_zip(collect(app_module, project, include, exclude, requirements, target), target)
