"""A real S3 server for the storage tests: moto's on 127.0.0.1 (``benchmarks/s3_server.py``, loaded by path),
one per session, and fault-injecting proxies in front of it."""

import importlib.util
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
_spec = importlib.util.spec_from_file_location("s3_server", ROOT / "benchmarks" / "s3_server.py")
s3_server = sys.modules.setdefault("s3_server", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(s3_server)


@pytest.fixture(scope="session")
def moto_endpoint():
    server, endpoint = s3_server.start_moto()
    yield endpoint
    server.stop()


@pytest.fixture
def new_bucket(moto_endpoint):
    """``new_bucket()``: the name of a new, empty bucket."""
    def make():
        name = f"b-{uuid.uuid4().hex[:12]}"
        s3_server.make_bucket(moto_endpoint, name)
        return name
    return make


@pytest.fixture
def proxy(moto_endpoint):
    """``proxy(**faults)``: a :class:`FaultProxy` in front of the server, stopped after the test."""
    made = []

    def make(**faults):
        made.append(s3_server.FaultProxy(moto_endpoint, s3_server.Faults(**faults)))
        return made[-1]
    yield make
    for p in made:
        p.stop()
