#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <set>
#include <thread>

#include "absl/strings/str_cat.h"
#include "agent/checks/check.h"
#include "agent/checks/check_loop.h"
#include "common/agent_message.h"
#include "common/mutex.h"
#include "common/status_matchers.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace vigie::agent::checks {
namespace {

using ::testing::HasSubstr;
using ::vigie::testing::StatusIs;

v1::CheckConfig Config(const std::string& name, const std::string& target) {
  v1::CheckConfig c;
  c.set_name(name);
  c.set_target(target);
  return c;
}

TEST(TargetTest, SplitsUrls) {
  absl::StatusOr<Target> t = ParseTarget("https://example.org:8443/health?x=1", "t");
  ASSERT_TRUE(t.ok()) << t.status();
  EXPECT_EQ(t->scheme, "https");
  EXPECT_EQ(t->host, "example.org");
  EXPECT_EQ(t->port, 8443);
  EXPECT_EQ(t->path_and_query, "/health?x=1");
  t = ParseTarget("http://[::1]/", "t");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->host, "::1");
  EXPECT_EQ(t->port, 80);
  t = ParseTarget("dns://127.0.0.1:5353/example.org?type=MX", "t");
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->port, 5353);
  EXPECT_EQ(t->path_and_query, "/example.org?type=MX");
}

TEST(TargetTest, RefusesWhatIsNotAUrl) {
  EXPECT_THAT(
      ParseTarget("", "checks[0].target").status(),
      StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("checks[0].target: required")));
  EXPECT_THAT(ParseTarget("example.org", "f").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not a URL")));
  EXPECT_THAT(ParseTarget("http://h:99999/", "f").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("\"http://h:99999/\"")));
  EXPECT_THAT(ParseTarget(std::string(3000, 'a'), "f").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("longer than 2048")));
}

TEST(CheckSpecTest, FillsDefaults) {
  absl::StatusOr<CheckSpec> s = CheckSpecFromConfig(Config("home", "https://example.org/"), "c");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->interval, absl::Seconds(30));
  EXPECT_EQ(s->timeout, absl::Seconds(10));
  EXPECT_EQ(s->failures, 1);
  EXPECT_EQ(s->tls.expiry_warning, absl::Hours(14 * 24));
  v1::CheckConfig c = Config("fast", "tcp://127.0.0.1:22");
  c.set_interval("2s");
  s = CheckSpecFromConfig(c, "c");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->timeout, absl::Seconds(1));  // never the default 10s above a 2s interval
  s = CheckSpecFromConfig(Config("mail", "smtps://mail.example.org"), "c");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->parsed.port, 465);
  s = CheckSpecFromConfig(Config("ns", "dns://[::1]:5353/example.org"), "c");
  ASSERT_TRUE(s.ok()) << s.status();
  c = Config("w", "https://example.org/");
  c.mutable_http()->set_tls_expiry_warning("30d");
  s = CheckSpecFromConfig(c, "c");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->tls.expiry_warning, absl::Hours(30 * 24));
}

