// The kvcc layout of a group-quantized 4-bit (W4A16) `linear` weight, shared by the importer
// (AWQ/GPTQ repacking), the backends (dequantization) and the AWQ quantizer.
//
// A quantized linear is linear(x, codes, bias?, scales, zeros?) with attribute group_size G:
//   codes  i4  [out, in]      element (o, i) at index o * in + i, two per byte, low nibble first
//                             (ONNX INT4), holding the unsigned code q in 0..15 as q - 8
//   scales f16 [out, in / G]  (f32 also accepted)
//   zeros  i4  [out, in / G]  the zero point z in 0..15 as z - 8, same packing; absent: z = 8
// and w[o, i] = (q - z) * s = (codes - zeros) * scales of group i / G. Output rows are
// contiguous along the input, so a GEMV reads each row's nibbles, scales and zeros in order,
// and fused projections are plain row concatenations.
//
// `kvcc compile` stores the linears the GPU kernels can read in their packed layout instead
// (codegen/w4_params.h: 16-row strips of 64-input chunks, each word one mma fragment):
//   linear(x, codes, bias?, sz) with attributes group_size, w4_layout = kW4PackedLayout and
//   w4_layout_version = kW4PackedLayoutVersion, where
//   codes i32 [out, in / 8]  the out * in / 8 code words in the layout's order
//   sz    i32 [out, in / G]  per (strip, group, row) the f16 scale (low half) and 1024 + z as
//                            f16 (high half)
// The shapes carry out and in; the element order is the layout's, not row-major.
#pragma once

#include <cstdint>

namespace kvcc::ir {

inline constexpr char kW4LayoutAttr[] = "w4_layout";
inline constexpr char kW4LayoutVersionAttr[] = "w4_layout_version";
inline constexpr char kW4PackedLayout[] = "kvcc_w4_strip16_chunk64";
inline constexpr int64_t kW4PackedLayoutVersion = 2;

// Element i of a densely packed i4 buffer, as -8..7.
inline int GetI4(const uint8_t* bytes, int64_t i) {
  const int nibble = (i & 1) ? (bytes[i >> 1] >> 4) : (bytes[i >> 1] & 0xF);
  return nibble - ((nibble & 8) << 1);
}

// Sets element i (v in -8..7) of a densely packed i4 buffer.
inline void SetI4(uint8_t* bytes, int64_t i, int v) {
  const uint8_t nibble = static_cast<uint8_t>(v) & 0xF;
  uint8_t& b = bytes[i >> 1];
  b = (i & 1) ? static_cast<uint8_t>((b & 0x0F) | (nibble << 4))
              : static_cast<uint8_t>((b & 0xF0) | nibble);
}

// An unsigned 4-bit code (0..15) as the stored i4 value and back.
inline int CodeToI4(int q) { return q - 8; }
inline int I4ToCode(int v) { return v + 8; }

}  // namespace kvcc::ir
