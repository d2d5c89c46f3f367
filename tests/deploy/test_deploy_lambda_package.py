"""The Lambda archive's contents: cloudq's dist-info (its entry points find the AWS adapters),
dependencies built by pip for the function's runtime and architecture and pinned to the local
versions, one clear line when a dependency has no wheel for the target, and a cached dependency
tree that gives the same bytes on every build."""

from __future__ import annotations

import io
import os
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from cloudq_aws.deploy.deps import Target
from cloudq_aws.deploy.packaging import package_app
from cloudq_aws.testing import MotoServer
from deploy_helpers import Project

pytestmark = [pytest.mark.aws, pytest.mark.timeout(300)]

APP = """
from cloudq import App

app = App("pkg", broker="sqs://?prefix=pkg-", results="dynamodb://pkg-results")


@app.task()
def add(a: int, b: int) -> int:
    return a + b
"""

LAMBDA_APP = """
from cloudq import App

app = App(
    "pkg",
    broker="sqs://?prefix=pkg-",
    results="dynamodb://pkg-results",
    deploy={"queues": {"default": {"runtime": "lambda"}}, "package": {"requirements": ["cloudq-test-nowheel"]}},
)


@app.task()
def add(a: int, b: int) -> int:
    return a + b
"""


def names(data: bytes) -> list[str]:
    return zipfile.ZipFile(io.BytesIO(data)).namelist()


def test_archive_carries_cloudq_dist_info_so_entry_points_find_the_aws_adapters(tmp_path: Path) -> None:
    p = Project.create(tmp_path, APP)
    package = package_app(p.module, tmp_path)
    unzipped = tmp_path / "function"
    zipfile.ZipFile(io.BytesIO(package.data)).extractall(unzipped)
    version = metadata.version("cloudq")
    info = unzipped / f"cloudq-{version}.dist-info"
    assert (info / "METADATA").read_text().startswith("Metadata-Version:")
    [dist] = [d for d in metadata.distributions(path=[str(unzipped)]) if d.metadata["Name"] == "cloudq"]
    assert dist.version == version
    found = {(ep.group, ep.name): ep.value for ep in dist.entry_points}
    assert found[("cloudq.brokers", "sqs")] == "cloudq_aws.sqs:SQSBroker.from_url"
    assert found[("cloudq.results", "dynamodb")] == "cloudq_aws.dynamodb:DynamoDBResultStore.from_url"
    assert found[("cloudq.runtimes", "lambda")] == "cloudq_aws.lambda_.handler:make_handler"
    # only entry points whose code ships: no cloudq_gcp in a Lambda archive
    assert not [value for value in found.values() if value.startswith("cloudq_gcp")]


@pytest.mark.parametrize(
    ("runtime", "architecture", "extension"),
    [
        ("python3.12", "arm64", "cpython-312-aarch64-linux-gnu.so"),
        ("python3.13", "x86_64", "cpython-313-x86_64-linux-gnu.so"),
    ],
)
def test_dependencies_are_built_for_the_target_at_the_local_versions(
    tmp_path: Path, runtime: str, architecture: str, extension: str
) -> None:
    p = Project.create(tmp_path, APP)
    package = package_app(p.module, tmp_path, target=Target(runtime, architecture))
    listed = names(package.data)
    compiled = [n for n in listed if n.endswith(".so")]
    assert compiled and all(n.endswith(extension) for n in compiled), compiled
    for dist in ("pydantic", "pydantic_core", "click"):
        assert f"{dist}-{metadata.version(dist)}.dist-info/METADATA" in listed
    assert not [n for n in listed if n.split("/")[0].split("-")[0] in {"boto3", "botocore", "s3transfer", "urllib3"}]
    assert package.target == Target(runtime, architecture)


def test_a_dependency_without_a_wheel_for_the_target_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, aws: MotoServer
) -> None:
    links = tmp_path / "links"
    links.mkdir()
    # it exists, but only as an sdist and as a wheel for another platform
    (links / "cloudq_test_nowheel-1.0.tar.gz").write_bytes(b"")
    (links / "cloudq_test_nowheel-1.0-cp313-cp313-macosx_11_0_arm64.whl").write_bytes(b"")
    monkeypatch.setenv("PIP_FIND_LINKS", " ".join(filter(None, [os.environ.get("PIP_FIND_LINKS"), str(links)])))
    p = Project.create(tmp_path, LAMBDA_APP)
    refused = p.run("deploy", "--dry-run", ok=False)
    assert refused.exit_code == 1
    assert "Traceback" not in refused.output
    [line] = [line for line in refused.output.splitlines() if "cloudq-test-nowheel" in line]
    assert "cannot package the function code: cloudq-test-nowheel has no wheel for python3.13 on x86_64" in line
    assert "--platform manylinux2014_x86_64 --python-version 3.13" in line


def test_the_dependency_tree_is_cached_and_the_archive_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = Project.create(tmp_path, APP)
    pip_cache = os.environ.get("PIP_CACHE_DIR") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "pip"
    )
    monkeypatch.setenv("PIP_CACHE_DIR", pip_cache)  # pip keeps its own download cache
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-a"))
    first = package_app(p.module, tmp_path, target=Target("python3.12", "x86_64"))
    assert list((tmp_path / "cache-a" / "cloudq" / "lambda-deps").iterdir())
    # pip cannot install anything now: a second build must come from the cache alone
    links = os.environ.get("PIP_FIND_LINKS")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "nothing-here"))
    again = package_app(p.module, tmp_path, target=Target("python3.12", "x86_64"))
    assert again.data == first.data
    # a fresh install into another cache gives the same bytes, so the same CodeSha256
    monkeypatch.delenv("PIP_NO_INDEX")
    if links is None:
        monkeypatch.delenv("PIP_FIND_LINKS")
    else:
        monkeypatch.setenv("PIP_FIND_LINKS", links)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache-b"))
    fresh = package_app(p.module, tmp_path, target=Target("python3.12", "x86_64"))
    assert fresh.sha256 == first.sha256
