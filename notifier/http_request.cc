#include "notifier/http_request.h"

#include <curl/curl.h>

#include <memory>

#include "absl/strings/str_cat.h"

namespace vigie::notifier {
namespace {

size_t Discard(char*, size_t size, size_t n, void*) { return size * n; }

}  // namespace

bool SafeForHeader(const std::string& s, size_t max) {
  return s.size() <= max && s.find_first_of(std::string("\r\n\0", 3)) == std::string::npos;
}

std::string UrlEncode(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
        c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

absl::Status SendHttp(const std::string& what, const HttpRequest& request) {
  for (const std::string& h : request.headers) {
    if (!SafeForHeader(h, 8192)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": a header holds CR, LF or NUL"));
    }
  }
  if (!SafeForHeader(request.url, 8192)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": the URL holds CR, LF or NUL"));
  }
  // One handle per thread, reset between requests: its connection cache keeps connections
  // to the same host open (keep-alive), so a busy receiver costs no handshake per delivery.
  thread_local std::unique_ptr<CURL, void (*)(CURL*)> curl(curl_easy_init(), curl_easy_cleanup);
  if (!curl) return absl::InternalError("curl_easy_init failed");
  curl_easy_reset(curl.get());
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "User-Agent: Vigie-Notifier/" VIGIE_VERSION);
  for (const std::string& h : request.headers) headers = curl_slist_append(headers, h.c_str());
  std::unique_ptr<curl_slist, void (*)(curl_slist*)> header_guard(headers, curl_slist_free_all);
  char error[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, request.url.c_str());
  if (request.method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else {
    curl_easy_setopt(c, CURLOPT_POST, 1L);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, request.body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(request.body.size()));
    if (request.method != "POST") {
      curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, request.method.c_str());
    }
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(absl::ToInt64Milliseconds(request.timeout)));
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Discard);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  if (!request.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, request.ca_file.c_str());
  if (!request.basic_auth_username.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
    curl_easy_setopt(c, CURLOPT_USERNAME, request.basic_auth_username.c_str());
    curl_easy_setopt(c, CURLOPT_PASSWORD, request.basic_auth_password.c_str());
  }
  CURLcode rc = curl_easy_perform(c);
  long code = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
  // Nothing of this call (the error buffer, headers, body) stays referenced by the kept handle.
  curl_easy_reset(c);
  if (rc != CURLE_OK) {
    // curl's messages name the host at most, never the path or query.
    return absl::UnavailableError(
        absl::StrCat(what, ": ", error[0] ? error : curl_easy_strerror(rc)));
  }
  if (code >= 200 && code < 300) return absl::OkStatus();
  if (code >= 400 && code < 500 && code != 408 && code != 429) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": HTTP ", code, " (not retried)"));
  }
  return absl::UnavailableError(absl::StrCat(what, ": HTTP ", code));
}

}  // namespace vigie::notifier
