// Jittered exponential backoff.
#ifndef VIGIE_COMMON_BACKOFF_H_
#define VIGIE_COMMON_BACKOFF_H_

#include <cstdint>
#include <random>

#include "absl/time/time.h"

namespace vigie {

struct BackoffPolicy {
  absl::Duration initial = absl::Seconds(1);
  absl::Duration max = absl::Seconds(30);
  double multiplier = 2.0;
  // Each delay is multiplied by a uniform factor in [1 - jitter, 1 + jitter].
  double jitter = 0.2;
};

// Not thread-safe.
class Backoff {
 public:
  explicit Backoff(BackoffPolicy policy, uint64_t seed = std::random_device{}())
      : policy_(policy), rng_(static_cast<std::minstd_rand::result_type>(seed)) {}

  // The delay before the next attempt: initial * multiplier^attempts, capped at max, jittered.
  absl::Duration Next();
  // After a success: the next delay is `initial` again.
  void Reset() { attempts_ = 0; }
  int attempts() const { return attempts_; }

 private:
  BackoffPolicy policy_;
  // Small (a Backoff lives in every queued delivery): jitter needs no better generator.
  std::minstd_rand rng_;
  int attempts_ = 0;
};

}  // namespace vigie

#endif  // VIGIE_COMMON_BACKOFF_H_
