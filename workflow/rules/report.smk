# Report: the paper's tables and figures, from the metrics JSON files only.


rule make_report:
    """Tables (seeds/masks, segmentation, ablation), figures and a README with provenance."""
    input:
        code=step_code("make_report"),
        params=params_file("make_report"),
        seeds=seed_metric_files(),
        seed_images=seed_image_files(),
        losses=expand(
            "results/{{dataset}}/seed{seed}/{variant}/losses.csv",
            seed=FIRST_SEED,
            variant=VARIANTS,
        ),
        masks=mask_metric_files().values(),
        mask_images=mask_image_files().values(),
        seg=seg_metric_files().values(),
        submission=submission_files(),
        test_preds=f"results/{{dataset}}/seed{FIRST_SEED}/VOC2012/Segmentation/comp6_test_cls",
        cams=expand(
            "results/{{dataset}}/seed{seed}/{variant}/cams/{split}/index.json",
            seed=FIRST_SEED,
            split=SEED_SPLIT,
            variant=GALLERY.values(),
        ),
    output:
        tables=report(
            expand(
                "results/{{dataset}}/paper/tables/{table}.{ext}",
                table=PAPER_TABLES,
                ext=("csv", "md", "tex"),
            ),
            category="Tables",
        ),
        figures=report(
            expand(
                "results/{{dataset}}/paper/figures/{figure}.{ext}",
                figure=PAPER_FIGURES,
                ext=("png", "pdf"),
            ),
            category="Figures",
        ),
        readme="results/{dataset}/paper/README.md",
        summary="results/{dataset}/paper/summary.json",
    log:
        "logs/{dataset}/make_report.log",
    conda:
        "../../envs/pixsup.yaml"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        root=DATA_ROOT,
        split=SEED_SPLIT,
        out=subpath(output.readme, parent=True),
        seeds=name_path_pairs(variant_run_files("seeds", "json")),
        seed_images=name_path_pairs(variant_run_files("seeds", "per_image.npz")),
        losses=lambda wildcards, input: name_path_pairs(
            dict(zip(VARIANTS, input.losses))
        ),
        masks=name_path_pairs(mask_metric_files()),
        mask_images=name_path_pairs(mask_image_files()),
        seg=name_path_pairs(seg_metric_files()),
        cams=lambda wildcards, input: name_path_pairs(
            {
                title: subpath(path, parent=True)
                for title, path in zip(GALLERY, input.cams)
            }
        ),
    shell:
        "python -m pixsup.steps.make_report --params {input.params:q} --root {params.root:q} --split {params.split:q}"
        " --seeds {params.seeds} --seed-images {params.seed_images} --masks {params.masks} --mask-images {params.mask_images} --seg {params.seg} --losses {params.losses}"
        " --cams {params.cams} --test-preds {input.test_preds:q} --out {params.out:q}"
        " --log {log:q} --quiet"
