// Compiles, with NVRTC and without a GPU, every attention kernel specialization that
// stories260K and the synthetic configs need, for sm_90a and sm_80, and prints each one's
// registers and spills; the main head_dim 128 decode variants must not spill.
#include <cstdio>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "codegen/kernel_builder.h"
#include "codegen/kernel_spec.h"
#include "codegen/kernel_templates.h"
#include "codegen/nvrtc_compiler.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace kvcc::codegen {
namespace {

struct Shape {
  const char* what;
  int head_dim, heads, kv_heads;
};
// stories260K (head_dim 8, 8 heads over 4 kv heads) and the synthetic configs: head_dim 64 and
// 128 with GQA 1:1, 2:1 and 4:1.
const Shape kShapes[] = {
    {"stories260K", 8, 8, 4},  {"synth-64-mha", 64, 8, 8},   {"synth-64-gqa2", 64, 8, 4},
    {"synth-128-mha", 128, 32, 32}, {"synth-128-gqa4", 128, 32, 8},
};

struct Scheme {
  const char* name;
  ir::DType dtype;
  ir::KvGranularity granularity;
  std::optional<ir::KvStorage> v;  // V when stored differently from K
};
const Scheme kSchemes[] = {
    {"f16", ir::DType::kF16, ir::KvGranularity::kNone, {}},
    {"i8-per_layer", ir::DType::kI8, ir::KvGranularity::kPerLayer, {}},
    {"i8-per_head", ir::DType::kI8, ir::KvGranularity::kPerHead, {}},
    {"i4-per_head", ir::DType::kI4, ir::KvGranularity::kPerHead, {}},
    {"i8-online", ir::DType::kI8, ir::KvGranularity::kOnline, {}},
    {"i4-online", ir::DType::kI4, ir::KvGranularity::kOnline, {}},
    {"k8v4", ir::DType::kI8, ir::KvGranularity::kPerHead,
     ir::KvStorage{ir::DType::kI4, ir::KvGranularity::kOnline}},
    {"k8v4-online", ir::DType::kI8, ir::KvGranularity::kOnline,
     ir::KvStorage{ir::DType::kI4, ir::KvGranularity::kOnline}},
    {"fp8-per_layer", ir::DType::kFP8E4M3, ir::KvGranularity::kPerLayer, {}},
    {"fp8-per_head", ir::DType::kFP8E4M3, ir::KvGranularity::kPerHead, {}},
    {"i4-kchannel", ir::DType::kI4, ir::KvGranularity::kPerChannel,
     ir::KvStorage{ir::DType::kI4, ir::KvGranularity::kOnline}},
};

struct Target {
  int arch;
  bool specific;
};
const Target kTargets[] = {{90, true}, {80, false}};

TEST(CodegenKernels, TemplatesAreEmbedded) {
  for (const char* name : {"kvcc_common.cuh", "decode_attention.cuh", "decode_merge.cuh",
                           "prefill_attention.cuh", "prefill_attention_tc.cuh", "rotary_cache_write.cuh", "ops_common.cuh",
                           "attention_params.h", "ops_params.h"}) {
    absl::StatusOr<absl::string_view> text = KernelTemplate(name);
    ASSERT_TRUE(text.ok()) << text.status();
    EXPECT_GT(text->size(), 500u) << name;
  }
  EXPECT_FALSE(KernelTemplate("missing.cuh").ok());
}

// The build-time embedding reproduces each template byte for byte.
TEST(CodegenKernels, EmbeddedTextEqualsTheFiles) {
  for (const EmbeddedTemplate& t : EmbeddedTemplates()) {
    std::ifstream in(testing::SourcePath(std::string("codegen/") + t.name), std::ios::binary);
    ASSERT_TRUE(in.good()) << t.name;
    std::stringstream file;
    file << in.rdbuf();
    EXPECT_EQ(t.text, file.str()) << t.name;
  }
}

TEST(CodegenKernels, EverySpecializationCompiles) {
  int compiled = 0;
  std::printf("%-16s %-13s %-20s %-7s %5s %6s %6s %6s\n", "shape", "scheme", "op", "arch", "regs",
              "spillS", "spillL", "stack");
  for (const Target& target : kTargets) {
    for (const Shape& shape : kShapes) {
      for (const Scheme& scheme : kSchemes) {
        std::vector<KernelOp> ops = {KernelOp::kDecodeAttention, KernelOp::kPrefillAttention,
                                     KernelOp::kRotaryCacheWrite};
        // The merge kernel does not read the cache; one per shape suffices.
        if (scheme.dtype == ir::DType::kF16) ops.push_back(KernelOp::kDecodeMerge);
        if (shape.head_dim % 32 == 0) ops.push_back(KernelOp::kPrefillAttentionTc);
        for (KernelOp op : ops) {
          KernelSpec spec;
          spec.op = op;
          spec.head_dim = shape.head_dim;
          spec.heads = shape.heads;
          spec.kv_heads = shape.kv_heads;
          spec.cache_dtype = scheme.dtype;
          spec.granularity = scheme.granularity;
          spec.v_storage = scheme.v;
          spec.block_size = 64;
          spec.arch = target.arch;
          spec.arch_specific = target.specific;
          absl::StatusOr<BuiltKernel> built = BuildKernel(spec, nullptr);
          ASSERT_TRUE(built.ok()) << spec.ToString() << ": " << built.status();
          const ResourceUsage& u = built->compiled.usage;
          std::printf("%-16s %-13s %-20s %-7s %5d %6d %6d %6d\n", shape.what, scheme.name,
                      std::string(KernelOpName(op)).c_str(), spec.ArchName().c_str(),
                      u.registers, u.spill_store_bytes, u.spill_load_bytes, u.stack_bytes);
          EXPECT_GT(u.registers, 0) << "no ptxas report for " << spec.ToString() << "\n"
                                    << built->compiled.log;
          EXPECT_FALSE(built->compiled.cubin.empty());
          // The bandwidth-critical decode kernels and the tensor-core prefill at head_dim 128
          // must keep everything in registers.
          if ((op == KernelOp::kDecodeAttention || op == KernelOp::kPrefillAttentionTc) &&
              shape.head_dim == 128) {
            EXPECT_EQ(u.spill_store_bytes + u.spill_load_bytes, 0)
                << spec.ToString() << "\n" << built->compiled.log;
          }
          ++compiled;
        }
      }
    }
  }
  std::printf("compiled %d kernels\n", compiled);
}

// The tensor-core prefill's tile variants (16 or 32 query rows a warp, 4 or 8 warps, 32- or
// 64-token steps) compile for sm_90a; 16 rows a warp never spill (32 rows fill the 255
// registers and may spill a few words: the table prints them), and q_tile
// must be threads / 2 or threads.
TEST(CodegenKernels, PrefillTcTileVariants) {
  struct Tiles {
    int threads, q_tile, kv_tile;
  };
  const Tiles tiles[] = {{256, 128, 64}, {128, 128, 32}, {128, 128, 64}, {256, 256, 32}};
  std::printf("%-10s %-13s %-12s %5s %6s %6s\n", "head_dim", "scheme", "thr/qt/kvt", "regs",
              "spillS", "spillL");
  for (int head_dim : {64, 128}) {
    for (const Scheme& scheme : {kSchemes[0], kSchemes[2], kSchemes[5], kSchemes[6]}) {
      for (const Tiles& t : tiles) {
        KernelSpec spec;
        spec.op = KernelOp::kPrefillAttentionTc;
        spec.head_dim = head_dim;
        spec.heads = 32;
        spec.kv_heads = 8;
        spec.cache_dtype = scheme.dtype;
        spec.granularity = scheme.granularity;
        spec.v_storage = scheme.v;
        spec.threads = t.threads;
        spec.q_tile = t.q_tile;
        spec.kv_tile = t.kv_tile;
        spec.arch = 90;
        spec.arch_specific = true;
        absl::StatusOr<BuiltKernel> built = BuildKernel(spec, nullptr);
        ASSERT_TRUE(built.ok()) << spec.ToString() << ": " << built.status();
        const ResourceUsage& u = built->compiled.usage;
        std::printf("%-10d %-13s %4d/%d/%-5d %5d %6d %6d\n", head_dim, scheme.name, t.threads,
                    t.q_tile, t.kv_tile, u.registers, u.spill_store_bytes, u.spill_load_bytes);
        EXPECT_GT(u.registers, 0) << built->compiled.log;
        if (t.q_tile * 2 == t.threads) {
          EXPECT_EQ(u.spill_store_bytes + u.spill_load_bytes, 0)
              << spec.ToString() << "\n" << built->compiled.log;
        }
      }
    }
  }
  KernelSpec bad;
  bad.op = KernelOp::kPrefillAttentionTc;
  bad.threads = 128;
  bad.q_tile = 96;
  absl::StatusOr<RenderedKernel> r = RenderKernel(bad);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("q_tile"), std::string::npos) << r.status();
}

