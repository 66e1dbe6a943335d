#include "notifier/email.h"

#include <curl/curl.h>
#include <openssl/sha.h>

#include <memory>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "re2/re2.h"

namespace vigie::notifier {

const char kDefaultEmailSubject[] =
    "[{{STATUS}}{{#grouped}}:{{alert_count}}{{/grouped}}{{#severity}} {{severity}}{{/severity}}]"
    " {{alertname}}: {{summary}}{{#grouped}} (+{{others}} more){{/grouped}}";
// One alert: its details. Several (a group): a section for each.
const char kDefaultEmailText[] =
    "{{#grouped}}{{alert_count}} alerts: {{firing_count}} firing, {{resolved_count}} resolved."
    "\n\n{{/grouped}}"
    "{{#alerts}}{{#grouped}}== {{/grouped}}{{summary}}\n\n"
    "Status: {{status}}\nValue: {{value}}\nSince: {{starts_at}}\n"
    "{{#resolved}}Resolved: {{ends_at}}\n{{/resolved}}"
    "{{#acknowledged_by}}Acknowledged by {{acknowledged_by}}{{#acknowledgement_comment}}: "
    "{{acknowledgement_comment}}{{/acknowledgement_comment}}\n{{/acknowledged_by}}"
    "{{#silenced_by}}Silenced ({{silenced_by}}): not repeated until it ends\n{{/silenced_by}}"
    "{{#description}}\n{{description}}\n{{/description}}\n"
    "Labels:\n{{#label_list}}  {{name}} = {{value}}\n{{/label_list}}\n"
    "{{#generator_url}}{{generator_url}}\n{{/generator_url}}{{#grouped}}\n{{/grouped}}"
    "{{/alerts}}";
const char kDefaultEmailHtml[] =
    "<!DOCTYPE html><html><body style=\"font-family: sans-serif\">"
    "{{#grouped}}<p>{{alert_count}} alerts: {{firing_count}} firing, {{resolved_count}} "
    "resolved.</p>{{/grouped}}{{#alerts}}"
    "<h2 style=\"color: {{#firing}}#c62828{{/firing}}{{#resolved}}#2e7d32{{/resolved}}\">"
    "{{STATUS}}: {{summary}}</h2>"
    "<p>Value <b>{{value}}</b> since {{starts_at}}{{#resolved}}, resolved {{ends_at}}"
    "{{/resolved}}.</p>{{#acknowledged_by}}<p>Acknowledged by <b>{{acknowledged_by}}</b>"
    "{{#acknowledgement_comment}}: {{acknowledgement_comment}}{{/acknowledgement_comment}}</p>"
    "{{/acknowledged_by}}{{#silenced_by}}<p>Silenced ({{silenced_by}}): not repeated until it "
    "ends.</p>{{/silenced_by}}{{#description}}<p>{{description}}</p>{{/description}}"
    "<table>{{#label_list}}<tr><td>{{name}}</td><td>{{value}}</td></tr>{{/label_list}}</table>"
    "{{#generator_url}}<p><a href=\"{{generator_url}}\">Open in Vigie</a></p>{{/generator_url}}"
    "{{/alerts}}</body></html>";

std::string EncodeHeaderWord(const std::string& raw) {
  std::string value;
  for (char c : raw) {
    if (c != '\r' && c != '\n') value.push_back(c);
  }
  bool ascii = true;
  for (unsigned char c : value) ascii &= c >= 0x20 && c < 0x7f;
  if (ascii) return value;
  // Encoded-words of at most 75 characters: 45 bytes of UTF-8 each (never split inside a
  // character), folded onto continuation lines.
  std::vector<std::string> words;
  size_t i = 0;
  while (i < value.size()) {
    size_t end = std::min(value.size(), i + 45);
    while (end < value.size() && (static_cast<unsigned char>(value[end]) & 0xC0) == 0x80) --end;
    words.push_back(absl::StrCat("=?UTF-8?B?", absl::Base64Escape(value.substr(i, end - i)), "?="));
    i = end;
  }
  return absl::StrJoin(words, "\r\n ");
}

bool IsPlainAddress(const std::string& address) {
  static const RE2 kAddress(R"([^\s<>(),;:"\[\]@]+@[A-Za-z0-9.-]+)");
  return address.size() <= 254 && RE2::FullMatch(address, kAddress);
}

