// codegen/ops_kernels: the ops program (casts, norms, embedding, sampling, reductions, the
// probe) compiles with NVRTC, without a GPU, for Hopper and Ampere with every listed entry point
// in it; bad specs are refused. The CUDA backend's tests check what the kernels compute.
#include "codegen/ops_kernels.h"

#include "gtest/gtest.h"
#include "absl/strings/str_cat.h"
#include "tests/test_util.h"

namespace kvcc::codegen {
namespace {

TEST(OpsKernelsTest, CompileForHopperAndAmpereWithEveryEntryPoint) {
  for (OpsKernelSpec spec : {OpsKernelSpec{256, 90, true}, OpsKernelSpec{128, 80, false}}) {
    KVCC_ASSERT_OK_AND_ASSIGN(built, BuildOpsKernels(spec, nullptr));
    EXPECT_FALSE(built.compiled.cubin.empty()) << spec.ToString();
    for (const std::string& name : OpsKernelNames()) {
      EXPECT_NE(built.compiled.log.find(absl::StrCat("entry function '", name, "'")),
                std::string::npos)
          << name << " for " << spec.ToString();
    }
  }
}

TEST(OpsKernelsTest, RefusesBadSpecs) {
  EXPECT_FALSE(RenderOpsKernels(OpsKernelSpec{100, 90, false}).ok());
  EXPECT_FALSE(RenderOpsKernels(OpsKernelSpec{2048, 90, false}).ok());
}

}  // namespace
}  // namespace kvcc::codegen
