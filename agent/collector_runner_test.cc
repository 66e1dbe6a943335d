#include "agent/collector_runner.h"

#include <atomic>

#include "common/mutex.h"
#include "gtest/gtest.h"

namespace vigie::agent {
namespace {

class FakeCollector : public Collector {
 public:
  FakeCollector(const char* name, std::atomic<bool>* hang) : name_(name), hang_(hang) {}
  const char* name() const override { return name_; }
  absl::Status Collect(int64_t now_ms, Collection* out) override {
    while (hang_ != nullptr && hang_->load()) absl::SleepFor(absl::Milliseconds(5));
    out->Add("x", {{"c", name_}}, 1, now_ms, MetricType::kGauge, "");
    return absl::OkStatus();
  }

 private:
  const char* name_;
  std::atomic<bool>* hang_;
};

class FailingCollector : public Collector {
 public:
  const char* name() const override { return "failing"; }
  absl::Status Collect(int64_t, Collection*) override {
    return absl::UnavailableError("cannot read");
  }
};

TEST(CollectorRunnerTest, AHungCollectorIsAbandonedAndTheOthersGoOn) {
  auto hang = std::make_shared<std::atomic<bool>>(true);
  {
    std::vector<std::unique_ptr<Collector>> cs;
    cs.push_back(std::make_unique<FakeCollector>("a", nullptr));
    cs.push_back(std::make_unique<FakeCollector>("stuck", hang.get()));
    cs.push_back(std::make_unique<FakeCollector>("b", nullptr));
    cs.push_back(std::make_unique<FailingCollector>());
    CollectorRunner runner(std::move(cs), absl::Milliseconds(200), /*workers=*/1);

    const absl::Time start = absl::Now();
    auto r = runner.RunRound(1);
    EXPECT_LT(absl::Now() - start, absl::Seconds(2));
    ASSERT_EQ(r.size(), 4u);
    EXPECT_TRUE(r[0].status.ok());
    EXPECT_EQ(r[0].collection.samples.size(), 1u);
    EXPECT_EQ(r[1].collector, "stuck");
    EXPECT_EQ(r[1].status.code(), absl::StatusCode::kDeadlineExceeded);
    // With one worker held by the stuck call, a replacement ran the rest.
    EXPECT_TRUE(r[2].status.ok()) << r[2].status;
    EXPECT_EQ(r[3].status.code(), absl::StatusCode::kUnavailable);

    // Next round: the stuck one is not started again; the others still run.
    r = runner.RunRound(2);
    EXPECT_EQ(r[1].status.code(), absl::StatusCode::kUnavailable);
    EXPECT_TRUE(r[0].status.ok());
    EXPECT_TRUE(r[2].status.ok());

    hang->store(false);  // the mount came back
    absl::SleepFor(absl::Milliseconds(50));
    r = runner.RunRound(3);
    EXPECT_TRUE(r[1].status.ok()) << r[1].status;
    EXPECT_EQ(r[1].collection.samples.size(), 1u);
  }
}

}  // namespace
}  // namespace vigie::agent
