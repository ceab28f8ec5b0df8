/* Logging for the daemons and agents: one line per call on stderr, with a
 * syslog priority prefix ("<6>") that journald turns into the priority.
 * It sits in base/, below every layer, so that each of them can log the
 * same way. */
#ifndef SRUP_LOG_H
#define SRUP_LOG_H

#include <syslog.h>

/* Messages above this priority are dropped (default LOG_INFO). */
void srup_log_set_level(int max_priority);

/* Lines go to fn instead of stderr (NULL: stderr again), without the
 * priority prefix and newline; fn may run on any thread that logs. */
typedef void (*srup_log_handler)(int priority, const char *line, void *user);
void srup_log_set_handler(srup_log_handler fn, void *user);

__attribute__((format(printf, 2, 3))) void srup_log(int priority, const char *fmt, ...);

#endif
