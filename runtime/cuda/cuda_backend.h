// The CUDA backend: the Backend interface on one GPU, with everything queued on the single
// stream of its CudaContext. Weights are uploaded once (FromHost remembers float host tensors
// by address; an f32 weight gets an f16 copy for the GEMMs the first time one needs it), linear
// layers run through cuBLASLt in f16/bf16 with f32 accumulation (up to 16 tokens, where the
// rule of runtime/cuda/gemv_choice.h says so, through the decode GEMV), the other ops are NVRTC kernels
// (codegen/ops_*.cuh), and the KV cache is one device allocation in the layout of
// runtime/kv_cache_layout.h, written and read by the attention kernels of runtime/cuda_attention.
// Ops take f32 or f16 activations. With half activations on (SetHalfActivations, what model
// runs use) the results that feed a GEMM or attention are f16: norms, GEMM outputs (f16
// weights), rotary, attention, silu_mul; the residual stream (embedding, add, the sum of
// add_rms_norm) and the logits stay f32. Off (the default), every result is f32.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "codegen/kernel_cache.h"
#include "codegen/ops_params.h"
#include "runtime/backend.h"
#include "runtime/cuda/cublaslt_gemm.h"
#include "runtime/cuda/cuda_attention.h"
#include "runtime/cuda/cuda_context.h"
#include "runtime/cuda/cuda_kivi.h"
#include "runtime/cuda/device_block_cache.h"
#include "runtime/cuda/kernel_plan.h"

namespace kvcc::runtime {

class CudaW4Linear;      // runtime/cuda/cuda_w4_linear.h
class CudaDecodeGraphs;  // runtime/cuda/decode_graph.h

class CudaBackend : public Backend {
 public:
  // Fails with FailedPrecondition (saying to use --device cpu) when no GPU is present, or with
  // the NVRTC log when the kernels do not compile. Kernels come from `kernels` (an artifact's
  // store and tuning) or, by default, the on-disk kernel cache.
  static absl::StatusOr<std::unique_ptr<CudaBackend>> Create(int device = 0,
                                                             CudaKernelSource kernels = {});
  ~CudaBackend() override;

  std::string name() const override { return "cuda"; }
  Device device() const override { return Device::kCuda; }

  absl::StatusOr<Tensor> Allocate(ir::DType dtype, std::vector<int64_t> shape) override;
  // Float (f32/f16/bf16) host tensors are uploaded once per (address, dtype, size) and the
  // upload is reused while the backend lives (the entry keeps the host owner alive, so the
  // address cannot be reused): weights are uploaded once however many executors share them.
  // Such tensors must therefore not change after their first upload. Other dtypes (token ids,
  // positions) are copied every time.
  absl::StatusOr<Tensor> FromHost(const Tensor& host) override;
  // All weights not uploaded yet go into one allocation through pinned staging buffers
  // (runtime/cuda/weight_uploader.h), checking `unverified`'s chunk digests on the way when
  // they lie in the file as packed; float ones are then cached as FromHost caches them.
  absl::StatusOr<std::vector<Tensor>> FromHostWeights(
      const std::vector<Tensor>& hosts, const std::vector<std::string>& names,
      ir::WeightsChunkDigests* unverified = nullptr) override;
  absl::StatusOr<Tensor> ToHost(const Tensor& t) override;
  absl::StatusOr<std::unique_ptr<KvCache>> CreateKvCache(const KvCacheSpec& spec) override;

