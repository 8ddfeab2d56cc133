// The NVRTC attention kernels on the GPU against the CPU side's definitions: the cache is
// encoded with runtime/kv_row_codec (the CPU backend's bit-exact row format) and the reference
// attention is computed in double over the rows DecodeKvRow reads back, so quantized schemes
// are checked against the CPU emulation of the formula. Fresh random inputs every run; outputs
// are poisoned before each launch. Skips when no GPU is present.
#include "runtime/cuda/cuda_attention.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ir/half.h"
#include "runtime/kv_cache_layout.h"
#include "ir/kv_quant.h"
#include "runtime/kv_row_codec.h"
#include "runtime/rotary.h"
#include "tests/fresh_kernel_cache.h"
#include "tests/gpu_skip.h"
#include "tests/test_util.h"

namespace kvcc::runtime {
namespace {

using ir::DType;
using ir::KvGranularity;


// Kernels compiled once per test process: repeated specs (several tests, split counts) load
// from the cache instead of recompiling, and no earlier run's entries are seen.
codegen::KernelCache* TestKernelCache() {
  static auto* cache = new codegen::KernelCache(testing::FreshKernelCacheDir());
  return cache;
}

// A device allocation freed on scope exit.
class DeviceBuffer {
 public:
  explicit DeviceBuffer(size_t bytes) : bytes_(std::max<size_t>(bytes, 16)) {
    if (cudaMalloc(&ptr_, bytes_) != cudaSuccess) ptr_ = nullptr;
  }
  template <typename T>
  explicit DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size() * sizeof(T)) {
    if (ptr_ && !host.empty()) cudaMemcpy(ptr_, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
  }
  ~DeviceBuffer() { cudaFree(ptr_); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  template <typename T = void>
  T* get() const { return static_cast<T*>(ptr_); }
  template <typename T>
  std::vector<T> Download(size_t count) const {
    std::vector<T> host(count);
    EXPECT_EQ(cudaMemcpy(host.data(), ptr_, count * sizeof(T), cudaMemcpyDeviceToHost), cudaSuccess);
    return host;
  }
  void Poison() { cudaMemset(ptr_, 0xFF, bytes_); }  // NaN in fp16 and fp32

 private:
  void* ptr_ = nullptr;
  size_t bytes_;
};

struct SchemeCase {
  const char* name;
  ir::KvStorage k, v;
  // The storage of both parts, without parameters.
  ir::KvCacheScheme Storage() const {
    ir::KvCacheScheme s;
    s.SetPart(KvPart::kKey, k);
    s.SetPart(KvPart::kValue, v);
    return s;
  }
};
constexpr ir::KvStorage kF16{DType::kF16, KvGranularity::kNone};
constexpr ir::KvStorage kI8Layer{DType::kI8, KvGranularity::kPerLayer};
constexpr ir::KvStorage kI8Head{DType::kI8, KvGranularity::kPerHead};
constexpr ir::KvStorage kI4Head{DType::kI4, KvGranularity::kPerHead};
constexpr ir::KvStorage kI8Online{DType::kI8, KvGranularity::kOnline};
constexpr ir::KvStorage kI4Online{DType::kI4, KvGranularity::kOnline};
constexpr ir::KvStorage kI4Channel{DType::kI4, KvGranularity::kPerChannel};
constexpr ir::KvStorage kFp8Layer{DType::kFP8E4M3, KvGranularity::kPerLayer};
constexpr ir::KvStorage kFp8Head{DType::kFP8E4M3, KvGranularity::kPerHead};
constexpr ir::KvStorage kFp8Channel{DType::kFP8E4M3, KvGranularity::kPerChannel};
const SchemeCase kSchemes[] = {
    {"f16", kF16, kF16},
    {"i8_per_layer", kI8Layer, kI8Layer},
    {"i8_per_head", kI8Head, kI8Head},
    {"i4_per_head", kI4Head, kI4Head},
    {"i8_online", kI8Online, kI8Online},
    {"i4_online", kI4Online, kI4Online},
    {"k8v4", kI8Head, kI4Online},
    {"k8_head_v4_head", kI8Head, kI4Head},
    {"k8v4_online", kI8Online, kI4Online},
    {"fp8_per_tensor", kFp8Layer, kFp8Layer},
    {"fp8_per_head", kFp8Head, kFp8Head},
    {"i4_kchannel", kI4Channel, kI4Online},
    {"i4_channel", kI4Channel, kI4Channel},
    {"fp8_kchannel", kFp8Channel, kFp8Head},
};

struct ShapeCase {
  int head_dim, heads, kv_heads;
};
const ShapeCase kShapes[] = {{8, 8, 4}, {64, 8, 8}, {64, 8, 4}, {128, 8, 2}, {128, 4, 4}};

ir::KvCacheScheme MakeScheme(const SchemeCase& sc, int kv_heads, int head_dim, std::mt19937& rng) {
  ir::KvCacheScheme s = sc.Storage();
  std::uniform_real_distribution<float> lo(-2.5f, -1.5f), hi(1.5f, 2.5f);
  for (KvPart part : {KvPart::kKey, KvPart::kValue}) {
    const ir::KvStorage st = s.Part(part);
    const size_t n = ir::KvParamCount(st, kv_heads, head_dim);
    auto& zps = part == KvPart::kKey ? s.k_zp : s.v_zp;
    auto& scales = part == KvPart::kKey ? s.k_scale : s.v_scale;
    for (size_t i = 0; i < n; ++i) {
      const float mn = lo(rng), mx = hi(rng);
      // Per-channel fp8 is centred (fp8-kchannel), so its non-zero zp is exercised too.
      const ir::ZpScale p =
          st.dtype != DType::kFP8E4M3 ? ir::CalibratedParams(mn, mx, st.dtype == DType::kI8 ? 255 : 15)
          : st.granularity == KvGranularity::kPerChannel ? ir::Fp8CenteredParams(mn, mx, 1.0f)
                                                         : ir::Fp8Params(std::max(-mn, mx));
      zps.push_back(p.zp);
      scales.push_back(p.scale);
    }
  }
  return s;
}

// A paged cache in host memory with the reference rows decoded as the CPU backend reads them.
struct HostCache {
  KvCacheLayout layout;
  ir::KvCacheScheme scheme;
  std::vector<uint8_t> k, v;
  std::vector<uint16_t> kp, vp;
  std::vector<std::vector<int32_t>> tables;  // per session
  int max_blocks = 0;

  HostCache(const ShapeCase& shape, const ir::KvCacheScheme& s, int block_size,
            const std::vector<int>& lens, std::mt19937& rng)
      : scheme(s) {
    layout.num_layers = 1;
    layout.kv_heads = shape.kv_heads;
    layout.head_dim = shape.head_dim;
    layout.block_size = block_size;
    layout.SetStorage(s);
    int64_t blocks = 0;
    for (int len : lens) {
      const int nb = (len + block_size - 1) / block_size;
      max_blocks = std::max(max_blocks, nb);
      blocks += nb;
    }
    max_blocks = std::max(max_blocks, 1);
    layout.num_blocks = blocks + 3;  // spare blocks stay garbage: nobody may read them
    // Blocks handed out in a random order so the table indirection matters.
    std::vector<int32_t> ids(layout.num_blocks);
    std::iota(ids.begin(), ids.end(), 0);
    std::shuffle(ids.begin(), ids.end(), rng);
    size_t next = 0;
    for (int len : lens) {
      std::vector<int32_t> t(max_blocks, -1);
      for (int b = 0; b < (len + block_size - 1) / block_size; ++b) t[b] = ids[next++];
      tables.push_back(t);
    }
    std::uniform_int_distribution<int> byte(0, 255);
    k.resize(layout.num_blocks * layout.BlockBytes(KvPart::kKey));
    v.resize(layout.num_blocks * layout.BlockBytes(KvPart::kValue));
    for (auto& x : k) x = byte(rng);
    for (auto& x : v) x = byte(rng);
    const size_t params = layout.num_blocks * shape.kv_heads * block_size * 2;
    kp.assign(params, 0x3c00);
    vp.assign(params, 0x3c00);
    std::normal_distribution<float> val(0.f, 1.f);
    std::vector<float> row(shape.head_dim);
    for (size_t sess = 0; sess < lens.size(); ++sess) {
      for (int t = 0; t < lens[sess]; ++t) {
        for (int h = 0; h < shape.kv_heads; ++h) {
          for (int part = 0; part < 2; ++part) {
            for (float& x : row) x = val(rng);
            Write(static_cast<int>(sess), t, h, part == 0 ? KvPart::kKey : KvPart::kValue, row.data());
          }
        }
      }
    }
  }

  void Locate(int sess, int t, int h, KvPart part, int64_t* off, int64_t* pidx) const {
    const int blk = tables[sess][t / layout.block_size];
    const int slot = t % layout.block_size;
    *off = layout.RowOffset(part, blk, h, slot);
    *pidx = ((int64_t{blk} * layout.kv_heads + h) * layout.block_size + slot) * 2;
  }
  void Write(int sess, int t, int h, KvPart part, const float* row) {
    int64_t off, pidx;
    Locate(sess, t, h, part, &off, &pidx);
    auto& data = part == KvPart::kKey ? k : v;
    auto& params = part == KvPart::kKey ? kp : vp;
    EncodeKvRow(scheme, part, h, row, layout.head_dim, data.data() + off, params.data() + pidx);
  }
  std::vector<float> Read(int sess, int t, int h, KvPart part) const {
    int64_t off, pidx;
    Locate(sess, t, h, part, &off, &pidx);
    const auto& data = part == KvPart::kKey ? k : v;
    const auto& params = part == KvPart::kKey ? kp : vp;
    std::vector<float> out(layout.head_dim);
    DecodeKvRow(scheme, part, h, data.data() + off, params.data() + pidx, layout.head_dim,
                out.data());
    return out;
  }
};

// The cache uploaded, with the calibrated parameters as device arrays.
struct DeviceCache {
  DeviceBuffer k, v, kp, vp, kzp, ks, vzp, vs, tables;
  explicit DeviceCache(const HostCache& hc)
      : k(hc.k), v(hc.v), kp(hc.kp), vp(hc.vp), kzp(Or1(hc.scheme.k_zp)),
        ks(Or1(hc.scheme.k_scale)), vzp(Or1(hc.scheme.v_zp)), vs(Or1(hc.scheme.v_scale)),
        tables(Flatten(hc.tables)) {}
  static std::vector<float> Or1(const std::vector<float>& x) {
    return x.empty() ? std::vector<float>{1.f} : x;
  }
  static std::vector<int32_t> Flatten(const std::vector<std::vector<int32_t>>& t) {
    std::vector<int32_t> flat;
    for (const auto& row : t) flat.insert(flat.end(), row.begin(), row.end());
    return flat;
  }
  CudaKvLayer Layer(const ir::KvCacheScheme& s) {
    CudaKvLayer l;
    l.k = k.get();
    l.v = v.get();
    if (s.Part(KvPart::kKey).online()) l.k_params = kp.get<uint16_t>();
    if (s.Part(KvPart::kValue).online()) l.v_params = vp.get<uint16_t>();
    l.k_zp = kzp.get<float>();
    l.k_scale = ks.get<float>();
    l.v_zp = vzp.get<float>();
    l.v_scale = vs.get<float>();
    return l;
  }
};

// Every cached row of a HostCache decoded once: the prefill references read each row many times.
struct DecodedRows {
  const KvCacheLayout& layout;
  std::vector<std::vector<std::vector<float>>> rows;  // [session][(t * kv_heads + h) * 2 + part]
  DecodedRows(const HostCache& hc, const std::vector<int>& lens) : layout(hc.layout) {
    for (size_t sess = 0; sess < lens.size(); ++sess) {
      rows.emplace_back();
      for (int t = 0; t < lens[sess]; ++t) {
        for (int h = 0; h < layout.kv_heads; ++h) {
          for (KvPart part : {KvPart::kKey, KvPart::kValue}) {
            rows.back().push_back(hc.Read(static_cast<int>(sess), t, h, part));
          }
        }
      }
    }
  }
  const std::vector<float>& Read(int sess, int t, int h, KvPart part) const {
    return rows[sess][(size_t(t) * layout.kv_heads + h) * 2 + (part == KvPart::kKey ? 0 : 1)];
  }
};

// Reference attention of one query (already at its position) over cached tokens [0, n); `hc`
// is a HostCache or DecodedRows.
template <typename Rows>
void ReferenceAttention(const Rows& hc, int sess, int n, int h_kv, const float* q,
                        double scale, double* out) {
  const int d = hc.layout.head_dim;
  std::vector<double> scores(n);
  double mx = -1e300;
  for (int t = 0; t < n; ++t) {
    const auto& kr = hc.Read(sess, t, h_kv, KvPart::kKey);
    double s = 0;
    for (int j = 0; j < d; ++j) s += double(q[j]) * kr[j];
    scores[t] = s * scale;
    mx = std::max(mx, scores[t]);
  }
  double sum = 0;
  for (double& s : scores) sum += (s = std::exp(s - mx));
  for (int j = 0; j < d; ++j) out[j] = 0;
  for (int t = 0; t < n; ++t) {
    const auto& vr = hc.Read(sess, t, h_kv, KvPart::kValue);
    for (int j = 0; j < d; ++j) out[j] += scores[t] / sum * vr[j];
  }
}

std::vector<uint16_t> ToHalf(const std::vector<float>& x) {
  std::vector<uint16_t> h(x.size());
  for (size_t i = 0; i < x.size(); ++i) h[i] = ir::FloatToHalf(x[i]);
  return h;
}
std::vector<float> RoundedToHalf(const std::vector<float>& x) {
  std::vector<float> r(x.size());
  for (size_t i = 0; i < x.size(); ++i) r[i] = ir::RoundToHalf(x[i]);
  return r;
}

// Activations in the io dtype: uploaded from floats, downloaded back to floats.
void UploadIo(const std::vector<float>& x, DType io, DeviceBuffer& dst) {
  if (io == DType::kF16) {
    cudaMemcpy(dst.get(), ToHalf(x).data(), x.size() * 2, cudaMemcpyHostToDevice);
  } else {
    cudaMemcpy(dst.get(), x.data(), x.size() * 4, cudaMemcpyHostToDevice);
  }
}
std::vector<float> DownloadIo(const DeviceBuffer& src, size_t n, DType io) {
  if (io != DType::kF16) return src.Download<float>(n);
  std::vector<float> x(n);
  std::vector<uint16_t> h = src.Download<uint16_t>(n);
  for (size_t i = 0; i < n; ++i) x[i] = ir::HalfToFloat(h[i]);
  return x;
}

struct ErrorStats {
  double diff2 = 0, ref2 = 0;
  bool finite = true;
  void Add(double got, double want) {
    if (!std::isfinite(got)) finite = false;
    diff2 += (got - want) * (got - want);
    ref2 += want * want;
  }
  double Relative() const { return std::sqrt(diff2 / std::max(ref2, 1e-30)); }
};

// The attention config of a test shape and cache scheme (io dtype and prefetch left default).
CudaAttentionConfig ConfigFor(const ShapeCase& shape, const SchemeCase& sc, int block_size) {
  CudaAttentionConfig cfg;
  cfg.heads = shape.heads;
  cfg.kv_heads = shape.kv_heads;
  cfg.head_dim = shape.head_dim;
  cfg.block_size = block_size;
  cfg.SetStorage(sc.Storage());
  return cfg;
}

void RunDecode(const ShapeCase& shape, const SchemeCase& sc, DType io, int splits,
               std::mt19937& rng, int prefetch = -1, int tc = 0, int kv_tile = 0) {
  SCOPED_TRACE(::testing::Message()
               << "hd" << shape.head_dim << " H" << shape.heads << " KVH" << shape.kv_heads << " "
               << sc.name << " io " << ir::DTypeName(io) << " splits " << splits << " prefetch "
               << prefetch << " tc " << tc << " kv_tile " << kv_tile);
  const int block_size = 16;
  const std::vector<int> lens = {1, 37, 300, 64, 129};
  const int batch = static_cast<int>(lens.size());
  const ir::KvCacheScheme scheme = MakeScheme(sc, shape.kv_heads, shape.head_dim, rng);
  HostCache hc(shape, scheme, block_size, lens, rng);
  DeviceCache dc(hc);
  CudaAttentionConfig cfg = ConfigFor(shape, sc, block_size);
  cfg.io_dtype = io;
  cfg.decode_prefetch = prefetch;
  cfg.decode_tc = tc;
  cfg.decode_kv_tile = kv_tile;
  auto attn = CudaAttention::Create(cfg, TestKernelCache());
  ASSERT_TRUE(attn.ok()) << attn.status();
  // The tensor-core kernel where asked for and supported (head_dim 8 falls back).
  const bool tc_applies = tc > 0 && shape.head_dim % 64 == 0 && io == DType::kF16 &&
                          sc.k.granularity != KvGranularity::kPerChannel &&
                          sc.v.granularity != KvGranularity::kPerChannel;
  EXPECT_EQ((*attn)->decode_kernel().rendered.spec.op == codegen::KernelOp::kDecodeAttentionTc,
            tc_applies);

  const size_t qn = size_t(batch) * shape.heads * shape.head_dim;
  std::normal_distribution<float> val(0.f, 1.f);
  std::vector<float> q(qn);
  for (float& x : q) x = val(rng);
  if (io == DType::kF16) q = RoundedToHalf(q);
  const size_t elem = io == DType::kF16 ? 2 : 4;
  DeviceBuffer dq(qn * elem), dout(qn * elem), dlens(lens);
  UploadIo(q, io, dq);
  const int max_len = *std::max_element(lens.begin(), lens.end());
  DecodeArgs a;
  a.q = dq.get();
  a.out = dout.get();
  a.block_tables = dc.tables.get<int32_t>();
  a.max_blocks_per_seq = hc.max_blocks;
  a.seq_lens = dlens.get<int32_t>();
  a.batch = batch;
  a.max_seq_len = max_len;
  a.scale = 1.0f / std::sqrt(float(shape.head_dim));
  a.splits = splits;
  const size_t ws_bytes = (*attn)->DecodeWorkspaceBytes(batch, std::max(splits, 64));
  DeviceBuffer ws(ws_bytes);
  a.workspace = ws.get();
  a.workspace_bytes = ws_bytes;
  dout.Poison();
  KVCC_ASSERT_OK((*attn)->Decode(dc.Layer(scheme), a, nullptr));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  const std::vector<float> got = DownloadIo(dout, qn, io);
  ErrorStats err;
  std::vector<double> ref(shape.head_dim);
  const int group = shape.heads / shape.kv_heads;
  for (int b = 0; b < batch; ++b) {
    for (int h = 0; h < shape.heads; ++h) {
      const size_t base = (size_t(b) * shape.heads + h) * shape.head_dim;
      ReferenceAttention(hc, b, lens[b], h / group, q.data() + base, a.scale, ref.data());
      for (int j = 0; j < shape.head_dim; ++j) err.Add(got[base + j], ref[j]);
    }
  }
  EXPECT_TRUE(err.finite) << "unwritten or non-finite outputs";
  // fp32 arithmetic over the same dequantized values; fp16 outputs add their rounding.
  EXPECT_LT(err.Relative(), io == DType::kF16 ? 1e-3 : 2e-5);
}

TEST(CudaAttention, DecodeMatchesTheCpuEmulationForEveryScheme) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(std::random_device{}());
  for (const ShapeCase& shape : kShapes) {
    for (const SchemeCase& sc : kSchemes) {
      // Both load schedules: loads then compute, and the next step prefetched.
      RunDecode(shape, sc, DType::kF16, 1, rng, /*prefetch=*/0);
      RunDecode(shape, sc, DType::kF16, 3, rng, /*prefetch=*/1);
    }
  }
}

// The tensor-core kernel over every scheme at GQA 4:1, head_dim 128, and a spread of schemes
// over groups of 1, 2, 8 and 16 query heads per kv head at head_dim 64 and 128 (and head_dim 8,
// which falls back to the scalar kernel), odd context lengths (not multiples of its 16-token
// chunks), one and three splits, and at GQA 4:1 and 8:1 the 32-token step (kv_tile 32: two
// chunks a step, a warp's last step often with one); ~37 specializations, about a minute.
TEST(CudaAttention, TensorCoreDecodeMatchesTheCpuEmulation) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(std::random_device{}());
  auto scheme = [](const char* name) -> const SchemeCase& {
    for (const SchemeCase& sc : kSchemes) {
      if (std::string(name) == sc.name) return sc;
    }
    ADD_FAILURE() << "no scheme " << name;
    return kSchemes[0];
  };
  struct Case {
    ShapeCase shape;
    std::vector<const char*> schemes;
  };
  std::vector<const char*> all;
  for (const SchemeCase& sc : kSchemes) all.push_back(sc.name);
  const Case cases[] = {
      {{128, 8, 2}, all},
      {{64, 8, 1}, {"f16", "i8_per_layer", "i4_online", "fp8_per_tensor", "k8v4"}},
      {{128, 4, 4}, {"i8_per_head", "i4_per_head"}},
      {{64, 16, 1}, {"i8_online", "fp8_per_head"}},
      {{64, 8, 4}, {"k8_head_v4_head", "k8v4_online"}},
      {{8, 8, 4}, {"i8_per_head"}},
  };
  for (const Case& c : cases) {
    for (const char* name : c.schemes) {
      RunDecode(c.shape, scheme(name), DType::kF16, 1, rng, -1, /*tc=*/1);
      RunDecode(c.shape, scheme(name), DType::kF16, 3, rng, -1, /*tc=*/1);
    }
  }
  for (const char* name : all) {
    RunDecode({128, 8, 2}, scheme(name), DType::kF16, 3, rng, -1, /*tc=*/1, /*kv_tile=*/32);
  }
  RunDecode({64, 8, 1}, scheme("i4_online"), DType::kF16, 1, rng, -1, /*tc=*/1, /*kv_tile=*/32);
  RunDecode({64, 8, 1}, scheme("k8v4"), DType::kF16, 2, rng, -1, /*tc=*/1, /*kv_tile=*/32);
}

TEST(CudaAttention, DecodeWithFp32ActivationsAndManySplits) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(std::random_device{}());
  RunDecode({128, 8, 2}, kSchemes[0], DType::kF32, 0, rng);
  RunDecode({64, 8, 4}, kSchemes[2], DType::kF32, 10, rng);
  RunDecode({8, 8, 4}, kSchemes[5], DType::kF32, 2, rng);
}

