#include "runtime/w4_repack.h"

#include "absl/strings/str_cat.h"
#include "codegen/w4_params.h"
#include "ir/group_quant.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {

namespace k = kvcc::kernels;

absl::Status CheckW4Packable(const QuantizedWeight& w, absl::string_view tensor) {
  const Tensor& c = *w.codes;
  if (c.dtype() != ir::DType::kI4 || c.rank() != 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(tensor, ": packed 4-bit codes must be i4 [out, in], got ", c.ToString()));
  }
  const int64_t out = c.dim(0), in = c.dim(1), g = w.group_size;
  // A 64-input chunk lies in one group or holds whole groups: the kernels load a chunk's
  // scales once per group.
  const bool group_fits = g > 0 && g % KVCC_W4_TILE_K == 0 &&
                          (g % KVCC_W4_CHUNK == 0 || KVCC_W4_CHUNK % g == 0);
  if (out % KVCC_W4_STRIP != 0 || in % KVCC_W4_CHUNK != 0 || !group_fits || in % g != 0 ||
      out > (int64_t{1} << 30) || in > (int64_t{1} << 30)) {
    return absl::InvalidArgumentError(absl::StrCat(
        tensor, ": the packed 4-bit layout needs out a multiple of ", KVCC_W4_STRIP,
        ", in a multiple of ", KVCC_W4_CHUNK, " and a group size of 16, 32 or a multiple of ",
        KVCC_W4_CHUNK, " dividing in; got [", out, ", ", in, "] with group size ", g));
  }
  if (w.scales->dtype() != ir::DType::kF16 || w.scales->NumElements() != out * (in / g) ||
      (w.zeros != nullptr && (w.zeros->dtype() != ir::DType::kI4 ||
                              w.zeros->NumElements() != out * (in / g)))) {
    return absl::InvalidArgumentError(absl::StrCat(
        tensor, ": packing needs f16 scales and i4 zeros of [", out, ", ", in / g, "], got ",
        w.scales->ToString(), w.zeros != nullptr ? absl::StrCat(" and ", w.zeros->ToString()) : ""));
  }
  return absl::OkStatus();
}

absl::StatusOr<PackedW4> PackW4(const QuantizedWeight& w, absl::string_view tensor) {
  KVCC_RETURN_IF_ERROR(CheckW4Packable(w, tensor));
  PackedW4 p;
  p.out = w.codes->dim(0);
  p.in = w.codes->dim(1);
  p.group_size = w.group_size;
  const int in = static_cast<int>(p.in), groups = static_cast<int>(p.in / p.group_size);
  const auto* codes = static_cast<const uint8_t*>(w.codes->raw());
  p.codes.assign(p.out * p.in / 8, 0);
  for (int64_t strip = 0; strip < p.out / KVCC_W4_STRIP; ++strip) {
    for (int chunk = 0; chunk < in / KVCC_W4_CHUNK; ++chunk) {
      for (int lane = 0; lane < 32; ++lane) {
        for (int j = 0; j < 4; ++j) {
          uint32_t word = 0;
          for (int n = 0; n < 8; ++n) {
            const int64_t row = strip * KVCC_W4_STRIP + k::W4NibbleRow(lane, n);
            const int64_t col = (chunk * 4 + j) * KVCC_W4_TILE_K + k::W4NibbleK(lane, n);
            const int q = ir::I4ToCode(ir::GetI4(codes, row * in + col));
            word |= static_cast<uint32_t>(q) << (4 * n);
          }
          p.codes[k::W4PackedWord(strip, chunk, lane, j, in)] = word;
        }
      }
    }
  }
  const auto* scales = static_cast<const uint16_t*>(w.scales->raw());
  const auto* zeros = w.zeros != nullptr ? static_cast<const uint8_t*>(w.zeros->raw()) : nullptr;
  p.sz.assign(p.out * groups, 0);
  for (int64_t row = 0; row < p.out; ++row) {
    for (int g = 0; g < groups; ++g) {
      const int64_t src = row * groups + g;
      const uint32_t z = zeros != nullptr ? ir::I4ToCode(ir::GetI4(zeros, src)) : 8;
      p.sz[k::W4PackedScale(row / KVCC_W4_STRIP, g, static_cast<int>(row % KVCC_W4_STRIP),
                            groups)] = scales[src] | ((0x6400u + z) << 16);
    }
  }
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
            const int64_t col = (chunk * 4 + j) * KVCC_W4_TILE_K + k::W4NibbleK(lane, n);
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
