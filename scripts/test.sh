#!/usr/bin/env bash
# The test command: set up and build, install the Python oracles (onnx, torch CPU,
# transformers) into .venv, then run the GoogleTest suite, the Python checks and a bounded
# fuzzing run.
#   bash scripts/test.sh              # the suite on build/ plus fuzzing (what CI runs)
#   bash scripts/test.sh --sanitize   # the suite built with ASan + UBSan into build-asan/
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
build=build
if [[ ${1:-} == --sanitize ]]; then
  build=build-asan
  # -O1 and line tables only: the instrumented build compiles about twice as fast.
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKVCC_SANITIZE=ON \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -DNDEBUG" \
    ${KVCC_CMAKE_ARGS:-} >/dev/null
  cmake --build "$build" -j "$(nproc)"
  # CUDA's runtime reserves address space where ASan keeps its shadow gap.
  export ASAN_OPTIONS=${ASAN_OPTIONS:-protect_shadow_gap=0:detect_leaks=1}
  export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q -r scripts/requirements-test.txt

export PATH="$PWD/.venv/bin:$PATH"
export KVCC_PYTHON="$PWD/.venv/bin/python"
ctest --test-dir "$build" --output-on-failure
if [[ $build == build ]]; then bash scripts/fuzz.sh 60; fi