// One prefill launch: session b's queries are its tokens [lens[b] - qlens[b], lens[b]) (its
// cache holds at least lens[b] tokens); checked against the reference, returns the output.
struct PrefillCase {
  std::vector<int> qlens, lens;
  int block_size = 16;
  DType io = DType::kF16;
  bool tensor_cores = true;
  int threads = 0;  // the kernel's CTA size (0: the default)
  int q_tile = 0;   // tensor-core kernel: queries a CTA, threads / 2 or threads (0: default)
  int kv_tile = 0;  // cache tokens a step (0: default)
};
std::vector<float> RunPrefillOn(const ShapeCase& shape, const SchemeCase& sc, const HostCache& hc,
                                const DecodedRows& rows, const PrefillCase& pc,
                                const std::vector<float>& q_all, const std::vector<int>& q_offset) {
  SCOPED_TRACE(::testing::Message() << "prefill hd" << shape.head_dim << " H" << shape.heads
                                    << " KVH" << shape.kv_heads << " " << sc.name << " block "
                                    << pc.block_size << " io " << ir::DTypeName(pc.io)
                                    << (pc.tensor_cores ? " tc" : " scalar") << " threads "
                                    << pc.threads << " q_tile " << pc.q_tile << " kv_tile "
                                    << pc.kv_tile);
  DeviceCache dc(hc);
  CudaAttentionConfig cfg = ConfigFor(shape, sc, pc.block_size);
  cfg.io_dtype = pc.io;
  cfg.prefill_tensor_cores = pc.tensor_cores;
  cfg.prefill_threads = pc.threads;
  cfg.prefill_q_tile = pc.q_tile;
  cfg.prefill_kv_tile = pc.kv_tile;
  auto attn = CudaAttention::Create(cfg, TestKernelCache());
  EXPECT_TRUE(attn.ok()) << attn.status();
  if (!attn.ok()) return {};
  const int batch = static_cast<int>(pc.qlens.size());
  const size_t w = size_t(shape.heads) * shape.head_dim;
  std::vector<int> q_start = {0};
  for (int ql : pc.qlens) q_start.push_back(q_start.back() + ql);
  const int tokens = q_start.back();
  // This launch's queries: session b's rows of q_all (one row per cached position).
  std::vector<float> q(size_t(tokens) * w);
  for (int b = 0; b < batch; ++b) {
    const int first = pc.lens[b] - pc.qlens[b];
    std::copy(q_all.begin() + (q_offset[b] + first) * w,
              q_all.begin() + (q_offset[b] + pc.lens[b]) * w, q.begin() + q_start[b] * w);
  }
  const size_t qn = q.size(), elem = pc.io == DType::kF16 ? 2 : 4;
  DeviceBuffer dq(qn * elem), dout(qn * elem), dlens(pc.lens), dstart(q_start);
  UploadIo(q, pc.io, dq);
  PrefillArgs a;
  a.q = dq.get();
  a.out = dout.get();
  a.block_tables = dc.tables.get<int32_t>();
  a.max_blocks_per_seq = hc.max_blocks;
  a.seq_lens = dlens.get<int32_t>();
  a.q_start = dstart.get<int32_t>();
  a.batch = batch;
  a.max_q_len = *std::max_element(pc.qlens.begin(), pc.qlens.end());
  a.scale = 1.0f / std::sqrt(float(shape.head_dim));
  dout.Poison();
  EXPECT_TRUE((*attn)->Prefill(dc.Layer(hc.scheme), a, nullptr).ok());
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  std::vector<float> got = DownloadIo(dout, qn, pc.io);
  ErrorStats err;
  std::vector<double> ref(shape.head_dim);
  const int group = shape.heads / shape.kv_heads;
  for (int b = 0; b < batch; ++b) {
    for (int i = 0; i < pc.qlens[b]; ++i) {
      const int pos = pc.lens[b] - pc.qlens[b] + i;
      for (int hh = 0; hh < shape.heads; ++hh) {
        const size_t base = (size_t(q_start[b]) + i) * w + size_t(hh) * shape.head_dim;
        ReferenceAttention(rows, b, pos + 1, hh / group, q.data() + base, a.scale, ref.data());
        for (int j = 0; j < shape.head_dim; ++j) err.Add(got[base + j], ref[j]);
      }
    }
  }
  EXPECT_TRUE(err.finite) << "unwritten or non-finite outputs";
  // The tensor-core kernel rounds Q, the dequantized K/V and P to f16 on the way into the MMAs.
  EXPECT_LT(err.Relative(), pc.tensor_cores ? 2e-3 : 1e-3);
  return got;
}

