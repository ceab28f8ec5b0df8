/* The BLE observation channel, device side (OBSERVATION-CHANNEL.md
 * section 3): a central on BlueZ's D-Bus API that finds the observer
 * advertising the SRUP Observation service, checks its Observer ID, writes
 * the confirmation frame with an acknowledged write, reads Result and
 * disconnects.
 *
 * Blocking, on a private sd-bus connection to the system bus; every step
 * gets the time left of the overall timeout (some also a cap of their own)
 * and fails with a message naming the step.
 *
 * Emulated controllers report an advertisement once, when scanning starts,
 * and give no useful RSSI: discovery is restarted every few seconds until
 * the observer shows up, and nothing depends on RSSI.
 *
 * Calls to BlueZ are made asynchronously and the connection is served
 * while they are in flight: with [ble] require_encryption the write makes
 * BlueZ pair, and BlueZ asks this process's pairing agent (ble_agent.h)
 * before it answers the write. */
#include "radio.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-bus.h>

#include "ble_agent.h"
#include "ble_bluez.h"
#include "srup_detail.h"
#include "srup_log.h"

#define OBJ_PATH_MAX 192u
#define MAX_CHRCS 32u
#define DISCOVERY_RESTART_USEC (2500 * 1000ull)
#define STEP_CAP_USEC (10 * 1000000ull)     /* one D-Bus call to BlueZ */
#define CONNECT_CAP_USEC (30 * 1000000ull)
/* A connection whose services have not resolved by then is dropped and
 * tried again (seen once with btvirt: resolution stalled after connect). */
#define SERVICES_CAP_USEC (5 * 1000000ull)
#define CLEANUP_USEC (5 * 1000000ull)       /* StopDiscovery/Disconnect at the end */

struct chrc_seen {
	char path[OBJ_PATH_MAX];
	char service[OBJ_PATH_MAX];
	char uuid[40];
};

struct central {
	sd_bus *bus;
	const char *adapter;
	char adapter_path[BLE_ADAPTER_PATH_MAX];
	uint64_t deadline;          /* CLOCK_MONOTONIC, usec */
	char *detail;
	size_t detail_len;

	bool discovering;
	bool found;                 /* device_path names a candidate */
	char device_path[OBJ_PATH_MAX];
	char device_address[32];

	/* The connected device's state, from PropertiesChanged. */
	bool connected;
	bool services_resolved;
	bool lost;                  /* it disconnected */

	char service_path[OBJ_PATH_MAX];
	struct chrc_seen chrcs[MAX_CHRCS];
	size_t n_chrcs;
	char chr_observer_id[OBJ_PATH_MAX];
	char chr_confirmation[OBJ_PATH_MAX];
	char chr_result[OBJ_PATH_MAX];

	sd_bus_slot *match_added;
	sd_bus_slot *match_props;

	char bluez_owner[256];
	struct ble_agent agent;     /* with require_encryption only */
	bool agent_registered;
};

