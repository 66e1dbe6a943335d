// Reading files that may be hostile: a FIFO, a device, a symlink to /dev/zero, a huge file.
#ifndef VIGIE_COMMON_FILES_H_
#define VIGIE_COMMON_FILES_H_

#include <string>

#include "absl/status/statusor.h"

namespace vigie {

// The whole of `path`, if it is a regular file (after following symlinks) of at most
// `max_bytes`. Never blocks on a FIFO and never reads more than max_bytes + 64 KiB. Errors:
// NotFound (missing), FailedPrecondition ("not a regular file"), ResourceExhausted ("over N
// bytes"), Unavailable (any other failure, with strerror). The message does not name the path.
absl::StatusOr<std::string> ReadRegularFile(const std::string& path, size_t max_bytes);

// Everything left in the open `fd` (from offset 0 with pread when `from_start`, for kernel
// files kept open), at most `max_bytes`: the one bounded read loop the readers above and the
// agent's /proc readers share. Does not close `fd`. Errors: Unavailable (strerror; *error
// receives errno if given), ResourceExhausted ("over N bytes").
absl::StatusOr<std::string> ReadFd(int fd, size_t max_bytes, bool from_start = false,
                                   int* error = nullptr);

}  // namespace vigie

#endif  // VIGIE_COMMON_FILES_H_
