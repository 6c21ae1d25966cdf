# Score every held-out slice and summarise per fold and over folds.


rule evaluate:
    input:
        folds="results/{experiment}/folds.tsv",
        labels="resources/unpacked/train_labels.npy",
        predictions=each_fold("results/{experiment}/predictions/held_out/fold{fold}"),
    output:
        per_slice="results/{experiment}/metrics/per_slice.tsv",
        per_fold="results/{experiment}/metrics/per_fold.tsv",
        summary="results/{experiment}/metrics/summary.tsv",
    log:
        "results/{experiment}/logs/evaluate.log",
    conda:
        "../envs/cellseg.yaml"
    params:
        threshold=lambda w: experiment_config(w)["eval"]["threshold"],
    script:
        "../scripts/evaluate.py"