static uint64_t now_usec(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t time_left(const struct central *c)
{
	uint64_t now = now_usec();

	return now >= c->deadline ? 0 : c->deadline - now;
}

/* The timeout for one call: what is left, at most cap, never 0 (which
 * sd-bus would read as its default). */
static uint64_t step_timeout(const struct central *c, uint64_t cap)
{
	uint64_t left = time_left(c);

	if (left > cap)
		left = cap;
	return left ? left : 1;
}

__attribute__((format(printf, 3, 4))) static enum radio_err fail(struct central *c,
								 enum radio_err err,
								 const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset_detail(c->detail, c->detail_len, fmt, ap);
	va_end(ap);
	if (c->detail && c->detail_len)
		srup_log(LOG_DEBUG, "BLE present: %s", c->detail);
	return err;
}

/* The radio error for a failed call: its own timeout is a timeout. */
static enum radio_err call_error(int r, enum radio_err otherwise)
{
	return r == -ETIMEDOUT ? RADIO_E_TIMEOUT : otherwise;
}

static const char *error_text(const sd_bus_error *e, int r)
{
	if (e && e->message)
		return e->message;
	return strerror(r < 0 ? -r : r);
}

static const char *error_name(const sd_bus_error *e)
{
	return e && e->name ? e->name : "error";
}

static bool under(const char *path, const char *parent)
{
	size_t n = strlen(parent);

	return strncmp(path, parent, n) == 0 && path[n] == '/';
}

/* ---- Reading BlueZ's property dictionaries ------------------------------ */

/* Device1 properties that matter here. */
struct device_props {
	bool has_service;       /* UUIDs lists the SRUP Observation service */
	bool uuids_seen;
	char address[32];
	int connected;          /* -1 absent, else 0/1 */
	int services_resolved;  /* -1 absent, else 0/1 */
};

static int read_uuid_list(sd_bus_message *m, struct device_props *p)
{
	const char *uuid;
	int r;

	r = sd_bus_message_enter_container(m, 'v', "as");
	if (r <= 0)
		return r < 0 ? r : -EBADMSG;
	r = sd_bus_message_enter_container(m, 'a', "s");
	if (r <= 0)
		return r < 0 ? r : -EBADMSG;
	p->uuids_seen = true;
	while ((r = sd_bus_message_read(m, "s", &uuid)) > 0)
		if (strcasecmp(uuid, BLE_UUID_SERVICE) == 0)
			p->has_service = true;
	if (r < 0)
		return r;
	r = sd_bus_message_exit_container(m);
	if (r >= 0)
		r = sd_bus_message_exit_container(m);
	return r;
}

/* Reads an a{sv} of Device1 properties; wrong types are skipped. */
static int read_device_props(sd_bus_message *m, struct device_props *p)
{
	int r;

	memset(p, 0, sizeof(*p));
	p->connected = -1;
	p->services_resolved = -1;
	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r <= 0)
		return r < 0 ? r : -EBADMSG;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *key;
		const char *contents;
		char type;

		r = sd_bus_message_read(m, "s", &key);
		if (r < 0)
			return r;
		r = sd_bus_message_peek_type(m, &type, &contents);
		if (r <= 0)
			return r < 0 ? r : -EBADMSG;
		if (strcmp(key, "UUIDs") == 0 && strcmp(contents, "as") == 0) {
			r = read_uuid_list(m, p);
		} else if (strcmp(key, "Address") == 0 && strcmp(contents, "s") == 0) {
			const char *a;

			r = sd_bus_message_read(m, "v", "s", &a);
			if (r >= 0)
				snprintf(p->address, sizeof(p->address), "%s", a);
		} else if (strcmp(key, "Connected") == 0 && strcmp(contents, "b") == 0) {
			r = sd_bus_message_read(m, "v", "b", &p->connected);
		} else if (strcmp(key, "ServicesResolved") == 0 && strcmp(contents, "b") == 0) {
			r = sd_bus_message_read(m, "v", "b", &p->services_resolved);
		} else {
			r = sd_bus_message_skip(m, "v");
		}
		if (r < 0)
			return r;
		r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}

/* A Device1 under our adapter that advertises the service. */
static void consider_device(struct central *c, const char *path, const struct device_props *p)
{
	if (c->found || !c->discovering || !p->has_service || !under(path, c->adapter_path))
		return;
	if (strlen(path) >= sizeof(c->device_path))
		return;
	snprintf(c->device_path, sizeof(c->device_path), "%s", path);
	snprintf(c->device_address, sizeof(c->device_address), "%s",
		 p->address[0] ? p->address : path);
	c->found = true;
	srup_log(LOG_DEBUG, "BLE present: observer candidate %s", c->device_address);
}

/* Folds a Device1 property change into the connected device's state. */
static void update_connection(struct central *c, const struct device_props *p)
{
	if (p->connected == 1)
		c->connected = true;
	if (p->connected == 0 && c->connected) {
		c->connected = false;
		c->lost = true;
	}
	if (p->services_resolved >= 0)
		c->services_resolved = p->services_resolved == 1;
}

static int on_interfaces_added(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct central *c = userdata;
	const char *path;
	const char *iface;
	int r;

	(void)err;
	if (sd_bus_message_read(m, "o", &path) < 0 || !under(path, c->adapter_path))
		return 0;
	r = sd_bus_message_enter_container(m, 'a', "{sa{sv}}");
	while (r > 0 && (r = sd_bus_message_enter_container(m, 'e', "sa{sv}")) > 0) {
		if (sd_bus_message_read(m, "s", &iface) < 0)
			return 0;
		if (strcmp(iface, BLUEZ_DEVICE_IFACE) == 0) {
			struct device_props p;

			if (read_device_props(m, &p) < 0)
				return 0;
			consider_device(c, path, &p);
		} else if (sd_bus_message_skip(m, "a{sv}") < 0) {
			return 0;
		}
		if (sd_bus_message_exit_container(m) < 0)
			return 0;
	}
	return 0;
}

static int on_properties_changed(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct central *c = userdata;
	const char *path = sd_bus_message_get_path(m);
	const char *iface;
	struct device_props p;

	(void)err;
	if (!path || sd_bus_message_read(m, "s", &iface) < 0 ||
	    strcmp(iface, BLUEZ_DEVICE_IFACE) != 0 || read_device_props(m, &p) < 0)
		return 0;
	if (c->device_path[0] && strcmp(path, c->device_path) == 0)
		update_connection(c, &p);
	consider_device(c, path, &p);
	return 0;
}

