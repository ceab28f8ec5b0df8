/* Logging for the daemons and agents: one line per call on stderr, with a
 * syslog priority prefix ("<6>") that journald turns into the priority.
 * The lowest layer that logs (radio/) owns it, so device-side/ and
 * observer/ share it. */
#ifndef SRUP_LOG_H
#define SRUP_LOG_H

#include <syslog.h>

/* Messages above this priority are dropped (default LOG_INFO). */
void srup_log_set_level(int max_priority);

__attribute__((format(printf, 2, 3))) void srup_log(int priority, const char *fmt, ...);

#endif
