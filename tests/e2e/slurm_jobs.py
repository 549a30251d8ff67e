"""Helpers for tests/e2e/test_slurm.py: the submitting environment, job submission and
tracking (``Jobs``), and reading a job's state from ``scontrol`` / ``sacct``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SLURM_DIR = REPO / "slurm"
DEMO = REPO / "configs" / "demo.yaml"
FLANFORGE = Path(sys.executable).parent / "flanforge"

JOB_TIMEOUT = 900  # s, per job: the first run also compiles DeepSpeed's CPU comm op
TERMINAL = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
CLUSTER_UNAVAILABLE = range(10, 20)  # cluster.sh's "cannot start Slurm" exit codes

# slurm/common.sh's exit codes
EX_DATAERR, EX_NOINPUT, EX_LOCKED = 65, 66, 75

# The demo config with a smaller model (as tests/e2e/conftest.py's TINY): these tests
# are about the job around the training, not the training. Jobs.sbatch adds them.
TINY = (
    "model.hf_config.hidden_size=128",
    "model.hf_config.intermediate_size=256",
    "model.hf_config.num_hidden_layers=2",
    "model.vocab_size=500",
    "train.warmup_steps=5",
)
SHORT = ("train.max_steps=20", "checkpoint.every_steps=10")



def job_env() -> dict[str, str]:
    """The submitting environment: this venv first on PATH, no launcher or Slurm vars."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "SBATCH_", "SRUN_")) and k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "FLANFORGE_NODE_LAUNCHER")
    }
    env["PATH"] = f"{FLANFORGE.parent}{os.pathsep}{env.get('PATH', '')}"
    env["FLANFORGE"] = str(FLANFORGE)
    return env


class Jobs:
    """Submits jobs and cancels whatever is still queued or running at teardown."""

    def __init__(self, logs: Path):
        self.logs = logs
        self.ids: list[int] = []

    def sbatch(self, *args: str, options: tuple[str, ...] = (), script: str = "train.sbatch", check: bool = True,
               extra: tuple[str, ...] = TINY):
        cmd = [
            "sbatch", "--parsable", f"--output={self.logs}/slurm-%j.log", f"--chdir={REPO}", *options,
            str(SLURM_DIR / script), *args, *extra,
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, env=job_env(), timeout=60)
        if not check:
            return proc
        assert proc.returncode == 0, f"sbatch failed: {proc.stderr}"
        job_id = int(proc.stdout.strip().split(";")[0])
        self.ids.append(job_id)
        return job_id

    def log(self, job_id: int) -> str:
        path = self.logs / f"slurm-{job_id}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def cancel_all(self) -> None:
        live = [str(j) for j in self.ids if job_info(j).get("JobState") not in TERMINAL]
        if live:
            subprocess.run(["scancel", *live], check=False)


def job_info(job_id: int) -> dict[str, str]:
    """``scontrol show job`` as a dict (empty once the controller forgot the job)."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        return {}
    return dict(re.findall(r"(\w+)=(\S*)", proc.stdout))


def sacct_record(job_id: int) -> dict[str, str] | None:
    """The job's allocation line in sacct, or None where accounting is disabled."""
    proc = subprocess.run(
        ["sacct", "-n", "-P", "-X", "-j", str(job_id), "-o", "JobID,State,ExitCode"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    job, state, exit_code = proc.stdout.strip().splitlines()[-1].split("|")
    return {"JobID": job, "State": state.split()[0], "ExitCode": exit_code}


def wait_for(predicate, timeout: float, what: str, interval: float = 1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def wait_job(jobs: Jobs, job_id: int, timeout: float = JOB_TIMEOUT) -> dict[str, str]:
    try:
        info = wait_for(
            lambda: (i := job_info(job_id)).get("JobState") in TERMINAL and i, timeout, f"job {job_id} to end", 2.0
        )
    except AssertionError as err:
        raise AssertionError(f"{err}; state {job_info(job_id).get('JobState')}; log:\n{jobs.log(job_id)[-4000:]}") from None
    return info


def assert_job(jobs: Jobs, job_id: int, info: dict[str, str], state: str, exit_code: int) -> None:
    detail = f"job {job_id}: {info.get('JobState')} {info.get('ExitCode')}; log:\n{jobs.log(job_id)[-4000:]}"
    assert info["JobState"] == state, detail
    assert info["ExitCode"] == f"{exit_code}:0", detail
    record = sacct_record(job_id)
    if record is not None:
        assert (record["State"], record["ExitCode"]) == (state, f"{exit_code}:0"), record


def latest(out: Path) -> str:
    return (out / "checkpoints" / "latest").read_text().strip()
