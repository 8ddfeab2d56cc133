#include "ir/op_schema.h"

#include "absl/strings/str_cat.h"
#include "ir/group_quant.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"

namespace kvcc::ir {
namespace {

using Types = std::vector<TensorType>;

absl::Status Bad(const Node& n, absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("node '", n.name, "' (", n.op, "): ", what));
}

std::string Shape(const Value* v) { return v == nullptr ? "<none>" : v->type.ToString(); }

// Head counts and sizes read from attributes are bounded before any product is formed, so a
// corrupt artifact cannot overflow the shape arithmetic.
constexpr int64_t kMaxHeadAttr = int64_t{1} << 20;
absl::StatusOr<int64_t> HeadAttr(const Node& n, const char* key) {
  KVCC_ASSIGN_OR_RETURN(auto v, n.Int(key));
  if (v <= 0 || v > kMaxHeadAttr) {
    return Bad(n, absl::StrCat("attribute '", key, "' = ", v, " is outside [1, ", kMaxHeadAttr,
                               "]"));
  }
  return v;
}

// Token dimension agreement: dynamic matches anything.
bool DimEq(int64_t a, int64_t b) { return a < 0 || b < 0 || a == b; }

absl::Status ExpectRank(const Node& n, size_t i, size_t rank) {
  const Value* v = n.input(i);
  if (v == nullptr || v->type.shape.size() != rank) {
    return Bad(n, absl::StrCat("input ", i, " must have rank ", rank, ", got ", Shape(v)));
  }
  return absl::OkStatus();
}

absl::Status ExpectFloatActivation(const Node& n, size_t i) {
  const Value* v = n.input(i);
  if (v == nullptr || v->type.dtype != DType::kF32 || v->type.shape.size() != 2) {
    return Bad(n, absl::StrCat("input ", i, " must be an f32 [tokens, features] activation, got ",
                               Shape(v)));
  }
  return absl::OkStatus();
}

absl::StatusOr<Types> InferEmbedding(const Node& n) {
  const Value* ids = n.input(0);
  if (ids == nullptr || ids->type.dtype != DType::kI32 || ids->type.shape.size() != 1) {
    return Bad(n, absl::StrCat("token ids must be i32[tokens], got ", Shape(ids)));
  }
  KVCC_RETURN_IF_ERROR(ExpectRank(n, 1, 2));
  return Types{{DType::kF32, {ids->type.shape[0], n.input(1)->type.shape[1]}}};
}

absl::StatusOr<Types> InferRmsNorm(const Node& n) {
  KVCC_RETURN_IF_ERROR(ExpectFloatActivation(n, 0));
  KVCC_RETURN_IF_ERROR(ExpectRank(n, 1, 1));
  if (n.input(1)->type.shape[0] != n.input(0)->type.shape[1]) {
    return Bad(n, absl::StrCat("norm weight ", Shape(n.input(1)), " does not match input ",
                               Shape(n.input(0))));
  }
  return Types{n.input(0)->type};
}

absl::StatusOr<Types> InferLinear(const Node& n) {
  KVCC_RETURN_IF_ERROR(ExpectFloatActivation(n, 0));
  KVCC_RETURN_IF_ERROR(ExpectRank(n, 1, 2));
  const TensorType& x = n.input(0)->type;
  const TensorType& w = n.input(1)->type;
  const int64_t out = w.shape[0], in = w.shape[1];
  if (const Value* bias = n.input(2)) {
    if (bias->type.shape != std::vector<int64_t>{out}) {
      return Bad(n, absl::StrCat("bias ", Shape(bias), " must be [", out, "]"));
    }
  }
  if (n.Has(kW4LayoutAttr)) {
    // The packed 4-bit layout (ir/group_quant.h): codes i32 [out, in / 8], sz i32 [out, in / G].
    const int64_t packed_in = in * 8;
    if (x.shape[1] != packed_in) {
      return Bad(n, absl::StrCat("packed 4-bit weight ", w.ToString(), " holds ", packed_in,
                                 " input features, activation is ", x.ToString()));
    }
    if (w.dtype != DType::kI32) {
      return Bad(n, absl::StrCat("packed 4-bit weight ", w.ToString(), " must be i32"));
    }
    const int64_t group = n.IntOr("group_size", 0);
    if (group <= 0 || packed_in % group != 0) {
      return Bad(n, absl::StrCat("packed 4-bit weight needs a group_size dividing ", packed_in));
    }
    const Value* sz = n.input(3);
    if (sz == nullptr || sz->type.dtype != DType::kI32 ||
        sz->type.shape != std::vector<int64_t>{out, packed_in / group} || n.input(4) != nullptr) {
      return Bad(n, absl::StrCat("packed scale/zero words ", Shape(sz), " must be i32 [", out,
                                 ",", packed_in / group, "] with no zeros input"));
    }
    return Types{{DType::kF32, {x.shape[0], out}}};
  }
  if (x.shape[1] != in) {
    return Bad(n, absl::StrCat("weight ", w.ToString(), " expects ", in,
                               " input features, activation is ", x.ToString()));
  }
  if (w.dtype == DType::kI4 || w.dtype == DType::kU8) {
    // Group-quantized weight (the 4-bit layout is ir/group_quant.h): scales (and zeros) are
    // [out, in / group_size].
    int64_t group = n.IntOr("group_size", 0);
    if (group <= 0 || in % group != 0) {
      return Bad(n, absl::StrCat("quantized weight needs a group_size dividing ", in));
    }
    const Value* scales = n.input(3);
    std::vector<int64_t> want = {out, in / group};
    if (scales == nullptr || scales->type.shape != want || !IsFloat(scales->type.dtype)) {
      return Bad(n, absl::StrCat("scales ", Shape(scales), " must be float [", out, ",",
                                 in / group, "]"));
    }
    const Value* zeros = n.input(4);
    if (zeros != nullptr && (zeros->type.shape != want ||
                             (zeros->type.dtype != w.dtype && !IsFloat(zeros->type.dtype)))) {
      return Bad(n, absl::StrCat("zeros ", Shape(zeros), " must be [", out, ",", in / group,
                                 "] of the weight's dtype or a float dtype"));
    }
    // ir/group_quant.h: each group of a 4-bit row starts on a byte.
    if (w.dtype == DType::kI4 && group % 2 != 0) {
      return Bad(n, absl::StrCat("a 4-bit weight needs an even group_size, got ", group));
    }
  } else if (!IsFloat(w.dtype)) {
    return Bad(n, absl::StrCat("weight dtype ", DTypeName(w.dtype), " is not supported"));
  }
  return Types{{DType::kF32, {x.shape[0], out}}};
}

absl::StatusOr<Types> InferSplit(const Node& n) {
  KVCC_RETURN_IF_ERROR(ExpectFloatActivation(n, 0));
  std::vector<int64_t> sizes = *n.Ints("sizes");
  int64_t total = 0;
  Types out;
  for (int64_t s : sizes) {
    if (s <= 0 || s > (int64_t{1} << 40)) return Bad(n, "split sizes must be in [1, 2^40]");
    total += s;
    if (total > (int64_t{1} << 50)) return Bad(n, "split sizes sum past 2^50");
    out.push_back({DType::kF32, {n.input(0)->type.shape[0], s}});
  }
  if (total != n.input(0)->type.shape[1]) {
    return Bad(n, absl::StrCat("split sizes sum to ", total, " but input is ",
                               Shape(n.input(0))));
  }
  return out;
}

absl::StatusOr<Types> InferRotary(const Node& n) {
  KVCC_RETURN_IF_ERROR(ExpectFloatActivation(n, 0));
  const Value* pos = n.input(1);
  if (pos == nullptr || pos->type.dtype != DType::kI32 || pos->type.shape.size() != 1 ||
      !DimEq(pos->type.shape[0], n.input(0)->type.shape[0])) {
    return Bad(n, absl::StrCat("positions must be i32[tokens], got ", Shape(pos)));
  }
  auto heads_or = HeadAttr(n, "heads");
  auto head_dim_or = HeadAttr(n, "head_dim");
  if (!heads_or.ok()) return heads_or.status();
  if (!head_dim_or.ok()) return head_dim_or.status();
  int64_t heads = *heads_or, head_dim = *head_dim_or;
  if (head_dim % 2 != 0 || heads * head_dim != n.input(0)->type.shape[1]) {
    return Bad(n, absl::StrCat(heads, " heads x ", head_dim, " (even) do not match ",
                               Shape(n.input(0))));
  }
  return Types{n.input(0)->type};
}

absl::StatusOr<Types> InferKvCacheWrite(const Node& n) {
  KVCC_RETURN_IF_ERROR(ExpectFloatActivation(n, 0));
  KVCC_RETURN_IF_ERROR(ExpectFloatActivation(n, 1));
  auto kv_heads_or = HeadAttr(n, "kv_heads");
  auto head_dim_or = HeadAttr(n, "head_dim");
  if (!kv_heads_or.ok()) return kv_heads_or.status();
  if (!head_dim_or.ok()) return head_dim_or.status();
  int64_t kv_heads = *kv_heads_or, head_dim = *head_dim_or;
  if (*n.Int("layer") < 0) return Bad(n, "layer must be >= 0");
  for (int i = 0; i < 2; ++i) {
    if (n.input(i)->type.shape[1] != kv_heads * head_dim) {
      return Bad(n, absl::StrCat(i == 0 ? "k " : "v ", Shape(n.input(i)), " must have ",
                                 kv_heads, "x", head_dim, " features"));
    }
  }
  auto dtype = ParseDType(n.StrOr("cache_dtype", "f16"));
  if (!dtype.ok()) return Bad(n, dtype.status().message());
  return Types{{*dtype, {kv_heads, head_dim}}};
}

absl::StatusOr<Types> InferAttention(const Node& n) {
  KVCC_RETURN_IF_ERROR(ExpectFloatActivation(n, 0));
  const Value* cache = n.input(1);
  if (cache == nullptr || cache->producer == nullptr || cache->producer->op != op::kKvCacheWrite) {
    return Bad(n, "input 1 must be the layer's kv_cache_write result");
  }
  auto heads_or = HeadAttr(n, "heads");
  auto kv_heads_or = HeadAttr(n, "kv_heads");
  auto head_dim_or = HeadAttr(n, "head_dim");
  if (!heads_or.ok()) return heads_or.status();
  if (!kv_heads_or.ok()) return kv_heads_or.status();
  if (!head_dim_or.ok()) return head_dim_or.status();
  int64_t heads = *heads_or, kv_heads = *kv_heads_or, head_dim = *head_dim_or;
  if (heads % kv_heads != 0) {
    return Bad(n, absl::StrCat(heads, " heads are not a multiple of ", kv_heads, " kv heads"));
  }
  if (n.input(0)->type.shape[1] != heads * head_dim) {
    return Bad(n, absl::StrCat("q ", Shape(n.input(0)), " must have ", heads, "x", head_dim,
                               " features"));
  }
  if (cache->type.shape != std::vector<int64_t>{kv_heads, head_dim}) {
    return Bad(n, absl::StrCat("cache ", Shape(cache), " does not match ", kv_heads, "x",
                               head_dim));
  }
  if (cache->producer->IntOr("layer", -1) != *n.Int("layer")) {
    return Bad(n, "reads the cache of a different layer");
  }
  return Types{n.input(0)->type};
}

absl::StatusOr<Types> InferElementwise(const Node& n) {
  KVCC_RETURN_IF_ERROR(ExpectFloatActivation(n, 0));
  KVCC_RETURN_IF_ERROR(ExpectFloatActivation(n, 1));
  const auto& a = n.input(0)->type.shape;
  const auto& b = n.input(1)->type.shape;
  if (!DimEq(a[0], b[0]) || a[1] != b[1]) {
    return Bad(n, absl::StrCat("operand shapes differ: ", Shape(n.input(0)), " vs ",
                               Shape(n.input(1))));
  }
  return Types{n.input(0)->type};
}

// add_rms_norm(x, residual, weight): the residual sum and its RMSNorm, as `add` then
// `rms_norm` would give them (the fused form lets a backend read the row once).
absl::StatusOr<Types> InferAddRmsNorm(const Node& n) {
  KVCC_ASSIGN_OR_RETURN(auto sum, InferElementwise(n));
  KVCC_RETURN_IF_ERROR(ExpectRank(n, 2, 1));
  if (n.input(2)->type.shape[0] != n.input(0)->type.shape[1]) {
    return Bad(n, absl::StrCat("norm weight ", Shape(n.input(2)), " does not match input ",
                               Shape(n.input(0))));
  }
  return Types{n.input(0)->type, n.input(0)->type};
}

absl::StatusOr<Types> InferLmHead(const Node& n) {
  KVCC_RETURN_IF_ERROR(ExpectFloatActivation(n, 0));
  KVCC_RETURN_IF_ERROR(ExpectRank(n, 1, 2));
  if (n.input(1)->type.shape[1] != n.input(0)->type.shape[1]) {
    return Bad(n, absl::StrCat("output weight ", Shape(n.input(1)), " does not match hidden ",
                               Shape(n.input(0))));
  }
  return Types{{DType::kF32, {n.input(0)->type.shape[0], n.input(1)->type.shape[0]}}};
}

std::vector<OpSchema> MakeSchemas() {
  using K = AttrKind;
  return {
      {op::kEmbedding, 2, 2, 1, {}, InferEmbedding},
      {op::kRmsNorm, 2, 2, 1, {{"eps", K::kFloat}}, InferRmsNorm},
      {op::kLinear, 2, 5, 1, {}, InferLinear},
      {op::kSplit, 1, 1, -1, {{"sizes", K::kInts}}, InferSplit},
      {op::kRotary,
       2,
       2,
       1,
       {{"heads", K::kInt}, {"head_dim", K::kInt}, {"theta", K::kFloat}, {"scaling", K::kString}},
       InferRotary},
      {op::kKvCacheWrite,
       2,
       2,
       1,
       {{"layer", K::kInt}, {"kv_heads", K::kInt}, {"head_dim", K::kInt}},
       InferKvCacheWrite},
      {op::kAttention,
       2,
       2,
       1,
       {{"layer", K::kInt},
        {"heads", K::kInt},
        {"kv_heads", K::kInt},
        {"head_dim", K::kInt},
        {"causal", K::kInt},
        {"scale", K::kFloat}},
       InferAttention},
      {op::kSiluMul, 2, 2, 1, {}, InferElementwise},
      {op::kAdd, 2, 2, 1, {}, InferElementwise},
      {op::kAddRmsNorm, 3, 3, 2, {{"eps", K::kFloat}}, InferAddRmsNorm},
      {op::kLmHead, 2, 2, 1, {}, InferLmHead},
  };
}

bool KindMatches(const Attribute& a, AttrKind kind) {
  switch (kind) {
    case AttrKind::kInt: return std::holds_alternative<int64_t>(a);
    case AttrKind::kFloat: return std::holds_alternative<double>(a);
    case AttrKind::kString: return std::holds_alternative<std::string>(a);
    case AttrKind::kInts: return std::holds_alternative<std::vector<int64_t>>(a);
    case AttrKind::kFloats: return std::holds_alternative<std::vector<double>>(a);
  }
  return false;
}

}  // namespace

