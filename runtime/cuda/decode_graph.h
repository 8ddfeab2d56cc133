// CUDA graphs for decode steps: one graph per (batch bucket, context band) captured from the
// executor's op-by-op step and replayed. A replay's inputs (tokens, positions, cache slots,
// lengths, block tables) sit in that graph's persistent device buffer, refreshed by one async
// upload from pinned host memory; padded rows write nothing and attend to nothing; every
// intermediate comes from one pinned block cache shared by all graphs (they run one at a time
// on the backend's stream), so captured addresses stay valid.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/cuda/cuda_backend.h"
#include "runtime/cuda/device_block_cache.h"
#include "runtime/decode_graphs.h"

namespace kvcc::runtime {

class CudaDecodeGraphs : public DecodeGraphs {
 public:
  // Largest batch captured; larger decode steps run eagerly.
  static constexpr int kMaxBatch = 256;

  explicit CudaDecodeGraphs(CudaBackend* backend);
  ~CudaDecodeGraphs() override;
  CudaDecodeGraphs(const CudaDecodeGraphs&) = delete;
  CudaDecodeGraphs& operator=(const CudaDecodeGraphs&) = delete;

  // Replays the step's graph, capturing it first (after one eager warm-up step on the same
  // bound inputs, which loads kernels and fills the block cache so the capture allocates
  // nothing). A step that cannot be captured (an op that needs per-step host data) disables
  // graphs for the backend's lifetime and returns nullopt, as do steps beyond kMaxBatch or the
  // cache's blocks.
  absl::StatusOr<std::optional<Tensor>> Run(const std::vector<int32_t>& ids,
                                            const StepBatch& batch, KvCache* cache,
                                            const QueueStep& queue) override;

  struct Stats {
    int64_t captures = 0;
    int64_t replays = 0;
    int64_t declined = 0;  // steps handed back to the eager path
    int64_t last_nodes = 0;  // nodes (kernels and copies) of the last graph captured
  };
  Stats stats() const { return stats_; }
  // The block cache of every graph's intermediates (misses only while capturing new graphs).
  DeviceBlockCache::Stats pool_stats() const { return pool_->stats(); }
  // Why graphs were disabled (OK while they are not).
  const absl::Status& disabled() const { return disabled_; }

 private:
  struct Graph {
    DecodeInputLayout layout;
    Tensor inputs;  // layout.total i32, persistent
    CudaBackend::BoundDecode bound;
    cudaGraphExec_t exec = nullptr;
    Tensor logits;  // [bucket, vocab] in pool_
  };
  // Captures the graph for `layout` (after a warm-up step), its inputs taken from staging
  // buffer `staged`.
  absl::StatusOr<Graph*> Capture(const DecodeInputLayout& layout, int64_t band,
                                 const StepBatch& padded, const QueueStep& queue, int staged);
  // Packs the step into the next pinned staging buffer; returns its index.
  absl::StatusOr<int> Stage(const std::vector<int32_t>& ids, const StepBatch& batch,
                            const KvCache& cache, const DecodeInputLayout& layout, int64_t band);
  // Queues the upload of staging buffer `staged` into g's inputs.
  absl::Status Send(int staged, const Graph& g);
  void Clear();

  CudaBackend* backend_;
  std::shared_ptr<DeviceBlockCache> pool_;
  // Two pinned staging buffers used in turn; each is rewritten only after the upload queued
  // from it two steps earlier has run.
  int32_t* staging_[2] = {nullptr, nullptr};
  int64_t staging_len_ = 0;
  cudaEvent_t staged_[2] = {nullptr, nullptr};
  int next_staging_ = 0;
  // The cache the graphs were captured against (its device address is baked into them).
  const KvCache* cache_ = nullptr;
  const void* cache_base_ = nullptr;
  // The GEMM workspace's size when they were captured: it only grows, and moves when it does
  // (an eager step of a new shape), which leaves every graph pointing at freed memory.
  int64_t workspace_bytes_ = -1;
  std::map<std::pair<int, int64_t>, std::unique_ptr<Graph>> graphs_;
  absl::Status disabled_;
  Stats stats_;
};

}  // namespace kvcc::runtime
