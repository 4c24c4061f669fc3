# cma-toolkit: `make demo` runs the main job on the embedded mini-ShapeNet; `make test` runs the suite.
# Both set themselves up (.venv in the repo root); re-running is cheap when nothing changed.

SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO := out/demo
DEMO_TREE := $(DEMO)/mini-shapenet
DEMO_PER_CATEGORY ?= 8
DEMO_SEED ?= 0
DEMO_PREVIEW ?= 8
DEMO_RENDER_ARGS ?= --resolution 96 --views 6 --samples 16 --view-points 1024 --fused-points 4096
PYTEST_ARGS ?=
FAST_JOBS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
# Another CPU family's kernels on this machine: `make test KERNELS=avx2` (an AVX2 machine such as AMD EPYC
# Zen 2/3) or KERNELS=default (no SIMD). Holds torch (ATen), oneDNN, MKL, OpenBLAS and numpy to that
# instruction set; each picks its kernels by CPU, and their rounding differs.
KERNELS ?=
KERNELS_avx2 := ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 OPENBLAS_CORETYPE=Haswell \
	NPY_DISABLE_CPU_FEATURES="AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL AVX512_ICL AVX512_SPR"
KERNELS_default := ATEN_CPU_CAPABILITY=default ONEDNN_MAX_CPU_ISA=SSE41 MKL_ENABLE_INSTRUCTIONS=SSE4_2 \
	OPENBLAS_CORETYPE=Nehalem NPY_DISABLE_CPU_FEATURES="AVX512F AVX512CD AVX512_SKX AVX512_CLX AVX512_CNL \
	AVX512_ICL AVX512_SPR AVX2 FMA3 F16C AVX"
# inductor's compile cache does not tell the kernel sets apart (it reuses AVX-512 code under avx2): one each
KERNEL_ENV = $(if $(KERNELS),$(or $(KERNELS_$(KERNELS)),$(error KERNELS must be avx2 or default, got $(KERNELS))) \
	TORCHINDUCTOR_CACHE_DIR=$${TMPDIR:-/tmp}/torchinductor-$(KERNELS))

.PHONY: help install system-deps python-deps test test-fast demo clean FORCE

help:
	@echo "make demo     synthesize the mini-ShapeNet, scan, render, validate and preview it (sets itself up)"
	@echo "make test     install, then run the test suite"
	@echo "make test-fast  the tests that start no process and train nothing for long: under half a minute"
	@echo "               (KERNELS=avx2 or KERNELS=default: as on a CPU of that family)"
	@echo "make install  create $(VENV) and install the toolkit into it"
	@echo "make clean    remove $(VENV) and out/"

install: $(STAMP)

# open3d links against libusb-1.0 (Debian package libusb-1.0-0).
system-deps:
	@if ldconfig -p 2>/dev/null | grep -q 'libusb-1\.0\.so\.0'; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing libusb-1.0-0 (needed by open3d)"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libusb-1.0-0; } >/dev/null 2>&1 \
			|| { echo "apt-get could not install libusb-1.0-0; install it and re-run make" >&2; exit 1; }; \
	else \
		echo "open3d needs the system library libusb-1.0; install it, then re-run make:" >&2; \
		echo "    sudo apt-get install -y libusb-1.0-0" >&2; \
		exit 1; \
	fi

# Python 3.11 with venv support (Debian: python3.11 + python3.11-venv, installed when root).
python-deps:
	@if ! command -v $(PYTHON) >/dev/null || ! $(PYTHON) -c 'import ensurepip, venv' 2>/dev/null; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing python3.11 and python3.11-venv"; \
			{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11 python3.11-venv; } >/dev/null 2>&1 \
				|| { echo "apt-get could not install python3.11-venv" >&2; exit 1; }; \
		else \
			echo "Python 3.11 with venv is required ($(PYTHON)); install it or set PYTHON=/path/to/python3.11:" >&2; \
			echo "    sudo apt-get install -y python3.11 python3.11-venv" >&2; \
			exit 1; \
		fi; \
	fi
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null || \
		{ echo "$(PYTHON) is not Python 3.11 (bpy==5.0.1 needs 3.11); set PYTHON=/path/to/python3.11" >&2; exit 1; }

$(STAMP): pyproject.toml
	@$(MAKE) --no-print-directory system-deps python-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "installing the toolkit and its dependencies into $(VENV) (log: $(VENV)/install.log)"
	@{ $(BIN)/python -m pip install --upgrade pip && $(BIN)/python -m pip install -e '.[dev]'; } \
		> $(VENV)/install.log 2>&1 || { tail -n 40 $(VENV)/install.log >&2; echo "install failed; full log: $(VENV)/install.log" >&2; exit 1; }
	@touch $(STAMP)

test: install
	$(KERNEL_ENV) $(BIN)/python -m pytest --durations=15 $(PYTEST_ARGS)

# The quick developer loop: tests/conftest.py marks every test that starts a process; slow marks
# torch.compile and the learning tests (seconds each). It runs on up to 4 cores (pytest-xdist), one torch
# thread per worker: 2 workers of 1 thread take 2/3 of the time 1 process of 2 threads takes on 2 cores.
test-fast: install
	OMP_NUM_THREADS=1 $(KERNEL_ENV) $(BIN)/python -m pytest -m "not process and not slow" -n $(FAST_JOBS) $(PYTEST_ARGS)

# Rewritten only when the demo parameters change, so the tree below is rebuilt only then.
$(DEMO)/.synth-params: FORCE
	@mkdir -p $(DEMO)
	@echo "$(DEMO_PER_CATEGORY) $(DEMO_SEED)" | cmp -s - $@ || echo "$(DEMO_PER_CATEGORY) $(DEMO_SEED)" > $@

# A new tree makes the dataset rendered from the old one stale, so it goes too.
$(DEMO_TREE)/taxonomy.json: $(STAMP) $(wildcard cma_builder/source/synth/*.py) $(DEMO)/.synth-params
	rm -rf $(DEMO)/dataset
	$(BIN)/cma-build synth --out $(DEMO_TREE) --per-category $(DEMO_PER_CATEGORY) --seed $(DEMO_SEED)

# render resumes: with nothing left to do it returns at once. validate fails make on any failed check.
demo: install $(DEMO_TREE)/taxonomy.json
	$(BIN)/cma-build scan --shapenet $(DEMO_TREE) --out $(DEMO)/manifest.csv
	$(BIN)/cma-build render --shapenet $(DEMO_TREE) --out $(DEMO)/dataset $(DEMO_RENDER_ARGS)
	$(BIN)/cma-build validate $(DEMO)/dataset --shapenet $(DEMO_TREE) --report $(DEMO)/validation.json
	$(BIN)/cma-build preview $(DEMO)/dataset --n $(DEMO_PREVIEW) --out $(DEMO)/preview

clean:
	rm -rf $(VENV) out

FORCE:
