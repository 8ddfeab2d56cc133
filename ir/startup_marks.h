// Start-up phase marks for `kvcc bench startup`: with KVCC_TIMINGS=1 in the environment each
// mark prints one line `kvcc-timing <phase> <unix_ns> [key=value ...]` to stderr, so the bench
// (which knows when it spawned the process) can itemise process start to first token.
#pragma once

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace kvcc::ir {

// The line prefix the bench parses.
inline constexpr absl::string_view kStartupMarkPrefix = "kvcc-timing ";

// Whether KVCC_TIMINGS is set to something other than "" or "0" (read once).
bool StartupMarksEnabled();

// Nanoseconds since the Unix epoch (CLOCK_REALTIME: comparable across processes).
int64_t UnixNanos();

// Prints the mark for `phase` (a word) now, with optional extra `key=value` fields.
void StartupMark(absl::string_view phase, absl::string_view extra = "");

}  // namespace kvcc::ir
