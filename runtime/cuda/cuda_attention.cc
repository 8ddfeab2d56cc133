#include "runtime/cuda/cuda_attention.h"

#include <algorithm>
#include <array>

#include "absl/strings/str_cat.h"
#include "codegen/decode_attention_tc.h"
#include "ir/status_macros.h"

namespace kvcc::runtime {
namespace {

absl::Status Cuda(cudaError_t err, absl::string_view what) {
  if (err == cudaSuccess) return absl::OkStatus();
  cudaGetLastError();  // clear the sticky-free error state for the next call
  return absl::InternalError(absl::StrCat("cuda attention: ", what, ": ", cudaGetErrorName(err),
                                          ": ", cudaGetErrorString(err)));
}

kernels::CacheReadView ReadView(const CudaKvLayer& layer) {
  return {static_cast<const uint8_t*>(layer.k), static_cast<const uint8_t*>(layer.v),
          layer.k_params, layer.v_params, layer.k_zp, layer.k_scale, layer.v_zp, layer.v_scale};
}

}  // namespace

void CudaAttentionConfig::SetStorage(const ir::KvCacheScheme& scheme) {
  cache_dtype = scheme.dtype;
  granularity = scheme.granularity;
  const ir::KvStorage v = scheme.Part(ir::KvPart::kValue);
  if (v != k()) {
    v_storage = v;
  } else {
    v_storage.reset();
  }
}

PackedKvParams PackKvParams(const ir::KvCacheScheme& s) {
  PackedKvParams p;
  const std::vector<float>* lists[] = {&s.k_zp, &s.k_scale, &s.v_zp, &s.v_scale};
  for (int i = 0; i < 4; ++i) {
    p.offset[i] = p.values.size();
    p.values.insert(p.values.end(), lists[i]->begin(), lists[i]->end());
  }
  p.offset[4] = p.values.size();
  return p;
}

absl::StatusOr<std::unique_ptr<CudaAttention>> CudaAttention::Create(
    const CudaAttentionConfig& config, codegen::KernelStore* cache) {
  absl::StatusOr<codegen::GpuTarget> target = codegen::DetectGpuTarget(config.device);
  if (!target.ok()) return target.status();
  KVCC_RETURN_IF_ERROR(Cuda(cudaSetDevice(config.device), "cudaSetDevice"));
  std::unique_ptr<CudaAttention> self(new CudaAttention(config));
  if (absl::Status s = Cuda(cudaDeviceGetAttribute(&self->sm_count_,
                                                   cudaDevAttrMultiProcessorCount, config.device),
                            "multiprocessor count");
      !s.ok()) {
    return s;
  }
  self->pdl_ = config.decode_pdl && target->arch >= 90;
  const std::array<codegen::KernelSpec, 4> specs = KernelSpecs(config, *target);
  KVCC_RETURN_IF_ERROR(Load(specs[0], cache, &self->decode_));
  KVCC_RETURN_IF_ERROR(Load(specs[1], cache, &self->merge_));
  KVCC_RETURN_IF_ERROR(Load(specs[2], cache, &self->prefill_));
  KVCC_RETURN_IF_ERROR(Load(specs[3], cache, &self->rotary_));
  int per_sm = 0;
  if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(
          &per_sm, reinterpret_cast<const void*>(self->decode_.fn.fn),
          self->decode_.built.rendered.spec.threads, self->decode_.shared_bytes) == cudaSuccess &&
      per_sm > 0) {
    self->decode_ctas_per_sm_ = per_sm;
  }
  cudaGetLastError();
  return self;
}

