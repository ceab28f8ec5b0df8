/* The BLE observation channel, observer side (OBSERVATION-CHANNEL.md
 * section 3): a GATT application and an LE advertisement exported on the
 * system bus with sd-bus and registered with BlueZ.
 *
 *   /org/srup/observer                  ObjectManager (the application)
 *     /service0                         GattService1  SRUP Observation
 *       /observer_id                    GattCharacteristic1 ["read"]
 *       /confirmation                   GattCharacteristic1 ["write"] or ["encrypt-write"]
 *       /result                         GattCharacteristic1 ["read", "notify"]
 *   /org/srup/advertisement0            LEAdvertisement1 (peripheral, service UUID)
 *
 * The application is registered at start-up and stays registered; the
 * advertisement is registered while the channel listens (start) and
 * unregistered on stop. BlueZ leaving the bus, or the adapter vanishing,
 * forgets both: pending observations are kept, both are registered again
 * when BlueZ is back, and if it is not back within the grace period the
 * channel reports itself unavailable once.
 *
 * Only the current owner of org.bluez may call the GATT and advertisement
 * methods: another local process must not be able to inject frames that no
 * radio carried.
 *
 * With require_encryption the Confirmation characteristic is encrypt-write
 * and the channel also registers a pairing agent (ble_agent.h: Just Works,
 * no input, no output) as BlueZ's default agent, since BlueZ pairs only
 * with an agent's consent.
 *
 * Confirmation writes and long writes: each WriteValue is one chunk of
 * ble_longwrite.h, whose rules decide when a frame is complete, held or
 * refused.
 * Refusals are org.bluez.Error.InvalidValueLength; a frame for a device
 * with no pending observation is org.bluez.Error.Failed. Neither changes
 * Result. */
#include "radio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <systemd/sd-bus.h>

#include "ble_agent.h"
#include "ble_bluez.h"
#include "ble_longwrite.h"
#include "srup_log.h"

#define APP_PATH "/org/srup/observer"
#define SERVICE_PATH APP_PATH "/service0"
#define CHR_OBSERVER_ID_PATH SERVICE_PATH "/observer_id"
#define CHR_CONFIRMATION_PATH SERVICE_PATH "/confirmation"
#define CHR_RESULT_PATH SERVICE_PATH "/result"
#define ADV_PATH "/org/srup/advertisement0"

#define DEFAULT_GRACE_SECONDS 10u
#define REGISTER_RETRY_USEC (2 * 1000000ull)
#define DEVICE_PATH_MAX BLE_LONGWRITE_DEVICE_MAX

struct ble_channel {
	struct radio_channel base; /* first: the channel header */
	sd_bus *bus;

	char adapter[32];
	char adapter_path[BLE_ADAPTER_PATH_MAX];
	bool require_encryption;
	uint8_t observer_id[BLE_OBSERVER_ID_LEN];
	unsigned grace_seconds;

	/* BlueZ as seen from here. */
	char bluez_owner[256];     /* unique name owning org.bluez, "" if none */
	bool ready;                /* owner known and adapter present */
	bool app_registered;
	bool adv_registered;
	bool adv_unsure;           /* an (Un)RegisterAdvertisement got no answer */
	bool unavailable_reported; /* once per disappearance */
	sd_bus_slot *app_call;     /* RegisterApplication in flight */
	sd_bus_slot *adv_call;     /* (Un)RegisterAdvertisement in flight */
	bool adv_call_registers;
	sd_bus_slot *probe_call;   /* adapter probe in flight */
	struct ble_agent agent;    /* require_encryption only */
	bool agent_registered;
	bool agent_call_registers; /* RegisterAgent (else RequestDefaultAgent) */
	sd_bus_slot *agent_call;
	sd_event_source *grace_timer;
	sd_event_source *retry_timer;
	char lost_why[128];

	/* Exported objects and signal matches. */
	sd_bus_slot *obj_manager;
	sd_bus_slot *vt_service, *vt_observer_id, *vt_confirmation, *vt_result, *vt_adv;
	sd_bus_slot *match_owner, *match_added, *match_removed;

	/* GATT state. */
	uint8_t result;
	bool notifying;
	struct ble_longwrite held; /* a frame being written: secret */
	unsigned long frames_refused;
};

static struct ble_channel *ble_of(struct radio_channel *ch)
{
	return (struct ble_channel *)ch;
}

static void reconcile(struct ble_channel *b);
static void schedule_retry(struct ble_channel *b);

static void held_drop(struct ble_channel *b)
{
	ble_longwrite_drop(&b->held);
}

/* ---- Method options (a{sv}) ------------------------------------------ */

struct gatt_options {
	uint16_t offset;
	bool has_mtu;
	uint16_t mtu;
	bool prepare_authorize;
	char device[DEVICE_PATH_MAX];
};

/* Reads the options dictionary of ReadValue/WriteValue. Unknown keys are
 * skipped; a known key with the wrong type is an error. */
static int read_options(sd_bus_message *m, struct gatt_options *o, char *why, size_t why_len)
{
	int r;

	memset(o, 0, sizeof(*o));
	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r <= 0)
		goto bad;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *key;
		const char *contents;
		char type;

		r = sd_bus_message_read(m, "s", &key);
		if (r < 0)
			goto bad;
		r = sd_bus_message_peek_type(m, &type, &contents);
		if (r <= 0 || type != 'v')
			goto bad;
		if (strcmp(key, "offset") == 0 || strcmp(key, "mtu") == 0) {
			uint16_t v;

			if (strcmp(contents, "q") != 0) {
				snprintf(why, why_len, "option %s must be a uint16", key);
				return -EINVAL;
			}
			r = sd_bus_message_read(m, "v", "q", &v);
			if (r < 0)
				goto bad;
			if (key[0] == 'o') {
				o->offset = v;
			} else {
				o->mtu = v;
				o->has_mtu = true;
			}
		} else if (strcmp(key, "device") == 0) {
			const char *dev;

			if (strcmp(contents, "o") != 0) {
				snprintf(why, why_len, "option device must be an object path");
				return -EINVAL;
			}
			r = sd_bus_message_read(m, "v", "o", &dev);
			if (r < 0)
				goto bad;
			snprintf(o->device, sizeof(o->device), "%s", dev);
		} else if (strcmp(key, "prepare-authorize") == 0) {
			int v;

			if (strcmp(contents, "b") != 0) {
				snprintf(why, why_len, "option prepare-authorize must be a boolean");
				return -EINVAL;
			}
			r = sd_bus_message_read(m, "v", "b", &v);
			if (r < 0)
				goto bad;
			o->prepare_authorize = v;
		} else {
			r = sd_bus_message_skip(m, "v");
			if (r < 0)
				goto bad;
		}
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			goto bad;
	}
	if (r < 0)
		goto bad;
	r = sd_bus_message_exit_container(m);
	if (r < 0)
		goto bad;
	return 0;