/* Processes bus traffic until done(c) or the time `until`. */
static int wait_until(struct central *c, bool (*done)(const struct central *c), uint64_t until)
{
	int r;

	while (!done(c)) {
		/* Checked on every pass: a stream of signals must not hold a
		 * step past its deadline. */
		uint64_t now = now_usec();

		if (now >= until)
			return 0;
		r = sd_bus_process(c->bus, NULL);
		if (r < 0)
			return r;
		if (r > 0)
			continue;
		r = sd_bus_wait(c->bus, until - now);
		if (r < 0 && r != -EINTR)
			return r;
	}
	return 1;
}

struct call_state {
	bool done;
	sd_bus_message *reply;
};

static int on_call_reply(sd_bus_message *m, void *userdata, sd_bus_error *err)
{
	struct call_state *st = userdata;

	(void)err;
	st->reply = sd_bus_message_ref(m);
	st->done = true;
	return 0;
}

/* sd_bus_call, but serving the connection (the agent, signals) while
 * waiting. Returns 0 or a negative errno with e set; *reply (may be NULL)
 * gets the reply. The deadline is kept here: sd-bus's own reply timeout
 * was seen not to wake sd_bus_wait. */
static int call_serving(struct central *c, sd_bus_message *m, uint64_t timeout,
			sd_bus_error *e, sd_bus_message **reply)
{
	struct call_state st = {0};
	sd_bus_slot *slot = NULL;
	uint64_t until = now_usec() + timeout;
	int r;

	r = sd_bus_call_async(c->bus, &slot, m, on_call_reply, &st, timeout);
	if (r < 0)
		return sd_bus_error_set_errno(e, r);
	while (!st.done) {
		uint64_t now = now_usec(); /* on every pass, as in wait_until */

		if (now >= until) {
			r = -ETIMEDOUT;
			break;
		}
		r = sd_bus_process(c->bus, NULL);
		if (r < 0)
			break;
		if (r > 0)
			continue;
		r = sd_bus_wait(c->bus, until - now);
		if (r < 0 && r != -EINTR)
			break;
	}
	/* Dropping the slot forgets a reply still to come. */
	sd_bus_slot_unref(slot);
	if (!st.done)
		return sd_bus_error_set_errno(e, r);
	if (sd_bus_message_is_method_error(st.reply, NULL)) {
		r = sd_bus_message_get_errno(st.reply);
		sd_bus_error_copy(e, sd_bus_message_get_error(st.reply));
		sd_bus_message_unref(st.reply);
		return r > 0 ? -r : -EIO;
	}
	if (reply)
		*reply = st.reply;
	else
		sd_bus_message_unref(st.reply);
	return 0;
}

static int new_call(struct central *c, sd_bus_message **m, const char *path, const char *iface,
		    const char *member)
{
	return sd_bus_message_new_method_call(c->bus, m, BLUEZ_BUS_NAME, path, iface, member);
}

/* ---- GetManagedObjects ------------------------------------------------- */

typedef int (*object_iface_fn)(struct central *c, const char *path, const char *iface,
			       sd_bus_message *props);

/* Calls fn for every (object, interface) BlueZ reports; fn must consume
 * the a{sv}. */
static int walk_managed_objects(struct central *c, object_iface_fn fn, sd_bus_error *e)
{
	sd_bus_message *reply = NULL;
	const char *path;
	const char *iface;
	int r;

	sd_bus_message *m = NULL;

	r = new_call(c, &m, "/", DBUS_OM_IFACE, "GetManagedObjects");
	if (r >= 0)
		r = call_serving(c, m, step_timeout(c, STEP_CAP_USEC), e, &reply);
	sd_bus_message_unref(m);
	if (r < 0)
		return r;
	r = sd_bus_message_enter_container(reply, 'a', "{oa{sa{sv}}}");
	while (r > 0 && (r = sd_bus_message_enter_container(reply, 'e', "oa{sa{sv}}")) > 0) {
		r = sd_bus_message_read(reply, "o", &path);
		if (r >= 0)
			r = sd_bus_message_enter_container(reply, 'a', "{sa{sv}}");
		while (r > 0 && (r = sd_bus_message_enter_container(reply, 'e', "sa{sv}")) > 0) {
			r = sd_bus_message_read(reply, "s", &iface);
			if (r >= 0)
				r = fn(c, path, iface, reply);
			if (r >= 0)
				r = sd_bus_message_exit_container(reply);
		}
		if (r >= 0)
			r = sd_bus_message_exit_container(reply);
		if (r >= 0)
			r = sd_bus_message_exit_container(reply);
	}
	sd_bus_message_unref(reply);
	if (r < 0)
		sd_bus_error_set_errno(e, r);
	return r;
}

static int collect_device(struct central *c, const char *path, const char *iface,
			  sd_bus_message *props)
{
	struct device_props p;
	int r;

	if (strcmp(iface, BLUEZ_DEVICE_IFACE) != 0)
		return sd_bus_message_skip(props, "a{sv}");
	r = read_device_props(props, &p);
	if (r >= 0)
		consider_device(c, path, &p);
	return r;
}

