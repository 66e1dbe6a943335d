// One HTTP request for a channel (webhook, Slack, SMS gateways), with libcurl: a deadline, no
// redirects followed, only http and https. The result is classified for delivery: 2xx is OK;
// no answer, 408, 429 and 5xx are kUnavailable (retry); any other status is kInvalidArgument
// (retrying cannot help). Messages never contain the URL or credentials (URLs of webhooks and
// SMS gateways often carry secrets); `what` names the channel instead.
#ifndef VIGIE_NOTIFIER_HTTP_REQUEST_H_
#define VIGIE_NOTIFIER_HTTP_REQUEST_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"

namespace vigie::notifier {

struct HttpRequest {
  std::string method = "POST";  // GET, POST, PUT
  std::string url;
  std::vector<std::string> headers;  // "Name: value"; each checked for CR/LF
  std::string body;
  std::string basic_auth_username;
  std::string basic_auth_password;
  std::string ca_file;
  absl::Duration timeout = absl::Seconds(10);
};

// Requires curl_global_init() in main. Thread-safe (a handle per call).
absl::Status SendHttp(const std::string& what, const HttpRequest& request);

// Percent-encodes everything but unreserved characters (RFC 3986).
std::string UrlEncode(const std::string& s);

// True if `s` can go into a header or URL as is: no CR, LF or NUL, at most `max` bytes.
bool SafeForHeader(const std::string& s, size_t max = 1024);

}  // namespace vigie::notifier

#endif  // VIGIE_NOTIFIER_HTTP_REQUEST_H_
