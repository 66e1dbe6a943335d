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
  // Read straight into the string: no 64 KiB stack buffer left resident on the caller's stack.
  std::string out;
  size_t used = 0;
  while (true) {
    out.resize(used + 65536);
    ssize_t n = read(fd, out.data() + used, 65536);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int e = errno;
      close(fd);
      return absl::UnavailableError(strerror(e));
    }
    if (n == 0) break;
    used += static_cast<size_t>(n);
    if (used > max_bytes) {  // it grew while being read
      close(fd);
      return absl::ResourceExhaustedError(absl::StrCat("over ", max_bytes, " bytes"));
    }
  }
  out.resize(used);
  close(fd);
  return out;
}

}  // namespace vigie
