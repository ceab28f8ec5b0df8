/* `srup-device run`: the resident device agent for device makers.
 *
 * Foreground, logging with syslog priority prefixes (journald reads them),
 * one sd-event loop: the SRUP node on the device's own topic with the
 * device role (srup_role.h) answering every command of its server, hooks
 * and downloads off the loop. SIGTERM and SIGINT stop it cleanly (running
 * hooks killed, partial downloads removed, sent messages flushed); SIGHUP
 * reloads the configuration (srup_config_reload.h). Under systemd
 * (Type=notify): READY=1 once subscribed, STATUS=, WATCHDOG=1 from the loop. */
#ifndef SRUP_DEVICE_RUN_H
#define SRUP_DEVICE_RUN_H

#include <stdbool.h>

/* Returns an exit status of srup_exit.h: 0 stopped by a signal, 1 runtime
 * failure, 78 configuration or keys, 79 deregistered by the server (now or
 * at an earlier run: then at once). */
int srup_device_run(const char *config_path, bool verbose);

#endif
