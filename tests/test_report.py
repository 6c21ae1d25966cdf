"""Figures and the HTML report: drawn from real tables, opened in a real browser."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellseg.figures import error_map
from cellseg.report import git_state, representative_slice
from conftest import REPO, planned_jobs, require, snakemake

CHROMIUM = Path("/usr/bin/chromium")


def test_error_map_codes_both_kinds_of_error():
    labels = np.array([[1, 1, 0, 0]])
    probability = np.array([[0.9, 0.1, 0.2, 0.8]])
    assert error_map(probability, labels, 0.5).tolist() == [[0, 2, 1, 3]]


def test_the_representative_slice_is_the_closest_to_the_median_that_no_warning_names():
    per_slice = pd.DataFrame({"slice": [0, 1, 2, 3], "fold": [0, 0, 1, 1], "membrane_dice": [0.50, 0.60, 0.70, 0.90]})
    # Four slices: the median 0.65 lies between two; 0.60 and 0.70 tie, the lower number wins.
    chosen, median = representative_slice(per_slice)
    assert median == pytest.approx(0.65) and chosen.slice == 1
    chosen, median = representative_slice(per_slice, {1})  # slice 1 is named by a warning
    assert median == pytest.approx(0.65) and chosen.slice == 2
    chosen, _ = representative_slice(per_slice, {0, 1, 2, 3})  # every slice named: the closest still
    assert chosen.slice == 1


def test_git_state_outside_a_checkout(tmp_path):
    assert git_state(tmp_path)["dirty"] == "unknown"
    assert len(git_state(REPO)["commit"]) == 40


def test_a_users_config_beside_the_checkout_is_not_an_uncommitted_change(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "Snakefile").write_text("rule all:\n")
    git("add", "Snakefile")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "first")
    (tmp_path / "my.yaml").write_text("segment: {}\n")  # untracked, as the README suggests
    assert git_state(tmp_path)["dirty"] == "no"
    (tmp_path / "Snakefile").write_text("rule all:\n    input: []\n")  # the workflow edited
    assert git_state(tmp_path)["dirty"] == "yes"


def test_report_is_one_self_contained_file(isbi_run):
    work, _ = isbi_run
    html = (work / "results/smoke/report.html").read_text()
    assert "cellseg: smoke" in html and 'id="summary-table"' in html
    # Every image is embedded; nothing is fetched from anywhere.
    sources = re.findall(r'<img[^>]* src="([^"]{0,30})', html)
    assert len(sources) == 3 and all(s.startswith("data:image/") for s in sources)
    assert not re.search(r'(src|href)="(https?:|//)', html)
    # The viewer's layers too: every held-out slice and 12 test sections, as WebP data URIs.
    import json

    viewer = json.loads(re.search(r'<script type="application/json" id="viewer-data">(.*?)</script>', html, re.S)[1])
    assert [s["id"] for s in viewer] == ["held_out", "test"]
    assert [s["index"] for s in viewer[0]["slices"]] == list(range(30)) and len(viewer[1]["slices"]) == 12
    for item in viewer[0]["slices"] + viewer[1]["slices"]:
        assert all(item[k].startswith("data:image/webp;base64,") for k in ("image", "probability", "masks", "segments"))
    # The held-out slices' cells, and where they split or merge a true cell, shown first.
    assert viewer[0]["layers"][-2:] == ["segments", "cell_errors"] and viewer[0]["default_on"] == ["cell_errors"]
    assert all(item["cell_errors"].startswith("data:image/webp;base64,") for item in viewer[0]["slices"])
    # The headline leads with the cells' scores, and says how the cells were made.
    assert html.index('data-score="cells_v_rand"') < html.index('data-score="membrane_dice"')
    assert 'id="cells-made"' in html and "metrics/cell_thresholds.tsv" in html
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
    assert len(widths) == 3 and all(width > 0 for width in widths)
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


def browse(report: Path, steps, screenshots: Path | None = None, width: int = 1280):
    """Open ``report`` in headless Chromium, run ``steps(page)`` and return its result
    with what went wrong on the way: requests that left the page, console errors."""
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "the playwright package is not installed")
    outside, errors = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
        )
        page = browser.new_page(viewport={"width": width, "height": 1000})
        page.on("request", lambda r: outside.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(report.as_uri(), wait_until="load")
        page.evaluate("window.cellsegViewer.ready()")
        result = steps(page)
        browser.close()
    return result, outside, errors


def viewer_shows(page) -> dict:
    """The viewer's slice label, its membrane Dice cell and a digest of both canvases."""
    page.evaluate("window.cellsegViewer.ready()")
    return page.evaluate(
        """() => {
        const digest = id => {
            const canvas = document.getElementById(id);
            const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
            let sum = 0;
            for (let i = 0; i < data.length; i += 1) sum = (sum * 31 + data[i]) % 1000000007;
            return sum;
        };
        const dice = document.querySelector('#viewer-scores td[data-score="membrane_dice"]');
        return {label: document.getElementById("viewer-slice-label").textContent,
                dice: dice ? dice.textContent : null, left: digest("viewer-left"), right: digest("viewer-right")};
    }"""
    )


