# Quick start: `make run` (installs what is missing, builds, runs the demo) and `make test`
# (builds and runs every test: the Release suite, then the whole suite again under ASan+UBSan
# with clang, which also builds and runs the libFuzzer targets).

BUILD      ?= build
SAN_BUILD  ?= build-asan
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
APT_PKGS   := cmake make gcc clang libclang-rt-14-dev python3

.PHONY: run test deps build build-asan test-release test-asan bench bench-torch clean

run: deps build
	./$(BUILD)/fia demo

test: deps test-release test-asan

# Installs the Debian packages that are missing (no-op when everything is there).
deps:
	@missing=""; \
	for p in cmake gcc clang; do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	ls /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.fuzzer-x86_64.a >/dev/null 2>&1 || missing="$$missing libclang-rt-14-dev"; \
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

bench: build
	./$(BUILD)/fia bench

# torch's CPU path beside fia on the DeepSeek cases (bench/torch_peer.py): with the project's
# venv when present, else python3; skips cleanly when torch is not importable.
PEER_PY ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)
bench-torch: build
	$(PEER_PY) bench/torch_peer.py --fia ./$(BUILD)/fia

clean:
	rm -rf $(BUILD) $(SAN_BUILD)