// A fresh cache of `cached` tokens per session and one query row per cached position, then
// the case `pc` (its lens at most `cached`) on it.
void RunPrefill(const ShapeCase& shape, const SchemeCase& sc, const PrefillCase& pc,
                std::mt19937& rng) {
  const ir::KvCacheScheme scheme = MakeScheme(sc, shape.kv_heads, shape.head_dim, rng);
  HostCache hc(shape, scheme, pc.block_size, pc.lens, rng);
  const DecodedRows rows(hc, pc.lens);
  std::vector<int> q_offset = {0};
  for (int len : pc.lens) q_offset.push_back(q_offset.back() + len);
  std::normal_distribution<float> val(0.f, 1.f);
  std::vector<float> q_all(size_t(q_offset.back()) * shape.heads * shape.head_dim);
  for (float& x : q_all) x = ir::RoundToHalf(val(rng));
  RunPrefillOn(shape, sc, hc, rows, pc, q_all, q_offset);
}

TEST(CudaAttention, PrefillIsCausalOverThePagedCache) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(std::random_device{}());
  PrefillCase pc;
  pc.qlens = {1, 17, 40};
  pc.lens = {9, 17, 75};  // cached tokens including the new ones
  // The tensor-core kernel where the shape allows (head_dim 8 takes the scalar one).
  for (const ShapeCase& shape : kShapes) {
    for (const SchemeCase& sc : kSchemes) RunPrefill(shape, sc, pc, rng);
  }
  // The scalar kernel at the shapes the tensor-core one would take.
  pc.tensor_cores = false;
  RunPrefill({64, 8, 4}, kSchemes[0], pc, rng);
  RunPrefill({128, 8, 2}, kSchemes[2], pc, rng);
  RunPrefill({128, 4, 4}, kSchemes[11], pc, rng);
}

