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
// f16 included), or int4 K and V (MHA int4 per-head, H200 batch 64 x 2048: 160 us, 74% of the
// read bandwidth, scalar 247 us). Other MHA caches keep the scalar kernel (int8 259 us against
// 271, f16 482 against 571).
bool DecodeTcPreferred(const KernelSpec& spec);
// Makes `spec` (a decode spec) run on the tensor-core kernel when `tc` says so and it is
// supported (tc < 0: when preferred, 0: never, > 0: whenever supported), else on the scalar
// one; the scalar kernel's load shape (vec_bytes, prefetch) does not apply to the other. The
// tensor-core spec gets its register cap explicitly (DecodeTcMinBlocks, unless set), so a
// small spill under it is kept rather than rebuilt uncapped (see there).
void SelectDecodeKernel(int tc, KernelSpec* spec);
// CTAs per SM the tensor-core kernel's registers must allow: 16 warps per SM (128 registers)
// with at most 8 query heads per kv head (one n tile of heads: 76-123 registers without a
// cap, no spills); 12 warps (168) for groups of 9-16 (two n tiles: spills under 128).
int DecodeTcMinBlocks(const KernelSpec& spec);
// Fills threads, unroll (the cp.async pipeline depth) and checks the spec, for ResolveDefaults.
absl::Status ResolveDecodeTcDefaults(KernelSpec* spec);
// Sequence splits for `ctas` CTAs per split (sessions x kv heads) on `sms` SMs with `slots`
// CTAs resident at once. On the H200 one split was the fastest whenever every SM had a CTA
// (GQA 8:1 at batch 64: 256 CTAs, int8 1 split 45.8 us, 2 splits 52.9 us), splitting past
// one wave was ruinous (first kernel, batch 4 x 32K: 13 splits over 396 slots 125 us, 12
// splits 84 us), and splits of 256 tokens lost to 512 (batch 1 x 8K, int8 20.0 against 18.4
// us; f16 22.5 against 23.5). So: one split when ctas >= sms, else as many as one wave holds,
// at most one per 512 tokens.
int DecodeTcSplits(int64_t ctas, int sms, int64_t slots, int max_seq_len);
// Dynamic shared memory of the kernel (the pipeline stages or the cross-warp combine buffers).
int DecodeTcSharedBytes(const KernelSpec& spec);
// The most a CTA of it may have on sm_`arch` (the SM's shared memory less the driver's 1 KiB).
int DecodeTcMaxSharedBytes(int arch);
// The default pipeline depth of a resolved spec (threads and min_blocks set): as many stages
// as keep min_blocks CTAs per SM in shared memory, at least 2 and at most 4.
int DecodeTcDefaultStages(const KernelSpec& spec);

}  // namespace kvcc::codegen