  absl::StatusOr<Tensor> Embedding(const Tensor& ids, const Tensor& table) override;
  absl::StatusOr<Tensor> RmsNorm(const Tensor& x, const Tensor& weight, float eps) override;
  absl::StatusOr<std::vector<Tensor>> AddRmsNorm(const Tensor& x, const Tensor& residual,
                                                 const Tensor& weight, float eps) override;
  absl::StatusOr<Tensor> Linear(const Tensor& x, const Tensor& weight, const Tensor* bias) override;
  // Defined in runtime/cuda/cuda_w4_linear.cc.
  absl::StatusOr<Tensor> QuantizedLinear(const Tensor& x, const QuantizedWeight& weight,
                                         const Tensor* bias) override;
  absl::StatusOr<std::vector<Tensor>> Split(const Tensor& x,
                                            const std::vector<int64_t>& sizes) override;
  absl::StatusOr<Tensor> Rotary(const Tensor& x, const RotaryParams& params,
                                const StepBatch& batch) override;
  absl::Status KvCacheWrite(const Tensor& k, const Tensor& v, int layer, const StepBatch& batch,
                            KvCache* cache) override;
  absl::StatusOr<Tensor> Attention(const Tensor& q, const KvCache& cache,
                                   const AttentionParams& params, const StepBatch& batch) override;
  absl::StatusOr<Tensor> SiluMul(const Tensor& gate, const Tensor& up) override;
  absl::StatusOr<Tensor> Add(const Tensor& a, const Tensor& b) override;
  absl::StatusOr<Tensor> LmHead(const Tensor& x, const Tensor& weight) override;
  absl::StatusOr<Tensor> GatherRows(const Tensor& x, const std::vector<int64_t>& rows) override;
  // On the device (codegen/ops_sample.cuh), one CTA per row; a vocabulary beyond
  // kernels::kSampleMaxVocab samples on the host.
  absl::StatusOr<std::vector<int32_t>> SampleRows(const Tensor& logits,
                                                  const std::vector<SampleRow>& rows) override;
  // On the device (kvcc_target_nll), one CTA per row: a double per row comes back.
  absl::StatusOr<std::vector<double>> TargetNll(const Tensor& logits,
                                                const std::vector<int32_t>& targets) override;
  // kvcc_column_ranges: one thread per column.
  absl::StatusOr<ColumnStats> ColumnRanges(const Tensor& x) override;

  // Decode steps from CUDA graphs (runtime/cuda/decode_graph.h), unless disabled by
  // EnableDecodeGraphs(false) or the environment variable KVCC_CUDA_GRAPHS=0.
  DecodeGraphs* decode_graphs() override;

  // Split + rotary + cache write reading q, k and v in place in the fused projection: two
  // kernels, or one for a single token, whose q is rotated in place in `qkv` (consumed) and
  // returned as a view of it; the default sequence for dynamic rotary scaling.
  absl::StatusOr<Tensor> RotaryQkvCacheWrite(const Tensor& qkv, int64_t q_width, int64_t kv_width,
                                             const RotaryParams& q_rotary,
                                             const RotaryParams& k_rotary, int layer,
                                             const StepBatch& batch, KvCache* cache) override;
  // One kernel reading both halves in place.
  absl::StatusOr<Tensor> SiluMulHalves(const Tensor& x) override;
  absl::StatusOr<Tensor> ToF32(const Tensor& x) override { return Cast(x, ir::DType::kF32); }
  // Stores activations that feed GEMMs and attention in f16 (see the header comment). Set it
  // before the first op: the attention kernels are built for the activation dtype.
  void SetHalfActivations(bool on) override { half_ = on; }

