#include "runtime/executor.h"

#include <cstring>
#include <tuple>
#include <unordered_set>

#include "absl/strings/str_cat.h"
#include "ir/group_quant.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "runtime/decode_graphs.h"
#include "runtime/w4_repack.h"

namespace kvcc::runtime {
namespace {

absl::Status NodeError(const ir::Node& n, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat("node '", n.name, "' (", n.op, "): ", what));
}

absl::Status Annotate(const absl::Status& s, const ir::Node& n) {
  if (s.ok()) return s;
  return absl::Status(s.code(), absl::StrCat("node '", n.name, "' (", n.op, "): ", s.message()));
}

bool IsReadableWeight(ir::DType d) {
  return d == ir::DType::kF32 || d == ir::DType::kF16 || d == ir::DType::kBF16;
}

// A linear in the packed 4-bit layout (ir/group_quant.h): its layout named and versioned, its
// code and scale/zero words i32 weights of the shapes the layout gives the activation width.
absl::Status CheckW4Packed(const ir::Node& n) {
  const std::string layout = n.StrOr(ir::kW4LayoutAttr, "");
  const int64_t version = n.IntOr(ir::kW4LayoutVersionAttr, -1);
  if (layout != ir::kW4PackedLayout || version != ir::kW4PackedLayoutVersion) {
    return NodeError(n, absl::StrCat("4-bit weight layout '", layout, "' version ", version,
                                     " is not one this kvcc reads ('", ir::kW4PackedLayout,
                                     "' version ", ir::kW4PackedLayoutVersion,
                                     "); recompile the artifact"));
  }
  const int64_t g = n.IntOr("group_size", 0);
  const ir::Value* x = n.input(0);
  const ir::Value* codes = n.input(1);
  const ir::Value* sz = n.input(3);
  if (x == nullptr || x->type.shape.size() != 2 || g <= 0 || n.inputs.size() > 4) {
    return NodeError(n, "a packed 4-bit linear takes (x, codes, bias?, sz) and a group_size");
  }
  const int64_t in = x->type.shape[1];
  if (codes == nullptr || !codes->is_weight() || sz == nullptr || !sz->is_weight()) {
    return NodeError(n, "packed 4-bit code and scale/zero words must be weights");
  }
  const int64_t out = codes->type.shape.empty() ? 0 : codes->type.shape[0];
  if (absl::Status shape = CheckW4PackableShape(out, in, g, codes->name); !shape.ok()) {
    return NodeError(n, std::string(shape.message()));
  }
  for (auto [v, what, cols] :
       {std::tuple{codes, "code words", in / 8}, std::tuple{sz, "scale/zero words", in / g}}) {
    if (v->type.dtype != ir::DType::kI32 || v->type.shape != std::vector<int64_t>{out, cols}) {
      return NodeError(n, absl::StrCat("packed 4-bit ", what, " '", v->name, "' are ",
                                       v->type.ToString(), "; the layout needs i32 [", out, ", ",
                                       cols, "] for ", in, " inputs and group size ", g));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<Executor>> Executor::Create(const ir::Module* module,
                                                           Backend* backend) {
  std::unique_ptr<Executor> e(new Executor(module, backend));
  KVCC_RETURN_IF_ERROR(e->Prepare());
  return e;
}

absl::Status Executor::Prepare() {
  const ir::Graph& g = module_->graph;
  auto slot = [&](const ir::Value* v) {
    auto it = slot_of_.find(v);
    if (it != slot_of_.end()) return it->second;
    const int s = static_cast<int>(slot_of_.size());
    slot_of_[v] = s;
    return s;
  };
  std::unordered_set<const ir::Value*> defined;
  const ir::Value* ids = g.FindValue("input_ids");
  const ir::Value* positions = g.FindValue("positions");
  if (ids == nullptr || positions == nullptr) {
    return absl::InvalidArgumentError("model graph lacks the input_ids and positions inputs");
  }
  for (const ir::Value* in : g.inputs()) {
    if (in != ids && in != positions) {
      return absl::InvalidArgumentError(absl::StrCat("model graph input '", in->name,
                                                     "' is not one the runtime provides "
                                                     "(input_ids, positions)"));
    }
    defined.insert(in);
  }
  ids_slot_ = slot(ids);
  positions_slot_ = slot(positions);
  for (const ir::Value* w : g.weights()) {
    defined.insert(w);
    slot(w);
  }
  if (g.outputs().size() != 1) {
    return absl::InvalidArgumentError(absl::StrCat("model graph has ", g.outputs().size(),
                                                   " outputs; the runtime expects one (logits)"));
  }
  const ir::Value* logits = g.outputs()[0];
  if (logits->type.shape.size() != 2 || logits->type.shape[1] <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("model output '", logits->name, "' is ",
                                                   logits->type.ToString(),
                                                   ", expected f32[tokens, vocab]"));
  }
  vocab_size_ = logits->type.shape[1];
  logits_producer_ = logits->producer;

  static const std::pair<const char*, Op> kOps[] = {
      {ir::op::kEmbedding, Op::kEmbedding}, {ir::op::kRmsNorm, Op::kRmsNorm},
      {ir::op::kLinear, Op::kLinear},       {ir::op::kSplit, Op::kSplit},
      {ir::op::kRotary, Op::kRotary},       {ir::op::kKvCacheWrite, Op::kKvCacheWrite},
      {ir::op::kAttention, Op::kAttention}, {ir::op::kSiluMul, Op::kSiluMul},
      {ir::op::kAdd, Op::kAdd},             {ir::op::kAddRmsNorm, Op::kAddRmsNorm},
      {ir::op::kLmHead, Op::kLmHead}};
  std::unordered_map<const ir::Value*, int> remaining_uses;
  for (const auto& node : g.nodes()) {
    const ir::Node& n = *node;
    Step step;
    step.node = &n;
    bool known = false;
    for (const auto& [name, op] : kOps) {
      if (n.op == name) {
        step.op = op;
        known = true;
      }
    }
    if (!known) return NodeError(n, "op is not supported by the runtime");
    for (size_t i = 0; i < n.inputs.size(); ++i) {
      const ir::Value* in = n.inputs[i];
      if (in == nullptr) {
        step.inputs.push_back(-1);
        continue;
      }
      if (!defined.count(in)) {
        return NodeError(n, absl::StrCat("input '", in->name, "' is used before it is defined"));
      }
      step.inputs.push_back(slot(in));
      ++remaining_uses[in];
    }
    for (const ir::Value* out : n.outputs) {
      defined.insert(out);
      step.outputs.push_back(slot(out));
    }
    auto need_inputs = [&](size_t lo, size_t hi) -> absl::Status {
      size_t present = 0;
      for (size_t i = 0; i < n.inputs.size() && i < lo; ++i) present += n.inputs[i] != nullptr;
      if (present < lo || n.inputs.size() > hi) {
        return NodeError(n, absl::StrCat("expects ", lo, "..", hi, " inputs, has ", n.inputs.size()));
      }
      return absl::OkStatus();
    };
    auto weight_input = [&](size_t i, const char* what) -> absl::Status {
      const ir::Value* w = n.input(i);
      if (w == nullptr || !w->is_weight()) {
        return NodeError(n, absl::StrCat(what, " must be a weight"));
      }
      if (!IsReadableWeight(w->type.dtype)) {
        return NodeError(n, absl::StrCat(what, " '", w->name, "' has dtype ",
                                         ir::DTypeName(w->type.dtype), ", which the ",
                                         backend_->name(), " backend cannot read (f32, f16, bf16)"));
      }
      return absl::OkStatus();
    };
    absl::Status s;
    switch (step.op) {
      case Op::kEmbedding:
        if (s = need_inputs(2, 2); s.ok()) s = weight_input(1, "embedding table");
        if (s.ok() && n.input(0) == ids && n.input(1)->type.shape.size() == 2) {
          embedding_node_ = &n;
          embedding_rows_ = n.input(1)->type.shape[0];
        }
        break;
      case Op::kRmsNorm: {
        if (s = need_inputs(2, 2); s.ok()) s = weight_input(1, "norm weight");
        auto eps = n.Float("eps");
        if (!eps.ok()) return eps.status();
        step.eps = static_cast<float>(*eps);
        break;
      }
      case Op::kAddRmsNorm: {
        if (s = need_inputs(3, 3); s.ok()) s = weight_input(2, "norm weight");
        if (s.ok() && n.outputs.size() != 2) s = NodeError(n, "must have two outputs (sum, norm)");
        auto eps = n.Float("eps");
        if (!eps.ok()) return eps.status();
        step.eps = static_cast<float>(*eps);
        break;
      }
      case Op::kLinear:
        if (n.Has(ir::kW4LayoutAttr)) {
          if (s = CheckW4Packed(n); !s.ok()) break;
          step.group_size = n.IntOr("group_size", 0);
          step.w4_packed = true;
          if (n.input(2) != nullptr) s = weight_input(2, "bias");
          break;
        }
        if (n.input(1) != nullptr && n.input(1)->type.dtype == ir::DType::kI4) {
          // ir/group_quant.h: codes, bias?, scales, zeros?
          if (s = need_inputs(2, 5); !s.ok()) break;
          step.group_size = n.IntOr("group_size", 0);
          if (step.group_size <= 0) {
            s = NodeError(n, "a 4-bit weight needs a positive group_size attribute");
            break;
          }
          for (int i : {1, 3, 4}) {
            const ir::Value* w = n.input(i);
            if ((i != 4 && w == nullptr) || (w != nullptr && !w->is_weight())) {
              s = NodeError(n, absl::StrCat("quantized linear input ", i, " must be a weight"));
            }
          }
          if (s.ok() && n.input(2) != nullptr) s = weight_input(2, "bias");
          break;
        }
        if (s = need_inputs(2, 3); !s.ok()) break;
        if (s = weight_input(1, "weight"); !s.ok()) break;
        if (n.input(2) != nullptr) s = weight_input(2, "bias");
        break;
      case Op::kRotaryQkvCacheWrite:
      case Op::kSiluMulHalves:
        break;  // made by PlanFusions, never from a node
      case Op::kSplit: {
        s = need_inputs(1, 1);
        auto sizes = n.Ints("sizes");
        if (!sizes.ok()) return sizes.status();
        step.sizes = *sizes;
        if (step.sizes.size() != n.outputs.size()) {
          return NodeError(n, "has a different number of sizes and outputs");
        }
        break;
      }
      case Op::kRotary: {
        s = need_inputs(2, 2);
        if (s.ok() && n.input(1) != positions) {
          s = NodeError(n, "input 1 must be the graph's positions input");
        }
        KVCC_ASSIGN_OR_RETURN(auto params, RotaryParams::FromNode(n));
        step.rotary = params;
        break;
      }
      case Op::kKvCacheWrite: {
        s = need_inputs(2, 2);
        auto layer = n.Int("layer");
        if (!layer.ok()) return layer.status();
        step.layer = static_cast<int>(*layer);
        break;
      }
      case Op::kAttention: {
        s = need_inputs(2, 2);
        const ir::Value* cache = n.input(1);
        if (s.ok() && (cache->producer == nullptr || cache->producer->op != ir::op::kKvCacheWrite)) {
          s = NodeError(n, "input 1 must be a kv_cache_write result");
        }
        if (!s.ok()) break;
        AttentionParams& a = step.attention;
        for (auto [key, field] : std::initializer_list<std::pair<const char*, int*>>{
                 {"layer", &a.layer}, {"heads", &a.heads}, {"kv_heads", &a.kv_heads},
                 {"head_dim", &a.head_dim}}) {
          KVCC_ASSIGN_OR_RETURN(auto v, n.Int(key));
          *field = static_cast<int>(v);
        }
        a.causal = n.IntOr("causal", 1) != 0;
        auto scale = n.Float("scale");
        if (!scale.ok()) return scale.status();
        a.scale = static_cast<float>(*scale);
        if (cache->producer->IntOr("layer", -1) != a.layer) {
          s = NodeError(n, absl::StrCat("reads the cache written by '", cache->producer->name,
                                        "', which is not layer ", a.layer));
        }
        break;
      }
      case Op::kSiluMul:
      case Op::kAdd:
        s = need_inputs(2, 2);
        break;
      case Op::kLmHead:
        if (s = need_inputs(2, 2); s.ok()) s = weight_input(1, "output weight");
        break;
    }
    if (!s.ok()) return s;
    steps_.push_back(std::move(step));
  }
  if (!defined.count(logits)) {
    return absl::InvalidArgumentError(absl::StrCat("model output '", logits->name,
                                                   "' is never computed"));
  }
  logits_slot_ = slot(logits);
  // Free each activation after its last use so a long prefill does not hold every layer's
  // intermediates at once.
  for (Step& step : steps_) {
    for (size_t i = 0; i < step.node->inputs.size(); ++i) {
      const ir::Value* in = step.node->inputs[i];
      if (in == nullptr || in->is_weight() || in == logits) continue;
      if (--remaining_uses[in] == 0) step.frees.push_back(slot_of_[in]);
    }
    // An output nobody reads (the final add_rms_norm's sum) goes as soon as it is made.
    for (const ir::Value* out : step.node->outputs) {
      if (out->users.empty() && out != logits) {
        step.frees.push_back(slot_of_[out]);
      }
    }
  }
  PlanFusions();
  constants_.assign(slot_of_.size(), Tensor());
  std::vector<Tensor> hosts;
  std::vector<std::string> names;
  for (const ir::Value* w : g.weights()) {
    const ir::WeightData& data = *w->weight;
    if (!w->type.IsStatic() || static_cast<int64_t>(data.size) != w->type.NumBytes()) {
      return absl::InvalidArgumentError(absl::StrCat("weight '", w->name, "' of type ",
                                                     w->type.ToString(), " has ", data.size,
                                                     " bytes"));
    }
    hosts.push_back(Tensor::View(w->type.dtype, w->type.shape, Device::kCpu,
                                 const_cast<uint8_t*>(data.bytes), data.owner));
    names.push_back(w->name);
  }
  ir::WeightsChunkDigests* unverified = module_->unverified_weights.get();
  KVCC_ASSIGN_OR_RETURN(std::vector<Tensor> uploaded,
                        backend_->FromHostWeights(hosts, names, unverified));
  // A backend that did not check the digests while reading leaves it to here, before any step.
  if (unverified != nullptr) KVCC_RETURN_IF_ERROR(unverified->CheckAll());
  for (size_t i = 0; i < uploaded.size(); ++i) {
    constants_[slot_of_[g.weights()[i]]] = std::move(uploaded[i]);
  }
  return absl::OkStatus();
}

void Executor::PlanFusions() {
  std::unordered_map<const ir::Node*, size_t> index;
  for (size_t i = 0; i < steps_.size(); ++i) index[steps_[i].node] = i;
  // The one step using `v` as its input `arg`, when that is `v`'s only use and the step is `op`.
  auto only_user = [&](const ir::Value* v, Op op, size_t arg) -> const Step* {
    if (v->users.size() != 1) return nullptr;
    auto it = index.find(v->users[0]);
    if (it == index.end()) return nullptr;
    const Step& s = steps_[it->second];
    if (s.op != op || s.node->inputs.size() <= arg || s.node->inputs[arg] != v) return nullptr;
    return &s;
  };
  std::vector<bool> merged(steps_.size(), false);
  std::vector<Step> fused;
  for (size_t i = 0; i < steps_.size(); ++i) {
    if (merged[i]) continue;
    const Step& split = steps_[i];
    if (split.op != Op::kSplit) {
      fused.push_back(split);
      continue;
    }
    const std::vector<ir::Value*>& parts = split.node->outputs;
    std::vector<const Step*> members;
    Step f = split;
    // The fused qkv step may rotate q in place in the projection: only when the split is its
    // only use.
    const ir::Value* projection = split.node->inputs.empty() ? nullptr : split.node->inputs[0];
    if (parts.size() == 3 && split.sizes[1] == split.sizes[2] && projection != nullptr &&
        projection->users.size() == 1 && !projection->is_weight()) {
      const Step* rq = only_user(parts[0], Op::kRotary, 0);
      const Step* rk = only_user(parts[1], Op::kRotary, 0);
      const Step* w = rk == nullptr ? nullptr
                                    : only_user(rk->node->outputs[0], Op::kKvCacheWrite, 0);
      if (rq != nullptr && w != nullptr && only_user(parts[2], Op::kKvCacheWrite, 1) == w) {
        f.op = Op::kRotaryQkvCacheWrite;
        f.rotary = rq->rotary;
        f.k_rotary = rk->rotary;
        f.layer = w->layer;
        f.outputs = rq->outputs;
        members = {rq, rk, w};
      }
    } else if (parts.size() == 2 && split.sizes[0] == split.sizes[1]) {
      const Step* m = only_user(parts[0], Op::kSiluMul, 0);
      if (m != nullptr && only_user(parts[1], Op::kSiluMul, 1) == m) {
        f.op = Op::kSiluMulHalves;
        f.outputs = m->outputs;
        members = {m};
      }
    }
    // The merged steps' inputs are all made by the split (or are its input), so the fused step
    // can run where the split ran; it frees what they freed.
    for (const Step* m : members) {
      merged[index[m->node]] = true;
      f.frees.insert(f.frees.end(), m->frees.begin(), m->frees.end());
    }
    fused.push_back(std::move(f));
  }
  fused_steps_ = std::move(fused);
}

absl::StatusOr<Tensor> Executor::Run(const std::vector<int32_t>& token_ids,
                                     const StepBatch& batch, KvCache* cache,
                                     const std::vector<int64_t>* logit_rows) {
  KVCC_ASSIGN_OR_RETURN(auto logits, RunOnDevice(token_ids, batch, cache, logit_rows));
  return backend_->ToHost(logits);
}

absl::StatusOr<Tensor> Executor::RunOnDevice(const std::vector<int32_t>& token_ids,
                                             const StepBatch& batch, KvCache* cache,
                                             const std::vector<int64_t>* logit_rows) {
  const int64_t tokens = static_cast<int64_t>(token_ids.size());
  if (tokens == 0) return absl::InvalidArgumentError("executor: a step needs at least one token");
  if (batch.size() != tokens || static_cast<int64_t>(batch.sessions.size()) != tokens ||
      static_cast<int64_t>(batch.seq_lens.size()) != tokens) {
    return absl::InvalidArgumentError(absl::StrCat("executor: ", tokens,
                                                   " tokens but the step describes ",
                                                   batch.size(), " (call ComputeSeqLens)"));
  }
  if (logit_rows != nullptr && logit_rows->empty()) {
    return absl::InvalidArgumentError("executor: logit_rows is empty");
  }
  if (embedding_node_ != nullptr) {
    for (int64_t t = 0; t < tokens; ++t) {
      if (token_ids[t] < 0 || token_ids[t] >= embedding_rows_) {
        return Annotate(absl::OutOfRangeError(absl::StrCat(
                            "embedding: token id ", token_ids[t], " at index ", t,
                            " is outside the vocabulary of ", embedding_rows_)),
                        *embedding_node_);
      }
    }
  }
  if (DecodeGraphs* graphs = backend_->decode_graphs();
      graphs != nullptr && !observer_ && !range_observer_ && !linear_observer_ &&
      IsDecodeStep(batch, logit_rows)) {
    KVCC_ASSIGN_OR_RETURN(
        auto replayed,
        graphs->Run(token_ids, batch, cache,
                    [&](const Tensor& dev_ids, const Tensor& dev_pos, const StepBatch& padded) {
                      return QueueOps(dev_ids, dev_pos, padded, cache, nullptr);
                    }));
    if (replayed.has_value()) return *std::move(replayed);
  }
  Tensor ids = Tensor::HostZeros(ir::DType::kI32, {tokens});
  Tensor pos = Tensor::HostZeros(ir::DType::kI32, {tokens});
  std::memcpy(ids.raw(), token_ids.data(), tokens * sizeof(int32_t));
  std::memcpy(pos.raw(), batch.positions.data(), tokens * sizeof(int32_t));
  KVCC_ASSIGN_OR_RETURN(auto dev_ids, backend_->FromHost(ids));
  KVCC_ASSIGN_OR_RETURN(auto dev_pos, backend_->FromHost(pos));
  return QueueOps(dev_ids, dev_pos, batch, cache, logit_rows);
}

bool Executor::IsDecodeStep(const StepBatch& batch, const std::vector<int64_t>* logit_rows) {
  std::unordered_set<int64_t> sessions(batch.sessions.begin(), batch.sessions.end());
  if (static_cast<int64_t>(sessions.size()) != batch.size()) return false;
  if (logit_rows == nullptr) return true;
  if (static_cast<int64_t>(logit_rows->size()) != batch.size()) return false;
  for (int64_t i = 0; i < batch.size(); ++i) {
    if ((*logit_rows)[i] != i) return false;
  }
  return true;
}

absl::StatusOr<Tensor> Executor::QueueOps(const Tensor& dev_ids, const Tensor& dev_pos,
                                          const StepBatch& batch, KvCache* cache,
                                          const std::vector<int64_t>* logit_rows) {
  slots_ = constants_;
  slots_[ids_slot_] = dev_ids;
  slots_[positions_slot_] = dev_pos;
  bool gathered = false;
  // KV observers see K after rotary and V as separate tensors: only the unfused plan has them.
  for (const Step& step : observer_ || range_observer_ ? steps_ : fused_steps_) {
    absl::Status s = RunStep(step, batch, cache, logit_rows, &gathered);
    if (!s.ok()) {
      slots_.clear();
      return Annotate(s, *step.node);
    }
    for (int f : step.frees) slots_[f] = Tensor();
  }
  Tensor logits = slots_[logits_slot_];
  slots_.clear();
  if (logit_rows != nullptr && !gathered) {
    KVCC_ASSIGN_OR_RETURN(auto g, backend_->GatherRows(logits, *logit_rows));
    logits = g;
  }
  // Logits are f32 for sampling and ppl whatever op made them (lm_head already writes f32).
  return backend_->ToF32(logits);
}

absl::Status Executor::RunStep(const Step& step, const StepBatch& batch, KvCache* cache,
                               const std::vector<int64_t>* logit_rows, bool* gathered) {
  auto in = [&](int i) -> const Tensor& { return slots_[step.inputs[i]]; };
  auto set = [&](absl::StatusOr<Tensor> t) -> absl::Status {
    if (!t.ok()) return t.status();
    slots_[step.outputs[0]] = *std::move(t);
    return absl::OkStatus();
  };
  switch (step.op) {
    case Op::kEmbedding:
      return set(backend_->Embedding(in(0), in(1)));
    case Op::kRmsNorm:
      return set(backend_->RmsNorm(in(0), in(1), step.eps));
    case Op::kAddRmsNorm: {
      KVCC_ASSIGN_OR_RETURN(auto outs, backend_->AddRmsNorm(in(0), in(1), in(2), step.eps));
      slots_[step.outputs[0]] = outs[0];
      slots_[step.outputs[1]] = outs[1];
      return absl::OkStatus();
    }
    case Op::kLinear: {
      if (linear_observer_) {
        KVCC_ASSIGN_OR_RETURN(auto x32, backend_->ToF32(in(0)));
        KVCC_ASSIGN_OR_RETURN(auto x, backend_->ToHost(x32));
        linear_observer_(*step.node, x.data<float>(), x.dim(0), x.dim(1));
      }
      const bool has_bias = step.inputs.size() > 2 && step.inputs[2] >= 0;
      if (step.group_size > 0) {
        const bool has_zeros = step.inputs.size() > 4 && step.inputs[4] >= 0;
        QuantizedWeight w{&in(1), &in(3), has_zeros ? &in(4) : nullptr, step.group_size,
                          step.w4_packed};
        return set(backend_->QuantizedLinear(in(0), w, has_bias ? &in(2) : nullptr));
      }
      return set(backend_->Linear(in(0), in(1), has_bias ? &in(2) : nullptr));
    }
    case Op::kRotaryQkvCacheWrite:
      if (cache == nullptr) return absl::InvalidArgumentError("no KV cache given to the step");
      return set(backend_->RotaryQkvCacheWrite(in(0), step.sizes[0], step.sizes[1], step.rotary,
                                               step.k_rotary, step.layer, batch, cache));
    case Op::kSiluMulHalves:
      return set(backend_->SiluMulHalves(in(0)));
    case Op::kSplit: {
      KVCC_ASSIGN_OR_RETURN(auto parts, backend_->Split(in(0), step.sizes));
      for (size_t i = 0; i < parts.size(); ++i) slots_[step.outputs[i]] = parts[i];
      return absl::OkStatus();
    }
    case Op::kRotary:
      return set(backend_->Rotary(in(0), step.rotary, batch));
    case Op::kKvCacheWrite: {
      if (cache == nullptr) return absl::InvalidArgumentError("no KV cache given to the step");
      if (observer_) {
        KVCC_ASSIGN_OR_RETURN(auto k32, backend_->ToF32(in(0)));
        KVCC_ASSIGN_OR_RETURN(auto v32, backend_->ToF32(in(1)));
        KVCC_ASSIGN_OR_RETURN(auto k, backend_->ToHost(k32));
        KVCC_ASSIGN_OR_RETURN(auto v, backend_->ToHost(v32));
        const KvCacheLayout& l = cache->layout();
        observer_(step.layer, k.data<float>(), v.data<float>(), k.dim(0), l.kv_heads,
                  l.head_dim);
      }
      if (range_observer_) {
        KVCC_ASSIGN_OR_RETURN(auto k32, backend_->ToF32(in(0)));
        KVCC_ASSIGN_OR_RETURN(auto v32, backend_->ToF32(in(1)));
        KVCC_ASSIGN_OR_RETURN(auto k, backend_->ColumnRanges(k32));
        KVCC_ASSIGN_OR_RETURN(auto v, backend_->ColumnRanges(v32));
        range_observer_(step.layer, k, v, in(0).dim(0));
      }
      return backend_->KvCacheWrite(in(0), in(1), step.layer, batch, cache);
    }
    case Op::kAttention:
      if (cache == nullptr) return absl::InvalidArgumentError("no KV cache given to the step");
      return set(backend_->Attention(in(0), *cache, step.attention, batch));
    case Op::kSiluMul:
      return set(backend_->SiluMul(in(0), in(1)));
    case Op::kAdd:
      return set(backend_->Add(in(0), in(1)));
    case Op::kLmHead: {
      // Only the rows whose logits are wanted go through the (vocab-sized) output projection.
      if (logit_rows != nullptr && step.node == logits_producer_) {
        KVCC_ASSIGN_OR_RETURN(auto x, backend_->GatherRows(in(0), *logit_rows));
        *gathered = true;
        return set(backend_->LmHead(x, in(1)));
      }
      return set(backend_->LmHead(in(0), in(1)));
    }
  }
  return absl::InternalError("unreachable op");
}

}  // namespace kvcc::runtime
