# cellpilot: `make demo` runs a simulated campaign, `make test` runs the tests.
# Both create .venv on a fresh machine. torch is pinned (constraints file) so no CUDA build is pulled.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export OMP_NUM_THREADS := 1
export MKL_NUM_THREADS := 1

.PHONY: demo demo-all-in-flight demo-rl train-policy test install bench lint docs clean browser-deps

install: $(STAMP)

$(STAMP): pyproject.toml requirements/constraints.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -c requirements/constraints.txt -e '.[test]'
	@if $(PY) -m pip list 2>/dev/null | grep -qiE '^(nvidia-|triton)'; then echo "CUDA packages were installed" >&2; exit 1; fi
	touch $(STAMP)

DEMO_LEDGER := sqlite:///runs/demo/ledger.db

demo: $(STAMP)
	rm -rf runs/demo
	$(VENV)/bin/cellpilot run examples/drug_combo.yaml --dry-run --ledger $(DEMO_LEDGER) --data-dir runs/demo/data
	$(VENV)/bin/cellpilot report --ledger $(DEMO_LEDGER) --out runs/demo/report

# The demo with all six plates in flight at once: ~2 simulated days instead of ~4, but every
# plate is proposed before any result is in (no plate designed from a model).
demo-all-in-flight: $(STAMP)
	rm -rf runs/demo-all && mkdir -p runs/demo-all
	sed -e 's/^name: drug_combo$$/name: drug_combo_all_in_flight/' \
	    -e 's/max_plates_in_flight: 3$$/max_plates_in_flight: 6/' examples/drug_combo.yaml > runs/demo-all/campaign.yaml
	$(VENV)/bin/cellpilot run runs/demo-all/campaign.yaml --dry-run --ledger sqlite:///runs/demo-all/ledger.db --data-dir runs/demo-all/data
	$(VENV)/bin/cellpilot report --ledger sqlite:///runs/demo-all/ledger.db --out runs/demo-all/report

POLICY := policies/adaptive_dosing.zip

# The trained policy ships with the repository; `make train-policy` trains it again (~200 CPU s).
$(POLICY): | $(STAMP)
	$(PY) -m planners.rl.train --out $(POLICY)

train-policy: $(STAMP)
	$(PY) -m planners.rl.train --out $(POLICY)

demo-rl: $(POLICY)  ## the adaptive-dosing time-course with the RL agent and the shipped policy
	rm -rf runs/demo-rl
	$(VENV)/bin/cellpilot run examples/adaptive_dosing.yaml --dry-run --ledger sqlite:///runs/demo-rl/ledger.db --data-dir runs/demo-rl/data
	$(VENV)/bin/cellpilot report --ledger sqlite:///runs/demo-rl/ledger.db --out runs/demo-rl/report

# One worker per CPU; a test file stays on one worker (its module fixtures are built once).
test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -n auto --dist loadfile

browser-deps:  ## Debian's Chromium for the console's browser tests (root)
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium

bench: $(STAMP)
	$(PY) benchmarks/planner_efficiency.py

lint: $(STAMP)  ## ruff (lint + format check) and mypy (strict on the lower layers, see pyproject)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

docs: $(STAMP)  ## the documentation site, offline, into site/ (--strict: a broken reference fails)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

clean:
	rm -rf $(VENV) runs report site
