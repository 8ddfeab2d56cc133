#include "runtime/cuda/cuda_backend.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "codegen/kernel_cache.h"
#include "codegen/ops_kernels.h"
#include "ir/startup_marks.h"
#include "ir/status_macros.h"
#include "runtime/cuda/cuda_memory.h"
#include "runtime/cuda/cublaslt_library.h"
#include "runtime/cuda/decode_graph.h"
#include "runtime/cuda/gemv_choice.h"
#include "runtime/cuda/device_block_cache.h"
#include "runtime/cuda/weight_uploader.h"
#include "runtime/decode_graphs.h"
#include "runtime/op_operands.h"

namespace kvcc::runtime {
namespace {

using ir::DType;

// The index of a weight dtype in the OpsKernels tables, and its entry-point suffix.
constexpr DType kWeightDTypes[] = {DType::kF32, DType::kF16, DType::kBF16};
constexpr const char* kWeightSuffixes[] = {"f32", "f16", "bf16"};
int WeightSlot(DType d) { return d == DType::kF16 ? 1 : d == DType::kBF16 ? 2 : 0; }
// The index of an activation dtype (f32, f16) in the OpsKernels tables.
int ActSlot(DType d) { return d == DType::kF16 ? 1 : 0; }
// A device pointer `elements` activations of `t` past its start.
const void* Offset(const Tensor& t, int64_t elements) {
  return t.data<uint8_t>() + elements * ir::DTypeBytes(t.dtype(), 1);
}

// 256-byte alignment for every sub-allocation of the KV cache pool.
int64_t AlignUp(int64_t n) { return (n + 255) / 256 * 256; }

// Freed op results the backend keeps for reuse (beyond that they go back to the pool).
constexpr int64_t kMaxIdleBytes = int64_t{256} << 20;

}  // namespace

absl::StatusOr<std::unique_ptr<CudaBackend>> CudaBackend::Create(int device,
                                                                 CudaKernelSource kernels) {
  KVCC_ASSIGN_OR_RETURN(auto ctx, CudaContext::Create(device));
  // Only with a GPU: a process that exits while (or after) cuBLASLt loads without one can
  // crash in the library's exit handlers. OpenModel starts it earlier, once a GPU is known.
  PreloadCublasLt();
  std::unique_ptr<CudaBackend> b(new CudaBackend());
  b->ctx_ = std::move(ctx);
  b->kernels_ = SourceForDevice(std::move(kernels), b->ctx_->device_name());
  if (b->kernels_.store == nullptr) {
    b->kernels_.store = std::make_shared<codegen::KernelCache>(codegen::KernelCache::DefaultDir());
  }
  KVCC_ASSIGN_OR_RETURN(auto gemm, CublasLtGemm::Create(b->ctx_));
  b->gemm_ = std::move(gemm);
  if (b->kernels_.tuning != nullptr) {
    b->gemm_->SetTuning(b->kernels_.tuning->gemm, b->kernels_.tuning->cublaslt_version);
    const auto& variants = codegen::GemvVariants();
    for (const GemmTuning& g : b->kernels_.tuning->gemm) {
      if (!g.gemv_timed) continue;
      int v = -1;
      for (int i = 0; i < static_cast<int>(variants.size()); ++i) {
        if (variants[i].Suffix() == g.gemv) v = i;
      }
      if (v < 0 && !g.gemv.empty()) {
        // A variant this build does not have: the rule decides the shape.
        std::fprintf(stderr, "kvcc: warning: tuning names GEMV variant '%s', which this build "
                     "lacks; using the built-in rule\n", g.gemv.c_str());
        continue;
      }
      b->tuned_gemv_[std::make_tuple(g.m, g.n, g.k, static_cast<int>(g.dtype))] = v;
    }
  }
  ir::StartupMark("gemm");
  KVCC_RETURN_IF_ERROR(b->LoadKernels());
  ir::StartupMark("kernels");
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device) == cudaSuccess &&
      sms > 0) {
    b->max_blocks_ = sms * 8;
  }
  b->blocks_ = DeviceBlockCache::Create(b->ctx_, kMaxIdleBytes);
  const char* graphs = std::getenv("KVCC_CUDA_GRAPHS");
  b->graphs_enabled_ = graphs == nullptr || std::string(graphs) != "0";
  // Programmatic dependent launch of the ops kernels on sm_90+ (KVCC_PDL=0 turns it off): on the
  // H200 it gave the same logits and a 1-4% faster decode step (docs/performance.md).
  const char* pdl = std::getenv("KVCC_PDL");
  b->pdl_ = b->ctx_->target().arch >= 90 && (pdl == nullptr || std::string(pdl) != "0");
  if (const char* l2 = std::getenv("KVCC_GEMV_L2"); l2 != nullptr) {
    b->gemv_l2_prefetch_ = std::max(0, std::atoi(l2));
  }
  // KVCC_GEMV=0: every linear through cuBLASLt (the benches' A/B of the decode GEMV).
  if (const char* gemv = std::getenv("KVCC_GEMV"); gemv != nullptr && std::string(gemv) == "0") {
    b->gemv_choice_ = kGemvOff;
  }
  // Mapped pinned memory: the embedding kernel writes a bad id straight into host memory, so
  // the step never waits to learn whether its ids were good; the next sync reports it.
  void* flag = nullptr;
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaHostAlloc(&flag, 4 * sizeof(int), cudaHostAllocMapped),
                                 "cudaHostAlloc(embedding error flag)"));
  b->error_flag_ = static_cast<int*>(flag);
  std::memset(flag, 0, 4 * sizeof(int));
  return b;
}

CudaBackend::~CudaBackend() {
  if (ctx_ != nullptr) ctx_->Synchronize().IgnoreError();
  graphs_.reset();
  if (error_flag_ != nullptr) cudaFreeHost(error_flag_);
}

absl::Status CudaBackend::CheckDeferredErrors() {
  volatile int* flag = error_flag_;
  if (flag == nullptr || flag[0] == 0) return absl::OkStatus();
  const int index = flag[1], id = flag[2], vocab = flag[3];
  flag[0] = 0;
  return absl::OutOfRangeError(absl::StrCat("embedding: token id ", id, " at index ", index,
                                            " is outside the vocabulary of ", vocab));
}

absl::Status CudaBackend::Synchronize() {
  KVCC_RETURN_IF_ERROR(ctx_->Synchronize());
  return CheckDeferredErrors();
}

DecodeGraphs* CudaBackend::decode_graphs() {
  if (!graphs_enabled_) return nullptr;
  if (graphs_ == nullptr) graphs_ = std::make_unique<CudaDecodeGraphs>(this);
  return graphs_.get();
}

void CudaBackend::BindDecode(const BoundDecode* inputs, std::shared_ptr<DeviceBlockCache> pool) {
  if (inputs != nullptr && bound_ == nullptr) {
    eager_blocks_ = blocks_;
    blocks_ = std::move(pool);
  } else if (inputs == nullptr && bound_ != nullptr) {
    blocks_ = std::move(eager_blocks_);
  }
  bound_ = inputs;
}

absl::StatusOr<Tensor> CudaBackend::UploadStep(const Tensor& host) {
  KVCC_RETURN_IF_ERROR(CheckResident(host, Device::kCpu, "upload"));
  if (host.raw() == nullptr && host.NumElements() != 0) {
    return absl::InvalidArgumentError("cuda backend: host tensor has no data");
  }
  KVCC_ASSIGN_OR_RETURN(auto dev, blocks_->Allocate(host.dtype(), host.shape(), false));
  if (host.NumBytes() > 0) {
    KVCC_RETURN_IF_ERROR(CudaCheck(cudaMemcpyAsync(dev.raw(), host.raw(), host.NumBytes(),
                                                   cudaMemcpyHostToDevice, ctx_->stream()),
                                   absl::StrCat("copying ", host.ToString(), " to the device")));
  }
  return dev;
}

