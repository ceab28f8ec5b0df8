/* What a reload (SIGHUP) of srup-observerd or `srup-device run` may change.
 *
 * Every key of the configuration is in one of two classes:
 * - applied: takes effect without dropping the broker session (the
 *   observation window, attempts and max_pending for new observations,
 *   audit, metrics, hooks, actions, data handlers, update settings, the
 *   JOIN_COMMAND policy, the identification text);
 * - restart-only: what the running session or process is built on
 *   (identity, server, broker and TLS files, the channel and its section,
 *   the state directory, the control socket, [server] join). A changed
 *   restart-only key keeps its running value and is named, so nothing is
 *   half-applied.
 *
 * The classification is a table in srup_config_reload.c beside the loader's
 * own key table; a key the table does not name is treated as restart-only,
 * and the unit test fails until it is classified. */
#ifndef SRUP_CONFIG_RELOAD_H
#define SRUP_CONFIG_RELOAD_H

#include <stdbool.h>
#include <stddef.h>

#include "srup_config.h"

/* true if [section] name takes effect on reload; false if it needs a
 * restart (or is not classified). */
bool srup_config_reloadable(const char *section, const char *name);
/* true if the table names [section] name (or all of its section). */
bool srup_config_reload_classified(const char *section, const char *name);

/* Turns next (a freshly loaded, checked configuration) into what the
 * running process adopts: every restart-only key whose value differs from
 * running gets running's value back and is named in restart, as
 * "[mqtt] broker, [observation] channel" (empty if none). */
void srup_config_reload_merge(const struct srup_config *running, struct srup_config *next,
			      char *restart, size_t restart_len);

#endif
