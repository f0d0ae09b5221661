# Config validation and the helpers every rule file shares.
#
# The config is validated by the package's own schema (pixsup.config), the same
# validator the steps and the tests use: an unknown key or a bad value stops the
# workflow here, before any job runs.

import json
import shlex

from pixsup.cam.variants import VARIANTS as CAM_VARIANTS
from pixsup.code_identity import repository_code_files
from pixsup.models.tiny import PRETRAINED_FILE as TINY_PRETRAINED_FILE
from pixsup.config import (
    RUN_SEED_KEYS,
    STEP_KEYS,
    ConfigError,
    parse_params,
    select_keys,
    step_keys,
    with_run_seed,
)
from snakemake.exceptions import WorkflowError

try:
    PARAMS = parse_params(config, "params.yaml (with --config/--configfile overrides)")
except ConfigError as error:
    raise WorkflowError(str(error)) from None

DATASET = PARAMS.data.dataset
# Training repeats: everything from train_cam on runs once per seed, under results/<dataset>/seed<s>/.
SEEDS = list(PARAMS.experiment.seeds)
# The gallery, the loss curves and the test submission show the first run.
FIRST_SEED = SEEDS[0]
DATA_ROOT = PARAMS.data.root
NUM_SHARDS = PARAMS.cam_infer.num_shards

# The CAM networks train_cam trains (results folder names; pixsup.cam.variants):
# "support" is the SupportNet (the ablation's baseline row); the others train against it.
VARIANTS = list(CAM_VARIANTS)
# Seeds are evaluated on train (1,464 images on VOC), as every WSSS paper reports them.
SEED_SPLIT = "train"
# Pseudo masks are made for these variants, by these methods; segmentation trains on
# the masks of the first variant by pseudo_labels.method.
PSEUDO_VARIANTS = list(PARAMS.pseudo_labels.variants)
MASK_METHODS = list(
    dict.fromkeys([PARAMS.pseudo_labels.method, *PARAMS.pseudo_labels.compare_methods])
)
SEG_VARIANT = PSEUDO_VARIANTS[0]
SEG_METHOD = PARAMS.pseudo_labels.method
SEG_MODES = ["ss", "ms"]
unknown = sorted(set(PSEUDO_VARIANTS) - set(VARIANTS))
if unknown:
    raise WorkflowError(
        f"params.yaml: pseudo_labels.variants has unknown variants {unknown}; known: {VARIANTS}"
    )
# The gallery compares these CAMs (title -> variant).
GALLERY = {"baseline": "support", "full": "full"}


wildcard_constraints:
    dataset=DATASET,
    seed=r"\d+",
    variant="|".join(VARIANTS),
    split="train|train_aug|val|test",
    step="|".join(STEP_KEYS),
    shard=r"\d+",
    method="irn|crf|cam",
    mode="ss|ms",


