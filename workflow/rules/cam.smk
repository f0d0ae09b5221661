# CAMs: SupportNet, the MainNet variants trained against it, multi-scale CAMs
# (sharded, one GPU each), seed evaluation.
#
# GPU rules run through `python -m pixsup.runtime.gpu_slot`, which gives each running
# job a device of its own on a local multi-GPU box (Snakemake only counts the
# gpu resource) and leaves a scheduler's CUDA_VISIBLE_DEVICES alone.


rule pretrain_backbone:
    """The tiny backbone trained on the generated source dataset: what ImageNet weights are to the
    ResNets; cam_train.pretrained: auto loads it. Resumes from <out>.resume.pt."""
    input:
        code=step_code("pretrain_backbone"),
        params=results("params/pretrain_backbone.yaml"),
    output:
        weights=str(TINY_PRETRAINED_FILE),
        losses="results/pretrained/losses.csv",
    log:
        "logs/pretrain_backbone.log",
    benchmark:
        "logs/benchmarks/pretrain_backbone.tsv"
    conda:
        "../../envs/pixsup.yaml"
    threads: 4
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1,
    shell:
        "OMP_NUM_THREADS={threads:q} python -m pixsup.runtime.gpu_slot --"
        " python -m pixsup.steps.pretrain_backbone --params {input.params:q}"
        " --out {output.weights:q} --losses {output.losses:q} --log {log:q} --quiet"


rule train_cam:
    """SupportNet (variant support) or a MainNet variant against it; resumes from <model>.resume.pt."""
    input:
        unpack(train_cam_inputs),
        code=step_code("train_cam"),
    output:
        model="results/{dataset}/seed{seed}/{variant}/model.pt",
        losses="results/{dataset}/seed{seed}/{variant}/losses.csv",
    log:
        "logs/{dataset}/seed{seed}/train_cam/{variant}.log",
    benchmark:
        "logs/{dataset}/seed{seed}/benchmarks/train_cam/{variant}.tsv"
    conda:
        "../../envs/pixsup.yaml"
    threads: 4
    resources:
        **ddp_resources(PARAMS.cam_train.gpus),
        mem_mb=16000,
        runtime=720,
        gpu=PARAMS.cam_train.gpus,
    params:
        root=DATA_ROOT,
        support=lambda wildcards, input: (
            f"--support {shlex.quote(input.support)}"
            if "support" in input.keys()
            else ""
        ),
    shell:
        "OMP_NUM_THREADS={threads:q} python -m pixsup.runtime.gpu_slot --gpus {resources.gpu:q} --"
        " python -m pixsup.runtime.launch --nproc {resources.gpu:q} --"
        " python -m pixsup.steps.train_cam --params {input.params:q} --root {params.root:q}"
        " --split train_aug --variant {wildcards.variant:q} {params.support}"
        " --out {output.model:q} --losses {output.losses:q} --log {log:q} --quiet"


rule make_cams:
    """CAMs of one shard of a split: every NUM_SHARDS-th image, multi-scale + flip."""
    input:
        code=step_code("make_cams"),
        params=params_file("make_cams"),
        model="results/{dataset}/seed{seed}/{variant}/model.pt",
        validated="results/{dataset}/data/validate_{split}.json",
    output:
        manifest="results/{dataset}/seed{seed}/{variant}/cams/{split}/index.shard-{shard}-of-{num_shards}.json",
    log:
        "logs/{dataset}/seed{seed}/make_cams/{variant}/{split}/{shard}-of-{num_shards}.log",
    benchmark:
        "logs/{dataset}/seed{seed}/benchmarks/make_cams/{variant}/{split}/{shard}-of-{num_shards}.tsv"
    conda:
        "../../envs/pixsup.yaml"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=240,
        gpu=1,
    params:
        root=DATA_ROOT,
        out=subpath(output.manifest, parent=True),
    shell:
        "OMP_NUM_THREADS={threads:q} python -m pixsup.runtime.gpu_slot --"
        " python -m pixsup.steps.make_cams --params {input.params:q} --root {params.root:q}"
        " --split {wildcards.split:q} --model {input.model:q} --out {params.out:q}"
        " --shard {wildcards.shard:q}/{wildcards.num_shards:q} --log {log:q} --quiet"


rule gather_cams:
    """Check that every shard finished and merge their manifests into index.json."""
    input:
        code=step_code("gather_cams"),
        shards=expand(
            "results/{{dataset}}/seed{{seed}}/{{variant}}/cams/{{split}}/index.shard-{shard}-of-{num_shards}.json",
            shard=range(NUM_SHARDS),
            num_shards=NUM_SHARDS,
        ),
    output:
        index="results/{dataset}/seed{seed}/{variant}/cams/{split}/index.json",
    log:
        "logs/{dataset}/seed{seed}/gather_cams/{variant}/{split}.log",
    localrule: True
    conda:
        "../../envs/pixsup.yaml"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=10,
    params:
        out=subpath(output.index, parent=True),
        num_shards=NUM_SHARDS,
    shell:
        "python -m pixsup.steps.gather_cams --out {params.out:q} --shards {params.num_shards:q} --log {log:q} --quiet"


rule eval_cams:
    """Seed mIoU of a variant's CAMs on a split, sweeping the background threshold; per-image
    confusions at the best threshold for the report's intervals."""
    input:
        code=step_code("eval_cams"),
        params=params_file("eval_cams"),
        index="results/{dataset}/seed{seed}/{variant}/cams/{split}/index.json",
    output:
        metrics="results/{dataset}/seed{seed}/metrics/seeds_{split}_{variant}.json",
        per_image="results/{dataset}/seed{seed}/metrics/seeds_{split}_{variant}.per_image.npz",
    log:
        "logs/{dataset}/seed{seed}/eval_cams/{split}_{variant}.log",
    conda:
        "../../envs/pixsup.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        root=DATA_ROOT,
        cams=subpath(input.index, parent=True),
    shell:
        "python -m pixsup.steps.eval_cams --params {input.params:q} --cams {params.cams:q} --root {params.root:q}"
        " --split {wildcards.split:q} --out {output.metrics:q} --per-image {output.per_image:q}"
        " --log {log:q} --quiet"
