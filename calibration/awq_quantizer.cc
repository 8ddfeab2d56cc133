#include "calibration/awq_quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "calibration/awq_block.h"
#include "calibration/calibration_windows.h"
#include "frontend/model_loader.h"
#include "frontend/w4_checkpoint_format.h"
#include "ir/group_quant.h"
#include "ir/half.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "pipeline/model_opener.h"
#include "runtime/cpu_backend.h"
#include "runtime/rotary.h"

namespace kvcc::calibration {
namespace {

// A weight as f32, row-major.
struct FloatWeight {
  std::vector<int64_t> shape;
  std::vector<float> v;
  int64_t rows() const { return shape[0]; }
  int64_t cols() const { return shape.size() > 1 ? shape[1] : 1; }
};

absl::StatusOr<FloatWeight> ToFloat(const ir::Value& w) {
  FloatWeight f;
  f.shape = w.type.shape;
  const int64_t n = w.type.NumElements();
  f.v.resize(n);
  const uint8_t* b = w.weight->bytes;
  switch (w.type.dtype) {
    case ir::DType::kF32: std::memcpy(f.v.data(), b, n * 4); break;
    case ir::DType::kF16: ir::HalfToFloatRow(reinterpret_cast<const uint16_t*>(b), f.v.data(), n); break;
    case ir::DType::kBF16: ir::Bf16ToFloatRow(reinterpret_cast<const uint16_t*>(b), f.v.data(), n); break;
    default:
      return absl::InvalidArgumentError(absl::StrCat("weight '", w.name, "' has dtype ",
                                                     ir::DTypeName(w.type.dtype),
                                                     "; AWQ quantizes a float checkpoint"));
  }
  return f;
}

// Activations seen at one group's input: sum |x| per channel over every token but each window's
// BOS, and the first whole windows for the searches.
struct Capture {
  int64_t tokens = 0;
  int64_t last_window = -1;
  std::vector<double> abs_sum;
  BlockInput block;
};

// Asymmetric round-to-nearest of one group (AutoAWQ's pseudo_quantize_tensor): the scale
// rounded to f16 first, as the checkpoint stores it. Writes codes (0..15) when `codes` is set,
// returns the f16 scale and zero through the pointers, and the dequantized values into `out`.
void QuantizeGroup(const float* w, int64_t n, int max_q, float* out, uint8_t* codes,
                   uint16_t* scale_h, int* zero) {
  float mx = -std::numeric_limits<float>::infinity(), mn = -mx;
  for (int64_t j = 0; j < n; ++j) {
    mx = std::max(mx, w[j]);
    mn = std::min(mn, w[j]);
  }
  const uint16_t sh = ir::FloatToHalf(std::max(mx - mn, 1e-5f) / static_cast<float>(max_q));
  const float s = std::max(ir::HalfToFloat(sh), 1e-7f);
  const int z = static_cast<int>(std::clamp(-std::nearbyint(mn / s), 0.0f, float(max_q)));
  for (int64_t j = 0; j < n; ++j) {
    const int q = static_cast<int>(std::clamp(std::nearbyint(w[j] / s) + z, 0.0f, float(max_q)));
    if (codes != nullptr) codes[j] = static_cast<uint8_t>(q);
    if (out != nullptr) out[j] = static_cast<float>(q - z) * s;
  }
  if (scale_h != nullptr) *scale_h = sh;
  if (zero != nullptr) *zero = z;
}

// W [rows, in] with every group of `group` inputs replaced by its quantized value.
std::vector<float> PseudoQuantize(const std::vector<float>& w, int64_t rows, int64_t in,
                                  int64_t group, int max_q) {
  std::vector<float> out(w.size());
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t g = 0; g < in; g += group) {
      QuantizeGroup(&w[r * in + g], group, max_q, &out[r * in + g], nullptr, nullptr, nullptr);
    }
  }
  return out;
}

// What a group's scale search measures its error on (AutoAWQ's module2inspect).
enum class Block { kAttention, kMlp, kLinear };

class Quantizer {
 public:
  Quantizer(const AwqOptions& o) : o_(o), max_q_((1 << o.w_bits) - 1), cpu_(o.threads), fwd_(cpu_) {}