/* Reads UUID (and Service for characteristics) from a GATT object. */
static int read_gatt_props(sd_bus_message *m, char *uuid, size_t uuid_len, char *service,
			   size_t service_len)
{
	int r;

	uuid[0] = '\0';
	if (service)
		service[0] = '\0';
	r = sd_bus_message_enter_container(m, 'a', "{sv}");
	if (r <= 0)
		return r < 0 ? r : -EBADMSG;
	while ((r = sd_bus_message_enter_container(m, 'e', "sv")) > 0) {
		const char *key, *contents, *s;
		char type;

		r = sd_bus_message_read(m, "s", &key);
		if (r >= 0)
			r = sd_bus_message_peek_type(m, &type, &contents);
		if (r < 0)
			return r;
		if (strcmp(key, "UUID") == 0 && strcmp(contents, "s") == 0) {
			r = sd_bus_message_read(m, "v", "s", &s);
			if (r >= 0)
				snprintf(uuid, uuid_len, "%s", s);
		} else if (service && strcmp(key, "Service") == 0 && strcmp(contents, "o") == 0) {
			r = sd_bus_message_read(m, "v", "o", &s);
			if (r >= 0 && strlen(s) < service_len)
				snprintf(service, service_len, "%s", s);
		} else {
			r = sd_bus_message_skip(m, "v");
		}
		if (r >= 0)
			r = sd_bus_message_exit_container(m);
		if (r < 0)
			return r;
	}
	if (r < 0)
		return r;
	return sd_bus_message_exit_container(m);
}

static int collect_gatt(struct central *c, const char *path, const char *iface,
			sd_bus_message *props)
{
	char uuid[40];
	int r;

	if (!under(path, c->device_path) || strlen(path) >= OBJ_PATH_MAX)
		return sd_bus_message_skip(props, "a{sv}");
	if (strcmp(iface, BLUEZ_GATT_SERVICE_IFACE) == 0) {
		r = read_gatt_props(props, uuid, sizeof(uuid), NULL, 0);
		if (r >= 0 && strcasecmp(uuid, BLE_UUID_SERVICE) == 0)
			snprintf(c->service_path, sizeof(c->service_path), "%s", path);
		return r;
	}
	if (strcmp(iface, BLUEZ_GATT_CHRC_IFACE) == 0 && c->n_chrcs < MAX_CHRCS) {
		struct chrc_seen *ch = &c->chrcs[c->n_chrcs];

		r = read_gatt_props(props, ch->uuid, sizeof(ch->uuid), ch->service,
				    sizeof(ch->service));
		if (r >= 0) {
			snprintf(ch->path, sizeof(ch->path), "%s", path);
			c->n_chrcs++;
		}
		return r;
	}
	return sd_bus_message_skip(props, "a{sv}");
}

/* ---- Pairing agent ([ble] require_encryption) -------------------------- */

static const char *central_bluez_owner(void *user)
{
	return ((const struct central *)user)->bluez_owner;
}

static void query_bluez_owner(struct central *c)
{
	sd_bus_message *reply = NULL;
	const char *owner;

	if (sd_bus_call_method(c->bus, "org.freedesktop.DBus", "/org/freedesktop/DBus",
			       "org.freedesktop.DBus", "GetNameOwner", NULL, &reply, "s",
			       BLUEZ_BUS_NAME) >= 0 &&
	    sd_bus_message_read(reply, "s", &owner) > 0)
		snprintf(c->bluez_owner, sizeof(c->bluez_owner), "%s", owner);
	sd_bus_message_unref(reply);
}

static int agent_manager_call(struct central *c, const char *member, const char *capability,
			      uint64_t timeout, sd_bus_error *e)
{
	sd_bus_message *m = NULL;
	int r;

	r = new_call(c, &m, "/org/bluez", BLE_AGENT_MANAGER_IFACE, member);
	if (r >= 0)
		r = sd_bus_message_append(m, "o", BLE_AGENT_PATH);
	if (r >= 0 && capability)
		r = sd_bus_message_append(m, "s", capability);
	if (r >= 0)
		r = call_serving(c, m, timeout, e, NULL);
	sd_bus_message_unref(m);
	return r;
}

/* Pairing for an encrypt-write Confirmation asks an agent on this side
 * too. Failing here is not fatal: the write then fails, saying why. */
static void register_agent(struct central *c)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r;

	c->agent.bluez_owner = central_bluez_owner;
	c->agent.user = c;
	r = ble_agent_export(c->bus, &c->agent);
	if (r >= 0) {
		r = agent_manager_call(c, "RegisterAgent", BLE_AGENT_CAPABILITY,
				       step_timeout(c, STEP_CAP_USEC), &e);
		if (r < 0 && sd_bus_error_has_name(&e, BLUEZ_ERR_ALREADY_EXISTS))
			r = 0;
	}
	if (r >= 0) {
		c->agent_registered = true;
		sd_bus_error_free(&e);
		r = agent_manager_call(c, "RequestDefaultAgent", NULL,
				       step_timeout(c, STEP_CAP_USEC), &e);
	}
	if (r < 0)
		srup_log(LOG_NOTICE, "BLE present: pairing agent not set up: %s",
			 error_text(&e, r));
	sd_bus_error_free(&e);
}

