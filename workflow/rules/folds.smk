# Split the labelled slices into cross-validation folds, per experiment.


rule split_folds:
    input:
        labelled=training_data("train_slices.tsv"),
    output:
        "results/{experiment}/folds.tsv",
    log:
        "results/{experiment}/logs/split_folds.log",
    conda:
        "../envs/cellseg.yaml"
    params:
        folds=lambda w: experiment_config(w)["cv"]["folds"],
        scheme=lambda w: experiment_config(w)["cv"]["scheme"],
        seed=lambda w: experiment_config(w)["seed"],
    script:
        "../scripts/split_folds.py"
