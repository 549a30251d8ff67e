"""Loaded by every Python process of a traced launch (tests/e2e/test_device_order.py puts this folder on
PYTHONPATH): in a rank (RANK set), the device binding (with the device it chose) and every collective
append a line to ``$FLANFORGE_TRACE_DIR/rank<r>.log``, in call order."""

import os

if "RANK" in os.environ and os.environ.get("FLANFORGE_TRACE_DIR"):
    import functools

    import torch.distributed

    from flanforge.launcher.ranks import devices

    TRACE = os.path.join(os.environ["FLANFORGE_TRACE_DIR"], f"rank{os.environ['RANK']}.log")

    def traced(owner, name):
        inner = getattr(owner, name)

        @functools.wraps(inner)
        def wrapper(*args, **kwargs):
            with open(TRACE, "a") as fh:
                fh.write(name + "\n")
            result = inner(*args, **kwargs)
            if name == "bind_device":
                with open(TRACE, "a") as fh:
                    fh.write(f"device {result}\n")
            return result

        setattr(owner, name, wrapper)

    traced(devices, "bind_device")
    for collective in ("init_process_group", "barrier", "broadcast", "broadcast_object_list", "all_reduce",
                       "all_gather", "all_gather_object", "all_gather_into_tensor", "reduce_scatter_tensor"):
        traced(torch.distributed, collective)
