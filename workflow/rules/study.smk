# A study's comparison of its experiments: tables, figures and its own report.


rule compare_experiments:
    input:
        unpack(study_inputs),
    output:
        experiments="results/studies/{study}/experiments.tsv",
        comparisons="results/studies/{study}/comparisons.tsv",
    log:
        "results/studies/{study}/logs/compare_experiments.log",
    conda:
        "../envs/cellseg.yaml"
    params:
        runs={name: list(runs) for name, runs in STUDY_RUNS.items()},
        reference=study_reference(),
        samples=config["study"]["bootstrap_samples"],
        seed=EXPERIMENTS[study_reference()]["seed"],
    script:
        "../scripts/compare_experiments.py"


rule draw_study_figures:
    input:
        experiments="results/studies/{study}/experiments.tsv",
        comparisons="results/studies/{study}/comparisons.tsv",
    output:
        forest="results/studies/{study}/figures/forest.png",
        cost="results/studies/{study}/figures/quality_against_cost.png",
    log:
        "results/studies/{study}/logs/draw_study_figures.log",
    conda:
        "../envs/cellseg.yaml"
    script:
        "../scripts/draw_study_figures.py"


rule render_study_report:
    input:
        template=str(TEMPLATES / "study_report.html.j2"),
        experiments="results/studies/{study}/experiments.tsv",
        comparisons="results/studies/{study}/comparisons.tsv",
        forest="results/studies/{study}/figures/forest.png",
        cost="results/studies/{study}/figures/quality_against_cost.png",
        reports=[f"results/{name}/report.html" for name in STUDY_RUNS],
    output:
        report(
            "results/studies/{study}/report.html",
            caption="../report/study.rst",
            category="Study",
        ),
    log:
        "results/studies/{study}/logs/render_study_report.log",
    conda:
        "../envs/cellseg.yaml"
    params:
        reference=study_reference(),
        differences=study_differences(),
        samples=config["study"]["bootstrap_samples"],
    script:
        "../scripts/render_study_report.py"
