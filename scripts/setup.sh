#!/usr/bin/env bash
# Installs every system dependency from Debian's packages and builds kvcc into build/.
# Idempotent: packages already present are skipped; the build is incremental.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(cmake ninja-build g++ pkg-config clang libclang-rt-dev
          libabsl-dev libprotobuf-dev protobuf-compiler libonnx-dev
          libsentencepiece-dev libre2-dev nlohmann-json3-dev libgtest-dev python3-venv
          libcpp-httplib-dev)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

if [ ! -x /usr/local/cuda/bin/nvcc ] && ! command -v nvcc >/dev/null; then
  echo "setup: the CUDA toolkit (NVRTC, cuBLAS) is expected at /usr/local/cuda" >&2
  exit 1
fi
export PATH=/usr/local/cuda/bin:$PATH

cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${KVCC_CMAKE_ARGS:-}
cmake --build build -j "$(nproc)"
