// http:// and https:// checks: status codes, body, redirects, and the TLS diagnosis.
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/checks/curl_probe.h"
#include "common/status.h"
#include "re2/re2.h"

namespace vigie::agent::checks {
namespace {

constexpr uint32_t kDefaultMaxBody = 1 << 20;

struct StatusRange {
  int lo, hi;
};

absl::StatusOr<std::vector<StatusRange>> ParseExpectStatus(const v1::HttpCheck& h,
                                                           const std::string& field) {
  std::vector<StatusRange> out;
  for (int i = 0; i < h.expect_status_size(); ++i) {
    const std::string& e = h.expect_status(i);
    std::vector<std::string> parts = absl::StrSplit(e, absl::MaxSplits('-', 1));
    StatusRange r{};
    bool ok = absl::SimpleAtoi(parts[0], &r.lo);
    r.hi = r.lo;
    if (parts.size() == 2) ok = ok && absl::SimpleAtoi(parts[1], &r.hi);
    if (!ok || r.lo < 100 || r.hi > 599 || r.lo > r.hi) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".expect_status[", i, "]: \"", e,
                                                     "\" is not a status code or range such as "
                                                     "\"200\" or \"200-299\""));
    }
    out.push_back(r);
  }
  if (out.empty()) out.push_back({200, 299});
  return out;
}

absl::Status Validate(CheckSpec* s, const std::string& field) {
  const v1::HttpCheck& h = s->config.http();
  const std::string at = absl::StrCat(field, ".http");
  if (s->parsed.host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".target: \"", s->target, "\" has no host"));
  }
  if (!s->parsed.userinfo.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field,
                     ".target: credentials in the URL would be logged and stored; use http.headers "
                     "(e.g. Authorization) instead"));
  }
  static const RE2 kToken("[!#$%&'*+.^_`|~0-9A-Za-z-]{1,64}");
  if (!h.method().empty() && !RE2::FullMatch(h.method(), kToken)) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".method: \"", h.method(), "\" is not an HTTP method"));
  }
  for (const auto& [k, v] : h.headers()) {
    if (!RE2::FullMatch(k, kToken)) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".headers: \"", k, "\" is not a header name"));
    }
    if (v.find_first_of("\r\n") != std::string::npos || v.find('\0') != std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".headers[\"", k, "\"]: contains a line break or NUL"));
    }
  }
  VIGIE_RETURN_IF_ERROR(ParseExpectStatus(h, at).status());
  if (!h.body_regex().empty()) {
    RE2 re(h.body_regex(), RE2::Quiet);
    if (!re.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(at, ".body_regex: \"", h.body_regex(), "\": ", re.error()));
    }
  }
  if (h.max_redirects() > 50) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".max_redirects: at most 50, got ", h.max_redirects()));
  }
  if (h.max_body_bytes() > (16u << 20)) {
    return absl::InvalidArgumentError(
        absl::StrCat(at, ".max_body_bytes: at most 16777216, got ", h.max_body_bytes()));
  }
  return TlsSettingsFromConfig(h.tls(), absl::StrCat(at, ".tls"), h.tls_expiry_warning(), &s->tls);
}

class HttpProbe : public CurlProbe {
 public:
  HttpProbe(const CheckSpec& spec, ProbeEnv* env, absl::Time deadline)
      : CurlProbe(spec, env, deadline, spec.parsed.scheme == "https"),
        h_(spec.config.http()),
        max_body_(h_.max_body_bytes() == 0 ? kDefaultMaxBody : h_.max_body_bytes()),
        expect_(*ParseExpectStatus(h_, "")) {}
  ~HttpProbe() override {
    Release();  // before the header list and the body curl writes into go
    curl_slist_free_all(headers_);
  }

 protected:
  std::string Url() const override {
    if (spec_.tls.server_name.empty()) return spec_.target;
    // Connect to the target's addresses (CURLOPT_RESOLVE) under the configured name.
    const Target& t = spec_.parsed;
    return absl::StrCat(t.scheme, "://", JoinHostPort(spec_.tls.server_name, t.port),
                        t.path_and_query);
  }