def ddp_resources(gpus):
    """SLURM resources of a training job on `gpus` GPUs (one DDP process each).

    With one GPU nothing is added. With more, the job is an "mpi" job to the
    SLURM executor: it gets `gpus` tasks, one GPU each, and the rule's own
    command starts them (`pixsup.runtime.launch` runs `srun`) instead of the executor
    wrapping the command in a single-task `srun`. `threads` stays the job's
    total: each task gets its share.
    """
    if gpus == 1:
        return {}
    return {
        "tasks": gpus,
        "tasks_per_gpu": 1,
        "mpi": "srun",
        "cpus_per_task": lambda wildcards, threads: max(1, threads // gpus),
    }


def step_code(step):
    """The source files `python -m pixsup.steps.<step>` runs (pixsup.code_identity): an edit to any
    reruns the step and what follows, and nothing before it."""
    return repository_code_files(step, workflow.basedir)


def params_file(step):
    """The resolved params file a step reads (written by write_params). A training step's file is
    per run: its seed is offset by the run's (pixsup.config.RUN_SEED_KEYS)."""
    if step in RUN_SEED_KEYS:
        return f"results/{{dataset}}/seed{{seed}}/params/{step}.yaml"
    return f"results/{{dataset}}/params/{step}.yaml"


def results(path):
    """A path under results/<dataset>/ with the dataset filled in."""
    return f"results/{DATASET}/{path}"


def dataset_files():
    # test: images only, and only if the dataset has a test split (the VOC 2012 trainval tar has none).
    return [results("data/prepared.json")] + [
        results(f"data/validate_{split}.json")
        for split in ("train_aug", SEED_SPLIT, "val", "test")
    ]


def run_files(path):
    """``path`` under results/<dataset>/seed<s>/ for every run of experiment.seeds."""
    return [results(f"seed{seed}/{path}") for seed in SEEDS]


def pretrained_files():
    """{"pretrained": the file `cam_train.pretrained: auto` loads for tiny (pixsup.models.tiny)}, which
    pretrain_backbone makes here as a download provides a ResNet's; empty for other weights.
    """
    if PARAMS.cam_train.backbone == "tiny" and PARAMS.cam_train.pretrained == "auto":
        return {"pretrained": str(TINY_PRETRAINED_FILE)}
    return {}


def cam_model_files():
    return [path for variant in VARIANTS for path in run_files(f"{variant}/model.pt")]


def cam_index_files():
    return [
        path
        for variant in VARIANTS
        for path in run_files(f"{variant}/cams/{SEED_SPLIT}/index.json")
    ]


def variant_run_files(stem, ext):
    """{variant: [results/<dataset>/seed<s>/metrics/<stem>_<split>_<variant>.<ext> of each run]}."""
    return {
        variant: run_files(f"metrics/{stem}_{SEED_SPLIT}_{variant}.{ext}")
        for variant in VARIANTS
    }


def seed_metric_files():
    return [
        path for paths in variant_run_files("seeds", "json").values() for path in paths
    ]


def seed_image_files():
    return [
        path
        for paths in variant_run_files("seeds", "per_image.npz").values()
        for path in paths
    ]


def mask_metric_files():
    """{"variant:method": [metrics JSON of each run]}."""
    return {
        f"{variant}:{method}": run_files(f"metrics/masks/train_{variant}_{method}.json")
        for variant in PSEUDO_VARIANTS
        for method in MASK_METHODS
    }


def mask_image_files():
    """{"variant:method": [eval_masks --per-image npz of each run]}."""
    return {
        name: [path.replace(".json", ".per_image.npz") for path in paths]
        for name, paths in mask_metric_files().items()
    }


def seg_metric_files():
    """{mode: [metrics JSON of each run]}."""
    return {mode: run_files(f"metrics/seg/val_{mode}.json") for mode in SEG_MODES}


def submission_files():
    return [results(f"seed{FIRST_SEED}/submission_test.tar")]


PAPER_TABLES = ["seeds_masks", "segmentation", "ablation"]
PAPER_FIGURES = ["cam_gallery", "threshold_curves", "ablation_intervals", "loss_curves"]


def paper_files():
    return (
        [
            results(f"paper/tables/{table}.{ext}")
            for table in PAPER_TABLES
            for ext in ("csv", "md", "tex")
        ]
        + [
            results(f"paper/figures/{figure}.{ext}")
            for figure in PAPER_FIGURES
            for ext in ("png", "pdf")
        ]
        + [results("paper/README.md"), results("paper/summary.json")]
    )


def name_path_pairs(paths):
    """NAME=PATH arguments of make_report from a {name: path or [path of each run]} mapping, each
    quoted for the shell; a name repeats once per run, in the order of experiment.seeds.
    """
    return " ".join(
        shlex.quote(f"{name}={path}")
        for name, value in paths.items()
        for path in ([value] if isinstance(value, str) else value)
    )


def calibration_inputs(wildcards):
    """The variant's seed metrics on train, which calibration: seed_curve moves the thresholds with."""
    if PARAMS.pseudo_labels.calibration == "none":
        return {}
    return {
        "seed_metrics": f"results/{wildcards.dataset}/seed{wildcards.seed}/metrics/"
        f"seeds_{SEED_SPLIT}_{wildcards.variant}.json"
    }


def seed_metrics_argument(wildcards, input):
    return (
        f"--seed-metrics {shlex.quote(input.seed_metrics)}"
        if "seed_metrics" in input.keys()
        else ""
    )


def pseudo_mask_inputs(wildcards):
    run = f"results/{wildcards.dataset}/seed{wildcards.seed}"
    inputs = {
        "params": params_file("make_pseudo_masks").format(dataset=wildcards.dataset),
        "cams": f"{run}/{wildcards.variant}/cams/train_aug/index.json",
        **calibration_inputs(wildcards),
    }
    if wildcards.method == "irn":
        inputs["irn"] = f"{run}/pseudo_labels/{wildcards.variant}/irn.pt"
    return inputs


def train_cam_inputs(wildcards):
    inputs = {
        "params": params_file("train_cam").format(
            dataset=wildcards.dataset, seed=wildcards.seed
        ),
        "validated": f"results/{wildcards.dataset}/data/validate_train_aug.json",
    }
    if wildcards.variant != "support":
        inputs["support"] = (
            f"results/{wildcards.dataset}/seed{wildcards.seed}/support/model.pt"
        )
    else:
        inputs.update(pretrained_files())
    return inputs