std::array<codegen::KernelSpec, 4> CudaAttention::KernelSpecs(const CudaAttentionConfig& config,
                                                              const codegen::GpuTarget& target) {
  codegen::KernelSpec spec;
  spec.head_dim = config.head_dim;
  spec.heads = config.heads;
  spec.kv_heads = config.kv_heads;
  spec.cache_dtype = config.cache_dtype;
  spec.granularity = config.granularity;
  spec.v_storage = config.v_storage;
  spec.block_size = config.block_size;
  spec.io_dtype = config.io_dtype;
  spec.arch = target.arch;
  spec.arch_specific = target.arch_specific;
  std::array<codegen::KernelSpec, 4> specs = {spec, spec, spec, spec};
  codegen::KernelSpec& decode = specs[0];
  decode.op = codegen::KernelOp::kDecodeAttention;
  decode.threads = config.decode_threads;
  decode.vec_bytes = config.decode_vec_bytes;
  decode.unroll = config.decode_unroll;
  decode.min_blocks = config.decode_min_blocks;
  decode.prefetch = config.decode_prefetch;
  decode.kv_tile = config.decode_kv_tile;
  codegen::SelectDecodeKernel(config.decode_tc, &decode);
  specs[1].op = codegen::KernelOp::kDecodeMerge;
  specs[2].op = codegen::KernelOp::kPrefillAttention;
  specs[2].threads = config.prefill_threads;
  specs[2].kv_tile = config.prefill_kv_tile;
  if (config.prefill_tensor_cores && codegen::PrefillTcSupported(specs[2])) {
    specs[2].op = codegen::KernelOp::kPrefillAttentionTc;
    specs[2].q_tile = config.prefill_q_tile;
  }
  specs[3].op = codegen::KernelOp::kRotaryCacheWrite;
  return specs;
}

template <typename P>
absl::Status CudaAttention::Load(const codegen::KernelSpec& spec, codegen::KernelStore* cache,
                                 Kernel<P>* k) {
  KVCC_ASSIGN_OR_RETURN(k->built, codegen::BuildKernel(spec, cache));
  const std::string& cubin = k->built.compiled.cubin;
  KVCC_RETURN_IF_ERROR(Cuda(cudaLibraryLoadData(&k->library, cubin.data(), nullptr, nullptr, 0,
                                                nullptr, nullptr, 0),
                            absl::StrCat("loading ", k->built.rendered.program_name)));
  k->fn.name = k->built.rendered.kernel_name;
  KVCC_RETURN_IF_ERROR(Cuda(cudaLibraryGetKernel(&k->fn.fn, k->library, k->fn.name.c_str()),
                            absl::StrCat("kernel ", k->fn.name)));
  k->shared_bytes = codegen::DynamicSharedBytes(k->built.rendered.spec);
  if (k->shared_bytes <= 48 * 1024) return absl::OkStatus();
  int device = 0;
  KVCC_RETURN_IF_ERROR(Cuda(cudaGetDevice(&device), "cudaGetDevice"));
  return Cuda(cudaKernelSetAttributeForDevice(k->fn.fn, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                              k->shared_bytes, device),
              absl::StrCat(k->fn.name, ": ", k->shared_bytes, " bytes of shared memory"));
}

CudaAttention::~CudaAttention() {
  for (cudaLibrary_t lib : {decode_.library, merge_.library, prefill_.library, rotary_.library}) {
    if (lib != nullptr) cudaLibraryUnload(lib);
  }
}

absl::StatusOr<cudaFuncAttributes> CudaAttention::DecodeAttributes() const {
  cudaFuncAttributes attr;
  if (absl::Status s = Cuda(cudaFuncGetAttributes(
                                &attr, reinterpret_cast<const void*>(decode_.fn.fn)),
                            "cudaFuncGetAttributes");
      !s.ok()) {
    return s;
  }
  return attr;
}

int CudaAttention::DecodeSplits(int batch, int max_seq_len) const {
  // Split only as far as needed to fill one wave of resident CTAs: on the H100 one split was
  // the fastest at batch 64 with 32 (2048 CTAs) and with 8 kv heads (512 CTAs, one wave at 4
  // CTAs/SM), while at batch 4 eight splits beat one by 20% (docs/performance.md). Each split
  // adds partial writes and a merge; no split shorter than 256 tokens.
  for (const DecodeSplitBucket& b : config_.decode_splits) {
    if (batch <= b.max_batch && max_seq_len <= b.max_context) return std::max(1, b.splits);
  }
  const int64_t ctas = int64_t{std::max(batch, 1)} * config_.kv_heads;
  const int64_t want = int64_t{sm_count_} * decode_ctas_per_sm_;
  if (decode_.built.rendered.spec.op == codegen::KernelOp::kDecodeAttentionTc) {
    return codegen::DecodeTcSplits(ctas, sm_count_, want, max_seq_len);
  }
  int splits = static_cast<int>(std::max<int64_t>(1, (want + ctas - 1) / ctas));
  splits = std::min(splits, std::max(1, max_seq_len / 256));
  return splits;
}

