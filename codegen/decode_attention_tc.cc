#include "codegen/decode_attention_tc.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace kvcc::codegen {
namespace {

constexpr int kChunk = 16;  // tokens a warp stages per step (decode_attention_tc.cuh)
// Splits of a small batch (DecodeTcSplits): the fewest tokens a split.
constexpr int kMinSplitTokens = 128;

int Bits(ir::DType d) { return d == ir::DType::kF16 ? 16 : ir::DTypeBits(d); }

// One warp's stage: 16 padded K and V rows, and the (scale, zero) pairs of 16 tokens for K and
// for V when either part is online (the kernel's kStageBytes).
int StageBytes(const KernelSpec& s) {
  const int k_row = s.head_dim * Bits(s.k().dtype) / 8 + 16;
  const int v_row = s.head_dim * Bits(s.v().dtype) / 8 + 16;
  const bool online = s.k().online() || s.v().online();
  return kChunk * (k_row + v_row) + (online ? 2 * kChunk * 4 : 0);
}

// Four warps, unless not even two stages of four fit in 48 KiB (f16 at head_dim 128: 64
// threads ran it as fast at the same 12 warps per SM, 140.0 us at GQA 4:1 64 x 2048).
int DefaultThreads(const KernelSpec& s) { return 2 * StageBytes(s) * 4 <= 48 * 1024 ? 128 : 64; }

// Shared memory of one SM (sm_80 and sm_87: 164 KiB; sm_86, sm_89: 100; sm_90+: 228) and what
// the driver reserves per resident CTA.
int SmemPerSm(int arch) {
  return arch >= 90 ? 228 * 1024 : arch == 80 || arch == 87 ? 164 * 1024 : 100 * 1024;
}
constexpr int kReservedPerCta = 1024;

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
  } else {
    s->kv_tile = 0;  // the tensor-core kernel's step; the scalar one has none
  }
}

int DecodeTcSplits(int64_t ctas, int sms, int64_t slots, int max_seq_len) {
  ctas = std::max<int64_t>(ctas, 1);
  if (ctas >= sms) return 1;
  const int64_t splits = 2 * int64_t{sms} / ctas;  // two CTAs an SM, rounded down
  const int64_t one_wave = std::max<int64_t>(1, slots / ctas);
  const int64_t by_length = max_seq_len / kMinSplitTokens;
  return static_cast<int>(std::max<int64_t>(1, std::min({splits, one_wave, by_length})));
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

int DecodeTcMaxSharedBytes(int arch) { return SmemPerSm(arch) - kReservedPerCta; }

int DecodeTcDefaultStages(const KernelSpec& s) {
  if (s.kv_tile == kChunk) return 2;
  return s.k().dtype == ir::DType::kI4 && s.v().dtype == ir::DType::kI4 ? 4 : 3;
}

int DecodeTcDefaultStepTokens(const KernelSpec& s) { return s.group() == 8 ? 2 * kChunk : kChunk; }

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
  if (s->kv_tile == 0) s->kv_tile = DecodeTcDefaultStepTokens(*s);
  if (s->kv_tile != kChunk && s->kv_tile != 2 * kChunk) {
    return absl::InvalidArgumentError(
        "kv_tile (tokens per softmax step of the tensor-core decode) must be 16 or 32");
  }
  if (s->kv_tile > kChunk && s->group() > 8) {
    // Two n tiles of heads and two chunks' scores spill under the 168-register cap.
    return absl::InvalidArgumentError(
        "kv_tile 32 takes at most 8 query heads per kv head (one n tile)");
  }
  if (s->threads == 0) s->threads = DefaultThreads(*s);
  if (s->threads % 32 != 0 || s->threads < 32 || s->threads > 512) {
    return absl::InvalidArgumentError("threads must be a multiple of 32 in [32, 512]");
  }
  if (s->min_blocks == 0) s->min_blocks = DecodeTcMinBlocks(*s);
  if (s->unroll == 0) s->unroll = DecodeTcDefaultStages(*s);
  if (s->kv_tile > kChunk && s->unroll < 3) {
    return absl::InvalidArgumentError("kv_tile 32 needs at least 3 pipeline stages (unroll)");
  }
  const int max_bytes = DecodeTcMaxSharedBytes(s->arch);
  const int fit = max_bytes / (s->threads / 32 * StageBytes(*s));
  if (s->unroll < 1 || s->unroll > fit) {
    return absl::InvalidArgumentError(
        absl::StrCat("unroll (pipeline stages) must be in [1, ", fit, "] for the ",
                     max_bytes / 1024, " KiB of shared memory a CTA can have on sm_", s->arch));
  }
  if (DecodeTcSharedBytes(*s) > max_bytes) {
    return absl::InvalidArgumentError("too much shared memory for the combine buffers");
  }
  return absl::OkStatus();
}

}  // namespace kvcc::codegen
