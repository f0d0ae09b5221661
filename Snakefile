# pixsup: the whole pipeline, from data to the paper's tables.
#
#   snakemake --cores all                  everything on the dataset of params.yaml
#   snakemake --cores all <target>         one target below, or any output path
#   snakemake --cores all --profile slurm  the same through SLURM
#
# Values come from params.yaml, validated by pixsup.config (workflow/rules/common.smk).
# Outputs: results/<dataset>/...; logs: logs/<dataset>/<rule>...; Snakemake benchmarks of the
# GPU rules: logs/<dataset>/benchmarks/<rule>...


configfile: "params.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/cam.smk"
include: "workflow/rules/pseudo_labels.smk"
include: "workflow/rules/seg.smk"
include: "workflow/rules/report.smk"


# The paper's tables and figures, and everything they need.
rule all:
    default_target: True
    input:
        paper_files(),


# The dataset, prepared and validated.
rule dataset:
    input:
        dataset_files(),


# The pretrained tiny backbone, where cam_train loads it (nothing for the ResNets' ImageNet weights).
rule pretrained:
    input:
        pretrained_files().values(),


# SupportNet and every MainNet variant, trained.
rule cam_models:
    input:
        cam_model_files(),


# CAMs of the seed split for every variant.
rule cam_seeds:
    input:
        cam_index_files(),


# Seed mIoU of every variant.
rule seed_metrics:
    input:
        seed_metric_files(),


# Pseudo-mask mIoU on train, every variant and method.
rule mask_metrics:
    input:
        mask_metric_files().values(),


# Segmentation val mIoU and the test submission.
rule segmentation:
    input:
        seg_metric_files().values(),
        submission_files(),