  absl::StatusOr<AwqResult> Run(const std::string& dir,
                                const std::vector<std::vector<int32_t>>& windows);

 private:
  bool Convertible(const std::string& module) const {
    const FloatWeight& w = weights_.at(module + ".weight");
    return w.cols() % o_.group_size == 0 && w.rows() % 8 == 0;
  }
  F32Linear Lin(const std::string& module, const float* w = nullptr) const {
    const FloatWeight& f = weights_.at(module + ".weight");
    auto b = weights_.find(module + ".bias");
    return {w != nullptr ? w : f.v.data(), b == weights_.end() ? nullptr : b->second.v.data(),
            f.rows()};
  }
  absl::Status CaptureActivations(const std::string& dir,
                                  const std::vector<std::vector<int32_t>>& windows);
  // The output `block` gives on `x` with the group's linears (stacked rows `w`) in place.
  absl::StatusOr<std::vector<float>> BlockOutput(Block block, int64_t layer,
                                                 const std::vector<std::string>& linears,
                                                 const std::vector<float>& w,
                                                 const BlockInput& x);
  // One group: AutoAWQ's scale search (when `search`), the clipping search of the linears
  // marked in `clip`, and the folding of the chosen scales; `prev` is a norm weight or a linear
  // whose output rows feed the group, `input` the capture of the group's input.
  absl::Status ScaleGroup(int64_t layer, Block block, const std::string& prev,
                          bool prev_is_linear, const std::vector<std::string>& linears,
                          const std::vector<bool>& clip, const std::string& input, bool search);
  // AutoAWQ's clipping search on rows [out, in] of a weight scaled by `s` (its inputs x / s):
  // per row and group, max |w| shrunk by 0..45%, the least error of the partial products kept.
  absl::Status ClipRows(float* w, int64_t out, int64_t in, const BlockInput& x,
                        const std::vector<float>& s);

  const AwqOptions& o_;
  const int max_q_;
  runtime::CpuBackend cpu_;
  BlockForward fwd_;
  std::map<std::string, FloatWeight> weights_;
  std::map<std::string, Capture> captures_;  // by the group's first linear
  std::vector<AttentionShape> attention_;    // per layer
};

absl::Status Quantizer::CaptureActivations(const std::string& dir,
                                           const std::vector<std::vector<int32_t>>& windows) {
  pipeline::LowerOptions lower;
  lower.fusions = false;  // one linear per projection, named by its weight
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<ir::Module> m, pipeline::LoadForExecution(dir, lower));
  std::shared_ptr<const ir::Module> module(std::move(m));
  // Whole windows (the attention block needs each token's context) up to search_tokens.
  size_t kept_windows = 0;
  for (int64_t kept = 0; kept_windows < windows.size(); ++kept_windows) {
    kept += static_cast<int64_t>(windows[kept_windows].size());
    if (kept > o_.search_tokens && kept_windows > 0) break;
  }
  KVCC_ASSIGN_OR_RETURN(auto engine,
                        StartCalibrationEngine(module, windows, o_.device, o_.threads));
  int64_t window = 0;
  engine->executor().SetLinearInputObserver(
      [&](const ir::Node& node, const float* x, int64_t tokens, int64_t in) {
        const std::string& w = node.input(1)->name;
        // q, gate feed k, v and up the same rows: one capture per group input.
        if (!absl::EndsWith(w, "q_proj.weight") && !absl::EndsWith(w, "o_proj.weight") &&
            !absl::EndsWith(w, "gate_proj.weight") && !absl::EndsWith(w, "down_proj.weight")) {
          return;
        }
        Capture& c = captures_[w.substr(0, w.size() - 7)];
        if (c.block.in == 0) {
          c.block.in = in;
          c.abs_sum.assign(in, 0.0);
        }
        const bool keep = static_cast<size_t>(window) < kept_windows;
        // Each window's first row is BOS, whose activations are orders of magnitude larger
        // in many models (the attention sink): in the means it would dominate them.
        int64_t t = 0;
        if (c.last_window != window) {
          c.last_window = window;
          t = 1;
          if (keep) c.block.lengths.push_back(0);
        }
        if (keep) {
          c.block.rows.insert(c.block.rows.end(), x, x + tokens * in);
          c.block.lengths.back() += tokens;
        }
        for (; t < tokens; ++t, ++c.tokens) {
          const float* row = x + t * in;
          for (int64_t j = 0; j < in; ++j) c.abs_sum[j] += std::fabs(row[j]);
        }
      });
  WindowHooks hooks;
  hooks.before = [&](size_t i) { window = static_cast<int64_t>(i); };
  hooks.progress = [&](int64_t done, int64_t all) {
    if (o_.progress) o_.progress(done, all, "calibration");
  };
  KVCC_RETURN_IF_ERROR(PrefillWindows(*engine, windows, hooks));
  engine->executor().SetLinearInputObserver(nullptr);
  return absl::OkStatus();
}