absl::Status CudaBackend::LoadKernels() {
  KVCC_ASSIGN_OR_RETURN(
      codegen::BuiltOpsKernels built,
      codegen::BuildOpsKernels(OpsKernelSpecFor(ctx_->target()), kernels_.store.get()));
  ir::StartupMark("ops_cubin");
  KVCC_ASSIGN_OR_RETURN(cudaLibrary_t library, ctx_->LoadLibrary(built.compiled.cubin));
  auto resolve = [&](auto* kernel, const std::string& name) -> absl::Status {
    KVCC_ASSIGN_OR_RETURN(kernel->fn, ctx_->GetKernel(library, name));
    kernel->name = name;
    return absl::OkStatus();
  };
  KVCC_RETURN_IF_ERROR(resolve(&ops_.read_probe, "kvcc_read_probe"));
  ir::StartupMark("ops_library");
  for (int w = 0; w < kWeightSlots; ++w) {
    const std::string suffix = kWeightSuffixes[w];
    if (kWeightDTypes[w] != DType::kF32) {
      KVCC_RETURN_IF_ERROR(resolve(&ops_.cast_from_f32[w], "kvcc_cast_f32_" + suffix));
      KVCC_RETURN_IF_ERROR(resolve(&ops_.cast_to_f32[w], "kvcc_cast_" + suffix + "_f32"));
    }
    KVCC_RETURN_IF_ERROR(resolve(&ops_.embedding[w], "kvcc_embedding_" + suffix));
    KVCC_RETURN_IF_ERROR(resolve(&ops_.fill_normal[w], "kvcc_fill_normal_" + suffix));
    for (int a = 0; a < 2; ++a) {
      const std::string h = a == 1 ? "_h" : "";
      KVCC_RETURN_IF_ERROR(resolve(&ops_.add_bias[w][a], "kvcc_add_bias_" + suffix + h));
      KVCC_RETURN_IF_ERROR(resolve(&ops_.rms_norm[w][a], "kvcc_rms_norm_" + suffix + h));
    }
    const char* norm_variants[] = {"", "_h", "_sh"};
    for (int v = 0; v < 3; ++v) {
      KVCC_RETURN_IF_ERROR(resolve(&ops_.add_rms_norm[w][v],
                                   "kvcc_add_rms_norm_" + suffix + norm_variants[v]));
    }
  }
  const char* add_variants[2][2] = {{"", "_sh"}, {"_hs", "_hh"}};
  for (int a = 0; a < 2; ++a) {
    for (int b = 0; b < 2; ++b) {
      KVCC_RETURN_IF_ERROR(
          resolve(&ops_.add[a][b], absl::StrCat("kvcc_add", add_variants[a][b])));
    }
    const std::string f16 = a == 1 ? "_f16" : "";
    KVCC_RETURN_IF_ERROR(resolve(&ops_.silu_mul[a], "kvcc_silu_mul" + f16));
    KVCC_RETURN_IF_ERROR(resolve(&ops_.gather_rows[a], "kvcc_gather_rows" + f16));
    KVCC_RETURN_IF_ERROR(resolve(&ops_.rotary[a], "kvcc_rotary" + f16));
  }
  KVCC_RETURN_IF_ERROR(resolve(&ops_.cast_f16_bf16, "kvcc_cast_f16_bf16"));
  KVCC_RETURN_IF_ERROR(resolve(&ops_.cast_bf16_f16, "kvcc_cast_bf16_f16"));
  KVCC_RETURN_IF_ERROR(resolve(&ops_.sample, "kvcc_sample"));
  KVCC_RETURN_IF_ERROR(resolve(&ops_.target_nll, "kvcc_target_nll"));
  KVCC_RETURN_IF_ERROR(resolve(&ops_.column_ranges, "kvcc_column_ranges"));
  for (int w = 0; w < 2; ++w) {
    for (const codegen::GemvVariant& v : codegen::GemvVariants()) {
      ops_.gemv[w].emplace_back();
      KVCC_RETURN_IF_ERROR(resolve(&ops_.gemv[w].back(), absl::StrCat("kvcc_gemv_",
                                                                      w == 0 ? "f16" : "bf16",
                                                                      "_", v.Suffix())));
    }
  }
  return absl::OkStatus();
}

template <typename P>
absl::Status CudaBackend::LaunchOps(const TypedKernel<P>& kernel, dim3 grid, dim3 block,
                                    const P& params, bool dependent) {
  if (kernel.fn == nullptr) return absl::InternalError("cuda backend: ops kernel not loaded");
  if (grid.x == 0 || grid.y == 0 || grid.z == 0) return absl::OkStatus();
  return CudaCheck(kernel.Launch(grid, block, params, ctx_->stream(), 0, dependent && pdl_),
                   absl::StrCat("launching ", kernel.name, dependent && pdl_ ? " (programmatic)"
                                                                              : ""));
}

template <typename P>
absl::Status CudaBackend::LaunchGrid(const TypedKernel<P>& kernel, dim3 grid, const P& params,
                                     bool dependent) {
  return LaunchOps(kernel, grid, dim3(threads_), params, dependent);
}

template <typename P>
absl::Status CudaBackend::LaunchFlat(const TypedKernel<P>& kernel, int64_t work,
                                     const P& params, bool dependent) {
  if (work <= 0) return absl::OkStatus();
  const int64_t blocks = std::min<int64_t>((work + threads_ - 1) / threads_, max_blocks_);
  return LaunchGrid(kernel, dim3(static_cast<unsigned>(blocks)), params, dependent);
}

void CudaBackend::DropDecodeGraphs() {
  if (graphs_ == nullptr) return;
  ctx_->Synchronize().IgnoreError();
  graphs_.reset();
}

void CudaBackend::set_programmatic_launch(bool on) {
  on = on && ctx_->target().arch >= 90;
  if (on == pdl_) return;
  DropDecodeGraphs();
  pdl_ = on;
}

void CudaBackend::set_gemv_l2_prefetch(int chunks) {
  chunks = std::max(chunks, 0);
  if (chunks == gemv_l2_prefetch_) return;
  DropDecodeGraphs();
  gemv_l2_prefetch_ = chunks;
}

// --- memory ---

absl::StatusOr<Tensor> CudaBackend::Allocate(DType dtype, std::vector<int64_t> shape) {
  return blocks_->Allocate(dtype, std::move(shape), true);
}

// Weights whose upload is kept per host buffer: the activation dtypes and 4-bit codes.
static bool IsUploadedWeight(DType d) { return IsWeightDType(d) || d == DType::kI4; }
// ... and, among a model's weights, the i32 words of packed 4-bit linears (FromHost does not
// keep i32 uploads: token ids are i32 too).
static bool IsKeptModelWeight(DType d) { return IsUploadedWeight(d) || d == DType::kI32; }

absl::StatusOr<Tensor> CudaBackend::FromHost(const Tensor& host) {
  if (host.device() == Device::kCuda) return host;
  const bool cacheable = IsUploadedWeight(host.dtype()) && host.owner() != nullptr;
  const auto key = std::make_tuple(static_cast<const void*>(host.raw()),
                                   static_cast<int>(host.dtype()), host.NumBytes());
  if (cacheable) {
    auto it = uploads_.find(key);
    if (it != uploads_.end() && it->second.device.shape() == host.shape()) {
      return it->second.device;
    }
  }
  KVCC_ASSIGN_OR_RETURN(auto dev, UploadStep(host));
  if (cacheable) {
    uploads_[key] = Upload{host.owner(), dev};
    weight_bytes_ += dev.NumBytes();
  }
  return dev;
}

absl::StatusOr<std::vector<Tensor>> CudaBackend::FromHostWeights(
    const std::vector<Tensor>& hosts, const std::vector<std::string>& names,
    ir::WeightsChunkDigests* unverified) {
  std::vector<Tensor> out(hosts.size());
  std::vector<size_t> fresh;
  std::vector<WeightUploadItem> items;
  for (size_t i = 0; i < hosts.size(); ++i) {
    const Tensor& h = hosts[i];
    const bool cacheable = IsKeptModelWeight(h.dtype()) && h.owner() != nullptr;
    auto it = uploads_.find(std::make_tuple(static_cast<const void*>(h.raw()),
                                            static_cast<int>(h.dtype()), h.NumBytes()));
    if (cacheable && it != uploads_.end() && it->second.device.shape() == h.shape()) {
      out[i] = it->second.device;
      continue;
    }
    if (h.device() == Device::kCuda) {
      out[i] = h;
      continue;
    }
    fresh.push_back(i);
    items.push_back({names[i], h.raw(), h.NumBytes()});
  }
  const WeightUploadOptions options = WeightUploadOptions::FromEnvironment();
  KVCC_ASSIGN_OR_RETURN(UploadedWeights up,
                        UploadWeights(ctx_, items, options,
                                      unverified != nullptr && !unverified->verified()
                                          ? unverified
                                          : nullptr));
  ir::StartupMark("weights", absl::StrCat("bytes=", up.bytes, " tensors=", items.size(),
                                          " seconds=", up.seconds, " readers=", options.readers,
                                          " verified=", up.verified ? 1 : 0,
                                          " prepinned=", up.prepinned ? 1 : 0));
  for (size_t j = 0; j < fresh.size(); ++j) {
    const Tensor& h = hosts[fresh[j]];
    out[fresh[j]] = DeviceView(up.buffer, up.offsets[j], h.dtype(), h.shape());
    if (IsKeptModelWeight(h.dtype()) && h.owner() != nullptr) {
      KVCC_RETURN_IF_ERROR(AdoptWeight(h, out[fresh[j]]));
    } else {
      weight_bytes_ += h.NumBytes();
    }
  }
  return out;
}

absl::Status CudaBackend::AdoptWeight(const Tensor& host, const Tensor& device) {
  KVCC_RETURN_IF_ERROR(CheckResident(device, Device::kCuda, "adopted weight"));
  if (!IsKeptModelWeight(host.dtype()) || host.dtype() != device.dtype() ||
      host.shape() != device.shape()) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: cannot adopt ",
                                                   device.ToString(), " as the upload of ",
                                                   host.ToString()));
  }
  const auto key = std::make_tuple(static_cast<const void*>(host.raw()),
                                   static_cast<int>(host.dtype()), host.NumBytes());
  uploads_[key] = Upload{host.owner(), device};
  weight_bytes_ += device.NumBytes();
  return absl::OkStatus();
}

