#include "tests/test_util.h"

#include <filesystem>

namespace kvcc::testing {

std::string TempDir(const std::string& name) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::filesystem::path dir = std::filesystem::path(KVCC_BINARY_DIR) / "test_tmp" /
                              (std::string(info->test_suite_name()) + "." + info->name() + "." +
                               name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir.string();
}

}  // namespace kvcc::testing