def centre_pixels(page) -> dict:
    """The RGB at the centre of both panes and the section's own pixel at the view's centre."""
    page.evaluate("window.cellsegViewer.ready()")
    return page.evaluate(
        """async () => {
        const viewer = window.cellsegViewer, state = viewer.state;
        const item = viewer.sets[state.set].slices[state.index];
        const at = (id) => {
            const canvas = document.getElementById(id);
            const pixel = canvas.getContext("2d").getImageData(canvas.width / 2, canvas.height / 2, 1, 1);
            return Array.from(pixel.data.slice(0, 3));
        };
        const image = new Image();
        image.src = item.image;
        await image.decode();
        const canvas = document.createElement("canvas");
        canvas.width = image.naturalWidth; canvas.height = image.naturalHeight;
        const context = canvas.getContext("2d");
        context.drawImage(image, 0, 0);
        const own = Array.from(context.getImageData(Math.floor(state.cx), Math.floor(state.cy), 1, 1).data.slice(0, 3));
        return {left: at("viewer-left"), right: at("viewer-right"), own: own, zoom: state.zoom};
    }"""
    )


def geometry(page) -> dict:
    """The viewer's zoom and centre (section pixels), the right pane's box on the page and
    its screen pixels per section pixel at zoom 1 (the section fitted to the canvas, the
    canvas scaled to its content box, inside its border)."""
    page.evaluate("window.cellsegViewer.ready()")
    return page.evaluate(
        """() => {
        const viewer = window.cellsegViewer, state = viewer.state, canvas = document.getElementById("viewer-right");
        const box = canvas.getBoundingClientRect(), item = viewer.sets[state.set].slices[state.index];
        const fit = Math.min(canvas.width / item.width, canvas.height / item.height)
            * canvas.clientWidth / canvas.width;
        return {zoom: state.zoom, cx: state.cx, cy: state.cy, fit: fit,
                box: {x: box.left, y: box.top, width: box.width, height: box.height}};
    }"""
    )