absl::StatusOr<Tensor> CudaBackend::ToHost(const Tensor& t) {
  KVCC_ASSIGN_OR_RETURN(auto host, CopyToHost(ctx_, t));
  KVCC_RETURN_IF_ERROR(CheckDeferredErrors());
  return host;
}

absl::StatusOr<std::unique_ptr<KvCache>> CudaBackend::CreateKvCache(const KvCacheSpec& spec) {
  const KvCacheLayout& l = spec.layout;
  if (l.num_blocks <= 0 || l.num_layers <= 0) {
    // KvCache::Create explains what is wrong with the layout.
    return KvCache::Create(spec, [](int64_t) -> absl::StatusOr<Tensor> {
      return absl::InvalidArgumentError("invalid KV cache layout");
    });
  }
  // One allocation for the whole pool; KvCache::Create asks for each layer's K and V (and
  // their params, and a block_channel K's staging) in turn and gets consecutive aligned pieces.
  int64_t per_layer = 0;
  for (KvPart p : {KvPart::kKey, KvPart::kValue}) {
    per_layer += AlignUp(l.num_blocks * l.BlockBytes(p));
    if (l.HasParams(p)) per_layer += AlignUp(l.num_blocks * l.BlockParamBytes(p));
  }
  if (l.block_channel) per_layer += AlignUp(l.staging_blocks * l.StagingBlockBytes());
  const int64_t total = l.num_layers * per_layer;
  auto pool = AllocateDeviceBuffer(ctx_, total);
  if (!pool.ok()) {
    return absl::Status(pool.status().code(),
                        absl::StrCat("KV cache pool of ", l.num_blocks, " blocks x ",
                                     l.block_size, " tokens (", total >> 20, " MiB): ",
                                     pool.status().message()));
  }
  Tensor base = *pool;
  int64_t offset = 0;
  auto cache = KvCache::Create(spec, [&](int64_t bytes) -> absl::StatusOr<Tensor> {
    const int64_t take = AlignUp(bytes);
    if (offset + take > total) {
      return absl::InternalError("KV cache pool is smaller than the layout asks for");
    }
    Tensor t = DeviceView(base, offset, DType::kU8, {bytes});
    offset += take;
    return t;
  });
  if (!cache.ok() || !l.block_channel) return cache;
  const int64_t map_bytes = int64_t{l.num_layers} * l.num_blocks * 4;
  KVCC_ASSIGN_OR_RETURN(Tensor maps,
                        AllocateDeviceBuffer(ctx_, map_bytes, "the int4-kivi staging maps"));
  KVCC_RETURN_IF_ERROR(CudaCheck(cudaMemsetAsync(maps.raw(), 0xFF, map_bytes, ctx_->stream()),
                                 "clearing the int4-kivi staging maps"));
  kivi_maps_[cache->get()] = maps;
  return cache;
}

absl::StatusOr<Tensor> CudaBackend::Cast(const Tensor& t, DType dtype) {
  KVCC_RETURN_IF_ERROR(CheckResident(t, Device::kCuda, "cast input"));
  if (!IsWeightDType(t.dtype()) || !IsWeightDType(dtype)) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: cannot cast ", t.ToString(),
                                                   " to ", ir::DTypeName(dtype)));
  }
  if (t.dtype() == dtype) return t;
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(dtype, t.shape(), false));
  const int64_t n = t.NumElements();
  const TypedKernel<kernels::CastParams>& k =
      t.dtype() == DType::kF32 ? ops_.cast_from_f32[WeightSlot(dtype)]
      : dtype == DType::kF32   ? ops_.cast_to_f32[WeightSlot(t.dtype())]
      : t.dtype() == DType::kF16 ? ops_.cast_f16_bf16
                                 : ops_.cast_bf16_f16;
  KVCC_RETURN_IF_ERROR(LaunchFlat(k, n, kernels::CastParams{t.raw(), out.raw(), n}));
  return out;
}

absl::Status CudaBackend::FillNormal(const Tensor& t, uint64_t seed, float mean, float stddev) {
  KVCC_RETURN_IF_ERROR(CheckResident(t, Device::kCuda, "random fill target"));
  if (!IsWeightDType(t.dtype())) {
    return absl::InvalidArgumentError(absl::StrCat("cuda backend: cannot fill ", t.ToString(),
                                                   " with normal values"));
  }
  const int64_t n = t.NumElements();
  return LaunchFlat(ops_.fill_normal[WeightSlot(t.dtype())], n,
                    kernels::FillNormalParams{t.raw(), n, seed, mean, stddev});
}

absl::Status CudaBackend::ReadAll(const Tensor& t) {
  KVCC_RETURN_IF_ERROR(CheckResident(t, Device::kCuda, "probe buffer"));
  if (t.NumBytes() % 16 != 0 || reinterpret_cast<uintptr_t>(t.raw()) % 16 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("read probe: ", t.ToString(),
                                                   " is not whole aligned 16-byte words"));
  }
  KVCC_ASSIGN_OR_RETURN(auto sink, blocks_->Allocate(DType::kU8, {8}, true));
  const int64_t words = t.NumBytes() / 16;
  // An ordinary launch: the probe's reads must not overlap the kernels before it.
  return LaunchFlat(ops_.read_probe, words,
                    kernels::ReadProbeParams{t.raw(), reinterpret_cast<unsigned long long*>(
                                                          sink.raw()),
                                             words},
                    false);
}

// --- ops ---

absl::StatusOr<Tensor> CudaBackend::Embedding(const Tensor& ids, const Tensor& table) {
  KVCC_RETURN_IF_ERROR(CheckEmbeddingOperands(ids, table, Device::kCuda));
  const int tokens = static_cast<int>(ids.dim(0));
  const int vocab = static_cast<int>(table.dim(0)), hidden = static_cast<int>(table.dim(1));
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(DType::kF32, {tokens, hidden}, false));
  if (tokens == 0) return out;
  const unsigned col_blocks = static_cast<unsigned>((hidden + threads_ - 1) / threads_);
  // A bad id is reported at the next sync (ToHost, Synchronize, sampling): the executor checks
  // ids on the host before it uploads them, so this is only a backstop for direct callers.
  KVCC_RETURN_IF_ERROR(
      LaunchGrid(ops_.embedding[WeightSlot(table.dtype())],
                 dim3(col_blocks, static_cast<unsigned>(std::min(tokens, 65535))),
                 kernels::EmbeddingParams{ids.data<int32_t>(), table.raw(), out.data<float>(),
                                          error_flag_, tokens, hidden, vocab},
                 false));
  return out;
}

absl::StatusOr<Tensor> CudaBackend::RmsNorm(const Tensor& x, const Tensor& weight, float eps) {
  KVCC_RETURN_IF_ERROR(CheckRmsNormOperands(x, weight, Device::kCuda));
  const int64_t tokens = x.dim(0), n = x.dim(1);
  KVCC_ASSIGN_OR_RETURN(auto x32, Cast(x, DType::kF32));  // the residual stream is f32
  const DType od = activation_dtype();
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(od, {tokens, n}, false));
  if (tokens == 0) return out;
  KVCC_RETURN_IF_ERROR(LaunchGrid(ops_.rms_norm[WeightSlot(weight.dtype())][ActSlot(od)],
                                  dim3(static_cast<unsigned>(tokens)),
                                  kernels::RmsNormParams{x32.data<float>(), weight.raw(),
                                                         out.raw(), static_cast<int>(n), eps}));
  return out;
}

absl::StatusOr<std::vector<Tensor>> CudaBackend::AddRmsNorm(const Tensor& x,
                                                            const Tensor& residual,
                                                            const Tensor& weight, float eps) {
  KVCC_RETURN_IF_ERROR(CheckAddRmsNormOperands(x, residual, weight, Device::kCuda));
  const int64_t tokens = x.dim(0), n = x.dim(1);
  const DType od = activation_dtype();
  KVCC_ASSIGN_OR_RETURN(auto res32, Cast(residual, DType::kF32));
  // f32 output: f32 x; f16 output: x as it is (f16, or f32 from an f32-only op).
  KVCC_ASSIGN_OR_RETURN(auto xin,
                        od == DType::kF32 ? Cast(x, DType::kF32) : absl::StatusOr<Tensor>(x));
  const int variant = od == DType::kF32 ? 0 : xin.dtype() == DType::kF16 ? 1 : 2;
  KVCC_ASSIGN_OR_RETURN(auto sum, blocks_->Allocate(DType::kF32, {tokens, n}, false));
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(od, {tokens, n}, false));
  if (tokens > 0) {
    KVCC_RETURN_IF_ERROR(LaunchGrid(
        ops_.add_rms_norm[WeightSlot(weight.dtype())][variant],
        dim3(static_cast<unsigned>(tokens)),
        kernels::AddRmsNormParams{xin.raw(), res32.data<float>(), weight.raw(),
                                  sum.data<float>(), out.raw(), static_cast<int>(n), eps}));
  }
  return std::vector<Tensor>{std::move(sum), std::move(out)};
}

