// Replayable decode steps: the interface a device backend offers to run a decode step from a
// captured graph (CUDA graphs, runtime/cuda/decode_graph.h), and the host-side rules they
// share with the eager step: batch buckets, context bands and the packed per-step inputs.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "runtime/backend.h"
#include "runtime/block_pool.h"
#include "runtime/kv_cache.h"
#include "runtime/tensor.h"

namespace kvcc::runtime {

class DecodeGraphs {
 public:
  // Queues the ops of one step of `batch` reading the device `ids` and `positions` (i32
  // [batch.size()]) and returns its logits [batch.size(), vocab] on the device.
  using QueueStep = std::function<absl::StatusOr<Tensor>(const Tensor& ids,
                                                         const Tensor& positions,
                                                         const StepBatch& batch)>;
  virtual ~DecodeGraphs() = default;
  // The logits [batch.size(), vocab] of decode step `batch` (one token per distinct session,
  // ids already checked) on the device, from a replayed graph; nullopt when this step cannot
  // run from one (the caller runs it eagerly). `queue` queues the step's ops for warm-up and
  // capture.
  virtual absl::StatusOr<std::optional<Tensor>> Run(const std::vector<int32_t>& ids,
                                                    const StepBatch& batch, KvCache* cache,
                                                    const QueueStep& queue) = 0;
};

// Batch sizes graphs are captured for, as vLLM picks them: 1, 2, 4, 8, then steps of 8 up to
// `max_batch` rounded up to a multiple of 8.
std::vector<int> DecodeBuckets(int max_batch);
// The smallest bucket of DecodeBuckets(max_batch) holding `n` rows; -1 when none does.
int DecodeBucketFor(int64_t n, int max_batch);

// The bound on sequence lengths a decode step's attention is sized for (its split of the
// sequence): `max_len` rounded up to a multiple of max(256, next power of two / 16), so a graph
// captured for a band serves every step inside it, sized at most 1/8 beyond the need. The eager
// step uses the same bound, so a replay computes exactly what the eager step computes.
int64_t DecodeContextBand(int64_t max_len);

// Where each input of a padded decode step lies in its packed i32 upload.
struct DecodeInputLayout {
  int bucket = 0;        // rows, real ones first
  int table_stride = 0;  // block-table entries per row: band / block_size
  int64_t ids = 0, positions = 0, slots = 0, lens = 0, tables = 0, total = 0;  // i32 offsets
  static DecodeInputLayout For(int bucket, int64_t band, int block_size);
};

// Packs decode step `batch` (tokens `ids`, one per distinct session) into `out`
// (layout.total i32): per row the token, position, cache slot, attended length and block table.
// Padded rows get token 0, slot -1 (the cache write skips it) and length 0 (attention reads
// none of their blocks and leaves their output zero). Errors name the session whose position
// lies outside its reserved blocks or the band.
absl::Status PackDecodeInputs(const std::vector<int32_t>& ids, const StepBatch& batch,
                              const BlockPool& blocks, const DecodeInputLayout& layout,
                              int64_t band, int32_t* out);

}  // namespace kvcc::runtime
