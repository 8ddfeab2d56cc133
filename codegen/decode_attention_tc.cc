#include "codegen/decode_attention_tc.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kvcc::codegen {
namespace {

constexpr int kChunk = 16;  // tokens a warp stages per step (decode_attention_tc.cuh)
constexpr int kMaxShared = 48 * 1024;

int Bits(ir::DType d) { return d == ir::DType::kF16 ? 16 : ir::DTypeBits(d); }

// One warp's stage: 16 padded K and V rows and the online parameters.
int StageBytes(const KernelSpec& s) {
  const int k_row = s.head_dim * Bits(s.k().dtype) / 8 + 16;
  const int v_row = s.head_dim * Bits(s.v().dtype) / 8 + 16;
  return kChunk * (k_row + v_row) + 2 * kChunk * 4;
}

// Four warps, unless not even two stages of four fit (f16 at head_dim 128).
int DefaultThreads(const KernelSpec& s) { return 2 * StageBytes(s) * 4 <= kMaxShared ? 128 : 64; }

}  // namespace

bool DecodeTcSupports(const KernelSpec& s) {
  const bool per_channel = s.k().granularity == ir::KvGranularity::kPerChannel ||
                           s.v().granularity == ir::KvGranularity::kPerChannel;
  return (s.head_dim == 64 || s.head_dim == 128) && s.block_size % kChunk == 0 &&
         s.io_dtype == ir::DType::kF16 && !per_channel && s.arch >= 80 && s.kv_heads > 0 &&
         s.heads % s.kv_heads == 0 && s.group() <= 16;
}

bool DecodeTcPreferred(const KernelSpec& s) {
  const bool int4 = s.k().dtype == ir::DType::kI4 && s.v().dtype == ir::DType::kI4;
  return DecodeTcSupports(s) && (s.group() >= 2 || int4);
}

void SelectDecodeKernel(int tc, KernelSpec* s) {
  const bool use = tc < 0 ? DecodeTcPreferred(*s) : tc > 0 && DecodeTcSupports(*s);
  s->op = use ? KernelOp::kDecodeAttentionTc : KernelOp::kDecodeAttention;
  if (use) {
    s->vec_bytes = 0;
    s->prefetch = -1;
    if (s->min_blocks == 0) s->min_blocks = DecodeTcMinBlocks(*s);
  }
}

int DecodeTcSplits(int64_t ctas, int sms, int64_t slots, int max_seq_len) {
  ctas = std::max<int64_t>(ctas, 1);
  if (ctas >= sms) return 1;
  const int64_t one_wave = std::max<int64_t>(1, slots / ctas);
  return static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(one_wave, max_seq_len / 512)));
}

int DecodeTcMinBlocks(const KernelSpec& s) {
  const int threads = s.threads > 0 ? s.threads : DefaultThreads(s);
  const int warps = s.group() > 8 ? 12 : 16;
  return std::max(1, warps * 32 / threads);
}

int DecodeTcSharedBytes(const KernelSpec& s) {
  const int warps = s.threads / 32;
  const int pipe = warps * std::max(s.unroll, 1) * StageBytes(s);
  const int epi = warps * s.group() * (s.head_dim + 2) * 4;
  return std::max(pipe, epi);
}

absl::Status ResolveDecodeTcDefaults(KernelSpec* s) {
  if (!DecodeTcSupports(*s)) {
    return absl::InvalidArgumentError(
        "the tensor-core decode kernel needs head_dim 64 or 128, a block size that is a "
        "multiple of 16, f16 activations, no per-channel part and sm_80 or later");
  }
  if (s->vec_bytes != 0 || s->prefetch > 0) {
    return absl::InvalidArgumentError(
        "vec_bytes and prefetch are the scalar decode kernel's; leave them 0 and -1");
  }
  if (s->threads == 0) s->threads = DefaultThreads(*s);
  if (s->threads % 32 != 0 || s->threads < 32 || s->threads > 512) {
    return absl::InvalidArgumentError("threads must be a multiple of 32 in [32, 512]");
  }
  const int warps = s->threads / 32;
  const int fit = kMaxShared / (warps * StageBytes(*s));
  if (s->unroll == 0) s->unroll = std::min(4, fit);
  if (s->unroll < 1 || s->unroll > fit) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unroll (pipeline stages) must be in [1, ", fit, "] for 48 KiB of shared memory"));
  }
  if (s->min_blocks == 0) s->min_blocks = DecodeTcMinBlocks(*s);
  if (DecodeTcSharedBytes(*s) > kMaxShared) {
    return absl::InvalidArgumentError("too much shared memory for the combine buffers");
  }
  return absl::OkStatus();
}

}  // namespace kvcc::codegen
