# The README's two commands: `make demo` and `make test`. Everything they need is installed here.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install test lint unit fuzz demo bench soak protos clean image base-image

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
	$(BIN)/ruff format --check src tests examples benchmarks scripts
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

# memory under churn (reshapes, config edits, unknown names); several minutes, not part of `make test`
soak: $(STAMP)
	$(BIN)/python scripts/soak.py

protos: $(STAMP)
	$(BIN)/python scripts/gen_protos.py

# `make image` builds the container image with podman (chroot isolation: no daemon and no user
# namespaces needed), from BASE_IMAGE: any image with python3 (3.11+) and its venv module. By default
# that base is made here by `make base-image` (debootstrap of Debian bookworm with python3-venv, then
# podman import), so no container registry is needed. Needs `apt-get install podman runc debootstrap`;
# not part of `make test`. Elsewhere: make image BASE_IMAGE=docker.io/library/python:3.12-slim
IMAGE ?= vinoserve:latest
LOCAL_BASE := localhost/vinoserve-base:bookworm
BASE_IMAGE ?= $(LOCAL_BASE)
BASE_ROOTFS := $(CURDIR)/build/base-rootfs
# CA_BUNDLE: a CA file pip in the build should trust (a TLS-inspecting proxy), mounted for the build only
CA_BUNDLE ?=

image:
	@if [ "$(BASE_IMAGE)" = "$(LOCAL_BASE)" ] && ! podman image exists $(LOCAL_BASE); then $(MAKE) base-image; fi
	podman build --isolation chroot --format docker --build-arg BASE=$(BASE_IMAGE) \
	  $(if $(CA_BUNDLE),--volume $(abspath $(CA_BUNDLE)):/run/ca-bundle.crt:ro --build-arg PIP_CERT=/run/ca-bundle.crt) \
	  -f Containerfile -t $(IMAGE) .

base-image:
	rm -rf $(BASE_ROOTFS) && mkdir -p $(dir $(BASE_ROOTFS))
	debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm $(BASE_ROOTFS)
	chroot $(BASE_ROOTFS) apt-get clean
	rm -rf $(BASE_ROOTFS)/var/lib/apt/lists/*
	tar -C $(BASE_ROOTFS) -c . | podman import --change 'CMD ["python3"]' - $(LOCAL_BASE)
	rm -rf $(BASE_ROOTFS)

# everything the targets above make: the venv, demo data, bench output, caches and build metadata
clean:
	rm -rf $(VENV) demo bench-out build dist src/*.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
