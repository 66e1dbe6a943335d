#include "common/secrets.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdlib>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "common/yaml_config.h"

namespace vigie {
namespace {
constexpr size_t kMaxSecretBytes = 64 * 1024;

std::string RandomBytes(int n) {
  std::string out(static_cast<size_t>(n), '\0');
  // RAND_bytes only fails when the OS has no entropy source; a token then must not be made.
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), n) != 1) std::abort();
  return out;
}
}  // namespace

absl::StatusOr<std::string> ReadSecret(absl::string_view field, const v1::SecretSource& source,
                                       size_t min_length) {
  if (source.file().empty() == source.env().empty()) {
    return absl::InvalidArgumentError(absl::StrCat(field, ": set exactly one of file and env"));
  }
  std::string value;
  if (!source.file().empty()) {
    absl::StatusOr<std::string> text =
        ReadConfigFile(absl::StrCat(field, ".file"), source.file(), kMaxSecretBytes);
    if (!text.ok()) return absl::InvalidArgumentError(text.status().message());
    value = std::move(*text);
    while (!value.empty() && (value.back() == '\n' || value.back() == '\r')) value.pop_back();
  } else {
    const char* v = std::getenv(source.env().c_str());
    if (v == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(field, ".env: variable ", source.env(), " is not set"));
    }
    value = v;
  }
  const std::string where = source.file().empty() ? absl::StrCat(".env (", source.env(), ")")
                                                  : absl::StrCat(".file (\"", source.file(), "\")");
  if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(field, where, ": empty"));
  if (value.size() < min_length) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, where, ": at least ", min_length, " characters, got ", value.size(),
                     " (make one with: echo vigie_$(openssl rand -hex 32))"));
  }
  if (value.size() > kMaxSecretBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat(field, where, ": over ", kMaxSecretBytes, " bytes"));
  }
  return value;
}

std::string NewToken() {
  return absl::StrCat("vigie_", absl::WebSafeBase64Escape(RandomBytes(32)));
}

std::string RandomHex(int n) { return absl::BytesToHexString(RandomBytes(n)); }

std::string Sha256(absl::string_view data) {
  unsigned char out[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out);
  return std::string(reinterpret_cast<const char*>(out), sizeof(out));
}

bool ConstantTimeEquals(absl::string_view a, absl::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace vigie
