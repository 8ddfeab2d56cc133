#include "runtime/cuda/cuda_kivi.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "ir/status_macros.h"
#include "runtime/cuda/cuda_context.h"

namespace kvcc::runtime {

kernels::KiviCacheView KiviView(const KvCache& cache, int layer, int32_t* staging_maps) {
  kernels::KiviCacheView v{};
  v.k = static_cast<unsigned char*>(cache.values(layer, KvPart::kKey).raw());
  v.k_params = static_cast<unsigned short*>(cache.params(layer, KvPart::kKey).raw());
  v.staging = static_cast<unsigned short*>(cache.staging(layer).raw());
  v.staging_map = staging_maps + int64_t{layer} * cache.layout().num_blocks;
  v.v = static_cast<unsigned char*>(cache.values(layer, KvPart::kValue).raw());
  v.v_params = static_cast<unsigned short*>(cache.params(layer, KvPart::kValue).raw());
  return v;
}

absl::StatusOr<KiviEntries> KiviAttentionEntries(const KvCache& cache, const StepBatch& batch) {
  struct Run {
    int64_t session, begin, end;
  };
  std::vector<Run> runs;
  for (int64_t t = 0; t < batch.size(); ++t) {
    if (!runs.empty() && runs.back().session == batch.sessions[t] &&
        batch.positions[t] == batch.positions[t - 1] + 1) {
      runs.back().end = t + 1;
    } else {
      runs.push_back({batch.sessions[t], t, t + 1});
    }
  }
  KiviEntries e;
  e.entries = static_cast<int>(runs.size());
  std::vector<const std::vector<int32_t>*> tables;
  for (const Run& r : runs) {
    KVCC_ASSIGN_OR_RETURN(auto table, cache.blocks().Table(r.session));
    const int32_t last = batch.positions[r.end - 1];
    if (batch.positions[r.begin] < 0 ||
        int64_t{last} + 1 > static_cast<int64_t>(table->size()) * cache.layout().block_size) {
      return absl::OutOfRangeError(absl::StrCat("attention: position ", last, " of session ",
                                                r.session, " lies outside its cache blocks"));
    }
    tables.push_back(table);
    e.max_blocks = std::max<int>(e.max_blocks, static_cast<int>(table->size()));
    e.max_q_len = std::max<int>(e.max_q_len, static_cast<int>(r.end - r.begin));
  }
  const int64_t n = e.entries;
  e.idx.assign(n * e.max_blocks + 2 * n + 1, 0);
  for (int64_t i = 0; i < n; ++i) {
    std::copy(tables[i]->begin(), tables[i]->end(), e.idx.begin() + i * e.max_blocks);
    e.idx[n * e.max_blocks + i] = batch.positions[runs[i].end - 1] + 1;
    e.idx[n * e.max_blocks + n + i] = static_cast<int32_t>(runs[i].begin);
  }
  e.idx.back() = static_cast<int32_t>(batch.size());
  return e;
}

absl::StatusOr<std::unique_ptr<CudaKivi>> CudaKivi::Create(const codegen::KiviKernelSpec& spec,
                                                           std::shared_ptr<CudaContext> ctx,
                                                           codegen::KernelStore* store) {
  KVCC_ASSIGN_OR_RETURN(codegen::BuiltKiviKernels built, codegen::BuildKiviKernels(spec, store));
  std::unique_ptr<CudaKivi> self(new CudaKivi(spec, std::move(ctx)));
  const std::vector<std::string>& names = codegen::KiviKernelNames();
  KVCC_ASSIGN_OR_RETURN(cudaLibrary_t library, self->ctx_->LoadLibrary(built.compiled.cubin));
  auto load = [&](const std::string& name, auto* kernel) -> absl::Status {
    kernel->name = name;
    KVCC_ASSIGN_OR_RETURN(kernel->fn, self->ctx_->GetKernel(library, name));
    return absl::OkStatus();
  };
  KVCC_RETURN_IF_ERROR(load(names[0], &self->write_));
  KVCC_RETURN_IF_ERROR(load(names[1], &self->seal_));
  KVCC_RETURN_IF_ERROR(load(names[2], &self->reopen_));
  KVCC_RETURN_IF_ERROR(load(names[3], &self->attention_));
  return self;
}

absl::Status CudaKivi::Write(KvCache* cache, int layer, const kernels::KiviCacheView& view,
                             const KiviWriteArgs& args, Upload upload) {
  const KvCacheLayout& l = cache->layout();
  const int n = static_cast<int>(args.slots.size());
  if (args.positions.size() != args.slots.size() || args.k == nullptr || args.v == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "kivi cache write layer ", layer, ": ", args.slots.size(), " slots for ",
        args.positions.size(), " positions, or no K/V rows"));
  }
  // The kernels in the order the CPU backend moves the rows: a run of token writes, a reopen
  // before the token that rewrites a quantized block, a seal right after the token that fills
  // one (its staging block may be the next token's).
  struct Op {
    enum Kind { kWrite, kSeal, kReopen } kind;
    int first, count;  // kWrite: tokens
    int block, staging, rows;
  };
  std::vector<Op> ops;
  std::vector<int32_t> idx(2 * static_cast<size_t>(n), -1);  // slots, then staging blocks
  int run = 0;
  auto flush = [&](int end) {
    if (end > run) ops.push_back({Op::kWrite, run, end - run, 0, 0, 0});
    run = end;
  };
  absl::Status planned;
  for (int t = 0; t < n && planned.ok(); ++t) {
    const int32_t slot_id = args.slots[t];
    if (slot_id < 0) continue;
    const int32_t block = slot_id / l.block_size;
    const int slot = slot_id % l.block_size;
    auto w = cache->PlanBlockChannelWrite(layer, block, slot, args.positions[t] < l.block_size);
    if (!w.ok()) {
      planned = w.status();
      flush(t);
      break;
    }
    if (w->reopen_rows > 0) {
      flush(t);
      ops.push_back({Op::kReopen, 0, 0, block, w->staging, w->reopen_rows});
    }
    idx[t] = slot_id;
    idx[n + t] = w->staging;
    if (w->seal) {
      flush(t + 1);
      ops.push_back({Op::kSeal, 0, 0, block, w->staging, 0});
    }
  }
  if (planned.ok()) flush(n);
  if (ops.empty()) return planned;
  KVCC_ASSIGN_OR_RETURN(const int32_t* dev, upload(std::move(idx)));
  const int rows = 2 * l.kv_heads;
  const int warps = codegen::kKiviThreads / 32;
  const int channel_threads = (l.head_dim + 31) / 32 * 32;
  for (const Op& op : ops) {
    if (op.kind == Op::kWrite) {
      kernels::KiviWriteParams p{};
      p.cache = view;
      p.k = args.k;
      p.v = args.v;
      p.slots = dev;
      p.staging = dev + n;
      p.k_stride = args.k_stride;
      p.v_stride = args.v_stride;
      p.first = op.first;
      p.count = op.count;
      KVCC_RETURN_IF_ERROR(ctx_->Launch(write_, dim3(op.count, (rows + warps - 1) / warps),
                                        dim3(codegen::kKiviThreads), p));
    } else {
      kernels::KiviBlockParams p{};
      p.cache = view;
      p.block = op.block;
      p.staging = op.staging;
      p.rows = op.rows;
      KVCC_RETURN_IF_ERROR(ctx_->Launch(op.kind == Op::kSeal ? seal_ : reopen_, dim3(l.kv_heads),
                                        dim3(channel_threads), p));
    }
  }
  return planned;
}

