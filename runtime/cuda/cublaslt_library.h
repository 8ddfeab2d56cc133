// libcublasLt is opened at run time instead of linked: its load (~0.1-0.2 s of relocations and
// static initialisers, most of what a kvcc process spent before main) then runs on a thread of
// its own while the CUDA context is created, and commands without GPU GEMMs never pay it. The
// cublasLt* functions kvcc calls are defined in cublaslt_library.cc as forwards into it.
#pragma once

#include "absl/status/status.h"

namespace kvcc::runtime {

// Starts opening the library on a background thread; later calls do nothing.
void PreloadCublasLt();

// Waits for the library (opening it now if PreloadCublasLt was not called); an error names
// the library and why dlopen refused it.
absl::Status CublasLtLoaded();

// The library's function `name` (null when it did not load); for the forwards.
void* CublasLtSymbol(const char* name);

}  // namespace kvcc::runtime