// The tensor-core kernel over several query and cache tiles per session (lengths off the
// 64-token tiles and the blocks): every scheme at head_dim 64 and 128, GQA 1, 2, 4 and 8, block
// sizes 16 and 64, f32 activations. Shapes and block size of the test above, so most kernels
// come from the process's cache.
TEST(CudaAttention, PrefillOnTensorCoresOverManyTiles) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(std::random_device{}());
  PrefillCase pc;
  pc.qlens = {1, 130, 77};
  pc.lens = {50, 130, 201};
  for (const ShapeCase& shape : {ShapeCase{64, 8, 4}, ShapeCase{128, 8, 2}}) {
    for (const SchemeCase& sc : kSchemes) RunPrefill(shape, sc, pc, rng);
  }
  for (int s : {0, 2, 6}) RunPrefill({128, 8, 1}, kSchemes[s], pc, rng);
  RunPrefill({128, 4, 4}, kSchemes[0], pc, rng);
  pc.block_size = 64;
  for (int s : {0, 2}) RunPrefill({64, 16, 4}, kSchemes[s], pc, rng);
  RunPrefill({128, 8, 8}, kSchemes[4], pc, rng);
  // 4 warps (64-query tiles) instead of the default 8.
  pc.threads = 128;
  for (int s : {0, 2, 6, 11}) RunPrefill({128, 8, 2}, kSchemes[s], pc, rng);
  RunPrefill({64, 8, 4}, kSchemes[0], pc, rng);
  // 32 query rows a warp (Q re-read from shared memory): 4 and 8 warps, 32- and 64-token steps.
  for (int threads : {128, 256}) {
    for (int kv_tile : {32, 64}) {
      pc.threads = threads;
      pc.q_tile = threads;
      pc.kv_tile = kv_tile;
      for (int s : {0, 2, 5, 6, 10, 12}) RunPrefill({128, 8, 2}, kSchemes[s], pc, rng);
      for (int s : {0, 4}) RunPrefill({64, 8, 4}, kSchemes[s], pc, rng);
    }
  }
  pc.threads = 128;
  pc.q_tile = 128;
  pc.kv_tile = 0;
  RunPrefill({128, 8, 8}, kSchemes[0], pc, rng);
  RunPrefill({64, 16, 4}, kSchemes[9], pc, rng);
  PrefillCase f32;
  f32.qlens = {100, 3};
  f32.lens = {100, 70};
  f32.io = DType::kF32;
  RunPrefill({128, 8, 2}, kSchemes[0], f32, rng);
  RunPrefill({64, 8, 4}, kSchemes[4], f32, rng);
  f32.threads = 128;
  f32.q_tile = 128;
  RunPrefill({128, 8, 2}, kSchemes[2], f32, rng);
}

