"""Shared test set-up: the markers."""


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: multi-process end-to-end runs (tests/e2e)")
    config.addinivalue_line("markers", "slurm: needs a real Slurm started by slurm/cluster.sh")
