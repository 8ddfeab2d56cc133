// tuning.json of a compiled artifact (plain C++, no CUDA, so the fuzzer builds it): per
// decode-attention kernel (one per cache storage and head count) the chosen tile configuration
// and, per (batch, context) bucket, the sequence splits; per GEMM shape (tokens x out x in,
// dtype) the cuBLASLt algorithm; with the device they were measured on. `kvcc compile` writes the heuristic choices
// (device "") or, with --autotune, the measured winners; the CUDA backend applies them when the
// device matches and falls back to its heuristics with a warning when it does not.
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "ir/dtype.h"

namespace kvcc::runtime {

inline constexpr char kTuningFileName[] = "tuning.json";

// Sequence splits for decode batches up to `max_batch` sessions of up to `max_context` tokens;
// the first matching bucket wins.
struct DecodeSplitBucket {
  int max_batch = 0;
  int max_context = 0;
  int splits = 0;
};

struct TunedBucket {
  DecodeSplitBucket bucket;
  double us = 0;  // measured time of the winner; 0 for a heuristic choice
};

struct DecodeTuning {
  std::string kernel;  // DecodeTuningKey (kernel_plan.h) of the attention config
  int threads = 0;     // 0: the codegen default
  int vec_bytes = 0;
  int unroll = 0;
  std::vector<TunedBucket> buckets;  // empty: the occupancy heuristic picks the splits
};

// A cuBLASLt algorithm as its config attributes describe it (cublasLtMatmulAlgoInit with `id`,
// then CUBLASLT_ALGO_CONFIG_TILE_ID, _STAGES_ID, _SPLITK_NUM, _REDUCTION_SCHEME,
// _CTA_SWIZZLING, _CUSTOM_OPTION, _INNER_SHAPE_ID, _CLUSTER_SHAPE_ID), so another process
// rebuilds the same kernel choice; cublasLtMatmulAlgoCheck says whether it still runs there.
struct GemmAlgo {
  int id = 0;
  int tile = 0;
  int stages = 0;
  int splitk = 1;
  int reduction = 0;
  int swizzle = 0;
  int custom = 0;
  int inner_shape = 0;
  int cluster_shape = 0;
  bool operator==(const GemmAlgo& o) const;
};

// One GEMM shape of the plan, Y[m, n] = X[m, k] . W[n, k]^T: the algorithm measured fastest,
// or `heuristic` when none beat cuBLASLt's first choice by more than the noise (the runtime
// then asks the heuristic as without tuning). Up to codegen::kGemvMaxTokens tokens the decode
// GEMV's variants were timed as well: `gemv` names the one that beat cuBLASLt's choice (the
// backend runs it), "" says cuBLASLt stays; untimed (older files), the backend's rule decides.
struct GemmTuning {
  int64_t m = 0;  // tokens
  int64_t n = 0;  // out features
  int64_t k = 0;  // in features
  ir::DType dtype = ir::DType::kF16;  // of X and W (f16 or bf16)
  bool heuristic = true;
  GemmAlgo algo;             // when !heuristic
  int64_t workspace = 0;     // bytes the algorithm needs
  double us = 0;             // the chosen algorithm's time
  double heuristic_us = 0;   // the heuristic's, measured in the same run
  int candidates = 0;        // algorithms timed
  bool gemv_timed = false;
  std::string gemv;          // a codegen::GemvVariant::Suffix(), or "" for cuBLASLt
  double gemv_us = 0;        // the fastest GEMV variant's time
};

struct KernelTuning {
  std::string device;  // the GPU's name when measured; "" for heuristic (any device)
  bool autotuned = false;
  std::vector<DecodeTuning> decode;
  int64_t cublaslt_version = 0;  // cublasLtGetVersion() of the GEMM measurements
  std::vector<GemmTuning> gemm;

  // The entry for `key`, or null.
  const DecodeTuning* Find(absl::string_view key) const;
  // The entry for exactly this shape, or null.
  const GemmTuning* FindGemm(int64_t m, int64_t n, int64_t k, ir::DType dtype) const;
};

std::string TuningToJson(const KernelTuning& tuning);
// Parses and checks keys, types and ranges; `source` names the file in errors.
absl::StatusOr<KernelTuning> ParseTuning(absl::string_view text, const std::string& source);

}  // namespace kvcc::runtime