  // --- beyond the Backend interface ---
  void EnableDecodeGraphs(bool on) { graphs_enabled_ = on; }
  // Programmatic dependent launch of the ops kernels (sm_90+ only; on by default, KVCC_PDL=0
  // turns it off): each may start while the kernel before it
  // still runs, the decode GEMV streaming its first weight chunks meanwhile. Changing it drops
  // the captured decode graphs.
  void set_programmatic_launch(bool on);
  bool programmatic_launch() const { return pdl_; }
  // Chunks of 64 inputs per warp that the decode GEMV prefetches into the L2 before its wait,
  // beyond those it loads into registers there (programmatic launch only; KVCC_GEMV_L2).
  // Changing it drops the captured decode graphs.
  void set_gemv_l2_prefetch(int chunks);
  // Which path linear layers and the LM head take, for benches and tests: kGemvByRule (the
  // default; kGemvOff when the environment has KVCC_GEMV=0), kGemvOff (always cuBLASLt), or an
  // index into codegen::GemvVariants() (that variant wherever it can take the call, else
  // cuBLASLt).
  void set_gemv_choice(int choice) { gemv_choice_ = choice; }
  // The GEMV variant a linear of this shape takes without a forced choice: the tuning's
  // measured winner where it timed the shape (-1 where cuBLASLt won), else GemvVariantFor.
  int DefaultGemvVariant(int64_t tokens, int64_t in, int64_t out, ir::DType dtype,
                         bool aligned16 = true) const;
  // f16 with half activations, else f32.
  ir::DType activation_dtype() const { return half_ ? ir::DType::kF16 : ir::DType::kF32; }
  // The per-step inputs of a decode step in persistent device buffers (i32 views), which the
  // rotary, cache-write and attention ops read instead of uploading their own while bound, so
  // a step can be captured and replayed; op results then come from `pool`.
  struct BoundDecode {
    Tensor positions, slots, lens, tables;  // [batch], [batch], [batch], [batch, table_stride]
    int batch = 0;
    int table_stride = 0;
    int max_len = 0;  // the context band (runtime/decode_graphs.h)
  };
  // Binds `inputs` (null unbinds) until the next call; `pool` serves allocations meanwhile.
  void BindDecode(const BoundDecode* inputs, std::shared_ptr<DeviceBlockCache> pool);
  const std::shared_ptr<CudaContext>& context() const { return ctx_; }
  // Makes `device` the upload of host weight `host` (same dtype and shape), so FromHost(host)
  // returns it without reading the host bytes. For models whose weights are made on the GPU.
  absl::Status AdoptWeight(const Tensor& host, const Tensor& device);
  // Fills a float device tensor with seeded N(mean, stddev) values (codegen/ops_random.cuh).
  absl::Status FillNormal(const Tensor& t, uint64_t seed, float mean, float stddev);
  // Queues one read of every byte of device tensor `t` (NumBytes a multiple of 16), for
  // read-bandwidth probes.
  absl::Status ReadAll(const Tensor& t);
  // Casts a device float tensor to `dtype` (f32, f16, bf16).
  absl::StatusOr<Tensor> Cast(const Tensor& t, ir::DType dtype);
  // Device bytes held by uploaded weights (and their f16 GEMM copies).
  int64_t weight_bytes() const { return weight_bytes_; }
  // Device bytes of the GEMM workspace.
  int64_t workspace_bytes() const { return gemm_->workspace_bytes(); }
  // Waits for the stream; also reports a bad token id an embedding queued since the last sync.
  absl::Status Synchronize();
  // Hits and misses of the op-result block cache (a decode step after the first misses none).
  DeviceBlockCache::Stats block_stats() const { return blocks_->stats(); }