absl::StatusOr<Tensor> CudaBackend::GemmWeight(const Tensor& weight) {
  if (weight.dtype() != DType::kF32) return weight;
  auto it = f16_copies_.find(weight.raw());
  if (it != f16_copies_.end()) return it->second;
  KVCC_ASSIGN_OR_RETURN(auto copy, Cast(weight, DType::kF16));
  // Only weights come here (Linear and LmHead take weights), so the copy lives as long as the
  // backend, like the upload it was made from.
  f16_copies_[weight.raw()] = copy;
  weight_bytes_ += copy.NumBytes();
  return copy;
}

int CudaBackend::DefaultGemvVariant(int64_t tokens, int64_t in, int64_t out, DType dtype,
                                    bool aligned16) const {
  const auto it = tuned_gemv_.find(std::make_tuple(tokens, out, in, static_cast<int>(dtype)));
  if (it != tuned_gemv_.end() &&
      (it->second < 0 ||
       GemvVariantTakes(codegen::GemvVariants()[it->second], tokens, in, out, aligned16))) {
    return it->second;
  }
  return GemvVariantFor(tokens, in, out, aligned16);
}

int CudaBackend::GemvVariant(const Tensor& x, const Tensor& w, const Tensor& y) const {
  if (gemv_choice_ == kGemvOff) return -1;
  const int64_t tokens = x.dim(0), in = x.dim(1), out = w.dim(0);
  // The tensor-core variants' 16-byte loads of the x and w rows and stores.
  const auto aligned = [](const Tensor& t) {
    return reinterpret_cast<uintptr_t>(t.raw()) % 16 == 0;
  };
  const bool aligned16 = aligned(x) && aligned(w) && aligned(y);
  if (gemv_choice_ == kGemvByRule) {
    return DefaultGemvVariant(tokens, in, out, w.dtype(), aligned16);
  }
  const auto& variants = codegen::GemvVariants();
  if (gemv_choice_ < 0 || gemv_choice_ >= static_cast<int>(variants.size()) ||
      !GemvVariantTakes(variants[gemv_choice_], tokens, in, out, aligned16)) {
    return -1;
  }
  return gemv_choice_;
}

absl::StatusOr<Tensor> CudaBackend::Matmul(const Tensor& x, const Tensor& weight,
                                           const Tensor* bias, bool half_out, const char* what) {
  KVCC_RETURN_IF_ERROR(CheckOpActivation(x, Device::kCuda, what));
  KVCC_RETURN_IF_ERROR(CheckWeight(weight, Device::kCuda, what));
  if (weight.rank() != 2 || weight.dim(1) != x.dim(1)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": weight ", weight.ToString(),
                                                   " does not take input ", x.ToString()));
  }
  KVCC_ASSIGN_OR_RETURN(auto w, GemmWeight(weight));
  KVCC_ASSIGN_OR_RETURN(auto x16, Cast(x, w.dtype()));
  const int64_t tokens = x.dim(0), in = x.dim(1), out_f = weight.dim(0);
  const DType od = half_out && w.dtype() == DType::kF16 ? DType::kF16 : DType::kF32;
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(od, {tokens, out_f}, false));
  if (const int v = GemvVariant(x16, w, out); v >= 0) {
    // The bias is added by the GEMV's epilogue.
    const int wi = w.dtype() == DType::kBF16 ? 1 : 0;
    kernels::GemvParams p{};
    p.x = x16.raw();
    p.w = w.raw();
    p.y = out.raw();
    p.bias = bias != nullptr ? bias->raw() : nullptr;
    p.tokens = static_cast<int>(tokens);
    p.in = static_cast<int>(in);
    p.out = static_cast<int>(out_f);
    p.bias_dtype = bias == nullptr ? 0 : WeightSlot(bias->dtype());
    p.y_f16 = od == DType::kF16 ? 1 : 0;
    p.l2_prefetch = pdl_ ? gemv_l2_prefetch_ : 0;
    const dim3 grid(GemvGrid(codegen::GemvVariants()[v], out_f));
    if (auto s = LaunchOps(ops_.gemv[wi][v], grid, dim3(codegen::kGemvThreads), p);
        !s.ok()) {
      return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
    }
    return out;
  }
  if (auto s = gemm_->Matmul(x16.raw(), w.raw(), out.raw(), tokens, in, out_f, w.dtype(), od);
      !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(what, ": ", s.message()));
  }
  if (bias != nullptr) {
    const int cols = static_cast<int>(out_f);
    KVCC_RETURN_IF_ERROR(
        LaunchFlat(ops_.add_bias[WeightSlot(bias->dtype())][ActSlot(out.dtype())], tokens * cols,
                   kernels::AddBiasParams{out.raw(), bias->raw(), tokens, cols}));
  }
  return out;
}

absl::StatusOr<Tensor> CudaBackend::Linear(const Tensor& x, const Tensor& weight,
                                           const Tensor* bias) {
  if (bias != nullptr) {
    KVCC_RETURN_IF_ERROR(CheckWeight(*bias, Device::kCuda, "linear bias"));
    if (weight.rank() != 2 || bias->NumElements() != weight.dim(0)) {
      return absl::InvalidArgumentError(absl::StrCat("linear: bias ", bias->ToString(),
                                                     " must have one entry per row of ",
                                                     weight.ToString()));
    }
  }
  return Matmul(x, weight, bias, half_, "linear");
}

absl::StatusOr<Tensor> CudaBackend::LmHead(const Tensor& x, const Tensor& weight) {
  return Matmul(x, weight, nullptr, false, "lm_head");  // logits stay f32
}

absl::StatusOr<std::vector<Tensor>> CudaBackend::Split(const Tensor& x,
                                                       const std::vector<int64_t>& sizes) {
  KVCC_RETURN_IF_ERROR(CheckSplitOperands(x, sizes, Device::kCuda));
  const int64_t total = x.dim(1);
  const int64_t tokens = x.dim(0);
  std::vector<Tensor> outs;
  int64_t col = 0;
  const int64_t e = ir::DTypeBytes(x.dtype(), 1);
  for (int64_t s : sizes) {
    KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(x.dtype(), {tokens, s}, false));
    if (tokens > 0) {
      if (auto c = CudaCheck(cudaMemcpy2DAsync(out.raw(), s * e, Offset(x, col), total * e,
                                               s * e, tokens, cudaMemcpyDeviceToDevice,
                                               ctx_->stream()),
                             "split copy");
          !c.ok()) {
        return c;
      }
    }
    col += s;
    outs.push_back(std::move(out));
  }
  return outs;
}

absl::StatusOr<Tensor> CudaBackend::DevicePositions(const StepBatch& batch) {
  if (bound_ != nullptr) return bound_->positions;
  if (positions_dev_.defined() && positions_dev_.raw() != nullptr &&
      positions_host_ == batch.positions) {
    return positions_dev_;
  }
  Tensor host = Tensor::HostZeros(DType::kI32, {batch.size()});
  std::memcpy(host.raw(), batch.positions.data(), batch.positions.size() * sizeof(int32_t));
  KVCC_ASSIGN_OR_RETURN(auto dev, UploadStep(host));
  positions_host_ = batch.positions;
  positions_dev_ = dev;
  return dev;
}

absl::StatusOr<Tensor> CudaBackend::InvFreq(const RotaryParams& p, const StepBatch& batch,
                                            int* stride) {
  const int half = p.head_dim / 2;
  if (!p.DependsOnLength()) {
    *stride = 0;
    const std::string key = absl::StrCat(p.head_dim, "/", p.theta, "/", p.scaling, "/", p.factor,
                                         "/", p.low_freq_factor, "/", p.high_freq_factor, "/",
                                         p.original_max_position, "/", p.max_position);
    auto it = inv_freq_.find(key);
    if (it != inv_freq_.end()) return it->second;
    std::vector<float> f = RotaryInvFreq(p, 0);
    Tensor host = Tensor::HostZeros(DType::kF32, {half});
    std::memcpy(host.raw(), f.data(), half * sizeof(float));
    KVCC_ASSIGN_OR_RETURN(auto dev, UploadStep(host));
    inv_freq_[key] = dev;
    return dev;
  }
  // Dynamic NTK scaling: each token's frequencies depend on its session's length.
  if (bound_ != nullptr) {
    return absl::UnimplementedError("rotary: dynamic scaling depends on the step's lengths, "
                                    "which a captured decode step does not upload");
  }
  *stride = half;
  Tensor host = Tensor::HostZeros(DType::kF32, {batch.size(), half});
  int64_t last_len = -1;
  std::vector<float> f;
  for (int64_t t = 0; t < batch.size(); ++t) {
    if (batch.seq_lens[t] != last_len) {
      last_len = batch.seq_lens[t];
      f = RotaryInvFreq(p, last_len);
    }
    std::memcpy(host.data<float>() + t * half, f.data(), half * sizeof(float));
  }
  // A copy from pageable memory is staged before cudaMemcpyAsync returns, so the host
  // table may go away right after.
  return UploadStep(host);
}

