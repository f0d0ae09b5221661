# Pseudo labels: confident labels from the CAMs of train_aug, IRN's boundary
# branch trained on them, full masks by each refinement method, mask mIoU on train.


rule make_ir_labels:
    """Confident foreground/background labels (CRF-refined), 255 elsewhere: IRN's training targets."""
    input:
        unpack(calibration_inputs),
        code=step_code("make_ir_labels"),
        params=params_file("make_ir_labels"),
        cams="results/{dataset}/seed{seed}/{variant}/cams/train_aug/index.json",
    output:
        labels=directory(
            "results/{dataset}/seed{seed}/pseudo_labels/{variant}/ir_labels"
        ),
    log:
        "logs/{dataset}/seed{seed}/make_ir_labels/{variant}.log",
    conda:
        "../../envs/pixsup.yaml"
    threads: 8
    resources:
        mem_mb=8000,
        runtime=240,
    params:
        root=DATA_ROOT,
        cams=subpath(input.cams, parent=True),
        seed_metrics=seed_metrics_argument,
    shell:
        "python -m pixsup.steps.make_ir_labels --params {input.params:q} --root {params.root:q}"
        " --split train_aug --cams {params.cams:q} {params.seed_metrics}"
        " --out {output.labels:q} --workers {threads:q}"
        " --log {log:q} --quiet"


rule train_irn:
    """IRN's class-boundary branch on a frozen backbone; resumes from <irn>.resume.pt."""
    input:
        code=step_code("train_irn"),
        params=params_file("train_irn"),
        labels="results/{dataset}/seed{seed}/pseudo_labels/{variant}/ir_labels",
        cam_model="results/{dataset}/seed{seed}/{variant}/model.pt",
    output:
        model="results/{dataset}/seed{seed}/pseudo_labels/{variant}/irn.pt",
        losses="results/{dataset}/seed{seed}/pseudo_labels/{variant}/irn_losses.csv",
    log:
        "logs/{dataset}/seed{seed}/train_irn/{variant}.log",
    benchmark:
        "logs/{dataset}/seed{seed}/benchmarks/train_irn/{variant}.tsv"
    conda:
        "../../envs/pixsup.yaml"
    threads: 4
    resources:
        **ddp_resources(PARAMS.pseudo_labels.irn.gpus),
        mem_mb=16000,
        runtime=240,
        gpu=PARAMS.pseudo_labels.irn.gpus,
    params:
        root=DATA_ROOT,
    shell:
        "OMP_NUM_THREADS={threads:q} python -m pixsup.runtime.gpu_slot --gpus {resources.gpu:q} --"
        " python -m pixsup.runtime.launch --nproc {resources.gpu:q} --"
        " python -m pixsup.steps.train_irn --params {input.params:q} --root {params.root:q}"
        " --split train_aug --labels {input.labels:q} --cam-model {input.cam_model:q}"
        " --out {output.model:q} --losses {output.losses:q} --log {log:q} --quiet"


rule make_pseudo_masks:
    """Full masks of train_aug by one refinement: irn (random walk), crf or cam."""
    input:
        unpack(pseudo_mask_inputs),
        code=step_code("make_pseudo_masks"),
    output:
        masks=directory(
            "results/{dataset}/seed{seed}/pseudo_labels/{variant}/masks/{method}/train_aug"
        ),
    log:
        "logs/{dataset}/seed{seed}/make_pseudo_masks/{variant}_{method}.log",
    benchmark:
        "logs/{dataset}/seed{seed}/benchmarks/make_pseudo_masks/{variant}_{method}.tsv"
    conda:
        "../../envs/pixsup.yaml"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=480,
        gpu=1,
    params:
        root=DATA_ROOT,
        cams=lambda wildcards, input: subpath(input.cams, parent=True),
        irn=lambda wildcards, input: (
            f"--irn {shlex.quote(input.irn)}" if "irn" in input.keys() else ""
        ),
        seed_metrics=seed_metrics_argument,
    shell:
        "OMP_NUM_THREADS={threads:q} python -m pixsup.runtime.gpu_slot --"
        " python -m pixsup.steps.make_pseudo_masks --params {input.params:q} --root {params.root:q}"
        " --split train_aug --method {wildcards.method:q} --cams {params.cams:q} {params.irn} {params.seed_metrics}"
        " --out {output.masks:q} --workers {threads:q} --log {log:q} --quiet"


rule eval_masks:
    """Pseudo-mask mIoU on train (train is inside train_aug); per-image confusions for the report's intervals."""
    input:
        code=step_code("eval_masks"),
        masks="results/{dataset}/seed{seed}/pseudo_labels/{variant}/masks/{method}/train_aug",
        validated="results/{dataset}/data/validate_train.json",
    output:
        metrics="results/{dataset}/seed{seed}/metrics/masks/train_{variant}_{method}.json",
        per_image="results/{dataset}/seed{seed}/metrics/masks/train_{variant}_{method}.per_image.npz",
    log:
        "logs/{dataset}/seed{seed}/eval_masks/{variant}_{method}.log",
    conda:
        "../../envs/pixsup.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        root=DATA_ROOT,
    shell:
        "python -m pixsup.steps.eval_masks --root {params.root:q} --split train --masks {input.masks:q}"
        " --out {output.metrics:q} --per-image {output.per_image:q} --log {log:q} --quiet"