absl::Status CudaKivi::Attention(const kernels::KiviCacheView& view, const KiviAttentionArgs& a) {
  if (a.q == nullptr || a.out == nullptr || a.block_tables == nullptr || a.seq_lens == nullptr ||
      a.q_start == nullptr) {
    return absl::InvalidArgumentError("kivi attention: q, out, block_tables, seq_lens and "
                                      "q_start must be device pointers");
  }
  if (a.entries <= 0 || a.entries > 65535 || a.max_q_len <= 0 || a.max_blocks <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("kivi attention: ", a.entries, " entries of up to ",
                                                   a.max_q_len, " queries and ", a.max_blocks,
                                                   " blocks; each must be positive"));
  }
  kernels::KiviAttentionParams p{};
  p.cache = view;
  p.q = a.q;
  p.out = a.out;
  p.block_tables = a.block_tables;
  p.seq_lens = a.seq_lens;
  p.q_start = a.q_start;
  p.max_blocks = a.max_blocks;
  p.softmax_scale = a.scale;
  const int tiles = (a.max_q_len + codegen::kKiviQTile - 1) / codegen::kKiviQTile;
  return ctx_->Launch(attention_, dim3(tiles, spec_.heads, a.entries),
                      dim3(codegen::kKiviThreads), p);
}

}  // namespace kvcc::runtime
