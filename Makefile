# osbackend: thin wrapper over CMake. The two commands: `make run`, `make test`.
SHELL := /bin/bash
BUILD_RELEASE := build/release
BUILD_TEST := build/asan
JOBS := $(shell nproc)

.PHONY: all deps build build-test run test unit integration bench fuzz chaos soak clean

all: build

deps:
	@scripts/deps.sh build

build: deps
	@cmake -S . -B $(BUILD_RELEASE) -DCMAKE_BUILD_TYPE=Release -DOSB_SANITIZE=OFF >/dev/null
	@cmake --build $(BUILD_RELEASE) -j $(JOBS) --target osbackend

run: build
	$(BUILD_RELEASE)/osbackend

build-test:
	@scripts/deps.sh test
	@cmake -S . -B $(BUILD_TEST) -DCMAKE_BUILD_TYPE=Debug -DOSB_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_TEST) -j $(JOBS)

# Unit tests (cmocka via ctest), then black-box tests against the real binary
# and a real PostgreSQL; the summary line is "N passed, N failed". The release
# build is made too: tests/integration/deploy.test.mjs runs it sandboxed.
test: build build-test
	@scripts/test.sh

# libFuzzer drivers (clang, build/fuzz): each runs FUZZ_SECONDS (default 60),
# then a summary table. `make test` replays their corpora instead.
fuzz:
	@scripts/fuzz.sh run

# Fault injection under load (PostgreSQL restart, SIGTERM drain, slow
# WebSocket subscribers, floods) against the ASan build; CHAOS_SECONDS bounds
# each load phase. Prints a summary and fails on any broken expectation.
chaos: build-test
	@scripts/chaos.sh

# Mixed traffic for SOAK_SECONDS (default 600), the ASan/LSan build and the
# release build side by side: heap, fd and (release) RSS slopes after warm-up,
# sanitizer reports, lost acknowledged messages.
soak: build build-test
	@scripts/soak.sh

bench:
	@scripts/deps.sh bench
	@cmake -S . -B $(BUILD_RELEASE) -DCMAKE_BUILD_TYPE=Release -DOSB_SANITIZE=OFF >/dev/null
	@cmake --build $(BUILD_RELEASE) -j $(JOBS) --target osbackend wsload >/dev/null
	@bench/run.sh

clean:
	rm -rf build
