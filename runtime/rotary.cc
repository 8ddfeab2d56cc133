#include "runtime/rotary.h"

#include <cmath>

#include "absl/strings/str_cat.h"

namespace kvcc::runtime {

absl::StatusOr<RotaryParams> RotaryParams::FromNode(const ir::Node& node) {
  RotaryParams p;
  auto heads = node.Int("heads");
  if (!heads.ok()) return heads.status();
  auto head_dim = node.Int("head_dim");
  if (!head_dim.ok()) return head_dim.status();
  auto theta = node.Float("theta");
  if (!theta.ok()) return theta.status();
  p.heads = static_cast<int>(*heads);
  p.head_dim = static_cast<int>(*head_dim);
  p.theta = *theta;
  p.scaling = node.StrOr("scaling", "none");
  p.factor = node.FloatOr("factor", 1.0);
  p.low_freq_factor = node.FloatOr("low_freq_factor", 1.0);
  p.high_freq_factor = node.FloatOr("high_freq_factor", 4.0);
  p.original_max_position = node.IntOr("original_max_position", 0);
  p.max_position = node.IntOr("max_position", 0);
  auto bad = [&](const std::string& what) {
    return absl::InvalidArgumentError(absl::StrCat("node '", node.name, "' (rotary): ", what));
  };
  if (p.heads <= 0 || p.head_dim <= 0 || p.head_dim % 2 != 0) {
    return bad(absl::StrCat(p.heads, " heads x ", p.head_dim, " is not a valid (even) head shape"));
  }
  if (!(p.theta > 0)) return bad(absl::StrCat("theta ", p.theta, " must be positive"));
  if (p.scaling != "none" && p.scaling != "linear" && p.scaling != "dynamic" &&
      p.scaling != "llama3") {
    return bad(absl::StrCat("unknown scaling '", p.scaling,
                            "'; expected none, linear, dynamic or llama3"));
  }
  if (p.scaling != "none" && !(p.factor > 0)) {
    return bad(absl::StrCat("scaling factor ", p.factor, " must be positive"));
  }
  if (p.scaling == "llama3") {
    if (p.original_max_position <= 0 || !(p.high_freq_factor > p.low_freq_factor) ||
        !(p.low_freq_factor > 0)) {
      return bad("llama3 scaling needs original_max_position > 0 and "
                 "high_freq_factor > low_freq_factor > 0");
    }
  }
  if (p.scaling == "dynamic" && p.original_max_position <= 0 && p.max_position <= 0) {
    return bad("dynamic scaling needs original_max_position or max_position");
  }
  return p;
}

std::vector<float> RotaryInvFreq(const RotaryParams& p, int64_t seq_len) {
  const int half = p.head_dim / 2;
  const float dim = static_cast<float>(p.head_dim);
  float base = static_cast<float>(p.theta);
  if (p.scaling == "dynamic") {
    // transformers: base * ((factor * seq_len / max_pos) - (factor - 1)) ** (dim / (dim - 2)),
    // only once the sequence outgrows the trained context.
    const int64_t max_pos = p.original_max_position > 0 ? p.original_max_position : p.max_position;
    if (seq_len > max_pos) {
      const double f = p.factor;
      base = static_cast<float>(
          p.theta * std::pow((f * static_cast<double>(seq_len) / static_cast<double>(max_pos)) -
                                 (f - 1.0),
                             static_cast<double>(p.head_dim) / (p.head_dim - 2)));
    }
  }
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    // torch: 1.0 / (base ** (arange(0, dim, 2).float() / dim)) in float32.
    const float exponent = static_cast<float>(2 * i) / dim;
    inv[i] = 1.0f / std::pow(base, exponent);
  }
  if (p.scaling == "linear") {
    for (float& f : inv) f /= static_cast<float>(p.factor);
  } else if (p.scaling == "llama3") {
    const float factor = static_cast<float>(p.factor);
    const float low = static_cast<float>(p.low_freq_factor);
    const float high = static_cast<float>(p.high_freq_factor);
    const float old_len = static_cast<float>(p.original_max_position);
    const float low_wavelen = old_len / low;
    const float high_wavelen = old_len / high;
    for (float& f : inv) {
      const float wavelen = 2.0f * static_cast<float>(M_PI) / f;
      float scaled = wavelen > low_wavelen ? f / factor : f;
      if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
        const float smooth = (old_len / wavelen - low) / (high - low);
        scaled = (1.0f - smooth) * scaled / factor + smooth * scaled;
      }
      f = scaled;
    }
  }
  return inv;
}

void ApplyRotary(const float* inv_freq, int head_dim, int64_t position, float* x) {
  const int half = head_dim / 2;
  const float pos = static_cast<float>(position);
  for (int j = 0; j < half; ++j) {
    const float angle = inv_freq[j] * pos;
    const float c = static_cast<float>(std::cos(static_cast<double>(angle)));
    const float s = static_cast<float>(std::sin(static_cast<double>(angle)));
    const float a = x[j], b = x[j + half];
    x[j] = a * c - b * s;
    x[j + half] = b * c + a * s;
  }
}

}  // namespace kvcc::runtime
