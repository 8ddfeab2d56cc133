#include "ir/lazy_library.h"

#include <dlfcn.h>

#include <utility>

#include "absl/strings/str_cat.h"
#include "ir/startup_marks.h"

namespace kvcc::ir {

LazyLibrary::LazyLibrary(std::string soname, std::string purpose, std::string fix,
                         const void* beside)
    : soname_(std::move(soname)), purpose_(std::move(purpose)), fix_(std::move(fix)),
      beside_(beside) {}

void LazyLibrary::Preload() {
  std::call_once(once_, [this] {
    future_ = std::async(std::launch::async, [this] {
                Opened o;
                o.handle = dlopen(soname_.c_str(), RTLD_NOW | RTLD_LOCAL);
                if (o.handle == nullptr) {
                  const char* e = dlerror();
                  o.error = e != nullptr ? e : "unknown dlopen error";
                  Dl_info info{};
                  if (beside_ != nullptr && dladdr(beside_, &info) != 0 &&
                      info.dli_fname != nullptr) {
                    const std::string dir = std::string(info.dli_fname);
                    const size_t slash = dir.rfind('/');
                    if (slash != std::string::npos) {
                      const std::string path = dir.substr(0, slash + 1) + soname_;
                      o.handle = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
                      if (o.handle == nullptr) absl::StrAppend(&o.error, "; nor ", path);
                    }
                  }
                }
                // "loaded_libnvrtc": one mark per library, so the bench sees which opened.
                StartupMark(absl::StrCat("loaded_", soname_.substr(0, soname_.find('.'))));
                return o;
              }).share();
  });
}

const LazyLibrary::Opened& LazyLibrary::Get() {
  Preload();
  return future_.get();
}

absl::Status LazyLibrary::Loaded() {
  const Opened& o = Get();
  if (o.handle != nullptr) return absl::OkStatus();
  return absl::FailedPreconditionError(
      absl::StrCat("cannot load ", soname_, " (", purpose_, "): ", o.error, "; ", fix_));
}

void* LazyLibrary::Symbol(const char* name) {
  const Opened& o = Get();
  return o.handle == nullptr ? nullptr : dlsym(o.handle, name);
}

}  // namespace kvcc::ir
