#include "calibration/awq_quantizer.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "calibration/calibration_windows.h"
#include "frontend/model_loader.h"
#include "frontend/w4_checkpoint_format.h"
#include "ir/group_quant.h"
#include "ir/half.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "pipeline/model_opener.h"
#include "runtime/cpu_backend.h"

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

// Activations seen at one linear input: sum |x| per channel over every token, and rows kept for
// the searches.
struct Capture {
  int64_t in = 0, tokens = 0, stride = 1;
  int64_t last_window = -1;
  std::vector<double> abs_sum;
  std::vector<float> rows;  // [kept, in]
  int64_t kept() const { return in == 0 ? 0 : static_cast<int64_t>(rows.size()) / in; }
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

class Quantizer {
 public:
  Quantizer(const AwqOptions& o) : o_(o), max_q_((1 << o.w_bits) - 1), cpu_(o.threads) {}

  absl::StatusOr<AwqResult> Run(const std::string& dir,
                                const std::vector<std::vector<int32_t>>& windows);

 private:
  bool Convertible(const std::string& module) const {
    const FloatWeight& w = weights_.at(module + ".weight");
    return w.cols() % o_.group_size == 0 && w.rows() % 8 == 0;
  }
  absl::Status CaptureActivations(const std::string& dir,
                                  const std::vector<std::vector<int32_t>>& windows);
  // X [t, in] W^T through the CPU backend's GEMM.
  absl::StatusOr<std::vector<float>> MatMul(const std::vector<float>& x, int64_t t, int64_t in,
                                            const std::vector<float>& w, int64_t out);
  // AutoAWQ's scale search and folding for one group; `prev` is a norm weight or a linear
  // whose output rows feed the group.
  absl::Status ScaleGroup(const std::string& prev, bool prev_is_linear,
                          const std::vector<std::string>& linears, const std::string& input);
  // AutoAWQ's clipping search for one linear, applied to its weight.
  absl::Status ClipLinear(const std::string& module, const std::string& input);