static void unregister_agent(struct central *c)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;

	if (c->agent_registered)
		agent_manager_call(c, "UnregisterAgent", NULL, CLEANUP_USEC, &e);
	c->agent_registered = false;
	ble_agent_unexport(&c->agent);
	sd_bus_error_free(&e);
}

/* ---- Steps -------------------------------------------------------------- */

static enum radio_err check_adapter(struct central *c)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *reply = NULL;
	int powered = 0;
	int r;

	sd_bus_message *m = NULL;

	r = new_call(c, &m, c->adapter_path, DBUS_PROPS_IFACE, "Get");
	if (r >= 0)
		r = sd_bus_message_append(m, "ss", BLUEZ_ADAPTER_IFACE, "Powered");
	if (r >= 0)
		r = call_serving(c, m, step_timeout(c, STEP_CAP_USEC), &e, &reply);
	if (r >= 0)
		r = sd_bus_message_read(reply, "v", "b", &powered);
	sd_bus_message_unref(m);
	sd_bus_message_unref(reply);
	if (r < 0) {
		enum radio_err err = fail(c, call_error(r, RADIO_E_UNAVAILABLE),
					  "adapter check: %s not usable through BlueZ (%s: %s)",
					  c->adapter, error_name(&e), error_text(&e, r));
		sd_bus_error_free(&e);
		return err;
	}
	if (!powered)
		return fail(c, RADIO_E_UNAVAILABLE, "adapter check: %s is powered off", c->adapter);
	return RADIO_OK;
}

static int call_adapter(struct central *c, const char *method, sd_bus_error *e)
{
	sd_bus_message *m = NULL;
	int r;

	r = sd_bus_message_new_method_call(c->bus, &m, BLUEZ_BUS_NAME, c->adapter_path,
					   BLUEZ_ADAPTER_IFACE, method);
	if (r >= 0)
		r = call_serving(c, m, step_timeout(c, STEP_CAP_USEC), e, NULL);
	sd_bus_message_unref(m);
	return r;
}

static enum radio_err set_discovery_filter(struct central *c)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL;
	enum radio_err err = RADIO_OK;
	int r;

	r = sd_bus_message_new_method_call(c->bus, &m, BLUEZ_BUS_NAME, c->adapter_path,
					   BLUEZ_ADAPTER_IFACE, "SetDiscoveryFilter");
	if (r >= 0)
		r = sd_bus_message_append(m, "a{sv}", 2, "UUIDs", "as", 1, BLE_UUID_SERVICE,
					  "Transport", "s", "le");
	if (r >= 0)
		r = call_serving(c, m, step_timeout(c, STEP_CAP_USEC), &e, NULL);
	if (r < 0)
		err = fail(c, call_error(r, RADIO_E_IO), "discovery filter: %s refused it (%s: %s)",
			   c->adapter, error_name(&e), error_text(&e, r));
	sd_bus_message_unref(m);
	sd_bus_error_free(&e);
	return err;
}

static void stop_discovery(struct central *c)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	uint64_t saved = c->deadline;

	if (!c->discovering)
		return;
	/* Cleanup gets a little time even when the overall timeout is spent. */
	if (time_left(c) < CLEANUP_USEC)
		c->deadline = now_usec() + CLEANUP_USEC;
	if (call_adapter(c, "StopDiscovery", &e) < 0)
		srup_log(LOG_DEBUG, "BLE present: StopDiscovery: %s", error_text(&e, 0));
	c->deadline = saved;
	c->discovering = false;
	sd_bus_error_free(&e);
}

static bool candidate_found(const struct central *c)
{
	return c->found;
}

/* Discovery until a device advertising the service is known, restarting
 * the scan every DISCOVERY_RESTART_USEC. */
