"""How failures are reported: one line and exit 2 for user errors, a traceback and exit 1 for
bugs; among ranks sharing an error directory only the first failure is printed."""

from flanforge.launcher.ranks import report
from flanforge.errors import UserError


def test_user_error_is_one_line_exit_2(capsys, monkeypatch):
    monkeypatch.delenv(report.ERROR_DIR_ENV, raising=False)
    assert report.fail("train", UserError("bad thing\n  in two lines"), user_error=True) == 2
    assert capsys.readouterr().err == "flanforge train: error: bad thing in two lines\n"


def test_bug_prints_traceback_then_one_line_exit_1(capsys, monkeypatch):
    monkeypatch.delenv(report.ERROR_DIR_ENV, raising=False)
    try:
        {}["missing"]
    except KeyError as err:
        assert report.fail("inspect", err, user_error=False) == 1
    err = capsys.readouterr().err
    assert err.startswith("Traceback") and err.endswith("flanforge inspect: internal error: KeyError: 'missing'\n")


def test_only_the_first_failing_rank_reports(capsys, monkeypatch, tmp_path):
    monkeypatch.setenv(report.ERROR_DIR_ENV, str(tmp_path))
    monkeypatch.setattr(report, "PEER_WAIT_S", 0.2)
    assert report.fail("train", UserError("rank 1: bad shard"), user_error=True) == 2
    assert capsys.readouterr().err == "flanforge train: error: rank 1: bad shard\n"
    # Another rank's peer-connection error after it: quiet, with the first one's status.
    assert report.fail("train", RuntimeError("Connection closed by peer"), user_error=False) == 2
    assert report.fail("train", UserError("rank 0: same problem"), user_error=True) == 2
    assert capsys.readouterr().err == ""
    assert report.first_error(root=str(tmp_path)) == (2, "flanforge train: error: rank 1: bad shard")


def test_a_rank_on_another_node_echoes_the_claim_in_the_run_directory(capsys, monkeypatch, tmp_path):
    """Two nodes: their own error directories, one shared file of the launch (report.share_errors)."""
    node_a, node_b, shared = tmp_path / "a", tmp_path / "b", tmp_path / "run" / ".errors" / "launch-1"
    node_a.mkdir(), node_b.mkdir()
    monkeypatch.setattr(report, "PEER_WAIT_S", 0.2)
    monkeypatch.setattr(report, "_SHARED", [])
    report.share_errors(shared)
    monkeypatch.setenv(report.ERROR_DIR_ENV, str(node_a))
    assert report.fail("train", UserError("rank 3: bad shard"), user_error=True) == 2
    assert capsys.readouterr().err == "flanforge train: error: rank 3: bad shard\n"
    monkeypatch.setenv(report.ERROR_DIR_ENV, str(node_b))  # a rank of node b, its peer gone
    assert report.fail("train", RuntimeError("Connection closed by peer"), user_error=False) == 2
    assert capsys.readouterr().err == ""
    for root in (node_a, node_b):  # what each node's launcher prints last
        assert report.first_error(root=str(root)) == (2, "flanforge train: error: rank 3: bad shard")
    assert sorted(p.name for p in shared.parent.iterdir()) == ["launch-1"]  # no file left aside