// NVRTC's own compile cache (12.9 and later) would skip ptxas on the second compile and leave
// the log without a resource report; kvcc turns it off, so both compiles report.
TEST(CodegenKernels, RecompilingReportsResourcesAgain) {
  const char* source =
      "extern \"C\" __global__ void k(float* x) { x[threadIdx.x] = threadIdx.x * 2.0f; }";
  for (int i = 0; i < 2; ++i) {
    absl::StatusOr<CompiledKernel> r = CompileCuda("twice.cu", source, "k", "sm_90a");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_GT(r->usage.registers, 0) << "compile " << i << ":\n" << r->log;
  }
}

TEST(CodegenKernels, CompileErrorCarriesTheLog) {
  absl::StatusOr<CompiledKernel> r =
      CompileCuda("broken.cu", "extern \"C\" __global__ void k() { undeclared_thing(); }", "k",
                  "sm_90");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(r.status().message()).find("undeclared_thing"), std::string::npos)
      << r.status();
  EXPECT_NE(std::string(r.status().message()).find("broken.cu"), std::string::npos);
}

TEST(CodegenKernels, BadSpecsAreRejectedWithTheField) {
  KernelSpec spec;
  spec.head_dim = 7;
  absl::StatusOr<RenderedKernel> r = RenderKernel(spec);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(std::string(r.status().message()).find("head_dim"), std::string::npos);
  spec.head_dim = 64;
  spec.heads = 12;
  spec.kv_heads = 8;
  EXPECT_FALSE(RenderKernel(spec).ok());
  spec.heads = 8;
  spec.cache_dtype = ir::DType::kI8;  // quantized cache without a scheme
  EXPECT_FALSE(RenderKernel(spec).ok());
  spec.granularity = ir::KvGranularity::kPerHead;
  EXPECT_TRUE(RenderKernel(spec).ok());
  spec.arch = 80;
  spec.arch_specific = true;
  EXPECT_FALSE(RenderKernel(spec).ok());
}

