#include "calibration/awq_block.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"

namespace kvcc::calibration {

absl::StatusOr<std::vector<float>> BlockForward::Linear(const float* x, int64_t t, int64_t in,
                                                        const F32Linear& w) {
  auto view = [](std::vector<int64_t> shape, const float* p) {
    return runtime::Tensor::View(ir::DType::kF32, std::move(shape), runtime::Device::kCpu,
                                 const_cast<float*>(p), nullptr);
  };
  runtime::Tensor xt = view({t, in}, x), wt = view({w.out, in}, w.w);
  runtime::Tensor bt = w.bias == nullptr ? runtime::Tensor() : view({w.out}, w.bias);
  KVCC_ASSIGN_OR_RETURN(auto y, cpu_.Linear(xt, wt, w.bias == nullptr ? nullptr : &bt));
  return std::vector<float>(y.data<float>(), y.data<float>() + t * w.out);
}

absl::StatusOr<std::vector<float>> BlockForward::Attention(const BlockInput& x,
                                                           const AttentionShape& a,
                                                           const F32Linear& q,
                                                           const F32Linear& k,
                                                           const F32Linear& v,
                                                           const F32Linear& o) {
  const int64_t n = x.tokens(), d = a.head_dim, h = a.heads, kvh = a.kv_heads;
  if (h <= 0 || kvh <= 0 || h % kvh != 0 || q.out != h * d || k.out != kvh * d ||
      v.out != kvh * d) {
    return absl::InvalidArgumentError(absl::StrCat(
        "AWQ attention block: ", h, " heads / ", kvh, " kv heads of ", d,
        " do not match q/k/v outputs ", q.out, "/", k.out, "/", v.out));
  }
  KVCC_ASSIGN_OR_RETURN(std::vector<float> qa, Linear(x.rows.data(), n, x.in, q));
  KVCC_ASSIGN_OR_RETURN(std::vector<float> ka, Linear(x.rows.data(), n, x.in, k));
  KVCC_ASSIGN_OR_RETURN(std::vector<float> va, Linear(x.rows.data(), n, x.in, v));
  std::vector<float> att(n * h * d);
  int64_t r0 = 0;
  for (int64_t t : x.lengths) {
    const std::vector<float> inv = runtime::RotaryInvFreq(a.rotary, t);
    for (int64_t p = 0; p < t; ++p) {
      for (int64_t i = 0; i < h; ++i) {
        runtime::ApplyRotary(inv.data(), static_cast<int>(d), p, &qa[(r0 + p) * h * d + i * d]);
      }
      for (int64_t i = 0; i < kvh; ++i) {
        runtime::ApplyRotary(inv.data(), static_cast<int>(d), p, &ka[(r0 + p) * kvh * d + i * d]);
      }
    }
    std::vector<float> kh(t * d), vt(d * t), qh(t * d);
    for (int64_t g = 0; g < kvh; ++g) {
      for (int64_t p = 0; p < t; ++p) {
        const int64_t src = (r0 + p) * kvh * d + g * d;
        std::memcpy(&kh[p * d], &ka[src], d * sizeof(float));
        for (int64_t j = 0; j < d; ++j) vt[j * t + p] = va[src + j];
      }
      for (int64_t i = g * (h / kvh); i < (g + 1) * (h / kvh); ++i) {
        for (int64_t p = 0; p < t; ++p) {
          std::memcpy(&qh[p * d], &qa[(r0 + p) * h * d + i * d], d * sizeof(float));
        }
        KVCC_ASSIGN_OR_RETURN(std::vector<float> s, Linear(qh.data(), t, d, {kh.data(), nullptr, t}));
        for (int64_t p = 0; p < t; ++p) {
          float* row = &s[p * t];
          float mx = -std::numeric_limits<float>::infinity();
          for (int64_t j = 0; j <= p; ++j) mx = std::max(mx, row[j] * a.scale);
          double sum = 0;
          for (int64_t j = 0; j <= p; ++j) sum += row[j] = std::exp(row[j] * a.scale - mx);
          for (int64_t j = 0; j <= p; ++j) row[j] = static_cast<float>(row[j] / sum);
          for (int64_t j = p + 1; j < t; ++j) row[j] = 0;
        }
        KVCC_ASSIGN_OR_RETURN(std::vector<float> y, Linear(s.data(), t, t, {vt.data(), nullptr, d}));
        for (int64_t p = 0; p < t; ++p) {
          std::memcpy(&att[(r0 + p) * h * d + i * d], &y[p * d], d * sizeof(float));
        }
      }
    }
    r0 += t;
  }
  return Linear(att.data(), n, h * d, {o.w, nullptr, o.out});
}

absl::StatusOr<std::vector<float>> BlockForward::Mlp(const BlockInput& x, const F32Linear& gate,
                                                     const F32Linear& up,
                                                     const F32Linear& down,
                                                     int64_t intermediate) {
  const int64_t n = x.tokens();
  KVCC_ASSIGN_OR_RETURN(std::vector<float> g, Linear(x.rows.data(), n, x.in, gate));
  KVCC_ASSIGN_OR_RETURN(std::vector<float> u, Linear(x.rows.data(), n, x.in, up));
  for (size_t i = 0; i < g.size(); ++i) g[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  return Linear(g.data(), n, intermediate, down);
}

double SquaredErrorAfterBos(const std::vector<float>& a, const std::vector<float>& b,
                            const BlockInput& x, int64_t width) {
  double err = 0;
  int64_t r0 = 0;
  for (int64_t t : x.lengths) {
    for (int64_t i = (r0 + 1) * width; i < (r0 + t) * width; ++i) {
      const double e = double(a[i]) - double(b[i]);
      err += e * e;
    }
    r0 += t;
  }
  return err;
}

}  // namespace kvcc::calibration
