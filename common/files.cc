#include "common/files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace vigie {

absl::StatusOr<std::string> ReadRegularFile(const std::string& path, size_t max_bytes) {
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) return absl::NotFoundError(strerror(e));
    return absl::UnavailableError(strerror(e));
  }
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return absl::FailedPreconditionError("not a regular file");
  }
  if (static_cast<uint64_t>(st.st_size) > max_bytes) {
    close(fd);
    return absl::ResourceExhaustedError(absl::StrCat("over ", max_bytes, " bytes"));
  }
  absl::StatusOr<std::string> out = ReadFd(fd, max_bytes);
  close(fd);
  return out;
}

absl::StatusOr<std::string> ReadFd(int fd, size_t max_bytes, bool from_start, int* error) {
  // An 8 KiB buffer: one read for nearly every /proc and /sys file, small strings stay inline,
  // and the reading thread's stack stays small (its pages stay resident once touched).
  std::string out;
  char buf[8192];
  while (true) {
    ssize_t n = from_start ? pread(fd, buf, sizeof(buf), static_cast<off_t>(out.size()))
                           : read(fd, buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      if (error != nullptr) *error = errno;
      return absl::UnavailableError(strerror(errno));
    }
    if (n == 0) return out;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > max_bytes) {  // it grew while being read, or never ends (/dev/zero)
      return absl::ResourceExhaustedError(absl::StrCat("over ", max_bytes, " bytes"));
    }
  }
}

}  // namespace vigie
