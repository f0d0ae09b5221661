"""The code a step runs, as the workflow sees it: found from the imports in the source, without importing."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from pixsup.code_identity import code_digest, code_files, repository_code_files

REPO = Path(__file__).resolve().parents[1]


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))


def _fake_package(tmp_path: Path) -> Path:
    """A small pixsup: relative and absolute imports, one inside a function, a data file, unused modules."""
    package = tmp_path / "src" / "pixsup"
    _write(
        package,
        {
            "__init__.py": "",
            "config.py": "import yaml\n",
            "unused.py": "",
            "steps/__init__.py": "",
            "steps/_cli.py": "from ..config import load\n",
            "steps/train.py": (
                "from . import _cli\nfrom ..cam.losses import loss\n\ndef main():\n    import pixsup.late\n"
            ),
            "steps/report.py": "from ..report import tables\n",
            "cam/__init__.py": "",
            "cam/losses.py": "import torch\n",
            "cam/other.py": "",
            "late.py": "",
            "report/__init__.py": "",
            "report/tables.py": "from pixsup.config import x\n",
            "report/peers.yaml": "a: 1\n",
        },
    )
    return package


def test_the_closure_holds_every_imported_module_and_nothing_else(tmp_path):
    package = _fake_package(tmp_path)
    relative = sorted(path.relative_to(package).as_posix() for path in code_files("train", package))
    # By hand: the step, its package's __init__, _cli (from . import), config (via _cli), cam/losses and
    # cam/__init__ (from ..cam.losses), late (imported inside main), pixsup/__init__.
    assert relative == [
        "__init__.py",
        "cam/__init__.py",
        "cam/losses.py",
        "config.py",
        "late.py",
        "steps/__init__.py",
        "steps/_cli.py",
        "steps/train.py",
    ]
    report = sorted(path.relative_to(package).as_posix() for path in code_files("report", package))
    # `from ..report import tables` imports report/__init__ and report/tables; peers.yaml lies beside them.
    assert report == [
        "__init__.py",
        "config.py",
        "report/__init__.py",
        "report/peers.yaml",
        "report/tables.py",
        "steps/__init__.py",
        "steps/report.py",
    ]
    assert repository_code_files("report", tmp_path)[0] == "src/pixsup/__init__.py"


def test_the_digest_is_sha256_of_the_closure_and_follows_every_byte(tmp_path):
    package = _fake_package(tmp_path)
    expected = hashlib.sha256()
    for name in ["__init__.py", "config.py", "report/__init__.py", "report/peers.yaml", "report/tables.py"]:
        expected.update(name.encode() + b"\0" + (package / name).read_bytes() + b"\0")
    for name in ["steps/__init__.py", "steps/report.py"]:
        expected.update(name.encode() + b"\0" + (package / name).read_bytes() + b"\0")
    assert code_digest("report", package) == expected.hexdigest()
    before = code_digest("train", package)
    (package / "cam" / "other.py").write_text("# not imported by the step\n")
    assert code_digest("train", package) == before
    copy = tmp_path / "copy" / "src" / "pixsup"
    shutil.copytree(package, copy)
    (copy / "cam" / "losses.py").write_text("import torch\n# a comment\n")
    assert code_digest("train", copy) != before


def test_every_step_module_has_a_closure_and_the_light_steps_do_not_import_torch():
    steps = sorted(p.stem for p in (REPO / "src" / "pixsup" / "steps").glob("*.py") if not p.stem.startswith("_"))
    for step in steps:
        assert any(path.name == f"{step}.py" for path in code_files(step))
    # What the files say, the interpreter confirms: these steps never load torch.
    light = ("write_params", "prepare_data", "check_downloads", "validate_data", "gather_cams")
    for step in light + ("eval_cams", "eval_masks", "eval_seg", "make_report"):
        code = f"import importlib, sys; importlib.import_module('pixsup.steps.{step}'); print('torch' in sys.modules)"
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "False", step
        assert not any("models" in path.parts for path in code_files(step)), step


def test_a_step_record_names_the_code_it_ran(tmp_path):
    from pixsup.provenance import StepRecord

    meta = json.loads(StepRecord("eval_cams", {}).write(tmp_path / "m.json").read_text())
    files = code_files("eval_cams")
    expected = hashlib.sha256()
    root = REPO / "src" / "pixsup"
    for path in files:
        expected.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    assert meta["code"] == {"sha256": expected.hexdigest(), "files": len(files)}
