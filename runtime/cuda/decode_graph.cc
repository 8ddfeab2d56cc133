#include "runtime/cuda/decode_graph.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "runtime/cuda/cuda_memory.h"

namespace kvcc::runtime {
namespace {

// Graph intermediates are only ever reused by other graphs' steps, never given back.
constexpr int64_t kPoolIdleBytes = int64_t{1} << 62;

}  // namespace

CudaDecodeGraphs::CudaDecodeGraphs(CudaBackend* backend)
    : backend_(backend),
      pool_(DeviceBlockCache::Create(backend->context(), kPoolIdleBytes, /*pinned=*/true)) {}

CudaDecodeGraphs::~CudaDecodeGraphs() {
  Clear();
  for (int i = 0; i < 2; ++i) {
    if (staged_[i] != nullptr) cudaEventDestroy(staged_[i]);
    if (staging_[i] != nullptr) cudaFreeHost(staging_[i]);
  }
}

void CudaDecodeGraphs::Clear() {
  if (graphs_.empty()) return;
  // A replay may still be running.
  backend_->context()->Synchronize().IgnoreError();
  for (auto& [key, g] : graphs_) {
    if (g->exec != nullptr) cudaGraphExecDestroy(g->exec);
  }
  graphs_.clear();
}

absl::StatusOr<int> CudaDecodeGraphs::Stage(const std::vector<int32_t>& ids,
                                            const StepBatch& batch, const KvCache& cache,
                                            const DecodeInputLayout& layout, int64_t band) {
  const int64_t len = layout.total;
  if (staged_[0] == nullptr) {
    for (int i = 0; i < 2; ++i) {
      KVCC_RETURN_IF_ERROR(CudaCheck(cudaEventCreateWithFlags(&staged_[i], cudaEventDisableTiming),
                                     "cudaEventCreate(decode graph upload)"));
    }
  }
  if (len > staging_len_) {
    const int64_t grown = std::max<int64_t>(len, 2 * staging_len_);
    for (int i = 0; i < 2; ++i) {
      KVCC_RETURN_IF_ERROR(CudaCheck(cudaEventSynchronize(staged_[i]), "decode graph upload"));
      if (staging_[i] != nullptr) cudaFreeHost(staging_[i]);
      staging_[i] = nullptr;
      void* p = nullptr;
      KVCC_RETURN_IF_ERROR(CudaCheck(cudaHostAlloc(&p, grown * sizeof(int32_t), 0),
                                     "cudaHostAlloc(decode graph inputs)"));
      staging_[i] = static_cast<int32_t*>(p);
    }
    staging_len_ = grown;
  }
  const int i = next_staging_;
  next_staging_ ^= 1;
  // Normally long done: the step after the one that used this buffer has already been queued.
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaEventSynchronize(staged_[i]), "decode graph upload"));
  KVCC_RETURN_IF_ERROR(PackDecodeInputs(ids, batch, cache.blocks(), layout, band, staging_[i]));
  return i;
}

absl::Status CudaDecodeGraphs::Send(int staged, const Graph& g) {
  cudaStream_t stream = backend_->context()->stream();
  KVCC_RETURN_IF_ERROR(CudaCheck(
      cudaMemcpyAsync(g.inputs.raw(), staging_[staged], g.layout.total * sizeof(int32_t),
                      cudaMemcpyHostToDevice, stream),
      "decode graph inputs upload"));
  return CudaCheck(cudaEventRecord(staged_[staged], stream),
                   "cudaEventRecord(decode graph upload)");
}

