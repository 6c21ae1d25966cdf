# Segment new stacks (segment.stacks) with an experiment's trained fold models: a plan
# (the slabs and their shared normalisation), one job per slab (scatter), then the
# outputs in each of segment.formats and a summary (gather).

SEGMENTED = "results/{experiment}/segment/{name}"


checkpoint segment_plan:
    input:
        stack=lambda w: segment_fetched(w, "npy"),
        record=lambda w: segment_fetched(w, "json"),
        models=each_fold(MODEL),
    output:
        f"{SEGMENTED}/plan.json",
    log:
        "results/{experiment}/logs/segment/{name}/plan.log",
    benchmark:
        "results/{experiment}/benchmarks/segment/{name}/plan.tsv"
    conda:
        "../envs/cellseg.yaml"
    params:
        slab_slices=lambda w: experiment_config(w)["segment"]["slab_slices"],
        predict=lambda w: experiment_config(w)["predict"],
    script:
        "../scripts/plan_segmentation.py"


rule segment_slab:
    input:
        stack=lambda w: segment_fetched(w, "npy"),
        plan=f"{SEGMENTED}/plan.json",
        models=each_fold(MODEL),
        thresholds=CELL_THRESHOLDS,
    output:
        probability=temp(f"{SEGMENTED}/slabs/{{slab}}/probability.npy"),
        uncertainty=temp(f"{SEGMENTED}/slabs/{{slab}}/uncertainty.npy"),
        labels=temp(f"{SEGMENTED}/slabs/{{slab}}/labels.npy"),
        summary=temp(f"{SEGMENTED}/slabs/{{slab}}/summary.tsv"),
    log:
        "results/{experiment}/logs/segment/{name}/slab{slab}.log",
    benchmark:
        "results/{experiment}/benchmarks/segment/{name}/slab{slab}.tsv"
    # Clusters whose jobs must run long bundle slabs: group-components in the profile.
    group:
        "segment_slabs"
    conda:
        "../envs/cellseg.yaml"
    threads: lambda w: experiment_config(w)["resources"]["predict_threads"]
    resources:
        gpu=lambda w: experiment_config(w)["resources"]["predict_gpus"],
    params:
        predict=lambda w: experiment_config(w)["predict"],
        segment=lambda w: segment_settings(w),
    script:
        "../scripts/segment_slab.py"


rule segment_tiff:
    input:
        plan=f"{SEGMENTED}/plan.json",
        probability=segment_slabs("probability.npy"),
        uncertainty=segment_slabs("uncertainty.npy"),
        labels=segment_slabs("labels.npy"),
    output:
        probability=f"{SEGMENTED}/probability.tif",
        uncertainty=f"{SEGMENTED}/uncertainty.tif",
        labels=f"{SEGMENTED}/labels.tif",
    log:
        "results/{experiment}/logs/segment/{name}/tiff.log",
    benchmark:
        "results/{experiment}/benchmarks/segment/{name}/tiff.tsv"
    conda:
        "../envs/cellseg.yaml"
    script:
        "../scripts/write_segment_tiff.py"


rule segment_zarr:
    input:
        plan=f"{SEGMENTED}/plan.json",
        probability=segment_slabs("probability.npy"),
        uncertainty=segment_slabs("uncertainty.npy"),
        labels=segment_slabs("labels.npy"),
    output:
        directory(f"{SEGMENTED}/segmentation.ome.zarr"),
    log:
        "results/{experiment}/logs/segment/{name}/zarr.log",
    benchmark:
        "results/{experiment}/benchmarks/segment/{name}/zarr.tsv"
    conda:
        "../envs/cellseg.yaml"
    script:
        "../scripts/write_segment_zarr.py"


rule segment_summary:
    input:
        segment_slabs("summary.tsv"),
    output:
        f"{SEGMENTED}/summary.tsv",
    log:
        "results/{experiment}/logs/segment/{name}/summary.log",
    conda:
        "../envs/cellseg.yaml"
    script:
        "../scripts/gather_segment_summary.py"


rule segment_report:
    input:
        unpack(segmented_outputs),
        template=str(TEMPLATES / "segment_report.html.j2"),
        viewer_template=str(TEMPLATES / "viewer.html.j2"),
        stack=lambda w: segment_fetched(w, "npy"),
        record=lambda w: segment_fetched(w, "json"),
        plan=f"{SEGMENTED}/plan.json",
        summary=f"{SEGMENTED}/summary.tsv",
        scores="results/{experiment}/metrics/summary.tsv",
        thresholds=CELL_THRESHOLDS,
    output:
        f"{SEGMENTED}/report.html",
    log:
        "results/{experiment}/logs/segment/{name}/report.log",
    benchmark:
        "results/{experiment}/benchmarks/segment/{name}/report.tsv"
    conda:
        "../envs/cellseg.yaml"
    params:
        segment=lambda w: segment_settings(w)["settings"]
        | {"slab_slices": experiment_config(w)["segment"]["slab_slices"]},
    script:
        "../scripts/render_segment_report.py"


rule segment:
    input:
        segment_outputs(),