// A prompt prefilled in chunks (each attending to the earlier chunks in the cache and to itself
// causally) gives the one-shot prefill's outputs: every row takes the same K/V tiles in the same
// order, the extra masked ones adding exact zeros.
TEST(CudaAttention, ChunkedPrefillEqualsOneShot) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(std::random_device{}());
  const ShapeCase shape{128, 8, 2};
  for (const SchemeCase& sc : {kSchemes[0], kSchemes[2], kSchemes[6], kSchemes[9]}) {
    // (threads, q_tile): the default, 4 warps of 16 rows, 4 and 8 warps of 32 rows.
    const std::pair<int, int> variants[] = {{0, 0}, {128, 0}, {128, 128}, {256, 256}};
    for (const auto& [threads, q_tile] : variants) {
      const std::vector<int> lens = {333, 150};
      PrefillCase whole;
      whole.threads = threads;
      whole.q_tile = q_tile;
      whole.qlens = lens;
      whole.lens = lens;
      const ir::KvCacheScheme scheme = MakeScheme(sc, shape.kv_heads, shape.head_dim, rng);
      HostCache hc(shape, scheme, whole.block_size, lens, rng);
      const DecodedRows rows(hc, lens);
      const std::vector<int> q_offset = {0, lens[0], lens[0] + lens[1]};
      std::normal_distribution<float> val(0.f, 1.f);
      std::vector<float> q_all(size_t(q_offset.back()) * shape.heads * shape.head_dim);
      for (float& x : q_all) x = ir::RoundToHalf(val(rng));
      const std::vector<float> one = RunPrefillOn(shape, sc, hc, rows, whole, q_all, q_offset);
      ASSERT_FALSE(one.empty());
      // Session 0 in chunks ending at 100, 229 and 333; session 1 in chunks ending at 64 and 150.
      const std::vector<std::vector<int>> ends = {{100, 229, 333}, {64, 150, 150}};
      const size_t w = size_t(shape.heads) * shape.head_dim;
      for (int c = 0; c < 3; ++c) {
        PrefillCase chunk = whole;
        for (int b = 0; b < 2; ++b) {
          const int begin = c == 0 ? 0 : ends[b][c - 1];
          chunk.lens[b] = ends[b][c];
          chunk.qlens[b] = ends[b][c] - begin;
        }
        if (chunk.qlens[1] == 0) {  // session 1 is done: the last chunk is session 0's alone
          chunk.lens.pop_back();
          chunk.qlens.pop_back();
        }
        const std::vector<float> got =
            RunPrefillOn(shape, sc, hc, rows, chunk, q_all, q_offset);
        ASSERT_FALSE(got.empty());
        size_t at = 0;
        for (size_t b = 0; b < chunk.lens.size(); ++b) {
          const int first = chunk.lens[b] - chunk.qlens[b];
          const int whole_row = (b == 0 ? 0 : lens[0]) + first;
          for (size_t i = 0; i < size_t(chunk.qlens[b]) * w; ++i, ++at) {
            ASSERT_EQ(got[at], one[whole_row * w + i])
                << sc.name << " threads " << threads << " q_tile " << q_tile << " chunk " << c
                << " session " << b << " element " << i;
          }
        }
      }
    }
  }
}

