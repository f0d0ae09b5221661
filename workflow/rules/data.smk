# Data: the resolved params files, the dataset of params.yaml (generated or
# downloaded), and its validation.


rule write_params:
    """The values one step reads (pixsup.config.STEP_KEYS), as a file; rewritten only when one changes."""
    input:
        code=step_code("write_params"),
    output:
        "results/{dataset}/params/{step}.yaml",
    log:
        "logs/{dataset}/write_params/{step}.log",
    localrule: True
    conda:
        "../../envs/pixsup.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        values=lambda wildcards: json.dumps(
            select_keys(PARAMS, step_keys(wildcards.step, PARAMS))
        ),
    shell:
        "python -m pixsup.steps.write_params --step {wildcards.step:q} --values {params.values:q}"
        " --out {output:q} --log {log:q} --quiet"


# A training step's params for one run of experiment.seeds: its seed offset by the run's.
use rule write_params as write_run_params with:
    output:
        "results/{dataset}/seed{seed}/params/{step}.yaml",
    log:
        "logs/{dataset}/seed{seed}/write_params/{step}.log",
    params:
        values=lambda wildcards: json.dumps(
            select_keys(
                with_run_seed(PARAMS, int(wildcards.seed)),
                step_keys(wildcards.step, PARAMS),
            )
        ),


rule prepare_data:
    """Synthetic: generate the dataset. voc12: download VOC 2012 + SBD where data.root lacks them."""
    input:
        code=step_code("prepare_data"),
        params=params_file("prepare_data"),
    output:
        manifest="results/{dataset}/data/prepared.json",
    log:
        "logs/{dataset}/prepare_data.log",
    conda:
        "../../envs/pixsup.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=180,
    params:
        root=DATA_ROOT,
    shell:
        "python -m pixsup.steps.prepare_data --params {input.params:q} --root {params.root:q}"
        " --out {output.manifest:q} --log {log:q} --quiet"


rule check_downloads:
    """Compare the MD5 of each downloaded archive with its pin in data.voc12 (nothing to do for synthetic)."""
    input:
        code=step_code("check_downloads"),
        params=params_file("check_downloads"),
        prepared="results/{dataset}/data/prepared.json",
    output:
        checked="results/{dataset}/data/downloads_checked.json",
    log:
        "logs/{dataset}/check_downloads.log",
    conda:
        "../../envs/pixsup.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    shell:
        "python -m pixsup.steps.check_downloads --params {input.params:q} --prepared {input.prepared:q}"
        " --out {output.checked:q} --log {log:q} --quiet"


rule validate_data:
    """Check every image, mask and label of a split; any problem stops the workflow here."""
    input:
        code=step_code("validate_data"),
        prepared="results/{dataset}/data/prepared.json",
        # No step reads data whose archive fails its pin. ancient(): a new pin reruns the check, not the data.
        downloads=ancient("results/{dataset}/data/downloads_checked.json"),
    output:
        report="results/{dataset}/data/validate_{split}.json",
    log:
        "logs/{dataset}/validate_data/{split}.log",
    conda:
        "../../envs/pixsup.yaml"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    params:
        root=DATA_ROOT,
        # train_aug is only read for image-level labels; evaluated splits need masks;
        # test has images only, and may be absent.
        checks=lambda wildcards: {
            "train_aug": "",
            "test": "--images-only --optional",
        }.get(wildcards.split, "--require-mask"),
        # The label source the steps read (data.cls_labels_npy when set).
        cls_labels=(
            f"--cls-labels-npy {shlex.quote(PARAMS.data.cls_labels_npy)}"
            if PARAMS.data.cls_labels_npy
            else ""
        ),
    shell:
        "python -m pixsup.steps.validate_data --root {params.root:q} --split {wildcards.split:q}"
        " {params.checks} {params.cls_labels} --report {output.report:q} > {log:q} 2>&1"