absl::StatusOr<std::vector<float>> Quantizer::BlockOutput(Block block, int64_t layer,
                                                          const std::vector<std::string>& linears,
                                                          const std::vector<float>& w,
                                                          const BlockInput& x) {
  std::vector<F32Linear> l;
  int64_t row = 0;
  for (const std::string& name : linears) {
    l.push_back(Lin(name, &w[row * x.in]));
    row += l.back().out;
  }
  auto part = [&](const char* name) { return absl::StrCat("model.layers.", layer, ".", name); };
  switch (block) {
    case Block::kAttention:
      return fwd_.Attention(x, attention_[layer], l[0], l[1], l[2], Lin(part("self_attn.o_proj")));
    case Block::kMlp: {
      const F32Linear down = Lin(part("mlp.down_proj"));
      return fwd_.Mlp(x, l[0], l[1], down, weights_.at(part("mlp.down_proj.weight")).cols());
    }
    case Block::kLinear:
      break;
  }
  return fwd_.Linear(x.rows.data(), x.tokens(), x.in, {l[0].w, nullptr, l[0].out});
}

absl::Status Quantizer::ScaleGroup(int64_t layer, Block block, const std::string& prev,
                                   bool prev_is_linear, const std::vector<std::string>& linears,
                                   const std::vector<bool>& clip, const std::string& input,
                                   bool search) {
  auto cit = captures_.find(input);
  if (cit == captures_.end() || cit->second.tokens == 0) {
    return absl::InternalError(absl::StrCat("no calibration activations reached '", input, "'"));
  }
  Capture& cap = cit->second;
  const BlockInput& x = cap.block;
  const int64_t in = x.in, group = o_.group_size;
  // The group's linears stacked: [sum of outs, in].
  std::vector<float> w;
  std::vector<int64_t> first_row;
  int64_t out = 0;
  for (const std::string& l : linears) {
    const FloatWeight& f = weights_.at(l + ".weight");
    w.insert(w.end(), f.v.begin(), f.v.end());
    first_row.push_back(out);
    out += f.rows();
  }
  KVCC_ASSIGN_OR_RETURN(std::vector<float> want, BlockOutput(block, layer, linears, w, x));
  const int64_t width = static_cast<int64_t>(want.size()) / x.tokens();
  // Q(W s) / s on x: the group's error with scales s; `ws` ends as W s (clipped when asked).
  auto error = [&](const std::vector<float>& s, bool with_clip,
                   std::vector<float>& ws) -> absl::StatusOr<double> {
    ws.resize(w.size());
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t j = 0; j < in; ++j) ws[r * in + j] = w[r * in + j] * s[j];
    }
    for (size_t i = 0; with_clip && i < linears.size(); ++i) {
      if (!clip[i]) continue;
      const int64_t rows = weights_.at(linears[i] + ".weight").rows();
      KVCC_RETURN_IF_ERROR(ClipRows(&ws[first_row[i] * in], rows, in, x, s));
    }
    std::vector<float> q = PseudoQuantize(ws, out, in, group, max_q_);
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t j = 0; j < in; ++j) q[r * in + j] /= s[j];
    }
    KVCC_ASSIGN_OR_RETURN(std::vector<float> got, BlockOutput(block, layer, linears, q, x));
    return SquaredErrorAfterBos(got, want, x, width);
  };
  // Candidates: s = 1 (plain round-to-nearest, which AutoAWQ's duo-scaling grid lacks: its
  // ratio 0 is 1 / w_mean) and AutoAWQ's grid s = x_mean^r / w_mean^(1-r), r = k / n_grid.
  std::vector<float> best_s(in, 1.0f), s(in), ws;
  if (search) {
    std::vector<float> x_mean(in), w_mean(in, 0.0f);
    for (int64_t j = 0; j < in; ++j) x_mean[j] = static_cast<float>(cap.abs_sum[j] / cap.tokens);
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t g = 0; g < in; g += group) {
        float mx = 0;
        for (int64_t j = g; j < g + group; ++j) mx = std::max(mx, std::fabs(w[r * in + j]));
        for (int64_t j = g; j < g + group; ++j) {
          w_mean[j] += (mx > 0 ? std::fabs(w[r * in + j]) / mx : 0.0f) / static_cast<float>(out);
        }
      }
    }
    KVCC_ASSIGN_OR_RETURN(double best, error(best_s, false, ws));
    for (int k = 0; k < o_.n_grid; ++k) {
      const float ratio = static_cast<float>(k) / static_cast<float>(o_.n_grid);
      float smax = 0, smin = std::numeric_limits<float>::infinity();
      for (int64_t j = 0; j < in; ++j) {
        s[j] = std::max(std::pow(x_mean[j], ratio) / (std::pow(w_mean[j], 1 - ratio) + 1e-4f),
                        1e-4f);
        smax = std::max(smax, s[j]);
        smin = std::min(smin, s[j]);
      }
      const float norm = std::sqrt(smax * smin);
      for (int64_t j = 0; j < in; ++j) s[j] /= norm;
      KVCC_ASSIGN_OR_RETURN(double err, error(s, false, ws));
      if (err < best) {
        best = err;
        best_s = s;
      }
    }
  }
  // AutoAWQ clips after scaling, whatever the scales did; here the searched scales must also
  // beat plain clipping on the group's error once both are clipped, or the group is left
  // unscaled (on small models the scales' gain before clipping often vanishes after it).
  const bool scaled = std::any_of(best_s.begin(), best_s.end(), [](float v) { return v != 1.0f; });
  const bool any_clip = o_.apply_clip && std::find(clip.begin(), clip.end(), true) != clip.end();
  KVCC_ASSIGN_OR_RETURN(double chosen, error(best_s, any_clip, ws));
  if (scaled && any_clip) {
    std::vector<float> one(in, 1.0f), plain;
    KVCC_ASSIGN_OR_RETURN(double unscaled, error(one, true, plain));
    if (unscaled <= chosen) {
      best_s = one;
      ws = std::move(plain);
    }
  }
  // Fold: the linears take W s (clipped), the producer's output channels are divided by s, and
  // so are the kept activations (which later clipping of these inputs reads).
  for (size_t i = 0; i < linears.size(); ++i) {
    FloatWeight& f = weights_.at(linears[i] + ".weight");
    std::copy(ws.begin() + first_row[i] * in, ws.begin() + (first_row[i] + f.rows()) * in,
              f.v.begin());
  }
  FloatWeight& p = weights_.at(prev + ".weight");
  const int64_t cols = prev_is_linear ? p.cols() : 1;
  for (int64_t j = 0; j < in; ++j) {
    for (int64_t c = 0; c < cols; ++c) p.v[j * cols + c] /= best_s[j];
  }
  if (prev_is_linear) {
    if (auto b = weights_.find(prev + ".bias"); b != weights_.end()) {
      for (int64_t j = 0; j < in; ++j) b->second.v[j] /= best_s[j];
    }
  }
  for (int64_t r = 0; r < x.tokens(); ++r) {
    for (int64_t j = 0; j < in; ++j) cap.block.rows[r * in + j] /= best_s[j];
  }
  return absl::OkStatus();
}

