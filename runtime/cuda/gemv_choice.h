// Which skinny linears the CUDA backend runs as the decode GEMV (codegen/ops_gemv.cuh) rather
// than through cuBLASLt, and which of its variants: a rule over the shape measured on the H200
// (`kvcc bench gemv`, docs/performance.md), so a decode step picks it without a timing run.
#pragma once

#include <cstdint>

#include "codegen/ops_kernels.h"

namespace kvcc::runtime {

// CudaBackend::set_gemv_choice values besides a variant index.
inline constexpr int kGemvByRule = -1;  // GemvVariantFor (the default)
inline constexpr int kGemvOff = -2;     // always cuBLASLt

// Whether the GEMV can compute y [tokens, out] = x [tokens, in] . w^T at all: 1 to
// codegen::kGemvMaxTokens tokens, an input width that is a multiple of 8 (16-byte rows).
bool GemvTakes(int64_t tokens, int64_t in, int64_t out);

// The index into codegen::GemvVariants() for such a linear, or -1 where cuBLASLt is faster (or
// the GEMV cannot take it).
int GemvVariantFor(int64_t tokens, int64_t in, int64_t out);

// CTAs of `v` for `out` rows on `sms` SMs that hold `ctas_per_sm` of its CTAs each: one per
// group of v.strips 16-row strips, or, persistent, the fewest that still take the groups in
// as many rounds as sms x ctas_per_sm CTAs would (equal rounds for every CTA).
unsigned GemvGrid(const codegen::GemvVariant& v, int64_t out, int sms, int ctas_per_sm);

}  // namespace kvcc::runtime
