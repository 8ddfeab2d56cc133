#!/usr/bin/env bash
# Run HERE (the build machine): builds the GPU tests and `kvcc` in a Release build directory and
# stages them, with the shared libraries the device machine's image lacks (Abseil,
# sentencepiece), into device_libs/ (git-ignored), which the device `run` call carries.
# The device has CUDA 13.0 (cudart, NVRTC, cuBLAS) of its own.
#   usage: scripts/device_stage.sh [build dir, default build]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
TARGETS="kvcc cuda_attention_test codegen_kernels_test codegen_kernel_cache_test codegen_sha256_test"
ninja -C "$BUILD" -j2 $TARGETS
rm -rf device_libs
mkdir -p device_libs/bin device_libs/lib
cp "$BUILD/tools/kvcc" device_libs/bin/
for t in cuda_attention_test codegen_kernels_test codegen_kernel_cache_test codegen_sha256_test; do
  cp "$BUILD/tests/$t" device_libs/bin/
done
for b in device_libs/bin/*; do ldd "$b"; done | awk '$3 ~ /^\// {print $3}' | sort -u |
  grep -E 'libabsl_|libsentencepiece|libprotobuf|libgtest' | while read -r lib; do
    cp -L "$lib" device_libs/lib/
  done
du -sh device_libs
