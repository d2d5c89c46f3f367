"""README command 1 and then each example, as a new user runs them: in a fresh ``git clone`` of this
checkout's HEAD (its own .venv, made by the command itself), with the commands read from the docs.

Each example's README has a bash block under "## Run it locally" that starts after command 1. It is
run twice: first without its ``pip install`` lines (what command 1 alone leaves), which must end in
one line naming the missing package and the pip command, then in full, whose output is checked.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from cloudq_gcp.testing import EmulatorMissing, command
from shipping_helpers import ROOT, clean_environment, run

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

# what each example prints when it ran (fragments of its output)
EXPECTED = {
    "aws_lambda": [
        "sent 8 tasks",
        "SUCCESS  'charged 1999 cents for order-1'",
        "FAILURE  ValueError: order order-2: nothing to charge (0 cents)",
        "SUCCESS  'report for 2026-11-24'",
        "dead letter",
    ],
    "cloud_run": [
        "now pushes to http://127.0.0.1:",
        "'hello-world'",
        "'creme-brulee-recipes'",
        "'notified user 7: your export is ready'",
        "Reject: user -1 does not exist",
    ],
}


def bash_blocks(markdown: str, heading: str) -> list[str]:
    """The ```bash blocks of the section whose heading starts with ``heading`` (up to the next heading
    of its level)."""
    level = heading.split(" ")[0]
    found = re.search(rf"^{re.escape(heading)}.*\n", markdown, re.M)
    assert found, f"no {heading!r} section"
    rest = markdown[found.end() :]
    end = re.search(rf"^{level} ", rest, re.M)
    section = rest[: end.start()] if end else rest
    return re.findall(r"```bash\n(.*?)```", section, re.S)


def readme_command(clone: Path, number: int) -> str:
    """README command NUMBER from "## The two commands" (the non-comment lines of its block)."""
    (block,) = bash_blocks((clone / "README.md").read_text(), "## The two commands")
    commands = [line for line in block.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return commands[number - 1]


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("fresh") / "cloudq"
    run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(dest)])
    return dest


@pytest.fixture(scope="module")
def after_command_1(clone: Path) -> str:
    """README command 1, as written, in the clone: its output."""
    return run(["bash", "-c", readme_command(clone, 1)], cwd=clone, env=clean_environment(), timeout=600)


def test_readme_command_1_in_a_fresh_clone_runs_the_quickstart(after_command_1: str) -> None:
    assert "enqueued 12 tasks; starting a worker in burst mode" in after_command_1
    assert after_command_1.count(" SUCCESS ") == 12, after_command_1
    assert "'fetched https://example.com/data.json on attempt 2'" in after_command_1


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_example_runs_as_its_readme_says_after_command_1(
    example: str, clone: Path, after_command_1: str, gcloud_sdk: Path | None
) -> None:
    (block,) = bash_blocks((clone / "examples" / example / "README.md").read_text(), "## Run it locally")
    env = clean_environment()
    without_installs = "\n".join(line for line in block.splitlines() if not line.lstrip().startswith("pip install"))
    bare = subprocess.run(["bash", "-e", "-c", without_installs], cwd=clone, env=env, capture_output=True, text=True)
    complaint = bare.stderr.strip()
    assert bare.returncode == 1, bare.stdout + bare.stderr
    assert "Traceback" not in complaint and len(complaint.splitlines()) == 1, complaint
    assert "pip install -e '.[" in complaint, complaint

    if example == "cloud_run":
        try:
            command("pubsub", 0, gcloud_sdk) and command("firestore", 0, gcloud_sdk)
        except EmulatorMissing as exc:
            pytest.skip(f"the Cloud Run example needs Google's emulators: {exc}")
    output = run(["bash", "-e", "-c", block], cwd=clone, env=env, timeout=600)
    for fragment in EXPECTED[example]:
        assert fragment in output, f"{fragment!r} not in the output of examples/{example}:\n{output[-4000:]}"