  const AwqOptions& o_;
  const int max_q_;
  runtime::CpuBackend cpu_;
  std::map<std::string, FloatWeight> weights_;
  std::map<std::string, Capture> captures_;  // by the linear whose input it is
};

absl::StatusOr<std::vector<float>> Quantizer::MatMul(const std::vector<float>& x, int64_t t,
                                                     int64_t in, const std::vector<float>& w,
                                                     int64_t out) {
  auto xt = runtime::Tensor::View(ir::DType::kF32, {t, in}, runtime::Device::kCpu,
                                  const_cast<float*>(x.data()), nullptr);
  auto wt = runtime::Tensor::View(ir::DType::kF32, {out, in}, runtime::Device::kCpu,
                                  const_cast<float*>(w.data()), nullptr);
  KVCC_ASSIGN_OR_RETURN(auto y, cpu_.Linear(xt, wt, nullptr));
  return std::vector<float>(y.data<float>(), y.data<float>() + t * out);
}

absl::Status Quantizer::CaptureActivations(const std::string& dir,
                                           const std::vector<std::vector<int32_t>>& windows) {
  pipeline::LowerOptions lower;
  lower.fusions = false;  // one linear per projection, named by its weight
  KVCC_ASSIGN_OR_RETURN(std::unique_ptr<ir::Module> m, pipeline::LoadForExecution(dir, lower));
  std::shared_ptr<const ir::Module> module(std::move(m));
  int64_t total = 0;
  for (const auto& w : windows) total += static_cast<int64_t>(w.size());
  KVCC_ASSIGN_OR_RETURN(auto engine,
                        StartCalibrationEngine(module, windows, o_.device, o_.threads));
  const int64_t stride = std::max<int64_t>(1, total / std::max<int64_t>(1, o_.search_tokens));
  int64_t window = 0;
  engine->executor().SetLinearInputObserver(
      [&](const ir::Node& node, const float* x, int64_t tokens, int64_t in) {
        const std::string& w = node.input(1)->name;
        if (!absl::EndsWith(w, ".weight")) return;
        Capture& c = captures_[w.substr(0, w.size() - 7)];
        if (c.in == 0) {
          c.in = in;
          c.stride = stride;
          c.abs_sum.assign(in, 0.0);
        }
        // Each window's first row is BOS, whose activations are orders of magnitude larger
        // in many models (the attention sink): kept, it would dominate both the channel means
        // and the search loss while mattering little to what follows.
        int64_t t = 0;
        if (c.last_window != window) {
          c.last_window = window;
          t = 1;
        }
        for (; t < tokens; ++t, ++c.tokens) {
          const float* row = x + t * in;
          for (int64_t j = 0; j < in; ++j) c.abs_sum[j] += std::fabs(row[j]);
          if (c.tokens % c.stride == 0 && c.kept() < o_.search_tokens) {
            c.rows.insert(c.rows.end(), row, row + in);
          }
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

absl::Status Quantizer::ScaleGroup(const std::string& prev, bool prev_is_linear,
                                   const std::vector<std::string>& linears,
                                   const std::string& input) {
  auto cit = captures_.find(input);
  if (cit == captures_.end() || cit->second.kept() == 0) {
    return absl::InternalError(absl::StrCat("no calibration activations reached '", input, "'"));
  }
  Capture& cap = cit->second;
  const int64_t in = cap.in, t = cap.kept(), group = o_.group_size;
  // The group's linears stacked: [sum of outs, in].
  std::vector<float> w;
  int64_t out = 0;
  for (const std::string& l : linears) {
    const FloatWeight& f = weights_.at(l + ".weight");
    w.insert(w.end(), f.v.begin(), f.v.end());
    out += f.rows();
  }
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
  KVCC_ASSIGN_OR_RETURN(std::vector<float> want, MatMul(cap.rows, t, in, w, out));
  double best = std::numeric_limits<double>::infinity();
  std::vector<float> best_s(in, 1.0f), s(in), ws(w.size());
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
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t j = 0; j < in; ++j) ws[r * in + j] = w[r * in + j] * s[j];
    }
    std::vector<float> q = PseudoQuantize(ws, out, in, group, max_q_);
    for (int64_t r = 0; r < out; ++r) {
      for (int64_t j = 0; j < in; ++j) q[r * in + j] /= s[j];
    }
    KVCC_ASSIGN_OR_RETURN(std::vector<float> got, MatMul(cap.rows, t, in, q, out));
    double err = 0;
    for (size_t i = 0; i < got.size(); ++i) err += double(got[i] - want[i]) * (got[i] - want[i]);
    if (err < best) {
      best = err;
      best_s = s;
    }
  }
  // Fold: the linears' input columns times s, the producer's output channels divided by s, and
  // the kept activations (which the clipping search reads) divided by s.
  for (const std::string& l : linears) {
    FloatWeight& f = weights_.at(l + ".weight");
    for (int64_t r = 0; r < f.rows(); ++r) {
      for (int64_t j = 0; j < in; ++j) f.v[r * in + j] *= best_s[j];
    }
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
  for (const std::string& l : linears) {
    auto c = captures_.find(l);
    if (c == captures_.end()) continue;
    for (int64_t r = 0; r < c->second.kept(); ++r) {
      for (int64_t j = 0; j < in; ++j) c->second.rows[r * in + j] /= best_s[j];
    }
  }
  return absl::OkStatus();
}

absl::Status Quantizer::ClipLinear(const std::string& module, const std::string& input) {
  auto cit = captures_.find(input);
  if (cit == captures_.end() || cit->second.kept() == 0) return absl::OkStatus();
  const Capture& cap = cit->second;
  FloatWeight& f = weights_.at(module + ".weight");
  const int64_t out = f.rows(), in = f.cols(), group = o_.group_size, t = cap.kept();
  constexpr double kMaxShrink = 0.5;
  const int steps = static_cast<int>(kMaxShrink * o_.n_grid);
  std::vector<float> clipped(group), q(group);
  for (int64_t r = 0; r < out; ++r) {
    for (int64_t g = 0; g < in; g += group) {
      float* w = &f.v[r * in + g];
      float org_max = 0;
      for (int64_t j = 0; j < group; ++j) org_max = std::max(org_max, std::fabs(w[j]));
      if (org_max == 0) continue;
      std::vector<float> org_out(t);
      for (int64_t i = 0; i < t; ++i) {
        const float* x = &cap.rows[i * in + g];
        float acc = 0;
        for (int64_t j = 0; j < group; ++j) acc += x[j] * w[j];
        org_out[i] = acc;
      }
      double best = std::numeric_limits<double>::infinity();
      float best_max = org_max;
      for (int k = 0; k < steps; ++k) {
        const float mx = org_max * (1.0f - static_cast<float>(k) / o_.n_grid);
        for (int64_t j = 0; j < group; ++j) clipped[j] = std::clamp(w[j], -mx, mx);
        QuantizeGroup(clipped.data(), group, max_q_, q.data(), nullptr, nullptr, nullptr);
        double err = 0;
        for (int64_t i = 0; i < t; ++i) {
          const float* x = &cap.rows[i * in + g];
          float acc = 0;
          for (int64_t j = 0; j < group; ++j) acc += x[j] * q[j];
          err += double(acc - org_out[i]) * (acc - org_out[i]);
        }
        if (err < best) {
          best = err;
          best_max = mx;
        }
      }
      for (int64_t j = 0; j < group; ++j) w[j] = std::clamp(w[j], -best_max, best_max);
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
  if (o_.n_grid < 1 || o_.search_tokens < 1) {
    return absl::InvalidArgumentError("the AWQ grid and search token count must be positive");
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
    if (all({q, k, v})) KVCC_RETURN_IF_ERROR(ScaleGroup(layer(i, "input_layernorm"), false, {q, k, v}, q));
    report("qkv");
    // v -> o only when v's output channels are o's inputs one to one (no GQA sharing).
    if (all({o}) && weights_.at(v + ".weight").rows() == weights_.at(o + ".weight").cols()) {
      KVCC_RETURN_IF_ERROR(ScaleGroup(v, true, {o}, o));
    }
    report("o");
    if (all({gate, up})) {
      KVCC_RETURN_IF_ERROR(ScaleGroup(layer(i, "post_attention_layernorm"), false, {gate, up}, gate));
    }
    report("gate/up");
    if (all({down})) KVCC_RETURN_IF_ERROR(ScaleGroup(up, true, {down}, down));
    report("down");
    // Clipping (AutoAWQ leaves q and k alone: their error is amplified by the softmax).
    for (const std::string& l : {v, o, gate, up, down}) {
      if (!Convertible(l)) continue;
      KVCC_RETURN_IF_ERROR(ClipLinear(l, l));
    }
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
