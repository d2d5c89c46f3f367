"""The core stays provider-neutral and light to import."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import cloudq

CORE = Path(cloudq.__file__).parent
FORBIDDEN = ("boto3", "botocore", "aiobotocore", "google", "cloudq_aws", "cloudq_gcp")


def _imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", sorted(CORE.rglob("*.py")), ids=lambda p: str(p.relative_to(CORE)))
def test_core_module_imports_no_provider_sdk(path):
    offending = [name for name in _imported_modules(path) if name.split(".")[0] in FORBIDDEN]
    assert offending == [], f"{path} imports {offending}: the core must stay provider-neutral"


def test_the_scan_catches_a_provider_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from google.cloud import pubsub_v1\n    import boto3\n")
    assert _imported_modules(bad) == ["google.cloud", "boto3"]


def _top_level_modules(code: str) -> set[str]:
    script = f"import sys, json\n{code}\nprint(json.dumps(sorted(m for m in sys.modules if '.' not in m)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    return set(json.loads(out))


def test_import_cloudq_loads_no_heavy_dependency():
    # a bare interpreter may already hold some (namespace-package .pth files create ``google``)
    loaded = _top_level_modules("import cloudq") - _top_level_modules("pass")
    heavy = {"pydantic", "click", "boto3", "botocore", "google", "sqlite3", "asyncio", "uuid"} & loaded
    assert heavy == set(), f"import cloudq pulled in {heavy}"
