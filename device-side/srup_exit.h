/* Exit statuses of the resident SRUP programs (srup-observerd and
 * `srup-device run`). Their systemd units name the last two in
 * RestartPreventExitStatus=: restarting cannot help a configuration that
 * does not work, and a node its server deregistered must stay stopped. */
#ifndef SRUP_EXIT_H
#define SRUP_EXIT_H

#define SRUP_EXIT_OK 0            /* stopped by SIGTERM/SIGINT, all answered */
#define SRUP_EXIT_FAILURE 1       /* runtime failure: a restart may help */
#define SRUP_EXIT_USAGE 2         /* bad command line */
#define SRUP_EXIT_CONFIG 78       /* configuration or key files unusable (EX_CONFIG) */
#define SRUP_EXIT_DEREGISTERED 79 /* the C2 server deregistered this node */

#endif
