#include "controlplane/remote_write.h"

#include <curl/curl.h>
#include <snappy.h>

#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "common/log.h"

namespace vigie::controlplane {
namespace {

constexpr size_t kMaxCachedSeries = 200000;

// Keeps at most 512 bytes of a response body, for the error message.
size_t Keep(char* data, size_t size, size_t n, void* out) {
  auto* s = static_cast<std::string*>(out);
  const size_t bytes = size * n;
  if (s->size() < 512) s->append(data, std::min(bytes, 512 - s->size()));
  return bytes;
}

uint64_t Mix(int64_t id) {
  auto x = static_cast<uint64_t>(id);
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return x;
}

}  // namespace

std::vector<prometheus::WriteRequest> BuildWriteRequests(
    const ForwardChunk& chunk, int shards,
    const absl::flat_hash_map<int64_t, std::map<std::string, std::string>>& labels) {
  std::vector<prometheus::WriteRequest> out(static_cast<size_t>(std::max(1, shards)));
  for (const ForwardSeries& fs : chunk.series) {
    auto it = labels.find(fs.series_id);
    if (it == labels.end()) continue;  // the series was deleted with its agent
    prometheus::TimeSeries* ts = out[Mix(fs.series_id) % out.size()].add_timeseries();
    std::map<std::string, std::string> l = it->second;
    l.emplace("instance", chunk.agent_id);  // emplace: the series' own label wins
    l.emplace("job", "vigie");
    for (const auto& [k, v] : l) {
      prometheus::Label* label = ts->add_labels();
      label->set_name(k);
      label->set_value(v);
    }
    // A batch may hold one series more than once, and blocks need not be in time order.
    std::vector<std::pair<int64_t, double>> samples = fs.samples;
    std::stable_sort(samples.begin(), samples.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    for (const auto& [t, v] : samples) {
      prometheus::Sample* s = ts->add_samples();
      s->set_timestamp(t);
      s->set_value(v);
    }
  }
  return out;
}

RemoteWriter::RemoteWriter(RemoteWriteOptions options, PgStore* store,
                           prometheus::Registry* registry)
    : Runnable("remote-write-" + options.name),
      options_(std::move(options)),
      store_(store),
      backoff_(options_.backoff),
      samples_(prometheus::BuildCounter()
                   .Name("vigie_remote_storage_samples_total")
                   .Help("Samples accepted by the remote-write receiver.")
                   .Register(*registry)
                   .Add({{"remote_name", options_.name}})),
      failed_(prometheus::BuildCounter()
                  .Name("vigie_remote_storage_samples_failed_total")
                  .Help("Samples the receiver refused for good (HTTP 4xx other than 429): "
                        "dropped, not retried.")
                  .Register(*registry)
                  .Add({{"remote_name", options_.name}})),
      retried_(prometheus::BuildCounter()
                   .Name("vigie_remote_storage_samples_retried_total")
                   .Help("Samples in requests that failed and will be sent again.")
                   .Register(*registry)
                   .Add({{"remote_name", options_.name}})),
      bytes_(prometheus::BuildCounter()
                 .Name("vigie_remote_storage_bytes_total")
                 .Help("Compressed request bytes sent to the receiver.")
                 .Register(*registry)
                 .Add({{"remote_name", options_.name}})),
      requests_failed_(prometheus::BuildCounter()
                           .Name("vigie_remote_storage_failed_requests_total")
                           .Help("Requests that got no 2xx answer.")
                           .Register(*registry)
                           .Add({{"remote_name", options_.name}})),
      duration_(prometheus::BuildHistogram()
                    .Name("vigie_remote_storage_sent_batch_duration_seconds")
                    .Help("Time to send one chunk (all its shards) to the receiver.")
                    .Register(*registry)
                    .Add({{"remote_name", options_.name}},
                         prometheus::Histogram::BucketBoundaries{0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                                 1, 2.5, 5, 10, 30})),
      highest_sent_(prometheus::BuildGauge()
                        .Name("vigie_remote_storage_queue_highest_sent_timestamp_seconds")
                        .Help("Newest sample timestamp the receiver accepted.")
                        .Register(*registry)
                        .Add({{"remote_name", options_.name}})),
      pending_(prometheus::BuildGauge()
                   .Name("vigie_remote_storage_pending_batches")
                   .Help("Durable batches committed but not yet forwarded, over all agents.")
                   .Register(*registry)
                   .Add({{"remote_name", options_.name}})),
      shards_(prometheus::BuildGauge()
                  .Name("vigie_remote_storage_shards")
                  .Help("Parallel requests per chunk.")
                  .Register(*registry)
                  .Add({{"remote_name", options_.name}})) {
  shards_.Set(options_.shards);
  for (int i = 0; i < options_.shards; ++i) curl_.push_back(curl_easy_init());
}

RemoteWriter::~RemoteWriter() {
  Stop();
  for (void* c : curl_) curl_easy_cleanup(static_cast<CURL*>(c));
}

int RemoteWriter::Post(int shard, const std::string& body, std::string* error) {
  CURL* c = static_cast<CURL*>(curl_[shard]);
  curl_easy_reset(c);
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Content-Type: application/x-protobuf");
  headers = curl_slist_append(headers, "Content-Encoding: snappy");
  headers = curl_slist_append(headers, "X-Prometheus-Remote-Write-Version: 0.1.0");
  headers = curl_slist_append(headers, "User-Agent: Vigie-ControlPlane/" VIGIE_VERSION);
  std::string auth;
  if (!options_.bearer_token.empty()) {
    auth = "Authorization: Bearer " + options_.bearer_token;
    headers = curl_slist_append(headers, auth.c_str());
  }
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> guard(headers, curl_slist_free_all);
  std::string response;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, options_.url.c_str());
  curl_easy_setopt(c, CURLOPT_POST, 1L);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.basic_auth_username.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, options_.basic_auth_username.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, options_.basic_auth_password.c_str());
  }
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Keep);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &response);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  CURLcode rc = curl_easy_perform(c);
  if (rc != CURLE_OK) {
    *error = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    return 0;
  }
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  if (code < 200 || code >= 300) *error = absl::StrCat("HTTP ", code, ": ", response);
  return static_cast<int>(code);
}

