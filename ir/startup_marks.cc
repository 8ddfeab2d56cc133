#include "ir/startup_marks.h"

#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace kvcc::ir {

bool StartupMarksEnabled() {
  static const bool enabled = [] {
    const char* v = std::getenv("KVCC_TIMINGS");
    return v != nullptr && v[0] != '\0' && std::strcmp(v, "0") != 0;
  }();
  return enabled;
}

int64_t UnixNanos() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void StartupMark(absl::string_view phase, absl::string_view extra) {
  if (!StartupMarksEnabled()) return;
  // One fputs per line: marks from several threads never interleave mid-line.
  const std::string line = absl::StrCat(kStartupMarkPrefix, phase, " ", UnixNanos(),
                                        extra.empty() ? "" : " ", extra, "\n");
  std::fputs(line.c_str(), stderr);
}

}  // namespace kvcc::ir
