// The specialization key of a generated attention kernel and its rendering into CUDA source:
// every shape and scheme choice becomes a #define that the included kernel template turns into
// a compile-time constant (kvcc_common.cuh), so NVRTC folds the layout arithmetic and unrolls
// the head_dim loops.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/dtype.h"
#include "ir/kv_cache_scheme.h"

namespace kvcc::codegen {

enum class KernelOp {
  kDecodeAttention,   // one query per session over its paged cache, sequence split across CTAs
  kDecodeMerge,       // merges the split partial results of kDecodeAttention
  kPrefillAttention,  // causal attention of a session's new tokens over its paged cache
  kPrefillAttentionTc,  // the same on the tensor cores (head_dim a multiple of 32, <= 128)
  kRotaryCacheWrite,  // rotary on K (and optionally Q), K/V quantized into the paged cache
  // kDecodeAttention on tensor cores, the query heads of a kv head as tile rows (unroll: the
  // cp.async pipeline depth); codegen/decode_attention_tc.h says when it applies.
  kDecodeAttentionTc,
};

absl::string_view KernelOpName(KernelOp op);

struct KernelSpec {
  KernelOp op = KernelOp::kDecodeAttention;
  int head_dim = 128;
  int heads = 32;
  int kv_heads = 32;
  // K's storage: f16 | i8 | i4 | fp8e4m3, and its granularity.
  ir::DType cache_dtype = ir::DType::kF16;
  ir::KvGranularity granularity = ir::KvGranularity::kNone;
  // V's storage when it differs from K's (absent: like K).
  std::optional<ir::KvStorage> v_storage;
  int block_size = 64;
  ir::DType io_dtype = ir::DType::kF16;  // q, k, v, out activations: f16 | f32
  // Tile and split parameters; 0 picks the default for the shape (ResolveDefaults).
  int threads = 0;    // CTA size
  int vec_bytes = 0;  // bytes of one cache load per thread (decode)
  int unroll = 0;     // tokens per thread group per loop iteration (decode)
  int q_tile = 0;     // query rows per CTA (prefill)
  int kv_tile = 0;  // cache tokens staged per step (prefill; tensor-core decode: per softmax step)
  // CTAs per SM the register allocation must allow (__launch_bounds__'s second argument).
  // Stated explicitly because ptxas, given only the CTA size, may cap registers low enough to
  // spill (seen with CUDA 13.0 on the head_dim 128 decode kernel).
  int min_blocks = 0;
  // Decode: issue the next step's cache loads before computing the current one
  // (-1: default for the scheme, 0: off, 1: on).
  int prefetch = -1;
  // Target: compute capability (80, 90, ...) and whether to use the arch-specific target
  // (sm_90a) rather than the portable one.
  int arch = 90;
  bool arch_specific = false;

  int group() const { return heads / kv_heads; }
  ir::KvStorage k() const { return {cache_dtype, granularity}; }
  ir::KvStorage v() const { return v_storage.value_or(k()); }
  // "sm_90a", "sm_80".
  std::string ArchName() const;
  // A canonical one-line description; two specs render the same source iff these are equal.
  std::string ToString() const;
};

// Fills the zero tile parameters with the defaults for the shape and checks the whole spec,
// naming the offending field.
absl::StatusOr<KernelSpec> ResolveDefaults(const KernelSpec& spec);

struct RenderedKernel {
  KernelSpec spec;           // with defaults resolved
  std::string source;        // the #defines and the template's #include, ready for NVRTC
  std::string kernel_name;   // the extern "C" entry point
  std::string program_name;  // for NVRTC diagnostics, e.g. "decode_attention_hd128.cu"
};

absl::StatusOr<RenderedKernel> RenderKernel(const KernelSpec& spec);

// Dynamic shared memory a launch of the (resolved) spec's kernel needs; 0 for kernels with
// static shared memory only.
int DynamicSharedBytes(const KernelSpec& spec);
// Whether kPrefillAttentionTc supports the shape and target (else kPrefillAttention).
bool PrefillTcSupported(const KernelSpec& spec);

}  // namespace kvcc::codegen