void RunRotaryWrite(const ShapeCase& shape, const SchemeCase& sc, std::mt19937& rng) {
  SCOPED_TRACE(::testing::Message() << "rotary write hd" << shape.head_dim << " " << sc.name);
  const int block_size = 16, tokens = 23;
  const ir::KvCacheScheme scheme = MakeScheme(sc, shape.kv_heads, shape.head_dim, rng);
  // A cache holding one session of `tokens` tokens; the kernel writes all of them.
  HostCache hc(shape, scheme, block_size, {tokens}, rng);
  DeviceCache dc(hc);
  CudaAttentionConfig cfg = ConfigFor(shape, sc, block_size);
  cfg.io_dtype = DType::kF32;
  auto attn = CudaAttention::Create(cfg, nullptr);
  ASSERT_TRUE(attn.ok()) << attn.status();

  const int kvw = shape.kv_heads * shape.head_dim, qw = shape.heads * shape.head_dim;
  std::normal_distribution<float> val(0.f, 1.f);
  std::vector<float> k(size_t(tokens) * kvw), v(k.size()), q(size_t(tokens) * qw);
  for (float& x : k) x = val(rng);
  for (float& x : v) x = val(rng);
  for (float& x : q) x = val(rng);
  std::vector<int32_t> positions(tokens), slots(tokens);
  std::uniform_int_distribution<int> posd(0, 4000);
  for (int t = 0; t < tokens; ++t) {
    positions[t] = posd(rng);
    slots[t] = hc.tables[0][t / block_size] * block_size + t % block_size;
  }
  RotaryParams rp;
  rp.heads = shape.kv_heads;
  rp.head_dim = shape.head_dim;
  rp.theta = 10000.0;
  const std::vector<float> inv_freq = RotaryInvFreq(rp, 0);
  DeviceBuffer dk(k), dv(v), dq(q), dpos(positions), dslots(slots), dfreq(inv_freq);
  RotaryWriteArgs a;
  a.k = dk.get();
  a.k_stride = kvw;
  a.v = dv.get();
  a.v_stride = kvw;
  a.q = dq.get();
  a.q_stride = qw;
  a.num_tokens = tokens;
  a.positions = dpos.get<int32_t>();
  a.slot_mapping = dslots.get<int32_t>();
  a.inv_freq = dfreq.get<float>();
  KVCC_ASSERT_OK((*attn)->RotaryCacheWrite(dc.Layer(scheme), a, nullptr));
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);

  HostCache got = hc;
  got.k = dc.k.Download<uint8_t>(hc.k.size());
  got.v = dc.v.Download<uint8_t>(hc.v.size());
  got.kp = dc.kp.Download<uint16_t>(hc.kp.size());
  got.vp = dc.vp.Download<uint16_t>(hc.vp.size());
  const std::vector<float> q_rot = dq.Download<float>(q.size());
  // Expected: the CPU rotary then the CPU row encoding, compared after decoding. Rotation in
  // float on both sides differs by rounding only; a quantized value may then land one step
  // away, so the bound is one quantization step (the row's scale) plus fp16 rounding.
  double worst_steps = 0;
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < shape.kv_heads; ++h) {
      for (int part = 0; part < 2; ++part) {
        const KvPart kp = part == 0 ? KvPart::kKey : KvPart::kValue;
        std::vector<float> row((part == 0 ? k : v).begin() + size_t(t) * kvw + h * shape.head_dim,
                               (part == 0 ? k : v).begin() + size_t(t) * kvw + (h + 1) * shape.head_dim);
        if (part == 0) ApplyRotary(inv_freq.data(), shape.head_dim, positions[t], row.data());
        hc.Write(0, t, h, kp, row.data());
        const std::vector<float> want = hc.Read(0, t, h, kp);
        const std::vector<float> have = got.Read(0, t, h, kp);
        int64_t off, pidx;
        hc.Locate(0, t, h, kp, &off, &pidx);
        const ir::KvStorage st = scheme.Part(kp);
        for (int j = 0; j < shape.head_dim; ++j) {
          // One step: the row's online scale, the calibrated scale, or for fp8 one e4m3 ulp
          // at the stored value (value - zp: at most 1/8 of it, 2^-9 in the subnormals) times
          // the scale.
          double step = 0;
          if (st.online()) {
            step = ir::HalfToFloat((part == 0 ? hc.kp : hc.vp)[pidx]);
          } else if (st.calibrated()) {
            const double sc_j = scheme.Scale(kp, h, j, shape.head_dim);
            const double zp_j = scheme.Zp(kp, h, j, shape.head_dim);
            step = st.dtype == DType::kFP8E4M3
                       ? std::max(std::fabs(want[j] - zp_j) / 8.0, sc_j / 512.0)
                       : sc_j;
          }
          const double tol = 1.01 * step + 2e-3 * std::fabs(want[j]) + 1e-5;
          ASSERT_LE(std::fabs(have[j] - want[j]), tol)
              << "token " << t << " head " << h << (part == 0 ? " K" : " V") << " elem " << j;
          if (step > 0) worst_steps = std::max(worst_steps, std::fabs(have[j] - want[j]) / step);
        }
      }
    }
  }
  // Q rotated in place.
  for (int t = 0; t < tokens; ++t) {
    for (int h = 0; h < shape.heads; ++h) {
      std::vector<float> row(q.begin() + size_t(t) * qw + h * shape.head_dim,
                             q.begin() + size_t(t) * qw + (h + 1) * shape.head_dim);
      ApplyRotary(inv_freq.data(), shape.head_dim, positions[t], row.data());
      for (int j = 0; j < shape.head_dim; ++j) {
        ASSERT_NEAR(q_rot[size_t(t) * qw + h * shape.head_dim + j], row[j], 1e-4 + 1e-4 * std::fabs(row[j]));
      }
    }
  }
  std::printf("rotary write hd%d %s: worst difference %.2f quantization steps\n", shape.head_dim,
              sc.name, worst_steps);
}

