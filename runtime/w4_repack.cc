#include "runtime/w4_repack.h"

#include <vector>

#include "absl/strings/str_cat.h"
#include "codegen/w4_params.h"
#include "ir/group_quant.h"
#include "ir/half.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {

namespace k = kvcc::kernels;

absl::Status CheckW4PackableShape(int64_t out, int64_t in, int64_t g, absl::string_view tensor) {
  // A 64-input chunk lies in one group or holds whole groups: the kernels load a chunk's
  // scales once per group.
  const bool group_fits = g > 0 && g % KVCC_W4_TILE_K == 0 &&
                          (g % KVCC_W4_CHUNK == 0 || KVCC_W4_CHUNK % g == 0);
  if (out <= 0 || in <= 0 || out % KVCC_W4_STRIP != 0 || in % KVCC_W4_CHUNK != 0 ||
      !group_fits || in % g != 0 || out > (int64_t{1} << 30) || in > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(
        tensor, ": the packed 4-bit layout needs out a multiple of ", KVCC_W4_STRIP,
        ", in a multiple of ", KVCC_W4_CHUNK, " and a group size of 16, 32 or a multiple of ",
        KVCC_W4_CHUNK, " dividing in; got [", out, ", ", in, "] with group size ", g));
  }
  return absl::OkStatus();
}

absl::Status CheckW4Packable(const QuantizedWeight& w, absl::string_view tensor) {
  const Tensor& c = *w.codes;
  if (c.dtype() != ir::DType::kI4 || c.rank() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(tensor, ": packed 4-bit codes must be i4 [out, in], got ", c.ToString()));
  }
  const int64_t out = c.dim(0), in = c.dim(1), g = w.group_size;
  KVCC_RETURN_IF_ERROR(CheckW4PackableShape(out, in, g, tensor));
  if (w.scales->dtype() != ir::DType::kF16 || w.scales->NumElements() != out * (in / g) ||
      (w.zeros != nullptr && (w.zeros->dtype() != ir::DType::kI4 ||
                              w.zeros->NumElements() != out * (in / g)))) {
    return absl::InvalidArgumentError(absl::StrCat(
        tensor, ": packing needs f16 scales and i4 zeros of [", out, ", ", in / g, "], got ",
        w.scales->ToString(), w.zeros != nullptr ? absl::StrCat(" and ", w.zeros->ToString()) : ""));
  }
  return absl::OkStatus();
}

void PackW4Codes(const uint8_t* codes, int64_t out, int64_t in, uint32_t* words) {
  // Word (strip, chunk, lane, j) holds inputs 16t + 4j .. 16t + 4j + 3 of the chunk in rows g
  // and g + 8 (w4_params.h, layout version 2): two adjacent bytes of each row in the plain
  // layout (low nibble = the even input), nibbles n = 0, 4 / 2, 6 from row g and 1, 5 / 3, 7
  // from row g + 8. Stored i4 values are q - 8, so the code is the nibble with its top bit
  // flipped.
  const int64_t chunks = in / KVCC_W4_CHUNK, row_bytes = in / 2;
  for (int64_t strip = 0; strip < out / KVCC_W4_STRIP; ++strip) {
    for (int64_t chunk = 0; chunk < chunks; ++chunk) {
      uint32_t* w = words + k::W4PackedWord(strip, static_cast<int>(chunk), 0, 0, static_cast<int>(in));
      for (int lane = 0; lane < 32; ++lane) {
        const int64_t row = strip * KVCC_W4_STRIP + (lane >> 2);
        const uint8_t* r0 = codes + row * row_bytes + chunk * (KVCC_W4_CHUNK / 2) + 8 * (lane & 3);
        const uint8_t* r1 = r0 + 8 * row_bytes;
        for (int j = 0; j < 4; ++j) {
          const uint32_t a = r0[2 * j], b = r0[2 * j + 1], c = r1[2 * j], d = r1[2 * j + 1];
          const uint32_t lo = (a & 0xF) | (c & 0xF) << 4 | (b & 0xF) << 8 | (d & 0xF) << 12;
          const uint32_t hi = a >> 4 | (c >> 4) << 4 | (b >> 4) << 8 | (d >> 4) << 12;
          *w++ = (lo | hi << 16) ^ 0x88888888u;
        }
      }
    }
  }
}

void PackW4ScaleZeros(const uint16_t* scales, const uint8_t* zeros, int64_t out, int64_t in,
                      int64_t group_size, uint32_t* sz) {
  const int groups = static_cast<int>(in / group_size);
  for (int64_t row = 0; row < out; ++row) {
    for (int g = 0; g < groups; ++g) {
      const int64_t src = row * groups + g;
      const uint32_t z = zeros != nullptr ? ir::I4ToCode(ir::GetI4(zeros, src)) : 8;
      sz[k::W4PackedScale(row / KVCC_W4_STRIP, g, static_cast<int>(row % KVCC_W4_STRIP),
                          groups)] = scales[src] | ((0x6400u + z) << 16);
    }
  }
}

