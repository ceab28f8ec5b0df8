/* The SRUP device role: what a device answers to its C2 server.
 *
 * One dispatcher, registered on a struct srup_node for every server->device
 * message type, each accepted only from the configured server (the node's
 * pipeline checks sender, signature and sequence ID before it runs):
 *
 *   ID_REQ         -> DATA IDENTIFICATION_RESPONSE (the configured text)
 *   INITIATE       -> download (srup_update.h) -> RESPONSE 0x00 / 0xFD /
 *                     0xFF, or on an HTTP error status RESPONSE 0xFC, DATA
 *                     HTTP_STATUS, DATA HTTP_RESPONSE, then RESPONSE 0xFE
 *   ACTIVATE       -> [update] activate hook with the staged file -> 0x10/0x1F
 *   ACTION         -> [actions] hook -> 0x20 / 0x2F; unknown ID 0x2E
 *   DATA           -> [data] hook, the data on its stdin; unknown ID 0x3F
 *   GROUP_ADD      -> subscribe SRUP/groups/<id> -> 0x40 / 0x4F / 0x4E (limit)
 *   GROUP_DELETE,
 *   GROUP_DESTROY  -> unsubscribe -> 0x41 / 0x4D / 0x4C (not a member)
 *   JOIN_COMMAND   -> 0x41 (accept) or 0x5E (refuse) by [join] command
 *   TERMINATE_CMD  -> RESPONSE 0x70; from then on only a JOIN_COMMAND from
 *                     that server is obeyed (persisted)
 *   DEREGISTER_CMD -> the server's key removed from the peer store, a record
 *                     persisted, the owner told to stop (SRUP_EXIT_DEREGISTERED)
 *
 * Where srup_device.h's callback table has an entry, the application
 * answers instead (ID_REQ, a verified INITIATE, ACTIVATE, ACTION, DATA,
 * the group commands after their checks, JOIN_COMMAND), at once or later
 * through srup_device_request_complete; the hooks above are one such
 * table (srup_device_hooks.c). Without one: ID_REQ and JOIN_COMMAND as
 * above, INITIATE keeps the file, ACTIVATE 0x1F, ACTION 0x2E, DATA 0x3F,
 * groups accepted. Every RESPONSE and DATA echoes the token of the message
 * it answers and is published on the device's own topic. Downloads run
 * off the loop. State files in [state] dir (mode 0600, written atomically):
 * groups, terminated, deregistered, join; staged updates in updates/. */
#ifndef SRUP_ROLE_H
#define SRUP_ROLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "srup_config.h"
#include "srup_device.h"
#include "srup_keys.h"
#include "srup_node.h"

#define SRUP_ROLE_GROUP_ID_MAX 64

struct srup_role;

struct srup_role_params {
	const char *program;            /* "srup-observerd", "srup-device": ID_REQ default */
	const struct srup_config *cfg;  /* borrowed; outlives the role */
	struct srup_keystore *peers;    /* the node's store: DEREGISTER_CMD removes the server */
	/* The server deregistered this node: the owner stops (exit status
	 * SRUP_EXIT_DEREGISTERED) and sends nothing more. */
	void (*deregistered)(void *user);
	void *user;
};

/* Before anything connects: if the state directory holds a deregistration
 * record, returns true and writes one log line's text into why (naming the
 * server, the file and how to clear it). */
bool srup_role_deregistered(const struct srup_config *cfg, char *why, size_t why_len);

/* Register the handlers on node (before srup_node_connect) and restore the
 * group memberships. Returns 0, or -1 with a line in err. */
int srup_role_new(sd_event *loop, struct srup_node *node, const struct srup_role_params *params,
		  struct srup_role **out, char *err, size_t err_len);
/* Stops running hooks and downloads (their partial files removed). */
void srup_role_free(struct srup_role *role);

/* The configuration the role borrowed was replaced in place by a reload
 * (srup_config_reload.h): what the role keeps of it is taken again. */
void srup_role_reconfigured(struct srup_role *role);

/* Call from the node's on_connected: sends the JOIN_REQ of [server] join =
 * auto once, if no verdict is recorded yet. */
void srup_role_connected(struct srup_role *role);

/* Whether the role registered a handler for type on its node (RESPONSE
 * only with [server] join = auto), and that handler, for an owner that
 * registers its own handler for the type and passes on what is not its
 * own (libsrup-device's flows share RESPONSE this way). */
bool srup_role_hears(const struct srup_role *role, uint8_t type);
void srup_role_handle(struct srup_role *role, const struct srup_msg *msg, const char *topic);

/* false once the server terminated this device (until a JOIN_COMMAND) or
 * deregistered it: owners with handlers of their own (OBSERVE_REQ) drop
 * the message then. */
bool srup_role_obeys(const struct srup_role *role, const struct srup_msg *msg);

/* Ask the application (cb, user: borrowed from dev) for every answer of
 * srup_device.h's callback table; cb NULL: the role's own answers. */
void srup_role_set_callbacks(struct srup_role *role, struct srup_device *dev,
			     const struct srup_device_callbacks *cb, void *user);

/* A DATA of the device's own, with a fresh token. -1 if not sent
 * (deregistered, or no token). */
int srup_role_send_data(struct srup_role *role, const char *data_id, const void *data,
			size_t len);

/* A token as a hook argument: itself if printable, else hex ("-" if empty
 * or too long). */
void srup_role_token_text(const uint8_t *token, size_t len, char *out, size_t out_len);

#endif