absl::StatusOr<CudaDecodeGraphs::Graph*> CudaDecodeGraphs::Capture(
    const DecodeInputLayout& layout, int64_t band, const StepBatch& padded,
    const QueueStep& queue, int staged) {
  auto g = std::make_unique<Graph>();
  g->layout = layout;
  const DecodeInputLayout& l = g->layout;
  const int bucket = l.bucket;
  KVCC_ASSIGN_OR_RETURN(g->inputs, AllocateDeviceTensor(backend_->context(), ir::DType::kI32,
                                                        {l.total}, true));
  auto view = [&](int64_t at, int64_t n) { return DeviceView(g->inputs, at * 4, ir::DType::kI32, {n}); };
  g->bound.positions = view(l.positions, bucket);
  g->bound.slots = view(l.slots, bucket);
  g->bound.lens = view(l.lens, bucket);
  g->bound.tables = view(l.tables, int64_t{bucket} * l.table_stride);
  g->bound.batch = bucket;
  g->bound.table_stride = l.table_stride;
  g->bound.max_len = static_cast<int>(band);
  const Tensor dev_ids = view(l.ids, bucket);
  KVCC_RETURN_IF_ERROR(Send(staged, *g));

  // Warm-up on the bound inputs: kernels, GEMM plans and workspaces, tables a first call makes,
  // and the pool's blocks, so the capture below queues exactly these ops and allocates nothing.
  backend_->BindDecode(&g->bound, pool_);
  absl::Status warm = queue(dev_ids, g->bound.positions, padded).status();
  backend_->BindDecode(nullptr, nullptr);
  KVCC_RETURN_IF_ERROR(warm);
  if (backend_->workspace_bytes() != workspace_bytes_) {
    // The warm-up planned a GEMM that needs a larger workspace, which moved it: the graphs
    // captured so far point at the old one.
    Clear();
    workspace_bytes_ = backend_->workspace_bytes();
  }

  cudaStream_t stream = backend_->context()->stream();
  const int64_t misses = pool_->stats().misses;
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal),
                                 "cudaStreamBeginCapture(decode step)"));
  backend_->BindDecode(&g->bound, pool_);
  absl::StatusOr<Tensor> out = queue(dev_ids, g->bound.positions, padded);
  backend_->BindDecode(nullptr, nullptr);
  cudaGraph_t graph = nullptr;
  const cudaError_t ended = cudaStreamEndCapture(stream, &graph);
  cudaGetLastError();  // a failed capture's error is not the next call's
  absl::Status s = out.status();
  if (s.ok()) s = CudaCheck(ended, "cudaStreamEndCapture(decode step)");
  if (s.ok() && pool_->stats().misses != misses) {
    s = absl::InternalError(absl::StrCat("decode graph capture of batch ", bucket,
                                         " allocated memory its warm-up did not"));
  }
  if (s.ok()) {
    s = CudaCheck(cudaGraphInstantiate(&g->exec, graph, 0), "cudaGraphInstantiate(decode step)");
  }
  size_t nodes = 0;
  if (s.ok() && cudaGraphGetNodes(graph, nullptr, &nodes) == cudaSuccess) {
    stats_.last_nodes = static_cast<int64_t>(nodes);
  }
  if (graph != nullptr) cudaGraphDestroy(graph);
  KVCC_RETURN_IF_ERROR(s);
  g->logits = *std::move(out);
  ++stats_.captures;
  Graph* raw = g.get();
  graphs_[{bucket, band}] = std::move(g);
  return raw;
}

absl::StatusOr<std::optional<Tensor>> CudaDecodeGraphs::Run(const std::vector<int32_t>& ids,
                                                            const StepBatch& batch,
                                                            KvCache* cache,
                                                            const QueueStep& queue) {
  const int64_t n = batch.size();
  const int bucket =
      // An int4-kivi cache's writes need the host's staging bookkeeping every step.
      cache == nullptr || !disabled_.ok() || cache->layout().block_channel
          ? -1
          : DecodeBucketFor(n, static_cast<int>(std::min<int64_t>(kMaxBatch,
                                                                   cache->layout().num_blocks)));
  if (bucket < 0) {
    ++stats_.declined;
    return std::optional<Tensor>();
  }
  int64_t max_len = 1;
  for (int32_t p : batch.positions) max_len = std::max<int64_t>(max_len, int64_t{p} + 1);
  const int64_t band = DecodeContextBand(max_len);
  const void* base = cache->values(0, KvPart::kKey).raw();
  if (cache != cache_ || base != cache_base_ || backend_->workspace_bytes() != workspace_bytes_) {
    Clear();
    cache_ = cache;
    cache_base_ = base;
    workspace_bytes_ = backend_->workspace_bytes();
  }
  // Packed first: a step whose positions lie outside its sessions' blocks is the caller's
  // error, never a reason to give up on graphs.
  const DecodeInputLayout layout =
      DecodeInputLayout::For(bucket, band, cache->layout().block_size);
  KVCC_ASSIGN_OR_RETURN(const int staged, Stage(ids, batch, *cache, layout, band));
  Graph* g = nullptr;
  if (auto it = graphs_.find({bucket, band}); it != graphs_.end()) {
    g = it->second.get();
    KVCC_RETURN_IF_ERROR(Send(staged, *g));
  } else {
    // Padded rows: a session id no table has, position 0.
    StepBatch padded = batch;
    padded.sessions.resize(bucket, -1);
    padded.positions.resize(bucket, 0);
    padded.seq_lens.resize(bucket, 1);
    auto captured = Capture(layout, band, padded, queue, staged);
    if (!captured.ok()) {
      // An op of this model needs per-step host work a replay cannot redo (or the capture
      // failed): every later step runs eagerly.
      disabled_ = captured.status();
      Clear();
      ++stats_.declined;
      return std::optional<Tensor>();
    }
    g = *captured;
  }
  cudaStream_t stream = backend_->context()->stream();
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaGraphLaunch(g->exec, stream), "cudaGraphLaunch(decode step)"));
  ++stats_.replays;
  // The real rows, copied out: the graph's own logits are overwritten by its next replay, and
  // another graph may use their block for scratch.
  const int64_t vocab = g->logits.dim(1);
  KVCC_ASSIGN_OR_RETURN(auto out, backend_->blocks_->Allocate(ir::DType::kF32, {n, vocab}, false));
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaMemcpyAsync(out.raw(), g->logits.raw(), n * vocab * 4,
                                                 cudaMemcpyDeviceToDevice, stream),
                                 "copying replayed logits"));
  return std::optional<Tensor>(std::move(out));
}

}  // namespace kvcc::runtime
