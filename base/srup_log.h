/* Logging for the daemons and agents: one line per call on stderr, with a
 * syslog priority prefix ("<6>") that journald turns into the priority.
 * It sits in base/, below every layer, so that each of them can log the
 * same way. */
#ifndef SRUP_LOG_H
#define SRUP_LOG_H

#include <syslog.h>

/* Messages above this priority are dropped (default LOG_INFO). */
void srup_log_set_level(int max_priority);

__attribute__((format(printf, 2, 3))) void srup_log(int priority, const char *fmt, ...);

#endif
