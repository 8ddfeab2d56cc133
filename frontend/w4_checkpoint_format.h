// The 4-bit checkpoint formats users bring (AutoAWQ GEMM, GPTQ) converted to and from the kvcc
// layout of ir/group_quant.h: import repacks a linear's qweight/qzeros/scales once; export
// packs the AWQ quantizer's result into a standard AutoAWQ-GEMM tensor set.
//
// AutoAWQ GEMM: qweight i32 [in, out/8] (eight outputs per word, nibble p holding output
// 8c + [0,2,4,6,1,3,5,7][p]), qzeros i32 [in/G, out/8] likewise with raw zeros, scales f16
// [in/G, out]. GPTQ: qweight i32 [in/8, out] (eight inputs per word, nibble k = input 8r + k),
// qzeros i32 [in/G, out/8] (nibble k = output 8c + k; v1 checkpoints store zero - 1), scales
// f16 [in/G, out], optional g_idx i32 [in] that must be i / G. Both: w = (q - z) * s.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "frontend/quantization_config.h"
#include "frontend/safetensors.h"
#include "ir/weight_data.h"

namespace kvcc::frontend {

// AWQ's nibble p holds output 8c + kAwqPackOrder[p].
inline constexpr int kAwqPackOrder[8] = {0, 2, 4, 6, 1, 3, 5, 7};

// One linear in the kvcc layout: codes i4 [out, in], scales f16 [out, in/G], zeros i4
// [out, in/G].
struct W4Linear {
  int64_t out = 0, in = 0, group_size = 0;
  ir::WeightData codes, scales, zeros;
};

// Reads `module`.qweight/.qzeros/.scales (and GPTQ's .g_idx) of a linear [out, in] from the
// checkpoint in `q`'s format. Every missing tensor, wrong dtype or shape, group size that does
// not divide `in`, non-trivial g_idx or non-finite scale is an error naming the tensor;
// `context` (layer, config keys) is appended to shape errors.
absl::StatusOr<W4Linear> ImportW4Linear(const Checkpoint& checkpoint, const QuantizationConfig& q,
                                        const std::string& module, int64_t out, int64_t in,
                                        const std::string& context);

// The AutoAWQ-GEMM tensors `module`.qweight, .qzeros, .scales of `w` (out % 8 == 0).
absl::StatusOr<std::vector<SafetensorsTensor>> ExportAwqGemm(const W4Linear& w,
                                                             const std::string& module);

}  // namespace kvcc::frontend
