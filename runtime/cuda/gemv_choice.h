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

// Weights of at most this many elements are "tiny": their linears never go to cuBLASLt at
// 1-16 tokens (the small kernel takes any shape), so a tiny model's decode needs no cuBLASLt.
inline constexpr int64_t kGemvTinyElements = int64_t{1} << 20;

// Whether variant `v` can compute y [tokens, out] = x [tokens, in] . w^T: up to its token
// count; the tensor-core variants also need an input width that is a multiple of 8 and x, w
// and y 16-byte aligned (`aligned16`), the small one any shape.
bool GemvVariantTakes(const codegen::GemvVariant& v, int64_t tokens, int64_t in, int64_t out,
                      bool aligned16);

// The index into codegen::GemvVariants() for such a linear, or -1 where cuBLASLt is faster (or
// no variant can take it).
int GemvVariantFor(int64_t tokens, int64_t in, int64_t out, bool aligned16);

// CTAs of `v` for `out` rows.
unsigned GemvGrid(const codegen::GemvVariant& v, int64_t out);

}  // namespace kvcc::runtime
