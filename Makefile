# Quick start: `make run` (installs what is missing, builds, runs the demo and the Python
# example) and `make test` (builds and runs every test: the Release suite, the whole suite again
# under ASan+UBSan with clang, which also builds and runs the libFuzzer targets, then the Python
# package's pytest suite). Python work happens in the project's own virtual environment $(VENV)
# (created on first use; the system Python is never touched).

BUILD      ?= build
SAN_BUILD  ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
APT_PKGS   := cmake make gcc g++ clang libclang-rt-14-dev python3 python3-venv python3-dev \
              libdnnl-dev
VENV       ?= .venv
PY         := $(VENV)/bin/python
PY_BUILD   ?= build-py
PIP        := $(PY) -m pip --disable-pip-version-check -q

.PHONY: run test deps build build-asan test-release test-asan test-python py-install bench bench-torch clean distclean

run: deps build py-install
	./$(BUILD)/fia demo
	$(PY) python/examples/quickstart.py
	$(PY) -m fia.models.dsa_demo --fia-cli ./$(BUILD)/fia

test: deps test-release test-asan test-python

# Installs the Debian packages that are missing (no-op when everything is there).
deps:
	@missing=""; \
	for p in cmake gcc g++ clang python3; do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
	  >/dev/null 2>&1 || missing="$$missing python3-dev"; \
	ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || missing="$$missing libclang-rt-14-dev"; \
	[ -f /usr/include/oneapi/dnnl/dnnl.h ] || missing="$$missing libdnnl-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -q && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $(APT_PKGS); \
	fi

build:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS)

build-asan:
	CC=clang cmake -S . -B $(SAN_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DFIA_SANITIZE=ON -DFIA_FUZZ=ON >/dev/null
	cmake --build $(SAN_BUILD) -j $(JOBS)

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd $(SAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)

# The project's virtual environment: the build requirements of the package (no build isolation,
# so $(PY_BUILD) is reused and rebuilds are incremental) and numpy / ml_dtypes; the tests add
# torch (the PyPI wheel), pytest and safetensors (test_dsa_weights cross-checks its loader).
$(VENV)/.deps-run:
	python3 -m venv $(VENV)
	$(PIP) install "scikit-build-core>=0.10" "nanobind>=2.4" numpy ml_dtypes
	touch $@

$(VENV)/.deps-test: $(VENV)/.deps-run
	$(PIP) install torch pytest safetensors
	touch $@

# `pip install .` into the venv (builds the C library and the nanobind extension).
py-install: $(VENV)/.deps-run
	$(PIP) install --no-build-isolation -Cbuild-dir=$(PY_BUILD) .

test-python: py-install $(VENV)/.deps-test
	$(PY) -m pytest -q -p no:cacheprovider tests/python

bench: build
	./$(BUILD)/fia bench

# torch's CPU path beside fia on the DeepSeek cases (bench/torch_peer.py): with the project's
# venv when present, else python3; skips cleanly when torch is not importable.
PEER_PY ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
bench-torch: build
	$(PEER_PY) bench/torch_peer.py --fia ./$(BUILD)/fia

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(PY_BUILD)

distclean: clean
	rm -rf $(VENV)
