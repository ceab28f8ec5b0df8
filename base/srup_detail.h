/* The optional "detail" text that functions of every layer fill in beside
 * an error code (NULL or zero length: the caller wants none). One
 * definition for all of them, inline so that a shared library using it
 * exports nothing more. */
#ifndef SRUP_DETAIL_H
#define SRUP_DETAIL_H

#include <ctype.h>
#include <stdarg.h>
#include <string.h>
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

/* A value as a detail text shows it (quoted by the caller): control bytes
 * replaced by '?', a long one cut with "...". Returns buf. */
static inline const char *detail_shown(const char *value, char *buf, size_t len)
{
	size_t i = 0, n = strlen(value);

	for (; i < n && i + 4 < len; i++)
		buf[i] = iscntrl((unsigned char)value[i]) ? '?' : value[i];
	if (i < n && len >= 4) {
		i = i > len - 4 ? len - 4 : i;
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	buf[i] = '\0';
	return buf;
}

#endif
