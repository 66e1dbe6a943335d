#include "controlplane/silences.h"

#include <cmath>

#include "gtest/gtest.h"

namespace vigie::controlplane {
namespace {

constexpr int64_t kNow = 1800000000;  // seconds; 2027-01-15
const absl::Time now = absl::FromUnixSeconds(kNow);

v1::Silence Proto(int64_t starts, int64_t ends, const std::string& every = "", int64_t until = 0) {
  v1::Silence p;
  (*p.mutable_matchers())["agent"] = "web1";
  p.set_starts_at_unix(starts);
  p.set_ends_at_unix(ends);
  p.set_repeat_every(every);
  p.set_repeat_until_unix(until);
  return p;
}

TEST(SilenceTest, MatchesExactValuesAndEmptyForAbsent) {
  Silence s;
  s.matchers = {{"agent", "web1"}, {"job", ""}};
  EXPECT_TRUE(s.Matches({{"agent", "web1"}, {"alertname", "X"}}));
  EXPECT_FALSE(s.Matches({{"agent", "web1"}, {"job", "node"}}));
  EXPECT_FALSE(s.Matches({{"agent", "web2"}}));
  EXPECT_FALSE(s.Matches({}));
}

TEST(SilenceTest, OneOffWindowIsHalfOpen) {
  Silence s;
  s.starts_ms = 1000;
  s.ends_ms = 2000;
  EXPECT_FALSE(s.ActiveAt(999));
  EXPECT_TRUE(s.ActiveAt(1000));
  EXPECT_TRUE(s.ActiveAt(1999));
  EXPECT_FALSE(s.ActiveAt(2000));
  EXPECT_FALSE(s.EndedBy(1999));
  EXPECT_TRUE(s.EndedBy(2000));
}

// A maintenance window every Sunday 02:00-04:00 UTC, for three weeks.
TEST(SilenceTest, RecurringWindowTable) {
  constexpr int64_t kHour = 3600 * 1000LL, kWeek = 7 * 24 * kHour;
  Silence s;
  s.starts_ms = 100 * kWeek + 2 * kHour;
  s.ends_ms = s.starts_ms + 2 * kHour;
  s.repeat_every_ms = kWeek;
  s.repeat_until_ms = s.starts_ms + 3 * kWeek;  // windows k = 0, 1, 2
  struct Case {
    int64_t at;
    bool active;
    bool ended;
  } cases[] = {
      {s.starts_ms - 1, false, false},
      {s.starts_ms, true, false},
      {s.starts_ms + 2 * kHour - 1, true, false},
      {s.starts_ms + 2 * kHour, false, false},
      {s.starts_ms + kWeek - 1, false, false},
      {s.starts_ms + kWeek, true, false},
      {s.starts_ms + 2 * kWeek + kHour, true, false},
      {s.starts_ms + 2 * kWeek + 2 * kHour, false, true},
      {s.starts_ms + 3 * kWeek, false, true},  // would be window 3: past repeat_until
      {s.starts_ms + 3 * kWeek + kHour, false, true},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(s.ActiveAt(c.at), c.active) << "at " << c.at - s.starts_ms;
    EXPECT_EQ(s.EndedBy(c.at), c.ended) << "at " << c.at - s.starts_ms;
  }
  s.repeat_until_ms = 0;  // forever
  EXPECT_TRUE(s.ActiveAt(s.starts_ms + 1000 * kWeek + kHour));
  EXPECT_FALSE(s.EndedBy(s.starts_ms + 1000 * kWeek + 3 * kHour));
}

TEST(SilenceTest, FromProtoDefaultsAndRoundTrip) {
  v1::Silence p = Proto(0, kNow + 3600);
  p.set_comment("disk swap");
  absl::StatusOr<Silence> s = SilenceFromProto(p, now, "tok123");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->starts_ms, kNow * 1000);
  EXPECT_EQ(s->created_by, "tok123");
  EXPECT_TRUE(s->ActiveAt(kNow * 1000));
  v1::Silence back;
  SilenceToProto(*s, now, &back);
  EXPECT_EQ(back.matchers().at("agent"), "web1");
  EXPECT_EQ(back.ends_at_unix(), kNow + 3600);
  EXPECT_EQ(back.comment(), "disk swap");
  EXPECT_TRUE(back.active());
  EXPECT_EQ(back.repeat_every(), "");

