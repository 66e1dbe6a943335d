// Secrets: reading them from files or the environment, making tokens, hashing and comparing
// them. Nothing here logs; error messages name the source (file path, variable name) and never
// the secret.
#ifndef VIGIE_COMMON_SECRETS_H_
#define VIGIE_COMMON_SECRETS_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vigie/v1/config.pb.h"

namespace vigie {

// True if the source names a file or a variable.
inline bool IsSet(const v1::SecretSource& s) { return !s.file().empty() || !s.env().empty(); }

// Reads the secret named by `source`: the file's contents without the trailing newline, or the
// variable's value. InvalidArgument naming `field` if both or neither are set, the file cannot
// be read, or the value is shorter than `min_length` or over 64 KiB.
absl::StatusOr<std::string> ReadSecret(absl::string_view field, const v1::SecretSource& source,
                                       size_t min_length = 1);

// A new random token: "vigie_" + 43 base64url characters (256 bits from the OS's CSPRNG).
std::string NewToken();
// `n` random bytes as 2n lowercase hex digits.
std::string RandomHex(int n);
// SHA-256 of `data` (32 raw bytes).
std::string Sha256(absl::string_view data);
// Compares in time that depends only on the lengths.
bool ConstantTimeEquals(absl::string_view a, absl::string_view b);

}  // namespace vigie

#endif  // VIGIE_COMMON_SECRETS_H_
