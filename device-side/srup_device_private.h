/* What the in-tree programs (srup-device run, srup-observerd) reach of a
 * struct srup_device beyond srup_device.h. Not installed.
 *
 * A device made with srup_device_new_borrowed runs on its owner's loop,
 * configuration and keys; its node and role exist from then on, so that
 * the owner can add handlers of its own (the observer's OBSERVE_REQ)
 * before srup_device_start. */
#ifndef SRUP_DEVICE_PRIVATE_H
#define SRUP_DEVICE_PRIVATE_H

#include "srup_config.h"
#include "srup_device.h"
#include "srup_identity.h"
#include "srup_node.h"
#include "srup_role.h"

struct srup_device_borrowed {
	const char *program;      /* the ID_REQ default text: "srup-device", ... */
	sd_event *loop;           /* borrowed */
	struct srup_config *cfg;  /* borrowed; a reload may replace it in place */
	struct srup_identity *id; /* borrowed */
};

/* On error detail holds the line the owner logs. */
enum srup_device_err srup_device_new_borrowed(const struct srup_device_borrowed *params,
					      struct srup_device **out, char *detail,
					      size_t detail_len);

struct srup_node *srup_device_node(struct srup_device *dev);
struct srup_role *srup_device_role(struct srup_device *dev);
sd_event *srup_device_event(struct srup_device *dev);
const struct srup_config *srup_device_config(const struct srup_device *dev);

/* The hook adapter (srup_device_hooks.c): ACTIVATE, ACTION and DATA
 * answered by the operator programs of the device's configuration
 * ([update] activate, [actions], [data], [hooks] timeout_seconds), run off
 * the loop; read at each command, so that a reload applies. Installs the
 * callback table. Returns 0 or -1 (out of memory). */
int srup_device_hooks_attach(struct srup_device *dev);

#endif
