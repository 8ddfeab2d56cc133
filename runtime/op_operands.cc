#include "runtime/op_operands.h"

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "runtime/w4_repack.h"

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
  KVCC_RETURN_IF_ERROR(CheckResident(t, device, what));
  if (t.dtype() != ir::DType::kF32 || t.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        DeviceName(device), " backend: ", what, " must be f32[tokens, n], got ", t.ToString()));
  }
  return absl::OkStatus();
}

absl::Status CheckOpActivation(const Tensor& t, Device device, const char* what) {
  KVCC_RETURN_IF_ERROR(CheckResident(t, device, what));
  const bool half_ok = device == Device::kCuda && t.dtype() == ir::DType::kF16;
  if ((t.dtype() != ir::DType::kF32 && !half_ok) || t.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        DeviceName(device), " backend: ", what, " must be ",
        device == Device::kCuda ? "f32 or f16" : "f32", "[tokens, n], got ", t.ToString()));
  }
  return absl::OkStatus();
}

absl::Status CheckWeight(const Tensor& t, Device device, const char* what) {
  KVCC_RETURN_IF_ERROR(CheckResident(t, device, what));
  if (!IsWeightDType(t.dtype())) {
    return absl::UnimplementedError(absl::StrCat(DeviceName(device), " backend: ", what,
                                                 " dtype ", ir::DTypeName(t.dtype()),
                                                 " is not supported (f32, f16, bf16)"));
  }
  return absl::OkStatus();
}

absl::Status CheckQuantizedWeight(const Tensor& x, const QuantizedWeight& w, Device device) {
  if (w.codes == nullptr || w.scales == nullptr) {
    return absl::InvalidArgumentError("linear: a 4-bit weight needs codes and scales");
  }
  KVCC_RETURN_IF_ERROR(CheckResident(*w.codes, device, "linear 4-bit weight"));
  KVCC_RETURN_IF_ERROR(CheckResident(*w.scales, device, "linear scales"));
  const int64_t in = x.dim(1);
  if (w.packed) {
    // ir/group_quant.h's packed layout: code words i32 [out, in / 8], scale/zero words
    // i32 [out, in / group_size].
    const int64_t out = w.codes->rank() == 2 ? w.codes->dim(0) : 0;
    KVCC_RETURN_IF_ERROR(CheckW4PackableShape(out, in, w.group_size, "linear packed 4-bit weight"));
    if (w.codes->dtype() != ir::DType::kI32 || w.codes->shape() != std::vector<int64_t>{out, in / 8} ||
        w.scales->dtype() != ir::DType::kI32 ||
        w.scales->shape() != std::vector<int64_t>{out, in / w.group_size} || w.zeros != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat(
          "linear: packed 4-bit words ", w.codes->ToString(), " and ", w.scales->ToString(),
          " must be i32 [", out, ", ", in / 8, "] and [", out, ", ", in / w.group_size,
          "] for input ", x.ToString(), ", with no zeros"));
    }
    return absl::OkStatus();
  }
  if (w.codes->dtype() != ir::DType::kI4 || w.codes->rank() != 2 || w.codes->dim(1) != in) {
    return absl::InvalidArgumentError(absl::StrCat("linear: 4-bit weight ", w.codes->ToString(),
                                                   " must be i4 [out, ", in, "] for input ",
                                                   x.ToString()));
  }
  if (w.group_size <= 0 || w.group_size % 2 != 0 || in % w.group_size != 0) {
    return absl::InvalidArgumentError(absl::StrCat("linear: group_size ", w.group_size,
                                                   " must be even and divide ", in));
  }
  const std::vector<int64_t> want = {w.codes->dim(0), in / w.group_size};
  const ir::DType sd = w.scales->dtype();
  if ((sd != ir::DType::kF16 && sd != ir::DType::kF32) || w.scales->shape() != want) {
    return absl::InvalidArgumentError(absl::StrCat("linear: scales ", w.scales->ToString(),
                                                   " must be f16 or f32 [", want[0], ", ",
                                                   want[1], "]"));
  }
  if (w.zeros != nullptr) {
    KVCC_RETURN_IF_ERROR(CheckResident(*w.zeros, device, "linear zeros"));
    if (w.zeros->dtype() != ir::DType::kI4 || w.zeros->shape() != want) {
      return absl::InvalidArgumentError(absl::StrCat("linear: zeros ", w.zeros->ToString(),
                                                     " must be i4 [", want[0], ", ", want[1],
                                                     "]"));
    }
  }
  return absl::OkStatus();
}

absl::Status CheckEmbeddingOperands(const Tensor& ids, const Tensor& table, Device device) {
  KVCC_RETURN_IF_ERROR(CheckResident(ids, device, "token ids"));
  KVCC_RETURN_IF_ERROR(CheckWeight(table, device, "embedding table"));
  if (ids.dtype() != ir::DType::kI32 || ids.rank() != 1 || table.rank() != 2) {
    return absl::InvalidArgumentError(absl::StrCat("embedding: ids ", ids.ToString(),
                                                   " and table ", table.ToString(),
                                                   " must be i32[T] and [vocab, hidden]"));
  }
  return absl::OkStatus();
}

absl::Status CheckRmsNormOperands(const Tensor& x, const Tensor& weight, Device device) {
  KVCC_RETURN_IF_ERROR(CheckOpActivation(x, device, "rms_norm input"));
  KVCC_RETURN_IF_ERROR(CheckWeight(weight, device, "rms_norm weight"));
  if (weight.NumElements() != x.dim(1)) {
    return absl::InvalidArgumentError(absl::StrCat("rms_norm: weight ", weight.ToString(),
                                                   " does not match input ", x.ToString()));
  }
  return absl::OkStatus();
}

absl::Status CheckAddRmsNormOperands(const Tensor& x, const Tensor& residual,
                                     const Tensor& weight, Device device) {
  KVCC_RETURN_IF_ERROR(CheckOpActivation(x, device, "add_rms_norm input"));
  KVCC_RETURN_IF_ERROR(CheckOpActivation(residual, device, "add_rms_norm residual"));
  KVCC_RETURN_IF_ERROR(CheckWeight(weight, device, "add_rms_norm weight"));
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
  KVCC_RETURN_IF_ERROR(CheckOpActivation(x, device, "split input"));
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
  KVCC_RETURN_IF_ERROR(CheckOpActivation(k, device, "kv_cache_write k"));
  KVCC_RETURN_IF_ERROR(CheckOpActivation(v, device, "kv_cache_write v"));
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
  KVCC_RETURN_IF_ERROR(CheckOpActivation(x, device, "rotary input"));
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
  KVCC_RETURN_IF_ERROR(CheckOpActivation(q, device, "attention q"));
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
  KVCC_RETURN_IF_ERROR(CheckOpActivation(a, device, a_what));
  KVCC_RETURN_IF_ERROR(CheckOpActivation(b, device, b_what));
  if (a.shape() != b.shape()) {
    return absl::InvalidArgumentError(absl::StrCat(op, ": ", a.ToString(), " vs ", b.ToString()));
  }
  return absl::OkStatus();
}

}  // namespace kvcc::runtime
