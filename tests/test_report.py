"""Figures and the HTML report: drawn from real tables, opened in a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from cellseg.figures import error_map
from cellseg.report import git_state
from conftest import REPO, planned_jobs, require, snakemake

CHROMIUM = Path("/usr/bin/chromium")


def test_error_map_codes_both_kinds_of_error():
    labels = np.array([[1, 1, 0, 0]])
    probability = np.array([[0.9, 0.1, 0.2, 0.8]])
    assert error_map(probability, labels, 0.5).tolist() == [[0, 2, 1, 3]]


def test_git_state_outside_a_checkout(tmp_path):
    assert git_state(tmp_path)["dirty"] == "unknown"
    assert len(git_state(REPO)["commit"]) == 40


def test_report_is_one_self_contained_file(isbi_run):
    work, _ = isbi_run
    html = (work / "results/smoke/report.html").read_text()
    assert "cellseg: smoke" in html and 'id="summary-table"' in html
    # Every image is embedded; nothing is fetched from anywhere.
    sources = re.findall(r'<img[^>]* src="([^"]{0,30})', html)
    assert len(sources) >= 30 + 3 and all(s.startswith("data:image/") for s in sources)
    assert not re.search(r'(src|href)="(https?:|//)', html)
    for needle in ("git commit", "torch", "pixel sha256", "200da3d452d726e6", "experiment: smoke"):
        assert needle in html
    snakemake_version = metadata.version("snakemake")
    assert f'<td class="name">snakemake (training)</td><td class="name">{snakemake_version}</td>' in html


def test_editing_the_template_regenerates_only_the_report(isbi_run, tmp_path):
    work, _ = isbi_run
    copy = tmp_path / "work"
    shutil.copytree(work, copy, symlinks=True)
    template = copy / "workflow/templates/report.html.j2"
    template.write_text(template.read_text().replace('<h2 id="summary">Summary</h2>', '<h2 id="summary">Results</h2>'))
    result = snakemake(copy, "--configfile", "config/smoke.yaml", "-n")
    assert result.returncode == 0, result.stderr
    assert planned_jobs(result.stdout) == {"render_report": 1, "all": 1}


def test_report_opens_in_headless_chromium(isbi_run, tmp_path):
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is not installed")
    work, _ = isbi_run
    report = work / "results/smoke/report.html"
    outside = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.on(
            "request",
            lambda request: outside.append(request.url) if not request.url.startswith(("file:", "data:")) else None,
        )
        page.goto(report.as_uri(), wait_until="load")
        page.screenshot(path=str(tmp_path / "report.png"))
        widths = page.eval_on_selector_all("img", "images => images.map(i => i.complete ? i.naturalWidth : 0)")
        values = page.eval_on_selector_all("#summary-table td.value", "cells => cells.map(c => c.textContent)")
        challenge = page.eval_on_selector_all("#challenge-table td", "cells => cells.map(c => c.textContent)")
        browser.close()
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert len(widths) >= 33 and all(width > 0 for width in widths)
    metrics = pd.read_csv(work / "results/smoke/metrics/summary.tsv", sep="\t").metric.tolist()
    assert "v_rand_thinned" in metrics and "v_info_thinned" in metrics
    assert len(values) == 2 * len(metrics) and all(np.isfinite(float(v)) for v in values)
    assert len(challenge) == 11 * 4 and all(np.isfinite(float(v)) for v in challenge)
    assert outside == []


def test_snakemakes_own_report_holds_the_annotated_outputs(isbi_run, tmp_path):
    work, _ = isbi_run
    archive = tmp_path / "snakemake_report.zip"
    result = snakemake(work, "--configfile", "config/smoke.yaml", "--report", str(archive))
    assert result.returncode == 0, result.stderr
    with zipfile.ZipFile(archive) as bundle:
        names = bundle.namelist()
        pages = sorted((n for n in names if n.endswith("/report.html")), key=len)
        page = bundle.read(pages[0]).decode()  # Snakemake's own; ours is under data/raw/
        assert "cellseg: smoke" in bundle.read(pages[1]).decode()
    for name in (
        "summary.tsv",
        "per_slice.tsv",
        "challenge_thresholds.tsv",
        "metrics_by_fold.png",
        "training_curves.png",
        "slices/slice_029.jpg",
    ):
        assert any(n.endswith(name) for n in names), name
    assert len(names) == len(set(names))  # each output once
    for caption in ("challenge&#39;s sweep", "false membrane and missed membrane", "full provenance"):
        assert caption.replace("&#39;", "'") in page or caption in page, caption


def test_figures_of_the_smoke_run(isbi_run):
    work, _ = isbi_run
    figures = work / "results/smoke/figures"
    assert len(list((figures / "slices").glob("slice_*.jpg"))) == 30
    for name in ("training_curves.png", "metrics_by_fold.png", "test_volume.jpg"):
        assert (figures / name).stat().st_size > 10_000
    per_slice = pd.read_csv(work / "results/smoke/metrics/per_slice.tsv", sep="\t")
    assert len(per_slice) == 30


def test_importing_the_figures_leaves_a_notebooks_matplotlib_backend_alone():
    code = (
        "import matplotlib; matplotlib.use('svg'); import cellseg.figures, cellseg.report; "
        "print(matplotlib.get_backend())"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "svg"
