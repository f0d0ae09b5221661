"""The files around the workflow stay in step with the package: conda env, config schema, DVC stages."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import pytest
import tomllib
import yaml

from pixsup.config import json_schema, load_params

from workflow_repo import REPO, copy_repo, run


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower()


def test_conda_env_parses_and_agrees_with_pyproject_and_ci():
    env = yaml.safe_load((REPO / "envs" / "pixsup.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    env_pins = {_name(r): r for r in pip if not r.startswith("-e")}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    required = {_name(r) for r in project["dependencies"]}
    assert required <= set(env_pins), f"missing from envs/pixsup.yaml: {required - set(env_pins)}"
    assert "python=3.11" in env["dependencies"]
    assert any(item == "-e ../" for item in pip), "the env must install this package"
    ci = {
        _name(line): line.strip()
        for line in (REPO / ".ci" / "constraints.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for name in ("torch", "torchvision"):
        assert env_pins[name] == ci[name], f"{name}: env has {env_pins[name]}, CI installs {ci[name]}"


def test_config_schema_is_generated_from_the_package():
    committed = json.loads((REPO / "workflow" / "schemas" / "config.schema.json").read_text())
    assert committed == json_schema(), "run: python -m pixsup.config --schema > workflow/schemas/config.schema.json"


def test_params_yaml_is_valid():
    load_params(REPO / "params.yaml")


def _dvc_paths(entries, params) -> list[str]:
    paths = []
    for entry in entries or []:
        path = next(iter(entry)) if isinstance(entry, dict) else entry
        paths.append(path.replace("${data.dataset}", params.data.dataset).replace("${data.root}", params.data.root))
    return paths


def test_dvc_stages_are_snakemake_targets_over_the_files_the_workflow_declares(tmp_path):
    repo = copy_repo(tmp_path / "repo", params={})
    params = load_params(repo / "params.yaml")
    summary = run([sys.executable, "-m", "snakemake", "--cores", "1", "--summary"], repo).stdout
    rows = [line.split("\t") for line in summary.splitlines()[1:] if "\t" in line]
    rule_of = {row[0]: row[2] for row in rows}
    targets = set(run([sys.executable, "-m", "snakemake", "--list-target-rules"], repo).stdout.split())

    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        target = stage["cmd"].split()[-1]
        assert stage["cmd"].startswith("snakemake --cores all") and target in targets, name
        for path in _dvc_paths(stage.get("outs"), params) + _dvc_paths(stage.get("metrics"), params):
            assert (
                path in rule_of
                or any(f.startswith(path.rstrip("/") + "/") for f in rule_of)
                or path == params.data.root
            ), f"{name}: {path} is not an output of the workflow"
    declared = {
        path
        for stage in stages.values()
        for path in _dvc_paths(stage.get("outs"), params) + _dvc_paths(stage.get("metrics"), params)
    }
    for path, rule in rule_of.items():
        if rule in ("train_cam", "eval_cams"):
            assert path in declared, f"{path} ({rule}) is missing from dvc.yaml"


def _rules() -> dict[str, str]:
    """Each rule of workflow/rules/*.smk with its body."""
    text = "\n".join(path.read_text() for path in sorted((REPO / "workflow" / "rules").glob("*.smk")))
    return dict(re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n|\n)*)", text, re.M))


def test_every_rule_runs_the_step_module_of_its_own_name():
    rules = _rules()
    steps = {path.stem for path in (REPO / "src" / "pixsup" / "steps").glob("*.py") if not path.stem.startswith("_")}
    assert set(rules) == steps, "one step module per rule, named as the rule"
    for name, body in rules.items():
        assert "shell:" in body and "run:" not in body, name
        commands = re.findall(r"python -m (pixsup\.steps\.\w+)", body)
        assert commands == [f"pixsup.steps.{name}"], f"rule {name} runs {commands}"


def test_dvc_code_dependencies_exist():
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    code = [dep for stage in stages.values() for dep in stage.get("deps", []) if dep.startswith("src/")]
    assert code, "dvc.yaml names no code"
    assert [dep for dep in code if not (REPO / dep).exists()] == []


def test_shell_commands_quote_every_path(tmp_path):
    """A data.root with a space and a command substitution reaches the steps as one literal argument."""
    root = "data/my voc/VOC2012$(touch pwned)"
    repo = copy_repo(tmp_path / "repo", params={"data": {"root": root}})
    printed = run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "all"], repo).stdout
    commands = [line.strip() for line in printed.splitlines() if "python -m pixsup.steps." in line]
    assert len(commands) > 20
    roots = []
    for command in commands:
        words = shlex.split(command)
        roots += [words[i + 1] for i, word in enumerate(words) if word == "--root"]
    assert roots and set(roots) == {root}
    # Run one command through the shell: the substitution stays text.
    quoted = next(c for c in commands if "pixsup.steps.validate_data" in c)
    subprocess.run(quoted.replace("python ", f"{sys.executable} ", 1), shell=True, cwd=repo, capture_output=True)
    assert not (repo / "pwned").exists()


def test_dvc_ignores_temporary_files_of_writers():
    folder = "results/synthetic/seed0/full/cams/train"
    temporary = f"{folder}/.2007_000032.npz.vm-4242.k2x9_ab.tmp.npz"
    ignored = run(["dvc", "check-ignore", temporary, f"{folder}/2007_000032.npz"], REPO, check=False)
    assert ignored.stdout.split() == [temporary]


def test_validation_reads_labels_where_the_steps_do(tmp_path):
    npy = REPO / "tests" / "data" / "voc_sample" / "cls_labels" / "cls_labels.npy"
    repo = copy_repo(tmp_path / "repo", params={"data": {"cls_labels_npy": str(npy)}})
    printed = run([sys.executable, "-m", "snakemake", "-n", "-p", "--cores", "1", "dataset"], repo).stdout
    validations = [shlex.split(line) for line in printed.splitlines() if "pixsup.steps.validate_data" in line]
    assert len(validations) == 4  # train_aug, train, val, test
    for words in validations:
        assert words[words.index("--cls-labels-npy") + 1] == str(npy)


@pytest.mark.parametrize("doc", ["bad-input.md", "conventions.md"])
def test_the_tables_in_docs_name_tests_that_exist(doc):
    table = (REPO / "docs" / doc).read_text()
    named = re.findall(r"`(?:tests/)?(test_\w+)\.py::(test_\w+)`", table)
    shorthand = re.findall(r"(?<!::)`(test_\w+)`", table)
    assert len(named) > 20
    defined = {path.stem: path.read_text() for path in (REPO / "tests").glob("test_*.py")}
    missing = [f"{module}::{name}" for module, name in named if f"def {name}(" not in defined.get(module, "")]
    missing += [name for name in shorthand if not any(f"def {name}(" in text for text in defined.values())]
    assert missing == []


def test_dvc_yaml_is_generated_from_the_snakemake_plan(tmp_path):
    repo = copy_repo(tmp_path / "repo", params={})
    result = run([sys.executable, "-m", "pixsup.workflow_dvc", "--check"], repo, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    # The report stage reads every loss log the report plots, and every metrics file it tabulates.
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    report_deps = set(stages["make_report"]["deps"])
    for variant in ("support", "baseline_same_budget", "rcm", "mam", "full"):
        assert f"results/${{data.dataset}}/seed0/{variant}/losses.csv" in report_deps


def test_data_dvc_is_a_frozen_import_of_the_published_voc_trainval_tar():
    from pixsup.config import Voc12DownloadConfig
    from pixsup.data.download import archive_name

    stage = yaml.safe_load((REPO / "data.dvc").read_text())
    assert stage["frozen"] is True  # dvc repro never fetches it
    [dep], [out] = stage["deps"], stage["outs"]
    # The MD5 the VOC 2012 development kit page publishes for VOCtrainval_11-May-2012.tar.
    assert out["md5"] == "6cd6e144f989b92b3379bac3b3de84fd" and out["hash"] == "md5"
    defaults = Voc12DownloadConfig()
    assert dep["path"] == defaults.voc_url and defaults.voc_md5 == out["md5"]
    # Where prepare_data keeps and reuses downloads, so it unpacks this file instead of fetching it again.
    assert out["path"] == f"{defaults.archive_dir}/{archive_name(defaults.voc_url)}"


# Rules declared with `use rule <step> as <name>`: the step module they run.
STEP_OF_RULE = {"write_run_params": "write_params"}


def test_dvc_stages_depend_on_the_code_their_rules_run(tmp_path):
    """Each stage's src/ deps hold the code of every rule its Snakemake target adds to the stages before
    it (pixsup.code_identity), and no code that no rule of its target runs: checked against Snakemake's
    own summary of the plan, not a hand list."""
    from pixsup.code_identity import repository_code_files

    repo = copy_repo(tmp_path / "repo")
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    earlier: set[str] = set()
    for name, stage in stages.items():
        target = stage["cmd"].split()[-1]
        planned = run(["snakemake", target, "-n", "--forceall", "--quiet", "rules"], repo).stdout
        rules = set(re.findall(r"^(\w+)\s+\d+$", planned, re.MULTILINE)) - {"total", target}
        new, earlier = rules - earlier, earlier | rules
        assert new, name
        code = {dep for dep in stage["deps"] if dep.startswith("src/")}
        needed = {path for rule in new for path in repository_code_files(STEP_OF_RULE.get(rule, rule), repo)}
        allowed = {path for rule in rules for path in repository_code_files(STEP_OF_RULE.get(rule, rule), repo)}
        assert needed <= code <= allowed, (name, sorted(needed - code), sorted(code - allowed))


def test_the_readmes_numbers_are_the_default_runs():
    """README's results are docs/default-run-summary.json, the summary.json that `snakemake --cores all` wrote for
    the shipped params.yaml (test_quality.py keeps that file within the measured spread of what the code gives now)."""
    summary = json.loads((REPO / "docs" / "default-run-summary.json").read_text())
    readme = (REPO / "README.md").read_text()
    rows = {
        "support": r"\| baseline \(SupportNet, \d+ epochs\) \|  \|  \| ([\d.]+) \|",
        "baseline_same_budget": r"\| baseline \(same budget, \d+ epochs\) \|  \|  \| ([\d.]+) \|",
        "rcm": r"\| rcm \| ✓ \|  \| ([\d.]+) \|",
        "mam": r"\| mam \|  \| ✓ \| ([\d.]+) \|",
        "full": r"\| full \| ✓ \| ✓ \| ([\d.]+) \|",
    }
    labels = {"support": "baseline", "baseline_same_budget": "baseline (same budget)"}
    for variant, pattern in rows.items():
        [shown] = re.findall(pattern, readme)
        assert shown == f"{summary['seed_miou'][variant]:.2f}", variant
        # The intervals beside it: [difference, low, high] per comparison, "–" where there is none.
        [line] = [line for line in readme.splitlines() if re.match(pattern, line)]
        intervals = summary["seed_miou_difference"][labels.get(variant, variant)]
        cells = [c.strip() for c in line.strip("|").split("|")][4:6]
        for cell, column in zip(cells, ("vs_same_budget", "vs_support")):
            expected = "–" if column not in intervals else "{:+.2f} [{:+.2f}, {:+.2f}]".format(*intervals[column])
            assert cell == expected, (variant, column)
    masks = re.search(r"at ([\d.]+) \(irn\), ([\d.]+) \(crf\) and ([\d.]+) \(cam\) mIoU on train", readme)
    assert masks.groups() == tuple(f"{summary['mask_miou'][f'full/{m}']:.2f}" for m in ("irn", "crf", "cam"))
    seg = re.search(r"at ([\d.]+) \(single scale\)\s+and ([\d.]+) \(multi-scale \+ flip\) mIoU on val", readme)
    assert seg.groups() == tuple(f"{summary['val_miou'][mode]:.2f}" for mode in ("ss", "ms"))