  absl::StatusOr<Silence> weekly =
      SilenceFromProto(Proto(kNow - 3600, kNow + 3600, "168h", kNow + 30 * 86400), now, "tok123");
  ASSERT_TRUE(weekly.ok()) << weekly.status();
  SilenceToProto(*weekly, now, &back);
  EXPECT_EQ(back.repeat_every(), "168h");
  EXPECT_EQ(back.repeat_until_unix(), kNow + 30 * 86400);
}

TEST(SilenceTest, FromProtoRefusesBadInputNamingTheField) {
  struct Case {
    std::string name;
    v1::Silence proto;
    std::string error;  // a substring of the message
  };
  std::vector<Case> cases;
  auto add = [&](std::string name, v1::Silence p, std::string error) {
    cases.push_back({std::move(name), std::move(p), std::move(error)});
  };
  v1::Silence none = Proto(0, kNow + 60);
  none.clear_matchers();
  add("no matchers", none, "silence.matchers: at least one is required");
  v1::Silence all_empty = Proto(0, kNow + 60);
  (*all_empty.mutable_matchers())["agent"] = "";
  add("only empty values", all_empty, "non-empty value");
  v1::Silence bad_name = Proto(0, kNow + 60);
  (*bad_name.mutable_matchers())["1bad-name"] = "x";
  add("bad label name", bad_name, "bad label name \"1bad-name\"");
  v1::Silence bad_utf8 = Proto(0, kNow + 60);
  (*bad_utf8.mutable_matchers())["agent"] = "\xff\xfe";
  add("invalid UTF-8 value", bad_utf8, "silence.matchers[\"agent\"]: not valid UTF-8");
  v1::Silence too_many = Proto(0, kNow + 60);
  for (int i = 0; i < 40; ++i) (*too_many.mutable_matchers())["l" + std::to_string(i)] = "v";
  add("too many matchers", too_many, "at most 32");
  v1::Silence long_comment = Proto(0, kNow + 60);
  long_comment.set_comment(std::string(2000, 'x'));
  add("oversized comment", long_comment, "silence.comment: at most 1024 bytes, got 2000");
  add("no end", Proto(0, 0), "silence.ends_at_unix: required");
  add("end before start", Proto(kNow + 600, kNow + 60), "must be after starts_at_unix");
  add("already past", Proto(kNow - 600, kNow - 60), "already past");
  add("1970", Proto(1, 2), "already past");
  add("2100", Proto(0, 4102444800), "at most 366 days after starts_at_unix, got 4102444800");
  add("starts 2100", Proto(4102444800, 4102448400), "silence.starts_at_unix: must be within");
  add("negative start", Proto(-5, kNow + 60), "silence.starts_at_unix");
  add("bad repeat", Proto(0, kNow + 60, "weekly"), "silence.repeat_every");
  add("repeat too short", Proto(0, kNow + 60, "30s"), "between 1m and 366d");
  add("repeat within window", Proto(0, kNow + 7200, "1h"), "longer than the window");
  add("until without repeat", Proto(0, kNow + 60, "", kNow + 600),
      "silence.repeat_until_unix: only with repeat_every");
  add("until before start", Proto(kNow, kNow + 60, "24h", kNow - 10), "must be after starts_at");
  add("until 2200", Proto(kNow, kNow + 60, "24h", 7258118400), "at most 4102444800");
  add("every window past", Proto(kNow - 86400 * 3, kNow - 86400 * 3 + 60, "24h", kNow - 86400),
      "every window is already past");
  for (const Case& c : cases) {
    absl::StatusOr<Silence> s = SilenceFromProto(c.proto, now, "tok");
    ASSERT_FALSE(s.ok()) << c.name;
    EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument) << c.name;
    EXPECT_NE(s.status().message().find(c.error), std::string::npos)
        << c.name << ": " << s.status().message();
  }
}

TEST(SilenceTest, SilencedByPicksAnActiveMatchingOne) {
  Silence ended, other, hit;
  ended.id = "ended";
  ended.matchers = {{"agent", "web1"}};
  ended.starts_ms = 0;
  ended.ends_ms = 10;
  other.id = "other";
  other.matchers = {{"agent", "web2"}};
  other.starts_ms = 0;
  other.ends_ms = 1000;
  hit = other;
  hit.id = "hit";
  hit.matchers = {{"agent", "web1"}};
  std::vector<Silence> all = {ended, other, hit};
  const Silence* s = SilencedBy(all, {{"agent", "web1"}}, 500);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->id, "hit");
  EXPECT_EQ(SilencedBy(all, {{"agent", "web3"}}, 500), nullptr);
  EXPECT_EQ(SilencedBy(all, {{"agent", "web1"}}, 1000), nullptr);
}

}  // namespace
}  // namespace vigie::controlplane
