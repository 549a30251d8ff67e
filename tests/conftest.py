"""Shared test set-up: markers, and a clean task registry per test."""

import pytest


def pytest_configure(config):
    config.addinivalue_line("markers", "e2e: multi-process end-to-end runs (tests/e2e)")
    config.addinivalue_line("markers", "slurm: needs a real Slurm started by slurm/cluster.sh")
