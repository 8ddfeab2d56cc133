// Rotary position embedding parameters and inverse frequencies, computed exactly as Hugging Face
// transformers does (float32 arithmetic, rotate-half convention) for the scalings none, linear,
// dynamic (NTK) and llama3. Shared by every backend so their tables agree.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/node.h"

namespace kvcc::runtime {

struct RotaryParams {
  int heads = 0;
  int head_dim = 0;
  double theta = 10000.0;
  std::string scaling = "none";  // none | linear | dynamic | llama3
  double factor = 1.0;
  double low_freq_factor = 1.0;
  double high_freq_factor = 4.0;
  int64_t original_max_position = 0;
  int64_t max_position = 0;

  // Reads a rotary node's attributes; errors name the node.
  static absl::StatusOr<RotaryParams> FromNode(const ir::Node& node);
  // True when the frequencies depend on the sequence length (dynamic NTK scaling).
  bool DependsOnLength() const { return scaling == "dynamic"; }
};

// head_dim / 2 inverse frequencies. `seq_len` (the highest position of the sequence + 1, as
// transformers uses it) matters only for dynamic scaling.
std::vector<float> RotaryInvFreq(const RotaryParams& params, int64_t seq_len);

// Rotates one head (head_dim values, in place) at `position`: pairs (j, j + head_dim/2), with
// angle = float(inv_freq[j] * position), cos/sin rounded to float as transformers does.
void ApplyRotary(const float* inv_freq, int head_dim, int64_t position, float* x);

}  // namespace kvcc::runtime
