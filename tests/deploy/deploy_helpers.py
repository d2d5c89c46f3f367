"""A throwaway project holding one app module, and the CLI run against it.

Each CLI call imports the app module afresh, so settings read from the environment
(``CLOUDQ_DEPLOY``, ``CLOUDQ_BROKER_OPTIONS``) between calls take effect, as they would in
separate ``cloudq deploy`` runs.
"""

from __future__ import annotations

import itertools
import json
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

from cloudq.cli import main

_ids = itertools.count(1)


@dataclass
class Project:
    path: Path
    module: str

    @classmethod
    def create(cls, path: Path, source: str, stem: str = "deployapp") -> Project:
        module = f"{stem}{next(_ids)}"
        (path / f"{module}.py").write_text(textwrap.dedent(source))
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
        return cls(path, module)

    @property
    def app_path(self) -> str:
        return f"{self.module}:app"

    def load(self) -> Any:
        sys.modules.pop(self.module, None)
        return __import__(self.module).app

    def run(self, *args: str, ok: bool = True) -> Result:
        sys.modules.pop(self.module, None)
        result = CliRunner().invoke(main, [args[0], "-A", self.app_path, *args[1:]])
        if ok:
            assert result.exit_code == 0, f"{result.output}\n{result.exception!r}"
        return result

    def run_json(self, *args: str) -> dict[str, Any]:
        result = self.run(*args, "--json")
        return json.loads(result.stdout)  # type: ignore[no-any-return]


def mask_archive(text: str) -> str:
    """The function archive line changes with cloudq's own code: keep its target and shape only."""
    return re.sub(r"Function code: (\S+ on \S+) \(.*\), (.*)", r"Function code: \1 (<archive>), \2", text)
