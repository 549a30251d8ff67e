"""Training from shards on a real S3 server: moto's, on 127.0.0.1, in this process (``benchmarks/s3_server.py``).

``flanforge prepare --out s3://...`` writes the set; ``flanforge train`` (DeepSpeed's launcher, 2 CPU ranks)
streams it through a node cache smaller than the data and a proxy that answers some GETs with 503: its
losses equal the run from local shards, also after its ranks are SIGKILLed mid-save and it resumes; the
retries reach TensorBoard; no credential is written anywhere. Wrong endpoints, missing buckets and denied
access are one-line errors before any rank starts.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("s3_server", ROOT / "benchmarks" / "s3_server.py")
s3_server = sys.modules.setdefault("s3_server", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(s3_server)

FLANFORGE = str(Path(sys.executable).with_name("flanforge"))
STEPS = 10
WORDS = "apple river stone cloud tiger maple orange silver garden window candle forest pencil rocket".split()
CACHE_LIMIT = 60_000
STREAM = ["mixture.block_size=64", f"train.max_steps={STEPS}", "checkpoint.every_steps=4"]


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """The same three-task mixture prepared locally and into a bucket (20 records a shard: many small shards)."""
    root = tmp_path_factory.mktemp("remote_e2e")
    for k, name in enumerate(("copy", "upper", "count")):
        lines = []
        for i in range(600):
            words = [WORDS[(i * 7 + j * (k + 3)) % len(WORDS)] for j in range(2 + i % 5)]
            answer = {"copy": " ".join(words), "upper": " ".join(words).upper(), "count": str(len(words))}[name]
            lines.append(json.dumps({"q": " ".join(words), "a": answer}))
        (root / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
        (root / f"{name}.yaml").write_text(f"task: {name}\nsource:\n  path: {name}.jsonl\ntemplates:\n"
                                           f"  - id: x\n    input: '{name}: {{{{ q }}}}'\n    target: '{{{{ a }}}}'\n")
    (root / "mix.yaml").write_text("mixture: three\nmembers:\n" + "".join(
        f"  - task: {n}.yaml\n" for n in ("copy", "upper", "count")))
    server, endpoint = s3_server.start_moto()
    s3_server.make_bucket(endpoint, "e2e")
    url = "s3://e2e/three"
    env = {**os.environ, "AWS_ENDPOINT_URL": endpoint}
    for out in (str(root / "local"), url):
        done = subprocess.run([FLANFORGE, "prepare", str(root / "mix.yaml"), "--out", out, "--records-per-shard", "20",
                               "--cache-dir", str(root / "staging")], capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stderr[-3000:]
    yield {"mix": str(root / "mix.yaml"), "local": str(root / "local"), "url": url, "endpoint": endpoint}
    server.stop()


def test_training_from_s3_equals_local_even_after_a_kill(sets, tmp_path, run_train, read_all_scalars, monkeypatch):
    reference = run_train(tmp_path / "local", f"mixture.name={sets['mix']}", f"mixture.shards_dir={sets['local']}",
                          *STREAM)
    assert reference.returncode == 0, reference.stderr[-3000:]
    proxy = s3_server.FaultProxy(sets["endpoint"], s3_server.Faults(slow_down_every=9))
    out, cache = tmp_path / "s3", tmp_path / "cache"
    remote = [f"mixture.name={sets['mix']}", f"mixture.shards_dir={sets['url']}", f"storage.cache_dir={cache}",
              f"storage.cache_limit={CACHE_LIMIT}", "storage.retry_backoff=0.01", *STREAM]
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.endpoint)
    monkeypatch.setenv("FLANFORGE_KILL_IN_SAVE", "8")  # every rank SIGKILLs itself in the middle of step 8's save
    killed = run_train(out, *remote)
    assert killed.returncode != 0
    monkeypatch.delenv("FLANFORGE_KILL_IN_SAVE")
    resumed = run_train(out, *remote)
    proxy.stop()
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "resumed from step 4" in resumed.stdout
    scalars = read_all_scalars(out)
    assert scalars["train/loss"] == read_all_scalars(tmp_path / "local")["train/loss"]
    assert proxy.faulted > 0 and max(v for _, v in scalars["data/retries"]) > 0

    data = sum(size for size, _ in json.loads((Path(sets["local"]) / "manifest.json").read_text())["files"].values())
    held = sum(p.stat().st_size for p in (cache / "shards").rglob("*.tar"))
    assert data > 3 * CACHE_LIMIT and 0 < held <= CACHE_LIMIT

    secret = s3_server.CREDENTIALS["AWS_SECRET_ACCESS_KEY"].encode()
    leaked = [p for p in out.rglob("*") if p.is_file() and secret in p.read_bytes()]
    assert leaked == [] and secret.decode() not in killed.stderr + killed.stdout + resumed.stderr + resumed.stdout


def test_storage_errors_are_one_line_before_any_rank_starts(sets, tmp_path, train_cmd, run_command):
    bucket_url = sets["url"]
    denied = s3_server.FaultProxy(sets["endpoint"], s3_server.Faults(deny=True))
    error = "flanforge train: error: "
    cases = [  # (endpoint, shards_dir, the error's start)
        ("http://127.0.0.1:9", bucket_url, f"{error}s3://e2e: still failing after 1 retries: "),
        (sets["endpoint"], "s3://no-such-bucket/three", f"{error}s3://no-such-bucket: not found (endpoint: http://127.0.0.1:"),
        (denied.endpoint, bucket_url, f"{error}s3://e2e: access denied (check the credentials"),
        (sets["endpoint"], "s3://e2e/elsewhere",
         f"{error}s3://e2e/elsewhere/manifest.json: no manifest; run `flanforge prepare MIXTURE --out s3://e2e/elsewhere`"),
    ]
    for endpoint, shards, start in cases:
        out = tmp_path / f"run{len(start)}"
        proc = run_command(train_cmd(out, f"mixture.name={sets['mix']}", f"mixture.shards_dir={shards}",
                                     f"storage.endpoint_url={endpoint}", "storage.retries=1",
                                     "storage.retry_backoff=0.01"), timeout=120)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0 and len(lines) == 1 and lines[0].startswith(start), proc.stderr[-2000:]
        assert not (out / "checkpoints").exists()
    denied.stop()
