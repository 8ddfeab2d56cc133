#include "frontend/w4_checkpoint_format.h"

#include <cmath>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "ir/group_quant.h"
#include "ir/half.h"
#include "ir/status_macros.h"

namespace kvcc::frontend {
namespace {

std::string ShapeText(const std::vector<int64_t>& shape) {
  return absl::StrCat("[", absl::StrJoin(shape, ","), "]");
}

// The checkpoint tensor `name` with exactly `dtype` and `shape` (`layout` says where the shape
// comes from) and its bytes aligned for element loads.
absl::StatusOr<SafetensorsTensor> FetchExact(const Checkpoint& ckpt, const std::string& name,
                                             ir::DType dtype, const std::vector<int64_t>& shape,
                                             absl::string_view layout,
                                             const std::string& context) {
  if (!ckpt.Has(name)) {
    return absl::NotFoundError(absl::StrCat(ckpt.dir(), ": tensor '", name, "' is missing; ",
                                            layout, " implies ", ir::DTypeName(dtype), " ",
                                            ShapeText(shape), " (", context, ")"));
  }
  KVCC_ASSIGN_OR_RETURN(SafetensorsTensor t, ckpt.Get(name));
  if (t.dtype != dtype) {
    return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor '", name, "' has dtype ",
                                                   ir::DTypeName(t.dtype), ", expected ",
                                                   ir::DTypeName(dtype), " (", layout, ")"));
  }
  if (t.shape != shape) {
    return absl::InvalidArgumentError(absl::StrCat(
        t.file, ": tensor '", name, "' has shape ", ShapeText(t.shape), ", expected ",
        ShapeText(shape), " (", layout, "; ", context, ")"));
  }
  int64_t count = 1;
  for (int64_t d : shape) count *= d;
  if (t.data.bytes == nullptr || static_cast<int64_t>(t.data.size) != ir::DTypeBytes(dtype, count)) {
    return absl::InvalidArgumentError(absl::StrCat(t.file, ": tensor '", name, "' holds ",
                                                   t.data.size, " bytes, expected ",
                                                   ir::DTypeBytes(dtype, count)));
  }
  t.data = t.data.Aligned(static_cast<size_t>(ir::DTypeBytes(dtype, 1)));
  return t;
}

uint32_t Word(const SafetensorsTensor& t, int64_t i) {
  uint32_t w;
  std::memcpy(&w, t.data.bytes + i * 4, 4);
  return w;
}

// scales [groups, out] f16 -> [out, groups] f16, each checked finite so a corrupt file cannot
// reach the kernels as NaN logits.
absl::StatusOr<ir::WeightData> TransposeScales(const SafetensorsTensor& s, int64_t groups,
                                               int64_t out) {
  std::vector<uint8_t> buf(static_cast<size_t>(groups * out * 2));
  const uint16_t* src = reinterpret_cast<const uint16_t*>(s.data.bytes);
  uint16_t* dst = reinterpret_cast<uint16_t*>(buf.data());
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t o = 0; o < out; ++o) {
      const uint16_t h = src[g * out + o];
      if (!std::isfinite(ir::HalfToFloat(h))) {
        return absl::InvalidArgumentError(absl::StrCat(
            s.file, ": tensor '", s.name, "' holds a non-finite scale at [", g, ",", o, "]"));
      }
      dst[o * groups + g] = h;
    }
  }
  return ir::WeightData::FromVector(std::move(buf));
}

// qzeros [groups, out/8] -> i4 [out, groups]; `order` maps nibble to output within a word.
ir::WeightData UnpackZeros(const SafetensorsTensor& z, int64_t groups, int64_t out,
                           const int order[8], int add) {
  std::vector<uint8_t> buf(static_cast<size_t>(ir::DTypeBytes(ir::DType::kI4, out * groups)));
  const int64_t words = out / 8;
  for (int64_t g = 0; g < groups; ++g) {
    for (int64_t c = 0; c < words; ++c) {
      const uint32_t w = Word(z, g * words + c);
      for (int p = 0; p < 8; ++p) {
        const int zq = static_cast<int>(((w >> (4 * p)) + add) & 0xF);
        ir::SetI4(buf.data(), (c * 8 + order[p]) * groups + g, ir::CodeToI4(zq));
      }
    }
  }
  return ir::WeightData::FromVector(std::move(buf));
}

constexpr int kSequentialOrder[8] = {0, 1, 2, 3, 4, 5, 6, 7};

}  // namespace