const std::vector<OpSchema>& AllOpSchemas() {
  static const std::vector<OpSchema>* schemas = new std::vector<OpSchema>(MakeSchemas());
  return *schemas;
}

const OpSchema* FindOpSchema(absl::string_view op) {
  for (const OpSchema& s : AllOpSchemas()) {
    if (s.op == op) return &s;
  }
  return nullptr;
}

absl::StatusOr<std::vector<TensorType>> InferOutputTypes(const Node& node) {
  const OpSchema* schema = FindOpSchema(node.op);
  if (schema == nullptr) return Bad(node, "unknown op");
  int n_in = static_cast<int>(node.inputs.size());
  if (n_in < schema->min_inputs || n_in > schema->max_inputs) {
    return Bad(node, absl::StrCat("takes ", schema->min_inputs, "..", schema->max_inputs,
                                  " inputs, got ", n_in));
  }
  for (int i = 0; i < schema->min_inputs; ++i) {
    if (node.inputs[i] == nullptr) return Bad(node, absl::StrCat("required input ", i, " missing"));
  }
  for (const auto& [attr, kind] : schema->required_attrs) {
    auto it = node.attrs.find(attr);
    if (it == node.attrs.end()) return Bad(node, absl::StrCat("missing attribute '", attr, "'"));
    if (!KindMatches(it->second, kind)) {
      return Bad(node, absl::StrCat("attribute '", attr, "' has the wrong kind"));
    }
  }
  return schema->infer(node);
}

}  // namespace kvcc::ir