size_t CudaAttention::DecodeWorkspaceBytes(int batch, int splits) const {
  if (splits <= 1) return 0;
  return size_t(batch) * config_.heads * splits * (config_.head_dim + 2) * sizeof(float);
}

absl::Status CudaAttention::CheckLayer(const CudaKvLayer& layer) const {
  if (layer.k == nullptr || layer.v == nullptr) {
    return absl::InvalidArgumentError("cuda attention: the layer's K or V cache pointer is null");
  }
  if ((config_.k().online() && layer.k_params == nullptr) ||
      (config_.v().online() && layer.v_params == nullptr)) {
    return absl::InvalidArgumentError(
        "cuda attention: an online part needs its per-token (scale, zero) array");
  }
  if ((config_.k().calibrated() && (layer.k_zp == nullptr || layer.k_scale == nullptr)) ||
      (config_.v().calibrated() && (layer.v_zp == nullptr || layer.v_scale == nullptr))) {
    return absl::InvalidArgumentError(
        "cuda attention: a calibrated part needs its zp and scale arrays (k_zp/k_scale, "
        "v_zp/v_scale)");
  }
  return absl::OkStatus();
}

template <typename P>
absl::Status CudaAttention::Launch(const Kernel<P>& k, dim3 grid, const P& params,
                                   cudaStream_t stream, bool programmatic) {
  const dim3 block(k.built.rendered.spec.threads);
  KVCC_RETURN_IF_ERROR(
      Cuda(k.fn.Launch(grid, block, params, stream, k.shared_bytes, programmatic),
           absl::StrCat("launching ", k.fn.name, programmatic ? " (programmatic)" : "")));
  return Cuda(cudaGetLastError(), absl::StrCat("after ", k.fn.name));
}

absl::Status CudaAttention::Decode(const CudaKvLayer& layer, const DecodeArgs& a,
                                   cudaStream_t stream) {
  KVCC_RETURN_IF_ERROR(CheckLayer(layer));
  if (a.q == nullptr || a.out == nullptr || a.block_tables == nullptr || a.seq_lens == nullptr) {
    return absl::InvalidArgumentError("cuda attention decode: q, out, block_tables and seq_lens "
                                      "must be device pointers");
  }
  if (a.batch <= 0 || a.max_seq_len <= 0 || a.max_blocks_per_seq <= 0 ||
      int64_t{a.max_blocks_per_seq} * config_.block_size < a.max_seq_len) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cuda attention decode: batch ", a.batch, ", max_seq_len ", a.max_seq_len,
        " and max_blocks_per_seq ", a.max_blocks_per_seq, " (block size ", config_.block_size,
        ") must be positive and the table must cover max_seq_len"));
  }
  int splits = a.splits > 0 ? a.splits : DecodeSplits(a.batch, a.max_seq_len);
  int tokens_per_split = (a.max_seq_len + splits - 1) / splits;
  tokens_per_split = (tokens_per_split + 31) / 32 * 32;
  splits = (a.max_seq_len + tokens_per_split - 1) / tokens_per_split;
  if (splits > 65535) return absl::InvalidArgumentError("cuda attention decode: too many splits");
  float* partial_out = nullptr;
  float* partial_ml = nullptr;
  if (splits > 1) {
    const size_t need = DecodeWorkspaceBytes(a.batch, splits);
    if (a.workspace == nullptr || a.workspace_bytes < need) {
      return absl::InvalidArgumentError(
          absl::StrCat("cuda attention decode: ", splits, " splits need a workspace of ", need,
                       " bytes, got ", a.workspace_bytes));
    }
    partial_out = static_cast<float*>(a.workspace);
    partial_ml = partial_out + size_t(a.batch) * config_.heads * splits * config_.head_dim;
  }
  kernels::DecodeAttentionParams p{};
  p.q = a.q;
  p.cache = ReadView(layer);
  p.block_tables = a.block_tables;
  p.seq_lens = a.seq_lens;
  p.out = a.out;
  p.partial_out = partial_out;
  p.partial_ml = partial_ml;
  p.max_blocks = a.max_blocks_per_seq;
  p.softmax_scale = a.scale;
  p.tokens_per_split = tokens_per_split;
  KVCC_RETURN_IF_ERROR(Launch(decode_, dim3(config_.kv_heads, a.batch, splits), p, stream));
  if (splits == 1) return absl::OkStatus();
  kernels::DecodeMergeParams m{};
  m.partial_out = partial_out;
  m.partial_ml = partial_ml;
  m.out = a.out;
  m.splits = splits;
  return LaunchMerge(dim3(config_.heads, a.batch), m, stream);
}

