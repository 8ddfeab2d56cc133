// The tensor-core decode kernel without a GPU: which specs it takes (and which fall back to
// the scalar kernel), its defaults within the shared memory of their occupancy, its splits, and
// every cache scheme it takes compiled with NVRTC for sm_90a and sm_80 as CudaAttention builds it,
// with registers and spills printed (none), also at the other CTA sizes and the 32-token step the
// bench sweeps.
#include "codegen/decode_attention_tc.h"

#include <cstdio>
#include <optional>
#include <string>

#include "codegen/kernel_builder.h"
#include "gtest/gtest.h"

namespace kvcc::codegen {
namespace {

using ir::DType;
using G = ir::KvGranularity;

KernelSpec Spec(int head_dim, int heads, int kv_heads, ir::KvStorage k,
                std::optional<ir::KvStorage> v = std::nullopt) {
  KernelSpec s;
  s.op = KernelOp::kDecodeAttentionTc;
  s.head_dim = head_dim;
  s.heads = heads;
  s.kv_heads = kv_heads;
  s.cache_dtype = k.dtype;
  s.granularity = k.granularity;
  s.v_storage = v;
  s.block_size = 64;
  s.arch = 90;
  s.arch_specific = true;
  return s;
}

constexpr ir::KvStorage kF16{DType::kF16, G::kNone}, kI8{DType::kI8, G::kPerHead},
    kI8L{DType::kI8, G::kPerLayer}, kI4{DType::kI4, G::kPerHead}, kI8O{DType::kI8, G::kOnline},
    kI4O{DType::kI4, G::kOnline}, kFp8{DType::kFP8E4M3, G::kPerHead},
    kFp8L{DType::kFP8E4M3, G::kPerLayer}, kI4C{DType::kI4, G::kPerChannel};

TEST(DecodeAttentionTc, TakesGqaAndLeavesTheRest) {
  EXPECT_TRUE(DecodeTcPreferred(Spec(128, 32, 8, kI8)));
  EXPECT_TRUE(DecodeTcPreferred(Spec(64, 8, 4, kI4O)));
  EXPECT_TRUE(DecodeTcPreferred(Spec(128, 32, 4, kI8, kI4O)));
  EXPECT_TRUE(DecodeTcPreferred(Spec(128, 32, 8, kF16)));
  EXPECT_FALSE(DecodeTcPreferred(Spec(128, 32, 32, kI8)));   // MHA
  EXPECT_FALSE(DecodeTcPreferred(Spec(128, 32, 32, kF16)));
  EXPECT_TRUE(DecodeTcPreferred(Spec(128, 32, 32, kI4)));    // MHA int4: the scalar kernel's
  EXPECT_TRUE(DecodeTcPreferred(Spec(64, 8, 8, kI4O)));      // dequantization is its bound
  EXPECT_FALSE(DecodeTcPreferred(Spec(128, 32, 32, kI8, kI4O)));
  EXPECT_TRUE(DecodeTcSupports(Spec(128, 32, 32, kI8)));
  EXPECT_FALSE(DecodeTcSupports(Spec(8, 8, 4, kI8)));        // stories260K's head_dim
  EXPECT_FALSE(DecodeTcSupports(Spec(96, 8, 4, kI8)));
  EXPECT_FALSE(DecodeTcSupports(Spec(128, 32, 8, kI4C, kI4O)));  // per-channel K
  KernelSpec f32 = Spec(128, 32, 8, kI8);
  f32.io_dtype = DType::kF32;
  EXPECT_FALSE(DecodeTcSupports(f32));
  KernelSpec odd_block = Spec(128, 32, 8, kI8);
  odd_block.block_size = 24;
  EXPECT_FALSE(DecodeTcSupports(odd_block));

  KernelSpec s = Spec(128, 32, 8, kI8);
  s.op = KernelOp::kDecodeAttention;
  s.vec_bytes = 8;
  SelectDecodeKernel(-1, &s);
  EXPECT_EQ(s.op, KernelOp::kDecodeAttentionTc);
  EXPECT_EQ(s.vec_bytes, 0);
  SelectDecodeKernel(0, &s);
  EXPECT_EQ(s.op, KernelOp::kDecodeAttention);
  KernelSpec mha = Spec(128, 32, 32, kI8);
  SelectDecodeKernel(-1, &mha);
  EXPECT_EQ(mha.op, KernelOp::kDecodeAttention);
  SelectDecodeKernel(1, &mha);
  EXPECT_EQ(mha.op, KernelOp::kDecodeAttentionTc);
  KernelSpec small = Spec(8, 8, 4, kI8);
  SelectDecodeKernel(1, &small);  // unsupported: the scalar kernel even when asked
  EXPECT_EQ(small.op, KernelOp::kDecodeAttention);
}

TEST(DecodeAttentionTc, DefaultsFitSharedMemoryAndBadSpecsAreErrors) {
  for (ir::KvStorage k : {kF16, kI8, kI4, kI8O, kFp8}) {
    for (int hd : {64, 128}) {
      absl::StatusOr<KernelSpec> r = ResolveDefaults(Spec(hd, 32, 2, k));
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_GE(r->unroll, 2) << r->ToString();  // at least double buffered
      EXPECT_LE(r->unroll, 2) << r->ToString();  // 16-token steps at GQA 16:1
      EXPECT_LE(DecodeTcSharedBytes(*r), DecodeTcMaxSharedBytes(90)) << r->ToString();
    }
  }
  // int8 per head, 4 warps, GQA 4:1: two stages of 4.5 KiB a warp (no online parameters).
  absl::StatusOr<KernelSpec> i8 = ResolveDefaults(Spec(128, 32, 8, kI8));
  ASSERT_TRUE(i8.ok()) << i8.status();
  EXPECT_EQ(i8->threads, 128);
  EXPECT_EQ(i8->unroll, 2);
  EXPECT_EQ(i8->kv_tile, 16);
  EXPECT_EQ(DecodeTcSharedBytes(*i8), 2 * 4 * 16 * 288);
  // GQA 8:1: 32-token steps over three stages (int4: four).
  absl::StatusOr<KernelSpec> g8 = ResolveDefaults(Spec(128, 32, 4, kI8));
  ASSERT_TRUE(g8.ok()) << g8.status();
  EXPECT_EQ(g8->kv_tile, 32);
  EXPECT_EQ(g8->unroll, 3);
  absl::StatusOr<KernelSpec> g8i4 = ResolveDefaults(Spec(128, 32, 4, kI4));
  ASSERT_TRUE(g8i4.ok()) << g8i4.status();
  EXPECT_EQ(g8i4->kv_tile, 32);
  EXPECT_EQ(g8i4->unroll, 4);
  KernelSpec ampere = Spec(128, 32, 8, kI8);
  ampere.arch = 80;
  ampere.arch_specific = false;
  ampere.unroll = 10;  // 10 x 18 KiB: past the 163 KiB of a CTA on sm_80, within 227 on sm_90
  EXPECT_FALSE(ResolveDefaults(ampere).ok());
  ampere.arch = 90;
  EXPECT_TRUE(ResolveDefaults(ampere).ok());
  EXPECT_FALSE(ResolveDefaults(Spec(8, 8, 4, kI8)).ok());
  KernelSpec deep = Spec(128, 32, 8, kF16);
  deep.unroll = 16;  // 16 stages of 2 warps x 8.5 KiB: past 227 KiB
  EXPECT_FALSE(ResolveDefaults(deep).ok());
  deep.unroll = 8;
  EXPECT_TRUE(ResolveDefaults(deep).ok());
  // Steps of 16 or 32 tokens; 32 needs three stages (taken by default, refused below).
  KernelSpec step = Spec(128, 32, 8, kI8);
  EXPECT_EQ(ResolveDefaults(step)->kv_tile, 16);  // GQA 4:1
  step.kv_tile = 24;
  EXPECT_FALSE(ResolveDefaults(step).ok());
  step = Spec(128, 32, 8, kF16);
  step.kv_tile = 32;
  absl::StatusOr<KernelSpec> f16_32 = ResolveDefaults(step);
  ASSERT_TRUE(f16_32.ok()) << f16_32.status();
  EXPECT_EQ(f16_32->unroll, 3);
  step.unroll = 2;
  EXPECT_FALSE(ResolveDefaults(step).ok());
  step = Spec(128, 32, 2, kI8);  // 16 query heads a kv head: spills at 32 tokens a step
  step.kv_tile = 32;
  EXPECT_FALSE(ResolveDefaults(step).ok());
  KernelSpec to_scalar = Spec(128, 32, 8, kI8);
  to_scalar.kv_tile = 32;
  SelectDecodeKernel(0, &to_scalar);
  EXPECT_EQ(to_scalar.kv_tile, 0);
  KernelSpec vec = Spec(128, 32, 8, kI8);
  vec.vec_bytes = 16;
  EXPECT_FALSE(ResolveDefaults(vec).ok());
}

TEST(DecodeAttentionTc, OneSplitOnceEverySmHasACtaElseTwoCtasAnSm) {
  EXPECT_EQ(DecodeTcSplits(512, 132, 528, 2048), 1);   // batch 64, 8 kv heads
  EXPECT_EQ(DecodeTcSplits(256, 132, 528, 2048), 1);   // batch 64, 4 kv heads
  EXPECT_EQ(DecodeTcSplits(32, 132, 528, 2048), 8);    // batch 4 x 2K: 256 CTAs
  EXPECT_EQ(DecodeTcSplits(32, 132, 396, 32768), 8);   // batch 4 x 32K
  EXPECT_EQ(DecodeTcSplits(8, 132, 528, 32768), 33);   // batch 1 x 32K: 264 CTAs
  EXPECT_EQ(DecodeTcSplits(8, 132, 528, 8192), 33);    // batch 1 x 8K
  EXPECT_EQ(DecodeTcSplits(8, 132, 528, 2048), 16);    // batch 1 x 2K: 128 tokens a split
  EXPECT_EQ(DecodeTcSplits(100, 132, 528, 2048), 2);   // rounded down
  EXPECT_EQ(DecodeTcSplits(8, 132, 24, 8192), 3);      // never past one wave
  EXPECT_EQ(DecodeTcSplits(32, 132, 396, 500), 3);     // at least 128 tokens a split
  EXPECT_EQ(DecodeTcSplits(32, 132, 396, 100), 1);     // too short to split
  EXPECT_EQ(DecodeTcSplits(0, 132, 0, 1 << 20), 1);
}

struct Case {
  const char* name;
  int head_dim, heads, kv_heads;
  ir::KvStorage k;
  std::optional<ir::KvStorage> v;
};

TEST(DecodeAttentionTc, EverySchemeCompiles) {
  const Case cases[] = {
      {"f16", 128, 32, 8, kF16, {}},
      {"i8-per_layer", 128, 32, 8, kI8L, {}},
      {"i8-per_head", 128, 32, 8, kI8, {}},
      {"i4-per_head", 128, 32, 8, kI4, {}},
      {"i8-online", 128, 32, 8, kI8O, {}},
      {"i4-online", 128, 32, 8, kI4O, {}},
      {"k8v4", 128, 32, 8, kI8, kI4O},
      {"k8v4-online", 128, 32, 8, kI8O, kI4O},
      {"fp8-per_tensor", 128, 32, 8, kFp8L, {}},
      {"fp8-per_head", 128, 32, 8, kFp8, {}},
      {"i8 gqa8", 128, 32, 4, kI8, {}},
      {"i4 gqa8", 128, 32, 4, kI4O, {}},
      {"i8 gqa16", 128, 32, 2, kI8, {}},
      {"i8 mha", 128, 32, 32, kI8, {}},
      {"i4 hd64 gqa2", 64, 8, 4, kI4, {}},
      {"fp8 hd64 gqa4", 64, 8, 2, kFp8, {}},
      {"i8 gqa3", 128, 12, 4, kI8, {}},
      {"f16 hd64 gqa12", 64, 24, 2, kF16, {}},
      {"i4 hd64 mha", 64, 8, 8, kI4O, {}},
  };
  std::printf("%-16s %-7s %7s %5s %6s %6s %6s %7s %4s\n", "case", "arch", "threads", "regs",
              "spillS", "spillL", "smem", "stages", "step");
  struct Variant {
    int threads, kv_tile;
  };
  for (bool ampere : {false, true}) {
    for (const Case& c : cases) {
      for (Variant var : {Variant{0, 0}, Variant{64, 0}, Variant{32, 0}, Variant{0, 32}}) {
        if (ampere && c.head_dim != 128) continue;
        // The smaller CTAs for the GQA 4:1 cases on sm_90a; 32-token steps on sm_90a, for
        // groups of up to 8 (one n tile).
        if (var.threads != 0 && (ampere || c.heads != 4 * c.kv_heads || c.head_dim != 128)) {
          continue;
        }
        if (var.kv_tile != 0 && (ampere || c.heads > 8 * c.kv_heads)) continue;
        // As CudaAttention builds it: with its explicit register cap.
        KernelSpec spec = Spec(c.head_dim, c.heads, c.kv_heads, c.k, c.v);
        spec.threads = var.threads;
        spec.kv_tile = var.kv_tile;
        if (ampere) {
          spec.arch = 80;
          spec.arch_specific = false;
        }
        SelectDecodeKernel(1, &spec);
        ASSERT_EQ(spec.op, KernelOp::kDecodeAttentionTc);
        absl::StatusOr<BuiltKernel> built = BuildKernel(spec, nullptr);
        ASSERT_TRUE(built.ok()) << spec.ToString() << ": " << built.status();
        const ResourceUsage& u = built->compiled.usage;
        const KernelSpec& r = built->rendered.spec;
        std::printf("%-16s %-7s %7d %5d %6d %6d %6d %7d %4d\n", c.name, spec.ArchName().c_str(),
                    r.threads, u.registers, u.spill_store_bytes, u.spill_load_bytes,
                    DecodeTcSharedBytes(r), r.unroll, r.kv_tile);
        EXPECT_GT(u.registers, 0) << built->compiled.log;
        // No spills at the occupancy of DecodeTcMinBlocks.
        EXPECT_EQ(u.spill_store_bytes + u.spill_load_bytes, 0) << r.ToString() << "\n"
                                                               << built->compiled.log;
        EXPECT_EQ(built->rendered.kernel_name, "kvcc_decode_attention_tc");
      }
    }
  }
}

}  // namespace
}  // namespace kvcc::codegen
