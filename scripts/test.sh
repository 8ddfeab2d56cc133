#!/usr/bin/env bash
# The test command: set up and build, install the Python oracles (onnx, torch CPU,
# transformers) into .venv, then run the GoogleTest suite, the Python checks and a bounded
# fuzzing run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/pip install -q -r scripts/requirements-test.txt

export PATH="$PWD/.venv/bin:$PATH"
export KVCC_PYTHON="$PWD/.venv/bin/python"
ctest --test-dir build --output-on-failure
bash scripts/fuzz.sh 60