bad:
	snprintf(why, why_len, "options are not a well-formed a{sv} dictionary");
	return -EINVAL;
}

/* ---- Who may call ---------------------------------------------------- */

static bool from_bluez(const struct ble_channel *b, sd_bus_message *m)
{
	const char *sender = sd_bus_message_get_sender(m);

	return sender && b->bluez_owner[0] && strcmp(sender, b->bluez_owner) == 0;
}

static int refuse_stranger(sd_bus_message *m)
{
	const char *sender = sd_bus_message_get_sender(m);

	srup_log(LOG_WARNING, "BLE: refused %s.%s from %s: only org.bluez may call it",
		 sd_bus_message_get_interface(m), sd_bus_message_get_member(m),
		 sender ? sender : "(no sender)");
	return sd_bus_reply_method_errorf(m, BLUEZ_ERR_NOT_PERMITTED,
					  "only the owner of org.bluez may call this method");
}

/* ---- GATT properties -------------------------------------------------- */

static int prop_service_uuid(sd_bus *bus, const char *path, const char *iface, const char *prop,
			     sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	(void)bus, (void)path, (void)iface, (void)prop, (void)userdata, (void)err;
	return sd_bus_message_append(reply, "s", BLE_UUID_SERVICE);
}

static int prop_primary(sd_bus *bus, const char *path, const char *iface, const char *prop,
			sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	(void)bus, (void)path, (void)iface, (void)prop, (void)userdata, (void)err;
	return sd_bus_message_append(reply, "b", 1);
}

static int prop_chrc_uuid(sd_bus *bus, const char *path, const char *iface, const char *prop,
			  sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	const char *uuid;

	(void)bus, (void)iface, (void)prop, (void)userdata, (void)err;
	if (strcmp(path, CHR_OBSERVER_ID_PATH) == 0)
		uuid = BLE_UUID_OBSERVER_ID;
	else if (strcmp(path, CHR_CONFIRMATION_PATH) == 0)
		uuid = BLE_UUID_CONFIRMATION;
	else
		uuid = BLE_UUID_RESULT;
	return sd_bus_message_append(reply, "s", uuid);
}

static int prop_chrc_service(sd_bus *bus, const char *path, const char *iface, const char *prop,
			     sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	(void)bus, (void)path, (void)iface, (void)prop, (void)userdata, (void)err;
	return sd_bus_message_append(reply, "o", SERVICE_PATH);
}

static int prop_chrc_flags(sd_bus *bus, const char *path, const char *iface, const char *prop,
			   sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	const struct ble_channel *b = userdata;

	(void)bus, (void)iface, (void)prop, (void)err;
	if (strcmp(path, CHR_OBSERVER_ID_PATH) == 0)
		return sd_bus_message_append(reply, "as", 1, "read");
	if (strcmp(path, CHR_CONFIRMATION_PATH) == 0)
		return sd_bus_message_append(reply, "as", 1,
					     b->require_encryption ? "encrypt-write" : "write");
	return sd_bus_message_append(reply, "as", 2, "read", "notify");
}

static int prop_chrc_value(sd_bus *bus, const char *path, const char *iface, const char *prop,
			   sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	const struct ble_channel *b = userdata;

	(void)bus, (void)iface, (void)prop, (void)err;
	if (strcmp(path, CHR_OBSERVER_ID_PATH) == 0)
		return sd_bus_message_append_array(reply, 'y', b->observer_id,
						   sizeof(b->observer_id));
	return sd_bus_message_append_array(reply, 'y', &b->result, 1);
}

static int prop_result_notifying(sd_bus *bus, const char *path, const char *iface,
				 const char *prop, sd_bus_message *reply, void *userdata,
				 sd_bus_error *err)
{
	const struct ble_channel *b = userdata;

	(void)bus, (void)path, (void)iface, (void)prop, (void)err;
	return sd_bus_message_append(reply, "b", (int)b->notifying);
}

/* ---- GATT methods ----------------------------------------------------- */

/* ReadValue of a readable value: honours the offset option. */
static int reply_read(struct ble_channel *b, sd_bus_message *m, const uint8_t *value, size_t len)
{
	struct gatt_options o;
	sd_bus_message *reply = NULL;
	char why[96];
	int r;

	if (!from_bluez(b, m))
		return refuse_stranger(m);
	if (read_options(m, &o, why, sizeof(why)) < 0)
		return sd_bus_reply_method_errorf(m, BLUEZ_ERR_INVALID_ARGS, "ReadValue: %s", why);
	if (o.offset > len)
		return sd_bus_reply_method_errorf(m, BLUEZ_ERR_INVALID_OFFSET,
						  "ReadValue: offset %u is past the %zu-byte value",
						  o.offset, len);
	r = sd_bus_message_new_method_return(m, &reply);
	if (r < 0)
		return r;
	r = sd_bus_message_append_array(reply, 'y', value + o.offset, len - o.offset);
	if (r >= 0)
		r = sd_bus_send(NULL, reply, NULL);
	sd_bus_message_unref(reply);
	return r;
}

static int method_observer_id_read(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct ble_channel *b = userdata;

	(void)err;
	return reply_read(b, m, b->observer_id, sizeof(b->observer_id));
}

static int method_result_read(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct ble_channel *b = userdata;

	(void)err;
	return reply_read(b, m, &b->result, 1);
}

static void set_result(struct ble_channel *b, uint8_t result)
{
	int r;

	b->result = result;
	if (!b->notifying)
		return;
	r = sd_bus_emit_properties_changed(b->bus, CHR_RESULT_PATH, BLUEZ_GATT_CHRC_IFACE, "Value",
					   NULL);
	if (r < 0)
		srup_log(LOG_WARNING, "BLE: cannot notify Result: %s", strerror(-r));
}

