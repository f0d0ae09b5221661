"""A throw-away copy of this repository, as a git checkout, for running Snakemake and DVC on it."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

# The tiny workflow config (.test/config.yaml, the snakemake-workflows place for it): the test-size
# data and training, two make_cams shards so the gather path runs too, one-epoch IRN.
TINY_PARAMS = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "pixsup tests",
    "GIT_AUTHOR_EMAIL": "tests@pixsup.invalid",
    "GIT_COMMITTER_NAME": "pixsup tests",
    "GIT_COMMITTER_EMAIL": "tests@pixsup.invalid",
}


def tool_env() -> dict[str, str]:
    """The environment for snakemake/dvc: this interpreter's bin first, so rules' `python` is ours."""
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(GIT_IDENTITY, DVC_NO_ANALYTICS="1", PYTHONUNBUFFERED="1")
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, cwd=cwd, env=tool_env(), capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}"
            f"\n--- stderr\n{result.stderr[-6000:]}"
        )
    return result


def merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` merged in, section by section."""
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        out[key] = merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def copy_repo(dest: Path, params: dict | None = None) -> Path:
    """Copy the repository's files (tracked and new, not ignored) to ``dest`` and commit them there.

    params.yaml becomes the repository's own with ``params`` (default: the tiny
    config) merged in; DVC reads ``data.root`` and ``data.dataset`` from it.
    """
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if not source.exists() and not source.is_symlink():
            continue  # deleted in the working tree, not yet committed
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(os.readlink(source))
        else:
            shutil.copy2(source, target)
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    (dest / "params.yaml").write_text(
        yaml.safe_dump(merged(base, TINY_PARAMS if params is None else params), sort_keys=False)
    )
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-q", "-m", "test checkout"]):
        run(cmd, dest)
    return dest


def copy_finished_run(source: Path, dest: Path) -> Path:
    """A copy of a repository with a finished run (results, data, Snakemake's records), times kept, so
    that Snakemake and DVC find it as finished as the original."""
    shutil.copytree(source, dest, symlinks=True)
    return dest


def jobs_by_rule(snakemake_output: str) -> dict[str, int]:
    """The 'Job stats' table that Snakemake prints before a (dry) run, as {rule: count}."""
    counts = {}
    for line in snakemake_output.splitlines():
        match = re.match(r"^(\w+)\s+(\d+)$", line.strip())
        if match and match.group(1) != "total":
            counts[match.group(1)] = int(match.group(2))
    return counts
