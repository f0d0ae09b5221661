"""The code a step runs: its module and every ``pixsup`` module it imports, found without importing them.

Snakemake takes these files as inputs of the step's rule and DVC as deps of its stage, so
an edit to any of them reruns that step and what follows, and nothing before it. The
imports are read from the source (``ast``), so nothing here needs torch and the workflow
parses fast. Every import counts, at the top of a module or inside a function; the
``__init__.py`` of each package on the way is imported too, so it counts as well. Files
other than Python that sit beside an imported module (``report/peers.yaml``) are read by
it and count as well.

A comment-only or docstring-only edit reruns the step too: the files are compared, not
their meaning (``docs/workflow.md``).
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PACKAGE = PACKAGE_DIR.name


def _module_file(module: str, package_dir: Path) -> Path | None:
    """``pixsup.cam.losses`` -> its ``.py`` file (or the package's ``__init__.py``); None if not ours."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    return None


def _module_name(path: Path, package_dir: Path) -> str:
    relative = path.relative_to(package_dir.parent).with_suffix("")
    parts = relative.parts[:-1] if relative.name == "__init__" else relative.parts
    return ".".join(parts)


def _imported_modules(path: Path, package_dir: Path) -> set[str]:
    """Every module a file imports (absolute names), with the names imported from a package that are modules."""
    this = _module_name(path, package_dir)
    package = this if path.name == "__init__.py" else this.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)  # kept only where a module
    return found


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


@cache
def code_files(step: str, package_dir: Path = PACKAGE_DIR) -> tuple[Path, ...]:
    """The files ``python -m pixsup.steps.<step>`` runs, sorted: Python modules and the data files beside them.

    ``package_dir``: the ``pixsup`` folder to read (default: the one running; the workflow passes
    its repository's ``src/pixsup``)."""
    package_dir = Path(package_dir).resolve()
    start = _module_file(f"{PACKAGE}.steps.{step}", package_dir)
    if start is None:
        raise ValueError(f"no step module pixsup.steps.{step} in {package_dir}")
    seen: set[Path] = set()
    todo = [start] + [_module_file(parent, package_dir) for parent in _with_parents(f"{PACKAGE}.steps.{step}")[:-1]]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in _imported_modules(path, package_dir):
            for name in _with_parents(module):
                found = _module_file(name, package_dir)
                if found is not None and found not in seen:
                    todo.append(found)
    data = {
        extra
        for folder in {path.parent for path in seen}
        for extra in folder.iterdir()
        if extra.is_file() and extra.suffix in (".yaml", ".json", ".txt")
    }
    return tuple(sorted(seen | data))


def code_digest(step: str, package_dir: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the step's code files (their paths inside the package and their bytes)."""
    package_dir = Path(package_dir).resolve()
    digest = hashlib.sha256()
    for path in code_files(step, package_dir):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def repository_code_files(step: str, repository: str | Path) -> list[str]:
    """The step's code files in ``repository/src/pixsup``, as paths relative to the repository: the inputs
    of its rule and the deps of its DVC stage."""
    root = Path(repository).resolve()
    return [path.relative_to(root).as_posix() for path in code_files(step, root / "src" / PACKAGE)]
