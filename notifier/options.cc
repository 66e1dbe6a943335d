#include "notifier/options.h"

#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/secrets.h"
#include "common/status.h"
#include "common/yaml_config.h"
#include "re2/re2.h"

namespace vigie::notifier {

namespace {

absl::StatusOr<std::shared_ptr<Template>> ParseTemplate(const std::string& field,
                                                        const std::string& text,
                                                        const char* default_text,
                                                        Template::Escape escape) {
  VIGIE_ASSIGN_OR_RETURN(Template t,
                         Template::Parse(field, text.empty() ? default_text : text, escape));
  return std::make_shared<Template>(std::move(t));
}

absl::Status RequireHttpUrl(const std::string& field, const std::string& url) {
  if (!absl::StartsWith(url, "http://") && !absl::StartsWith(url, "https://")) {
    // The value is not echoed: these URLs often carry secrets.
    return absl::InvalidArgumentError(absl::StrCat(field, ": must start with http:// or https://"));
  }
  if (!SafeForHeader(url, 8192)) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": holds CR, LF or NUL"));
  }
  return absl::OkStatus();
}

absl::StatusOr<WebhookOptions> WebhookFromConfig(const std::string& field,
                                                 const v1::WebhookReceiver& c) {
  WebhookOptions w;
  w.url = c.url();
  VIGIE_RETURN_IF_ERROR(RequireHttpUrl(absl::StrCat(field, ".url"), w.url));
  VIGIE_ASSIGN_OR_RETURN(
      w.timeout, ParseConfigDuration(absl::StrCat(field, ".timeout"), c.timeout(), w.timeout));
  w.send_resolved = !c.has_send_resolved() || c.send_resolved();
  if (IsSet(c.hmac_secret())) {
    VIGIE_ASSIGN_OR_RETURN(w.hmac_secret,
                           ReadSecret(absl::StrCat(field, ".hmac_secret"), c.hmac_secret(), 16));
  }
  return w;
}

absl::StatusOr<EmailOptions> EmailFromConfig(const std::string& field, const v1::EmailReceiver& c) {
  EmailOptions e;
  if (c.to().empty()) return absl::InvalidArgumentError(absl::StrCat(field, ".to: required"));
  for (int i = 0; i < c.to_size(); ++i) {
    if (!IsPlainAddress(c.to(i))) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".to[", i, "]: \"", c.to(i),
                                                     "\" is not a plain address (a@b.example)"));
    }
    e.to.push_back(c.to(i));
  }
  if (!IsPlainAddress(c.from())) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".from: \"", c.from(),
                     "\" is not a plain address (required, e.g. vigie@example.com)"));
  }
  e.from = c.from();
  static const RE2 kHostPort(R"([A-Za-z0-9.-]+:\d{1,5}|\[[0-9A-Fa-f:]+\]:\d{1,5})");
  if (!RE2::FullMatch(c.smarthost(), kHostPort)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".smarthost: \"", c.smarthost(), "\" must be host:port (required)"));
  }
  e.smarthost = c.smarthost();
  if (c.tls().empty() || c.tls() == "starttls") {
    e.tls = EmailOptions::Tls::kStartTls;
  } else if (c.tls() == "tls") {
    e.tls = EmailOptions::Tls::kImplicit;
  } else if (c.tls() == "none") {
    e.tls = EmailOptions::Tls::kNone;
    if (!c.insecure() && !IsLoopback(c.smarthost())) {
      return absl::InvalidArgumentError(
          absl::StrCat(field,
                       ".tls: \"none\" sends mail (and any password) in clear beyond loopback; set "
                       "insecure: true to do it anyway"));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".tls: \"", c.tls(), "\" must be starttls, tls or none"));
  }
  e.auth_username = c.auth_username();
  if (IsSet(c.auth_password())) {
    VIGIE_ASSIGN_OR_RETURN(e.auth_password,
                           ReadSecret(absl::StrCat(field, ".auth_password"), c.auth_password(), 1));
  }
  e.ca_file = c.ca_file();
  static const RE2 kHello(R"([A-Za-z0-9.-]{0,253})");
  if (!RE2::FullMatch(c.hello(), kHello)) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".hello: \"", c.hello(), "\" must be a host name"));
  }
  e.hello = c.hello();
  VIGIE_ASSIGN_OR_RETURN(
      e.timeout, ParseConfigDuration(absl::StrCat(field, ".timeout"), c.timeout(), e.timeout));
  e.send_resolved = !c.has_send_resolved() || c.send_resolved();
  VIGIE_ASSIGN_OR_RETURN(e.subject, ParseTemplate(absl::StrCat(field, ".subject"), c.subject(),
                                                  kDefaultEmailSubject, Template::Escape::kNone));
  VIGIE_ASSIGN_OR_RETURN(e.text, ParseTemplate(absl::StrCat(field, ".text"), c.text(),
                                               kDefaultEmailText, Template::Escape::kNone));
  VIGIE_ASSIGN_OR_RETURN(e.html, ParseTemplate(absl::StrCat(field, ".html"), c.html(),
                                               kDefaultEmailHtml, Template::Escape::kHtml));
  return e;
}