 private:
  friend class CudaDecodeGraphs;  // takes its copies of replayed logits from blocks_
  CudaBackend() = default;
  // Waits for the stream and destroys the captured decode graphs (they keep the launch
  // settings they were captured with).
  void DropDecodeGraphs();
  // Compiles (or takes from the kernel cache) the ops module and resolves every entry point
  // into ops_.
  absl::Status LoadKernels();
  // Queues an ops kernel; `dependent` (with programmatic launch on) lets it start before the
  // previous kernel ends (every ops kernel waits for it before touching activations,
  // codegen/ops_common.cuh). The first kernel after a host upload and the read probe launch
  // the ordinary way.
  template <typename P>
  absl::Status LaunchOps(const TypedKernel<P>& kernel, dim3 grid, dim3 block, const P& params,
                         bool dependent = true);
  // Launches `kernel` over `work` items with grid-stride loops.
  template <typename P>
  absl::Status LaunchFlat(const TypedKernel<P>& kernel, int64_t work, const P& params,
                          bool dependent = true);
  template <typename P>
  absl::Status LaunchGrid(const TypedKernel<P>& kernel, dim3 grid, const P& params,
                          bool dependent = true);
  // The weight as the GEMM reads it: f16/bf16 as stored, or an f16 copy of an f32 weight.
  absl::StatusOr<Tensor> GemmWeight(const Tensor& weight);
  // x . weight^T (+ bias) into f16 when `half_out` and the weight is f16, else f32.
  absl::StatusOr<Tensor> Matmul(const Tensor& x, const Tensor& weight, const Tensor* bias,
                                bool half_out, const char* what);
  // The GEMV variant that takes this call (x and w in the weight's dtype, y allocated), or -1.
  int GemvVariant(const Tensor& x, const Tensor& w, const Tensor& y) const;
  // Writes the k and v rows of a step (token t's at k + t * k_stride elements, likewise v, in
  // the activation dtype) into `layer`, rotating k by `inv_freq` (a zero table: no rotation);
  // with `q` (`heads` heads per row at q + t * k_stride) q is rotated in place as well.
  // Each token's cache slot (block id x block size + offset), checked against the session's
  // reserved blocks; empty for a captured step, whose slots are bound.
  absl::StatusOr<std::vector<int32_t>> KvSlots(int layer, const StepBatch& batch,
                                               const KvCache& cache);
  absl::Status WriteKv(const void* k, int64_t k_stride, const void* v, int64_t v_stride,
                       int64_t tokens, const float* inv_freq, void* q, int heads, int layer,
                       const StepBatch& batch, KvCache* cache);
  // Device copy of the step's positions (reused while the step's positions are unchanged).
  absl::StatusOr<Tensor> DevicePositions(const StepBatch& batch);
  absl::StatusOr<Tensor> InvFreq(const RotaryParams& p, const StepBatch& batch, int* stride);
  // The attention kernels for a layer's shape and storage scheme (built on first use);
  // heads < 0 takes any already built for the cache's storage (the cache write needs no head
  // count).
  absl::StatusOr<CudaAttention*> AttentionKernels(const KvCache& cache, int layer, int heads);
  // The int4-kivi kernels for a cache's shape and `heads` query heads (< 0: any built for
  // it, else kv_heads: the cache write needs no head count), and its cache write / attention.
  absl::StatusOr<CudaKivi*> KiviKernels(const KvCacheLayout& l, int heads);
  absl::Status KiviCacheWrite(const Tensor& k, const Tensor& v, int layer, const StepBatch& batch,
                              std::vector<int32_t> slots, KvCache* cache);
  absl::StatusOr<Tensor> KiviAttention(const Tensor& q, const KvCache& cache,
                                       const AttentionParams& p, const StepBatch& batch);
  // Decode attention of q [batch, heads * head_dim] (one token per row) into `out`.
  absl::StatusOr<Tensor> DecodeAttention(CudaAttention& att, const CudaKvLayer& kv, const Tensor& q,
                                         const AttentionParams& p, const Tensor& tables,
                                         int table_stride, const Tensor& lens, int max_len,
                                         Tensor out);
  // The device view of one cache layer the attention kernels take.
  absl::StatusOr<CudaKvLayer> KvLayer(const KvCache& cache, int layer);
  // Uploads a step's int32 index array, reusing the last upload while it is unchanged (every
  // layer of a step asks for the same block tables and slots).
  absl::StatusOr<Tensor> StepIndices(int which, std::vector<int32_t> host);

  // The error a kernel recorded for the host since the last sync (a bad embedding id), once.
  absl::Status CheckDeferredErrors();
  // A device copy of host tensor `host` in a cached block, queued on the stream.
  absl::StatusOr<Tensor> UploadStep(const Tensor& host);

