/* A BlueZ pairing agent (org.bluez.Agent1) for [ble] require_encryption:
 * the Confirmation characteristic is then encrypt-write, so BlueZ pairs
 * the two ends before it lets the write through, and pairing needs an agent
 * on each side to say yes. This one has no input and no output
 * ("NoInputNoOutput"): it accepts Just Works confirmations and
 * authorizations and refuses everything that needs a PIN or a passkey.
 * Only the owner of org.bluez may call it.
 *
 * Private to radio_ble.c and radio_ble_present.c (static functions, both
 * use all of them). */
#ifndef SRUP_BLE_AGENT_H
#define SRUP_BLE_AGENT_H

#include <stdio.h>
#include <string.h>

#include <systemd/sd-bus.h>

#include "srup_log.h"

#define BLE_AGENT_PATH "/org/srup/agent"
#define BLE_AGENT_IFACE "org.bluez.Agent1"
#define BLE_AGENT_MANAGER_IFACE "org.bluez.AgentManager1"
#define BLE_AGENT_CAPABILITY "NoInputNoOutput"
#define BLE_AGENT_REJECTED "org.bluez.Error.Rejected"

struct ble_agent {
	/* Returns the unique name owning org.bluez ("" if unknown). */
	const char *(*bluez_owner)(void *user);
	void *user;
	sd_bus_slot *vtable;
};

static int ble_agent_check_caller(sd_bus_message *m, struct ble_agent *a)
{
	const char *sender = sd_bus_message_get_sender(m);
	const char *owner = a->bluez_owner(a->user);

	if (sender && owner && owner[0] && strcmp(sender, owner) == 0)
		return 1;
	srup_log(LOG_WARNING, "BLE agent: refused %s from %s: only org.bluez may call it",
		 sd_bus_message_get_member(m), sender ? sender : "(no sender)");
	sd_bus_reply_method_errorf(m, BLE_AGENT_REJECTED,
				   "only the owner of org.bluez may call this agent");
	return 0;
}

static const char *ble_agent_device(sd_bus_message *m)
{
	const char *device = NULL;

	if (sd_bus_message_read(m, "o", &device) < 0)
		return NULL;
	return device;
}

/* Just Works: accept. */
static int ble_agent_accept(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	const char *device;

	(void)err;
	if (!ble_agent_check_caller(m, userdata))
		return 1;
	device = ble_agent_device(m);
	srup_log(LOG_INFO, "BLE agent: %s for %s accepted (Just Works)",
		 sd_bus_message_get_member(m), device ? device : "(unnamed device)");
	return sd_bus_reply_method_return(m, "");
}

/* Anything that needs a person to read or type: refuse. */
static int ble_agent_refuse(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)err;
	if (!ble_agent_check_caller(m, userdata))
		return 1;
	srup_log(LOG_NOTICE, "BLE agent: %s refused (no input, no output)",
		 sd_bus_message_get_member(m));
	return sd_bus_reply_method_errorf(m, BLE_AGENT_REJECTED,
					  "this agent has no input and no output");
}

static int ble_agent_ack(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)err;
	if (!ble_agent_check_caller(m, userdata))
		return 1;
	return sd_bus_reply_method_return(m, "");
}

static const sd_bus_vtable ble_agent_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_METHOD("Release", "", "", ble_agent_ack, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD("Cancel", "", "", ble_agent_ack, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD("RequestConfirmation", "ou", "", ble_agent_accept,
		      SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD("RequestAuthorization", "o", "", ble_agent_accept,
		      SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD("AuthorizeService", "os", "", ble_agent_refuse, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD("RequestPinCode", "o", "s", ble_agent_refuse, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD("DisplayPinCode", "os", "", ble_agent_refuse, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD("RequestPasskey", "o", "u", ble_agent_refuse, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD("DisplayPasskey", "ouq", "", ble_agent_refuse, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_VTABLE_END,
};

static int ble_agent_export(sd_bus *bus, struct ble_agent *a)
{
	return sd_bus_add_object_vtable(bus, &a->vtable, BLE_AGENT_PATH, BLE_AGENT_IFACE,
					ble_agent_vtable, a);
}

static void ble_agent_unexport(struct ble_agent *a)
{
	a->vtable = sd_bus_slot_unref(a->vtable);
}

#endif
