# Share an experiment's trained fold models as one BioImage Model Zoo package, which Fiji
# (deepImageJ), ilastik, napari and QuPath open; not part of `all` (it needs the optional
# bioimageio extra): snakemake results/<experiment>/bioimageio/<experiment>.zip


rule export_bioimageio:
    input:
        models=checked_models,
        stack=lambda w: fetched(
            unpacked_id(experiment_config(w)["data"], "train"), "images", "npy"
        ),
        folds="results/{experiment}/folds.tsv",
        summary="results/{experiment}/metrics/summary.tsv",
        thresholds=CELL_THRESHOLDS,
        architecture=str(Path(workflow.basedir) / "workflow" / "cellseg" / "model.py"),
    output:
        package="results/{experiment}/bioimageio/{experiment}.zip",
        validation="results/{experiment}/bioimageio/validation.md",
    log:
        "results/{experiment}/logs/export_bioimageio.log",
    benchmark:
        "results/{experiment}/benchmarks/export_bioimageio.tsv"
    conda:
        "../envs/cellseg.yaml"
    threads: lambda w: experiment_config(w)["resources"]["predict_threads"]
    params:
        config=lambda w: {
            key: experiment_config(w)[key]
            for key in (
                "experiment",
                "seed",
                "bioimageio",
                "model",
                "train",
                "augment",
                "predict",
                "segment",
            )
        },
    script:
        "../scripts/export_bioimageio.py"
