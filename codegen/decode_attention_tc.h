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
// Fills threads, kv_tile (tokens per softmax step), unroll (the cp.async pipeline depth) and
// min_blocks, and checks the spec, for ResolveDefaults.
absl::Status ResolveDecodeTcDefaults(KernelSpec* spec);
// Sequence splits for `ctas` CTAs per split (sessions x kv heads) on `sms` SMs with `slots`
// CTAs resident at once. On the H200 (docs/performance.md) one split was the fastest whenever
// every SM had a CTA (GQA 8:1 at batch 64: 256 CTAs, int8 1 split 46.6 us, 2 splits 50.7),
// splitting past one wave was ruinous (batch 4 x 32K: 13 splits over 396 slots 125 us, 12
// splits 84 us), a count that leaves some SMs one CTA more than others cost up to 10% (4 x
// 32K, int8: 9 splits = 288 CTAs 88.5 us, 8 splits 80.0), and with the parallel merge two
// CTAs an SM were the fastest below (1 x 2K: 16 splits, int8 11.5 us against 12.4 at 8; 1 x
// 8K: 32 splits, 16.6 against 17.5 at 16; 4 x 2K: 8). So: one split when ctas >= sms, else
// 2 sms / ctas (rounded down), never past one wave, at most one per 128 tokens.
int DecodeTcSplits(int64_t ctas, int sms, int64_t slots, int max_seq_len);
// Dynamic shared memory of the kernel (the pipeline stages or the cross-warp combine buffers).
int DecodeTcSharedBytes(const KernelSpec& spec);
// The most a CTA of it may have on sm_`arch` (the SM's shared memory less the driver's 1 KiB).
int DecodeTcMaxSharedBytes(int arch);
// The default pipeline depth of a resolved spec (kv_tile set): 2 stages; with 32-token steps
// 3 (their least), 4 for int4 K and V. Deeper pipelines lost on the H200 at batch 64 x 2048
// (GQA 4:1 int8: 2 stages 77.7 us, 3 79.3; int4 2 stages 49.4, 4 52.8; GQA 8:1 f16, int8,
// fp8 alike), except int4 with 32-token steps (GQA 8:1: 4 stages 34.1 us, 3 38.3). MHA int4
// (2 stages 165.0 us, 4 160.6) keeps 2.
int DecodeTcDefaultStages(const KernelSpec& spec);
// The default tokens per softmax step: 32 for 8 query heads per kv head (H200, GQA 8:1
// batch 64 x 2048: int4 33.3 us against 36.4, int8 45.7 / 46.6, f16 77.4 / 78.5; fp8 46.2 /
// 45.4), else 16 (GQA 4:1: 16 was as fast or faster for every cache).
int DecodeTcDefaultStepTokens(const KernelSpec& spec);

}  // namespace kvcc::codegen