absl::StatusOr<Tensor> CudaBackend::Rotary(const Tensor& x, const RotaryParams& p,
                                           const StepBatch& batch) {
  KVCC_RETURN_IF_ERROR(CheckRotaryOperands(x, p, batch, Device::kCuda));
  const int64_t tokens = x.dim(0);
  KVCC_ASSIGN_OR_RETURN(auto pos, DevicePositions(batch));
  int stride = 0;
  KVCC_ASSIGN_OR_RETURN(auto freq, InvFreq(p, batch, &stride));
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(x.dtype(), {tokens, x.dim(1)}, false));
  KVCC_RETURN_IF_ERROR(
      LaunchFlat(ops_.rotary[ActSlot(x.dtype())], tokens * p.heads * (p.head_dim / 2),
                 kernels::RotaryEmbeddingParams{x.raw(), out.raw(), pos.data<int32_t>(),
                                                freq.data<float>(), stride,
                                                static_cast<int>(tokens), p.heads, p.head_dim,
                                                x.dim(1)}));
  return out;
}

absl::StatusOr<Tensor> CudaBackend::StepIndices(int which, std::vector<int32_t> host) {
  if (step_dev_[which].raw() != nullptr && step_host_[which] == host) return step_dev_[which];
  Tensor t = Tensor::HostZeros(DType::kI32, {static_cast<int64_t>(host.size())});
  std::memcpy(t.raw(), host.data(), host.size() * sizeof(int32_t));
  KVCC_ASSIGN_OR_RETURN(auto dev, UploadStep(t));
  step_host_[which] = std::move(host);
  step_dev_[which] = dev;
  return dev;
}

absl::StatusOr<CudaAttention*> CudaBackend::AttentionKernels(const KvCache& cache, int layer,
                                                            int heads) {
  const KvCacheLayout& l = cache.layout();
  const ir::KvCacheScheme& scheme = cache.scheme(layer);
  const std::string storage = absl::StrCat("/", l.kv_heads, "/", l.head_dim, "/", l.block_size,
                                           "/", ir::KvCacheSchemeName(scheme), "/",
                                           ir::DTypeName(activation_dtype()));
  if (heads < 0) {
    for (const auto& [k, a] : attention_) {
      if (k.size() > storage.size() && k.compare(k.size() - storage.size(), storage.size(),
                                                 storage) == 0 &&
          k[k.size() - storage.size() - 1] != '/') {
        return a.get();
      }
    }
    heads = l.kv_heads;
  }
  const std::string key = absl::StrCat(heads, storage);
  auto it = attention_.find(key);
  if (it != attention_.end()) return it->second.get();
  CudaAttentionConfig config =
      AttentionConfigFor(l, scheme, heads, ctx_->device(), activation_dtype());
  if (kernels_.tuning != nullptr) ApplyTuning(*kernels_.tuning, &config);
  auto att = CudaAttention::Create(config, kernels_.store.get());
  if (!att.ok()) {
    return absl::Status(att.status().code(), absl::StrCat("attention kernels for layer ", layer,
                                                          ": ", att.status().message()));
  }
  CudaAttention* raw = att->get();
  attention_[key] = *std::move(att);
  return raw;
}

absl::StatusOr<CudaKvLayer> CudaBackend::KvLayer(const KvCache& cache, int layer) {
  const KvCacheLayout& l = cache.layout();
  if (layer < 0 || layer >= l.num_layers) {
    return absl::OutOfRangeError(absl::StrCat("KV cache has no layer ", layer, " (it has ",
                                              l.num_layers, ")"));
  }
  if (cache.values(layer, KvPart::kKey).device() != Device::kCuda) {
    return absl::InvalidArgumentError(absl::StrCat(
        "cuda backend: the KV cache of layer ", layer, " is not in device memory (create it "
        "with this backend's CreateKvCache)"));
  }
  CudaKvLayer kv;
  kv.k = cache.values(layer, KvPart::kKey).raw();
  kv.v = cache.values(layer, KvPart::kValue).raw();
  if (l.online) kv.k_params = cache.params(layer, KvPart::kKey).data<uint16_t>();
  if (l.v_online) kv.v_params = cache.params(layer, KvPart::kValue).data<uint16_t>();
  const ir::KvCacheScheme& s = cache.scheme(layer);
  PackedKvParams packed = PackKvParams(s);
  if (!packed.values.empty()) {
    LayerQuant& q = layer_quant_[{&cache, layer}];
    if (q.host != packed.values) {
      const auto n = static_cast<int64_t>(packed.values.size());
      Tensor t = Tensor::HostZeros(DType::kF32, {n});
      std::memcpy(t.raw(), packed.values.data(), n * sizeof(float));
      KVCC_ASSIGN_OR_RETURN(auto dev, UploadStep(t));
      q.host = std::move(packed.values);
      // Views of empty lists alias the start; the kernels of that part never read them.
      Tensor* views[] = {&q.k_zp, &q.k_scale, &q.v_zp, &q.v_scale};
      for (int i = 0; i < 4; ++i) {
        const auto at = static_cast<int64_t>(packed.offset[i]);
        const auto len = static_cast<int64_t>(packed.offset[i + 1] - packed.offset[i]);
        *views[i] = DeviceView(dev, (len > 0 ? at : 0) * 4, DType::kF32, {len});
      }
    }
    kv.k_zp = q.k_zp.data<float>();
    kv.k_scale = q.k_scale.data<float>();
    kv.v_zp = q.v_zp.data<float>();
    kv.v_scale = q.v_scale.data<float>();
  }
  return kv;
}

absl::Status CudaBackend::KvCacheWrite(const Tensor& k, const Tensor& v, int layer,
                                       const StepBatch& batch, KvCache* cache) {
  const KvCacheLayout& l = cache->layout();
  if (auto s = CheckKvCacheWriteOperands(k, v, layer, batch.size(), l, Device::kCuda); !s.ok()) {
    return s;
  }
  if (l.block_channel) {
    // The int4-kivi write (runtime/cuda/cuda_kivi) takes f32 rows.
    KVCC_ASSIGN_OR_RETURN(auto k32, ToF32(k));
    KVCC_ASSIGN_OR_RETURN(auto v32, ToF32(v));
    KVCC_ASSIGN_OR_RETURN(auto slots, KvSlots(layer, batch, *cache));
    return KiviCacheWrite(k32, v32, layer, batch, std::move(slots), cache);
  }
  // K arrives rotated (the graph's rotary op ran first): a zero frequency table makes the
  // fused rotary an exact identity (cos 0 = 1, sin 0 = 0).
  const int half = l.head_dim / 2;
  auto zf = zero_freq_.find(half);
  if (zf == zero_freq_.end()) {
    KVCC_ASSIGN_OR_RETURN(auto z, blocks_->Allocate(DType::kF32, {half}, true));
    zf = zero_freq_.emplace(half, z).first;
  }
  KVCC_ASSIGN_OR_RETURN(auto kio, Cast(k, activation_dtype()));
  KVCC_ASSIGN_OR_RETURN(auto vio, Cast(v, activation_dtype()));
  return WriteKv(kio.raw(), k.dim(1), vio.raw(), v.dim(1), k.dim(0), zf->second.data<float>(),
                 nullptr, -1, layer, batch, cache);
}

absl::StatusOr<std::vector<int32_t>> CudaBackend::KvSlots(int layer, const StepBatch& batch,
                                                          const KvCache& cache) {
  const KvCacheLayout& l = cache.layout();
  // A captured decode step reads its slots from the graph's bound buffer.
  std::vector<int32_t> slots(bound_ != nullptr ? 0 : batch.size());
  for (int64_t t = 0; t < static_cast<int64_t>(slots.size()); ++t) {
    KVCC_ASSIGN_OR_RETURN(auto table, cache.blocks().Table(batch.sessions[t]));
    const int64_t pos = batch.positions[t];
    if (pos < 0 || pos >= static_cast<int64_t>(table->size()) * l.block_size) {
      return absl::OutOfRangeError(absl::StrCat(
          "kv_cache_write layer ", layer, ": position ", pos, " of session ", batch.sessions[t],
          " is outside its ", table->size() * l.block_size, " reserved tokens"));
    }
    slots[t] =
        (*table)[pos / l.block_size] * l.block_size + static_cast<int32_t>(pos % l.block_size);
  }
  return slots;
}

