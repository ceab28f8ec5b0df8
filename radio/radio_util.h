/* Small helpers the radio channels share (private to radio/, not part of
 * the radio.h contract). */
#ifndef RADIO_UTIL_H
#define RADIO_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include "radio.h"

/* Milliseconds on CLOCK_MONOTONIC: deadlines must not move with the wall
 * clock. */
uint64_t radio_monotonic_ms(void);

/* Writes the message into detail when the caller gave one (detail may be
 * NULL) and returns err, so that a failure reads "return radio_fail(...)". */
__attribute__((format(printf, 4, 5))) enum radio_err
radio_fail(enum radio_err err, char *detail, size_t detail_len, const char *fmt, ...);

#endif
