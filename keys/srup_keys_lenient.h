/* The lenient private key loader of srup-msg: not libsrup's interface (not
 * exported by libsrup.so, not installed); srup-msg and the key tests link
 * it from srup_codec_private. */
#ifndef SRUP_KEYS_LENIENT_H
#define SRUP_KEYS_LENIENT_H

#include <stdbool.h>
#include <stddef.h>

#include "srup_keys.h"

/* For srup-msg only, which must open the published test-vector keys (mode
 * 0444): a private key file readable by group or others is loaded anyway,
 * *too_open is set and detail holds the same warning. Daemons use
 * srup_key_load_private. */
enum srup_keys_err srup_key_load_private_lenient(const char *path, EVP_PKEY **out, bool *too_open,
						 char *detail, size_t detail_len);

#endif
