// The notifier benchmark's two clients (scripts/bench-notifier.sh):
//   --mode=curl_loop  the baseline: one keep-alive libcurl handle POSTing the same webhook
//                     payload --n times to --url as fast as it can; prints {"per_second": ...}
//   --mode=notify     calls Notify --n times over --concurrency threads (one channel), writes
//                     "<idempotency key> <unix seconds.micros>" per call to --sent_file
#include <curl/curl.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "common/files.h"
#include "grpcpp/grpcpp.h"
#include "notifier/webhook.h"
#include "vigie/v1/notifier.grpc.pb.h"

ABSL_FLAG(std::string, mode, "notify", "curl_loop or notify");
ABSL_FLAG(std::string, url, "", "curl_loop: the sink");
ABSL_FLAG(std::string, target, "127.0.0.1:7401", "notify: the notifier");
ABSL_FLAG(std::string, token_file, "", "notify: the notifier's client token");
ABSL_FLAG(int, n, 20000, "requests");
ABSL_FLAG(int, concurrency, 8, "notify: threads");
ABSL_FLAG(std::string, sent_file, "", "notify: where to write key and send time");
ABSL_FLAG(std::string, run, "r", "notify: a run id for the keys");

namespace {

namespace v1 = vigie::v1;

v1::NotifyRequest Notification(const std::string& key, int i) {
  v1::NotifyRequest r;
  r.set_idempotency_key(key);
  v1::Notification* n = r.mutable_notification();
  n->set_status(v1::Notification::STATUS_FIRING);
  n->set_rule("DiskAlmostFull");
  n->set_severity("warning");
  n->set_fingerprint(absl::StrCat("fp", i));
  (*n->mutable_labels())["alertname"] = "DiskAlmostFull";
  (*n->mutable_labels())["agent"] = absl::StrCat("web", i % 100);
  (*n->mutable_labels())["mountpoint"] = "/var";
  (*n->mutable_annotations())["summary"] = "Disk /var above 90%";
  n->set_value(91.5);
  n->set_starts_at_ms(absl::ToUnixMillis(absl::Now()));
  n->set_generator_url("http://vigie.example/");
  return r;
}

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

int CurlLoop() {
  const int n = absl::GetFlag(FLAGS_n);
  const std::string body = vigie::notifier::WebhookPayload(
      vigie::notifier::Batch::Of(Notification("bench/loop", 1)), "bench", "");
  curl_global_init(CURL_GLOBAL_DEFAULT);
  CURL* c = curl_easy_init();
  curl_slist* headers = curl_slist_append(nullptr, "Content-Type: application/json");
  curl_easy_setopt(c, CURLOPT_URL, absl::GetFlag(FLAGS_url).c_str());
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
  const absl::Time start = absl::Now();
  int ok = 0;
  for (int i = 0; i < n; ++i) {
    long code = 0;
    if (curl_easy_perform(c) == CURLE_OK &&
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code) == CURLE_OK && code / 100 == 2) {
      ++ok;
    }
  }
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  std::printf("{\"ok\": %d, \"per_second\": %.0f}\n", ok, ok / seconds);
  curl_slist_free_all(headers);
  curl_easy_cleanup(c);
  curl_global_cleanup();
  return ok == n ? 0 : 1;
}

int Notify() {
  const int n = absl::GetFlag(FLAGS_n);
  const int threads = absl::GetFlag(FLAGS_concurrency);
  std::string token;
  if (!absl::GetFlag(FLAGS_token_file).empty()) {
    auto t = vigie::ReadRegularFile(absl::GetFlag(FLAGS_token_file), 4096);
    if (!t.ok()) return 2;
    token = std::string(absl::StripAsciiWhitespace(*t));
  }
  auto channel =
      grpc::CreateChannel(absl::GetFlag(FLAGS_target), grpc::InsecureChannelCredentials());
  auto stub = v1::Notifier::NewStub(channel);
  std::vector<std::vector<std::pair<std::string, absl::Time>>> sent(threads);
  std::atomic<int> next{0}, failed{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int i = next++; i < n; i = next++) {
        const std::string key = absl::StrCat("bench/", absl::GetFlag(FLAGS_run), "/", i);
        v1::NotifyRequest req = Notification(key, i);
        for (int attempt = 0; attempt < 1000; ++attempt) {
          grpc::ClientContext ctx;
          ctx.AddMetadata("authorization", "Bearer " + token);
          v1::NotifyResponse resp;
          const absl::Time at = absl::Now();
          grpc::Status s = stub->Notify(&ctx, req, &resp);
          if (s.ok()) {
            sent[t].emplace_back(key, at);
            break;
          }
          if (s.error_code() != grpc::StatusCode::RESOURCE_EXHAUSTED) {
            ++failed;
            break;
          }
          absl::SleepFor(absl::Milliseconds(5));  // queue full: back off, as a client should
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  std::ofstream out(absl::GetFlag(FLAGS_sent_file));
  for (const auto& v : sent) {
    for (const auto& [key, at] : v) {
      out << key << " " << absl::StrFormat("%.6f", absl::ToDoubleSeconds(at - absl::UnixEpoch()))
          << "\n";
    }
  }
  std::printf("{\"failed\": %d}\n", failed.load());
  return failed == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return absl::GetFlag(FLAGS_mode) == "curl_loop" ? CurlLoop() : Notify();
}
