// Runs an ir::Module's decoder graph on a Backend, one step at a time: a step is a batch of
// tokens from one or more sessions (each with its session id and position). Nodes run in the
// graph's topological order, except that a split feeding only q/k rotary and kv_cache_write
// (or only silu_mul) runs with them as one fused backend call; the KV cache flows between
// kv_cache_write and attention as a handle (the layer's part of the engine's KvCache), not as a
// tensor.
#pragma once

#include <functional>
#include <memory>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "ir/module.h"
#include "runtime/backend.h"
#include "runtime/kv_cache.h"

namespace kvcc::runtime {

// Sees, per layer and step, K after rotary (exactly what is written to the cache) and V, both
// f32 [tokens][kv_heads][head_dim], before any quantization. For calibration.
using KvObserver = std::function<void(int layer, const float* k, const float* v, int64_t tokens,
                                      int kv_heads, int head_dim)>;

// The same observation reduced on the backend (Backend::ColumnRanges): per column of K and V
// ([kv_heads * head_dim], head-major) their ranges, so only those leave the device.
using KvRangeObserver = std::function<void(int layer, const ColumnStats& k, const ColumnStats& v,
                                           int64_t tokens)>;

// Sees the input of every `linear` node, host f32 [tokens, in], before it runs. For weight
// calibration (AWQ's activation statistics).
using LinearInputObserver = std::function<void(const ir::Node& node, const float* x,
                                               int64_t tokens, int64_t in)>;

class Executor {
 public:
  // Prepares `module` (which must outlive the executor) for `backend`: resolves every node,
  // uploads weights. An op the executor does not know, or a weight dtype the backend cannot
  // read, is an error naming the node.
  static absl::StatusOr<std::unique_ptr<Executor>> Create(const ir::Module* module,
                                                          Backend* backend);

  void SetKvObserver(KvObserver observer) { observer_ = std::move(observer); }
  void SetKvRangeObserver(KvRangeObserver observer) { range_observer_ = std::move(observer); }
  void SetLinearInputObserver(LinearInputObserver observer) {
    linear_observer_ = std::move(observer);
  }

  // Runs one step (one Run at a time per executor). `token_ids` and `batch` have one entry per token; the cache must hold
  // reserved blocks for every (session, position). Returns host f32 logits [rows, vocab] for
  // the tokens listed in `logit_rows` (indices into the step), or for every token when it is null.
  absl::StatusOr<Tensor> Run(const std::vector<int32_t>& token_ids, const StepBatch& batch,
                             KvCache* cache, const std::vector<int64_t>* logit_rows = nullptr);
  // Run, leaving the logits on the backend's device (for sampling there): the step is only
  // queued, nothing waits for it. A decode step (one token per distinct session, every row's
  // logits) runs from the backend's captured graphs when it has them (Backend::decode_graphs)
  // and no observer is set.
  absl::StatusOr<Tensor> RunOnDevice(const std::vector<int32_t>& token_ids,
                                     const StepBatch& batch, KvCache* cache,
                                     const std::vector<int64_t>* logit_rows = nullptr);

  int64_t vocab_size() const { return vocab_size_; }

 private:
  enum class Op { kEmbedding, kRmsNorm, kLinear, kSplit, kRotary, kKvCacheWrite, kAttention,
                  kSiluMul, kAdd, kAddRmsNorm, kLmHead,
                  // Fused forms of the plan (Backend::RotaryQkvCacheWrite, SiluMulHalves):
                  // split + q/k rotary + kv_cache_write, and split + silu_mul.
                  kRotaryQkvCacheWrite, kSiluMulHalves };
  struct Step {
    Op op;
    const ir::Node* node;
    std::vector<int> inputs;   // value slots; -1 for an omitted optional input
    std::vector<int> outputs;  // value slots
    std::vector<int> frees;    // slots whose last use is this node
    float eps = 0;
    std::vector<int64_t> sizes;
    RotaryParams rotary;
    AttentionParams attention;
    int layer = 0;
    int64_t group_size = 0;  // > 0: a group-quantized linear (QuantizedLinear)
    bool w4_packed = false;  // its weight in the packed layout (ir/group_quant.h)
    RotaryParams k_rotary;   // kRotaryQkvCacheWrite: `rotary` is q's
  };

  Executor(const ir::Module* module, Backend* backend) : module_(module), backend_(backend) {}
  absl::Status Prepare();
  // fused_steps_: steps_ with each split whose parts only feed q/k rotary and the cache write
  // (or only a silu_mul) merged with those consumers into one fused step at the split's place.
  void PlanFusions();
  static bool IsDecodeStep(const StepBatch& batch, const std::vector<int64_t>* logit_rows);
  // Queues every op of the step on device inputs and returns the logits (of `logit_rows`).
  absl::StatusOr<Tensor> QueueOps(const Tensor& dev_ids, const Tensor& dev_pos,
                                  const StepBatch& batch, KvCache* cache,
                                  const std::vector<int64_t>* logit_rows);
  absl::Status RunStep(const Step& step, const StepBatch& batch, KvCache* cache,
                       const std::vector<int64_t>* logit_rows, bool* gathered);

  const ir::Module* module_;
  Backend* backend_;
  std::vector<Step> steps_;
  std::vector<Step> fused_steps_;  // what a step runs unless a KV observer needs the parts
  std::unordered_map<const ir::Value*, int> slot_of_;
  std::vector<Tensor> constants_;  // weights per slot (undefined for non-weights)
  std::vector<Tensor> slots_;      // per-run activations
  int ids_slot_ = -1, positions_slot_ = -1, logits_slot_ = -1;
  // The embedding of input_ids and its table's rows: ids are checked on the host before they
  // are uploaded, so no backend has to report a bad id from the device.
  const ir::Node* embedding_node_ = nullptr;
  int64_t embedding_rows_ = 0;
  const ir::Node* logits_producer_ = nullptr;
  int64_t vocab_size_ = 0;
  KvObserver observer_;
  KvRangeObserver range_observer_;
  LinearInputObserver linear_observer_;
};

}  // namespace kvcc::runtime