TEST(CheckSpecTest, RefusesBadSettingsNamingTheFieldAndValue) {
  struct Case {
    v1::CheckConfig config;
    std::string error;
  };
  std::vector<Case> cases;
  cases.push_back({Config("bad name", "http://h/"), "checks[0].name: \"bad name\""});
  cases.push_back({Config("x", "ftp://h/"), "scheme \"ftp\" is not supported"});
  cases.push_back({Config("x", "tcp://h"), "needs a host and a port"});
  cases.push_back({Config("x", "dns://127.0.0.1/n?type=SRV"), "type \"SRV\""});
  cases.push_back({Config("x", "dns://127.0.0.1/n?class=IN"), "unknown parameter \"class\""});
  cases.push_back({Config("x", "dns://127.0.0.1/n?type=A&type=MX"), "type is given twice"});
  cases.push_back({Config("x", "http://user:pw@h/"), "credentials in the URL"});
  cases.push_back({Config("x", "rediss://h:6380"), "rediss:// (Redis over TLS) is not supported"});
  cases.push_back({Config("x", "redis://h/1/x"), "a redis target has no path"});
  cases.push_back({Config("x", "postgresql://u@h/db?sslmode=nope"), "\"nope\" is not disable"});
  cases.push_back({Config("x", "postgresql://u@h/db?options=x"), "unknown parameter \"options\""});
  cases.push_back({Config("x", "postgresql:///db"), "needs a host"});
  cases.push_back({Config("x", "command://check_dummy"), "must name a program by its absolute"});
  cases.push_back({Config("x", "command:///nonexistent/check_x"),
                   "/nonexistent/check_x cannot be run: No such file or directory"});
  {
    v1::CheckConfig c = Config("x", "redis://:secret@h:6379");
    c.mutable_redis()->set_password_file("/etc/hostname");
    cases.push_back(
        {c, "the password is both in the target and in checks[0] (x).redis.password_file"});
  }
  {
    v1::CheckConfig c = Config("x", "redis://h:6379");
    c.mutable_redis()->set_password_file("/nonexistent/pw");
    cases.push_back({c, "redis.password_file"});
  }
  {
    v1::CheckConfig c = Config("x", "command:///bin/true?a");
    c.mutable_command()->add_args("b");
    cases.push_back({c, "arguments both in the target and in command.args"});
  }
  cases.push_back({Config("x", "dns://ns1.example.org/example.org"),
                   "the DNS server must be an IP address, got \"ns1.example.org\""});
  {
    v1::CheckConfig c = Config("x", "http://h/");
    c.set_timeout("5s");
    c.set_interval("5s");
    cases.push_back({c, "checks[0] (x).timeout: must be at least 10ms and below interval"});
  }
  {
    v1::CheckConfig c = Config("x", "http://h/");
    c.set_interval("500ms");
    cases.push_back({c, ".interval: must be between 1s and 24h, got \"500ms\""});
  }
  {
    v1::CheckConfig c = Config("x", "http://h/");
    c.mutable_http()->add_expect_status("2xx");
    cases.push_back({c, "http.expect_status[0]: \"2xx\""});
  }
  {
    v1::CheckConfig c = Config("x", "http://h/");
    c.mutable_http()->set_body_regex("(");
    cases.push_back({c, "http.body_regex: \"(\""});
  }
  {
    v1::CheckConfig c = Config("x", "http://h/");
    (*c.mutable_http()->mutable_headers())["X-A"] = "a\r\nInjected: 1";
    cases.push_back({c, "contains a line break"});
  }
  {
    v1::CheckConfig c = Config("x", "https://h/");
    c.mutable_http()->mutable_tls()->set_ca_file("/nonexistent/ca.pem");
    cases.push_back({c, "http.tls.ca_file: \"/nonexistent/ca.pem\" cannot be read"});
  }
  {
    v1::CheckConfig c = Config("x", "http://h/");
    (*c.mutable_labels())["check"] = "y";
    cases.push_back({c, "labels: \"check\" is set by Vigie"});
  }
  {
    // The control plane's own label rules: a value it would refuse is refused here.
    v1::CheckConfig c = Config("x", "http://h/");
    (*c.mutable_labels())["team"] = std::string("a\0b", 3);
    cases.push_back({c, "checks[0] (x).labels[\"team\"]: value contains a NUL byte"});
    c = Config("x", "http://h/");
    (*c.mutable_labels())["team"] = std::string(2000, 'a');
    cases.push_back({c, "value of 2000 bytes exceeds 1024"});
    c = Config("x", "http://h/");
    for (int i = 0; i < 40; ++i) (*c.mutable_labels())[absl::StrCat("l", i)] = "v";
    cases.push_back({c, "labels"});
  }
  {
    v1::CheckConfig c = Config("x", "http://h/");
    c.set_failures(1000);
    cases.push_back({c, "failures: at most 100, got 1000"});
  }
  for (const Case& c : cases) {
    EXPECT_THAT(CheckSpecFromConfig(c.config, "checks[0]").status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.error)))
        << c.config.ShortDebugString();
  }
  google::protobuf::RepeatedPtrField<v1::CheckConfig> list;
  *list.Add() = Config("a", "http://h/");
  *list.Add() = Config("a", "http://g/");
  EXPECT_THAT(CheckSpecsFromConfig(list).status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("checks[1].name: \"a\" is used by an earlier check")));
}

