# Train one UNet per fold on the slices that fold does not hold out.


rule train_unet:
    input:
        images=training_data("train_images.npy"),
        labels=training_data("train_labels.npy"),
        record=training_data("train_images.json"),
        folds="results/{experiment}/folds.tsv",
    output:
        model=MODEL,
        # The model's metadata (train.train_fold) for readers without torch.
        metadata=MODEL_RECORD,
        curve=CURVE,
    log:
        "results/{experiment}/logs/train_unet/fold{fold}.log",
    benchmark:
        "results/{experiment}/benchmarks/train_unet/fold{fold}.tsv"
    conda:
        "../envs/cellseg.yaml"
    threads: training_threads
    resources:
        gpu=lambda w: experiment_config(w)["resources"]["train_gpus"],
    params:
        recipe=experiment_recipe,
        checkpoint="results/{experiment}/models/fold{fold}.checkpoint.pt",
    script:
        "../scripts/train_unet.py"
