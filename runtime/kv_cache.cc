#include "runtime/kv_cache.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "ir/half.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"
#include "runtime/half_convert.h"

namespace kvcc::runtime {

absl::StatusOr<KvCacheSpec> KvCacheSpecFromModule(const ir::Module& module, int block_size,
                                                  int64_t num_blocks, bool full_precision) {
  KvCacheSpec spec;
  std::vector<const ir::Node*> writes;
  for (const auto& node : module.graph.nodes()) {
    if (node->op == ir::op::kKvCacheWrite) writes.push_back(node.get());
  }
  if (writes.empty()) {
    return absl::InvalidArgumentError("model graph has no kv_cache_write node");
  }
  int num_layers = 0;
  for (const ir::Node* n : writes) {
    KVCC_ASSIGN_OR_RETURN(auto layer, n->Int("layer"));
    if (layer < 0 || layer > 100000) {
      return absl::InvalidArgumentError(
          absl::StrCat("node '", n->name, "': layer ", layer, " is out of range"));
    }
    num_layers = std::max<int>(num_layers, static_cast<int>(layer) + 1);
  }
  spec.schemes.resize(num_layers);
  std::vector<const ir::Node*> by_layer(num_layers, nullptr);
  const ir::Node* first = nullptr;
  for (const ir::Node* n : writes) {
    const int layer = static_cast<int>(*n->Int("layer"));
    if (by_layer[layer] != nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("nodes '", by_layer[layer]->name, "' and '",
                                                     n->name, "' both write layer ", layer,
                                                     "'s KV cache"));
    }
    by_layer[layer] = n;
    KVCC_ASSIGN_OR_RETURN(auto scheme, ir::ReadKvCacheScheme(*n));
    if (full_precision) {
      for (KvPart p : {KvPart::kKey, KvPart::kValue}) {
        if (!scheme.Part(p).quantized()) scheme.SetPart(p, {ir::DType::kF32, ir::KvGranularity::kNone});
      }
    }
    auto kv_heads = n->Int("kv_heads");
    if (!kv_heads.ok()) return kv_heads.status();
    auto head_dim = n->Int("head_dim");
    if (!head_dim.ok()) return head_dim.status();
    KvCacheLayout storage;
    storage.SetStorage(scheme);
    auto same_storage = [&] {
      return spec.layout.dtype == storage.dtype && spec.layout.online == storage.online &&
             spec.layout.v_dtype == storage.v_dtype && spec.layout.v_online == storage.v_online;
    };
    if (first == nullptr) {
      first = n;
      spec.layout = storage;
      spec.layout.kv_heads = static_cast<int>(*kv_heads);
      spec.layout.head_dim = static_cast<int>(*head_dim);
    } else if (spec.layout.kv_heads != *kv_heads || spec.layout.head_dim != *head_dim ||
               !same_storage()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "node '", n->name, "' stores ", *kv_heads, "x", *head_dim, " ",
          ir::KvCacheSchemeName(scheme), " but '", first->name, "' stores ",
          spec.layout.kv_heads, "x", spec.layout.head_dim, " ",
          ir::KvCacheSchemeName(spec.schemes[*first->Int("layer")]),
          "; the paged cache needs one layout for all layers"));
    }
    spec.schemes[layer] = std::move(scheme);
  }
  for (int l = 0; l < num_layers; ++l) {
    if (by_layer[l] == nullptr) {
      return absl::InvalidArgumentError(absl::StrCat("no kv_cache_write node for layer ", l));
    }
  }
  spec.layout.num_layers = num_layers;
  spec.layout.block_size = block_size;
  spec.layout.num_blocks = num_blocks;
  spec.layout.SetStagingFor(num_blocks);
  return spec;
}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::Create(const KvCacheSpec& spec,
                                                         const KvStorageAllocator& allocate) {
  const KvCacheLayout& l = spec.layout;
  if (l.num_layers <= 0 || l.kv_heads <= 0 || l.head_dim <= 0 || l.block_size <= 0 ||
      l.num_blocks <= 0 || l.num_blocks > std::numeric_limits<int32_t>::max()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV cache layout is invalid: ", l.num_layers, " layers, ", l.kv_heads, " kv heads x ",
        l.head_dim, ", ", l.num_blocks, " blocks of ", l.block_size, " tokens"));
  }
  if (static_cast<int>(spec.schemes.size()) != l.num_layers) {
    return absl::InvalidArgumentError(absl::StrCat("KV cache has ", spec.schemes.size(),
                                                   " layer schemes for ", l.num_layers,
                                                   " layers"));
  }
  for (int layer = 0; layer < l.num_layers; ++layer) {
    const ir::KvCacheScheme& s = spec.schemes[layer];
    for (KvPart p : {KvPart::kKey, KvPart::kValue}) {
      const ir::KvStorage st = s.Part(p);
      const char* part = p == KvPart::kKey ? "K" : "V";
      if (st.dtype != l.DTypeOf(p) || st.online() != l.OnlineOf(p) ||
          st.block_channel() != (p == KvPart::kKey && l.block_channel)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "KV cache layer ", layer, " scheme stores ", part, " as ", ir::DTypeName(st.dtype),
            st.online() ? " (online)" : "", st.block_channel() ? " (block_channel)" : "",
            " but the layout stores ", ir::DTypeName(l.DTypeOf(p)),
            l.OnlineOf(p) ? " (online)" : "",
            p == KvPart::kKey && l.block_channel ? " (block_channel)" : ""));
      }
      if (st.dtype != ir::DType::kF16 && st.dtype != ir::DType::kF32 &&
          st.dtype != ir::DType::kI8 && st.dtype != ir::DType::kI4 &&
          st.dtype != ir::DType::kFP8E4M3) {
        return absl::UnimplementedError(absl::StrCat("KV cache layer ", layer, ": ", part,
                                                     " cache dtype ", ir::DTypeName(st.dtype),
                                                     " is not supported"));
      }
      const size_t want = ir::KvParamCount(st, l.kv_heads, l.head_dim);
      if (s.Zps(p).size() != want || s.Scales(p).size() != want) {
        return absl::InvalidArgumentError(absl::StrCat("KV cache layer ", layer, ": ", part,
                                                       " zp/scale lists need ", want,
                                                       " entries"));
      }
    }
  }
  std::unique_ptr<KvCache> cache(new KvCache(spec));
  for (int layer = 0; layer < l.num_layers; ++layer) {
    for (int part = 0; part < 2; ++part) {
      const KvPart p = part == 0 ? KvPart::kKey : KvPart::kValue;
      KVCC_ASSIGN_OR_RETURN(auto values, allocate(l.num_blocks * l.BlockBytes(p)));
      cache->values_.push_back(std::move(values));
      if (l.HasParams(p)) {
        KVCC_ASSIGN_OR_RETURN(auto params, allocate(l.num_blocks * l.BlockParamBytes(p)));
        cache->params_.push_back(std::move(params));
      } else {
        // Calibrated and unquantized schemes keep no per-token parameters: an empty tensor.
        cache->params_.push_back(
            Tensor::View(ir::DType::kU8, {0}, cache->values_.back().device(), nullptr, nullptr));
      }
    }
    if (l.block_channel) {
      if (l.staging_blocks <= 0) {
        return absl::InvalidArgumentError(absl::StrCat(
            "KV cache layer ", layer, ": a block_channel K needs staging blocks, the layout has ",
            l.staging_blocks));
      }
      KVCC_ASSIGN_OR_RETURN(auto staging, allocate(l.staging_blocks * l.StagingBlockBytes()));
      cache->staging_.push_back(std::move(staging));
      cache->kivi_.push_back({std::vector<int32_t>(l.num_blocks, -1),
                              std::vector<int32_t>(l.staging_blocks, -1),
                              std::vector<uint8_t>(l.num_blocks, 0)});
    } else {
      cache->staging_.push_back(
          Tensor::View(ir::DType::kU8, {0}, cache->values_.back().device(), nullptr, nullptr));
    }
  }
  return cache;
}

