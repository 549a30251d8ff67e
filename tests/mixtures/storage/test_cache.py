"""ShardCache: bounded (LRU), pinned files never evicted, one download per node, downloads verified."""

import multiprocessing
import os
import time

import pytest

from flanforge.errors import StorageError
from flanforge.mixtures.storage.cache import ShardCache
from flanforge.mixtures.storage.retry import CutShort


def writer(payload, log=None, delay=0.0):
    """A download: writes ``payload`` to the part file (and a line to ``log`` per call)."""
    def download(part):
        if log is not None:
            with open(log, "a") as fh:
                fh.write(f"{os.getpid()}\n")
        time.sleep(delay)
        part.write_bytes(payload)
    return download


def test_least_recently_used_files_are_evicted_and_the_limit_holds(tmp_path):
    cache = ShardCache(tmp_path, limit=250)
    for key in ("a", "b"):
        os.close(cache.open(key, 100, writer(b"x" * 100)))
    os.close(cache.open("a", 100, writer(b"never called")))  # a cached file is not downloaded again
    time.sleep(0.01)
    os.close(cache.open("a", 100, writer(b"")))  # "a" is now the most recently used
    os.close(cache.open("c", 100, writer(b"y" * 100)))
    assert cache.cached("a", 100) and cache.cached("c", 100) and not cache.cached("b", 100)
    assert cache.downloaded == 300 and cache.peak <= 250 and cache.usage() == 200


def test_a_file_being_read_is_never_evicted(tmp_path):
    cache = ShardCache(tmp_path, limit=250)
    fd = cache.open("a", 100, writer(b"a" * 100))  # held open: pinned
    time.sleep(0.01)
    os.close(cache.open("b", 100, writer(b"b" * 100)))
    os.close(cache.open("c", 100, writer(b"c" * 100)))  # evicts b (older a is pinned)
    assert cache.cached("a", 100) and not cache.cached("b", 100)
    assert os.pread(fd, 3, 0) == b"aaa"
    pinned = cache.open("c", 100, writer(b""))
    with pytest.raises(StorageError, match=r"storage.cache_limit=250: the cache at .* cannot hold d "):
        cache.open("d", 100, writer(b"d" * 100))
    assert not cache.fetch("d", 100, writer(b"d" * 100))  # a read-ahead just does not happen
    os.close(fd)
    os.close(pinned)
    os.close(cache.open("d", 100, writer(b"d" * 100)))  # unpinned now: room is made
    assert cache.usage() <= 250


def test_a_download_cut_short_is_not_published(tmp_path):
    cache = ShardCache(tmp_path, limit=1000)
    with pytest.raises(CutShort, match="downloaded 50 bytes, the index says 100"):
        cache.fetch("a", 100, writer(b"x" * 50))
    assert sorted(p.name for p in tmp_path.rglob("*") if not p.name.endswith(".lock")) == []


def _fetch_in_child(root, log, barrier):
    barrier.wait()
    cache = ShardCache(root, limit=1000)
    os.close(cache.open("shared/file.tar", 100, writer(b"z" * 100, log, delay=0.3)))


def test_the_ranks_of_a_node_download_a_file_once(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(3)
    log = tmp_path / "downloads.log"
    procs = [ctx.Process(target=_fetch_in_child, args=(tmp_path / "cache", log, barrier)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    assert len(log.read_text().split()) == 1
    assert (tmp_path / "cache" / "shared" / "file.tar").read_bytes() == b"z" * 100


def test_a_download_whose_process_died_frees_its_reservation(tmp_path):
    cache = ShardCache(tmp_path, limit=250)
    (tmp_path / "k").mkdir()
    (tmp_path / "k" / "gone.tar.200.dead.part").write_bytes(b"half")  # a SIGKILLed download's leftover
    os.close(cache.open("k/new.tar", 100, writer(b"n" * 100)))
    assert sorted(p.name for p in (tmp_path / "k").iterdir() if not p.name.endswith(".lock")) == ["new.tar"]


def test_read_ahead_holds_at_most_half_the_cache(tmp_path):
    cache = ShardCache(tmp_path, limit=300)
    started = []

    def slow(part):  # a read-ahead still downloading when the next one asks for room
        started.append(part)
        assert not cache.fetch("b", 100, writer(b"b" * 100))  # 100 in flight + 100 > 300 // 2
        part.write_bytes(b"a" * 100)
    assert cache.fetch("a", 100, slow) and len(started) == 1
    assert cache.fetch("b", 100, writer(b"b" * 100))  # nothing in flight any more
