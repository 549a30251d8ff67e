"""Started by DeepSpeed's launcher on 2 CPU ranks: hold what a training rank holds at its end (a gloo
process group after collectives, a DeepSpeed ZeRO-2 engine that stepped, a DataLoader with a forked
worker), then end.

    deepspeed --num_gpus 2 exit_probe.py exit-path     # through launcher/ranks/rank_exit.py (what ranks do)
    deepspeed --num_gpus 2 exit_probe.py interpreter   # left to the interpreter's exit (the control)

``FLANFORGE_EXIT_PROBE_FAIL=1``: rank 1 raises once the ranks are connected.

The control is how probes and the HF Trainer baseline ended before the one exit path.
"""

import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).parent))  # the ranks run with PYTHONSAFEPATH=1 (no script directory)
from grad_probe import gradients  # noqa: E402

from flanforge.launcher.ranks.process_group import start_rank  # noqa: E402
from flanforge.launcher.ranks.rank_exit import run_rank  # noqa: E402


def main() -> int:
    layout, _ = start_rank()
    if os.environ.get("FLANFORGE_EXIT_PROBE_FAIL") == "1" and layout.rank == 1:
        raise RuntimeError("injected failure on rank 1")
    grads = gradients(2, 2, 2, "global_token", layout.world_size, layout.rank)  # one ZeRO-2 window, 2 steps
    loader = iter(DataLoader(range(8), batch_size=2, num_workers=1, multiprocessing_context="fork"))
    batches = [next(loader) for _ in range(2)]
    sums = [None] * layout.world_size
    torch.distributed.all_gather_object(sums, float(sum(g.sum() for g in grads.values())))
    assert len(batches) == 2 and sums[0] == sums[1]  # the ranks saw the same full gradients
    print(f"rank {layout.rank}: done", flush=True)
    return 0


if __name__ == "__main__":
    if sys.argv[1] == "exit-path":
        run_rank(main)
    main()  # the control: the interpreter's own teardown ends the process group and the rank