static int method_result_notify(sd_bus_message *m, void *userdata, bool on)
{
	struct ble_channel *b = userdata;
	int r;

	if (!from_bluez(b, m))
		return refuse_stranger(m);
	if (b->notifying != on) {
		b->notifying = on;
		r = sd_bus_emit_properties_changed(b->bus, CHR_RESULT_PATH, BLUEZ_GATT_CHRC_IFACE,
						   "Notifying", NULL);
		if (r < 0)
			srup_log(LOG_WARNING, "BLE: cannot signal Notifying: %s", strerror(-r));
		srup_log(LOG_DEBUG, "BLE: Result notifications %s", on ? "on" : "off");
	}
	return sd_bus_reply_method_return(m, "");
}

static int method_result_start_notify(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)err;
	return method_result_notify(m, userdata, true);
}

static int method_result_stop_notify(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	(void)err;
	return method_result_notify(m, userdata, false);
}

static int refuse_frame(struct ble_channel *b, sd_bus_message *m, const char *why)
{
	b->frames_refused++;
	held_drop(b);
	srup_log(LOG_NOTICE, "BLE: malformed confirmation refused (%lu so far): %s",
		 b->frames_refused, why);
	return sd_bus_reply_method_errorf(m, BLUEZ_ERR_INVALID_VALUE_LENGTH, "%s", why);
}

/* A complete frame was written: let the decision logic answer. */
static int decide_frame(struct ble_channel *b, sd_bus_message *m, struct srup_frame *frame)
{
	uint8_t result;
	uint64_t device_id = frame->device_id;

	result = b->base.cb.frame ? b->base.cb.frame(frame, b->base.cb.user)
				  : RADIO_RESULT_NOT_COMPARED;
	srup_frame_wipe(frame);

	if (result != RADIO_RESULT_MATCH && result != RADIO_RESULT_MISMATCH) {
		srup_log(LOG_NOTICE, "BLE: frame for device %016" PRIx64
			 " refused: no observation pending for it", device_id);
		return sd_bus_reply_method_errorf(m, BLUEZ_ERR_FAILED,
						  "no observation pending for device %016" PRIx64,
						  device_id);
	}
	srup_log(LOG_INFO, "BLE: frame for device %016" PRIx64 " compared: 0x%02X", device_id,
		 result);
	set_result(b, result);
	return sd_bus_reply_method_return(m, "");
}

/* One WriteValue chunk (data, len from the message m). */
static int write_chunk(struct ble_channel *b, sd_bus_message *m, const uint8_t *data, size_t len)
{
	struct gatt_options o;
	struct ble_chunk chunk;
	struct srup_frame frame;
	char why[160];

	if (read_options(m, &o, why, sizeof(why)) < 0)
		return sd_bus_reply_method_errorf(m, BLUEZ_ERR_INVALID_ARGS, "WriteValue: %s", why);
	/* An authorization request for a prepared write carries no data to
	 * keep: the chunks come again at execute time. */
	if (o.prepare_authorize)
		return sd_bus_reply_method_return(m, "");

	chunk = (struct ble_chunk){.data = data, .len = len, .offset = o.offset,
				   .has_mtu = o.has_mtu, .mtu = o.mtu, .device = o.device};
	switch (ble_longwrite_chunk(&b->held, &chunk, &frame, why, sizeof(why))) {
	case BLE_LONGWRITE_REFUSED:
		return refuse_frame(b, m, why);
	case BLE_LONGWRITE_COMPLETE:
		return decide_frame(b, m, &frame);
	case BLE_LONGWRITE_HELD:
		break;
	}
	srup_log(LOG_DEBUG, "BLE: holding %zu bytes of a long write", b->held.held_len);
	return sd_bus_reply_method_return(m, "");
}

static int method_confirmation_write(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct ble_channel *b = userdata;
	const void *data = NULL;
	size_t len = 0;
	int r;

	(void)err;
	if (!from_bluez(b, m))
		return refuse_stranger(m);
	r = sd_bus_message_read_array(m, 'y', &data, &len);
	if (r < 0)
		return sd_bus_reply_method_errorf(m, BLUEZ_ERR_INVALID_ARGS,
						  "WriteValue: value is not a byte array");
	r = write_chunk(b, m, data, len);
	/* The chunk is (part of) a confirmation value, and sd-bus frees a
	 * received message without wiping it. Its body is the heap buffer
	 * the message was read into, writable although the API hands it out
	 * as const. */
	if (len)
		explicit_bzero((void *)data, len);
	return r;
}

/* ---- Advertisement ----------------------------------------------------- */

static int prop_adv_type(sd_bus *bus, const char *path, const char *iface, const char *prop,
			 sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	(void)bus, (void)path, (void)iface, (void)prop, (void)userdata, (void)err;
	return sd_bus_message_append(reply, "s", "peripheral");
}

static int prop_adv_uuids(sd_bus *bus, const char *path, const char *iface, const char *prop,
			  sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	(void)bus, (void)path, (void)iface, (void)prop, (void)userdata, (void)err;
	return sd_bus_message_append(reply, "as", 1, BLE_UUID_SERVICE);
}

static int method_adv_release(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct ble_channel *b = userdata;

	(void)err;
	if (!from_bluez(b, m))
		return refuse_stranger(m);
	if (b->adv_registered)
		srup_log(LOG_WARNING, "BLE: BlueZ released the advertisement on %s", b->adapter);
	b->adv_registered = false;
	b->adv_unsure = false;
	/* Still listening: register it again (retried while BlueZ refuses). */
	if (b->base.listening)
		schedule_retry(b);
	return sd_bus_reply_method_return(m, "");
}

/* ---- Vtables ------------------------------------------------------------ */