static enum radio_err discover(struct central *c)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	bool start_failed_logged = false;
	int r;

	c->found = false;
	while (!c->found) {
		uint64_t restart_at;

		if (time_left(c) == 0)
			break;
		stop_discovery(c);
		r = call_adapter(c, "StartDiscovery", &e);
		if (r < 0) {
			if (!start_failed_logged)
				srup_log(LOG_DEBUG, "BLE present: StartDiscovery: %s: %s",
					 error_name(&e), error_text(&e, r));
			start_failed_logged = true;
			if (!sd_bus_error_has_name(&e, "org.bluez.Error.InProgress")) {
				enum radio_err err =
					fail(c, call_error(r, RADIO_E_IO),
					     "discovery: %s cannot start scanning (%s: %s)",
					     c->adapter, error_name(&e), error_text(&e, r));

				sd_bus_error_free(&e);
				return err;
			}
		}
		sd_bus_error_free(&e);
		c->discovering = true;
		/* Devices BlueZ already knows, e.g. from an earlier scan. */
		r = walk_managed_objects(c, collect_device, &e);
		sd_bus_error_free(&e);
		if (r < 0)
			srup_log(LOG_DEBUG, "BLE present: GetManagedObjects failed: %s",
				 strerror(-r));
		restart_at = now_usec() + DISCOVERY_RESTART_USEC;
		if (restart_at > c->deadline)
			restart_at = c->deadline;
		r = wait_until(c, candidate_found, restart_at);
		if (r < 0)
			return fail(c, RADIO_E_IO, "discovery: D-Bus connection failed: %s",
				    strerror(-r));
	}
	stop_discovery(c);
	if (!c->found)
		return fail(c, RADIO_E_TIMEOUT,
			    "discovery: no observer advertising the SRUP Observation service "
			    "found on %s in time", c->adapter);
	return RADIO_OK;
}

static bool connection_settled(const struct central *c)
{
	return c->services_resolved || c->lost;
}

static enum radio_err connect_device(struct central *c)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL, *reply = NULL;
	int resolved = 0;
	int r;

	/* Signals queued from an earlier attempt (its disconnection) must not
	 * count against this one. */
	while (sd_bus_process(c->bus, NULL) > 0)
		;
	c->connected = false;
	c->services_resolved = false;
	c->lost = false;
	r = sd_bus_message_new_method_call(c->bus, &m, BLUEZ_BUS_NAME, c->device_path,
					   BLUEZ_DEVICE_IFACE, "Connect");
	if (r >= 0)
		r = call_serving(c, m, step_timeout(c, CONNECT_CAP_USEC), &e, NULL);
	m = sd_bus_message_unref(m);
	if (r < 0 && !sd_bus_error_has_name(&e, "org.bluez.Error.AlreadyConnected")) {
		enum radio_err err = fail(c, call_error(r, RADIO_E_IO), "connect: %s: %s: %s",
					  c->device_address, error_name(&e), error_text(&e, r));

		sd_bus_error_free(&e);
		return err;
	}
	sd_bus_error_free(&e);
	c->connected = true;

	/* ServicesResolved may already be true (the signal came before the
	 * reply, or the device was connected). */
	r = new_call(c, &m, c->device_path, DBUS_PROPS_IFACE, "Get");
	if (r >= 0)
		r = sd_bus_message_append(m, "ss", BLUEZ_DEVICE_IFACE, "ServicesResolved");
	if (r >= 0)
		r = call_serving(c, m, step_timeout(c, STEP_CAP_USEC), &e, &reply);
	if (r >= 0 && sd_bus_message_read(reply, "v", "b", &resolved) >= 0 && resolved)
		c->services_resolved = true;
	m = sd_bus_message_unref(m);
	reply = sd_bus_message_unref(reply);
	sd_bus_error_free(&e);
	r = wait_until(c, connection_settled, now_usec() + step_timeout(c, SERVICES_CAP_USEC));
	if (r < 0)
		return fail(c, RADIO_E_IO, "services: D-Bus connection failed: %s", strerror(-r));
	if (c->lost)
		return fail(c, RADIO_E_IO, "services: %s disconnected before its services resolved",
			    c->device_address);
	if (!c->services_resolved)
		return fail(c, RADIO_E_TIMEOUT, "services: %s did not resolve its services in time",
			    c->device_address);
	return RADIO_OK;
}

static enum radio_err find_characteristics(struct central *c)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	int r;

	c->service_path[0] = '\0';
	c->n_chrcs = 0;
	r = walk_managed_objects(c, collect_gatt, &e);
	if (r < 0) {
		enum radio_err err = fail(c, call_error(r, RADIO_E_IO),
					  "characteristics: GetManagedObjects failed (%s: %s)",
					  error_name(&e), error_text(&e, r));
		sd_bus_error_free(&e);
		return err;
	}
	if (!c->service_path[0])
		return fail(c, RADIO_E_PROTOCOL,
			    "characteristics: %s has no SRUP Observation service",
			    c->device_address);
	for (size_t i = 0; i < c->n_chrcs; i++) {
		const struct chrc_seen *ch = &c->chrcs[i];
		char *slot = NULL;

		if (strcmp(ch->service, c->service_path) != 0)
			continue;
		if (strcasecmp(ch->uuid, BLE_UUID_OBSERVER_ID) == 0)
			slot = c->chr_observer_id;
		else if (strcasecmp(ch->uuid, BLE_UUID_CONFIRMATION) == 0)
			slot = c->chr_confirmation;
		else if (strcasecmp(ch->uuid, BLE_UUID_RESULT) == 0)
			slot = c->chr_result;
		if (slot)
			snprintf(slot, OBJ_PATH_MAX, "%s", ch->path);
	}
	if (!c->chr_observer_id[0] || !c->chr_confirmation[0] || !c->chr_result[0])
		return fail(c, RADIO_E_PROTOCOL,
			    "characteristics: %s lacks the %s characteristic", c->device_address,
			    !c->chr_observer_id[0]    ? "Observer ID"
			    : !c->chr_confirmation[0] ? "Confirmation"
						      : "Result");
	return RADIO_OK;
}