absl::Status CudaBackend::WriteKv(const void* k, int64_t k_stride, const void* v,
                                  int64_t v_stride, int64_t tokens, const float* inv_freq,
                                  void* q, int heads, int layer, const StepBatch& batch,
                                  KvCache* cache) {
  KVCC_ASSIGN_OR_RETURN(auto kv, KvLayer(*cache, layer));
  // The attention kernels are specialized on the query head count, which the write needs only
  // when it rotates q too; otherwise kernels built for this cache's attention serve, and before
  // any exist a set for heads = kv_heads does.
  KVCC_ASSIGN_OR_RETURN(auto att, AttentionKernels(*cache, layer, q != nullptr ? heads : -1));
  KVCC_ASSIGN_OR_RETURN(auto slots, KvSlots(layer, batch, *cache));
  Tensor dev_slots;
  if (bound_ != nullptr) {
    dev_slots = bound_->slots;
  } else {
    KVCC_ASSIGN_OR_RETURN(dev_slots, StepIndices(0, std::move(slots)));
  }
  KVCC_ASSIGN_OR_RETURN(auto pos, DevicePositions(batch));
  RotaryWriteArgs args;
  args.k = k;
  args.k_stride = static_cast<int>(k_stride);
  args.v = v;
  args.v_stride = static_cast<int>(v_stride);
  args.num_tokens = static_cast<int>(tokens);
  args.positions = pos.data<int32_t>();
  args.slot_mapping = dev_slots.data<int32_t>();
  args.inv_freq = inv_freq;
  args.q = q;
  args.q_stride = static_cast<int>(k_stride);  // q rides in the same rows as k (one projection)
  if (auto s = att->RotaryCacheWrite(kv, args, ctx_->stream()); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("kv_cache_write layer ", layer, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> CudaBackend::RotaryQkvCacheWrite(const Tensor& qkv, int64_t q_width,
                                                        int64_t kv_width,
                                                        const RotaryParams& q_rotary,
                                                        const RotaryParams& k_rotary, int layer,
                                                        const StepBatch& batch, KvCache* cache) {
  RotaryParams same = k_rotary;
  same.heads = q_rotary.heads;
  const bool one_table = same.head_dim == q_rotary.head_dim && same.theta == q_rotary.theta &&
                         same.scaling == q_rotary.scaling && same.factor == q_rotary.factor &&
                         same.low_freq_factor == q_rotary.low_freq_factor &&
                         same.high_freq_factor == q_rotary.high_freq_factor &&
                         same.original_max_position == q_rotary.original_max_position &&
                         same.max_position == q_rotary.max_position;
  // The cache-write kernel rotates K with one frequency table for the whole step; int4-kivi
  // has its own write.
  if (!one_table || k_rotary.DependsOnLength() || cache->layout().block_channel) {
    return Backend::RotaryQkvCacheWrite(qkv, q_width, kv_width, q_rotary, k_rotary, layer, batch,
                                        cache);
  }
  KVCC_RETURN_IF_ERROR(CheckOpActivation(qkv, Device::kCuda, "qkv projection"));
  const KvCacheLayout& l = cache->layout();
  if (qkv.dim(1) != q_width + 2 * kv_width || q_width != int64_t{q_rotary.heads} * q_rotary.head_dim ||
      kv_width != int64_t{k_rotary.heads} * k_rotary.head_dim ||
      kv_width != int64_t{l.kv_heads} * l.head_dim || k_rotary.head_dim != l.head_dim) {
    return absl::InvalidArgumentError(absl::StrCat(
        "rotary + kv_cache_write layer ", layer, ": qkv ", qkv.ToString(), " is not q ", q_width,
        " + k, v ", kv_width, " columns of ", l.kv_heads, " kv heads x ", l.head_dim));
  }
  const int64_t tokens = qkv.dim(0);
  if (batch.size() != tokens) {
    return absl::InvalidArgumentError(absl::StrCat("rotary + kv_cache_write layer ", layer, ": ",
                                                   tokens, " tokens, the step has ",
                                                   batch.size()));
  }
  KVCC_ASSIGN_OR_RETURN(auto x, Cast(qkv, activation_dtype()));
  KVCC_ASSIGN_OR_RETURN(auto pos, DevicePositions(batch));
  int stride = 0;
  KVCC_ASSIGN_OR_RETURN(auto freq, InvFreq(k_rotary, batch, &stride));
  const int64_t width = x.dim(1);
  if (tokens == 1) {
    // One token: its q columns are already a contiguous [1, q_width] row, so the cache-write
    // kernel rotates them in place in the same launch and q is a view of the projection.
    KVCC_RETURN_IF_ERROR(WriteKv(Offset(x, q_width), width, Offset(x, q_width + kv_width), width,
                                 tokens, freq.data<float>(), x.raw(), q_rotary.heads, layer,
                                 batch, cache));
    return DeviceView(x, 0, x.dtype(), {1, q_width});
  }
  KVCC_ASSIGN_OR_RETURN(auto q, blocks_->Allocate(x.dtype(), {tokens, q_width}, false));
  if (tokens > 0) {
    KVCC_RETURN_IF_ERROR(LaunchFlat(
        ops_.rotary[ActSlot(x.dtype())], tokens * q_rotary.heads * (q_rotary.head_dim / 2),
        kernels::RotaryEmbeddingParams{x.raw(), q.raw(), pos.data<int32_t>(), freq.data<float>(),
                                       0, static_cast<int>(tokens), q_rotary.heads,
                                       q_rotary.head_dim, width}));
  }
  KVCC_RETURN_IF_ERROR(WriteKv(Offset(x, q_width), width, Offset(x, q_width + kv_width), width,
                               tokens, freq.data<float>(), nullptr, -1, layer, batch, cache));
  return q;
}

absl::StatusOr<Tensor> CudaBackend::SiluMulHalves(const Tensor& x) {
  KVCC_RETURN_IF_ERROR(CheckOpActivation(x, Device::kCuda, "silu_mul input"));
  if (x.dim(1) % 2 != 0) {
    return absl::InvalidArgumentError(absl::StrCat("silu_mul: fused gate/up projection ",
                                                   x.ToString(), " is not [tokens, 2n]"));
  }
  const int64_t rows = x.dim(0), n = x.dim(1) / 2;
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(x.dtype(), {rows, n}, false));
  KVCC_RETURN_IF_ERROR(LaunchFlat(
      ops_.silu_mul[ActSlot(x.dtype())], rows * n,
      kernels::SiluMulParams{x.raw(), Offset(x, n), out.raw(), rows, static_cast<int>(n),
                             static_cast<int>(2 * n), static_cast<int>(2 * n), 0}));
  return out;
}

absl::StatusOr<Tensor> CudaBackend::Attention(const Tensor& q_in, const KvCache& cache,
                                              const AttentionParams& p, const StepBatch& batch) {
  const KvCacheLayout& l = cache.layout();
  KVCC_RETURN_IF_ERROR(CheckAttentionOperands(q_in, p, batch.size(), l, Device::kCuda));
  if (l.block_channel) {
    KVCC_ASSIGN_OR_RETURN(auto q32, ToF32(q_in));  // the int4-kivi attention reads f32
    return KiviAttention(q32, cache, p, batch);
  }
  const int64_t tokens = q_in.dim(0);
  KVCC_ASSIGN_OR_RETURN(auto kv, KvLayer(cache, p.layer));
  KVCC_ASSIGN_OR_RETURN(auto att, AttentionKernels(cache, p.layer, p.heads));
  KVCC_ASSIGN_OR_RETURN(auto qio, Cast(q_in, activation_dtype()));
  const Tensor& q = qio;
  auto out = blocks_->Allocate(activation_dtype(), {tokens, q.dim(1)}, false);
  if (!out.ok() || tokens == 0) return out;
  if (bound_ != nullptr) {
    if (tokens != bound_->batch) {
      return absl::InvalidArgumentError(absl::StrCat("attention: ", tokens, " tokens in a step "
                                                     "bound to ", bound_->batch));
    }
    return DecodeAttention(*att, kv, q, p, bound_->tables, bound_->table_stride, bound_->lens,
                           bound_->max_len, *std::move(out));
  }

  // Runs of consecutive tokens of one session at consecutive positions, each ending at the
  // session's highest position in the step, are prefill chunks; a step made only of such runs,
  // one per session, goes to the prefill kernel. Anything else (decode steps included) goes to
  // the decode kernel, one batch entry per token, which is correct for any mix.
  struct Run {
    int64_t session, begin, end;
  };
  std::vector<Run> runs;
  bool prefill_shape = true;
  for (int64_t t = 0; t < tokens; ++t) {
    if (!runs.empty() && runs.back().session == batch.sessions[t] &&
        batch.positions[t] == batch.positions[t - 1] + 1) {
      runs.back().end = t + 1;
    } else {
      runs.push_back({batch.sessions[t], t, t + 1});
    }
  }
  {
    std::map<int64_t, int> seen;
    for (const Run& r : runs) {
      if (++seen[r.session] > 1) prefill_shape = false;
    }
  }
  bool any_long = false;
  for (const Run& r : runs) any_long = any_long || r.end - r.begin > 1;
  const bool use_prefill = prefill_shape && any_long;

  const int64_t entries = use_prefill ? static_cast<int64_t>(runs.size()) : tokens;
  std::vector<const std::vector<int32_t>*> tables(entries);
  std::vector<int32_t> lens(entries);
  int max_blocks = 1, max_len = 1, max_q = 1;
  for (int64_t e = 0; e < entries; ++e) {
    const int64_t t_last = use_prefill ? runs[e].end - 1 : e;
    KVCC_ASSIGN_OR_RETURN(auto table, cache.blocks().Table(batch.sessions[t_last]));
    const int64_t len = int64_t{batch.positions[t_last]} + 1;
    if (batch.positions[t_last] < 0 || len > static_cast<int64_t>(table->size()) * l.block_size) {
      return absl::OutOfRangeError(absl::StrCat("attention: position ", batch.positions[t_last],
                                                " of session ", batch.sessions[t_last],
                                                " lies outside its cache blocks"));
    }
    tables[e] = table;
    lens[e] = static_cast<int32_t>(len);
    max_blocks = std::max<int>(max_blocks, static_cast<int>(table->size()));
    max_len = std::max<int>(max_len, static_cast<int>(len));
    if (use_prefill) max_q = std::max<int>(max_q, static_cast<int>(runs[e].end - runs[e].begin));
  }
  if (!use_prefill) {
    // The split is sized for the context band, as a captured step sizes it, so replay and eager
    // steps compute the same sums; tables are padded to cover the band.
    max_len = static_cast<int>(DecodeContextBand(max_len));
    max_blocks = std::max<int>(max_blocks, (max_len + l.block_size - 1) / l.block_size);
  }
  // One upload per step: [entries x max_blocks] tables, then lens, then q_start (prefill).
  std::vector<int32_t> idx(entries * max_blocks + entries + (use_prefill ? entries + 1 : 0), 0);
  for (int64_t e = 0; e < entries; ++e) {
    std::copy(tables[e]->begin(), tables[e]->end(), idx.begin() + e * max_blocks);
    idx[entries * max_blocks + e] = lens[e];
  }
  if (use_prefill) {
    for (int64_t e = 0; e < entries; ++e) {
      idx[entries * max_blocks + entries + e] = static_cast<int32_t>(runs[e].begin);
    }
    idx.back() = static_cast<int32_t>(tokens);
  }
  KVCC_ASSIGN_OR_RETURN(auto dev, StepIndices(1, std::move(idx)));
  const int32_t* dev_tables = dev.data<int32_t>();
  const int32_t* dev_lens = dev_tables + entries * max_blocks;
  absl::Status s;
  if (use_prefill) {
    PrefillArgs a;
    a.q = q.raw();
    a.out = out->raw();
    a.block_tables = dev_tables;
    a.max_blocks_per_seq = max_blocks;
    a.seq_lens = dev_lens;
    a.q_start = dev_lens + entries;
    a.batch = static_cast<int>(entries);
    a.max_q_len = max_q;
    a.scale = p.scale;
    s = att->Prefill(kv, a, ctx_->stream());
    if (!s.ok()) {
      return absl::Status(s.code(), absl::StrCat("attention layer ", p.layer, ": ", s.message()));
    }
    return out;
  }
  return DecodeAttention(*att, kv, q, p, DeviceView(dev, 0, DType::kI32, {entries * max_blocks}),
                         max_blocks, DeviceView(dev, entries * max_blocks * 4, DType::kI32,
                                                {entries}),
                         max_len, *std::move(out));
}

absl::StatusOr<CudaKivi*> CudaBackend::KiviKernels(const KvCacheLayout& l, int heads) {
  const std::string shape = absl::StrCat("/", l.kv_heads, "/", l.head_dim, "/", l.block_size);
  if (heads < 0) {
    for (const auto& [key, kivi] : kivi_) {
      if (absl::EndsWith(key, shape)) return kivi.get();
    }
    heads = l.kv_heads;
  }
  std::unique_ptr<CudaKivi>& slot = kivi_[absl::StrCat(heads, shape)];
  if (slot == nullptr) {
    codegen::KiviKernelSpec spec;
    spec.head_dim = l.head_dim;
    spec.heads = heads;
    spec.kv_heads = l.kv_heads;
    spec.block_size = l.block_size;
    spec.io_dtype = DType::kF32;
    spec.target = ctx_->target();
    auto kivi = CudaKivi::Create(spec, ctx_, kernels_.store.get());
    if (!kivi.ok()) {
      kivi_.erase(absl::StrCat(heads, shape));
      return kivi.status();
    }
    slot = *std::move(kivi);
  }
  return slot.get();
}

absl::Status CudaBackend::KiviCacheWrite(const Tensor& k, const Tensor& v, int layer,
                                         const StepBatch& batch, std::vector<int32_t> slots,
                                         KvCache* cache) {
  auto maps = kivi_maps_.find(cache);
  if (maps == kivi_maps_.end() || bound_ != nullptr) {
    return absl::FailedPreconditionError(absl::StrCat(
        "kv_cache_write layer ", layer, ": an int4-kivi cache must come from this backend's "
        "CreateKvCache and is written eagerly (not from a captured decode step)"));
  }
  KVCC_ASSIGN_OR_RETURN(CudaKivi * kivi, KiviKernels(cache->layout(), -1));
  const int width = cache->layout().kv_heads * cache->layout().head_dim;
  KiviWriteArgs args;
  args.k = k.raw();
  args.k_stride = width;
  args.v = v.raw();
  args.v_stride = width;
  args.slots = std::move(slots);
  args.positions = batch.positions;
  auto s = kivi->Write(cache, layer, KiviView(*cache, layer, maps->second.data<int32_t>()), args,
                       [&](std::vector<int32_t> idx) -> absl::StatusOr<const int32_t*> {
                         KVCC_ASSIGN_OR_RETURN(auto dev, StepIndices(0, std::move(idx)));
                         return dev.data<int32_t>();
                       });
  if (!s.ok()) {
    return absl::Status(s.code(), absl::StrCat("kv_cache_write layer ", layer, ": ", s.message()));
  }
  return absl::OkStatus();
}

absl::StatusOr<Tensor> CudaBackend::KiviAttention(const Tensor& q, const KvCache& cache,
                                                  const AttentionParams& p,
                                                  const StepBatch& batch) {
  auto maps = kivi_maps_.find(&cache);
  if (maps == kivi_maps_.end()) {
    return absl::FailedPreconditionError(absl::StrCat(
        "attention layer ", p.layer, ": the int4-kivi cache was not created by this backend"));
  }
  KVCC_ASSIGN_OR_RETURN(CudaKivi * kivi, KiviKernels(cache.layout(), p.heads));
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(DType::kF32, {q.dim(0), q.dim(1)}, false));
  if (q.dim(0) == 0) return out;
  KVCC_ASSIGN_OR_RETURN(KiviEntries e, KiviAttentionEntries(cache, batch));
  KVCC_ASSIGN_OR_RETURN(auto dev, StepIndices(1, std::move(e.idx)));
  KiviAttentionArgs a;
  a.q = q.raw();
  a.out = out.raw();
  a.block_tables = dev.data<int32_t>();
  a.seq_lens = a.block_tables + int64_t{e.entries} * e.max_blocks;
  a.q_start = a.seq_lens + e.entries;
  a.entries = e.entries;
  a.max_blocks = e.max_blocks;
  a.max_q_len = e.max_q_len;
  a.scale = p.scale;
  if (auto s = kivi->Attention(KiviView(cache, p.layer, maps->second.data<int32_t>()), a);
      !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("attention layer ", p.layer, ": ", s.message()));
  }
  return out;
}

