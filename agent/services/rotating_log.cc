#include "agent/services/rotating_log.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace vigie::agent::services {

RotatingLog::~RotatingLog() {
  if (fd_ >= 0) close(fd_);
}

absl::Status RotatingLog::Open() {
  fd_ = open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
  if (fd_ < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", path_, ": ", std::strerror(errno)));
  }
  struct stat st {};
  size_ = fstat(fd_, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
  return absl::OkStatus();
}

void RotatingLog::Rotate() {
  close(fd_);
  fd_ = -1;
  unlink(absl::StrCat(path_, ".", keep_).c_str());
  for (int i = keep_ - 1; i >= 1; --i) {
    rename(absl::StrCat(path_, ".", i).c_str(), absl::StrCat(path_, ".", i + 1).c_str());
  }
  if (keep_ > 0) {
    rename(path_.c_str(), absl::StrCat(path_, ".1").c_str());
  } else {
    unlink(path_.c_str());
  }
  if (!Open().ok()) fd_ = -1;  // retried at the next write
}

void RotatingLog::Write(const char* data, size_t n) {
  while (n > 0) {
    if (fd_ < 0 && !Open().ok()) return;
    if (size_ >= max_bytes_) Rotate();
    if (fd_ < 0) return;
    // What fits in this file; the rest goes to the next one.
    const size_t chunk = std::min<uint64_t>(n, max_bytes_ - size_);
    const ssize_t w = write(fd_, data, chunk);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;  // a full disk: the output is lost, the service goes on
    data += w;
    n -= static_cast<size_t>(w);
    size_ += static_cast<uint64_t>(w);
  }
}

}  // namespace vigie::agent::services