absl::Status Quantizer::ClipRows(float* w, int64_t out, int64_t in, const BlockInput& x,
                                 const std::vector<float>& s) {
  const int64_t group = o_.group_size;
  // Up to clip_tokens rows spread evenly over the kept windows (BOS rows left out), divided by
  // the scales as the scaled weight sees them.
  std::vector<int64_t> picks;
  {
    std::vector<int64_t> all;
    int64_t r0 = 0;
    for (int64_t len : x.lengths) {
      for (int64_t r = r0 + 1; r < r0 + len; ++r) all.push_back(r);
      r0 += len;
    }
    const size_t step = std::max<size_t>(1, all.size() / std::max<int64_t>(1, o_.clip_tokens));
    for (size_t i = 0; i < all.size() && static_cast<int64_t>(picks.size()) < o_.clip_tokens;
         i += step) {
      picks.push_back(all[i]);
    }
  }
  const int64_t t = static_cast<int64_t>(picks.size());
  if (t == 0) return absl::OkStatus();
  constexpr double kMaxShrink = 0.5;
  const int steps = static_cast<int>(kMaxShrink * o_.n_grid);
  std::vector<float> xg(t * group), wg(out * group), qg(out * group);
  std::vector<float> best_max(out), org_max(out);
  std::vector<double> best_err(out), err(out);
  for (int64_t g = 0; g < in; g += group) {
    // One group's inputs [t, group] and weights [out, group]: its partial products by GEMM.
    for (int64_t i = 0; i < t; ++i) {
      for (int64_t j = 0; j < group; ++j) xg[i * group + j] = x.rows[picks[i] * in + g + j] / s[g + j];
    }
    for (int64_t r = 0; r < out; ++r) {
      std::memcpy(&wg[r * group], &w[r * in + g], group * sizeof(float));
      float mx = 0;
      for (int64_t j = 0; j < group; ++j) mx = std::max(mx, std::fabs(wg[r * group + j]));
      org_max[r] = best_max[r] = mx;
      best_err[r] = std::numeric_limits<double>::infinity();
    }
    KVCC_ASSIGN_OR_RETURN(std::vector<float> want,
                          fwd_.Linear(xg.data(), t, group, {wg.data(), nullptr, out}));
    for (int k = 0; k < steps; ++k) {
      const float shrink = 1.0f - static_cast<float>(k) / static_cast<float>(o_.n_grid);
      for (int64_t r = 0; r < out; ++r) {
        const float mx = org_max[r] * shrink;
        float* q = &qg[r * group];
        for (int64_t j = 0; j < group; ++j) q[j] = std::clamp(wg[r * group + j], -mx, mx);
        QuantizeGroup(q, group, max_q_, q, nullptr, nullptr, nullptr);
      }
      KVCC_ASSIGN_OR_RETURN(std::vector<float> got,
                            fwd_.Linear(xg.data(), t, group, {qg.data(), nullptr, out}));
      std::fill(err.begin(), err.end(), 0.0);
      for (int64_t i = 0; i < t; ++i) {
        for (int64_t r = 0; r < out; ++r) {
          const double e = double(got[i * out + r]) - want[i * out + r];
          err[r] += e * e;
        }
      }
      for (int64_t r = 0; r < out; ++r) {
        if (err[r] < best_err[r]) {
          best_err[r] = err[r];
          best_max[r] = org_max[r] * shrink;
        }
      }
    }
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t j = 0; j < group; ++j) {
        float& v = w[r * in + g + j];
        v = std::clamp(v, -best_max[r], best_max[r]);
      }
    }
  }
  return absl::OkStatus();
}

