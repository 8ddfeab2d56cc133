#include "tests/fresh_kernel_cache.h"

#include <stdlib.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

namespace kvcc::testing {
namespace {

struct TempCacheDir {
  std::string path;
  TempCacheDir() {
    const char* tmp = std::getenv("TMPDIR");
    std::string pattern = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") +
                          "/kvcc-test-kernels-XXXXXX";
    if (mkdtemp(pattern.data()) != nullptr) {
      path = pattern;
    } else {
      // A full or read-only temp dir: a per-process path still keeps runs apart.
      path = "/tmp/kvcc-test-kernels-" + std::to_string(getpid());
      std::error_code ec;
      std::filesystem::create_directories(path, ec);
    }
    setenv("KVCC_CACHE_DIR", path.c_str(), 1);
  }
  ~TempCacheDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

}  // namespace

const std::string& FreshKernelCacheDir() {
  static TempCacheDir dir;
  return dir.path;
}

}  // namespace kvcc::testing
