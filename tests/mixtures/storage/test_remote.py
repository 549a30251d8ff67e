"""Shards on a real S3 server (moto, on 127.0.0.1): ``prepare`` to ``s3://``, the same batches as from local
shards through a cache smaller than the data, faults retried and counted, one-line errors naming no secret.

Ranks are simulated in one process (one stream per rank, sharing one cache directory as the ranks of a
node do); the 2-rank training runs are in ``tests/e2e/test_remote_shards.py``.
"""

import json
import random
import socket

import pytest
import torch

from flanforge.errors import StorageError
from flanforge.mixtures.config import StreamConfig
from flanforge.mixtures.mixture import Mixture, Rate
from flanforge.mixtures.storage import StorageConfig, open_store
from flanforge.mixtures.streaming.shards import Manifest, ShardError, prepare
from flanforge.mixtures.streaming.stream import MixtureStream
from flanforge.mixtures.task import Task, Template
from flanforge.model.tokenizer import train_tokenizer

from s3_server import CREDENTIALS

WORDS = "apple river stone cloud tiger maple orange silver garden window candle forest pencil rocket".split()
RECORDS_PER_SHARD = 20


def make_task(name, n=240):
    def source(split):
        rng = random.Random(f"{name}/{split}")
        size = {"train": n, "exemplars": 4, "validation": 6}[split]
        return [{"text": " ".join(rng.choices(WORDS, k=rng.randint(2, 9))), "answer": str(i)} for i in range(size)]

    return Task(name, ("text", "answer"), (Template(f"{name}0", "Say {{ text }}"),), source)


def make_mixture(names=("red", "green", "blue")):
    return Mixture("colours", [(make_task(n), Rate.fixed(1.0 + k)) for k, n in enumerate(names)])


@pytest.fixture(scope="module")
def env(tmp_path_factory, moto_endpoint):
    import s3_server

    root = tmp_path_factory.mktemp("remote")
    mix = make_mixture()
    local = prepare(mix, root / "local", records_per_shard=RECORDS_PER_SHARD, progress=False)
    bucket = "flanforge-storage-tests"
    s3_server.make_bucket(moto_endpoint, bucket)
    url = f"s3://{bucket}/colours"
    prepare(mix, url, records_per_shard=RECORDS_PER_SHARD, progress=False,
            storage=StorageConfig(endpoint_url=moto_endpoint, cache_dir=str(root / "prep-cache")))
    texts = [r["text"] for t in mix.tasks() for r in t.records("train")]
    tokenizer = train_tokenizer(texts + ["Say 0 1 2 3 4 5 6 7 8 9"], root / "tok", vocab_size=400)
    return mix, local, url, tokenizer


def storage(tmp_path, endpoint, **kw):
    return StorageConfig(endpoint_url=endpoint, cache_dir=str(tmp_path / "cache"), retry_backoff=0.01, **kw)


def batches(mix, tokenizer, manifest_of_rank, n=12, world=2):
    """``n`` micro-batches of each simulated rank, as ``(rank, tensors)`` in consumption order."""
    cfg = StreamConfig(seed=3, seq_len=64, micro_batch_size=2, block_size=16)
    streams = [MixtureStream(mix, tokenizer, cfg, manifest_of_rank(r), r, world).worker_batches(0)
               for r in range(world)]
    return [(r, next(streams[r]).tensors) for _ in range(n) for r in range(world)]


def assert_same(got, want):
    assert len(got) == len(want)
    for (r1, a), (r2, b) in zip(got, want):
        assert r1 == r2 and a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_prepare_to_s3_publishes_the_local_set_with_the_manifest_last(env, tmp_path, endpoint, new_bucket, proxy):
    mix, local, url, _ = env
    remote = Manifest.load(url, storage(tmp_path, endpoint))
    assert remote.files == local.files and remote.tasks == local.tasks
    watched = proxy()
    target = f"s3://{new_bucket()}/set"
    cfg = storage(tmp_path, watched.endpoint)
    prepare(mix, target, records_per_shard=RECORDS_PER_SHARD, progress=False, storage=cfg)
    puts = [line.split("/", 2)[2] for line in watched.log if line.startswith("PUT /") and line.count("/") > 1]
    assert puts[-1] == "set/manifest.json"
    entries = [i for i, p in enumerate(puts) if p.endswith("entry.json")]
    assert max(i for i, p in enumerate(puts) if p.endswith(".tar")) < min(entries)
    assert sum(p.endswith(".tar") for p in puts) == len(local.files)

    # an interrupted upload resumes: what the record says was uploaded (and the bucket has) is not sent again
    record = open_store(target, cfg).staging() / ".published.json"
    done = json.loads(record.read_text())
    lost = sorted(done)[:2]
    record.write_text(json.dumps({k: v for k, v in done.items() if k not in lost}))
    watched.log.clear()
    prepare(mix, target, records_per_shard=RECORDS_PER_SHARD, progress=False, storage=cfg)
    puts = [line.split("/", 3)[3] for line in watched.log if line.startswith("PUT /") and line.count("/") > 2]
    assert puts == [*sorted(lost, key=lambda p: (p.endswith(".json"), p)), "manifest.json"]


