// smtp://host:port checks: the banner and EHLO, and with `smtp: {starttls: true}` the upgrade
// and its certificate. curl speaks SMTP; CONNECT_ONLY stops it after the greeting exchange.
#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "agent/checks/curl_probe.h"
#include "re2/re2.h"

namespace vigie::agent::checks {
namespace {

absl::Status Validate(CheckSpec* s, const std::string& field) {
  if (s->parsed.host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".target: \"", s->target, "\" has no host"));
  }
  static const RE2 kHello("[A-Za-z0-9.-]{0,253}");
  if (!RE2::FullMatch(s->config.smtp().hello(), kHello)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".smtp.hello: \"", s->config.smtp().hello(), "\" is not a host name"));
  }
  return TlsSettingsFromConfig(s->config.smtp().tls(), absl::StrCat(field, ".smtp.tls"), "",
                               &s->tls);
}

class SmtpProbe : public CurlProbe {
 public:
  SmtpProbe(const CheckSpec& spec, ProbeEnv* env, absl::Time deadline)
      : CurlProbe(spec, env, deadline,
                  spec.config.smtp().starttls() || spec.parsed.scheme == "smtps") {}
  ~SmtpProbe() override { Release(); }  // curl writes replies into banner_

 protected:
  std::string Url() const override {
    const Target& t = spec_.parsed;
    const std::string& host = spec_.tls.server_name.empty() ? t.host : spec_.tls.server_name;
    // curl takes the EHLO name from the URL's path.
    const std::string& hello =
        spec_.config.smtp().hello().empty() ? env_->hostname : spec_.config.smtp().hello();
    return absl::StrCat(t.scheme, "://", JoinHostPort(host, t.port), "/", hello);
  }
  absl::Status Configure(CURL* easy) override {
    curl_easy_setopt(easy, CURLOPT_CONNECT_ONLY, 1L);
    if (spec_.config.smtp().starttls()) curl_easy_setopt(easy, CURLOPT_USE_SSL, CURLUSESSL_ALL);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &SmtpProbe::OnLine);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, this);
    return absl::OkStatus();
  }
  Outcome Judge(CURL*) override {
    Outcome o;
    o.status = v1::CHECK_STATUS_OK;
    o.message =
        absl::StrCat(banner_.empty() ? "SMTP" : banner_, "; EHLO",
                     spec_.config.smtp().starttls() ? " and STARTTLS" : "", " in ", Elapsed());
    return o;
  }

 private:
  // Server replies; the first is the banner ("220 mail.example.org ESMTP").
  static size_t OnLine(char* data, size_t size, size_t n, void* self) {
    auto* p = static_cast<SmtpProbe*>(self);
    if (p->banner_.empty()) {
      p->banner_ = std::string(
          absl::StripAsciiWhitespace(absl::string_view(data, std::min<size_t>(size * n, 200))));
    }
    return size * n;
  }
  std::string banner_;
};

}  // namespace

Protocol SmtpProtocol() {
  return {Validate, [](const CheckSpec& spec, ProbeEnv* env, absl::Time deadline) {
            return std::unique_ptr<Probe>(new SmtpProbe(spec, env, deadline));
          }};
}

}  // namespace vigie::agent::checks