absl::StatusOr<std::unique_ptr<KvCache>> KvCache::CreateHost(const KvCacheSpec& spec) {
  // Not zero-filled: attention only reads positions its session has written, and untouched
  // pages of a large pool are then never committed.
  return Create(spec, [](int64_t bytes) -> absl::StatusOr<Tensor> {
    Tensor t = Tensor::HostUninitialized(ir::DType::kU8, {bytes});
    if (!t.defined()) {
      return absl::ResourceExhaustedError(
          absl::StrCat("cannot allocate ", bytes, " bytes of host memory for the KV cache"));
    }
    return t;
  });
}

absl::Status KvCache::WriteToken(int layer, int64_t session, int64_t position, const float* k,
                                 const float* v) {
  const KvCacheLayout& l = spec_.layout;
  if (layer < 0 || layer >= l.num_layers) {
    return absl::OutOfRangeError(absl::StrCat("KV cache has no layer ", layer));
  }
  KVCC_ASSIGN_OR_RETURN(auto table, blocks_.Table(session));
  if (position < 0 || position >= static_cast<int64_t>(table->size()) * l.block_size) {
    return absl::OutOfRangeError(absl::StrCat("KV cache: position ", position, " of session ",
                                              session, " is outside its ",
                                              table->size() * l.block_size,
                                              " reserved tokens"));
  }
  const int32_t block = (*table)[position / l.block_size];
  const int slot = static_cast<int>(position % l.block_size);
  const ir::KvCacheScheme& s = spec_.schemes[layer];
  if (l.block_channel) {
    KVCC_RETURN_IF_ERROR(WriteBlockChannelRows(layer, block, slot, position < l.block_size, k));
  }
  for (int part = l.block_channel ? 1 : 0; part < 2; ++part) {
    const KvPart p = part == 0 ? KvPart::kKey : KvPart::kValue;
    const float* src = part == 0 ? k : v;
    uint8_t* base = values(layer, p).data<uint8_t>();
    uint16_t* pbase = l.OnlineOf(p) ? params(layer, p).data<uint16_t>() : nullptr;
    for (int h = 0; h < l.kv_heads; ++h) {
      uint16_t* pp = pbase ? pbase + l.ParamIndex(block, h, slot) : nullptr;
      EncodeKvRow(s, p, h, src + int64_t{h} * l.head_dim, l.head_dim,
                  base + l.RowOffset(p, block, h, slot), pp);
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<int32_t> KvCache::AcquireStaging(int layer, int32_t block) {
  KiviState& st = kivi_[layer];
  auto find_free = [&] {
    return static_cast<int32_t>(std::find(st.block_of.begin(), st.block_of.end(), -1) -
                                st.block_of.begin());
  };
  int32_t lane = find_free();
  if (lane == static_cast<int32_t>(st.block_of.size())) {
    // Blocks of closed sessions keep their staging until reused; reclaim those no session owns.
    std::vector<uint8_t> owned(st.staging_of.size(), 0);
    for (int64_t session : blocks_.Sessions()) {
      for (int32_t b : **blocks_.Table(session)) owned[b] = 1;
    }
    for (int32_t& b : st.block_of) {
      if (b >= 0 && !owned[b]) {
        st.staging_of[b] = -1;
        b = -1;
      }
    }
    lane = find_free();
  }
  if (lane == static_cast<int32_t>(st.block_of.size())) {
    return absl::ResourceExhaustedError(absl::StrCat(
        "KV cache layer ", layer, ": all ", st.block_of.size(),
        " f16 staging blocks of the block_channel K hold unfilled blocks of open sessions"));
  }
  st.block_of[lane] = block;
  st.staging_of[block] = lane;
  return lane;
}

absl::StatusOr<KvCache::BlockChannelWrite> KvCache::PlanBlockChannelWrite(int layer,
                                                                         int32_t block, int slot,
                                                                         bool sink) {
  const KvCacheLayout& l = spec_.layout;
  if (!l.block_channel || layer < 0 || layer >= l.num_layers || block < 0 ||
      block >= l.num_blocks || slot < 0 || slot >= l.block_size) {
    return absl::InvalidArgumentError(absl::StrCat(
        "KV cache: no block_channel K write at layer ", layer, ", block ", block, ", slot ", slot));
  }
  KiviState& st = kivi_[layer];
  BlockChannelWrite w;
  w.staging = st.staging_of[block];
  if (w.staging < 0) {
    // Rewriting inside a quantized block (a session rolled back): its earlier rows return to
    // staging as the values attention read.
    w.reopen_rows = st.sealed[block] ? slot : 0;
    KVCC_ASSIGN_OR_RETURN(w.staging, AcquireStaging(layer, block));
    st.sealed[block] = 0;
  }
  // The sink block (a session's first) stays in f16 for good.
  w.seal = slot == l.block_size - 1 && !sink;
  if (w.seal) {
    st.sealed[block] = 1;
    st.staging_of[block] = -1;
    st.block_of[w.staging] = -1;
  }
  return w;
}

absl::Status KvCache::WriteBlockChannelRows(int layer, int32_t block, int slot, bool sink,
                                            const float* k) {
  const KvCacheLayout& l = spec_.layout;
  uint16_t* stage_base = staging_[layer].data<uint16_t>();
  const int64_t head_rows = int64_t{l.block_size} * l.head_dim;  // f16 values per head
  // The rows a reopened block returns to staging, read while it is still quantized.
  const bool sealed = kivi_[layer].staging_of[block] < 0 && kivi_[layer].sealed[block];
  const int keep = sealed ? slot : 0;
  std::vector<float> rows(int64_t{l.kv_heads} * keep * l.head_dim);
  for (int h = 0; h < l.kv_heads && keep > 0; ++h) {
    ReadRows(layer, KvPart::kKey, block, h, 0, keep, rows.data() + int64_t{h} * keep * l.head_dim);
  }
  KVCC_ASSIGN_OR_RETURN(const BlockChannelWrite w, PlanBlockChannelWrite(layer, block, slot, sink));
  const int32_t lane = w.staging;
  for (int h = 0; h < l.kv_heads; ++h) {
    uint16_t* dst = stage_base + (int64_t{lane} * l.kv_heads + h) * head_rows;
    const float* src = rows.data() + int64_t{h} * keep * l.head_dim;
    for (int64_t j = 0; j < int64_t{w.reopen_rows} * l.head_dim; ++j) dst[j] = ir::FloatToHalf(src[j]);
  }
  for (int h = 0; h < l.kv_heads; ++h) {
    uint16_t* dst =
        stage_base + (int64_t{lane} * l.kv_heads + h) * head_rows + int64_t{slot} * l.head_dim;
    const float* src = k + int64_t{h} * l.head_dim;
    for (int j = 0; j < l.head_dim; ++j) dst[j] = ir::FloatToHalf(src[j]);
  }
  if (!w.seal) return absl::OkStatus();
  uint8_t* base = values_[Index(layer, KvPart::kKey)].data<uint8_t>();
  uint16_t* pbase = params_[Index(layer, KvPart::kKey)].data<uint16_t>();
  for (int h = 0; h < l.kv_heads; ++h) {
    EncodeKvBlockChannel(stage_base + (int64_t{lane} * l.kv_heads + h) * head_rows,
                         l.block_size, l.head_dim, base + l.RowOffset(KvPart::kKey, block, h, 0),
                         l.RowBytes(KvPart::kKey), pbase + l.ChannelParamIndex(block, h));
  }
  return absl::OkStatus();
}

void KvCache::ReadRow(int layer, KvPart part, int32_t block, int head, int slot,
                      float* out) const {
  ReadRows(layer, part, block, head, slot, 1, out);
}

void KvCache::ReadRows(int layer, KvPart part, int32_t block, int head, int slot, int count,
                       float* out) const {
  const KvCacheLayout& l = spec_.layout;
  if (part == KvPart::kKey && l.block_channel) {
    const int32_t lane = kivi_[layer].staging_of[block];
    if (lane >= 0) {
      ConvertHalfRow(staging_[layer].data<uint16_t>() +
                         ((int64_t{lane} * l.kv_heads + head) * l.block_size + slot) * l.head_dim,
                     out, int64_t{count} * l.head_dim);
      return;
    }
  }
  const uint8_t* rows = values(layer, part).data<uint8_t>() + l.RowOffset(part, block, head, slot);
  const uint16_t* pp = nullptr;
  if (part == KvPart::kKey && l.block_channel) {
    pp = params(layer, part).data<uint16_t>() + l.ChannelParamIndex(block, head);
  } else if (l.OnlineOf(part)) {
    pp = params(layer, part).data<uint16_t>() + l.ParamIndex(block, head, slot);
  }
  DecodeKvRows(spec_.schemes[layer], part, head, rows, l.RowBytes(part), pp, l.head_dim, count, out);
}

}  // namespace kvcc::runtime
