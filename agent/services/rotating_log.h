// A service's output file, capped in bytes and rotated; written by the service's shim.
#ifndef VIGIE_AGENT_SERVICES_ROTATING_LOG_H_
#define VIGIE_AGENT_SERVICES_ROTATING_LOG_H_

#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace vigie::agent::services {

// A log file capped at max_bytes: when a write would pass it, <name>.log becomes <name>.log.1
// (and .1 becomes .2, ..., the one past `keep` is deleted).
class RotatingLog {
 public:
  RotatingLog(std::string path, uint64_t max_bytes, int keep)
      : path_(std::move(path)), max_bytes_(max_bytes), keep_(keep) {}
  ~RotatingLog();
  absl::Status Open();
  void Write(const char* data, size_t n);

 private:
  void Rotate();
  const std::string path_;
  const uint64_t max_bytes_;
  const int keep_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace vigie::agent::services

#endif  // VIGIE_AGENT_SERVICES_ROTATING_LOG_H_