def test_the_viewer_responds_in_headless_chromium(isbi_run, tmp_path):
    work, _ = isbi_run
    report = work / "results/smoke/report.html"
    per_slice = pd.read_csv(work / "results/smoke/metrics/per_slice.tsv", sep="\t").set_index("slice")

    def steps(page):
        seen = {"first": viewer_shows(page)}
        page.locator("div.headline").screenshot(path=str(tmp_path / "headline.png"))
        page.locator("#viewer").screenshot(path=str(tmp_path / "viewer.png"))
        page.eval_on_selector("#viewer-slider", "e => { e.value = 5; e.dispatchEvent(new Event('input')); }")
        seen["slider"] = viewer_shows(page)
        page.locator("#viewer").focus()
        page.keyboard.press("ArrowRight")
        seen["right"] = viewer_shows(page)
        page.keyboard.press("ArrowLeft")
        seen["left"] = viewer_shows(page)
        page.locator("#viewer-opacity").focus()  # the opacity slider keeps its arrow keys
        page.keyboard.press("ArrowLeft")
        seen["opacity_key"] = {**viewer_shows(page), "opacity": page.evaluate("window.cellsegViewer.state.opacity")}
        page.locator('#viewer-layers input[data-layer="probability"]').click()
        seen["probability"] = viewer_shows(page)
        ticked = page.locator("#viewer-layers input:checked")
        while ticked.count():
            ticked.first.click()
        seen["no_layers"] = viewer_shows(page)
        for _ in range(5):
            page.locator("#viewer-zoom-in").click()
        seen["zoomed"] = centre_pixels(page)
        page.locator("#viewer-zoom-in").screenshot(path=str(tmp_path / "zoom-button.png"))
        page.locator("#viewer").screenshot(path=str(tmp_path / "viewer-zoomed.png"))
        # The wheel zooms about the cursor: the section point under it stays under it.
        page.locator("#viewer-zoom-reset").click()
        box = page.locator("#viewer-right").bounding_box()
        # Whole pixels: a mouse event's clientX and clientY are whole.
        cursor = (round(box["x"] + 0.8 * box["width"]), round(box["y"] + 0.25 * box["height"]))
        page.mouse.move(*cursor)
        seen["cursor"] = cursor
        seen["wheel"] = [geometry(page)]
        for _ in range(3):
            page.mouse.wheel(0, -100)
            page.wait_for_function(f"window.cellsegViewer.state.zoom > {seen['wheel'][-1]['zoom']}")
            seen["wheel"].append(geometry(page))
        # Dragged far off, the view's centre stops at the section's corner.
        page.mouse.down()
        page.mouse.move(cursor[0] + 5000, cursor[1] + 5000, steps=5)
        page.mouse.up()
        seen["dragged"] = geometry(page)
        page.select_option("#viewer-set", label="test volume (fold ensemble)")
        seen["test"] = viewer_shows(page)
        seen["test_layers"] = page.eval_on_selector_all("#viewer-layers input", "l => l.map(i => i.dataset.layer)")
        seen["test_scores"] = page.text_content("#viewer-scores")
        seen["images"] = page.eval_on_selector_all("img", "l => l.map(i => i.complete ? i.naturalWidth : 0)")
        seen["scroll"] = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        return seen

    seen, outside, errors = browse(report, steps)
    assert outside == [] and errors == []
    assert seen["first"]["label"].startswith("slice 0, held out by fold 0 (1 of 30)")
    for key, index in (("slider", 5), ("right", 6), ("left", 5)):
        assert seen[key]["label"].startswith(f"slice {index}, held out by fold "), seen[key]
        assert seen[key]["dice"] == f"{per_slice.loc[index, 'membrane_dice']:.4f}"
    assert seen["slider"]["right"] != seen["first"]["right"]  # another slice drawn
    assert seen["probability"]["right"] != seen["left"]["right"]  # a layer ticked changes the pixels
    assert seen["probability"]["left"] == seen["left"]["left"]  # the plain image stays
    assert seen["no_layers"]["right"] == seen["no_layers"]["left"]  # nothing over the image: the panes agree
    assert seen["opacity_key"]["label"] == seen["left"]["label"] and seen["opacity_key"]["opacity"] == 0.59
    (x, y) = seen["cursor"]
    for view in seen["wheel"]:  # the section point under the cursor, from the view's geometry
        per_screen = 1 / (view["zoom"] * view["fit"])  # section pixels per screen pixel
        view["under"] = (
            view["cx"] + (x - view["box"]["x"] - view["box"]["width"] / 2) * per_screen,
            view["cy"] + (y - view["box"]["y"] - view["box"]["height"] / 2) * per_screen,
        )
    assert seen["wheel"][-1]["zoom"] == pytest.approx(1.25**3)
    for view in seen["wheel"][1:]:
        assert view["under"] == pytest.approx(seen["wheel"][0]["under"], abs=1e-6)
    assert seen["wheel"][0]["under"][0] > seen["wheel"][0]["cx"]  # the cursor was right of the centre
    assert (seen["dragged"]["cx"], seen["dragged"]["cy"]) == (0, 0)
    zoomed = seen["zoomed"]
    assert zoomed["zoom"] == 32 and zoomed["left"] == zoomed["right"] == zoomed["own"]
    assert seen["test"]["label"].startswith("test-volume slice 0 (1 of 12)")  # 12 of its 30, spread
    assert seen["test_layers"] == ["prediction", "probability", "uncertainty", "segments"]
    assert seen["test_scores"] == "no ground truth here: no scores"
    assert len(seen["images"]) >= 3 and all(width > 0 for width in seen["images"])
    assert seen["scroll"][0] <= seen["scroll"][1]  # no horizontal scrolling at 1280 px
    scroll, outside, errors = browse(
        report, lambda page: page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]"), width=800
    )
    assert scroll[0] <= scroll[1] and outside == [] and errors == []  # nor at 800 px: wide tables scroll alone
    for name in ("headline.png", "viewer.png", "viewer-zoomed.png"):
        assert (tmp_path / name).stat().st_size > 10_000