@pytest.fixture
def endpoint(moto_endpoint):
    return moto_endpoint


def test_batches_from_s3_equal_local_ones_through_a_cache_smaller_than_the_data(env, tmp_path, endpoint):
    mix, local, url, tokenizer = env
    data = sum(size for size, _ in local.files.values())
    limit = data // 3
    manifests = [Manifest.load(url, storage(tmp_path, endpoint, cache_limit=limit)) for _ in range(2)]
    got = batches(mix, tokenizer, manifests.__getitem__)
    assert_same(got, batches(mix, tokenizer, lambda r: local))
    caches = [m.store.cache for m in manifests]
    downloaded = sum(c.downloaded for c in caches)
    assert downloaded > limit  # the data read did not fit: files were evicted ...
    assert max(c.peak for c in caches) <= limit and caches[0].usage() <= limit  # ... and the limit held


def test_transient_faults_are_retried_and_counted(env, tmp_path, proxy):
    mix, local, url, tokenizer = env
    faulty = proxy(slow_down_every=4, reset_every=5)
    # no read-ahead: no download still in flight when the counts are compared
    manifests = [Manifest.load(url, storage(tmp_path, faulty.endpoint, read_ahead=0)) for _ in range(2)]
    assert_same(batches(mix, tokenizer, manifests.__getitem__), batches(mix, tokenizer, lambda r: local))
    assert faulty.faulted > 0
    assert sum(m.store.retries() for m in manifests) == faulty.faulted


def test_retries_in_dataloader_workers_reach_the_consumer(env, tmp_path, proxy):
    """A worker's retries ride on its rows, like the other stream counters (TensorBoard ``data/retries``)."""
    from flanforge.mixtures.streaming.stream import NO_TASK, RETRIES, build_loader

    mix, local, url, tokenizer = env
    faulty = proxy(reset_every=3)
    manifest = Manifest.load(url, storage(tmp_path, faulty.endpoint, read_ahead=0))
    cfg = StreamConfig(seed=3, seq_len=64, micro_batch_size=2, block_size=16, num_workers=1)
    stream = MixtureStream(mix, tokenizer, cfg, manifest, 0, 1)
    tracker = stream.tracker()
    for _, batch in zip(range(12), build_loader(stream)):
        tracker.update(batch)
    assert manifest.store.retries() == 0  # every retry happened in the worker
    # delivered with the rows consumed so far: the worker may have run ahead into more faults
    assert 0 < tracker.counters[NO_TASK][RETRIES] <= faulty.faulted


def test_a_persistent_failure_is_one_line_naming_the_url(env, tmp_path, proxy):
    mix, _, url, tokenizer = env
    failing = proxy()
    cfg = StreamConfig(seed=3, seq_len=64, micro_batch_size=2, block_size=16)
    manifest = Manifest.load(url, storage(tmp_path, failing.endpoint, retries=2))
    stream = MixtureStream(mix, tokenizer, cfg, manifest).worker_batches(0)
    failing.faults.slow_down_every = 1  # from now on every GET fails
    with pytest.raises(StorageError) as err:
        next(stream)
    assert str(err.value).startswith(f"{url}/") and ".tar: still failing after 2 retries: " in str(err.value)
    assert "\n" not in str(err.value) and manifest.store.retries() >= 2


