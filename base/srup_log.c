#include "srup_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int log_max_priority = LOG_INFO;
static srup_log_handler log_handler;
static void *log_handler_user;

void srup_log_set_handler(srup_log_handler fn, void *user)
{
	log_handler = fn;
	log_handler_user = user;
}

void srup_log_set_level(int max_priority)
{
	log_max_priority = max_priority;
}

void srup_log(int priority, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	if (priority > log_max_priority)
		return;
	n = snprintf(line, sizeof(line), "<%d>", priority & LOG_PRIMASK);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	/* A message is one journal entry, and parts of it (topics, IDs) come
	 * from the network: no newlines, no terminal control characters. */
	for (char *p = line + n; *p; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			*p = (*p == '\n' || *p == '\t') ? ' ' : '?';
	if (log_handler) {
		log_handler(priority & LOG_PRIMASK, line + n, log_handler_user);
		return;
	}
	/* One write per line so that lines from several threads never mix. */
	strcat(line, "\n");
	fputs(line, stderr);
}
