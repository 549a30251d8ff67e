# Two commands do all set-up on a fresh machine:
#   make demo   - create .venv if needed, then train the embedded default (2 CPU ranks)
#   make test   - create .venv if needed, then run the test suite
VENV       ?= .venv
PYTHON     ?= python3
# The torch to install when the machine has none with CUDA. On a CPU-only machine
# this is the CPU build; a GPU cluster's own CUDA torch is kept (see README).
TORCH_SPEC ?= torch==2.13.0
DEMO_DIR   ?= runs/demo
PYTEST_ARGS ?=

STAMP := $(VENV)/.flanforge-installed

.PHONY: demo test bench clean-venv

$(STAMP): setup.py
	@set -e; \
	if $(PYTHON) -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then \
	  echo "[setup] keeping this machine's CUDA torch (venv with system site-packages)"; \
	  $(PYTHON) -m venv --system-site-packages $(VENV); \
	else \
	  $(PYTHON) -m venv $(VENV); \
	  $(VENV)/bin/pip install --quiet --disable-pip-version-check "$(TORCH_SPEC)"; \
	fi; \
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -e ".[test,triton]"; \
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/flanforge train --config configs/demo.yaml output_dir=$(DEMO_DIR)

test: $(STAMP)
	$(VENV)/bin/pytest -p no:cacheprovider --import-mode=importlib -q tests $(PYTEST_ARGS)

bench: $(STAMP)
	@for b in benchmarks/*.py; do echo "== $$b"; $(VENV)/bin/python $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)