std::vector<uint8_t> HalfBytes(const std::vector<float>& v) {
  std::vector<uint8_t> out(v.size() * 2);
  for (size_t i = 0; i < v.size(); ++i) {
    const uint16_t h = ir::FloatToHalf(v[i]);
    std::memcpy(out.data() + 2 * i, &h, 2);
  }
  return out;
}

// The final round-to-nearest of one linear into the kvcc layout.
frontend::W4Linear QuantizeLinear(const FloatWeight& f, int64_t group, int max_q) {
  frontend::W4Linear w;
  w.out = f.rows();
  w.in = f.cols();
  w.group_size = group;
  const int64_t groups = w.in / group;
  std::vector<uint8_t> codes(ir::DTypeBytes(ir::DType::kI4, w.out * w.in));
  std::vector<uint8_t> zeros(ir::DTypeBytes(ir::DType::kI4, w.out * groups));
  std::vector<uint8_t> scales(w.out * groups * 2);
  std::vector<uint8_t> q(group);
  for (int64_t r = 0; r < w.out; ++r) {
    for (int64_t g = 0; g < groups; ++g) {
      uint16_t sh;
      int z;
      QuantizeGroup(&f.v[r * w.in + g * group], group, max_q, nullptr, q.data(), &sh, &z);
      for (int64_t j = 0; j < group; ++j) {
        ir::SetI4(codes.data(), r * w.in + g * group + j, ir::CodeToI4(q[j]));
      }
      ir::SetI4(zeros.data(), r * groups + g, ir::CodeToI4(z));
      std::memcpy(scales.data() + 2 * (r * groups + g), &sh, 2);
    }
  }
  w.codes = ir::WeightData::FromVector(std::move(codes));
  w.zeros = ir::WeightData::FromVector(std::move(zeros));
  w.scales = ir::WeightData::FromVector(std::move(scales));
  return w;
}

