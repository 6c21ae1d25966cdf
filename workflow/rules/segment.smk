# Segment new stacks (segment.stacks) with an experiment's trained fold models.


rule segment_stack:
    input:
        stack=lambda w: segment_fetched(w, "npy"),
        record=lambda w: segment_fetched(w, "json"),
        models=each_fold("results/{experiment}/models/fold{fold}.pt"),
    output:
        probability="results/{experiment}/segment/{name}/probability.tif",
        uncertainty="results/{experiment}/segment/{name}/uncertainty.tif",
        labels="results/{experiment}/segment/{name}/labels.tif",
        summary="results/{experiment}/segment/{name}/summary.tsv",
    log:
        "results/{experiment}/logs/segment/{name}.log",
    benchmark:
        "results/{experiment}/benchmarks/segment/{name}.tsv"
    conda:
        "../envs/cellseg.yaml"
    threads: lambda w: experiment_config(w)["train"]["threads"]
    resources:
        gpu=lambda w: experiment_config(w)["train"]["gpus"],
    params:
        predict=lambda w: experiment_config(w)["predict"],
        segment=lambda w: {
            k: v for k, v in experiment_config(w)["segment"].items() if k != "stacks"
        },
    script:
        "../scripts/segment_stack.py"


rule segment_report:
    input:
        template=str(TEMPLATES / "segment_report.html.j2"),
        stack=lambda w: segment_fetched(w, "npy"),
        record=lambda w: segment_fetched(w, "json"),
        probability="results/{experiment}/segment/{name}/probability.tif",
        uncertainty="results/{experiment}/segment/{name}/uncertainty.tif",
        labels="results/{experiment}/segment/{name}/labels.tif",
        summary="results/{experiment}/segment/{name}/summary.tsv",
        scores="results/{experiment}/metrics/summary.tsv",
        models=each_fold("results/{experiment}/models/fold{fold}.pt"),
    output:
        "results/{experiment}/segment/{name}/report.html",
    log:
        "results/{experiment}/logs/segment_report/{name}.log",
    conda:
        "../envs/cellseg.yaml"
    params:
        segment=lambda w: {
            k: v for k, v in experiment_config(w)["segment"].items() if k != "stacks"
        },
    script:
        "../scripts/render_segment_report.py"


rule segment:
    input:
        segment_outputs(),
