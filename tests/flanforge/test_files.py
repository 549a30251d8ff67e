"""A writer that reports no errno (torch.save's) meeting a real file-size limit is one WriteFailed naming
the path; any other failure of it stays its own error."""

import resource
import subprocess
import sys

import pytest

from flanforge.errors import WriteFailed
from flanforge.files import reporting_full_disk

SAVE = """
import sys, torch
from pathlib import Path
from flanforge.errors import WriteFailed
from flanforge.files import reporting_full_disk
out = Path(sys.argv[1])
try:
    with reporting_full_disk(out):
        torch.save(torch.zeros(1_000_000), out / "states.pt")  # 4 MB
except WriteFailed as err:
    print("WriteFailed", err)
"""


def test_torch_save_past_a_real_file_size_limit_is_one_write_failed(tmp_path):
    limit = 1_000_000
    out = subprocess.run([sys.executable, "-c", SAVE, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit)))
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == f"WriteFailed {tmp_path}: file size limit exceeded (ulimit -f); nothing partial was left"


def test_a_runtime_error_with_room_to_spare_stays_itself(tmp_path):
    with pytest.raises(RuntimeError, match="not about room"), reporting_full_disk(tmp_path):
        (tmp_path / "small").write_bytes(b"x")
        raise RuntimeError("not about room")
    with pytest.raises(WriteFailed):  # guards the test above: an errno of no room is still recognised
        with reporting_full_disk(tmp_path):
            raise OSError(27, "File too large")
