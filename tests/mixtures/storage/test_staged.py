"""Raw sources at an S3 URL (a task's JSONL file, a NIV2 folder in a mixture YAML) read as the local files
they equal, staged once per node into the cache and again when the objects change; a missing object is one
line naming its URL. Against moto's real S3 server."""

import json
import os
import tempfile

import boto3
import pytest

from flanforge.errors import StorageError
from flanforge.mixtures.registry import load_mixture
from flanforge.mixtures.sources.niv2 import niv2_task
from flanforge.mixtures.sources.task_yaml import build_task
from flanforge.mixtures.storage.staged import staged

ROWS = [{"question": f"q{i}", "answer": str(i)} for i in range(9)]
TEMPLATES = [{"id": "t", "input": "{{ question }}", "target": "{{ answer }}"}]
NIV2 = {"Definition": ["Add one."], "Positive Examples": [{"input": "4", "output": "5"}],
        "Negative Examples": [], "Instances": [{"id": f"i{i}", "input": str(i), "output": [str(i + 1)]}
                                               for i in range(6)]}


@pytest.fixture
def s3(tmp_path, moto_endpoint, new_bucket, monkeypatch):
    """(bucket, client): a new bucket; the endpoint and the cache directory as a job would set them."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # storage.cache_dir's default lives under it
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", None)  # gettempdir() reads TMPDIR again
    return new_bucket(), boto3.client("s3", endpoint_url=moto_endpoint)


def jsonl(rows) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def test_a_task_file_at_a_url_reads_as_the_local_file(tmp_path, s3):
    bucket, client = s3
    client.put_object(Bucket=bucket, Key="raw/train.jsonl", Body=jsonl(ROWS))
    (tmp_path / "train.jsonl").write_bytes(jsonl(ROWS))
    remote = build_task({"task": "remote", "source": {"path": f"s3://{bucket}/raw/train.jsonl"},
                         "templates": TEMPLATES}, tmp_path)
    local = build_task({"task": "local", "source": {"path": "train.jsonl"}, "templates": TEMPLATES}, tmp_path)
    assert remote.records("train") == local.records("train") and len(local.records("train")) == len(ROWS)


def test_a_niv2_folder_at_a_url_in_a_mixture_yaml(tmp_path, s3):
    bucket, client = s3
    names = ("task001_add_one", "task002_add_more")
    for name in names:
        client.put_object(Bucket=bucket, Key=f"niv2/{name}.json", Body=json.dumps(NIV2).encode())
    (tmp_path / "local.json").write_text(json.dumps(NIV2))
    spec = tmp_path / "mix.yaml"
    spec.write_text(json.dumps({"mixture": "remote_niv2", "members": [{"niv2": f"s3://{bucket}/niv2"}]}))
    tasks = {t.name: t.records("train") for t in load_mixture(str(spec)).tasks()}
    local = niv2_task(tmp_path / "local.json").records("train")
    assert sorted(tasks) == list(names) and local
    assert all(records == local for records in tasks.values())


def test_staged_once_and_again_when_the_object_changes(s3):
    bucket, client = s3
    client.put_object(Bucket=bucket, Key="raw/train.jsonl", Body=jsonl(ROWS))
    url = f"s3://{bucket}/raw/train.jsonl"
    first = staged(url)
    made = os.stat(first).st_mtime_ns
    assert staged(url) == first and os.stat(first).st_mtime_ns == made  # the copy is used, not fetched again
    client.put_object(Bucket=bucket, Key="raw/train.jsonl", Body=jsonl(ROWS[:4]))
    assert staged(url).read_bytes() == jsonl(ROWS[:4])


def test_a_missing_object_is_one_line_naming_its_url(s3):
    bucket, _ = s3
    with pytest.raises(StorageError, match=rf"^s3://{bucket}/raw/none.jsonl: ") as caught:
        staged(f"s3://{bucket}/raw/none.jsonl")
    assert "\n" not in str(caught.value)
