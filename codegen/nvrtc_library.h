// libnvrtc is opened at run time instead of linked (ir/lazy_library.h): a process whose
// kernels all come from an artifact or the kernel cache only needs its version string, and the
// load overlaps the artifact's checks. The nvrtc* functions kvcc calls are defined in
// nvrtc_library.cc as forwards into it.
#pragma once

#include "absl/status/status.h"

namespace kvcc::codegen {

// Starts opening the library on a background thread; later calls do nothing.
void PreloadNvrtc();

// Waits for the library; an error names it and why dlopen refused it.
absl::Status NvrtcLoaded();

// The library's function `name` (null when it did not load); for the forwards.
void* NvrtcSymbol(const char* name);

}  // namespace kvcc::codegen
