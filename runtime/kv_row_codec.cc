#include "runtime/kv_row_codec.h"

#include <algorithm>
#include <cstring>

#include "ir/fp8_e4m3.h"
#include "ir/half.h"
#include "runtime/half_convert.h"
#include "ir/kv_quant.h"

namespace kvcc::runtime {
namespace {

using ir::DType;
using ir::KvGranularity;

void StoreCode(DType dtype, int j, int code, uint8_t* row) {
  if (dtype == DType::kI8) {
    row[j] = static_cast<uint8_t>(code & 0xff);
    return;
  }
  const uint8_t nibble = static_cast<uint8_t>(code & 0xf);
  uint8_t& byte = row[j / 2];
  byte = (j % 2 == 0) ? static_cast<uint8_t>((byte & 0xf0) | nibble)
                      : static_cast<uint8_t>((byte & 0x0f) | (nibble << 4));
}

// The stored code of element j: signed for calibrated schemes, unsigned for online ones.
int LoadCode(DType dtype, bool is_signed, int j, const uint8_t* row) {
  if (dtype == DType::kI8) {
    return is_signed ? static_cast<int>(static_cast<int8_t>(row[j])) : static_cast<int>(row[j]);
  }
  int nibble = (j % 2 == 0) ? (row[j / 2] & 0xf) : (row[j / 2] >> 4);
  return (is_signed && nibble >= 8) ? nibble - 16 : nibble;
}

}  // namespace

void EncodeKvRow(const ir::KvCacheScheme& scheme, KvPart part, int head, const float* in,
                 int head_dim, uint8_t* row, uint16_t* params) {
  const ir::KvStorage st = scheme.Part(part);
  if (!st.quantized()) {
    if (st.dtype == DType::kF32) {
      std::memcpy(row, in, sizeof(float) * head_dim);
      return;
    }
    uint16_t* h = reinterpret_cast<uint16_t*>(row);
    for (int j = 0; j < head_dim; ++j) h[j] = ir::FloatToHalf(in[j]);
    return;
  }
  if (st.dtype == DType::kFP8E4M3) {
    for (int j = 0; j < head_dim; ++j) {
      const float zp = scheme.Zp(part, head, j, head_dim);
      row[j] = ir::FloatToFp8E4M3((in[j] - zp) / scheme.Scale(part, head, j, head_dim));
    }
    return;
  }
  const int bits = st.dtype == DType::kI8 ? 8 : 4;
  if (st.online()) {
    float lo = in[0], hi = in[0];
    for (int j = 1; j < head_dim; ++j) {
      lo = std::min(lo, in[j]);
      hi = std::max(hi, in[j]);
    }
    const ir::OnlineHalfParams p = ir::OnlineParams(lo, hi, bits);
    params[0] = p.scale;
    params[1] = p.zero;
    const float scale = ir::HalfToFloat(p.scale), zero = ir::HalfToFloat(p.zero);
    for (int j = 0; j < head_dim; ++j) {
      StoreCode(st.dtype, j, ir::QuantizeOnline(in[j], zero, scale, bits), row);
    }
    return;
  }
  const int qmin = -(1 << (bits - 1)), qmax = (1 << (bits - 1)) - 1;
  for (int j = 0; j < head_dim; ++j) {
    StoreCode(st.dtype, j,
              ir::QuantizeCalibrated(in[j], scheme.Zp(part, head, j, head_dim),
                                     scheme.Scale(part, head, j, head_dim), qmin, qmax),
              row);
  }
}

void DecodeKvRow(const ir::KvCacheScheme& scheme, KvPart part, int head, const uint8_t* row,
                 const uint16_t* params, int head_dim, float* out) {
  const ir::KvStorage st = scheme.Part(part);
  if (!st.quantized()) {
    if (st.dtype == DType::kF32) {
      std::memcpy(out, row, sizeof(float) * head_dim);
      return;
    }
    ir::HalfToFloatRow(reinterpret_cast<const uint16_t*>(row), out, head_dim);
    return;
  }
  if (st.block_channel()) {
    for (int j = 0; j < head_dim; ++j) {
      out[j] = ir::Dequantize(LoadCode(st.dtype, false, j, row), ir::HalfToFloat(params[2 * j + 1]),
                              ir::HalfToFloat(params[2 * j]));
    }
    return;
  }
  if (st.online()) {
    const float scale = ir::HalfToFloat(params[0]), zero = ir::HalfToFloat(params[1]);
    for (int j = 0; j < head_dim; ++j) {
      out[j] = ir::Dequantize(LoadCode(st.dtype, false, j, row), zero, scale);
    }
    return;
  }
  for (int j = 0; j < head_dim; ++j) {
    const float zp = scheme.Zp(part, head, j, head_dim);
    const float scale = scheme.Scale(part, head, j, head_dim);
    out[j] = st.dtype == DType::kFP8E4M3 ? ir::Fp8E4M3ToFloat(row[j]) * scale + zp
                                         : ir::Dequantize(LoadCode(st.dtype, true, j, row), zp, scale);
  }
}

void EncodeKvBlockChannel(const uint16_t* staged, int count, int head_dim, uint8_t* rows,
                          int64_t row_bytes, uint16_t* params) {
  for (int j = 0; j < head_dim; ++j) {
    float lo = ir::HalfToFloat(staged[j]), hi = lo;
    for (int r = 1; r < count; ++r) {
      const float x = ir::HalfToFloat(staged[int64_t{r} * head_dim + j]);
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
    const ir::OnlineHalfParams p = ir::OnlineParams(lo, hi, 4);
    params[2 * j] = p.scale;
    params[2 * j + 1] = p.zero;
    const float scale = ir::HalfToFloat(p.scale), zero = ir::HalfToFloat(p.zero);
    for (int r = 0; r < count; ++r) {
      const float x = ir::HalfToFloat(staged[int64_t{r} * head_dim + j]);
      StoreCode(DType::kI4, j, ir::QuantizeOnline(x, zero, scale, 4), rows + r * row_bytes);
    }
  }
}

void DecodeKvRows(const ir::KvCacheScheme& scheme, KvPart part, int head, const uint8_t* rows,
                  int64_t row_bytes, const uint16_t* params, int head_dim, int count, float* out) {
  if (scheme.Part(part) == ir::KvStorage{DType::kF16, KvGranularity::kNone}) {
    ConvertHalfRow(reinterpret_cast<const uint16_t*>(rows), out, int64_t{count} * head_dim);
    return;
  }
  const int param_step = scheme.Part(part).block_channel() ? 0 : 2;
  for (int r = 0; r < count; ++r) {
    DecodeKvRow(scheme, part, head, rows + r * row_bytes, params ? params + param_step * r : nullptr,
                head_dim, out + int64_t{r} * head_dim);
  }
}

}  // namespace kvcc::runtime