absl::StatusOr<SlackOptions> SlackFromConfig(const std::string& field, const v1::SlackReceiver& c) {
  SlackOptions s;
  if (!IsSet(c.api_url())) {
    return absl::InvalidArgumentError(absl::StrCat(field, ".api_url: required ({file} or {env})"));
  }
  VIGIE_ASSIGN_OR_RETURN(s.api_url, ReadSecret(absl::StrCat(field, ".api_url"), c.api_url(), 1));
  VIGIE_RETURN_IF_ERROR(RequireHttpUrl(absl::StrCat(field, ".api_url"), s.api_url));
  s.channel = c.channel();
  s.username = c.username();
  VIGIE_ASSIGN_OR_RETURN(
      s.timeout, ParseConfigDuration(absl::StrCat(field, ".timeout"), c.timeout(), s.timeout));
  s.send_resolved = !c.has_send_resolved() || c.send_resolved();
  VIGIE_ASSIGN_OR_RETURN(s.title, ParseTemplate(absl::StrCat(field, ".title"), c.title(),
                                                kDefaultSlackTitle, Template::Escape::kNone));
  VIGIE_ASSIGN_OR_RETURN(s.text, ParseTemplate(absl::StrCat(field, ".text"), c.text(),
                                               kDefaultSlackText, Template::Escape::kNone));
  return s;
}

absl::StatusOr<SmsOptions> SmsFromConfig(const std::string& field, const v1::SmsReceiver& c) {
  SmsOptions s;
  if (c.preset() == "free_mobile") {
    s.preset = SmsOptions::Preset::kFreeMobile;
    s.url = c.url().empty() ? kFreeMobileUrl : c.url();
  } else if (c.preset() == "twilio") {
    s.preset = SmsOptions::Preset::kTwilio;
    s.url = c.url().empty() ? kTwilioUrl : c.url();
    if (c.from().empty() || c.to().empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": the twilio preset needs from and to"));
    }
  } else if (c.preset() == "http") {
    s.preset = SmsOptions::Preset::kHttp;
    if (c.url().empty()) {
      return absl::InvalidArgumentError(absl::StrCat(field, ".url: required for preset http"));
    }
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".preset: \"", c.preset(), "\" must be free_mobile, twilio or http"));
  }
  if (s.preset != SmsOptions::Preset::kHttp) {
    VIGIE_RETURN_IF_ERROR(RequireHttpUrl(absl::StrCat(field, ".url"), s.url));
    if (c.user().empty() || !IsSet(c.password())) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ": the ", c.preset(), " preset needs user and password"));
    }
  } else {
    // The URL is a template: checked once rendered (SendHttp), and for its scheme here.
    VIGIE_RETURN_IF_ERROR(RequireHttpUrl(absl::StrCat(field, ".url"), c.url()));
    VIGIE_ASSIGN_OR_RETURN(s.url_template, ParseTemplate(absl::StrCat(field, ".url"), c.url(), "",
                                                         Template::Escape::kNone));
    if (!c.body().empty()) {
      VIGIE_ASSIGN_OR_RETURN(s.body, ParseTemplate(absl::StrCat(field, ".body"), c.body(), "",
                                                   Template::Escape::kNone));
    }
    static const RE2 kHeaderName(R"([A-Za-z0-9-]{1,64})");
    for (const auto& [name, value] : c.headers()) {
      if (!RE2::FullMatch(name, kHeaderName)) {
        return absl::InvalidArgumentError(
            absl::StrCat(field, ".headers: \"", name, "\" is not a header name"));
      }
      VIGIE_ASSIGN_OR_RETURN(s.headers[name], ParseTemplate(absl::StrCat(field, ".headers.", name),
                                                            value, "", Template::Escape::kNone));
    }
    s.method = c.method().empty() ? "POST" : c.method();
    if (s.method != "GET" && s.method != "POST" && s.method != "PUT") {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".method: \"", c.method(), "\" must be GET, POST or PUT"));
    }
  }
  s.user = c.user();
  if (IsSet(c.password())) {
    VIGIE_ASSIGN_OR_RETURN(s.password,
                           ReadSecret(absl::StrCat(field, ".password"), c.password(), 1));
  }
  s.from = c.from();
  s.to.assign(c.to().begin(), c.to().end());
  if (c.max_length() != 0) s.max_length = c.max_length();
  if (s.max_length < 20 || s.max_length > 1600) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, ".max_length: between 20 and 1600, got ", c.max_length()));
  }
  VIGIE_ASSIGN_OR_RETURN(
      s.timeout, ParseConfigDuration(absl::StrCat(field, ".timeout"), c.timeout(), s.timeout));
  s.send_resolved = !c.has_send_resolved() || c.send_resolved();
  VIGIE_ASSIGN_OR_RETURN(s.text, ParseTemplate(absl::StrCat(field, ".text"), c.text(),
                                               kDefaultSmsText, Template::Escape::kNone));
  return s;
}

}  // namespace

