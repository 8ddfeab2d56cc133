#include "runtime/op_operands.h"

#include "absl/strings/str_cat.h"

namespace kvcc::runtime {

bool IsWeightDType(ir::DType d) {
  return d == ir::DType::kF32 || d == ir::DType::kF16 || d == ir::DType::kBF16;
}

absl::Status CheckResident(const Tensor& t, Device device, const char* what) {
  if (t.device() != device) {
    return absl::InvalidArgumentError(absl::StrCat(
        DeviceName(device), " backend: ", what, " ", t.ToString(), " is not in ",
        device == Device::kCpu ? "host" : "device", " memory"));
  }
  if (t.raw() == nullptr && t.NumElements() != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(DeviceName(device), " backend: ", what, " has no data"));
  }
  return absl::OkStatus();
}

absl::Status CheckActivation(const Tensor& t, Device device, const char* what) {
  if (auto s = CheckResident(t, device, what); !s.ok()) return s;
  if (t.dtype() != ir::DType::kF32 || t.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        DeviceName(device), " backend: ", what, " must be f32[tokens, n], got ", t.ToString()));
  }
  return absl::OkStatus();
}

absl::Status CheckWeight(const Tensor& t, Device device, const char* what) {
  if (auto s = CheckResident(t, device, what); !s.ok()) return s;
  if (!IsWeightDType(t.dtype())) {
    return absl::UnimplementedError(absl::StrCat(DeviceName(device), " backend: ", what,
                                                 " dtype ", ir::DTypeName(t.dtype()),
                                                 " is not supported (f32, f16, bf16)"));
  }
  return absl::OkStatus();
}

absl::Status CheckEmbeddingOperands(const Tensor& ids, const Tensor& table, Device device) {
  if (auto s = CheckResident(ids, device, "token ids"); !s.ok()) return s;
  if (auto s = CheckWeight(table, device, "embedding table"); !s.ok()) return s;
  if (ids.dtype() != ir::DType::kI32 || ids.rank() != 1 || table.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("embedding: ids ", ids.ToString(),
                                                   " and table ", table.ToString(),
                                                   " must be i32[T] and [vocab, hidden]"));
  }
  return absl::OkStatus();
}

absl::Status CheckRmsNormOperands(const Tensor& x, const Tensor& weight, Device device) {
  if (auto s = CheckActivation(x, device, "rms_norm input"); !s.ok()) return s;
  if (auto s = CheckWeight(weight, device, "rms_norm weight"); !s.ok()) return s;
  if (weight.NumElements() != x.dim(1)) {
    return absl::InvalidArgumentError(absl::StrCat("rms_norm: weight ", weight.ToString(),
                                                   " does not match input ", x.ToString()));
  }
  return absl::OkStatus();
}

absl::Status CheckAddRmsNormOperands(const Tensor& x, const Tensor& residual,
                                     const Tensor& weight, Device device) {
  if (auto s = CheckActivation(x, device, "add_rms_norm input"); !s.ok()) return s;
  if (auto s = CheckActivation(residual, device, "add_rms_norm residual"); !s.ok()) return s;
  if (auto s = CheckWeight(weight, device, "add_rms_norm weight"); !s.ok()) return s;
  if (x.shape() != residual.shape()) {
    return absl::InvalidArgumentError(absl::StrCat("add_rms_norm: input ", x.ToString(),
                                                   " vs residual ", residual.ToString()));
  }
  if (weight.NumElements() != x.dim(1)) {
    return absl::InvalidArgumentError(absl::StrCat("add_rms_norm: weight ", weight.ToString(),
                                                   " does not match input ", x.ToString()));
  }
  return absl::OkStatus();
}

absl::Status CheckSplitOperands(const Tensor& x, const std::vector<int64_t>& sizes,
                                Device device) {
  if (auto s = CheckActivation(x, device, "split input"); !s.ok()) return s;
  int64_t total = 0;
  for (int64_t s : sizes) {
    if (s <= 0) return absl::InvalidArgumentError("split: sizes must be positive");
    total += s;
  }
  if (total != x.dim(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("split: sizes sum to ", total, " but input is ", x.ToString()));
  }
  return absl::OkStatus();
}

absl::Status CheckKvCacheWriteOperands(const Tensor& k, const Tensor& v, int layer,
                                       int64_t tokens, const KvCacheLayout& l, Device device) {
  if (auto s = CheckActivation(k, device, "kv_cache_write k"); !s.ok()) return s;
  if (auto s = CheckActivation(v, device, "kv_cache_write v"); !s.ok()) return s;
  const int64_t width = int64_t{l.kv_heads} * l.head_dim;
  if (k.dim(1) != width || v.dim(1) != width || k.dim(0) != v.dim(0) || k.dim(0) != tokens) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kv_cache_write layer ", layer, ": k ", k.ToString(), " and v ", v.ToString(),
        " must be [", tokens, ", ", width, "] for the cache's ", l.kv_heads, "x", l.head_dim));
  }
  return absl::OkStatus();
}

absl::Status CheckRotaryOperands(const Tensor& x, const RotaryParams& p, const StepBatch& batch,
                                 Device device) {
  if (auto s = CheckActivation(x, device, "rotary input"); !s.ok()) return s;
  const int64_t tokens = x.dim(0);
  if (int64_t{p.heads} * p.head_dim != x.dim(1) || p.head_dim % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("rotary: ", p.heads, " heads x ", p.head_dim,
                                                   " do not match ", x.ToString()));
  }
  if (batch.size() != tokens || static_cast<int64_t>(batch.seq_lens.size()) != tokens) {
    return absl::InvalidArgumentError(absl::StrCat("rotary: ", tokens,
                                                   " tokens but the step has ", batch.size(),
                                                   " positions"));
  }
  return absl::OkStatus();
}

absl::Status CheckAttentionOperands(const Tensor& q, const AttentionParams& p, int64_t tokens,
                                    const KvCacheLayout& l, Device device) {
  if (auto s = CheckActivation(q, device, "attention q"); !s.ok()) return s;
  if (p.kv_heads != l.kv_heads || p.head_dim != l.head_dim || p.kv_heads <= 0 ||
      p.heads % p.kv_heads != 0 || q.dim(1) != int64_t{p.heads} * p.head_dim ||
      p.layer < 0 || p.layer >= l.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat(
        "attention layer ", p.layer, ": ", p.heads, " heads / ", p.kv_heads, " kv heads x ",
        p.head_dim, " do not fit q ", q.ToString(), " and the cache's ", l.num_layers,
        " layers of ", l.kv_heads, "x", l.head_dim));
  }
  if (!p.causal) {
    return absl::UnimplementedError(absl::StrCat(
        "attention layer ", p.layer, ": causal=0 is not supported (decoder graphs are causal)"));
  }
  if (q.dim(0) != tokens) {
    return absl::InvalidArgumentError(
        absl::StrCat("attention: q has ", q.dim(0), " tokens, the step ", tokens));
  }
  return absl::OkStatus();
}

absl::Status CheckElementwiseOperands(const char* op, const Tensor& a, const char* a_what,
                                      const Tensor& b, const char* b_what, Device device) {
  if (auto s = CheckActivation(a, device, a_what); !s.ok()) return s;
  if (auto s = CheckActivation(b, device, b_what); !s.ok()) return s;
  if (a.shape() != b.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", a.ToString(), " vs ", b.ToString()));
  }
  return absl::OkStatus();
}

}  // namespace kvcc::runtime
