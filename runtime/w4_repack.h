// The packed 4-bit layout of codegen/w4_params.h on the host: which weights it can hold (the
// CUDA backend falls back to its plain-layout kernels for the rest), and the pack and unpack
// the GPU's kvcc_w4_repack is checked against.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "runtime/backend.h"

namespace kvcc::runtime {

// OK when `w` (codes [out, in], f16 scales, group size) fits the packed layout: out a multiple
// of 16, in of 64, a group size of 16, 32 or a multiple of 64 dividing in. The error names
// `tensor`.
absl::Status CheckW4Packable(const QuantizedWeight& w, absl::string_view tensor);

struct PackedW4 {
  int64_t out = 0, in = 0, group_size = 0;
  std::vector<uint32_t> codes;  // out * in / 8 words
  std::vector<uint32_t> sz;     // out * in / group_size scale/zero words
};

// Host `w` in the packed layout.
absl::StatusOr<PackedW4> PackW4(const QuantizedWeight& w, absl::string_view tensor);

// The packed weight back in the layout of ir/group_quant.h: codes and zeros i4, scales f16.
struct UnpackedW4 {
  Tensor codes, scales, zeros;
};
UnpackedW4 UnpackW4(const PackedW4& packed);

}  // namespace kvcc::runtime
