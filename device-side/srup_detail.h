/* The optional "detail" text that device-side functions fill in beside an
 * error code (NULL or zero length: the caller wants none). */
#ifndef SRUP_DETAIL_H
#define SRUP_DETAIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

__attribute__((format(printf, 3, 4))) static inline void set_detail(char *detail, size_t len,
								     const char *fmt, ...)
{
	va_list ap;

	if (!detail || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(detail, len, fmt, ap);
	va_end(ap);
}

#endif