absl::Status CudaAttention::LaunchMerge(dim3 grid, const kernels::DecodeMergeParams& params,
                                        cudaStream_t stream) {
  return Launch(merge_, grid, params, stream, pdl_);
}

absl::Status CudaAttention::Prefill(const CudaKvLayer& layer, const PrefillArgs& a,
                                    cudaStream_t stream) {
  KVCC_RETURN_IF_ERROR(CheckLayer(layer));
  if (a.q == nullptr || a.out == nullptr || a.block_tables == nullptr || a.seq_lens == nullptr ||
      a.q_start == nullptr) {
    return absl::InvalidArgumentError("cuda attention prefill: q, out, block_tables, seq_lens "
                                      "and q_start must be device pointers");
  }
  if (a.batch <= 0 || a.max_q_len <= 0 || a.max_blocks_per_seq <= 0 || a.batch > 65535) {
    return absl::InvalidArgumentError(
        absl::StrCat("cuda attention prefill: batch ", a.batch, " and max_q_len ", a.max_q_len,
                     " must be positive"));
  }
  const int q_tile = prefill_.built.rendered.spec.q_tile;
  kernels::PrefillAttentionParams p{};
  p.q = a.q;
  p.cache = ReadView(layer);
  p.block_tables = a.block_tables;
  p.seq_lens = a.seq_lens;
  p.q_start = a.q_start;
  p.out = a.out;
  p.max_blocks = a.max_blocks_per_seq;
  p.softmax_scale = a.scale;
  return Launch(prefill_, dim3((a.max_q_len + q_tile - 1) / q_tile, config_.heads, a.batch), p,
                stream);
}

absl::Status CudaAttention::RotaryCacheWrite(const CudaKvLayer& layer, const RotaryWriteArgs& a,
                                             cudaStream_t stream) {
  KVCC_RETURN_IF_ERROR(CheckLayer(layer));
  if (a.k == nullptr || a.v == nullptr || a.positions == nullptr || a.slot_mapping == nullptr ||
      a.inv_freq == nullptr) {
    return absl::InvalidArgumentError("cuda attention rotary write: k, v, positions, "
                                      "slot_mapping and inv_freq must be device pointers");
  }
  if (a.num_tokens <= 0) return absl::OkStatus();
  const int rows = 2 * config_.kv_heads + (a.q != nullptr ? config_.heads : 0);
  const int warps = rotary_.built.rendered.spec.threads / 32;
  kernels::RotaryCacheWriteParams p{};
  p.k = a.k;
  p.v = a.v;
  p.q = a.q;
  p.positions = a.positions;
  p.slot_mapping = a.slot_mapping;
  p.inv_freq = a.inv_freq;
  p.k_cache = static_cast<uint8_t*>(layer.k);
  p.v_cache = static_cast<uint8_t*>(layer.v);
  p.k_params = layer.k_params;
  p.v_params = layer.v_params;
  p.k_zp = layer.k_zp;
  p.k_scale = layer.k_scale;
  p.v_zp = layer.v_zp;
  p.v_scale = layer.v_scale;
  p.k_stride = a.k_stride;
  p.v_stride = a.v_stride;
  p.q_stride = a.q_stride;
  p.num_tokens = a.num_tokens;
  return Launch(rotary_, dim3(a.num_tokens, (rows + warps - 1) / warps), p, stream);
}

}  // namespace kvcc::runtime
