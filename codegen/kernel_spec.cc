#include "codegen/kernel_spec.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "codegen/decode_attention_tc.h"
#include "codegen/kernel_templates.h"
#include "ir/status_macros.h"

namespace kvcc::codegen {
namespace {

int CacheBits(ir::DType dtype) { return dtype == ir::DType::kF16 ? 16 : ir::DTypeBits(dtype); }

// The storage's name in ToString: "i8/per_head".
std::string StorageName(ir::KvStorage s) {
  return absl::StrCat(ir::DTypeName(s.dtype), "/", ir::KvGranularityName(s.granularity));
}

// A part's storage must be f16 unquantized, i8/i4 with a granularity, or calibrated fp8.
bool ValidStorage(ir::KvStorage s) {
  switch (s.dtype) {
    case ir::DType::kF16: return !s.quantized();
    case ir::DType::kI8:
    case ir::DType::kI4: return s.quantized();
    case ir::DType::kFP8E4M3: return s.calibrated();
    default: return false;
  }
}

int SchemeCode(ir::KvGranularity g) {
  switch (g) {
    case ir::KvGranularity::kNone: return 0;
    case ir::KvGranularity::kPerLayer: return 1;
    case ir::KvGranularity::kPerHead: return 2;
    case ir::KvGranularity::kOnline: return 3;
    case ir::KvGranularity::kPerChannel: return 4;
  }
  return 0;
}

int NextPow2(int x) {
  int p = 1;
  while (p < x) p *= 2;
  return p;
}

// Bytes of the decode kernel's static shared memory (per-warp partial sums), see
// decode_attention.cuh.
int DecodeSharedBytes(const KernelSpec& s) {
  int warps = s.threads / 32;
  return warps * s.group() * (s.head_dim + 2) * 4;
}

int PrefillSharedBytes(const KernelSpec& s) {
  return (s.q_tile * s.head_dim + 2 * s.kv_tile * (s.head_dim + 1) + s.q_tile * (s.kv_tile + 1) +
          4 * s.q_tile) * 4;
}

constexpr int kMaxStaticShared = 48 * 1024;

// prefill_attention_tc.cuh's PartSmem and kSmemBytes: padded f16 rows of head_dim + 8.
int PrefillTcPartBytes(const KernelSpec& s, ir::KvStorage part) {
  const int tile = s.kv_tile * (s.head_dim + 8) * 2;
  if (part.dtype == ir::DType::kF16) return 2 * tile;
  const int raw = s.kv_tile * s.head_dim * CacheBits(part.dtype) / 8;
  const int params = part.online() ? s.kv_tile * 4 : 0;
  return tile + 2 * (raw + params);
}
int PrefillTcSharedBytes(const KernelSpec& s) {
  return s.q_tile * (s.head_dim + 8) * 2 + PrefillTcPartBytes(s, s.k()) +
         PrefillTcPartBytes(s, s.v());
}
// The H100/H200's opt-in limit per CTA (227 KiB); sm_80 allows 163 KiB.
int MaxDynamicShared(const KernelSpec& s) { return s.arch >= 90 ? 227 * 1024 : 163 * 1024; }

}  // namespace

absl::string_view KernelOpName(KernelOp op) {
  switch (op) {
    case KernelOp::kDecodeAttention: return "decode_attention";
    case KernelOp::kDecodeMerge: return "decode_merge";
    case KernelOp::kPrefillAttention: return "prefill_attention";
    case KernelOp::kPrefillAttentionTc: return "prefill_attention_tc";
    case KernelOp::kRotaryCacheWrite: return "rotary_cache_write";
    case KernelOp::kDecodeAttentionTc: return "decode_attention_tc";
  }
  return "?";
}

std::string KernelSpec::ArchName() const {
  return absl::StrCat("sm_", arch, arch_specific ? "a" : "");
}

std::string KernelSpec::ToString() const {
  return absl::StrCat(KernelOpName(op), " head_dim=", head_dim, " heads=", heads,
                      " kv_heads=", kv_heads, " cache=", StorageName(k()),
                      v() != k() ? absl::StrCat("+", StorageName(v())) : std::string(),
                      " block_size=", block_size,
                      " io=", ir::DTypeName(io_dtype), " threads=", threads,
                      " vec_bytes=", vec_bytes, " unroll=", unroll, " q_tile=", q_tile,
                      " kv_tile=", kv_tile, " min_blocks=", min_blocks, " prefetch=", prefetch, " arch=", ArchName());
}

absl::StatusOr<KernelSpec> ResolveDefaults(const KernelSpec& in) {
  KernelSpec s = in;
  auto bad = [&](absl::string_view what) {
    return absl::InvalidArgumentError(
        absl::StrCat("kernel spec [", in.ToString(), "]: ", what));
  };
  if (s.head_dim < 2 || s.head_dim > 256 || s.head_dim % 2 != 0) {
    return bad("head_dim must be even and in [2, 256]");
  }
  if (s.heads <= 0 || s.kv_heads <= 0 || s.heads % s.kv_heads != 0) {
    return bad("heads must be a positive multiple of kv_heads");
  }
  if (s.group() > 16) return bad("more than 16 query heads per kv head is not supported");
  if (s.block_size <= 0 || s.block_size > 1024) return bad("block_size must be in [1, 1024]");
  if (!ValidStorage(s.k()) || !ValidStorage(s.v())) {
    return bad("each of K and V must be f16 with scheme none, i8/i4 with per_layer, per_head, "
               "per_channel or online, or fp8e4m3 with per_layer, per_head or per_channel");
  }
  const bool f16 = s.cache_dtype == ir::DType::kF16;
  if (s.io_dtype != ir::DType::kF16 && s.io_dtype != ir::DType::kF32) {
    return bad("activations (io) must be f16 or f32");
  }
  if (s.arch < 70 || s.arch > 200) return bad("arch must be a compute capability like 80 or 90");
  if (s.arch_specific && s.arch < 90) return bad("arch-specific targets exist from sm_90a on");

  if (s.min_blocks == 0) {
    // Decode: allow 4 CTAs of 128 threads per SM (at most 128 registers a thread). On the
    // H100 the GQA 4:1 decode went from 149 registers and 228 us to 128 and 200 us; kernels
    // already under the cap are unaffected. Other kernels: no constraint.
    // (The tensor-core decode picks its own, ResolveDecodeTcDefaults.)
    s.min_blocks = s.op == KernelOp::kDecodeAttention
                       ? std::max(1, 65536 / (128 * std::max(s.threads, 128)))
                       : s.op == KernelOp::kDecodeAttentionTc ? 0 : 1;
  }
  if (s.min_blocks < 0 || s.min_blocks > 32) return bad("min_blocks must be in [1, 32]");
  const int bits = CacheBits(s.cache_dtype);
  const int v_bits = CacheBits(s.v().dtype);
  const int row_bytes = s.head_dim * bits / 8;
  switch (s.op) {
    case KernelOp::kDecodeAttention: {
      if (s.threads == 0) s.threads = 128;
      if (s.unroll == 0) s.unroll = 4;
      // Prefetching the next step costs registers: it paid off without GQA (H100: fp16 709 ->
      // 700 us, int4 292 -> 277 us) and lost with GQA 4:1 (195 -> 200 us, past the 128
      // register cap).
      if (s.prefetch < 0) s.prefetch = s.group() == 1 ? 1 : 0;
      if (s.prefetch > 1) return bad("prefetch must be -1, 0 or 1");
      if (s.vec_bytes == 0) {
        // Widest power-of-two load dividing the row (rows are aligned to their size), then
        // narrowed while a lane would hold more than 16 elements of a row, or the per-thread q
        // and accumulator registers (elements x group) would exceed 32 floats each, as long as
        // a row still fits one warp. (int4 at 16 bytes = 32 elements needed 233 registers and
        // ran at half the bandwidth of int8 on the H100.)
        int vb = 16;
        while (vb > 1 && row_bytes % vb != 0) vb /= 2;
        const int min_vb = f16 ? 2 : 1;
        // int4 without GQA keeps 16-byte loads (32 elements a lane): with the prefetch that
        // was the fastest int4 decode on the H100 (251 us vs 277 us at 8 bytes).
        const int max_elems = bits == 4 && v_bits == 4 && s.group() == 1 ? 32 : 16;
        while (vb / 2 >= min_vb && ((vb * 8 / bits) * s.group() > 32 || vb * 8 / bits > max_elems) &&
               NextPow2(row_bytes / (vb / 2)) <= 32) {
          vb /= 2;
        }
        s.vec_bytes = vb;
      }
      if (s.vec_bytes < 1 || s.vec_bytes > 16 || (s.vec_bytes & (s.vec_bytes - 1)) != 0 ||
          row_bytes % s.vec_bytes != 0 || (f16 && s.vec_bytes < 2)) {
        return bad("vec_bytes must be a power of two <= 16 dividing the row bytes");
      }
      if (NextPow2(row_bytes / s.vec_bytes) > 32) {
        return bad("one cache row must be covered by at most 32 loads of vec_bytes");
      }
      // A lane holds the same elements of the K and the V row: the V load is
      // vec_bytes * v_bits / bits bytes and must be a whole load of at most 16.
      if (s.vec_bytes * v_bits % bits != 0 || s.vec_bytes * v_bits / bits > 16 ||
          (s.vec_bytes * 8 / bits) * v_bits % 8 != 0 ||
          (s.v().dtype == ir::DType::kF16 && s.vec_bytes * v_bits / bits < 2)) {
        return bad("vec_bytes gives a V load that is not 1-16 whole bytes");
      }
      if (s.unroll < 1 || s.unroll > 8) return bad("unroll must be in [1, 8]");
      if (s.threads % 32 != 0 || s.threads < 32 || s.threads > 1024) {
        return bad("threads must be a multiple of 32 in [32, 1024]");
      }
      if (DecodeSharedBytes(s) > kMaxStaticShared) return bad("too much shared memory");
      break;
    }
    case KernelOp::kDecodeAttentionTc:
      if (absl::Status st = ResolveDecodeTcDefaults(&s); !st.ok()) return bad(st.message());
      break;
    case KernelOp::kDecodeMerge:
      if (s.threads == 0) s.threads = 128;
      if (s.threads % 32 != 0 || s.threads > 1024) return bad("threads must be a multiple of 32");
      break;
    case KernelOp::kPrefillAttention: {
      if (s.threads == 0) s.threads = 128;
      if (s.q_tile == 0) s.q_tile = 16;
      if (s.kv_tile == 0) {
        s.kv_tile = 32;
        while (s.kv_tile > 4 && PrefillSharedBytes(s) > 46 * 1024) s.kv_tile /= 2;
      }
      if (s.threads % 32 != 0 || s.threads > 1024) return bad("threads must be a multiple of 32");
      if (s.q_tile < 1 || s.q_tile > s.threads || s.threads % s.q_tile != 0) {
        return bad("q_tile must divide threads");
      }
      if (s.kv_tile < 1 || s.kv_tile > 64) return bad("kv_tile must be in [1, 64]");
      if (PrefillSharedBytes(s) > kMaxStaticShared) return bad("too much shared memory");
      break;
    }
    case KernelOp::kPrefillAttentionTc: {
      if (!PrefillTcSupported(s)) {
        return bad("the tensor-core prefill needs head_dim a multiple of 32 up to 128 and sm_80+");
      }
      // 8 warps, 128 queries a CTA: on the H200 (32 heads x 128, f16 cache) 2048 tokens took
      // 0.254 ms and 8192 2.85 ms against 0.294 and 3.55 with 4 warps (each K/V tile feeds
      // twice the rows; registers allow one such CTA per SM, as shared memory did two of 4).
      // q_tile = threads gives each warp 32 rows (Q re-read from shared memory).
      if (s.threads == 0) s.threads = 256;
      if (s.q_tile == 0) s.q_tile = s.threads / 2;
      if (s.kv_tile == 0) s.kv_tile = 64;
      if (s.threads % 32 != 0 || s.threads < 32 || s.threads > 512 ||
          (s.q_tile != s.threads / 2 && s.q_tile != s.threads)) {
        return bad("the tensor-core prefill takes 16 or 32 query rows per warp (q_tile = threads "
                   "/ 2 or threads)");
      }
      // 32 rows a warp needs ~230 registers: at 128 threads two CTAs still fit an SM.
      if (s.min_blocks == 0 && s.q_tile == s.threads && s.threads == 128) s.min_blocks = 2;
      if (s.kv_tile < 16 || s.kv_tile > 128 || s.kv_tile % 16 != 0) {
        return bad("kv_tile must be a multiple of 16 in [16, 128]");
      }
      if (PrefillTcSharedBytes(s) > MaxDynamicShared(s)) return bad("too much shared memory");
      break;
    }
    case KernelOp::kRotaryCacheWrite:
      if (s.threads == 0) s.threads = 128;
      if (s.threads % 32 != 0 || s.threads > 1024) return bad("threads must be a multiple of 32");
      break;
  }
  return s;
}

absl::StatusOr<RenderedKernel> RenderKernel(const KernelSpec& in) {
  absl::StatusOr<KernelSpec> resolved = ResolveDefaults(in);
  if (!resolved.ok()) return resolved.status();
  const KernelSpec& s = *resolved;
  const int bits = CacheBits(s.cache_dtype);
  RenderedKernel r;
  r.spec = s;
  r.kernel_name = absl::StrCat("kvcc_", KernelOpName(s.op));
  r.program_name = absl::StrCat(KernelOpName(s.op), "_hd", s.head_dim, "_",
                                ir::DTypeName(s.cache_dtype),
                                s.v().dtype != s.cache_dtype
                                    ? absl::StrCat("_v", ir::DTypeName(s.v().dtype))
                                    : std::string(),
                                ".cu");
  const std::string template_name = absl::StrCat(KernelOpName(s.op), ".cuh");
  KVCC_RETURN_IF_ERROR(KernelTemplate(template_name).status());
  // The specialization as the macros kvcc_common.cuh turns into constants, then the template.
  std::string& src = r.source;
  absl::StrAppend(&src, "// kvcc generated kernel: ", s.ToString(), "\n");
  const std::pair<const char*, int> defines[] = {
      {"HEAD_DIM", s.head_dim},
      {"HEADS", s.heads},
      {"KV_HEADS", s.kv_heads},
      {"BLOCK_SIZE", s.block_size},
      {"CACHE_BITS", bits},
      {"SCHEME", SchemeCode(s.granularity)},
      {"K_FP8", s.cache_dtype == ir::DType::kFP8E4M3 ? 1 : 0},
      {"V_CACHE_BITS", CacheBits(s.v().dtype)},
      {"V_SCHEME", SchemeCode(s.v().granularity)},
      {"V_FP8", s.v().dtype == ir::DType::kFP8E4M3 ? 1 : 0},
      {"IO_F16", s.io_dtype == ir::DType::kF16 ? 1 : 0},
      {"THREADS", s.threads},
      {"VEC_BYTES", s.vec_bytes},
      {"UNROLL", s.unroll},
      {"Q_TILE", s.q_tile},
      {"KV_TILE", s.kv_tile},
      {"MIN_BLOCKS", s.min_blocks},
      {"PREFETCH", s.prefetch == 1 ? 1 : 0},
  };
  for (const auto& [name, value] : defines) {
    absl::StrAppend(&src, "#define KVCC_", name, " ", value, "\n");
  }
  absl::StrAppend(&src, "#include \"", template_name, "\"\n");
  return r;
}

int DynamicSharedBytes(const KernelSpec& spec) {
  if (spec.op == KernelOp::kDecodeAttentionTc) return DecodeTcSharedBytes(spec);
  return spec.op == KernelOp::kPrefillAttentionTc ? PrefillTcSharedBytes(spec) : 0;
}

bool PrefillTcSupported(const KernelSpec& spec) {
  return spec.head_dim % 32 == 0 && spec.head_dim <= 128 && spec.arch >= 80;
}

}  // namespace kvcc::codegen