absl::Status RemoteWriter::Send(const ForwardChunk& chunk) {
  // Labels of series not cached yet, in one query.
  std::vector<int64_t> unknown;
  for (const ForwardSeries& s : chunk.series) {
    if (!labels_.contains(s.series_id)) unknown.push_back(s.series_id);
  }
  if (!unknown.empty()) {
    if (labels_.size() + unknown.size() > kMaxCachedSeries) labels_.clear();
    auto got = store_->SeriesLabels(unknown);
    if (!got.ok()) return absl::UnavailableError(got.status().message());
    for (auto& [id, l] : *got) labels_[id] = std::move(l);
  }
  std::vector<prometheus::WriteRequest> requests =
      BuildWriteRequests(chunk, options_.shards, labels_);
  const absl::Time start = absl::Now();
  std::vector<int> codes(requests.size(), 200);
  std::vector<std::string> errors(requests.size());
  std::vector<size_t> counts(requests.size(), 0);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < requests.size(); ++i) {
    if (requests[i].timeseries_size() == 0) continue;
    for (const auto& ts : requests[i].timeseries()) counts[i] += ts.samples_size();
    std::string compressed;
    snappy::Compress(requests[i].SerializeAsString().data(), requests[i].ByteSizeLong(),
                     &compressed);
    bytes_.Increment(static_cast<double>(compressed.size()));
    auto post = [this, i, &codes, &errors, body = std::move(compressed)] {
      codes[i] = Post(static_cast<int>(i), body, &errors[i]);
    };
    threads.emplace_back(std::move(post));
  }
  for (auto& t : threads) t.join();
  duration_.Observe(absl::ToDoubleSeconds(absl::Now() - start));
  bool retry = false;
  for (size_t i = 0; i < requests.size(); ++i) {
    const int code = codes[i];
    if (code >= 200 && code < 300) {
      samples_.Increment(static_cast<double>(counts[i]));
      continue;
    }
    requests_failed_.Increment();
    if (code == 0 || code == 429 || code >= 500) {
      retried_.Increment(static_cast<double>(counts[i]));
      // Logged once per outage (the metrics count every retry), and again when it ends.
      if (!retry && !failing_) {
        log::Warn(
            "remote write failed; retrying with backoff until it recovers",
            {{"remote_name", options_.name}, {"agent", chunk.agent_id}, {"error", errors[i]}});
      }
      retry = true;
    } else {
      // The receiver will never take these (out of order, too old, bad labels): drop them, as
      // Prometheus does, and go on.
      failed_.Increment(static_cast<double>(counts[i]));
      log::Warn("remote write refused samples; dropped", {{"remote_name", options_.name},
                                                          {"agent", chunk.agent_id},
                                                          {"samples", counts[i]},
                                                          {"error", errors[i]}});
    }
  }
  if (retry) {
    failing_ = true;
    return absl::UnavailableError("remote write failed");
  }
  if (failing_) {
    failing_ = false;
    log::Info("remote write recovered", {{"remote_name", options_.name}});
  }
  int64_t newest = 0;
  for (const ForwardSeries& s : chunk.series) {
    for (const auto& [t, v] : s.samples) newest = std::max(newest, t);
  }
  if (newest > 0) highest_sent_.Set(static_cast<double>(newest) / 1000.0);
  return absl::OkStatus();
}

void RemoteWriter::Run() {
  absl::Duration wait = options_.poll_interval;
  do {
    wait = options_.poll_interval;
    auto agents = store_->AgentsBehind(options_.name, options_.agents_per_round);
    if (!agents.ok()) {
      log::Warn("remote write: cannot list agents", {{"error", agents.status()}});
      continue;
    }
    bool failed = false;
    for (const std::string& agent : *agents) {
      // Up to 50 chunks of one agent per round (a backlog after an outage drains quickly;
      // other agents still get their turn).
      for (int chunk = 0; chunk < 50 && !failed; ++chunk) {
        if (stopping()) return;
        auto sent =
            store_->Forward(options_.name, agent, options_.max_samples_per_send * options_.shards,
                            [this](const ForwardChunk& c) { return Send(c); });
        if (!sent.ok()) failed = true;
        if (!sent.ok() || *sent == 0) break;
      }
      if (failed) break;
    }
    if (failed) {
      wait = backoff_.Next();
    } else {
      backoff_.Reset();
      // A full round: more may be waiting; go on at once.
      if (agents->size() == static_cast<size_t>(options_.agents_per_round))
        wait = absl::ZeroDuration();
    }
    if (auto pending = store_->ForwardBacklog(options_.name); pending.ok()) {
      pending_.Set(static_cast<double>(*pending));
    }
  } while (WaitFor(wait));
}

}  // namespace vigie::controlplane
