# Two commands for a newcomer:  `make demo` (install + run the embedded demo)  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
# PyTorch for the mix stage's proxy models; a plain `torch` from PyPI is a multi-GB CUDA build, so the CPU
# build is installed first (CI finds this pin as a local CPU wheel; elsewhere use TORCH="torch --index-url
# https://download.pytorch.org/whl/cpu", or your cluster's CUDA build)
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin

.PHONY: demo test lint clean

demo: $(VENV)/.installed
	$(BIN)/winnow make-demo-data data/demo --full
	$(BIN)/winnow classifier train --no-progress -p data/demo/quality/positive.jsonl -n data/demo/quality/negative.jsonl \
		-o data/demo/quality/model.bin
	@# exit 1 = the run finished with error records: the demo's broken PDF is one, on purpose
	$(BIN)/winnow run manifests/full_demo.yaml || test $$? -eq 1
	@echo "rephrase: skipped - no LLM server is configured (README: 'Rephrasing with an LLM')"
	$(BIN)/winnow report out/full_demo
	@echo
	@echo "DuckDB: why were documents dropped, per stage?"
	$(BIN)/winnow sql out/full_demo "SELECT stage, reason, count(*) AS n FROM (SELECT stage, reason FROM extract_rejects UNION ALL SELECT stage, reason FROM heuristics_rejects UNION ALL SELECT stage, reason FROM dedup_rejects UNION ALL SELECT stage, reason FROM quality_rejects) GROUP BY ALL ORDER BY n DESC LIMIT 10"
	@echo "DuckDB: the final corpus by source"
	$(BIN)/winnow sql out/full_demo "SELECT source, count(*) AS documents, sum(tokens) AS tokens FROM final GROUP BY 1 ORDER BY 1"

test: $(VENV)/.installed $(VENV)/.llm
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The virtual environment: the CPU build of torch, then winnow (editable) with its dev, bench and multilingual extras.
# Dependency resolution alone gives a working install (tests/test_wheel_install.py checks a plain wheel).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench,multilingual,embed]'
	touch $@

# llama.cpp's server for the tests that need a real LLM endpoint. There is no CPU wheel on PyPI: pip builds
# it from source (~15 minutes on 2 cores, once; pip caches the wheel). Portable build, no native CPU flags.
$(VENV)/.llm: $(VENV)/.installed
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(BIN)/python -m pip install --quiet -e '.[llm]'
	touch $@

clean:
	rm -rf out data/demo
