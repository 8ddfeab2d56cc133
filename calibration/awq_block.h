// The float outputs AWQ's scale search compares (AutoAWQ's `module2inspect`): a decoder layer's
// attention block (q, k, v -> rotary -> causal attention -> o_proj) or MLP block (gate, up ->
// silu(gate) * up -> down_proj), or one linear, computed in f32 on captured calibration windows.
#pragma once

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/cpu_backend.h"
#include "runtime/rotary.h"

namespace kvcc::calibration {

// Whole calibration windows seen at one linear input: rows [tokens, in], window w holding
// lengths[w] consecutive rows from position 0 (its BOS first).
struct BlockInput {
  int64_t in = 0;
  std::vector<float> rows;
  std::vector<int64_t> lengths;
  int64_t tokens() const { return in == 0 ? 0 : static_cast<int64_t>(rows.size()) / in; }
};

struct AttentionShape {
  int64_t heads = 0, kv_heads = 0, head_dim = 0;
  float scale = 1.0f;  // of q.k
  runtime::RotaryParams rotary;
};

// A row-major f32 weight [out, in] and its optional bias [out].
struct F32Linear {
  const float* w = nullptr;
  const float* bias = nullptr;
  int64_t out = 0;
};

class BlockForward {
 public:
  explicit BlockForward(runtime::CpuBackend& cpu) : cpu_(cpu) {}

  // x [t, in] W^T + bias: [t, out].
  absl::StatusOr<std::vector<float>> Linear(const float* x, int64_t t, int64_t in,
                                            const F32Linear& w);
  // o_proj(attention(rotary(q x), rotary(k x), v x)) per window, causal, grouped kv heads;
  // o's bias left out (it cancels in a difference): [tokens, o.out].
  absl::StatusOr<std::vector<float>> Attention(const BlockInput& x, const AttentionShape& a,
                                               const F32Linear& q, const F32Linear& k,
                                               const F32Linear& v, const F32Linear& o);
  // down(silu(gate x) * up x): [tokens, down.out].
  absl::StatusOr<std::vector<float>> Mlp(const BlockInput& x, const F32Linear& gate,
                                         const F32Linear& up, const F32Linear& down,
                                         int64_t intermediate);

 private:
  runtime::CpuBackend& cpu_;
};

// Sum of squared differences of two [x.tokens(), width] outputs over every row except each
// window's first (its BOS, the attention sink: far larger activations that matter little to
// the text after it).
double SquaredErrorAfterBos(const std::vector<float>& a, const std::vector<float>& b,
                            const BlockInput& x, int64_t width);

}  // namespace kvcc::calibration
