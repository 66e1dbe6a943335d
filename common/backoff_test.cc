#include "common/backoff.h"

#include "gtest/gtest.h"

namespace vigie {
namespace {

TEST(BackoffTest, GrowsGeometricallyWithinJitterAndCaps) {
  Backoff b({absl::Seconds(1), absl::Seconds(10), 2.0, 0.2}, /*seed=*/42);
  const double expected[] = {1, 2, 4, 8, 10, 10, 10};
  for (double e : expected) {
    double got = absl::ToDoubleSeconds(b.Next());
    EXPECT_GE(got, e * 0.8) << "expected about " << e;
    EXPECT_LE(got, e * 1.2) << "expected about " << e;
  }
}

TEST(BackoffTest, ResetStartsOver) {
  Backoff b({absl::Milliseconds(100), absl::Seconds(5), 3.0, 0.0}, 1);
  EXPECT_EQ(b.Next(), absl::Milliseconds(100));
  EXPECT_EQ(b.Next(), absl::Milliseconds(300));
  b.Reset();
  EXPECT_EQ(b.Next(), absl::Milliseconds(100));
}

TEST(BackoffTest, JitterSpreadsDelays) {
  // Many agents reconnecting at once must not retry in lockstep.
  Backoff a({absl::Seconds(1), absl::Seconds(30), 2.0, 0.2}, 1);
  Backoff b({absl::Seconds(1), absl::Seconds(30), 2.0, 0.2}, 2);
  EXPECT_NE(a.Next(), b.Next());
}

TEST(BackoffTest, NeverOverflowsAfterManyAttempts) {
  Backoff b({absl::Seconds(1), absl::Seconds(30), 2.0, 0.0}, 1);
  for (int i = 0; i < 10000; ++i) b.Next();
  EXPECT_EQ(b.Next(), absl::Seconds(30));
}

}  // namespace
}  // namespace vigie
