// The packed 4-bit layout of codegen/w4_params.h on the host: which weights it can hold (the
// CUDA backend falls back to its plain-layout kernels for the rest), the pack `kvcc compile`
// stores (and the GPU's kvcc_w4_repack is checked against), the unpack, and the strip
// dequantization the CPU backend computes a packed linear with.
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
// The shape part of CheckW4Packable.
absl::Status CheckW4PackableShape(int64_t out, int64_t in, int64_t group_size,
                                  absl::string_view tensor);

// The raw pack: i4 codes [out, in] (ir/group_quant.h) into out * in / 8 words, and f16 scales
// with i4 zeros (null: z = 8) [out, in / group_size] into as many scale/zero words. The shape
// must pass CheckW4PackableShape.
void PackW4Codes(const uint8_t* codes, int64_t out, int64_t in, uint32_t* words);
void PackW4ScaleZeros(const uint16_t* scales, const uint8_t* zeros, int64_t out, int64_t in,
                      int64_t group_size, uint32_t* sz);

// Rows [16 strip, 16 strip + 16) of the packed weight dequantized to f32, (q - z) * s as the
// plain layout's oracle computes it, into `rows` (16 x in, row-major).
void DequantizeW4Strip(const uint32_t* words, const uint32_t* sz, int64_t in, int64_t group_size,
                       int64_t strip, float* rows);

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