  absl::Status Configure(CURL* easy) override {
    curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    const bool follow = !h_.has_follow_redirects() || h_.follow_redirects();
    curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, follow ? 1L : 0L);
    curl_easy_setopt(
        easy, CURLOPT_MAXREDIRS,
        static_cast<long>(h_.max_redirects() == 0 ? 10 : h_.max_redirects()));  // NOLINT
    const std::string method = h_.method().empty() ? "GET" : absl::AsciiStrToUpper(h_.method());
    if (method == "HEAD") {
      curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    } else if (method != "GET" || !h_.body().empty()) {
      curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method.c_str());
    }
    if (!h_.body().empty()) {
      curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, static_cast<long>(h_.body().size()));  // NOLINT
      curl_easy_setopt(easy, CURLOPT_POSTFIELDS, h_.body().data());
    }
    for (const auto& [k, v] : h_.headers()) {
      headers_ = curl_slist_append(headers_, absl::StrCat(k, ": ", v).c_str());
    }
    if (headers_ != nullptr) curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers_);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &HttpProbe::OnBody);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, this);
    return absl::OkStatus();
  }

  bool Completed(CURLcode code) const override { return code == CURLE_WRITE_ERROR && capped_; }

  Outcome Judge(CURL* easy) override {
    Outcome o;
    long code = 0, redirects = 0;  // NOLINT(runtime/int)
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_getinfo(easy, CURLINFO_REDIRECT_COUNT, &redirects);
    o.metrics.emplace_back("probe_http_status_code", static_cast<double>(code));
    o.metrics.emplace_back("probe_http_redirects", static_cast<double>(redirects));
    o.metrics.emplace_back("probe_http_content_length", static_cast<double>(body_.size()));
    bool expected = false;
    for (const StatusRange& r : expect_) expected |= code >= r.lo && code <= r.hi;
    o.status = v1::CHECK_STATUS_CRITICAL;
    if (!expected) {
      std::string want;
      for (const StatusRange& r : expect_) {
        absl::StrAppend(&want, want.empty() ? "" : ", ", r.lo,
                        r.hi != r.lo ? absl::StrCat("-", r.hi) : "");
      }
      o.message = absl::StrCat("HTTP ", code, " (expected ", want, ") in ", Elapsed());
      return o;
    }
    if (!h_.body_contains().empty() && !absl::StrContains(body_, h_.body_contains())) {
      o.message = absl::StrCat("HTTP ", code, " but the body does not contain \"",
                               h_.body_contains(), "\"");
      return o;
    }
    if (!h_.body_regex().empty() && !RE2::PartialMatch(body_, RE2(h_.body_regex()))) {
      o.message =
          absl::StrCat("HTTP ", code, " but the body does not match /", h_.body_regex(), "/");
      return o;
    }
    o.status = v1::CHECK_STATUS_OK;
    o.message = absl::StrCat("HTTP ", code, " in ", Elapsed());
    return o;
  }

 private:
  static size_t OnBody(char* data, size_t size, size_t n, void* self) {
    auto* p = static_cast<HttpProbe*>(self);
    const size_t bytes = size * n;
    const size_t room = p->max_body_ - p->body_.size();
    p->body_.append(data, std::min(bytes, room));
    if (bytes > room) {
      p->capped_ = true;  // enough read: end the transfer (judged on what was read)
      return 0;
    }
    return bytes;
  }

  const v1::HttpCheck& h_;
  const size_t max_body_;
  const std::vector<StatusRange> expect_;
  curl_slist* headers_ = nullptr;
  std::string body_;
  bool capped_ = false;
};

}  // namespace

Protocol HttpProtocol() {
  return {Validate, [](const CheckSpec& spec, ProbeEnv* env, absl::Time deadline) {
            return std::unique_ptr<Probe>(new HttpProbe(spec, env, deadline));
          }};
}

}  // namespace vigie::agent::checks
