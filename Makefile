# The two commands of the README: `make repro` (whole pipeline, default profile) and `make test`.
# Both create .venv and install the pinned requirements first; nothing needs installing by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup repro test paper-gpu ablations

setup: $(STAMP)

$(STAMP): requirements.txt requirements-nodeps.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -r requirements-nodeps.txt
	touch $(STAMP)

repro: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

test: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -q

# Paper scale on one GPU for a fixed time (stages/paper_gpu.py); needs `dvc repro retrieve` first.
MINUTES ?= 8
paper-gpu: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m stages.paper_gpu --minutes $(MINUTES)

# The ablation study (paper Tables 4 and 5) as six queued DVC experiments (stages/ablations.py); needs `make repro` first.
# Then `dvc queue status` until done, and `python -m stages.ablations collect` for the tables.
ablations: setup
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m stages.ablations queue
