"""The ranks' one exit path (``launcher/ranks/rank_exit.py``), in plain subprocesses: the status a rank's main
returns or raises is the exit status, the interpreter's exit handlers and buffered output are not lost."""

import subprocess
import sys


def run(body: str, tmp_path) -> subprocess.CompletedProcess:
    code = f"import atexit, sys\nfrom flanforge.launcher.ranks.rank_exit import run_rank\n{body}"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tmp_path)


def test_the_return_value_is_the_exit_status_and_exit_handlers_run(tmp_path):
    proc = run("atexit.register(lambda: open('handler-ran', 'w').write('yes'))\n"
               "def main():\n    print('buffered, never flushed by hand', end='')\n    return 3\n"
               "run_rank(main)\nprint('not reached')", tmp_path)
    assert proc.returncode == 3
    assert proc.stdout == "buffered, never flushed by hand"
    assert (tmp_path / "handler-ran").read_text() == "yes"


def test_an_exception_prints_its_traceback_and_exits_1(tmp_path):
    proc = run("def main():\n    raise ValueError('rank bug')\nrun_rank(main)", tmp_path)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "ValueError: rank bug" in proc.stderr


def test_sys_exit_inside_main_keeps_its_status(tmp_path):
    assert run("def main():\n    sys.exit(4)\nrun_rank(main)", tmp_path).returncode == 4
    assert run("def main():\n    return None\nrun_rank(main)", tmp_path).returncode == 0