/* ReadValue on a remote characteristic into buf (at most cap bytes). */
static enum radio_err read_value(struct central *c, const char *step, const char *path,
				 uint8_t *buf, size_t cap, size_t *len)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL, *reply = NULL;
	const void *data = NULL;
	size_t n = 0;
	enum radio_err err = RADIO_OK;
	int r;

	r = sd_bus_message_new_method_call(c->bus, &m, BLUEZ_BUS_NAME, path, BLUEZ_GATT_CHRC_IFACE,
					   "ReadValue");
	if (r >= 0)
		r = sd_bus_message_append(m, "a{sv}", 0);
	if (r >= 0)
		r = call_serving(c, m, step_timeout(c, STEP_CAP_USEC), &e, &reply);
	if (r < 0) {
		err = fail(c, call_error(r, RADIO_E_IO), "%s: read failed (%s: %s)", step,
			   error_name(&e), error_text(&e, r));
		goto out;
	}
	r = sd_bus_message_read_array(reply, 'y', &data, &n);
	if (r < 0 || n > cap) {
		err = fail(c, RADIO_E_PROTOCOL, "%s: value of %zu bytes where at most %zu were expected",
			   step, n, cap);
		goto out;
	}
	if (n)
		memcpy(buf, data, n);
	*len = n;
out:
	sd_bus_message_unref(m);
	sd_bus_message_unref(reply);
	sd_bus_error_free(&e);
	return err;
}

static enum radio_err check_observer(struct central *c, uint64_t expected)
{
	uint8_t id[BLE_OBSERVER_ID_LEN];
	size_t n = 0;
	uint64_t got = 0;
	enum radio_err err;

	err = read_value(c, "Observer ID", c->chr_observer_id, id, sizeof(id), &n);
	if (err != RADIO_OK)
		return err;
	if (n != BLE_OBSERVER_ID_LEN)
		return fail(c, RADIO_E_PROTOCOL, "Observer ID: %zu bytes, not 8", n);
	for (size_t i = 0; i < n; i++)
		got = got << 8 | id[i];
	if (got != expected)
		return fail(c, RADIO_E_WRONG_OBSERVER,
			    "Observer ID: %s is observer %016" PRIx64 ", not the expected %016" PRIx64,
			    c->device_address, got, expected);
	return RADIO_OK;
}

static enum radio_err write_frame(struct central *c, const uint8_t *frame, size_t len)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL;
	enum radio_err err = RADIO_OK;
	int r;

	r = sd_bus_message_new_method_call(c->bus, &m, BLUEZ_BUS_NAME, c->chr_confirmation,
					   BLUEZ_GATT_CHRC_IFACE, "WriteValue");
	if (r >= 0)
		r = sd_bus_message_append_array(m, 'y', frame, len);
	if (r >= 0)
		r = sd_bus_message_append(m, "a{sv}", 1, "type", "s", "request");
	if (r >= 0)
		r = call_serving(c, m, step_timeout(c, STEP_CAP_USEC), &e, NULL);
	if (r == -ETIMEDOUT)
		err = fail(c, RADIO_E_TIMEOUT, "write Confirmation: no answer in time");
	else if (r < 0 && e.name)
		/* An error reply carries the observer's ATT error: it refused. */
		err = fail(c, RADIO_E_REFUSED,
			   "write Confirmation: the observer refused the frame (%s: %s)",
			   error_name(&e), error_text(&e, r));
	else if (r < 0)
		err = fail(c, RADIO_E_IO, "write Confirmation: %s", strerror(-r));
	sd_bus_message_unref(m);
	sd_bus_error_free(&e);
	return err;
}

static void disconnect_device(struct central *c)
{
	sd_bus_error e = SD_BUS_ERROR_NULL;
	sd_bus_message *m = NULL;
	int r;

	if (!c->connected)
		return;
	r = sd_bus_message_new_method_call(c->bus, &m, BLUEZ_BUS_NAME, c->device_path,
					   BLUEZ_DEVICE_IFACE, "Disconnect");
	if (r >= 0)
		r = call_serving(c, m, CLEANUP_USEC, &e, NULL);
	if (r < 0)
		srup_log(LOG_DEBUG, "BLE present: Disconnect %s: %s", c->device_address,
			 error_text(&e, r));
	c->connected = false;
	sd_bus_message_unref(m);
	sd_bus_error_free(&e);
}