  std::shared_ptr<CudaContext> ctx_;
  std::unique_ptr<CublasLtGemm> gemm_;
  std::shared_ptr<CudaW4Linear> w4_;  // the 4-bit kernels, loaded on first use
  std::shared_ptr<DeviceBlockCache> blocks_;  // every op result and per-step upload
  std::shared_ptr<DeviceBlockCache> eager_blocks_;  // blocks_ while a decode is bound
  const BoundDecode* bound_ = nullptr;
  std::unique_ptr<CudaDecodeGraphs> graphs_;
  bool graphs_enabled_ = true;
  bool half_ = false;
  bool pdl_ = false;
  int gemv_l2_prefetch_ = 0;
  // The ops entry points, resolved once when the module is loaded. Those with a weight (or cast)
  // operand of f32, f16 or bf16 are indexed by its dtype (WeightSlot); cast_from_f32[f32] and
  // cast_to_f32[f32] stay empty.
  static constexpr int kWeightSlots = 3;
  struct OpsKernels {
    TypedKernel<kernels::CastParams> cast_from_f32[kWeightSlots];
    TypedKernel<kernels::CastParams> cast_to_f32[kWeightSlots];
    TypedKernel<kernels::CastParams> cast_f16_bf16, cast_bf16_f16;
    TypedKernel<kernels::EmbeddingParams> embedding[kWeightSlots];
    // [weight][activation: 0 f32, 1 f16]
    TypedKernel<kernels::AddBiasParams> add_bias[kWeightSlots][2];
    TypedKernel<kernels::RmsNormParams> rms_norm[kWeightSlots][2];  // by output
    // [weight][0: f32 x and output, 1: f16 x and output, 2: f32 x, f16 output]
    TypedKernel<kernels::AddRmsNormParams> add_rms_norm[kWeightSlots][3];
    TypedKernel<kernels::FillNormalParams> fill_normal[kWeightSlots];
    TypedKernel<kernels::BinaryParams> add[2][2];  // [a is f16][b is f16]
    // By activation dtype (0 f32, 1 f16).
    TypedKernel<kernels::SiluMulParams> silu_mul[2];
    TypedKernel<kernels::GatherRowsParams> gather_rows[2];
    TypedKernel<kernels::RotaryEmbeddingParams> rotary[2];
    TypedKernel<kernels::SampleParams> sample;
    TypedKernel<kernels::TargetNllParams> target_nll;
    TypedKernel<kernels::ColumnRangesParams> column_ranges;
    TypedKernel<kernels::ReadProbeParams> read_probe;
    // [0 f16, 1 bf16][codegen::GemvVariants() index]
    std::vector<TypedKernel<kernels::GemvParams>> gemv[2];
  } ops_;
  int gemv_choice_ = -1;  // kGemvByRule
  // The tuning's GEMV choices by (tokens, out, in, dtype): a variant index, or -1 (cuBLASLt).
  std::map<std::tuple<int64_t, int64_t, int64_t, int>, int> tuned_gemv_;
  int threads_ = kOpsKernelThreads;
  int max_blocks_ = 1024;
  // Uploads by (host address, dtype, bytes); each entry keeps the host owner alive so the
  // address cannot be reused for other data while it is cached.
  struct Upload {
    std::shared_ptr<const void> host_owner;
    Tensor device;
  };
  std::map<std::tuple<const void*, int, int64_t>, Upload> uploads_;
  std::map<const void*, Tensor> f16_copies_;  // by f32 device weight address
  std::map<std::string, Tensor> inv_freq_;    // fixed rotary tables by parameters
  std::vector<int32_t> positions_host_;
  Tensor positions_dev_;
  CudaKernelSource kernels_;
  std::map<std::string, std::unique_ptr<CudaAttention>> attention_;
  std::map<std::string, std::unique_ptr<CudaKivi>> kivi_;
  // Device staging maps of each block_channel cache (cuda_kivi.h KiviView), -1-filled at
  // creation (a new cache at the same address replaces its entry).
  std::map<const KvCache*, Tensor> kivi_maps_;
  // Calibrated (zp, scale) lists of one cache layer on the device, with the host values they
  // were made from (a new cache at the same address gets fresh arrays).
  struct LayerQuant {
    std::vector<float> host;
    Tensor k_zp, k_scale, v_zp, v_scale;
  };
  std::map<std::pair<const KvCache*, int>, LayerQuant> layer_quant_;
  std::map<int, Tensor> zero_freq_;  // identity rotation tables by head_dim / 2
  std::vector<int32_t> step_host_[2];
  Tensor step_dev_[2];
  // Mapped pinned host ints the embedding kernel fills for a bad id (see CheckDeferredErrors).
  int* error_flag_ = nullptr;
  int64_t weight_bytes_ = 0;
};

}  // namespace kvcc::runtime
