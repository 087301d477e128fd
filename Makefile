# The README's two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint unit fuzz demo bench protos clean

# grpcio-tools is the protobuf code generator, pinned so the gencode runs on protobuf 5.26-7.x;
# --no-deps because its metadata asks for protobuf<6, which generating code does not need.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	$(BIN)/python -m pip install -q --no-deps grpcio-tools==1.63.2
	touch $(STAMP)

install: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks scripts
	$(BIN)/mypy

test: $(STAMP) lint
	$(BIN)/python -m pytest -q

unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit

# `make test` runs the fuzz suite with 150 examples a test; this runs 2000 (about a minute).
fuzz: $(STAMP)
	VINOSERVE_FUZZ_EXAMPLES=$${VINOSERVE_FUZZ_EXAMPLES:-2000} $(BIN)/python -m pytest -q -s -m fuzz tests/fuzz

demo: $(STAMP)
	$(BIN)/python examples/demo.py

bench: $(STAMP)
	$(BIN)/python benchmarks/bench.py

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

clean:
	rm -rf $(VENV) demo bench-out