TEST(CodegenKernels, PtxasReportParsing) {
  const char* log =
      "ptxas info    : 0 bytes gmem\n"
      "ptxas info    : Compiling entry function 'other' for 'sm_90a'\n"
      "ptxas info    : Function properties for other\n"
      "    8 bytes stack frame, 4 bytes spill stores, 4 bytes spill loads\n"
      "ptxas info    : Used 200 registers, used 1 barriers, 16 bytes smem\n"
      "ptxas info    : Compiling entry function 'kvcc_decode_attention' for 'sm_90a'\n"
      "ptxas info    : Function properties for kvcc_decode_attention\n"
      "    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
      "ptxas info    : Used 72 registers, used 1 barriers, 2080 bytes smem, 472 bytes cmem[0]\n";
  ResourceUsage u = ParsePtxasReport(log, "kvcc_decode_attention");
  EXPECT_EQ(u.registers, 72);
  EXPECT_EQ(u.shared_bytes, 2080);
  EXPECT_EQ(u.spill_store_bytes, 0);
  ResourceUsage o = ParsePtxasReport(log, "other");
  EXPECT_EQ(o.registers, 200);
  EXPECT_EQ(o.spill_store_bytes, 4);
  EXPECT_EQ(o.stack_bytes, 8);
}

}  // namespace
}  // namespace kvcc::codegen
