#include "common/backoff.h"

#include <algorithm>
#include <cmath>

namespace vigie {

absl::Duration Backoff::Next() {
  double base = absl::ToDoubleSeconds(policy_.initial) *
                std::pow(std::max(1.0, policy_.multiplier), attempts_);
  base = std::min(base, absl::ToDoubleSeconds(policy_.max));
  // Stop growing the exponent once capped, so it never overflows.
  if (base < absl::ToDoubleSeconds(policy_.max)) ++attempts_;
  std::uniform_real_distribution<double> jitter(1.0 - policy_.jitter, 1.0 + policy_.jitter);
  return absl::Seconds(base * jitter(rng_));
}

}  // namespace vigie