absl::StatusOr<Tensor> CudaBackend::DecodeAttention(CudaAttention& att, const CudaKvLayer& kv,
                                                    const Tensor& q, const AttentionParams& p,
                                                    const Tensor& tables, int table_stride,
                                                    const Tensor& lens, int max_len, Tensor out) {
  DecodeArgs a;
  a.q = q.raw();
  a.out = out.raw();
  a.block_tables = tables.data<int32_t>();
  a.max_blocks_per_seq = table_stride;
  a.seq_lens = lens.data<int32_t>();
  a.batch = static_cast<int>(q.dim(0));
  a.max_seq_len = max_len;
  a.scale = p.scale;
  a.splits = att.DecodeSplits(a.batch, max_len);
  Tensor workspace;
  const size_t ws = att.DecodeWorkspaceBytes(a.batch, a.splits);
  if (ws > 0) {
    KVCC_ASSIGN_OR_RETURN(workspace,
                          blocks_->Allocate(DType::kU8, {static_cast<int64_t>(ws)}, false));
    a.workspace = workspace.raw();
    a.workspace_bytes = ws;
  }
  if (auto s = att.Decode(kv, a, ctx_->stream()); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("attention layer ", p.layer, ": ", s.message()));
  }
  return out;
}

absl::StatusOr<Tensor> CudaBackend::SiluMul(const Tensor& gate, const Tensor& up) {
  if (auto s = CheckElementwiseOperands("silu_mul", gate, "silu_mul gate", up, "silu_mul up",
                                        Device::kCuda);
      !s.ok()) {
    return s;
  }
  // Both in one dtype: as they are when they agree, else the activation dtype.
  const DType d = gate.dtype() == up.dtype() ? gate.dtype() : activation_dtype();
  KVCC_ASSIGN_OR_RETURN(auto g, Cast(gate, d));
  KVCC_ASSIGN_OR_RETURN(auto u, Cast(up, d));
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(d, gate.shape(), false));
  const int64_t rows = gate.dim(0);
  const int cols = static_cast<int>(gate.dim(1));
  KVCC_RETURN_IF_ERROR(LaunchFlat(
      ops_.silu_mul[ActSlot(d)], rows * cols,
      kernels::SiluMulParams{g.raw(), u.raw(), out.raw(), rows, cols, cols, cols, 0}));
  return out;
}

