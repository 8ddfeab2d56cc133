// When a decode runs on the tensor-core kernel (codegen/decode_attention_tc.cuh) rather than
// decode_attention.cuh, and that kernel's tile defaults.
#pragma once

#include <cstdint>

#include "absl/status/status.h"
#include "codegen/kernel_spec.h"

namespace kvcc::codegen {

// Whether decode_attention_tc.cuh can run `spec` (a decode spec, either op): head_dim 64 or
// 128, blocks of a multiple of 16 tokens, f16 activations, no per-channel part, sm_80 or later.
bool DecodeTcSupports(const KernelSpec& spec);
// Whether it is the faster choice: supported and GQA (there the scalar kernel is bound by the
// dequantization and per-head work, not by memory; on the H200 it was faster for every cache,
// f16 included). Without GQA the scalar kernel stays (int8 at 90% of the read bandwidth).
bool DecodeTcPreferred(const KernelSpec& spec);
// Makes `spec` (a decode spec) run on the tensor-core kernel when `tc` says so and it is
// supported (tc < 0: when preferred, 0: never, > 0: whenever supported), else on the scalar
// one; the scalar kernel's load shape (vec_bytes, prefetch) does not apply to the other.
void SelectDecodeKernel(int tc, KernelSpec* spec);
// Fills threads, unroll (the cp.async pipeline depth) and checks the spec, for ResolveDefaults.
absl::Status ResolveDecodeTcDefaults(KernelSpec* spec);
// Sequence splits for `ctas` CTAs per split (sessions x kv heads) when `slots` CTAs are
// resident at once: the fewest that keep the last wave at least 90% full (a wave of 512 CTAs
// over 396 slots leaves a third of the device idle for half the time), else the fullest, at
// most one per 128 tokens.
int DecodeTcSplits(int64_t ctas, int64_t slots, int max_seq_len);
// Static shared memory of the kernel (the pipeline stages or the cross-warp combine buffers).
int DecodeTcSharedBytes(const KernelSpec& spec);

}  // namespace kvcc::codegen
