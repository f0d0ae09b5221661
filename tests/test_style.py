"""Every Python file is formatted and linted by ruff (settings in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from workflow_repo import REPO


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True)


def test_code_is_formatted():
    result = _ruff("format", "--check", ".")
    assert result.returncode == 0, f"run: ruff format .\n{result.stdout}{result.stderr}"


def test_code_passes_the_linter():
    result = _ruff("check", ".")
    assert result.returncode == 0, f"run: ruff check --fix .\n{result.stdout}{result.stderr}"