namespace {

std::string MessageId(const Batch& batch, const std::string& from) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  const std::string& k = batch.key;
  SHA256(reinterpret_cast<const unsigned char*>(k.data()), k.size(), digest);
  const std::string domain = from.substr(from.find('@') + 1);
  return absl::StrCat("<", absl::BytesToHexString(std::string(reinterpret_cast<char*>(digest), 16)),
                      ".", absl::ToUnixMillis(absl::Now()), "@", domain, ">");
}

}  // namespace

absl::Status EmailChannel::Send(const Batch& batch) {
  const std::string what = absl::StrCat("email ", options_.receiver);
  std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return absl::InternalError("curl_easy_init failed");
  CURL* c = curl.get();
  const std::string subject = options_.subject->Render(batch);
  const std::string text = options_.text->Render(batch);
  const std::string html = options_.html->Render(batch);

  curl_slist* headers = nullptr;
  headers = curl_slist_append(
      headers, absl::StrCat("Date: ", absl::FormatTime("%a, %d %b %Y %H:%M:%S +0000", absl::Now(),
                                                       absl::UTCTimeZone()))
                   .c_str());
  headers = curl_slist_append(headers, absl::StrCat("From: ", options_.from).c_str());
  headers =
      curl_slist_append(headers, absl::StrCat("To: ", absl::StrJoin(options_.to, ", ")).c_str());
  headers = curl_slist_append(
      headers, absl::StrCat("Message-ID: ", MessageId(batch, options_.from)).c_str());
  headers =
      curl_slist_append(headers, absl::StrCat("Subject: ", EncodeHeaderWord(subject)).c_str());
  headers = curl_slist_append(headers, "X-Mailer: Vigie-Notifier/" VIGIE_VERSION);
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> header_guard(headers, curl_slist_free_all);
  curl_slist* rcpt = nullptr;
  for (const std::string& to : options_.to) {
    rcpt = curl_slist_append(rcpt, absl::StrCat("<", to, ">").c_str());
  }
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> rcpt_guard(rcpt, curl_slist_free_all);

  // multipart/alternative: the text part, then the HTML part (clients show the last they can).
  std::unique_ptr<curl_mime, void (*)(curl_mime*)> mime(curl_mime_init(c), curl_mime_free);
  curl_mime* alt = curl_mime_init(c);
  curl_mimepart* part = curl_mime_addpart(alt);
  curl_mime_data(part, text.data(), text.size());
  curl_mime_type(part, "text/plain; charset=UTF-8");
  curl_mime_encoder(part, "quoted-printable");
  part = curl_mime_addpart(alt);
  curl_mime_data(part, html.data(), html.size());
  curl_mime_type(part, "text/html; charset=UTF-8");
  curl_mime_encoder(part, "quoted-printable");
  part = curl_mime_addpart(mime.get());
  curl_mime_subparts(part, alt);  // owned by `mime` from here
  curl_mime_type(part, "multipart/alternative");
  curl_slist* part_headers = curl_slist_append(nullptr, "Content-Disposition: inline");
  curl_mime_headers(part, part_headers, 1);

  const bool implicit = options_.tls == EmailOptions::Tls::kImplicit;
  const std::string url =
      absl::StrCat(implicit ? "smtps://" : "smtp://", options_.smarthost, "/", options_.hello);
  char error[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "smtp,smtps");
  if (options_.tls == EmailOptions::Tls::kStartTls) {
    curl_easy_setopt(c, CURLOPT_USE_SSL, static_cast<long>(CURLUSESSL_ALL));
  }
  if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  if (!options_.auth_username.empty()) {
    curl_easy_setopt(c, CURLOPT_USERNAME, options_.auth_username.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, options_.auth_password.c_str());
  }
  const std::string mail_from = absl::StrCat("<", options_.from, ">");
  curl_easy_setopt(c, CURLOPT_MAIL_FROM, mail_from.c_str());
  curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_MIMEPOST, mime.get());
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(options_.timeout)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  CURLcode rc = curl_easy_perform(c);
  if (rc == CURLE_OK) return absl::OkStatus();
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  const std::string detail = error[0] ? error : curl_easy_strerror(rc);
  // 5xx SMTP replies are permanent (bad recipient, refused sender); 4xx and no reply are not.
  if (code >= 500 && code < 600) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": SMTP ", code, ": ", detail));
  }
  if (rc == CURLE_LOGIN_DENIED) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": authentication refused"));
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", detail));
}

}  // namespace vigie::notifier