absl::StatusOr<W4Linear> ImportW4Linear(const Checkpoint& ckpt, const QuantizationConfig& q,
                                        const std::string& module, int64_t out, int64_t in,
                                        const std::string& context) {
  if (!q.quantized() || q.bits != 4) {
    return absl::InvalidArgumentError(absl::StrCat(module, ": not a 4-bit quantized linear"));
  }
  W4Linear w;
  w.out = out;
  w.in = in;
  w.group_size = q.GroupFor(in);
  const std::string fmt = q.format == ModelFormat::kAwq ? "AutoAWQ GEMM" : "GPTQ";
  if (in % w.group_size != 0 || out % 8 != 0 || in % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        ckpt.dir(), ": linear '", module, "' [out ", out, ", in ", in, "] cannot be ", fmt,
        "-packed with group_size ", w.group_size,
        " (in must be a multiple of the group size and both widths of 8); list it in "
        "quantization_config.modules_to_not_convert to keep it in 16 bits (", context, ")"));
  }
  const int64_t groups = in / w.group_size;
  const std::string gs = absl::StrCat(fmt, ", group_size ", w.group_size);
  const bool awq = q.format == ModelFormat::kAwq;
  KVCC_ASSIGN_OR_RETURN(
      auto qweight,
      FetchExact(ckpt, module + ".qweight", ir::DType::kI32,
                 awq ? std::vector<int64_t>{in, out / 8} : std::vector<int64_t>{in / 8, out},
                 awq ? absl::StrCat(gs, ": qweight is [in, out/8]")
                     : absl::StrCat(gs, ": qweight is [in/8, out]"),
                 context));
  KVCC_ASSIGN_OR_RETURN(auto qzeros,
                        FetchExact(ckpt, module + ".qzeros", ir::DType::kI32, {groups, out / 8},
                                   absl::StrCat(gs, ": qzeros is [in/group_size, out/8]"),
                                   context));
  KVCC_ASSIGN_OR_RETURN(auto scales,
                        FetchExact(ckpt, module + ".scales", ir::DType::kF16, {groups, out},
                                   absl::StrCat(gs, ": scales is [in/group_size, out]"),
                                   context));
  if (!awq && ckpt.Has(module + ".g_idx")) {
    KVCC_ASSIGN_OR_RETURN(auto g_idx, FetchExact(ckpt, module + ".g_idx", ir::DType::kI32, {in},
                                                 "GPTQ: g_idx is [in]", context));
    for (int64_t i = 0; i < in; ++i) {
      const int64_t g = static_cast<int32_t>(Word(g_idx, i));
      if (g != i / w.group_size) {
        return absl::InvalidArgumentError(absl::StrCat(
            g_idx.file, ": tensor '", g_idx.name, "' maps input ", i, " to group ", g,
            ", expected ", i / w.group_size,
            " (act-order/desc_act GPTQ is not supported; requantize with desc_act false)"));
      }
    }
  }
  std::vector<uint8_t> codes(static_cast<size_t>(ir::DTypeBytes(ir::DType::kI4, out * in)));
  if (awq) {
    const int64_t words = out / 8;
    for (int64_t i = 0; i < in; ++i) {
      for (int64_t c = 0; c < words; ++c) {
        const uint32_t word = Word(qweight, i * words + c);
        for (int p = 0; p < 8; ++p) {
          const int code = static_cast<int>((word >> (4 * p)) & 0xF);
          ir::SetI4(codes.data(), (c * 8 + kAwqPackOrder[p]) * in + i, ir::CodeToI4(code));
        }
      }
    }
  } else {
    for (int64_t r = 0; r < in / 8; ++r) {
      for (int64_t o = 0; o < out; ++o) {
        const uint32_t word = Word(qweight, r * out + o);
        for (int k = 0; k < 8; ++k) {
          const int code = static_cast<int>((word >> (4 * k)) & 0xF);
          ir::SetI4(codes.data(), o * in + r * 8 + k, ir::CodeToI4(code));
        }
      }
    }
  }
  w.codes = ir::WeightData::FromVector(std::move(codes));
  w.zeros = UnpackZeros(qzeros, groups, out, awq ? kAwqPackOrder : kSequentialOrder,
                        !awq && q.zeros_minus_one ? 1 : 0);
  KVCC_ASSIGN_OR_RETURN(w.scales, TransposeScales(scales, groups, out));
  return w;
}

absl::StatusOr<std::vector<SafetensorsTensor>> ExportAwqGemm(const W4Linear& w,
                                                             const std::string& module) {
  if (w.out % 8 != 0 || w.group_size <= 0 || w.in % w.group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        module, ": [out ", w.out, ", in ", w.in, "] with group_size ", w.group_size,
        " has no AutoAWQ-GEMM packing (out must be a multiple of 8, in of the group size)"));
  }
  const int64_t groups = w.in / w.group_size, words = w.out / 8;
  if (w.codes.size != static_cast<size_t>(ir::DTypeBytes(ir::DType::kI4, w.out * w.in)) ||
      w.zeros.size != static_cast<size_t>(ir::DTypeBytes(ir::DType::kI4, w.out * groups)) ||
      w.scales.size != static_cast<size_t>(w.out * groups * 2)) {
    return absl::InvalidArgumentError(absl::StrCat(module, ": codes, zeros or scales do not have "
                                                   "the sizes of [", w.out, ", ", w.in, "]"));
  }
  auto pack = [&](const uint8_t* src, int64_t rows, int64_t row_len) {
    // src is i4 [out, row_len] read at (o, r); result i32 [rows=row_len, out/8].
    std::vector<uint8_t> buf(static_cast<size_t>(rows * words * 4));
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < words; ++c) {
        uint32_t word = 0;
        for (int p = 0; p < 8; ++p) {
          const int64_t o = c * 8 + kAwqPackOrder[p];
          word |= static_cast<uint32_t>(ir::I4ToCode(ir::GetI4(src, o * row_len + r))) << (4 * p);
        }
        std::memcpy(buf.data() + (r * words + c) * 4, &word, 4);
      }
    }
    return ir::WeightData::FromVector(std::move(buf));
  };
  std::vector<uint8_t> scales(static_cast<size_t>(groups * w.out * 2));
  const uint16_t* s = reinterpret_cast<const uint16_t*>(w.scales.bytes);
  for (int64_t o = 0; o < w.out; ++o) {
    for (int64_t g = 0; g < groups; ++g) {
      std::memcpy(scales.data() + (g * w.out + o) * 2, &s[o * groups + g], 2);
    }
  }
  std::vector<SafetensorsTensor> out;
  out.push_back({module + ".qweight", ir::DType::kI32, {w.in, words},
                 pack(w.codes.bytes, w.in, w.in), ""});
  out.push_back({module + ".qzeros", ir::DType::kI32, {groups, words},
                 pack(w.zeros.bytes, groups, groups), ""});
  out.push_back({module + ".scales", ir::DType::kF16, {groups, w.out},
                 ir::WeightData::FromVector(std::move(scales)), ""});
  return out;
}

}  // namespace kvcc::frontend
