# iommu-viz: the set-up contract (see README.md).
#   make lab     JupyterLab on 127.0.0.1:$(PORT) in notebooks/
#   make demo    the Explorer alone as a Voila app on 127.0.0.1:$(PORT)
#   make test    the whole test suite (also installs Debian chromium for the browser test)
#   make bench   the benchmarks
#   make conformance  the model against the kernel's own io-pgtable code
#                (gcc, linux-source-6.1/6.12; see README "Fidelity")
#   make clean   remove .venv and the set-up stamps
# Set-up is scripts/setup.sh: idempotent, a second run installs nothing.

PORT ?= 8888
PYTEST_ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python
# Jupyter refuses to run as root unless told to.
ALLOW_ROOT := $(if $(filter 0,$(shell id -u)),--allow-root,)

CONFORMANCE_ARGS ?=

.PHONY: setup setup-browser lab demo test bench conformance clean

setup:
	bash scripts/setup.sh base

setup-browser:
	bash scripts/setup.sh browser

lab: setup
	$(VENV)/bin/jupyter lab --no-browser --ip=127.0.0.1 --port=$(PORT) \
		--ServerApp.root_dir=notebooks $(ALLOW_ROOT)

# Voila shows the notebook's outputs only: the Explorer, no code
demo: setup
	$(VENV)/bin/voila demo/explorer.ipynb --no-browser --port=$(PORT) \
		--Voila.ip=127.0.0.1

test: setup-browser
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/run.py

conformance: setup
	bash conformance/install.sh
	$(PY) -m conformance.build
	$(PY) -m conformance.run $(CONFORMANCE_ARGS)

clean:
	rm -rf $(VENV) .stamp-*
