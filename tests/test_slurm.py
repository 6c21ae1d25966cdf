"""The cluster profiles, end to end against a real single-node SLURM on this machine.

The smoke config runs through ``--profile profiles/slurm`` and, for the submission path of
``profiles/slurm-gpu``, through the GPU profile on a node that advertises a count-only
GPU. SLURM's own records (``scontrol show job``) show every job went through it, on the
partition and with the GPUs the profile asked for. A training job cancelled mid-run with
``scancel`` and submitted again resumes from its checkpoint.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time

import pytest
import yaml

from conftest import REPO, copy_workflow, require
from slurm_cluster import SingleNodeSlurm, available

# A hang must fail the test, not CI: SIGKILL, since a status loop may ignore SIGTERM.
# 15 minutes: the smoke run takes 2-3 here alone, 7 when a training shares the 2 cores.
TIMEOUT_S = 900


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    ok, reason = available()
    require(ok, reason)
    cluster = SingleNodeSlurm(tmp_path_factory.mktemp("slurm-state"))
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="module")
def work(isbi_dir, tmp_path_factory):
    """One copy of the workflow for the module: later tests reuse the fetched stacks."""
    root = tmp_path_factory.mktemp("slurm-work")
    (root / "shared").symlink_to(isbi_dir.parent, target_is_directory=True)
    return copy_workflow(root / "work")


def run_profile(work, profile: str, *targets: str, options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    command = [
        "timeout",
        "-s",
        "KILL",
        str(TIMEOUT_S),
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        profile,
        "--configfile",
        "config/smoke.yaml",
        *options,
        # Without slurmdbd, sacct never sees a job end: ask squeue, and ask early.
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--",
        *targets,
    ]
    return subprocess.run(command, cwd=work, capture_output=True, text=True)


def submitted(output: str) -> dict[str, str]:
    """SLURM job id per Snakemake job, from Snakemake's own log."""
    return dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", output))


def test_profiles_name_only_what_a_user_edits():
    for name in ("local", "slurm", "slurm-gpu"):
        profile = yaml.safe_load((REPO / "profiles" / name / "config.yaml").read_text())
        assert profile["rerun-incomplete"] is True
    gpu = yaml.safe_load((REPO / "profiles/slurm-gpu/config.yaml").read_text())["set-resources"]
    assert all(
        gpu[rule]["gpu"] == 1 and gpu[rule]["slurm_partition"] == "gpu"
        for rule in ("train_unet", "predict_held_out", "predict_test_volume")
    )
    cpu = yaml.safe_load((REPO / "profiles/slurm/config.yaml").read_text())["set-resources"]
    assert all(cpu[rule]["gpu"] == 0 for rule in ("train_unet", "predict_held_out", "predict_test_volume"))


def test_smoke_run_goes_through_slurm(slurm, work):
    began = time.monotonic()
    result = run_profile(work, "profiles/slurm")
    assert result.returncode == 0, result.stderr[-4000:]
    assert (work / "results/smoke/report.html").stat().st_size > 100_000
    jobs = submitted(result.stderr)
    assert len(jobs) >= 10, result.stderr[-3000:]
    for slurm_id in jobs.values():
        record = slurm.job(slurm_id)
        assert record["JobState"] == "COMPLETED" and record["Partition"] == "cpu", record
        assert "gres/gpu" not in record.get("TRES", "")
    print(f"slurm profile: {len(jobs)} SLURM jobs {sorted(jobs.values(), key=int)} in {time.monotonic() - began:.0f} s")


def test_gpu_profile_asks_slurm_for_one_gpu_per_fold(slurm, work):
    # After the run above only training is submitted again, through the GPU profile.
    result = run_profile(
        work,
        "profiles/slurm-gpu",
        "results/smoke/models/fold0.pt",
        "results/smoke/models/fold1.pt",
        options=("--forcerun", "train_unet"),
    )
    # The node's GPU has no device behind it: training falls back to the CPU, SLURM still allots it.
    assert result.returncode == 0, result.stderr[-4000:]
    jobs = submitted(result.stderr)
    records = [slurm.job(i) for i in jobs.values()]
    training = [r for r in records if r.get("Comment", "").startswith("rule_train_unet")]
    assert len(training) == 2 and len(records) == 2, records
    for record in training:  # --gpus=1 shows as a per-job TRES
        assert record["Partition"] == "gpu" and record.get("TresPerJob") in ("gres:gpu:1", "gres/gpu:1"), record
    for record in records:
        if record not in training:
            assert record["Partition"] == "cpu" and "gpu" not in record.get("TresPerJob", ""), record
    print(f"slurm-gpu profile: SLURM jobs {sorted(jobs.values(), key=int)}")


def test_cancelled_training_resumes_from_its_checkpoint(slurm, work):
    config = work / "slow.yaml"
    config.write_text("train:\n  steps: 200\nresources:\n  checkpoint_every: 10\n")
    target = "results/smoke/models/fold0.pt"
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "profiles/slurm",
        "--configfile",
        "config/smoke.yaml",
        str(config),
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        "--",
        target,
    ]
    first = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    checkpoint = work / "results/smoke/models/fold0.checkpoint.pt"
    deadline = time.monotonic() + TIMEOUT_S
    while not checkpoint.exists() and time.monotonic() < deadline and first.poll() is None:
        time.sleep(0.5)
    assert checkpoint.exists(), "training never wrote a checkpoint"
    running = subprocess.run(["squeue", "-h", "-o", "%i %j"], capture_output=True, text=True).stdout.split("\n")
    (job_id,) = [line.split()[0] for line in running if line.strip()]
    subprocess.run(["scancel", job_id], check=True)  # as a pre-empting scheduler would
    _, _stderr = first.communicate(timeout=TIMEOUT_S)
    assert first.returncode != 0 and slurm.job(job_id)["JobState"] == "CANCELLED"

    again = subprocess.run(
        ["timeout", "-s", "KILL", str(TIMEOUT_S), *command], cwd=work, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr[-4000:]
    log = (work / "results/smoke/logs/train_unet/fold0.log").read_text()
    assert re.search(r"resuming fold 0 from its checkpoint at step [1-9]\d* of 200", log), log[-2000:]
    print(f"cancelled SLURM job {job_id}, resumed as {sorted(submitted(again.stderr).values(), key=int)}")
