/* Helpers shared by the radio channels: see radio_util.h. */
#include "radio_util.h"

#include "srup_detail.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

uint64_t radio_monotonic_ms(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

enum radio_err radio_fail(enum radio_err err, char *detail, size_t detail_len, const char *fmt,
			  ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset_detail(detail, detail_len, fmt, ap);
	va_end(ap);
	return err;
}
