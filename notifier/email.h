// Email over SMTP with libcurl: STARTTLS (required by default) or implicit TLS, AUTH, several
// recipients, a multipart/alternative text and HTML body (quoted-printable UTF-8), Date,
// Message-ID and MIME headers, and the subject encoded per RFC 2047 when it is not ASCII.
#ifndef VIGIE_NOTIFIER_EMAIL_H_
#define VIGIE_NOTIFIER_EMAIL_H_

#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "notifier/channel.h"
#include "notifier/template.h"

namespace vigie::notifier {

struct EmailOptions {
  std::string receiver;
  std::vector<std::string> to;  // addresses, e.g. "ops@example.com"
  std::string from;
  std::string smarthost;  // host:port
  enum class Tls { kStartTls, kImplicit, kNone } tls = Tls::kStartTls;
  std::string auth_username;
  std::string auth_password;  // secret
  std::string ca_file;
  std::string hello;  // EHLO name; default: curl's (the local host name)
  absl::Duration timeout = absl::Seconds(30);
  bool send_resolved = true;
  std::shared_ptr<Template> subject, text, html;
};

// The default templates.
extern const char kDefaultEmailSubject[];
extern const char kDefaultEmailText[];
extern const char kDefaultEmailHtml[];

// A header value as RFC 2047 encoded-words when it is not plain ASCII (CR and LF removed).
std::string EncodeHeaderWord(const std::string& value);
// True for a plain address (local@domain, no spaces, brackets, commas, CR/LF; at most 254 bytes).
bool IsPlainAddress(const std::string& address);

class EmailChannel : public Channel {
 public:
  explicit EmailChannel(EmailOptions options) : options_(std::move(options)) {}
  absl::Status Send(const Batch& batch) override;
  bool send_resolved() const override { return options_.send_resolved; }

 private:
  const EmailOptions options_;
};

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_EMAIL_H_
