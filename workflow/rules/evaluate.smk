# Make the cells of every held-out slice (each fold's merge threshold chosen on the other
# folds' slices), score every held-out slice and summarise per fold and over folds.


rule segment_held_out:
    input:
        unpack(fold_inputs(predictions=HELD_OUT)),
        folds="results/{experiment}/folds.tsv",
        labels=training_data("train_labels.npy"),
    output:
        cells=directory(HELD_OUT_CELLS),
        thresholds=CELL_THRESHOLDS,
        sweep="results/{experiment}/metrics/cell_threshold_sweep.tsv",
    log:
        "results/{experiment}/logs/segment_held_out.log",
    benchmark:
        "results/{experiment}/benchmarks/segment_held_out.tsv"
    conda:
        "../envs/cellseg.yaml"
    params:
        segment=lambda w: segment_settings(w),
    script:
        "../scripts/segment_held_out.py"


rule evaluate:
    input:
        unpack(fold_inputs(predictions=HELD_OUT)),
        folds="results/{experiment}/folds.tsv",
        labels=training_data("train_labels.npy"),
        cells=HELD_OUT_CELLS,
    output:
        per_slice=scores_table("per_slice"),
        per_fold=scores_table("per_fold"),
        summary=scores_table("summary"),
        challenge_thresholds=scores_table("challenge_thresholds"),
        warnings="results/{experiment}/metrics/warnings.tsv",
    log:
        "results/{experiment}/logs/evaluate.log",
    benchmark:
        "results/{experiment}/benchmarks/evaluate.tsv"
    conda:
        "../envs/cellseg.yaml"
    params:
        threshold=lambda w: experiment_config(w)["eval"]["threshold"],
    script:
        "../scripts/evaluate.py"
