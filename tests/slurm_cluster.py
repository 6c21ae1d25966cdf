"""A real single-node SLURM (munged, slurmctld, slurmd) on 127.0.0.1 for the profile tests.

Debian's slurmctld, slurmd and munge packages (.ci/run installs them). The config must be
/etc/slurm/slurm.conf: job steps drop SLURM_CONF from their environment. Any file already
there is put back afterwards. Two partitions, ``cpu`` and ``gpu``, as the profiles name
them; the node advertises one count-only GPU, so ``--gpus=1`` is scheduled without a
device. No accounting daemon: Snakemake's status checks use squeue, and finished jobs stay
visible to ``scontrol show job`` for MinJobAge seconds. Daemons are stopped by the pids
they were started with, nothing broader.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
GRES = Path("/etc/slurm/gres.conf")
MUNGE_PID = Path("/run/munge/munged.pid")
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/bin/sbatch", "/usr/bin/squeue")


def available() -> tuple[bool, str]:
    missing = [path for path in DAEMONS if not Path(path).exists()]
    if missing:
        return False, f"SLURM or munge is not installed ({', '.join(missing)}); .ci/run installs them"
    if os.geteuid() != 0:
        return False, "starting slurmd and munged needs root"
    return True, ""


class SingleNodeSlurm:
    def __init__(self, state: Path, memory_mb: int = 20000, cpus: int = 2) -> None:
        self.state = state
        self.host = socket.gethostname().split(".")[0]
        self.pids: dict[str, int] = {}
        self.saved: dict[Path, bytes | None] = {}
        self.conf = f"""# written by cellseg's tests/slurm_cluster.py
ClusterName=cellseg-test
SlurmctldHost={self.host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation={state}/ctld
SlurmdSpoolDir={state}/spool
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
SlurmctldLogFile={state}/slurmctld.log
SlurmdLogFile={state}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=1000
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=3600
MpiDefault=none
NodeName={self.host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes={self.host} MaxTime=INFINITE State=UP
"""

    def _write(self, path: Path, text: str) -> None:
        self.saved[path] = path.read_bytes() if path.exists() else None
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def start(self) -> None:
        for folder in ("ctld", "spool"):
            (self.state / folder).mkdir(parents=True, exist_ok=True)
        self._write(CONF, self.conf)
        self._write(GRES, f"NodeName={self.host} Name=gpu Count=1 File=/dev/null\n")
        run_dir = MUNGE_PID.parent
        run_dir.mkdir(parents=True, exist_ok=True)
        shutil.chown(run_dir, "munge", "munge")
        if not MUNGE_PID.exists():
            subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
            self.pids["munged"] = self._wait_for_pid(MUNGE_PID)
        subprocess.run(["/usr/sbin/slurmctld"], check=True)
        self.pids["slurmctld"] = self._wait_for_pid(self.state / "slurmctld.pid")
        subprocess.run(["/usr/sbin/slurmd"], check=True)
        self.pids["slurmd"] = self._wait_for_pid(self.state / "slurmd.pid")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True).stdout.strip()
            if state and state.split()[0].rstrip("*") in ("idle", "mixed", "allocated"):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the SLURM node did not come up (sinfo: {state!r}); logs in {self.state}")

    @staticmethod
    def _wait_for_pid(path: Path) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if path.exists() and path.read_text().strip():
                return int(path.read_text().split()[0])
            time.sleep(0.1)
        raise RuntimeError(f"no pid file at {path}")

    def stop(self) -> None:
        for name in ("slurmd", "slurmctld", "munged"):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            else:
                os.kill(pid, signal.SIGKILL)
        for path, content in self.saved.items():
            if content is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(content)

    def job(self, job_id: str) -> dict[str, str]:
        """``scontrol show job`` as key -> value."""
        text = subprocess.run(["scontrol", "show", "job", job_id], capture_output=True, text=True, check=True).stdout
        return dict(field.split("=", 1) for field in text.split() if "=" in field)
