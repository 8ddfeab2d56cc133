#include "runtime/kv_cache.h"

#include <cstring>
#include <limits>

#include "absl/strings/str_cat.h"
#include "ir/op_names.h"
#include "ir/status_macros.h"

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
      if (st.dtype != l.DTypeOf(p) || st.online() != l.OnlineOf(p)) {
        return absl::InvalidArgumentError(absl::StrCat(
            "KV cache layer ", layer, " scheme stores ", part, " as ", ir::DTypeName(st.dtype),
            st.online() ? " (online)" : "", " but the layout stores ",
            ir::DTypeName(l.DTypeOf(p)), l.OnlineOf(p) ? " (online)" : ""));
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
      if (l.OnlineOf(p)) {
        KVCC_ASSIGN_OR_RETURN(auto params, allocate(l.num_blocks * l.BlockParamBytes(p)));
        cache->params_.push_back(std::move(params));
      } else {
        // Calibrated and unquantized schemes keep no per-token parameters: an empty tensor.
        cache->params_.push_back(
            Tensor::View(ir::DType::kU8, {0}, cache->values_.back().device(), nullptr, nullptr));
      }
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
  for (int part = 0; part < 2; ++part) {
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

void KvCache::ReadRow(int layer, KvPart part, int32_t block, int head, int slot,
                      float* out) const {
  const KvCacheLayout& l = spec_.layout;
  const uint8_t* row = values(layer, part).data<uint8_t>() + l.RowOffset(part, block, head, slot);
  const uint16_t* pp =
      l.OnlineOf(part) ? params(layer, part).data<uint16_t>() + l.ParamIndex(block, head, slot) : nullptr;
  DecodeKvRow(spec_.schemes[layer], part, head, row, pp, l.head_dim, out);
}

void KvCache::ReadRows(int layer, KvPart part, int32_t block, int head, int slot, int count,
                       float* out) const {
  const KvCacheLayout& l = spec_.layout;
  const uint8_t* rows = values(layer, part).data<uint8_t>() + l.RowOffset(part, block, head, slot);
  const uint16_t* pp =
      l.OnlineOf(part) ? params(layer, part).data<uint16_t>() + l.ParamIndex(block, head, slot) : nullptr;
  DecodeKvRows(spec_.schemes[layer], part, head, rows, l.RowBytes(part), pp, l.head_dim, count, out);
}

}  // namespace kvcc::runtime