void DequantizeW4Strip(const uint32_t* words, const uint32_t* sz, int64_t in, int64_t group_size,
                       int64_t strip, float* rows) {
  const int groups = static_cast<int>(in / group_size);
  // Per row of the strip and group: the scale and the zero code.
  thread_local std::vector<float> scale;
  thread_local std::vector<int> zero;
  scale.resize(KVCC_W4_STRIP * groups);
  zero.resize(KVCC_W4_STRIP * groups);
  for (int r = 0; r < KVCC_W4_STRIP; ++r) {
    for (int g = 0; g < groups; ++g) {
      const uint32_t v = sz[k::W4PackedScale(strip, g, r, groups)];
      scale[r * groups + g] = ir::HalfToFloat(static_cast<uint16_t>(v & 0xFFFF));
      zero[r * groups + g] = static_cast<int>(v >> 16) - 0x6400;
    }
  }
  const int chunks = static_cast<int>(in / KVCC_W4_CHUNK);
  for (int chunk = 0; chunk < chunks; ++chunk) {
    const uint32_t* w = words + k::W4PackedWord(strip, chunk, 0, 0, static_cast<int>(in));
    for (int lane = 0; lane < 32; ++lane) {
      for (int j = 0; j < 4; ++j) {
        const uint32_t word = *w++;
        for (int n = 0; n < 8; ++n) {
          const int r = k::W4NibbleRow(lane, n);
          const int64_t col = chunk * KVCC_W4_CHUNK + k::W4NibbleCol(lane, j, n);
          const int i = r * groups + static_cast<int>(col / group_size);
          rows[r * in + col] =
              static_cast<float>(static_cast<int>((word >> (4 * n)) & 0xF) - zero[i]) * scale[i];
        }
      }
    }
  }
}

absl::StatusOr<PackedW4> PackW4(const QuantizedWeight& w, absl::string_view tensor) {
  KVCC_RETURN_IF_ERROR(CheckW4Packable(w, tensor));
  PackedW4 p;
  p.out = w.codes->dim(0);
  p.in = w.codes->dim(1);
  p.group_size = w.group_size;
  p.codes.assign(p.out * p.in / 8, 0);
  PackW4Codes(static_cast<const uint8_t*>(w.codes->raw()), p.out, p.in, p.codes.data());
  p.sz.assign(p.out * (p.in / p.group_size), 0);
  PackW4ScaleZeros(static_cast<const uint16_t*>(w.scales->raw()),
                   w.zeros != nullptr ? static_cast<const uint8_t*>(w.zeros->raw()) : nullptr,
                   p.out, p.in, p.group_size, p.sz.data());
  return p;
}

UnpackedW4 UnpackW4(const PackedW4& p) {
  const int in = static_cast<int>(p.in), groups = static_cast<int>(p.in / p.group_size);
  UnpackedW4 u;
  u.codes = Tensor::HostZeros(ir::DType::kI4, {p.out, p.in});
  u.scales = Tensor::HostZeros(ir::DType::kF16, {p.out, groups});
  u.zeros = Tensor::HostZeros(ir::DType::kI4, {p.out, groups});
  auto* codes = static_cast<uint8_t*>(u.codes.raw());
  for (int64_t strip = 0; strip < p.out / KVCC_W4_STRIP; ++strip) {
    for (int chunk = 0; chunk < in / KVCC_W4_CHUNK; ++chunk) {
      for (int lane = 0; lane < 32; ++lane) {
        for (int j = 0; j < 4; ++j) {
          const uint32_t word = p.codes[k::W4PackedWord(strip, chunk, lane, j, in)];
          for (int n = 0; n < 8; ++n) {
            const int64_t row = strip * KVCC_W4_STRIP + k::W4NibbleRow(lane, n);
            const int64_t col = chunk * KVCC_W4_CHUNK + k::W4NibbleCol(lane, j, n);
            ir::SetI4(codes, row * in + col, ir::CodeToI4((word >> (4 * n)) & 0xF));
          }
        }
      }
    }
  }
  auto* scales = static_cast<uint16_t*>(u.scales.raw());
  auto* zeros = static_cast<uint8_t*>(u.zeros.raw());
  for (int64_t row = 0; row < p.out; ++row) {
    for (int g = 0; g < groups; ++g) {
      const uint32_t v = p.sz[k::W4PackedScale(row / KVCC_W4_STRIP, g,
                                               static_cast<int>(row % KVCC_W4_STRIP), groups)];
      scales[row * groups + g] = static_cast<uint16_t>(v & 0xFFFF);
      ir::SetI4(zeros, row * groups + g, ir::CodeToI4(static_cast<int>((v >> 16) - 0x6400u)));
    }
  }
  return u;
}

}  // namespace kvcc::runtime