TEST(CudaAttention, RotaryCacheWriteMatchesCpuRotaryAndEncoding) {
  SKIP_WITHOUT_GPU();
  std::mt19937 rng(std::random_device{}());
  for (const ShapeCase& shape : kShapes) {
    for (const SchemeCase& sc : kSchemes) RunRotaryWrite(shape, sc, rng);
  }
}

// The driver's view of the loaded kernels agrees with the ptxas report parsed at compile time.
TEST(CudaAttention, DriverReportsTheCompiledRegisterCount) {
  SKIP_WITHOUT_GPU();
  for (const SchemeCase& sc : kSchemes) {
    CudaAttentionConfig cfg;
    cfg.heads = 32;
    cfg.kv_heads = 32;
    cfg.head_dim = 128;
    cfg.SetStorage(sc.Storage());
    auto attn = CudaAttention::Create(cfg, TestKernelCache());
    ASSERT_TRUE(attn.ok()) << attn.status();
    auto attr = (*attn)->DecodeAttributes();
    ASSERT_TRUE(attr.ok()) << attr.status();
    const codegen::ResourceUsage& u = (*attn)->decode_kernel().compiled.usage;
    EXPECT_EQ(attr->numRegs, u.registers) << sc.name;
    EXPECT_EQ(static_cast<int>(attr->localSizeBytes), u.stack_bytes) << sc.name;
    std::printf("decode hd128 %s: %d registers, %zu bytes local (driver)\n", sc.name,
                attr->numRegs, attr->localSizeBytes);
  }
}

TEST(CudaAttention, BadArgumentsAreErrorsNotCrashes) {
  SKIP_WITHOUT_GPU();
  CudaAttentionConfig cfg;
  cfg.heads = 8;
  cfg.kv_heads = 3;
  cfg.head_dim = 64;
  EXPECT_FALSE(CudaAttention::Create(cfg, nullptr).ok());
  cfg.kv_heads = 4;
  auto attn = CudaAttention::Create(cfg, nullptr);
  ASSERT_TRUE(attn.ok()) << attn.status();
  DecodeArgs a;
  CudaKvLayer layer;
  EXPECT_FALSE((*attn)->Decode(layer, a, nullptr).ok());
  DeviceBuffer buf(1 << 20);
  layer.k = layer.v = buf.get();
  a.q = a.out = buf.get();
  a.block_tables = a.seq_lens = buf.get<int32_t>();
  a.batch = 2;
  a.max_seq_len = 4096;
  a.max_blocks_per_seq = 64;
  a.splits = 4;  // without a workspace
  absl::Status s = (*attn)->Decode(layer, a, nullptr);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(std::string(s.message()).find("workspace"), std::string::npos) << s;
}

}  // namespace
}  // namespace kvcc::runtime
