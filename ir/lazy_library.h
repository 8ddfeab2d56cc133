// A shared library opened at run time (dlopen on a background thread) instead of linked: big
// CUDA libraries cost 10-200 ms of relocations and static initialisers at process start, which
// then overlap other start-up work or are skipped by commands that never call them.
#pragma once

#include <future>
#include <mutex>
#include <string>

#include "absl/status/status.h"

namespace kvcc::ir {

class LazyLibrary {
 public:
  // `soname` as dlopen takes it; `purpose` and `fix` complete the error when it cannot load.
  // When the loader's search path lacks it, the directory of the library holding `beside` (a
  // function of a linked sibling such as libcudart) is tried too.
  LazyLibrary(std::string soname, std::string purpose, std::string fix,
              const void* beside = nullptr);

  // Starts opening on a background thread; later calls do nothing.
  void Preload();
  // Waits for the open (starting it if needed); an error names the library and dlerror's reason.
  absl::Status Loaded();
  // The library's symbol `name`; null when the library did not open or lacks it.
  void* Symbol(const char* name);

 private:
  struct Opened {
    void* handle = nullptr;
    std::string error;
  };
  const Opened& Get();

  const std::string soname_, purpose_, fix_;
  const void* beside_;
  std::once_flag once_;
  std::shared_future<Opened> future_;
};

}  // namespace kvcc::ir
