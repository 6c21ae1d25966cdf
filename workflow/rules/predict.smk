# Predict each fold's held-out slices with its model, and the test volume with all of them.


rule predict_held_out:
    input:
        model=MODEL,
        images=training_data("train_images.npy"),
        record=training_data("train_images.json"),
        folds="results/{experiment}/folds.tsv",
    output:
        directory(HELD_OUT),
    log:
        "results/{experiment}/logs/predict_held_out/fold{fold}.log",
    benchmark:
        "results/{experiment}/benchmarks/predict_held_out/fold{fold}.tsv"
    conda:
        "../envs/cellseg.yaml"
    threads: lambda w: experiment_config(w)["resources"]["predict_threads"]
    resources:
        gpu=lambda w: experiment_config(w)["resources"]["predict_gpus"],
    params:
        predict=lambda w: experiment_config(w)["predict"],
    script:
        "../scripts/predict_held_out.py"


rule predict_test_volume:
    input:
        models=each_fold(MODEL),
        images=test_data("test_images.npy"),
        record=test_data("test_images.json"),
        thresholds=CELL_THRESHOLDS,
    output:
        probability=TEST_VOLUME,
        # The fold models' disagreement: their standard deviation.
        uncertainty=TEST_UNCERTAINTY,
        cells=TEST_CELLS,
    log:
        "results/{experiment}/logs/predict_test_volume.log",
    benchmark:
        "results/{experiment}/benchmarks/predict_test_volume.tsv"
    conda:
        "../envs/cellseg.yaml"
    threads: lambda w: experiment_config(w)["resources"]["predict_threads"]
    resources:
        gpu=lambda w: experiment_config(w)["resources"]["predict_gpus"],
    params:
        predict=lambda w: experiment_config(w)["predict"],
        segment=lambda w: segment_settings(w),
    script:
        "../scripts/predict_test_volume.py"