static enum radio_err present_on_bus(struct central *c, uint64_t expected_observer,
				     const uint8_t *frame, size_t frame_len, uint8_t *result)
{
	enum radio_err err;
	uint8_t value = 0;
	size_t n = 0;
	int r;

	err = check_adapter(c);
	if (err != RADIO_OK)
		return err;
	r = sd_bus_add_match(c->bus, &c->match_added,
			     "type='signal',sender='" BLUEZ_BUS_NAME "',interface='" DBUS_OM_IFACE
			     "',member='InterfacesAdded'",
			     on_interfaces_added, c);
	if (r >= 0)
		r = sd_bus_add_match(c->bus, &c->match_props,
				     "type='signal',sender='" BLUEZ_BUS_NAME
				     "',interface='" DBUS_PROPS_IFACE
				     "',member='PropertiesChanged',arg0='" BLUEZ_DEVICE_IFACE "'",
				     on_properties_changed, c);
	if (r < 0)
		return fail(c, RADIO_E_IO, "watch: cannot subscribe to BlueZ signals: %s",
			    strerror(-r));
	err = set_discovery_filter(c);
	if (err != RADIO_OK)
		return err;

	/* A device that stopped advertising can stay in BlueZ's cache:
	 * connecting to it fails, and discovery is tried again. */
	for (;;) {
		err = discover(c);
		if (err != RADIO_OK)
			return err;
		srup_log(LOG_INFO, "BLE present: connecting to observer %s", c->device_address);
		err = connect_device(c);
		if (err == RADIO_OK)
			break;
		disconnect_device(c);
		if (time_left(c) == 0)
			return err;
		srup_log(LOG_NOTICE, "BLE present: %s; scanning again", c->detail ? c->detail : "");
	}

	err = find_characteristics(c);
	if (err == RADIO_OK)
		err = check_observer(c, expected_observer);
	if (err == RADIO_OK) {
		srup_log(LOG_INFO, "BLE present: writing the confirmation frame to observer %s",
			 c->device_address);
		err = write_frame(c, frame, frame_len);
	}
	if (err == RADIO_OK) {
		err = read_value(c, "Result", c->chr_result, &value, 1, &n);
		if (err == RADIO_OK && n != 1)
			err = fail(c, RADIO_E_PROTOCOL, "Result: %zu bytes, not 1", n);
		if (err == RADIO_OK && result)
			*result = value;
		if (err == RADIO_OK)
			fail(c, RADIO_OK, "observer %s answered 0x%02X", c->device_address, value);
	}
	disconnect_device(c);
	return err;
}

enum radio_err radio_ble_present(const struct radio_ble_config *cfg, uint64_t expected_observer,
				 const struct srup_frame *f, unsigned timeout_ms,
				 uint8_t *result, char *detail, size_t detail_len)
{
	struct central c;
	uint8_t frame[SRUP_FRAME_MAX_LEN];
	size_t frame_len = 0;
	enum radio_err err;
	int r;

	if (result)
		*result = RADIO_RESULT_NOT_COMPARED;
	if (detail && detail_len)
		detail[0] = '\0';
	memset(&c, 0, sizeof(c));
	c.detail = detail;
	c.detail_len = detail_len;
	if (!cfg || !f || timeout_ms == 0)
		return fail(&c, RADIO_E_ARG, "arguments: configuration, frame and timeout needed");
	c.adapter = cfg->adapter[0] ? cfg->adapter : "hci0";
	if (strnlen(c.adapter, sizeof(cfg->adapter)) >= sizeof(cfg->adapter) ||
	    strchr(c.adapter, '/'))
		return fail(&c, RADIO_E_ARG, "arguments: adapter name is not a BlueZ adapter name");
	snprintf(c.adapter_path, sizeof(c.adapter_path), "/org/bluez/%s", c.adapter);
	c.deadline = now_usec() + (uint64_t)timeout_ms * 1000u;

	err = srup_frame_encode(f, frame, sizeof(frame), &frame_len);
	if (err != RADIO_OK)
		return fail(&c, err, "frame: %s", radio_strerror(err));

	r = sd_bus_open_system(&c.bus);
	if (r < 0) {
		explicit_bzero(frame, sizeof(frame));
		return fail(&c, RADIO_E_IO, "system bus: cannot connect: %s", strerror(-r));
	}
	query_bluez_owner(&c);
	if (cfg->require_encryption)
		register_agent(&c);
	err = present_on_bus(&c, expected_observer, frame, frame_len, result);
	stop_discovery(&c);
	unregister_agent(&c);
	explicit_bzero(frame, sizeof(frame));
	sd_bus_slot_unref(c.match_added);
	sd_bus_slot_unref(c.match_props);
	sd_bus_flush_close_unref(c.bus);
	return err;
}