def test_warnings_name_what_is_wrong_and_open_it_in_the_viewer(isbi_run, tmp_path):
    work, _ = isbi_run
    # The clean smoke run: no fold predicts one class, every training's loss falls. (Its
    # 40-step models spread widely, so a slice may stand out of its fold; the ISBI
    # default's slices do not: no warning at all on the budget study's runs.)
    clean = pd.read_csv(work / "results/smoke/metrics/warnings.tsv", sep="\t")
    assert clean.slice.notna().all() and clean.message.str.contains("below its fold's median").all()
    assert "training loss did not fall" not in (work / "results/smoke/report.html").read_text()
    broken = tmp_path / "work"
    shutil.copytree(work, broken, symlinks=True)
    run = broken / "results/smoke"
    folds = pd.read_csv(run / "folds.tsv", sep="\t")
    # Fold 1's model "predicts" membrane everywhere; one slice of fold 0 is inverted;
    # fold 0's training loss is made flat.
    import tifffile

    for index in folds.slice[folds.fold == 1]:
        path = run / f"predictions/held_out/fold1/slice_{index:03d}.tif"
        tifffile.imwrite(path, np.zeros_like(tifffile.imread(path)))
    inverted = int(folds.slice[folds.fold == 0].iloc[0])
    path = run / f"predictions/held_out/fold0/slice_{inverted:03d}.tif"
    tifffile.imwrite(path, 1 - tifffile.imread(path))
    curve = pd.read_csv(run / "models/fold0_curve.tsv", sep="\t").assign(loss=0.5)
    curve.to_csv(run / "models/fold0_curve.tsv", sep="\t", index=False)
    # Snakemake dates a directory output by the folder, which rewriting files leaves alone.
    result = snakemake(broken, "--configfile", "config/smoke.yaml", "--forcerun", "evaluate")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "rule train_unet:" not in result.stderr and "rule evaluate:" in result.stderr

    def steps(page):
        messages = page.eval_on_selector_all("#warnings li", "items => items.map(i => i.textContent)")
        links = page.eval_on_selector_all("#warnings a[data-viewer-slice]", "l => l.map(a => a.dataset.viewerSlice)")
        page.locator("#warnings").screenshot(path=str(tmp_path / "warnings.png"))
        page.locator("#warnings a[data-viewer-slice]").first.click()
        return messages, links, viewer_shows(page)

    (messages, links, shown), outside, errors = browse(run / "report.html", steps)
    assert outside == [] and errors == []
    text = " ".join(messages)
    assert "fold 1 predicts 0.00 % of its held-out pixels as cell" in text
    assert f"slice {inverted}: membrane Dice" in text and "below its fold's median" in text
    assert "fold 0's training loss did not fall" in text
    assert links and shown["label"].startswith(f"slice {links[0]}, held out by fold ")


def test_the_report_benchmark_times_a_real_chromium(isbi_run):
    work, _ = isbi_run
    require(CHROMIUM.exists(), f"{CHROMIUM} is missing (apt-get install chromium)")
    report = work / "results/smoke/report.html"
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.report", str(report), "--runs", "2"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0].endswith(f"{report.stat().st_size / 1e6:.1f} MB; {os.cpu_count()} CPUs")
    times = [[float(value) for value in re.findall(r"_s (\d+\.\d+)", line)] for line in lines[1:]]
    assert len(times) == 3 and all(len(row) == 3 for row in times)  # two runs and the median
    for load, first_slice, next_slice in times[:2]:
        assert 0 < load <= first_slice <= next_slice  # each a later moment of the same run
    for column, median in zip(zip(*times[:2], strict=True), times[2], strict=True):
        assert min(column) - 0.01 <= median <= max(column) + 0.01  # of two runs, printed to 0.01 s