TEST(CheckSpecTest, PasswordsNeverShowInTheTarget) {
  EXPECT_EQ(RedactTarget("redis://:s3cret@db:6379"), "redis://:xxxxx@db:6379/");
  EXPECT_EQ(RedactTarget("postgresql://mon:p%40ss@db/app"), "postgresql://mon:xxxxx@db/app");
  for (const char* t : {"redis://:p#ss@h:6379", "redis://:p?ss@h", "postgresql://mon:p@ss@db/app",
                        "redis://:pa ss@h"}) {
    EXPECT_THAT(RedactTarget(t), Not(HasSubstr("ss"))) << t;
  }
  EXPECT_EQ(RedactTarget("postgresql://mon@db/app?x=a:b@c"), "postgresql://mon@db/app?x=a:b@c");
  EXPECT_EQ(RedactTarget("https://example.org:8080/a@b"), "https://example.org:8080/a@b");
  absl::StatusOr<CheckSpec> s = CheckSpecFromConfig(Config("r", "redis://:s3cret@db:6379"), "c");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->target, "redis://:xxxxx@db:6379/");
  EXPECT_EQ(s->password, "s3cret");
  absl::StatusOr<CheckSpec> bad = CheckSpecFromConfig(Config("r", "redis://:s3cret@db:99999"), "c");
  ASSERT_FALSE(bad.ok());
  EXPECT_THAT(bad.status().message(), Not(HasSubstr("s3cret")));
}

TEST(PerfDataTest, ParsesNagiosPerformanceDataInBaseUnits) {
  Outcome o;
  ParsePerfData(
      "time=0.012s;1;2;0 'disk used'=2KB;;; 'it''s'=75% load=0.5 pkts=10c "
      "lat=12ms bad=U x=abc =3 nan=nan inf=inf",
      &o);
  ASSERT_EQ(o.labeled.size(), 6u);
  auto has = [&](const std::string& name, const std::string& perf, double v) {
    for (const Outcome::LabeledMetric& m : o.labeled) {
      if (m.name == name && m.label.second == perf) return std::abs(m.value - v) < 1e-9;
    }
    return false;
  };
  EXPECT_TRUE(has("vigie_check_perfdata_seconds", "time", 0.012));
  EXPECT_TRUE(has("vigie_check_perfdata_bytes", "disk used", 2048));
  EXPECT_TRUE(has("vigie_check_perfdata_percent", "it's", 75));
  EXPECT_TRUE(has("vigie_check_perfdata", "load", 0.5));
  EXPECT_TRUE(has("vigie_check_perfdata_total", "pkts", 10));
  EXPECT_TRUE(has("vigie_check_perfdata_seconds", "lat", 0.012));
  Outcome many;
  std::string text;
  for (int i = 0; i < 100; ++i) absl::StrAppend(&text, "m", i, "=1 ");
  ParsePerfData(text, &many);
  EXPECT_EQ(many.labeled.size(), 32u);
}

TEST(SafeTextTest, KeepsUtf8AndReplacesTheRest) {
  EXPECT_EQ(SafeText("caf\xc3\xa9", 100), "caf\xc3\xa9");
  EXPECT_EQ(SafeText("a\xff"
                     "b\xc3",
                     100),
            "a?b?");
  EXPECT_EQ(SafeText(std::string("a\0b", 3), 100), "a?b");
  EXPECT_EQ(SafeText("caf\xc3\xa9", 4), "caf");    // never cuts a character in two
  EXPECT_EQ(SafeText("\xed\xa0\x80", 10), "???");  // a UTF-16 surrogate is not UTF-8
}