std::unique_ptr<Channel> MakeChannel(const NotifierOptions::ChannelConfig& config) {
  if (const auto* w = std::get_if<WebhookOptions>(&config.options)) {
    return std::make_unique<WebhookChannel>(*w);
  }
  if (const auto* e = std::get_if<EmailOptions>(&config.options)) {
    return std::make_unique<EmailChannel>(*e);
  }
  if (const auto* s = std::get_if<SlackOptions>(&config.options)) {
    return std::make_unique<SlackChannel>(*s);
  }
  return std::make_unique<SmsChannel>(std::get<SmsOptions>(config.options));
}

absl::StatusOr<NotifierOptions> NotifierOptionsFromConfig(const v1::NotifierConfig& c) {
  NotifierOptions o;
  VIGIE_ASSIGN_OR_RETURN(o.grpc, GrpcListenerFromConfig(c.grpc_listen(), "127.0.0.1:7401", c.tls(),
                                                        c.insecure(), c.health_listen()));
  if (!IsSet(c.client_token())) {
    return absl::InvalidArgumentError(
        "client_token: required: the token the control plane presents (its notifier_token), "
        "e.g. client_token: {file: /etc/vigie/notifier.token}");
  }
  VIGIE_ASSIGN_OR_RETURN(o.client_token, ReadSecret("client_token", c.client_token(), 32));
  VIGIE_ASSIGN_OR_RETURN(o.http_listen,
                         ListenAddress("http_listen", c.http_listen(), o.http_listen));
  VIGIE_ASSIGN_OR_RETURN(o.http_auth, HttpAuthFromConfig("http", o.http_listen, c.http()));
  if (c.max_queue() != 0) o.delivery.max_queue = c.max_queue();
  if (c.max_active_alerts() != 0) o.delivery.max_active_alerts = c.max_active_alerts();
  if (c.max_remembered_keys() != 0) o.delivery.max_remembered_keys = c.max_remembered_keys();
  if (c.delivery_workers() != 0) o.delivery.workers = static_cast<int>(c.delivery_workers());
  if (o.delivery.workers > 64) {
    return absl::InvalidArgumentError(
        absl::StrCat("delivery_workers: at most 64, got ", c.delivery_workers()));
  }
  VIGIE_ASSIGN_OR_RETURN(o.delivery.backoff,
                         BackoffFromConfig("retry_backoff", c.retry_backoff(), o.delivery.backoff));
  VIGIE_ASSIGN_OR_RETURN(
      o.delivery.give_up_after,
      ParseConfigDuration("give_up_after", c.give_up_after(), o.delivery.give_up_after));
  o.delivery.spool_directory = c.spool_directory();
  if (!c.database_url().empty() && IsSet(c.database_url_from())) {
    return absl::InvalidArgumentError(
        "database_url_from: set database_url or database_url_from, "
        "not both");
  }
  o.database_url = c.database_url();
  if (IsSet(c.database_url_from())) {
    VIGIE_ASSIGN_OR_RETURN(o.database_url,
                           ReadSecret("database_url_from", c.database_url_from(), 1));
  }
  VIGIE_ASSIGN_OR_RETURN(o.delivery_log_retention,
                         ParseConfigDuration("delivery_log_retention", c.delivery_log_retention(),
                                             o.delivery_log_retention));
  static const RE2 kName("[A-Za-z0-9._-]{1,64}");
  std::set<std::string> names;
  for (int i = 0; i < c.receivers_size(); ++i) {
    const v1::Receiver& r = c.receivers(i);
    const std::string field = absl::StrCat("receivers[", i, "]");
    if (!RE2::FullMatch(r.name(), kName)) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ".name: \"", r.name(), "\" must be 1-64 characters of A-Z a-z 0-9 . _ -"));
    }
    if (!names.insert(r.name()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".name: \"", r.name(), "\" is used by an earlier receiver"));
    }
    const size_t before = o.channels.size();
    std::vector<const v1::WebhookReceiver*> webhooks;
    std::vector<std::string> webhook_fields;
    if (r.has_webhook()) {
      webhooks.push_back(&r.webhook());
      webhook_fields.push_back(absl::StrCat(field, ".webhook"));
    }
    for (int j = 0; j < r.webhook_configs_size(); ++j) {
      webhooks.push_back(&r.webhook_configs(j));
      webhook_fields.push_back(absl::StrCat(field, ".webhook_configs[", j, "]"));
    }
    for (size_t j = 0; j < webhooks.size(); ++j) {
      VIGIE_ASSIGN_OR_RETURN(WebhookOptions w, WebhookFromConfig(webhook_fields[j], *webhooks[j]));
      w.receiver = r.name();
      w.external_url = c.external_url();
      o.channels.push_back({r.name(), "webhook", std::move(w)});
    }
    for (int j = 0; j < r.email_configs_size(); ++j) {
      VIGIE_ASSIGN_OR_RETURN(
          EmailOptions e,
          EmailFromConfig(absl::StrCat(field, ".email_configs[", j, "]"), r.email_configs(j)));
      e.receiver = r.name();
      o.channels.push_back({r.name(), "email", std::move(e)});
    }
    for (int j = 0; j < r.slack_configs_size(); ++j) {
      VIGIE_ASSIGN_OR_RETURN(
          SlackOptions sl,
          SlackFromConfig(absl::StrCat(field, ".slack_configs[", j, "]"), r.slack_configs(j)));
      sl.receiver = r.name();
      o.channels.push_back({r.name(), "slack", std::move(sl)});
    }
    for (int j = 0; j < r.sms_configs_size(); ++j) {
      VIGIE_ASSIGN_OR_RETURN(
          SmsOptions sms,
          SmsFromConfig(absl::StrCat(field, ".sms_configs[", j, "]"), r.sms_configs(j)));
      sms.receiver = r.name();
      o.channels.push_back({r.name(), "sms", std::move(sms)});
    }
    if (r.has_rate_limit()) {
      const std::string rl = absl::StrCat(field, ".rate_limit");
      if (r.rate_limit().max() == 0) {
        return absl::InvalidArgumentError(absl::StrCat(rl, ".max: at least 1"));
      }
      VIGIE_ASSIGN_OR_RETURN(
          absl::Duration per,
          ParseConfigDuration(rl + ".per", r.rate_limit().per(), absl::Hours(1)));
      if (per < absl::Seconds(1)) {
        return absl::InvalidArgumentError(absl::StrCat(rl, ".per: at least 1s"));
      }
      if (r.rate_limit().max() > 100000) {
        return absl::InvalidArgumentError(absl::StrCat(rl, ".max: at most 100000"));
      }
      o.delivery.rate_limits[r.name()] = {static_cast<int>(r.rate_limit().max()), per};
    }
    if (o.channels.size() == before) {
      return absl::InvalidArgumentError(absl::StrCat(
          field, ": needs a channel (webhook_configs, email_configs, slack_configs, sms_configs)"));
    }
  }
  VIGIE_ASSIGN_OR_RETURN(o.deadman.after, ParseConfigDuration("deadman.after", c.deadman().after(),
                                                              absl::ZeroDuration()));
  if (o.deadman.after > absl::ZeroDuration() && o.deadman.after < absl::Seconds(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("deadman.after: at least 1s, got \"", c.deadman().after(), "\""));
  }
  if (!c.deadman().watchdog_url().empty()) {
    VIGIE_RETURN_IF_ERROR(RequireHttpUrl("deadman.watchdog_url", c.deadman().watchdog_url()));
    o.deadman.watchdog_url = c.deadman().watchdog_url();
  }
  VIGIE_ASSIGN_OR_RETURN(
      o.deadman.watchdog_interval,
      ParseConfigDuration("deadman.watchdog_interval", c.deadman().watchdog_interval(),
                          o.deadman.watchdog_interval));
  if (o.deadman.watchdog_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError("deadman.watchdog_interval: at least 1s");
  }
  VIGIE_ASSIGN_OR_RETURN(std::unique_ptr<Router> router, Router::FromConfig(c, names));
  o.router = std::move(router);
  return o;
}

}  // namespace vigie::notifier
