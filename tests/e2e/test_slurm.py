"""The project's sbatch scripts on a real Slurm cluster started on this machine.

How the processes start: ``slurm/cluster.sh`` installs Debian's slurm-wlm with apt
when it is missing and starts munged, slurmctld and two slurmd (two nodes on this
one machine, so multi-node jobs run for real); each test submits ``slurm/train.sbatch`` (or ``train_srun.sbatch`` / ``chain.sh``) with
``sbatch``; Slurm runs one ``flanforge train`` per node through ``srun``, which
starts DeepSpeed's launcher and two CPU ranks of ``configs/demo.yaml``.

Where Slurm cannot be installed or started the tests skip with cluster.sh's reason.
FLANFORGE_SLURM_NODES in the environment overrides the node count (default 2 here);
with one node the two-node tests skip. A cluster already up is used as it is.
The cluster runs without an accounting daemon, so job records come from
``scontrol show job`` (finished jobs stay there for an hour: MinJobAge); ``sacct``
is checked as well where accounting is enabled.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from .slurm_jobs import (
    REPO,
    SLURM_DIR,
    DEMO,
    FLANFORGE,
    JOB_TIMEOUT,
    CLUSTER_UNAVAILABLE,
    EX_DATAERR,
    EX_NOINPUT,
    EX_LOCKED,
    TINY,
    SHORT,
    Jobs,
    assert_job,
    job_env,
    job_info,
    latest,
    wait_for,
    wait_job,
)

pytestmark = [pytest.mark.slurm, pytest.mark.e2e]



@pytest.fixture(scope="module")
def cluster() -> None:
    if not FLANFORGE.exists():
        pytest.skip(f"no flanforge executable next to {sys.executable}")
    proc = subprocess.run(
        ["bash", str(SLURM_DIR / "cluster.sh"), "start"], capture_output=True, text=True, timeout=900,
        env={**os.environ, "FLANFORGE_SLURM_NODES": os.environ.get("FLANFORGE_SLURM_NODES", "2")},
    )
    if proc.returncode in CLUSTER_UNAVAILABLE:
        reason = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        pytest.skip(f"Slurm unavailable (cluster.sh exit {proc.returncode}): {reason}")
    assert proc.returncode == 0, f"cluster.sh failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"


@pytest.fixture
def jobs(cluster, tmp_path):
    logs = tmp_path / "logs"
    logs.mkdir()
    tracker = Jobs(logs)
    yield tracker
    tracker.cancel_all()


@pytest.fixture(scope="module")
def completed_run(cluster, tmp_path_factory):
    """One short demo run through slurm/train.sbatch, shared by the tests that read it."""
    root = tmp_path_factory.mktemp("slurm_run")
    tracker = Jobs(root)
    out = root / "out"
    job_id = tracker.sbatch(str(DEMO), str(out), *SHORT)
    try:
        info = wait_job(tracker, job_id)
    finally:
        tracker.cancel_all()
    return tracker, job_id, info, out


# --- a whole run ---------------------------------------------------------------------


def test_train_sbatch_runs_the_demo_to_completion(completed_run):
    jobs, job_id, info, out = completed_run
    assert_job(jobs, job_id, info, "COMPLETED", 0)
    log = jobs.log(job_id)
    launch = re.search(r"one launcher per node: launch.nnodes=1 launch.master_addr=(\S+) launch.master_port=(\d+)", log)
    assert launch, log[-3000:]
    # The job's first node, or the address Slurm reaches it at where its name does
    # not resolve (FLANFORGE_SLURM_NODES=2: two slurmd named <host>1, <host>2).
    node = info["NodeList"]
    node_addr = re.search(r" NodeAddr=(\S+)", subprocess.run(["scontrol", "show", "node", "-o", node], capture_output=True, text=True).stdout)
    assert launch.group(1) in (node, node_addr and node_addr.group(1)), (launch.group(1), node)
    assert int(launch.group(2)) == 10000 + job_id % 20000
    assert "world size 2" in log
    assert "[flanforge] step 20 " in log
    assert "training finished" in log
    assert latest(out) == "step_00000020"
    for tag in ("step_00000010", "step_00000020"):
        assert (out / "checkpoints" / tag / "trainer.json").is_file()
    assert list((out / "tensorboard").glob("**/events.out.tfevents.*")), "no TensorBoard event file"
    assert (out / "config.yaml").is_file()
    assert not (out / "PREEMPTED").exists()
    assert (out / ".lock").read_text().startswith(f"job {job_id} ")


def test_train_srun_sbatch_runs_one_task_per_rank(jobs, tmp_path):
    out = tmp_path / "out"
    job_id = jobs.sbatch(str(DEMO), str(out), "train.max_steps=4", "checkpoint.every_steps=0", script="train_srun.sbatch")
    info = wait_job(jobs, job_id)
    assert_job(jobs, job_id, info, "COMPLETED", 0)
    log = jobs.log(job_id)
    assert "one task per rank: 2 ranks" in log
    assert "world size 2" in log
    assert latest(out) == "step_00000004"


@pytest.mark.parametrize(
    ("script", "options", "expected"),
    [
        ("train.sbatch", ("--nodes=2",), "launch.nnodes=2 "),
        ("train_srun.sbatch", ("--nodes=2", "--ntasks-per-node=1"), "one task per rank: 2 ranks"),
    ],
    ids=["launcher-per-node", "task-per-rank"],
)
def test_two_nodes(jobs, tmp_path, script, options, expected):
    nodes = set(subprocess.run(["sinfo", "-h", "-N", "-o", "%N"], capture_output=True, text=True).stdout.split())
    if len(nodes) < 2:
        pytest.skip("the cluster has one node; FLANFORGE_SLURM_NODES=2 starts two (two slurmd on this machine)")
    out = tmp_path / "out"
    job_id = jobs.sbatch(
        str(DEMO), str(out), "train.max_steps=4", "checkpoint.every_steps=0", "launch.nproc_per_node=1",
        options=options, script=script,
    )  # fmt: skip
    info = wait_job(jobs, job_id)
    assert_job(jobs, job_id, info, "COMPLETED", 0)
    log = jobs.log(job_id)
    assert "(2 node(s))" in log and expected in log
    assert "world size 2" in log
    assert latest(out) == "step_00000004"


# --- preemption ----------------------------------------------------------------------


def test_usr1_checkpoints_requeues_and_resumes(jobs, tmp_path):
    out = tmp_path / "out"
    steps = 200  # tiny-model steps take a fraction of a second: leave room to signal
    job_id = jobs.sbatch(str(DEMO), str(out), f"train.max_steps={steps}", "checkpoint.every_steps=10")
    wait_for(lambda: (out / "checkpoints" / "latest").exists(), JOB_TIMEOUT, "the first checkpoint")
    assert job_info(job_id)["JobState"] == "RUNNING"
    # What Slurm does --signal=B:USR1@180 ahead of the time limit: signal the batch shell.
    subprocess.run(["scancel", "--signal=USR1", "--batch", str(job_id)], check=True)
    info = wait_job(jobs, job_id)
    assert_job(jobs, job_id, info, "COMPLETED", 0)
    assert int(info["Restarts"]) >= 1, info

    log = jobs.log(job_id)
    assert "got SIGUSR1" in log
    stopped = re.search(r"stopping at step (\d+) on signal SIGUSR1", log)
    assert stopped, log[-4000:]
    stop_step = int(stopped.group(1))
    assert stop_step < steps, "the signal came too late to test a resume"
    assert f"requeueing job {job_id}" in log
    assert re.search(rf"job {job_id} \(slurm/train.sbatch\) restart 1 ", log)
    assert f"resuming from checkpoint step_{stop_step:08d}" in log
    assert f"resumed from step {stop_step}" in log
    after_resume = log[log.index(f"resumed from step {stop_step}") :]
    assert f"[flanforge] step {stop_step + 1} " in after_resume
    assert f"[flanforge] step {steps} " in after_resume
    assert latest(out) == f"step_{steps:08d}"
    assert not (out / "PREEMPTED").exists()


def test_scancel_stops_the_job_without_requeueing_it(jobs, tmp_path):
    out = tmp_path / "out"
    job_id = jobs.sbatch(str(DEMO), str(out), "train.max_steps=2000", "checkpoint.every_steps=10")
    wait_for(lambda: (out / "checkpoints" / "latest").exists(), JOB_TIMEOUT, "the first checkpoint")
    subprocess.run(["scancel", str(job_id)], check=True)
    info = wait_job(jobs, job_id, timeout=300)
    assert info["JobState"] == "CANCELLED", info
    assert int(info["Restarts"]) == 0, jobs.log(job_id)[-3000:]
    log = jobs.log(job_id)
    assert f"requeueing job {job_id}" not in log
    if (out / "PREEMPTED").exists():  # the ranks saved before Slurm's KillWait ran out
        assert "stopped on SIGTERM (scancel or the time limit) and checkpointed; not requeueing" in log
    assert latest(out).startswith("step_")


# --- bad input -----------------------------------------------------------------------


def test_missing_config_fails_with_a_clear_message(jobs, tmp_path):
    missing = tmp_path / "no_such_config.yaml"
    job_id = jobs.sbatch(str(missing), str(tmp_path / "out"))
    info = wait_job(jobs, job_id, timeout=120)
    assert_job(jobs, job_id, info, "FAILED", EX_NOINPUT)
    assert f"ERROR: config not found: {missing}" in jobs.log(job_id)


def test_unknown_partition_is_rejected_by_sbatch(jobs, tmp_path):
    proc = jobs.sbatch(str(DEMO), str(tmp_path / "out"), options=("--partition=no_such_partition",), check=False)
    assert proc.returncode != 0
    assert "invalid partition" in proc.stderr.lower(), proc.stderr
    assert not (tmp_path / "out").exists()


def test_second_job_on_the_same_output_dir_exits_with_the_lock_message(jobs, tmp_path):
    out = tmp_path / "out"
    first = jobs.sbatch(str(DEMO), str(out), "train.max_steps=300")
    lock = out / ".lock"
    wait_for(lambda: lock.exists() and lock.read_text().startswith(f"job {first} "), JOB_TIMEOUT, "the first job's lock")
    second = jobs.sbatch(str(DEMO), str(out), "train.max_steps=300")
    info = wait_job(jobs, second, timeout=300)
    assert_job(jobs, second, info, "FAILED", EX_LOCKED)
    assert f"output dir {out} is locked by another run (job {first} on " in jobs.log(second)
    assert job_info(first)["JobState"] == "RUNNING"
    assert lock.read_text().startswith(f"job {first} ")  # the loser did not touch it
    subprocess.run(["scancel", str(first)], check=True)
    wait_job(jobs, first, timeout=300)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"step_00000999\n", "names checkpoint 'step_00000999', but"),
        (b"", "checkpoints/latest is empty"),
        (b"\x00\xffnot a tag\n\x13garbage\n", "checkpoints/latest is corrupt"),
    ],
    ids=["missing-checkpoint", "empty", "garbage"],
)
def test_resume_from_a_corrupt_latest_fails_with_a_clear_message(jobs, tmp_path, completed_run, content, message):
    _, _, _, done = completed_run
    out = tmp_path / "out"
    # The run's files without the (large) tensors: the script checks `latest` first.
    shutil.copytree(done, out, ignore=shutil.ignore_patterns("*.pt", ".lock"))
    (out / "checkpoints" / "latest").write_bytes(content)
    job_id = jobs.sbatch(str(DEMO), str(out), *SHORT)
    info = wait_job(jobs, job_id, timeout=120)
    assert_job(jobs, job_id, info, "FAILED", EX_DATAERR)
    log = jobs.log(job_id)
    assert "ERROR: " in log and message in log, log[-3000:]
    assert "cannot resume" in log


def test_requeued_job_with_a_corrupt_latest_fails_with_a_clear_message(jobs, tmp_path):
    out = tmp_path / "out"
    job_id = jobs.sbatch(str(DEMO), str(out), "train.max_steps=300", "checkpoint.every_steps=5")
    wait_for(lambda: (out / "checkpoints" / "latest").exists(), JOB_TIMEOUT, "the first checkpoint")
    subprocess.run(["scancel", "--signal=USR1", "--batch", str(job_id)], check=True)
    # Requeued jobs wait (cred_expire) before they start again: corrupt `latest` then.
    wait_for(
        lambda: int(job_info(job_id).get("Restarts", 0)) >= 1 and job_info(job_id)["JobState"] == "PENDING",
        JOB_TIMEOUT,
        "the job to requeue itself",
    )
    tag = latest(out)
    shutil.rmtree(out / "checkpoints" / tag)
    info = wait_job(jobs, job_id)
    assert_job(jobs, job_id, info, "FAILED", EX_DATAERR)
    log = jobs.log(job_id)
    assert f"requeueing job {job_id}" in log
    restart = log[log.index(f"job {job_id} (slurm/train.sbatch) restart 1 ") :]
    assert f"ERROR: {out}/checkpoints/latest names checkpoint '{tag}', but" in restart


# --- chains --------------------------------------------------------------------------


def test_chain_runs_the_first_job_and_cancels_the_rest_when_done(jobs, tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(SLURM_DIR / "chain.sh"), "3", str(DEMO), str(out), "train.max_steps=4", "checkpoint.every_steps=0",
         *TINY, "--", f"--output={jobs.logs}/slurm-%j.log"],
        capture_output=True, text=True, env=job_env(), cwd=REPO, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    ids = [int(x) for x in re.findall(r"submitted job (\d+)", proc.stdout)]
    jobs.ids.extend(ids)
    assert len(ids) == 3
    assert (out / ".slurm-chain").read_text().split() == [str(i) for i in ids]
    assert f"Dependency=afterany:{ids[0]}" in subprocess.run(
        ["scontrol", "show", "job", str(ids[1])], capture_output=True, text=True
    ).stdout
    first = wait_job(jobs, ids[0])
    assert_job(jobs, ids[0], first, "COMPLETED", 0)
    assert latest(out) == "step_00000004"
    assert f"cancelling the rest of the chain: {ids[1]} {ids[2]}" in jobs.log(ids[0])
    for later in ids[1:]:
        assert wait_job(jobs, later, timeout=60)["JobState"] == "CANCELLED"


# --- prepare as a job array ------------------------------------------------------------


def test_prepare_sbatch_array_splits_the_jobs_and_publishes_them_all(jobs, tmp_path):
    """Two array tasks run `flanforge prepare --slice 0/2` and `1/2`; together every task is published."""
    data = tmp_path / "data"
    data.mkdir()
    for k in range(4):
        (data / f"t{k}.jsonl").write_text("".join(json.dumps({"q": f"q{i}", "a": f"a{i}"}) + "\n" for i in range(20)))
        (data / f"t{k}.yaml").write_text(
            f"task: t{k}\nsource:\n  path: t{k}.jsonl\ntemplates:\n  - id: x\n    input: '{{{{ q }}}}'\n    target: '{{{{ a }}}}'\n"
        )
    (data / "mix.yaml").write_text("mixture: four\nmembers:\n" + "".join(f"  - task: t{k}.yaml\n" for k in range(4)))
    out = tmp_path / "shards"
    job_id = jobs.sbatch(str(data / "mix.yaml"), str(out), options=("--array=0-1",), script="prepare.sbatch", extra=())
    for k in range(2):
        task = f"{job_id}_{k}"
        info = wait_job(jobs, task)  # type: ignore[arg-type]
        assert info["JobState"] == "COMPLETED" and info["ExitCode"] == "0:0", info
    manifest = json.loads((out / "manifest.json").read_text())
    assert sorted(manifest["tasks"]) == ["t0", "t1", "t2", "t3"]
    logs = "".join(p.read_text(errors="replace") for p in jobs.logs.glob("*.log"))
    assert "slice 0/2" in logs and "slice 1/2" in logs, logs[-3000:]