// A loopback TCP server answering each connection per `mode`, on its own thread.
class TestServer {
 public:
  enum Mode { kHttpOk, kHttp503, kSilent };
  explicit TestServer(Mode mode) : mode_(mode) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a));
    socklen_t len = sizeof(a);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    listen(fd_, 64);
    if (mode_ != kSilent) thread_ = std::thread([this] { Serve(); });
  }
  ~TestServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    if (thread_.joinable()) thread_.join();
  }
  int port() const { return port_; }
  std::string url() const { return absl::StrCat("http://127.0.0.1:", port_, "/health"); }

 private:
  void Serve() {
    for (;;) {
      const int c = accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      [[maybe_unused]] ssize_t n = read(c, buf, sizeof(buf));
      const std::string reply =
          mode_ == kHttpOk
              ? "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nall ok\n"
              : "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: "
                "close\r\n\r\n";
      [[maybe_unused]] ssize_t w = write(c, reply.data(), reply.size());
      close(c);
    }
  }
  Mode mode_;
  int fd_;
  int port_;
  std::thread thread_;
};

// A port nothing listens on.
int ClosedPort() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a));
  socklen_t len = sizeof(a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

class CheckLoopTest : public ::testing::Test {
 protected:
  void Run(std::vector<v1::CheckConfig> configs, size_t max_concurrent = 100) {
    google::protobuf::RepeatedPtrField<v1::CheckConfig> list(configs.begin(), configs.end());
    absl::StatusOr<std::vector<CheckSpec>> specs = CheckSpecsFromConfig(list);
    ASSERT_TRUE(specs.ok()) << specs.status();
    CheckLoopOptions o;
    o.checks = std::move(*specs);
    o.max_concurrent = max_concurrent;
    o.on_results = [this](std::vector<v1::CheckResult> r) {
      MutexLock lock(&mu_);
      for (auto& x : r) results_.push_back(std::move(x));
    };
    loop_ = std::make_unique<CheckLoop>(std::move(o), &registry_);
    ASSERT_TRUE(loop_->Init().ok());
    loop_->Start();
  }
  // Waits for the first result of `name`.
  v1::CheckResult First(const std::string& name, absl::Duration timeout = absl::Seconds(10)) {
    const absl::Time end = absl::Now() + timeout;
    while (absl::Now() < end) {
      {
        MutexLock lock(&mu_);
        for (const v1::CheckResult& r : results_) {
          if (r.name() == name) return r;
        }
      }
      absl::SleepFor(absl::Milliseconds(10));
    }
    ADD_FAILURE() << "no result for " << name;
    return {};
  }
  std::vector<v1::CheckResult> All(const std::string& name) {
    MutexLock lock(&mu_);
    std::vector<v1::CheckResult> out;
    for (const v1::CheckResult& r : results_) {
      if (r.name() == name) out.push_back(r);
    }
    return out;
  }
  void TearDown() override {
    if (loop_) loop_->Stop();
  }

  prometheus::Registry registry_;
  std::unique_ptr<CheckLoop> loop_;
  Mutex mu_;
  std::vector<v1::CheckResult> results_ ABSL_GUARDED_BY(mu_);
};

TEST_F(CheckLoopTest, ReportsHttpStatusRefusedConnectionsAndTimeouts) {
  TestServer ok(TestServer::kHttpOk), bad(TestServer::kHttp503), silent(TestServer::kSilent);
  v1::CheckConfig body = Config("body", ok.url());
  body.mutable_http()->set_body_contains("missing words");
  v1::CheckConfig hang = Config("hang", silent.url());
  hang.set_timeout("300ms");
  v1::CheckConfig labelled = Config("ok", ok.url());
  (*labelled.mutable_labels())["team"] = "web";
  Run({labelled, Config("503", bad.url()), body,
       Config("refused", absl::StrCat("http://127.0.0.1:", ClosedPort(), "/")), hang,
       Config("tcp", absl::StrCat("tcp://127.0.0.1:", ok.port()))});

  v1::CheckResult r = First("ok");
  EXPECT_EQ(r.status(), v1::CHECK_STATUS_OK);
  EXPECT_THAT(r.message(), HasSubstr("HTTP 200 in"));
  EXPECT_EQ(r.labels().at("team"), "web");
  EXPECT_GT(r.timestamp_ms(), 0);
  r = First("503");
  EXPECT_EQ(r.status(), v1::CHECK_STATUS_CRITICAL);
  EXPECT_THAT(r.message(), HasSubstr("HTTP 503 (expected 200-299)"));
  r = First("body");
  EXPECT_EQ(r.status(), v1::CHECK_STATUS_CRITICAL);
  EXPECT_THAT(r.message(), HasSubstr("the body does not contain \"missing words\""));
  r = First("refused");
  EXPECT_EQ(r.status(), v1::CHECK_STATUS_CRITICAL);
  EXPECT_THAT(r.message(), HasSubstr("connection refused by 127.0.0.1:"));
  r = First("hang");
  EXPECT_EQ(r.status(), v1::CHECK_STATUS_CRITICAL);
  EXPECT_THAT(r.message(), HasSubstr("timeout after 300ms waiting for the response"));
  EXPECT_LT(r.latency_seconds(), 1.0);
  r = First("tcp");
  EXPECT_EQ(r.status(), v1::CHECK_STATUS_OK);
  EXPECT_THAT(r.message(), HasSubstr("connected in"));

  Collection metrics;
  loop_->AppendMetrics(1000, &metrics);
  std::map<std::string, double> by_check;
  for (const v1::Sample& s : metrics.samples) {
    if (s.name() == "probe_http_status_code") by_check[s.labels().at("check")] = s.value();
    if (s.name() == "vigie_check_status" && s.labels().at("check") == "503") {
      EXPECT_EQ(s.value(), 2);
    }
  }
  EXPECT_EQ(by_check["ok"], 200);
  EXPECT_EQ(by_check["503"], 503);
}

TEST_F(CheckLoopTest, AHangingTargetDoesNotDelayOthersEvenWithOneSlotLeft) {
  TestServer ok(TestServer::kHttpOk), silent(TestServer::kSilent);
  std::vector<v1::CheckConfig> configs;
  for (int i = 0; i < 3; ++i) {
    v1::CheckConfig c = Config(absl::StrCat("hang", i), silent.url());
    c.set_interval("1s");
    c.set_timeout("900ms");
    configs.push_back(c);
  }
  v1::CheckConfig fast = Config("fast", ok.url());
  fast.set_interval("1s");
  configs.push_back(fast);
  Run(configs, /*max_concurrent=*/4);
  absl::SleepFor(absl::Seconds(3.5));
  // Every second, whatever the three hanging ones do.
  EXPECT_GE(All("fast").size(), 3u);
  for (const v1::CheckResult& r : All("fast")) EXPECT_EQ(r.status(), v1::CHECK_STATUS_OK);
}

TEST_F(CheckLoopTest, FailuresMustRepeatBeforeTheStateChanges) {
  v1::CheckConfig c = Config("flaky", absl::StrCat("tcp://127.0.0.1:", ClosedPort()));
  c.set_interval("1s");
  c.set_timeout("500ms");
  c.set_failures(2);
  Run({c});
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (All("flaky").size() < 2 && absl::Now() < end) absl::SleepFor(absl::Milliseconds(20));
  std::vector<v1::CheckResult> r = All("flaky");
  ASSERT_GE(r.size(), 2u);
  EXPECT_EQ(r[0].status(), v1::CHECK_STATUS_OK);
  EXPECT_EQ(r[0].observed(), v1::CHECK_STATUS_CRITICAL);
  EXPECT_EQ(r[0].consecutive_failures(), 1u);
  EXPECT_THAT(r[0].message(), HasSubstr("(1 of 2 failures before the check turns critical)"));
  EXPECT_EQ(r[1].status(), v1::CHECK_STATUS_CRITICAL);
  EXPECT_EQ(r[1].consecutive_failures(), 2u);
}

TEST_F(CheckLoopTest, RunNowRunsAtOnceAndRefusesUnknownNames) {
  TestServer ok(TestServer::kHttpOk);
  v1::CheckConfig c = Config("slow", ok.url());
  c.set_interval("1h");
  Run({c});
  First("slow", absl::Seconds(10));  // the first run comes within 5s of the start
  ASSERT_TRUE(loop_->RunNow("slow", "cmd-1").ok());
  const absl::Time end = absl::Now() + absl::Seconds(5);
  while (All("slow").size() < 2 && absl::Now() < end) absl::SleepFor(absl::Milliseconds(10));
  ASSERT_EQ(All("slow").size(), 2u);
  EXPECT_THAT(All("slow")[0].command_ids(), ::testing::IsEmpty()) << "a scheduled run";
  EXPECT_THAT(All("slow")[1].command_ids(), ::testing::ElementsAre("cmd-1"));
  EXPECT_THAT(loop_->RunNow("nope"), StatusIs(absl::StatusCode::kNotFound, HasSubstr("\"nope\"")));
}

TEST_F(CheckLoopTest, ARunRequestedDuringARunIsAnsweredByTheRunAfter) {
  const std::string marker = absl::StrCat("/tmp/vigie_run_marker_", getpid());
  unlink(marker.c_str());
  v1::CheckConfig c = Config("busy", "command:///bin/sh");
  c.mutable_command()->add_args("-c");
  c.mutable_command()->add_args(absl::StrCat("touch ", marker, "; sleep 1; echo done"));
  c.set_interval("1h");
  c.set_timeout("5s");
  Run({c});
  // Ask while the first run is under way: that run must not answer.
  const absl::Time started = absl::Now() + absl::Seconds(10);
  while (access(marker.c_str(), F_OK) != 0 && absl::Now() < started) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_TRUE(loop_->RunNow("busy", "cmd-2").ok());
  const absl::Time end = absl::Now() + absl::Seconds(10);
  while (All("busy").size() < 2 && absl::Now() < end) absl::SleepFor(absl::Milliseconds(10));
  unlink(marker.c_str());
  std::vector<v1::CheckResult> all = All("busy");
  ASSERT_EQ(all.size(), 2u);
  EXPECT_THAT(all[0].command_ids(), ::testing::IsEmpty());
  EXPECT_THAT(all[1].command_ids(), ::testing::ElementsAre("cmd-2"));
}

TEST_F(CheckLoopTest, IdleBetweenRunsTheLoopSleeps) {
  TestServer ok(TestServer::kHttpOk);
  v1::CheckConfig c = Config("hourly", ok.url());
  c.set_interval("1h");
  Run({c});
  First("hourly");
  const uint64_t before = loop_->passes();
  absl::SleepFor(absl::Seconds(1));
  // Nothing is due for an hour: a few wake-ups at most (it spun a core once, a finished flag
  // left set).
  EXPECT_LT(loop_->passes() - before, 10u);
}

TEST_F(CheckLoopTest, RunsNagiosPluginsAndKillsTheirProcessGroupAtTheDeadline) {
  // A unique marker so the test can look for the plugin's children afterwards.
  const std::string marker = absl::StrCat("sleep 61.", getpid());
  v1::CheckConfig warn = Config("warn", "command:///bin/sh");
  for (const char* a : {"-c", "echo 'disk almost full | used=90%;80;95'; exit 1"}) {
    warn.mutable_command()->add_args(a);
  }
  v1::CheckConfig crit = Config("crit", "command:///bin/sh?-c&echo%20down%20>%262;%20exit%202");
  v1::CheckConfig odd = Config("odd", "command:///bin/sh?-c&exit%207");
  v1::CheckConfig hang = Config("hang", "command:///bin/sh");
  hang.set_timeout("300ms");
  for (const std::string& a : {std::string("-c"), absl::StrCat(marker, " & ", marker)}) {
    hang.mutable_command()->add_args(a);
  }
  Run({warn, crit, odd, hang});

  v1::CheckResult w = First("warn");
  EXPECT_EQ(w.status(), v1::CHECK_STATUS_WARNING);
  EXPECT_EQ(w.message(), "disk almost full");
  v1::CheckResult c = First("crit");
  EXPECT_EQ(c.status(), v1::CHECK_STATUS_CRITICAL);
  EXPECT_EQ(c.message(), "down");  // stderr when stdout is empty
  v1::CheckResult o = First("odd");
  EXPECT_EQ(o.status(), v1::CHECK_STATUS_UNKNOWN);
  EXPECT_THAT(o.message(), HasSubstr("exit code 7 (not a plugin status)"));
  v1::CheckResult h = First("hang");
  EXPECT_EQ(h.status(), v1::CHECK_STATUS_CRITICAL);
  EXPECT_THAT(h.message(), HasSubstr("timeout after 300ms running /bin/sh"));
  // Both sleeps (the shell's background child too) are gone.
  absl::SleepFor(absl::Milliseconds(300));
  // "[s]leep": the pattern does not match the shell that runs pgrep.
  EXPECT_NE(system(absl::StrCat("pgrep -f '[s]", marker.substr(1), "' >/dev/null").c_str()), 0)
      << "the plugin's process group survived its timeout";

  Collection metrics;
  loop_->AppendMetrics(0, &metrics);
  bool perf = false;
  for (const v1::Sample& s : metrics.samples) {
    if (s.name() == "vigie_check_perfdata_percent" && s.labels().at("perf") == "used") {
      perf = s.value() == 90;
    }
  }
  EXPECT_TRUE(perf) << "performance data became no metric";
}

TEST_F(CheckLoopTest, AThousandChecksAllReportOnTime) {
  TestServer http(TestServer::kHttpOk), silent(TestServer::kSilent);
  std::vector<v1::CheckConfig> configs;
  for (int i = 0; i < 1000; ++i) {
    // Mostly answering targets, one in ten hanging until its timeout.
    const std::string target = i % 10 == 9  ? silent.url()
                               : i % 2 == 0 ? http.url()
                                            : absl::StrCat("tcp://127.0.0.1:", http.port());
    v1::CheckConfig c = Config(absl::StrCat("c", i), target);
    c.set_interval("5s");
    c.set_timeout("1s");
    configs.push_back(c);
  }
  Run(configs);  // max_concurrent_checks 100
  const absl::Time end = absl::Now() + absl::Seconds(20);
  size_t seen = 0;
  while (absl::Now() < end) {
    std::set<std::string> names;
    {
      MutexLock lock(&mu_);
      for (const v1::CheckResult& r : results_) names.insert(r.name());
    }
    seen = names.size();
    if (seen == 1000) break;
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(seen, 1000u) << "every check reported within its first interval and a half";
  MutexLock lock(&mu_);
  for (const v1::CheckResult& r : results_) {
    const int i = std::stoi(r.name().substr(1));
    EXPECT_EQ(r.status(), i % 10 == 9 ? v1::CHECK_STATUS_CRITICAL : v1::CHECK_STATUS_OK)
        << r.name() << ": " << r.message();
  }
}

TEST_F(CheckLoopTest, ReportsDnsFailuresOfTheTargetHost) {
  v1::CheckConfig c = Config("nxdomain", "http://no-such-host.invalid/");
  c.set_timeout("3s");
  Run({c});
  v1::CheckResult r = First("nxdomain");
  EXPECT_EQ(r.status(), v1::CHECK_STATUS_CRITICAL);
  EXPECT_THAT(r.message(), HasSubstr("DNS failure: no-such-host.invalid"));
}

}  // namespace
}  // namespace vigie::agent::checks
