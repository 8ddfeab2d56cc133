// The PassManager: pipeline order, verification after every pass (errors name the pass),
// --dump-after output, and rejection of an unknown dump target.
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "ir/op_names.h"
#include "ir/printer.h"
#include "passes/fuse.h"
#include "passes/kv_quantize.h"
#include "passes/pass_manager.h"
#include "tests/test_util.h"

namespace kvcc::passes {
namespace {

// Records the order passes ran in, through the module's metadata.
class TagPass : public Pass {
 public:
  explicit TagPass(std::string tag) : tag_(std::move(tag)) {}
  std::string name() const override { return tag_; }
  absl::Status Run(ir::Module& m) override {
    m.metadata["order"] += tag_ + ";";
    return absl::OkStatus();
  }

 private:
  std::string tag_;
};

// Leaves the module structurally invalid: a kv_cache_write result typed unlike its attributes.
class CorruptingPass : public Pass {
 public:
  std::string name() const override { return "corrupt"; }
  absl::Status Run(ir::Module& m) override {
    for (const auto& n : m.graph.nodes()) {
      if (n->op == ir::op::kKvCacheWrite) {
        n->output()->type.dtype = ir::DType::kI8;
        break;
      }
    }
    return absl::OkStatus();
  }
};

class FailingPass : public Pass {
 public:
  std::string name() const override { return "failing"; }
  absl::Status Run(ir::Module&) override { return absl::InvalidArgumentError("no way"); }
};

TEST(PassManagerTest, RunsPassesInOrder) {
  auto m = testing::LoadStories260K();
  ASSERT_NE(m, nullptr);
  PassManager pm;
  pm.Add(std::make_unique<TagPass>("a"));
  pm.Add(std::make_unique<TagPass>("b"));
  pm.Add(std::make_unique<TagPass>("c"));
  EXPECT_EQ(pm.PassNames(), (std::vector<std::string>{"a", "b", "c"}));
  KVCC_ASSERT_OK(pm.Run(*m));
  EXPECT_EQ(m->metadata["order"], "a;b;c;");
}

TEST(PassManagerTest, VerifiesAfterEachPassAndNamesTheCulprit) {
  auto m = testing::LoadStories260K();
  ASSERT_NE(m, nullptr);
  PassManager pm;
  pm.Add(std::make_unique<TagPass>("a"));
  pm.Add(std::make_unique<CorruptingPass>());
  pm.Add(std::make_unique<TagPass>("after"));
  absl::Status s = pm.Run(*m);
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.message().find("after pass 'corrupt'"), std::string::npos) << s;
  EXPECT_EQ(m->metadata["order"], "a;");  // the pipeline stopped at the invalid module
}

TEST(PassManagerTest, PassErrorsCarryThePassName) {
  auto m = testing::LoadStories260K();
  ASSERT_NE(m, nullptr);
  PassManager pm;
  pm.Add(std::make_unique<FailingPass>());
  absl::Status s = pm.Run(*m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("pass 'failing': no way"), std::string::npos) << s;
}

TEST(PassManagerTest, DumpsTheModuleAfterTheNamedPass) {
  auto m = testing::LoadStories260K();
  ASSERT_NE(m, nullptr);
  PassManager pm;
  pm.Add(std::make_unique<FusePass>());
  pm.Add(std::make_unique<KvQuantizePass>(KvQuantScheme::kInt8Online));
  std::ostringstream dump;
  pm.DumpAfter("fuse", &dump);
  KVCC_ASSERT_OK(pm.Run(*m));
  // The dump is the state between the passes: fused, not yet quantized.
  const std::string text = dump.str();
  EXPECT_NE(text.find("qkv_proj"), std::string::npos);
  EXPECT_EQ(text.find("\"online\""), std::string::npos);
  EXPECT_NE(ir::Print(*m).find("kv_scheme=\"online\""), std::string::npos);
  EXPECT_NE(text, ir::Print(*m));
}

TEST(PassManagerTest, UnknownDumpTargetIsAnError) {
  auto m = testing::LoadStories260K();
  ASSERT_NE(m, nullptr);
  const std::string before = ir::Print(*m);
  PassManager pm;
  pm.Add(std::make_unique<FusePass>());
  std::ostringstream dump;
  pm.DumpAfter("fusion", &dump);
  absl::Status s = pm.Run(*m);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("'fusion'"), std::string::npos) << s;
  EXPECT_NE(s.message().find("fuse"), std::string::npos) << s;
  EXPECT_EQ(ir::Print(*m), before);  // nothing ran
}

}  // namespace
}  // namespace kvcc::passes