static const sd_bus_vtable service_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_PROPERTY("UUID", "s", prop_service_uuid, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("Primary", "b", prop_primary, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_VTABLE_END,
};

#define CHRC_COMMON_PROPERTIES                                                                  \
	SD_BUS_PROPERTY("UUID", "s", prop_chrc_uuid, 0, SD_BUS_VTABLE_PROPERTY_CONST),           \
		SD_BUS_PROPERTY("Service", "o", prop_chrc_service, 0,                            \
				SD_BUS_VTABLE_PROPERTY_CONST),                                   \
		SD_BUS_PROPERTY("Flags", "as", prop_chrc_flags, 0, SD_BUS_VTABLE_PROPERTY_CONST)

static const sd_bus_vtable observer_id_vtable[] = {
	SD_BUS_VTABLE_START(0),
	CHRC_COMMON_PROPERTIES,
	SD_BUS_PROPERTY("Value", "ay", prop_chrc_value, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_METHOD("ReadValue", "a{sv}", "ay", method_observer_id_read,
		      SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_VTABLE_END,
};

static const sd_bus_vtable confirmation_vtable[] = {
	SD_BUS_VTABLE_START(0),
	CHRC_COMMON_PROPERTIES,
	SD_BUS_METHOD("WriteValue", "aya{sv}", "", method_confirmation_write,
		      SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_VTABLE_END,
};

static const sd_bus_vtable result_vtable[] = {
	SD_BUS_VTABLE_START(0),
	CHRC_COMMON_PROPERTIES,
	SD_BUS_PROPERTY("Value", "ay", prop_chrc_value, 0, SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_PROPERTY("Notifying", "b", prop_result_notifying, 0,
			SD_BUS_VTABLE_PROPERTY_EMITS_CHANGE),
	SD_BUS_METHOD("ReadValue", "a{sv}", "ay", method_result_read, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD("StartNotify", "", "", method_result_start_notify,
		      SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_METHOD("StopNotify", "", "", method_result_stop_notify, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_VTABLE_END,
};

static const sd_bus_vtable adv_vtable[] = {
	SD_BUS_VTABLE_START(0),
	SD_BUS_PROPERTY("Type", "s", prop_adv_type, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_PROPERTY("ServiceUUIDs", "as", prop_adv_uuids, 0, SD_BUS_VTABLE_PROPERTY_CONST),
	SD_BUS_METHOD("Release", "", "", method_adv_release, SD_BUS_VTABLE_UNPRIVILEGED),
	SD_BUS_VTABLE_END,
};

/* ---- Registration with BlueZ ------------------------------------------- */

static void arm_timer(sd_event_source *timer, uint64_t usec)
{
	if (sd_event_source_set_time_relative(timer, usec) < 0 ||
	    sd_event_source_set_enabled(timer, SD_EVENT_ONESHOT) < 0)
		srup_log(LOG_ERR, "BLE: cannot arm a timer");
}

static bool timer_armed(sd_event_source *timer)
{
	int enabled = SD_EVENT_OFF;

	return sd_event_source_get_enabled(timer, &enabled) >= 0 && enabled != SD_EVENT_OFF;
}

static void schedule_retry(struct ble_channel *b)
{
	if (!timer_armed(b->retry_timer))
		arm_timer(b->retry_timer, REGISTER_RETRY_USEC);
}

static int on_app_registered(sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct ble_channel *b = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(reply);

	(void)err;
	b->app_call = sd_bus_slot_unref(b->app_call);
	if (!e || sd_bus_error_has_name(e, BLUEZ_ERR_ALREADY_EXISTS)) {
		b->app_registered = true;
		srup_log(LOG_INFO, "BLE: GATT application registered on %s (observer ID "
			 "%02x%02x%02x%02x%02x%02x%02x%02x)", b->adapter, b->observer_id[0],
			 b->observer_id[1], b->observer_id[2], b->observer_id[3], b->observer_id[4],
			 b->observer_id[5], b->observer_id[6], b->observer_id[7]);
		return 0;
	}
	srup_log(LOG_ERR, "BLE: RegisterApplication on %s failed: %s: %s", b->adapter, e->name,
		 e->message ? e->message : "");
	schedule_retry(b);
	return 0;
}

/* The call got no answer in time: BlueZ may or may not have done it. */
static bool outcome_unknown(const sd_bus_error *e)
{
	return sd_bus_error_has_name(e, SD_BUS_ERROR_NO_REPLY) ||
	       sd_bus_error_has_name(e, SD_BUS_ERROR_TIMEOUT);
}

static int on_adv_call_done(sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct ble_channel *b = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(reply);
	bool registering = b->adv_call_registers;

	(void)err;
	b->adv_call = sd_bus_slot_unref(b->adv_call);
	if (registering) {
		if (!e || sd_bus_error_has_name(e, BLUEZ_ERR_ALREADY_EXISTS)) {
			b->adv_registered = true;
			b->adv_unsure = false;
			srup_log(LOG_INFO, "BLE: advertising started on %s (service %s)",
				 b->adapter, BLE_UUID_SERVICE);
		} else {
			srup_log(LOG_ERR, "BLE: RegisterAdvertisement on %s failed: %s: %s",
				 b->adapter, e->name, e->message ? e->message : "");
			/* Unanswered, it may be registered all the same: once
			 * nothing is pending it is unregistered to be sure. */
			if (outcome_unknown(e))
				b->adv_unsure = true;
			if (b->adv_unsure && !b->base.listening)
				reconcile(b);
			else
				schedule_retry(b);
			return 0;
		}
	} else {
		if (e && !sd_bus_error_has_name(e, BLUEZ_ERR_DOES_NOT_EXIST))
			srup_log(LOG_WARNING, "BLE: UnregisterAdvertisement on %s failed: %s: %s",
				 b->adapter, e->name, e->message ? e->message : "");
		b->adv_registered = false;
		b->adv_unsure = e && outcome_unknown(e);
		if (b->adv_unsure) {
			schedule_retry(b);
			return 0;
		}
		srup_log(LOG_INFO, "BLE: advertising stopped on %s", b->adapter);
	}
	/* start or stop may have come while the call was in flight. */
	reconcile(b);
	return 0;
}

static int call_agent_manager(struct ble_channel *b, bool registers);

static int on_agent_call_done(sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct ble_channel *b = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(reply);

	(void)err;
	b->agent_call = sd_bus_slot_unref(b->agent_call);
	if (b->agent_call_registers) {
		if (e && !sd_bus_error_has_name(e, BLUEZ_ERR_ALREADY_EXISTS)) {
			srup_log(LOG_ERR, "BLE: RegisterAgent failed: %s: %s", e->name,
				 e->message ? e->message : "");
			schedule_retry(b);
			return 0;
		}
		if (call_agent_manager(b, false) < 0)
			schedule_retry(b);
		return 0;
	}
	/* Registered even if another agent stays the default one. */
	b->agent_registered = true;
	if (e)
		srup_log(LOG_WARNING, "BLE: RequestDefaultAgent failed: %s: %s; pairing may go "
			 "to another agent", e->name, e->message ? e->message : "");
	else
		srup_log(LOG_INFO, "BLE: pairing agent registered (" BLE_AGENT_CAPABILITY
			 ", default)");
	return 0;
}

static int call_agent_manager(struct ble_channel *b, bool registers)
{
	int r;

	b->agent_call_registers = registers;
	if (registers)
		r = sd_bus_call_method_async(b->bus, &b->agent_call, BLUEZ_BUS_NAME, "/org/bluez",
					     BLE_AGENT_MANAGER_IFACE, "RegisterAgent",
					     on_agent_call_done, b, "os", BLE_AGENT_PATH,
					     BLE_AGENT_CAPABILITY);
	else
		r = sd_bus_call_method_async(b->bus, &b->agent_call, BLUEZ_BUS_NAME, "/org/bluez",
					     BLE_AGENT_MANAGER_IFACE, "RequestDefaultAgent",
					     on_agent_call_done, b, "o", BLE_AGENT_PATH);
	if (r < 0)
		srup_log(LOG_ERR, "BLE: cannot call %s: %s",
			 registers ? "RegisterAgent" : "RequestDefaultAgent", strerror(-r));
	return r;
}

/* Brings BlueZ's registrations in line with what is wanted: the
 * application always, the pairing agent with require_encryption, the
 * advertisement while listening. */
static void reconcile(struct ble_channel *b)
{
	int r;

	/* Not ready, or the bus was closed: sd-bus closes an attached bus
	 * when its event loop exits, before the owner destroys the channel. */
	if (!b->ready || !sd_bus_is_open(b->bus))
		return;
	if (!b->app_registered && !b->app_call) {
		r = sd_bus_call_method_async(b->bus, &b->app_call, BLUEZ_BUS_NAME, b->adapter_path,
					     BLUEZ_GATT_MANAGER_IFACE, "RegisterApplication",
					     on_app_registered, b, "oa{sv}", APP_PATH, 0);
		if (r < 0) {
			srup_log(LOG_ERR, "BLE: cannot call RegisterApplication: %s", strerror(-r));
			schedule_retry(b);
		}
	}
	if (b->require_encryption && !b->agent_registered && !b->agent_call &&
	    call_agent_manager(b, true) < 0)
		schedule_retry(b);
	/* While nothing is pending, an advertisement that may be registered
	 * counts as registered. */
	if (b->adv_call ||
	    b->base.listening == (b->adv_registered || (!b->base.listening && b->adv_unsure)))
		return;
	b->adv_call_registers = b->base.listening;
	r = sd_bus_call_method_async(b->bus, &b->adv_call, BLUEZ_BUS_NAME, b->adapter_path,
				     BLUEZ_ADV_MANAGER_IFACE,
				     b->adv_call_registers ? "RegisterAdvertisement"
							   : "UnregisterAdvertisement",
				     on_adv_call_done, b, b->adv_call_registers ? "oa{sv}" : "o",
				     ADV_PATH, 0);
	if (r < 0) {
		srup_log(LOG_ERR, "BLE: cannot call %s: %s",
			 b->adv_call_registers ? "RegisterAdvertisement" : "UnregisterAdvertisement",
			 strerror(-r));
		schedule_retry(b);
	}
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata)
{
	(void)s, (void)usec;
	reconcile(userdata);
	return 0;
}

static int on_grace_expired(sd_event_source *s, uint64_t usec, void *userdata)
{
	struct ble_channel *b = userdata;
	char why[192];

	(void)s, (void)usec;
	if (b->ready || b->unavailable_reported)
		return 0;
	b->unavailable_reported = true;
	snprintf(why, sizeof(why), "BlueZ not back on %s within %u s (%s)", b->adapter,
		 b->grace_seconds, b->lost_why);
	srup_log(LOG_ERR, "BLE: %s: channel unavailable", why);
	if (b->base.cb.unavailable)
		b->base.cb.unavailable(why, b->base.cb.user);
	return 0;
}

static void bluez_lost(struct ble_channel *b, const char *why)
{
	bool was_ready = b->ready;

	b->ready = false;
	b->app_registered = false;
	b->adv_registered = false;
	b->adv_unsure = false;
	b->app_call = sd_bus_slot_unref(b->app_call);
	b->adv_call = sd_bus_slot_unref(b->adv_call);
	b->probe_call = sd_bus_slot_unref(b->probe_call);
	b->agent_call = sd_bus_slot_unref(b->agent_call);
	b->agent_registered = false;
	held_drop(b);
	if (b->notifying) {
		b->notifying = false;
		sd_bus_emit_properties_changed(b->bus, CHR_RESULT_PATH, BLUEZ_GATT_CHRC_IFACE,
					       "Notifying", NULL);
	}
	if (was_ready || !b->lost_why[0])
		snprintf(b->lost_why, sizeof(b->lost_why), "%s", why);
	if (!b->unavailable_reported && !timer_armed(b->grace_timer)) {
		srup_log(LOG_WARNING, "BLE: %s; waiting up to %u s for BlueZ", why,
			 b->grace_seconds);
		arm_timer(b->grace_timer, (uint64_t)b->grace_seconds * 1000000u);
	} else {
		srup_log(LOG_WARNING, "BLE: %s", why);
	}
}

static void adapter_found(struct ble_channel *b)
{
	bool was_reported;

	if (b->ready)
		return;
	was_reported = b->unavailable_reported;
	b->ready = true;
	b->lost_why[0] = '\0';
	b->unavailable_reported = false;
	sd_event_source_set_enabled(b->grace_timer, SD_EVENT_OFF);
	srup_log(LOG_INFO, "BLE: BlueZ adapter %s present (org.bluez is %s)", b->adapter,
		 b->bluez_owner);
	reconcile(b);
	/* Last: the owner may start listening from the callback. */
	if (was_reported && b->base.cb.available)
		b->base.cb.available(b->base.cb.user);
}

static int on_adapter_probed(sd_bus_message *reply, void *userdata, sd_bus_error *err)
{
	struct ble_channel *b = userdata;
	const sd_bus_error *e = sd_bus_message_get_error(reply);
	int r;

	(void)err;
	b->probe_call = sd_bus_slot_unref(b->probe_call);
	if (e) {
		char why[192];

		snprintf(why, sizeof(why), "adapter %s not present (%s)", b->adapter, e->name);
		bluez_lost(b, why);
		return 0;
	}
	/* Powered is informative only: BlueZ keeps registrations of an
	 * adapter that is powered off and uses them when it is powered. */
	r = sd_bus_message_enter_container(reply, 'a', "{sv}");
	while (r > 0 && (r = sd_bus_message_enter_container(reply, 'e', "sv")) > 0) {
		const char *key;
		int powered;

		if (sd_bus_message_read(reply, "s", &key) < 0)
			break;
		if (strcmp(key, "Powered") == 0 && sd_bus_message_read(reply, "v", "b", &powered) >= 0) {
			if (!powered)
				srup_log(LOG_WARNING, "BLE: adapter %s is powered off", b->adapter);
		} else if (sd_bus_message_skip(reply, "v") < 0) {
			break;
		}
		if (sd_bus_message_exit_container(reply) < 0)
			break;
	}
	adapter_found(b);
	return 0;
}

static void probe_adapter(struct ble_channel *b)
{
	int r;

	b->probe_call = sd_bus_slot_unref(b->probe_call);
	r = sd_bus_call_method_async(b->bus, &b->probe_call, BLUEZ_BUS_NAME, b->adapter_path,
				     DBUS_PROPS_IFACE, "GetAll", on_adapter_probed, b, "s",
				     BLUEZ_ADAPTER_IFACE);
	if (r < 0)
		srup_log(LOG_ERR, "BLE: cannot probe adapter %s: %s", b->adapter, strerror(-r));
}

static int on_name_owner_changed(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct ble_channel *b = userdata;
	const char *name, *old_owner, *new_owner;

	(void)err;
	if (sd_bus_message_read(m, "sss", &name, &old_owner, &new_owner) < 0 ||
	    strcmp(name, BLUEZ_BUS_NAME) != 0)
		return 0;
	if (old_owner[0]) {
		b->bluez_owner[0] = '\0';
		bluez_lost(b, "BlueZ left the system bus");
	}
	if (new_owner[0]) {
		snprintf(b->bluez_owner, sizeof(b->bluez_owner), "%s", new_owner);
		srup_log(LOG_INFO, "BLE: BlueZ is on the bus (%s)", new_owner);
		probe_adapter(b);
	}
	return 0;
}

/* Does the interface list (as) name Adapter1? */
static bool names_adapter_iface(sd_bus_message *m)
{
	const char *iface;
	bool found = false;

	if (sd_bus_message_enter_container(m, 'a', "s") <= 0)
		return false;
	while (sd_bus_message_read(m, "s", &iface) > 0)
		if (strcmp(iface, BLUEZ_ADAPTER_IFACE) == 0)
			found = true;
	return found;
}

static int on_interfaces_removed(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct ble_channel *b = userdata;
	const char *path;
	char why[128];

	(void)err;
	if (!from_bluez(b, m) || sd_bus_message_read(m, "o", &path) < 0 ||
	    strcmp(path, b->adapter_path) != 0 || !names_adapter_iface(m))
		return 0;
	snprintf(why, sizeof(why), "adapter %s was removed", b->adapter);
	bluez_lost(b, why);
	return 0;
}

static int on_interfaces_added(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct ble_channel *b = userdata;
	const char *path;
	const char *iface;
	bool adapter = false;
	int r;

	(void)err;
	if (b->ready || !from_bluez(b, m) || sd_bus_message_read(m, "o", &path) < 0 ||
	    strcmp(path, b->adapter_path) != 0)
		return 0;
	r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
	while (r > 0 && (r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
		if (sd_bus_message_read(m, "s", &iface) < 0)
			return 0;
		if (strcmp(iface, BLUEZ_ADAPTER_IFACE) == 0)
			adapter = true;
		if (sd_bus_message_skip(m, "a{sv}") < 0 || sd_bus_message_exit_container(m) < 0)
			return 0;
	}
	if (adapter)
		adapter_found(b);
	return 0;
}

/* ---- Channel operations ------------------------------------------------- */

static enum radio_err ble_start(struct radio_channel *ch)
{
	struct ble_channel *b = ble_of(ch);

	if (!b->ready && b->unavailable_reported) {
		srup_log(LOG_ERR, "BLE: cannot listen: %s", b->lost_why);
		return RADIO_E_UNAVAILABLE;
	}
	if (!ch->listening)
		srup_log(LOG_DEBUG, "BLE: listening");
	ch->listening = true;
	reconcile(b);
	return RADIO_OK;
}

static void ble_stop(struct radio_channel *ch)
{
	struct ble_channel *b = ble_of(ch);

	if (ch->listening)
		srup_log(LOG_DEBUG, "BLE: not listening");
	ch->listening = false;
	/* A long write still incomplete is part of a writer's secret and no
	 * observation is left for it: it must not wait for a later one. */
	held_drop(b);
	reconcile(b);
}

static void ble_destroy(struct radio_channel *ch)
{
	struct ble_channel *b = ble_of(ch);

	if (!b)
		return;
	if (b->bus && b->ready && sd_bus_is_open(b->bus) > 0) {
		/* Courtesy only: BlueZ also drops both when this connection
		 * closes. */
		if (b->adv_registered || b->adv_unsure)
			sd_bus_call_method_async(b->bus, NULL, BLUEZ_BUS_NAME, b->adapter_path,
						 BLUEZ_ADV_MANAGER_IFACE, "UnregisterAdvertisement",
						 NULL, NULL, "o", ADV_PATH);
		if (b->app_registered)
			sd_bus_call_method_async(b->bus, NULL, BLUEZ_BUS_NAME, b->adapter_path,
						 BLUEZ_GATT_MANAGER_IFACE, "UnregisterApplication",
						 NULL, NULL, "o", APP_PATH);
		if (b->agent_registered)
			sd_bus_call_method_async(b->bus, NULL, BLUEZ_BUS_NAME, "/org/bluez",
						 BLE_AGENT_MANAGER_IFACE, "UnregisterAgent", NULL,
						 NULL, "o", BLE_AGENT_PATH);
		sd_bus_flush(b->bus);
	}
	sd_bus_slot_unref(b->app_call);
	sd_bus_slot_unref(b->adv_call);
	sd_bus_slot_unref(b->probe_call);
	sd_bus_slot_unref(b->agent_call);
	ble_agent_unexport(&b->agent);
	sd_bus_slot_unref(b->match_owner);
	sd_bus_slot_unref(b->match_added);
	sd_bus_slot_unref(b->match_removed);
	sd_bus_slot_unref(b->vt_adv);
	sd_bus_slot_unref(b->vt_result);
	sd_bus_slot_unref(b->vt_confirmation);
	sd_bus_slot_unref(b->vt_observer_id);
	sd_bus_slot_unref(b->vt_service);
	sd_bus_slot_unref(b->obj_manager);
	sd_event_source_disable_unref(b->grace_timer);
	sd_event_source_disable_unref(b->retry_timer);
	if (b->bus) {
		sd_bus_detach_event(b->bus);
		sd_bus_flush_close_unref(b->bus);
	}
	held_drop(b);
	free(b);
}

static const struct radio_channel_ops ble_ops = {
	.name = "ble",
	.start = ble_start,
	.stop = ble_stop,
	.destroy = ble_destroy,
};

/* ---- Set-up --------------------------------------------------------------- */

static bool adapter_name_ok(const char *name)
{
	size_t n = strnlen(name, 32);

	if (n == 0 || n >= 32)
		return false;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return false;
	}
	return true;
}

static const char *channel_bluez_owner(void *user)
{
	return ((const struct ble_channel *)user)->bluez_owner;
}

static int export_objects(struct ble_channel *b)
{
	int r;

	r = sd_bus_add_object_manager(b->bus, &b->obj_manager, APP_PATH);
	if (r >= 0)
		r = sd_bus_add_object_vtable(b->bus, &b->vt_service, SERVICE_PATH,
					     BLUEZ_GATT_SERVICE_IFACE, service_vtable, b);
	if (r >= 0)
		r = sd_bus_add_object_vtable(b->bus, &b->vt_observer_id, CHR_OBSERVER_ID_PATH,
					     BLUEZ_GATT_CHRC_IFACE, observer_id_vtable, b);
	if (r >= 0)
		r = sd_bus_add_object_vtable(b->bus, &b->vt_confirmation, CHR_CONFIRMATION_PATH,
					     BLUEZ_GATT_CHRC_IFACE, confirmation_vtable, b);
	if (r >= 0)
		r = sd_bus_add_object_vtable(b->bus, &b->vt_result, CHR_RESULT_PATH,
					     BLUEZ_GATT_CHRC_IFACE, result_vtable, b);
	if (r >= 0)
		r = sd_bus_add_object_vtable(b->bus, &b->vt_adv, ADV_PATH, BLUEZ_ADV_IFACE,
					     adv_vtable, b);
	if (r >= 0 && b->require_encryption)
		r = ble_agent_export(b->bus, &b->agent);
	return r;
}

static int watch_bluez(struct ble_channel *b)
{
	int r;

	r = sd_bus_add_match(b->bus, &b->match_owner,
			     "type='signal',sender='org.freedesktop.DBus',"
			     "path='/org/freedesktop/DBus',interface='org.freedesktop.DBus',"
			     "member='NameOwnerChanged',arg0='" BLUEZ_BUS_NAME "'",
			     on_name_owner_changed, b);
	if (r >= 0)
		r = sd_bus_add_match(b->bus, &b->match_removed,
				     "type='signal',sender='" BLUEZ_BUS_NAME "',"
				     "interface='" DBUS_OM_IFACE "',member='InterfacesRemoved'",
				     on_interfaces_removed, b);
	if (r >= 0)
		r = sd_bus_add_match(b->bus, &b->match_added,
				     "type='signal',sender='" BLUEZ_BUS_NAME "',"
				     "interface='" DBUS_OM_IFACE "',member='InterfacesAdded'",
				     on_interfaces_added, b);
	return r;
}

/* Who owns org.bluez now ("" if nobody). */
static int query_bluez_owner(struct ble_channel *b)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	const char *owner;
	int r;

	r = sd_bus_call_method(b->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
			       "org.freedesktop.DBus", "GetNameOwner", &e, &reply, "s",
			       BLUEZ_BUS_NAME);
	b->bluez_owner[0] = '\0';
	if (r >= 0 && sd_bus_message_read(reply, "s", &owner) > 0)
		snprintf(b->bluez_owner, sizeof(b->bluez_owner), "%s", owner);
	else if (r < 0 && !sd_bus_error_has_name(&e, "org.freedesktop.DBus.Error.NameHasNoOwner"))
		srup_log(LOG_WARNING, "BLE: GetNameOwner(org.bluez) failed: %s",
			 e.message ? e.message : strerror(-r));
	sd_bus_error_free(&e);
	sd_bus_message_unref(reply);
	return 0;
}

enum radio_err radio_ble_channel_new(sd_event *loop, const struct radio_ble_config *cfg,
				     const struct radio_channel_callbacks *cb,
				     struct radio_channel **out)
{
	struct ble_channel *b;
	const char *adapter;
	int r;

	if (!loop || !cfg || !cb || !cb->frame || !out)
		return RADIO_E_ARG;
	*out = NULL;
	adapter = cfg->adapter[0] ? cfg->adapter : "hci0";
	if (!adapter_name_ok(adapter)) {
		srup_log(LOG_ERR, "BLE: adapter name \"%.32s\" is not a BlueZ adapter name "
			 "(letters, digits, _)", cfg->adapter);
		return RADIO_E_ARG;
	}

	b = calloc(1, sizeof(*b));
	if (!b)
		return RADIO_E_NOMEM;
	b->base.ops = &ble_ops;
	b->base.cb = *cb;
	b->base.loop = loop;
	snprintf(b->adapter, sizeof(b->adapter), "%s", adapter);
	snprintf(b->adapter_path, sizeof(b->adapter_path), "/org/bluez/%s", adapter);
	b->require_encryption = cfg->require_encryption;
	for (size_t i = 0; i < BLE_OBSERVER_ID_LEN; i++)
		b->observer_id[i] = (uint8_t)(cfg->observer_id >> (56 - 8 * i));
	b->grace_seconds = cfg->bluez_grace_seconds ? cfg->bluez_grace_seconds
						    : DEFAULT_GRACE_SECONDS;
	b->result = RADIO_RESULT_NOT_COMPARED;
	b->agent.bluez_owner = channel_bluez_owner;
	b->agent.user = b;

	r = sd_bus_open_system(&b->bus);
	if (r < 0) {
		srup_log(LOG_ERR, "BLE: cannot connect to the system bus: %s", strerror(-r));
		b->bus = NULL;
		ble_destroy(&b->base);
		return RADIO_E_IO;
	}
	r = export_objects(b);
	if (r < 0) {
		srup_log(LOG_ERR, "BLE: cannot export the GATT application: %s", strerror(-r));
		goto fail;
	}
	r = watch_bluez(b);
	if (r < 0) {
		srup_log(LOG_ERR, "BLE: cannot watch BlueZ on the bus: %s", strerror(-r));
		goto fail;
	}
	/* Both timers are created disarmed and armed when needed. */
	r = sd_event_add_time_relative(loop, &b->grace_timer, CLOCK_MONOTONIC, 1000000, 0,
				       on_grace_expired, b);
	if (r >= 0)
		r = sd_event_source_set_enabled(b->grace_timer, SD_EVENT_OFF);
	if (r >= 0)
		r = sd_event_add_time_relative(loop, &b->retry_timer, CLOCK_MONOTONIC, 1000000, 0,
					       on_retry, b);
	if (r >= 0)
		r = sd_event_source_set_enabled(b->retry_timer, SD_EVENT_OFF);
	if (r < 0) {
		srup_log(LOG_ERR, "BLE: cannot create timers: %s", strerror(-r));
		goto fail;
	}
	r = sd_bus_attach_event(b->bus, loop, SD_EVENT_PRIORITY_NORMAL);
	if (r < 0) {
		srup_log(LOG_ERR, "BLE: cannot attach the bus to the event loop: %s", strerror(-r));
		goto fail;
	}

	query_bluez_owner(b);
	if (b->bluez_owner[0])
		probe_adapter(b);
	else
		bluez_lost(b, "BlueZ (org.bluez) is not on the system bus");
	srup_log(LOG_INFO, "BLE: channel on %s%s", b->adapter,
		 b->require_encryption ? ", Confirmation requires encryption" : "");
	*out = &b->base;
	return RADIO_OK;
fail:
	ble_destroy(&b->base);
	return RADIO_E_IO;
}

/* ---- Registry entry ------------------------------------------------------ */

#define BUS_CALL_TIMEOUT_USEC (5u * 1000u * 1000u)

/* The directories the system bus takes service files from (D-Bus
 * specification, "Message Bus Starting Services", system bus). */
static const char *const system_service_dirs[] = {
	"/usr/local/share/dbus-1/system-services",
	"/usr/share/dbus-1/system-services",
	"/lib/dbus-1/system-services",
};

static bool bluez_service_file_installed(void)
{
	char path[128];

	for (size_t i = 0; i < sizeof(system_service_dirs) / sizeof(system_service_dirs[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s.service", system_service_dirs[i],
			 BLUEZ_BUS_NAME);
		if (access(path, F_OK) == 0)
			return true;
	}
	return false;
}

/* Whether BlueZ can answer on the system bus: org.bluez has an owner
 * now, or the bus can start it (its D-Bus service file, which the bluez
 * package installs). This is what the channel needs, whether BlueZ is
 * running yet or not; a bluetoothd binary on disk proves neither (it may
 * be there with no bus to reach it). With no bus to ask (a chroot, an
 * early boot), the service file on disk answers whether BlueZ is
 * installed. */
static int ble_machine_problem(const struct radio_channel_configs *cfg, char *why, size_t len,
			       const char **key)
{
	sd_bus_error error = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	sd_bus *bus = NULL;
	const char *name;
	int owned = 0, r, problem = 0;

	(void)cfg;
	*key = NULL;
	r = sd_bus_open_system(&bus);
	if (r >= 0)
		r = sd_bus_set_method_call_timeout(bus, BUS_CALL_TIMEOUT_USEC);
	if (r >= 0)
		r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
				       "org.freedesktop.DBus", "NameHasOwner", &error, &reply, "s",
				       BLUEZ_BUS_NAME);
	if (r >= 0)
		r = sd_bus_message_read(reply, "b", &owned);
	if (r < 0)
		goto no_bus;
	if (owned)
		goto out;
	sd_bus_message_unref(reply);
	reply = NULL;
	r = sd_bus_call_method(bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
			       "org.freedesktop.DBus", "ListActivatableNames", &error, &reply, "");
	if (r >= 0)
		r = sd_bus_message_enter_container(reply, 'a', "s");
	if (r < 0)
		goto no_bus;
	while ((r = sd_bus_message_read(reply, "s", &name)) > 0)
		if (strcmp(name, BLUEZ_BUS_NAME) == 0)
			goto out;
	if (r < 0)
		goto no_bus;
	snprintf(why, len, "BlueZ (%s) is neither on the system bus nor activatable there; "
			   "install bluez", BLUEZ_BUS_NAME);
	problem = 1;
	goto out;
no_bus:
	if (bluez_service_file_installed())
		goto out;
	snprintf(why, len, "BlueZ is not installed (no %s.service in the system bus's "
			   "service directories), and the system bus cannot be asked (%s); "
			   "install bluez", BLUEZ_BUS_NAME,
		 sd_bus_error_is_set(&error) ? error.message : strerror(-r));
	problem = 1;
out:
	sd_bus_error_free(&error);
	sd_bus_message_unref(reply);
	sd_bus_flush_close_unref(bus);
	return problem;
}

static void ble_defaults(struct radio_channel_configs *cfg)
{
	snprintf(cfg->ble.adapter, sizeof(cfg->ble.adapter), "%s", "hci0");
	cfg->ble.require_encryption = false;
	cfg->ble.bluez_grace_seconds = DEFAULT_GRACE_SECONDS;
}

static bool ble_configured(const struct radio_channel_configs *cfg)
{
	(void)cfg; /* every key has a default */
	return true;
}

static enum radio_err ble_open(sd_event *loop, const struct radio_channel_configs *cfg,
			       const struct radio_channel_callbacks *cb, struct radio_channel **out)
{
	return radio_ble_channel_new(loop, &cfg->ble, cb, out);
}

static enum radio_err ble_present(const struct radio_channel_configs *cfg,
				  uint64_t expected_observer, const struct srup_frame *f,
				  unsigned timeout_ms, uint8_t *result, char *detail,
				  size_t detail_len)
{
	return radio_ble_present(&cfg->ble, expected_observer, f, timeout_ms, result, detail,
				 detail_len);
}

static const struct radio_config_key ble_keys[] = {
	{"adapter", RADIO_CONFIG_TEXT, RADIO_CONFIG_FIELD(ble.adapter), 0, 0, "an adapter name"},
	{"require_encryption", RADIO_CONFIG_BOOL, RADIO_CONFIG_FIELD(ble.require_encryption), 0, 0,
	 NULL},
	{.name = NULL},
};

const struct radio_channel_driver radio_ble_driver = {
	.name = "ble",
	.keys = ble_keys,
	.defaults = ble_defaults,
	.configured = ble_configured,
	.machine_problem = ble_machine_problem,
	.open = ble_open,
	.present = ble_present,
	.present_learns_result = true,
};
