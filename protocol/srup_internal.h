/* Shared between the codec and the crypto module of libsrup (private). */
#ifndef SRUP_INTERNAL_H
#define SRUP_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "srup.h"
#include "srup_msg_layout.h"

/* Length of the pre-sign bytes of m, after checking every field against its
 * bound (the same checks as srup_msg_encode, minus the signature). */
enum srup_err srup_presign_length(const struct srup_msg *m, size_t *len);
/* Write the pre-sign bytes into buf (cap bytes, at least srup_presign_length). */
enum srup_err srup_presign_write(const struct srup_msg *m, uint8_t *buf, size_t cap);

#endif
