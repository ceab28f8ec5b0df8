/* The optional "detail" text that functions of every layer fill in beside
 * an error code (NULL or zero length: the caller wants none). One
 * definition for all of them, inline so that a shared library using it
 * exports nothing more. */
#ifndef SRUP_DETAIL_H
#define SRUP_DETAIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

__attribute__((format(printf, 3, 0))) static inline void vset_detail(char *detail, size_t len,
								      const char *fmt, va_list ap)
{
	if (!detail || len == 0)
		return;
	vsnprintf(detail, len, fmt, ap);
}

__attribute__((format(printf, 3, 4))) static inline void set_detail(char *detail, size_t len,
								     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset_detail(detail, len, fmt, ap);
	va_end(ap);
}

#endif