absl::StatusOr<AwqResult> Quantizer::Run(const std::string& dir,
                                         const std::vector<std::vector<int32_t>>& windows) {
  if (o_.w_bits != 4) {
    return absl::InvalidArgumentError(absl::StrCat("--w-bits ", o_.w_bits, ": only 4 is supported"));
  }
  if (o_.group_size < 8 || o_.group_size % 8 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("--w-group-size ", o_.group_size,
                                                   ": expected a multiple of 8 (32, 64, 128)"));
  }
  if (o_.n_grid < 1 || o_.search_tokens < 1 || o_.clip_tokens < 1) {
    return absl::InvalidArgumentError("the AWQ grid, search and clip token counts must be positive");
  }
  KVCC_ASSIGN_OR_RETURN(auto module, frontend::LoadModel(dir, frontend::ModelFormat::kHf));
  const ir::ModelConfig& c = module->config;
  if (c.architecture == "InternLM2ForCausalLM") {
    return absl::UnimplementedError(absl::StrCat(
        dir, ": AWQ of InternLM2's fused wqkv is not supported (its AutoAWQ layout differs)"));
  }
  std::vector<std::string> order;
  for (const ir::Value* w : module->graph.weights()) {
    KVCC_ASSIGN_OR_RETURN(weights_[w->name], ToFloat(*w));
    order.push_back(w->name);
  }
  auto layer = [](int64_t i, const char* part) {
    return absl::StrCat("model.layers.", i, ".", part);
  };
  const char* kLinears[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                            "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                            "mlp.down_proj"};
  for (int64_t i = 0; i < c.num_layers; ++i) {
    for (const char* l : kLinears) {
      if (!weights_.count(layer(i, l) + ".weight")) {
        return absl::NotFoundError(absl::StrCat(dir, ": tensor '", layer(i, l),
                                                ".weight' is missing"));
      }
    }
  }
  const bool search = !o_.rtn && o_.search_scale;
  if (search) {
    if (windows.empty()) return absl::InvalidArgumentError("AWQ needs calibration windows");
    KVCC_RETURN_IF_ERROR(CaptureActivations(dir, windows));
    for (int64_t i = 0; i < c.num_layers; ++i) {
      const std::string rot = absl::StrCat("layers.", i, ".q_rotary");
      const std::string att = absl::StrCat("layers.", i, ".attention");
      const ir::Node* rn = module->graph.FindNode(rot);
      const ir::Node* an = module->graph.FindNode(att);
      if (rn == nullptr || an == nullptr) {
        return absl::NotFoundError(absl::StrCat(dir, ": the imported graph has no node '",
                                                rn == nullptr ? rot : att,
                                                "' (AWQ's attention-block loss needs it)"));
      }
      AttentionShape a;
      KVCC_ASSIGN_OR_RETURN(a.rotary, runtime::RotaryParams::FromNode(*rn));
      KVCC_ASSIGN_OR_RETURN(a.heads, an->Int("heads"));
      KVCC_ASSIGN_OR_RETURN(a.kv_heads, an->Int("kv_heads"));
      KVCC_ASSIGN_OR_RETURN(a.head_dim, an->Int("head_dim"));
      KVCC_ASSIGN_OR_RETURN(double scale, an->Float("scale"));
      a.scale = static_cast<float>(scale);
      attention_.push_back(a);
    }
  }
  const int64_t steps = c.num_layers * 4;
  int64_t done = 0;
  for (int64_t i = 0; i < c.num_layers && search; ++i) {
    const std::string q = layer(i, "self_attn.q_proj"), k = layer(i, "self_attn.k_proj"),
                      v = layer(i, "self_attn.v_proj"), o = layer(i, "self_attn.o_proj"),
                      gate = layer(i, "mlp.gate_proj"), up = layer(i, "mlp.up_proj"),
                      down = layer(i, "mlp.down_proj");
    auto all = [&](const std::vector<std::string>& ls) {
      for (const std::string& l : ls) {
        if (!Convertible(l)) return false;
      }
      return true;
    };
    auto report = [&](const std::string& what) {
      if (o_.progress) o_.progress(++done, steps, absl::StrCat("layer ", i, " ", what));
    };
    // Each group's error is measured where AutoAWQ measures it: q, k, v on the attention
    // block's output, gate and up on the MLP's, o and down on their own. Clipping leaves q and
    // k alone as AutoAWQ does (their error is amplified by the softmax).
    if (all({q, k, v})) {
      KVCC_RETURN_IF_ERROR(ScaleGroup(i, Block::kAttention, layer(i, "input_layernorm"), false,
                                      {q, k, v}, {false, false, true}, q, true));
    }
    report("qkv");
    // v -> o scaled only when v's output channels are o's inputs one to one (no GQA sharing).
    if (all({o})) {
      const bool one_to_one = weights_.at(v + ".weight").rows() == weights_.at(o + ".weight").cols();
      KVCC_RETURN_IF_ERROR(ScaleGroup(i, Block::kLinear, v, true, {o}, {true}, o, one_to_one));
    }
    report("o");
    if (all({gate, up})) {
      KVCC_RETURN_IF_ERROR(ScaleGroup(i, Block::kMlp, layer(i, "post_attention_layernorm"), false,
                                      {gate, up}, {true, true}, gate, true));
    }
    report("gate/up");
    if (all({down})) {
      KVCC_RETURN_IF_ERROR(ScaleGroup(i, Block::kLinear, up, true, {down}, {true}, down, true));
    }
    report("down");
  }
  AwqResult result;
  for (const std::string& name : order) {
    const std::string module_name = name.substr(0, name.size() - 7);
    bool is_linear = false;
    for (const char* l : kLinears) {
      is_linear |= absl::EndsWith(name, absl::StrCat(".", l, ".weight"));
    }
    FloatWeight& f = weights_.at(name);
    if (is_linear && Convertible(module_name)) {
      KVCC_ASSIGN_OR_RETURN(auto tensors, frontend::ExportAwqGemm(QuantizeLinear(f, o_.group_size, max_q_),
                                                                  module_name));
      for (auto& t : tensors) result.tensors.push_back(std::move(t));
      ++result.converted;
      continue;
    }
    if (is_linear) result.not_converted.push_back(module_name);
    for (float x : f.v) {
      if (!std::isfinite(ir::RoundToHalf(x))) {
        return absl::InvalidArgumentError(absl::StrCat(
            "tensor '", name, "' holds ", x, ", which float16 (AutoAWQ's dtype) cannot hold"));
      }
    }
    result.tensors.push_back({name, ir::DType::kF16, f.shape, ir::WeightData::FromVector(HalfBytes(f.v)), ""});
  }
  return result;
}

}  // namespace

ir::Json AwqCheckpointConfig(ir::Json j, const AwqResult& r, int64_t group) {
  j.erase("dtype");
  j["torch_dtype"] = "float16";
  ir::Json skip = r.not_converted.empty() ? ir::Json(nullptr) : ir::Json(r.not_converted);
  j["quantization_config"] = {{"quant_method", "awq"}, {"version", "gemm"},  {"bits", 4},
                              {"group_size", group},   {"zero_point", true},
                              {"modules_to_not_convert", skip}};
  return j;
}

absl::StatusOr<AwqResult> QuantizeAwq(const std::string& model_dir,
                                      const std::vector<std::vector<int32_t>>& windows,
                                      const AwqOptions& options) {
  Quantizer q(options);
  return q.Run(model_dir, windows);
}

}  // namespace kvcc::calibration
