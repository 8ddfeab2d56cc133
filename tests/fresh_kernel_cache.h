// A kernel cache private to one test process, so a cache warmed by earlier runs or by kvcc
// (the GPU machine keeps one across commands) cannot change what the GPU tests see: a fresh
// temporary directory, removed when the process exits, with $KVCC_CACHE_DIR pointed at it for
// the backends that open the default cache.
#pragma once

#include <string>

namespace kvcc::testing {

// The directory (created on the first call, which also sets $KVCC_CACHE_DIR).
const std::string& FreshKernelCacheDir();

}  // namespace kvcc::testing
