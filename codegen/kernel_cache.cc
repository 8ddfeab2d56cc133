#include "codegen/kernel_cache.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "codegen/sha256.h"
#include "ir/status_macros.h"

namespace kvcc::codegen {
namespace {

// Entry file: magic (8 bytes) | payload length (u64 little-endian) | sha256(payload) | payload.
constexpr char kMagic[8] = {'K', 'V', 'C', 'C', 'K', 'C', '0', '1'};
constexpr size_t kHeaderBytes = 8 + 8 + 32;

absl::Status MakeDirs(const std::string& path) {
  std::string partial;
  for (size_t i = 0; i <= path.size(); ++i) {
    if (i == path.size() || (path[i] == '/' && i > 0)) {
      partial = path.substr(0, i);
      if (mkdir(partial.c_str(), 0755) != 0 && errno != EEXIST) {
        return absl::InternalError(absl::StrCat("kernel cache: cannot create directory ",
                                                partial, ": ", std::strerror(errno)));
      }
    }
  }
  return absl::OkStatus();
}

}  // namespace

std::string KernelCache::DefaultDir() {
  if (const char* dir = std::getenv("KVCC_CACHE_DIR"); dir != nullptr && *dir != '\0') {
    return dir;
  }
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg != nullptr && *xdg != '\0') {
    return absl::StrCat(xdg, "/kvcc");
  }
  if (const char* home = std::getenv("HOME"); home != nullptr && *home != '\0') {
    return absl::StrCat(home, "/.cache/kvcc");
  }
  return "/tmp/kvcc-cache";
}

std::string KernelCache::Key(absl::string_view source, absl::string_view options,
                             absl::string_view arch, absl::string_view nvrtc_version) {
  // Each field is length-prefixed so that no two different tuples hash the same bytes.
  Sha256 h;
  for (absl::string_view field : {source, options, arch, nvrtc_version}) {
    uint64_t n = field.size();
    h.Update(&n, sizeof(n));
    h.Update(field);
  }
  return DigestHex(h.Final());
}

std::string KernelCache::EntryPath(absl::string_view key) const {
  return absl::StrCat(dir_, "/", key, ".kc");
}

absl::StatusOr<std::optional<std::string>> KernelCache::Lookup(absl::string_view key) {
  const std::string path = EntryPath(key);
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ++misses_;
    return std::optional<std::string>();
  }
  std::stringstream buffer;
  buffer << in.rdbuf();
  const std::string data = buffer.str();
  bool valid = data.size() >= kHeaderBytes && std::memcmp(data.data(), kMagic, 8) == 0;
  uint64_t length = 0;
  if (valid) {
    for (int i = 0; i < 8; ++i) length |= uint64_t{static_cast<uint8_t>(data[8 + i])} << (8 * i);
    valid = length == data.size() - kHeaderBytes;
  }
  std::string payload;
  if (valid) {
    payload = data.substr(kHeaderBytes);
    Sha256 h;
    h.Update(payload);
    const std::array<uint8_t, 32> digest = h.Final();
    valid = std::memcmp(digest.data(), data.data() + 16, 32) == 0;
  }
  if (!valid) {
    // Remove it so the rebuilt entry replaces it; a concurrent writer's rename is atomic, so
    // at worst this deletes a good entry that is then rebuilt once more.
    std::remove(path.c_str());
    ++corrupt_;
    ++misses_;
    return std::optional<std::string>();
  }
  ++hits_;
  return std::optional<std::string>(std::move(payload));
}

absl::Status KernelCache::Store(absl::string_view key, absl::string_view payload) {
  KVCC_RETURN_IF_ERROR(MakeDirs(dir_));
  std::string header(kMagic, 8);
  const uint64_t length = payload.size();
  for (int i = 0; i < 8; ++i) header.push_back(static_cast<char>((length >> (8 * i)) & 0xff));
  Sha256 h;
  h.Update(payload);
  const std::array<uint8_t, 32> digest = h.Final();
  header.append(reinterpret_cast<const char*>(digest.data()), digest.size());

  const std::string path = EntryPath(key);
  const std::string tmp = absl::StrCat(path, ".tmp.", getpid(), ".",
                                       std::hash<std::thread::id>()(std::this_thread::get_id()));
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(header.data(), static_cast<std::streamsize>(header.size()));
    out.write(payload.data(), static_cast<std::streamsize>(payload.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return absl::InternalError(absl::StrCat("kernel cache: cannot write ", tmp));
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return absl::InternalError(absl::StrCat("kernel cache: cannot rename ", tmp, " to ", path,
                                            ": ", std::strerror(err)));
  }
  return absl::OkStatus();
}

}  // namespace kvcc::codegen
