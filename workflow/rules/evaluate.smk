# Score every held-out slice and summarise per fold and over folds.


rule evaluate:
    input:
        unpack(fold_inputs(predictions=HELD_OUT)),
        folds="results/{experiment}/folds.tsv",
        labels=training_data("train_labels.npy"),
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
