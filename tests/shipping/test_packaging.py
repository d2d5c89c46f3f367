"""What the package and the repository declare about themselves: one version, the license file that
``license = "Apache-2.0"`` promises, a moto floor that starts MotoServer, a pre-commit mypy hook that
covers what mypy checks, and documented ``cloudq`` command lines the CLI accepts."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import click
import pytest
import yaml
from shipping_helpers import ROOT, clean_environment, run

import cloudq

pytestmark = pytest.mark.slow

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCS = [ROOT / "README.md", *sorted((ROOT / "examples").glob("*/README.md"))]


def test_version_is_written_once_and_the_wheel_carries_it_and_the_license(built_wheel: Path) -> None:
    project = PYPROJECT["project"]
    assert "version" not in project and "version" in project.get("dynamic", [])
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "cloudq/__init__.py"
    with zipfile.ZipFile(built_wheel) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        licenses = [n for n in names if "/licenses/" in n]
        assert licenses, names
        license_text = wheel.read(licenses[0]).decode()
    assert f"\nVersion: {cloudq.__version__}\n" in metadata
    assert "License-Expression: Apache-2.0" in metadata
    assert "Apache License" in license_text and "Version 2.0, January 2004" in license_text
    assert "## [Unreleased]" in (ROOT / "CHANGELOG.md").read_text()


def test_pre_commit_mypy_hook_runs_on_every_file_mypy_checks() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    (hook,) = [h for repo in config["repos"] for h in repo["hooks"] if h["id"] == "mypy"]
    files = re.compile(hook.get("files", ""))
    for folder in PYPROJECT["tool"]["mypy"]["files"]:
        module = next((ROOT / folder).rglob("*.py")).relative_to(ROOT).as_posix()
        assert files.search(module), f"the mypy hook does not run when {module} changes (files: {files.pattern})"


def _moto_floor() -> str:
    (spec,) = [d for d in PYPROJECT["project"]["optional-dependencies"]["moto"] if d.startswith("moto[server]")]
    found = re.search(r">=\s*([\d.]+)", spec)
    assert found, spec
    return found.group(1)


def test_moto_floor_starts_moto_server(tmp_path: Path) -> None:
    """moto at the declared floor (its other dependencies from this venv) serves MotoServer."""
    floor = _moto_floor()
    target = tmp_path / "moto"
    run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(target), f"moto=={floor}"])
    check = (
        "import moto, boto3, os\n"
        "from cloudq_aws.testing import MotoServer\n"
        "with MotoServer() as server:\n"
        "    os.environ.update(server.environment())\n"
        "    sqs = boto3.client('sqs')\n"
        "    url = sqs.create_queue(QueueName='floor')['QueueUrl']\n"
        "    sqs.send_message(QueueUrl=url, MessageBody='x')\n"
        "    print(moto.__version__, len(sqs.receive_message(QueueUrl=url)['Messages']))\n"
    )
    out = run([sys.executable, "-c", check], env=clean_environment(PYTHONPATH=str(target), PATH=""), timeout=120)
    assert out.split()[-2:] == [floor, "1"], out


def documented_command_lines() -> list[tuple[str, str]]:
    """The ``cloudq ...`` invocations in the README and the examples' READMEs -- lines of ```bash
    blocks, and inline code that names an app with -A -- as (file, line), with [optional] parts and
    comments dropped, continuations joined."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        lines = [
            line
            for block in re.findall(r"```bash\n(.*?)```", text, re.S)
            for line in block.replace("\\\n", " ").splitlines()
            if line.strip().startswith("cloudq ")
        ]
        lines += [span for span in re.findall(r"`(cloudq [^`]+)`", text) if " -A " in span]
        for line in lines:
            line = re.sub(r"\s\[-[^\]]*\]", "", line.split(" #")[0].split(" > ")[0]).strip()
            found.append((doc.relative_to(ROOT).as_posix(), line))
    return found


@pytest.mark.parametrize(("doc", "line"), documented_command_lines())
def test_documented_command_line_parses(doc: str, line: str) -> None:
    """The CLI accepts each documented command line's arguments (parsed by click, nothing run), and
    ``cloudq send`` names the task as messages carry it: the -A module, a dot, the function."""
    from cloudq.cli import main

    words = shlex.split(line)[1:]
    try:
        with main.make_context("cloudq", list(words)) as group:
            name, command, rest = main.resolve_command(group, list(words))  # the group takes no options of its own
            assert command is not None
            command.make_context(name or "", rest, parent=group)
    except click.UsageError as exc:
        pytest.fail(f"{doc}: `{line}`: {exc.format_message()}")
    if words[0] == "send":
        task, module = words[1], words[words.index("-A") + 1].split(":")[0]
        assert task.startswith(module + "."), f"{doc}: `{line}`: the task is named {module}.<function>"


def test_docs_stand_on_their_own() -> None:
    """No file refers to documents that are not in the repository."""
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    missing = []
    for relative in listed.split():
        path = ROOT / relative
        if path.suffix in (".md", ".py", ".toml", ".sh", ".yaml", ".yml") and path.is_file():
            for name in set(re.findall(r"\b([A-Z][A-Z_]+\.md)\b", path.read_text(errors="replace"))):
                if not (ROOT / name).exists() and not (path.parent / name).exists():
                    missing.append(f"{relative} -> {name}")
    assert missing == []
