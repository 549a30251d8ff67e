# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv if needed, then train the embedded default (2 CPU ranks)
#   make test   - create .venv if needed, then run the test suite
# Both install the versions pinned in requirements.lock (regenerate it with `make lock`);
# `make test-latest` installs the newest versions setup.py allows instead, to find drift on purpose.
VENV       ?= .venv
PYTHON     ?= python3
# The torch to install when the machine has none with CUDA. On a CPU-only machine
# this is the CPU build; a GPU cluster's own CUDA torch is kept (see README).
TORCH_SPEC ?= torch==2.13.0
LOCK       ?= requirements.lock
# pip's constraints for every install: the lock; empty for the newest versions setup.py allows.
CONSTRAINTS ?= -c $(LOCK)
UV_SPEC    ?= uv==0.13.9
DEMO_DIR   ?= runs/demo
PYTEST_ARGS ?=

STAMP := $(VENV)/.flanforge-installed
PIP   := $(VENV)/bin/pip install --quiet --disable-pip-version-check

.PHONY: demo test test-fast test-stress test-latest lock bench clean-venv

$(STAMP): setup.py $(LOCK)
	@set -e; \
	if $(PYTHON) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then \
	  echo "[setup] keeping this machine's CUDA torch (venv with system site-packages)"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV); \
	  $(PIP) $(CONSTRAINTS) "$(TORCH_SPEC)"; \
	fi; \
	$(PIP) $(CONSTRAINTS) -e ".[test,triton]"; \
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/flanforge train --config configs/demo.yaml output_dir=$(DEMO_DIR)

test: $(STAMP)
	$(VENV)/bin/pytest -q tests $(PYTEST_ARGS)

# Between edits: the unit tests, without any test that starts ranks, DeepSpeed's launcher or Slurm
# (those are marked e2e/slurm; one that is not fails here). About a minute on 2 cores.
test-fast: $(STAMP)
	$(VENV)/bin/pytest -q tests --fast $(PYTEST_ARGS)

# Not in CI: 30 two-rank launches back to back under load (tests marked stress), ~10 minutes.
test-stress: $(STAMP)
	$(VENV)/bin/pytest -q tests --stress $(PYTEST_ARGS)

# Not in CI: a fresh .venv-latest with the newest allowed versions, then the whole suite.
test-latest:
	rm -rf .venv-latest
	FLANFORGE_UNLOCKED=1 $(MAKE) test VENV=.venv-latest CONSTRAINTS=

# requirements.lock from setup.py's ranges (test and triton extras), for CPython 3.11 on Linux.
# torch is left out (TORCH_SPEC installs it: the CPU build here, a cluster's CUDA build there);
# the CPU wheel pip finds for TORCH_SPEC is what uv resolves torch's own dependencies against.
lock:
	rm -rf .venv-lock
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --disable-pip-version-check "$(UV_SPEC)"
	.venv-lock/bin/pip download --quiet --disable-pip-version-check --no-deps -d .venv-lock/wheels "$(TORCH_SPEC)"
	echo "$(TORCH_SPEC)" > .venv-lock/torch.txt
	.venv-lock/bin/uv pip compile setup.py --extra test --extra triton --python-version 3.11 \
	  --python-platform x86_64-manylinux_2_28 --find-links .venv-lock/wheels --constraint .venv-lock/torch.txt \
	  --no-emit-package torch --custom-compile-command "make lock" --quiet -o $(LOCK)

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
