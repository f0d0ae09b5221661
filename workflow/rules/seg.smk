# Segmentation: DeepLab-v2 on the pseudo masks of train_aug, val predictions
# (single scale, multi-scale + flip) and their mIoU, test predictions for the server.


rule train_seg:
    """The segmentation network on the masks of SEG_VARIANT by SEG_METHOD; resumes from <model>.resume.pt."""
    input:
        code=step_code("train_seg"),
        params=params_file("train_seg"),
        masks=f"results/{{dataset}}/seed{{seed}}/pseudo_labels/{SEG_VARIANT}/masks/{SEG_METHOD}/train_aug",
        cam_model=f"results/{{dataset}}/seed{{seed}}/{SEG_VARIANT}/model.pt",
    output:
        model="results/{dataset}/seed{seed}/seg/model.pt",
        losses="results/{dataset}/seed{seed}/seg/losses.csv",
    log:
        "logs/{dataset}/seed{seed}/train_seg.log",
    benchmark:
        "logs/{dataset}/seed{seed}/benchmarks/train_seg.tsv"
    conda:
        "../../envs/pixsup.yaml"
    threads: 4
    resources:
        **ddp_resources(PARAMS.seg_train.gpus),
        mem_mb=16000,
        runtime=1440,
        gpu=PARAMS.seg_train.gpus,
    params:
        root=DATA_ROOT,
    shell:
        "OMP_NUM_THREADS={threads:q} python -m pixsup.runtime.gpu_slot --gpus {resources.gpu:q} --"
        " python -m pixsup.runtime.launch --nproc {resources.gpu:q} --"
        " python -m pixsup.steps.train_seg --params {input.params:q} --root {params.root:q} --split train_aug"
        " --masks {input.masks:q} --cam-model {input.cam_model:q} --out {output.model:q}"
        " --losses {output.losses:q} --log {log:q} --quiet"


rule make_seg_preds:
    """Predictions for val: single scale (ss) or multi-scale + flip, CRF if configured (ms)."""
    input:
        code=step_code("make_seg_preds"),
        params=params_file("make_seg_preds"),
        model="results/{dataset}/seed{seed}/seg/model.pt",
        validated="results/{dataset}/data/validate_val.json",
    output:
        preds=directory("results/{dataset}/seed{seed}/seg/preds/val_{mode}"),
    log:
        "logs/{dataset}/seed{seed}/make_seg_preds/val_{mode}.log",
    benchmark:
        "logs/{dataset}/seed{seed}/benchmarks/make_seg_preds/val_{mode}.tsv"
    conda:
        "../../envs/pixsup.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        root=DATA_ROOT,
    shell:
        "OMP_NUM_THREADS={threads:q} python -m pixsup.runtime.gpu_slot --"
        " python -m pixsup.steps.make_seg_preds --params {input.params:q} --root {params.root:q} --split val"
        " --mode {wildcards.mode:q} --model {input.model:q} --out {output.preds:q} --log {log:q} --quiet"


rule eval_seg:
    """val mIoU of the predictions."""
    input:
        code=step_code("eval_seg"),
        preds="results/{dataset}/seed{seed}/seg/preds/val_{mode}",
    output:
        metrics="results/{dataset}/seed{seed}/metrics/seg/val_{mode}.json",
    log:
        "logs/{dataset}/seed{seed}/eval_seg/val_{mode}.log",
    conda:
        "../../envs/pixsup.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        root=DATA_ROOT,
    shell:
        "python -m pixsup.steps.eval_seg --root {params.root:q} --split val --masks {input.preds:q}"
        " --out {output.metrics:q} --log {log:q} --quiet"


rule make_test_submission:
    """Multi-scale test predictions in the evaluation server's layout, and the tar to upload."""
    input:
        code=step_code("make_test_submission"),
        params=params_file("make_test_submission"),
        model="results/{dataset}/seed{seed}/seg/model.pt",
        validated="results/{dataset}/data/validate_test.json",
    output:
        preds=directory(
            "results/{dataset}/seed{seed}/VOC2012/Segmentation/comp6_test_cls"
        ),
        tar="results/{dataset}/seed{seed}/submission_test.tar",
    log:
        "logs/{dataset}/seed{seed}/make_test_submission.log",
    benchmark:
        "logs/{dataset}/seed{seed}/benchmarks/make_test_submission.tsv"
    conda:
        "../../envs/pixsup.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        root=DATA_ROOT,
    shell:
        "OMP_NUM_THREADS={threads:q} python -m pixsup.runtime.gpu_slot --"
        " python -m pixsup.steps.make_test_submission --params {input.params:q} --root {params.root:q}"
        " --split test --model {input.model:q} --out {output.preds:q} --tar {output.tar:q} --log {log:q} --quiet"
