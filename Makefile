# The two commands of the README: `make repro` (whole pipeline, default profile) and `make test`.
# Both create .venv and install the pinned requirements first; nothing needs installing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup repro bench test browser demo paper-gpu ablations baselines

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro
	$(MAKE) bench

# The timings of this machine: stage bench reruns even where DVC finds it up to date (where a fresh clone trains the
# model the lock records, `dvc repro` alone keeps the committed metrics/bench.json, timed on another machine).
bench: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro --force --single-item bench

test: setup browser
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

# The browser test of the demo (tests/test_demo.py) drives Debian's chromium through Debian's chromedriver.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
		{ echo "make test: install Debian's chromium and chromium-driver (apt-get needs root)"; exit 1; }

# The demo page and JSON API over respond (docs/demo.md); needs `make repro` first. HOST=0.0.0.0 serves other machines.
HOST ?= 127.0.0.1
PORT ?= 7860
demo: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m stages.demo --host $(HOST) --port $(PORT)

# Paper scale on one GPU for a fixed time (stages/paper_gpu.py); needs `dvc repro retrieve` first.
MINUTES ?= 8
paper-gpu: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m stages.paper_gpu --minutes $(MINUTES)

# The ablation study (paper Tables 4 and 5) as six queued DVC experiments (stages/ablations.py); needs `make repro` first.
# Then `dvc queue status` until done, and `python -m stages.ablations collect` for the tables.
ablations: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m stages.ablations queue

# Table 2's baselines (TRS, TransferTransfo on SmolLM2-135M, the same with a controls prefix): their own DVC pipeline,
# baselines/dvc.yaml, on the default DAG's outputs (it runs the default stages it needs first) -> metrics/baselines.json,
# docs/baselines.md. Kept out of `make repro`, which stays in its time budget. Its speed table is timed on this machine
# as `make bench` times stage bench (forced), then its page is redrawn.
baselines: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro baselines/dvc.yaml
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro --force --single-item baselines/dvc.yaml:bench
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro baselines/dvc.yaml
