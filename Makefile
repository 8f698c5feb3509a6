# The two commands: `make demo` runs the main job, `make test` the whole suite.
# Both set everything up first (scripts/bootstrap.sh) and are safe to rerun.
VENV ?= .venv
BIN := $(VENV)/bin
CORE_TEST_BUILD := build/core-tests
CXX_SOURCES := $(shell git ls-files -- 'cpp/*.hpp' 'cpp/*.cpp' 'firmware/*.hpp' 'firmware/*.cpp' 2>/dev/null)

.PHONY: all bootstrap demo test test-core test-fuzz test-python lint format clean

all: demo

bootstrap:
	@scripts/bootstrap.sh

demo: bootstrap
	@$(BIN)/armvcpu demo

FUZZ_BUILD := build/fuzz

test: bootstrap lint test-core test-fuzz test-python

# The core on the host under AddressSanitizer and UndefinedBehaviorSanitizer.
test-core:
	@echo "==> C++ core tests (GoogleTest, ASan + UBSan)"
	@$(BIN)/cmake -S . -B $(CORE_TEST_BUILD) -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(BIN))/ninja \
	  -DCMAKE_BUILD_TYPE=Debug -DARMVCPU_BUILD_FIRMWARE=OFF -DARMVCPU_BUILD_PYTHON=OFF \
	  -DARMVCPU_BUILD_TESTS=ON -DARMVCPU_SANITIZE=ON >/dev/null
	@$(BIN)/cmake --build $(CORE_TEST_BUILD) -- -j2
	@cd $(CORE_TEST_BUILD) && ../../$(BIN)/ctest --output-on-failure -j2

# The core's libFuzzer targets, each for a bounded number of inputs.
test-fuzz:
	@echo "==> C++ core fuzzing (libFuzzer, ASan + UBSan, bounded)"
	@$(BIN)/cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_MAKE_PROGRAM=$(abspath $(BIN))/ninja \
	  -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo -DARMVCPU_BUILD_FIRMWARE=OFF \
	  -DARMVCPU_BUILD_PYTHON=OFF -DARMVCPU_BUILD_FUZZ=ON >/dev/null
	@$(BIN)/cmake --build $(FUZZ_BUILD) -- -j2
	@cd $(FUZZ_BUILD) && ../../$(BIN)/ctest --output-on-failure

test-python:
	@echo "==> Python tests (real QEMU, real firmware)"
	@$(BIN)/python -m pytest -n 2

lint:
	@echo "==> lint: clang-format, ruff, mypy"
	@$(BIN)/clang-format --dry-run -Werror $(CXX_SOURCES)
	@$(BIN)/ruff check python tests examples
	@$(BIN)/ruff format --check python tests examples
	@$(BIN)/pybind11-stubgen armvcpu._core -o build/stubs >/dev/null
	@cp build/stubs/armvcpu/_core.pyi python/armvcpu/_core.pyi
	@$(BIN)/mypy

format:
	@$(BIN)/clang-format -i $(CXX_SOURCES)
	@$(BIN)/ruff format python tests
	@$(BIN)/ruff check --fix python tests

clean:
	rm -rf build dist
