#include "common/runnable.h"

#include <atomic>

#include "gtest/gtest.h"

namespace vigie {
namespace {

class Counter : public Runnable {
 public:
  explicit Counter(absl::Duration period) : Runnable("counter"), period_(period) {}
  ~Counter() override { Stop(); }
  std::atomic<int> loops{0};

 protected:
  void Run() override {
    do {
      ++loops;
    } while (WaitFor(period_));
  }

 private:
  absl::Duration period_;
};

TEST(RunnableTest, StopInterruptsALongWait) {
  Counter c(absl::Hours(1));
  c.Start();
  absl::Time start = absl::Now();
  c.Stop();  // would hang for an hour if the wait were not interruptible
  EXPECT_LT(absl::Now() - start, absl::Seconds(10));
  EXPECT_EQ(c.loops.load(), 1);
}

TEST(RunnableTest, WakeRunsTheLoopAgainWithoutStopping) {
  Counter c(absl::Hours(1));
  c.Start();
  while (c.loops.load() < 1) absl::SleepFor(absl::Milliseconds(1));
  c.Wake();
  while (c.loops.load() < 2) absl::SleepFor(absl::Milliseconds(1));
  c.Stop();
  EXPECT_EQ(c.loops.load(), 2);
}

TEST(RunnableTest, StopIsIdempotent) {
  Counter c(absl::Milliseconds(1));
  c.Start();
  c.Stop();
  c.Stop();
  SUCCEED();
}

}  // namespace
}  // namespace vigie