def _closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_preflight_errors_name_the_url_and_never_a_credential(env, tmp_path, endpoint, proxy):
    _, _, url, _ = env
    bucket = url.split("/")[2]
    cases = {
        f"s3://no-such-bucket-{bucket}/x": (endpoint, "s3://no-such-bucket-flanforge-storage-tests: not found"),
        url: (proxy(deny=True).endpoint, f"s3://{bucket}: access denied (check the credentials"),
    }
    refused = f"http://127.0.0.1:{_closed_port()}"
    cases[url.replace("colours", "x")] = (refused, f"s3://{bucket}: still failing after 1 retries: ")
    for where, (end, message) in cases.items():
        with pytest.raises(StorageError) as err:
            open_store(where, storage(tmp_path, end, retries=1)).check_access()
        assert str(err.value).startswith(message) and "\n" not in str(err.value)
        assert all(CREDENTIALS[k] not in str(err.value) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"))
    with pytest.raises(ShardError, match=rf"^{url}/nothing/manifest.json: no manifest; run `flanforge prepare "
                                         rf"MIXTURE --out {url}/nothing`$"):
        Manifest.load(f"{url}/nothing", storage(tmp_path, endpoint))


def test_unknown_schemes_and_missing_packages_are_named(tmp_path):
    with pytest.raises(StorageError, match=r"^nosuch://b/x: unknown URL scheme 'nosuch'; fsspec knows .*\bs3\b"):
        Manifest.load("nosuch://b/x", StorageConfig(cache_dir=str(tmp_path)))
    with pytest.raises(StorageError, match=r"^gs://b/x: the URL scheme 'gs' needs a package that is not installed: "
                                           r".*gcsfs"):
        Manifest.load("gs://b/x", StorageConfig(cache_dir=str(tmp_path)))


def test_credentials_in_a_url_never_reach_a_message(tmp_path):
    with pytest.raises(StorageError) as err:
        Manifest.load("nosuch://KEYID:SECRETVALUE@b/x", StorageConfig(cache_dir=str(tmp_path)))
    assert "SECRET" not in str(err.value) and "KEYID" not in str(err.value)


def test_a_set_prepared_for_another_mixture_gets_the_local_error(env, tmp_path, endpoint):
    _, local, url, _ = env
    other = make_mixture(("red", "green", "violet")).tasks()
    errors = []
    for manifest in (local, Manifest.load(url, storage(tmp_path, endpoint))):
        with pytest.raises(ShardError) as err:
            manifest.check(other)
        errors.append(str(err.value).replace(str(manifest.root), "ROOT"))
    assert errors[0] == errors[1] == ("task 'violet' is not in ROOT/manifest.json; run `flanforge prepare` for "
                                      "this mixture")


def test_a_task_source_streams_a_jsonl_file_from_s3(tmp_path, endpoint, new_bucket, monkeypatch):
    """``source: {type: hf, path: s3://...}``: datasets' streaming reader over fsspec, no local copy."""
    import boto3

    from flanforge.mixtures.sources.task_yaml import build_task

    bucket = new_bucket()
    rows = [{"question": f"q{i}", "answer": str(i)} for i in range(7)]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    boto3.client("s3", endpoint_url=endpoint).put_object(Bucket=bucket, Key="raw/train.jsonl", Body=body)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    task = build_task({"task": "remote", "source": {"type": "hf", "path": f"s3://{bucket}/raw/train.jsonl"},
                       "templates": [{"id": "t", "input": "{{ question }}", "target": "{{ answer }}"}]}, tmp_path)
    assert list(task.records("train")) == rows


def test_an_object_rewritten_under_a_job_is_named_and_not_kept(tmp_path, endpoint, new_bucket):
    import boto3

    from flanforge.mixtures.streaming.shards import ShardReader

    url = f"s3://{new_bucket()}/set"
    cfg = storage(tmp_path, endpoint)
    mix = make_mixture(("red",))
    manifest = prepare(mix, url, records_per_shard=RECORDS_PER_SHARD, progress=False, storage=cfg)
    shard = manifest.shards("red")[0]
    rel = shard.path.relative_to(manifest.store.cache.path(manifest.store.prefix)).as_posix()
    key = f"{url.split('/', 3)[3]}/{rel}"
    client = boto3.client("s3", endpoint_url=endpoint)
    body = client.get_object(Bucket=url.split("/")[2], Key=key)["Body"].read()
    client.put_object(Bucket=url.split("/")[2], Key=key, Body=body.replace(b"answer", b"ANSWER"))  # same size
    with pytest.raises(ShardError, match=rf"^{url}/{rel}: member \S+ does not match its checksum"):
        ShardReader(Manifest.load(url, cfg)).record("red", 0)
    assert not shard.path.exists()


def test_an_elastic_resume_with_new_weights_reads_s3_as_it_reads_local_shards(env, tmp_path, endpoint):
    """2 ranks stop; 3 ranks resume under other rates: the same batches from S3 as from local shards."""
    mix, local, url, tokenizer = env
    cfg = StreamConfig(seed=3, seq_len=64, micro_batch_size=2, block_size=16)
    weights = {"red": 5.0, "green": 1.0, "blue": 0.5}

    def resumed(manifest_of_rank):
        streams = [MixtureStream(mix, tokenizer, cfg, manifest_of_rank(r), r, 2) for r in range(2)]
        trackers, iters = [s.tracker() for s in streams], [s.worker_batches(0) for s in streams]
        for _ in range(5):
            for tracker, it in zip(trackers, iters):
                tracker.update(next(it))
        state = streams[0].state_dict([t.summary() for t in trackers])
        after = [MixtureStream(mix, tokenizer, cfg, manifest_of_rank(r), r, 3, state=state, rate_overrides=weights)
                 for r in range(3)]
        iters = [s.worker_batches(0) for s in after]
        return [(r, next(iters[r]).tensors) for _ in range(6) for r in range(3)]

    remote = storage(tmp_path, endpoint)
    assert_same(resumed(lambda r: Manifest.load(url, remote)), resumed(lambda r: local))
