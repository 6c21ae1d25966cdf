# Figures of the run and its self-contained HTML report.


rule draw_figures:
    input:
        unpack(
            fold_inputs(
                predictions=HELD_OUT,
                curves=CURVE,
            )
        ),
        images=training_data("train_images.npy"),
        labels=training_data("train_labels.npy"),
        per_slice="results/{experiment}/metrics/per_slice.tsv",
        test_images=test_data("test_images.npy"),
        test_volume=lambda w: (
            TEST_VOLUME.format(experiment=w.experiment)
            if has_test_stack(w.experiment)
            else []
        ),
    output:
        report(
            directory("results/{experiment}/figures"),
            patterns=["{name}.png", "{name}.jpg"],  # slices/ included
            caption="../report/figures.rst",
            category="Figures",
            subcategory="{experiment}",
        ),
    log:
        "results/{experiment}/logs/draw_figures.log",
    conda:
        "../envs/cellseg.yaml"
    params:
        threshold=lambda w: experiment_config(w)["eval"]["threshold"],
    script:
        "../scripts/draw_figures.py"


rule encode_viewer:
    input:
        unpack(fold_inputs(predictions=HELD_OUT)),
        cells=HELD_OUT_CELLS,
        images=training_data("train_images.npy"),
        labels=training_data("train_labels.npy"),
        per_slice="results/{experiment}/metrics/per_slice.tsv",
        test_images=test_data("test_images.npy"),
        test_volume=lambda w: (
            [
                TEST_VOLUME.format(experiment=w.experiment),
                TEST_UNCERTAINTY.format(experiment=w.experiment),
                TEST_CELLS.format(experiment=w.experiment),
            ]
            if has_test_stack(w.experiment)
            else []
        ),
    output:
        "results/{experiment}/report/viewer.json",
    log:
        "results/{experiment}/logs/encode_viewer.log",
    conda:
        "../envs/cellseg.yaml"
    params:
        threshold=lambda w: experiment_config(w)["eval"]["threshold"],
    script:
        "../scripts/encode_viewer.py"


rule render_report:
    input:
        unpack(
            fold_inputs(
                models=MODEL_RECORD,
                curves=CURVE,
            )
        ),
        # Each stack's fetch record, by the stack's name (stacks/<stack>).
        unpack(fetch_records),
        template=REPORT_TEMPLATE,
        viewer_template=str(TEMPLATES / "viewer.html.j2"),
        viewer="results/{experiment}/report/viewer.json",
        summary="results/{experiment}/metrics/summary.tsv",
        per_fold="results/{experiment}/metrics/per_fold.tsv",
        per_slice="results/{experiment}/metrics/per_slice.tsv",
        challenge_thresholds="results/{experiment}/metrics/challenge_thresholds.tsv",
        warnings="results/{experiment}/metrics/warnings.tsv",
        cell_thresholds=CELL_THRESHOLDS,
        figures="results/{experiment}/figures",
        training_record=training_data("train_images.json"),
        # The timings of the jobs this run is made of (segmenting is not part of it).
        benchmarks=lambda w: [
            *each_fold("results/{experiment}/benchmarks/train_unet/fold{fold}.tsv")(w),
            *each_fold(
                "results/{experiment}/benchmarks/predict_held_out/fold{fold}.tsv"
            )(w),
            f"results/{w.experiment}/benchmarks/segment_held_out.tsv",
            f"results/{w.experiment}/benchmarks/evaluate.tsv",
            *(
                [f"results/{w.experiment}/benchmarks/predict_test_volume.tsv"]
                if has_test_stack(w.experiment)
                else []
            ),
        ],
    output:
        report(
            "results/{experiment}/report.html",
            caption="../report/report.rst",
            category="Report",
            subcategory="{experiment}",
        ),
    log:
        "results/{experiment}/logs/render_report.log",
    conda:
        "../envs/cellseg.yaml"
    params:
        # Of segment only what makes the cells, last (a config file that names segment
        # moves the key): adding a stack to segment leaves the report as it is.
        config=lambda w: {
            k: v for k, v in experiment_config(w).items() if k != "segment"
        }
        | {"segment": segment_settings(w)["settings"]},
    script:
        "../scripts/render_report.py"