absl::StatusOr<Tensor> CudaBackend::Add(const Tensor& a, const Tensor& b) {
  if (auto s = CheckElementwiseOperands("add", a, "add lhs", b, "add rhs", Device::kCuda);
      !s.ok()) {
    return s;
  }
  // The residual stream: an f32 sum of f32 or f16 operands.
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(DType::kF32, a.shape(), false));
  const int64_t n = a.NumElements();
  KVCC_RETURN_IF_ERROR(
      LaunchFlat(ops_.add[ActSlot(a.dtype())][ActSlot(b.dtype())], n,
                 kernels::BinaryParams{a.raw(), b.raw(), out.data<float>(), n}));
  return out;
}

absl::StatusOr<Tensor> CudaBackend::GatherRows(const Tensor& x, const std::vector<int64_t>& rows) {
  KVCC_RETURN_IF_ERROR(CheckOpActivation(x, Device::kCuda, "gather input"));
  for (int64_t r : rows) {
    if (r < 0 || r >= x.dim(0)) {
      return absl::OutOfRangeError(absl::StrCat("gather: row ", r, " outside ", x.ToString()));
    }
  }
  const int64_t n = static_cast<int64_t>(rows.size());
  auto out = blocks_->Allocate(x.dtype(), {n, x.dim(1)}, false);
  if (!out.ok() || n == 0) return out;
  Tensor host = Tensor::HostZeros(DType::kI32, {n});
  for (int64_t i = 0; i < n; ++i) host.data<int32_t>()[i] = static_cast<int32_t>(rows[i]);
  KVCC_ASSIGN_OR_RETURN(auto dev_rows, UploadStep(host));
  const int cols = static_cast<int>(x.dim(1));
  KVCC_RETURN_IF_ERROR(
      LaunchFlat(ops_.gather_rows[ActSlot(x.dtype())], n * cols,
                 kernels::GatherRowsParams{x.raw(), dev_rows.data<int32_t>(), out->raw(),
                                           static_cast<int>(n), cols}));
  return out;
}

absl::StatusOr<std::vector<double>> CudaBackend::TargetNll(const Tensor& logits,
                                                           const std::vector<int32_t>& targets) {
  KVCC_RETURN_IF_ERROR(CheckActivation(logits, Device::kCuda, "target nll logits"));
  KVCC_RETURN_IF_ERROR(CheckNllTargets(logits, targets));
  const int64_t n = static_cast<int64_t>(targets.size());
  if (n == 0) return std::vector<double>{};
  Tensor host = Tensor::HostZeros(DType::kI32, {n});
  std::copy(targets.begin(), targets.end(), host.data<int32_t>());
  KVCC_ASSIGN_OR_RETURN(auto dev, UploadStep(host));
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(DType::kI32, {2 * n}, false));  // doubles
  KVCC_RETURN_IF_ERROR(LaunchGrid(
      ops_.target_nll, dim3(static_cast<unsigned>(std::min<int64_t>(n, 65535))),
      kernels::TargetNllParams{logits.data<float>(), dev.data<int32_t>(),
                               reinterpret_cast<double*>(out.data<int32_t>()),
                               static_cast<int>(logits.dim(1)), static_cast<int>(n)}));
  KVCC_ASSIGN_OR_RETURN(auto values, ToHost(out));
  const auto* v = reinterpret_cast<const double*>(values.data<int32_t>());
  return std::vector<double>(v, v + n);
}

absl::StatusOr<ColumnStats> CudaBackend::ColumnRanges(const Tensor& x) {
  KVCC_RETURN_IF_ERROR(CheckActivation(x, Device::kCuda, "column ranges input"));
  const int64_t rows = x.dim(0), cols = x.dim(1);
  ColumnStats s;
  if (cols == 0) return s;
  // One buffer: 3 x cols floats, then cols counts (8-byte aligned: 3 x cols x 4 rounded up).
  const int64_t floats = (3 * cols + 1) / 2 * 2;
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(DType::kF32, {floats + 2 * cols}, false));
  float* f = out.data<float>();
  KVCC_RETURN_IF_ERROR(LaunchFlat(
      ops_.column_ranges, cols,
      kernels::ColumnRangesParams{x.data<float>(), f, reinterpret_cast<long long*>(f + floats),
                                  rows, static_cast<int>(cols), 0}));
  KVCC_ASSIGN_OR_RETURN(auto host, ToHost(out));
  const float* h = host.data<float>();
  s.min.assign(h, h + cols);
  s.max.assign(h + cols, h + 2 * cols);
  s.absmax.assign(h + 2 * cols, h + 3 * cols);
  const auto* n = reinterpret_cast<const long long*>(h + floats);
  s.nonfinite.assign(n, n + cols);
  return s;
}

absl::StatusOr<std::vector<int32_t>> CudaBackend::SampleRows(const Tensor& logits,
                                                             const std::vector<SampleRow>& rows) {
  KVCC_RETURN_IF_ERROR(CheckActivation(logits, Device::kCuda, "sampling logits"));
  const int64_t n = static_cast<int64_t>(rows.size());
  if (logits.dim(0) != n) {
    return absl::InvalidArgumentError(absl::StrCat("sampling: logits ", logits.ToString(),
                                                   " for ", n, " requests"));
  }
  const int64_t vocab = logits.dim(1);
  if (vocab > kernels::kSampleMaxVocab) return Backend::SampleRows(logits, rows);
  if (n == 0) return std::vector<int32_t>{};
  if (vocab == 0) return absl::InvalidArgumentError("sampler: empty logits");
  // One upload: the rows' parameters, then history offsets and the histories (only rows with
  // a repetition penalty need theirs).
  int64_t history = 0;
  for (const SampleRow& r : rows) {
    KVCC_RETURN_IF_ERROR(r.params.Validate());
    if (r.params.repetition_penalty != 1.0 && r.history != nullptr) {
      history += static_cast<int64_t>(r.history->size());
    }
  }
  const int64_t params_bytes = n * static_cast<int64_t>(sizeof(kernels::SampleRowParams));
  // Rounded up to 64 KiB so that histories growing by a token per step keep hitting the same
  // cached block size.
  constexpr int64_t kRound = 64 << 10;
  const int64_t bytes = params_bytes + (n + 1 + history) * 4;
  Tensor host = Tensor::HostZeros(DType::kU8, {(bytes + kRound - 1) / kRound * kRound});
  auto* params = reinterpret_cast<kernels::SampleRowParams*>(host.raw());
  auto* starts = reinterpret_cast<int32_t*>(host.data<uint8_t>() + params_bytes);
  int32_t* ids = starts + n + 1;
  int64_t at = 0;
  for (int64_t r = 0; r < n; ++r) {
    const SampleRow& row = rows[r];
    params[r] = kernels::SampleRowParams{row.params.temperature, row.params.top_p,
                                         row.params.repetition_penalty, row.uniform,
                                         row.params.top_k, 0};
    starts[r] = static_cast<int32_t>(at);
    if (row.params.repetition_penalty != 1.0 && row.history != nullptr) {
      std::copy(row.history->begin(), row.history->end(), ids + at);
      at += static_cast<int64_t>(row.history->size());
    }
  }
  starts[n] = static_cast<int32_t>(at);
  KVCC_ASSIGN_OR_RETURN(auto dev, UploadStep(host));
  KVCC_ASSIGN_OR_RETURN(auto out, blocks_->Allocate(DType::kI32, {n}, false));
  const uint8_t* base = dev.data<uint8_t>();
  KVCC_RETURN_IF_ERROR(LaunchGrid(
      ops_.sample, dim3(static_cast<unsigned>(std::min<int64_t>(n, 65535))),
      kernels::SampleParams{logits.data<float>(),
                            reinterpret_cast<const kernels::SampleRowParams*>(base),
                            reinterpret_cast<const int*>(base + params_bytes),
                            reinterpret_cast<const int*>(base + params_bytes) + n + 1,
                            out.data<int32_t>(), static_cast<int>(vocab), static_cast<int>(n)}));
  KVCC_ASSIGN_OR_RETURN(auto chosen, ToHost(out));
  std::vector<int32_t> result(chosen.data<int32_t>(), chosen.data<int32_t>() + n);
  for (int64_t r = 0; r < n; ++r) {
    if (result[r] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("sampler: logit ", -1 - int64_t{result[r]}, " is NaN (row ", r, ")"));
    }
  }
  return result;
}

}  // namespace kvcc::runtime
