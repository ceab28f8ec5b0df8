/* libsrup-device: srup_device.h on the SRUP node (srup_node.h) and the
 * device role (srup_role.h). The device owns or borrows its loop, its
 * configuration and its keys; node and role are made once a loop is
 * known (srup_device_start, or at once for srup_device_new_borrowed). */
#include "srup_device.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srup_detail.h"
#include "srup_device_private.h"
#include "srup_flow.h"
#include "srup_log.h"

#ifndef SRUP_DEVICE_VERSION_TEXT
#define SRUP_DEVICE_VERSION_TEXT "unknown"
#endif

/* srup_device_process: sd_event_run rounds per call, so that one busy
 * source cannot keep the caller's own loop from running. */
#define PROCESS_ROUNDS_MAX 64

enum reg_kind { REG_CONNECTION, REG_DEREGISTERED, REG_CALLBACKS };

struct registration {
	struct registration *next;
	unsigned id;
	enum reg_kind kind;
	srup_device_connection_fn connection;
	srup_device_deregistered_fn deregistered;
	void *user;
	void (*destroy)(void *user);
};

struct srup_device {
	char program[32];
	sd_event *loop;
	bool own_loop;
	struct srup_config *cfg;
	struct srup_config *own_cfg;
	struct srup_identity *id;
	struct srup_identity own_id;
	bool has_own_id;
	struct srup_node *node;
	struct srup_role *role;
	bool started;
	bool deregistered;
	bool process_more; /* the last srup_device_process hit its bound */
	struct registration *regs;
	unsigned next_id;
	/* The application's table (REG_CALLBACKS registration). */
	struct srup_device_callbacks cb;
	unsigned cb_id;
	/* The device-initiated flow running (one at a time), and what its
	 * caller gave for it. */
	struct srup_flow *flow;
	bool flow_handlers;     /* the flow's message types registered on the node */
	srup_device_done_fn flow_done;
	srup_device_show_fn flow_show;
	void *flow_user;
	void (*flow_destroy)(void *user);
};

static const char *const err_text[SRUP_DEVICE_E__COUNT] = {
	[SRUP_DEVICE_OK] = "success",
	[SRUP_DEVICE_E_NOMEM] = "out of memory",
	[SRUP_DEVICE_E_ARG] = "invalid argument",
	[SRUP_DEVICE_E_CONFIG] = "the configuration is unusable",
	[SRUP_DEVICE_E_KEY] = "a key file cannot be used",
	[SRUP_DEVICE_E_STATE] = "the state directory cannot be used",
	[SRUP_DEVICE_E_MQTT] = "the MQTT client refused or failed",
	[SRUP_DEVICE_E_LOOP] = "the event loop failed",
	[SRUP_DEVICE_E_BUSY] = "a flow of that kind is already running",
	[SRUP_DEVICE_E_STATE_ORDER] = "called in the wrong state",
	[SRUP_DEVICE_E_DEREGISTERED] = "the server deregistered this device",
	[SRUP_DEVICE_E_TERMINATED] = "the server terminated this device",
	[SRUP_DEVICE_E_RADIO] = "the observation channel failed",
	[SRUP_DEVICE_E_TIMEOUT] = "timed out",
	[SRUP_DEVICE_E_PROTOCOL] = "encoding, signing or decrypting failed",
};

const char *srup_device_strerror(enum srup_device_err err)
{
	if ((unsigned)err >= SRUP_DEVICE_E__COUNT || !err_text[err])
		return "unknown error";
	return err_text[err];
}

const char *srup_device_version(void)
{
	return SRUP_DEVICE_VERSION_TEXT;
}

/* ---- logging ----------------------------------------------------------------- */

static srup_device_log_fn log_fn;

static void log_forward(int priority, const char *line, void *user)
{
	if (log_fn)
		log_fn(priority, line, user);
}

void srup_device_set_log_handler(srup_device_log_fn fn, void *user, int max_priority)
{
	log_fn = fn;
	srup_log_set_handler(fn ? log_forward : NULL, user);
	srup_log_set_level(max_priority < LOG_EMERG ? LOG_INFO : max_priority);
}

/* ---- registrations ------------------------------------------------------------- */

static unsigned reg_add(struct srup_device *dev, struct registration *proto)
{
	struct registration *reg = malloc(sizeof(*reg)), **tail;

	if (!reg)
		return 0;
	*reg = *proto;
	reg->next = NULL;
	if (++dev->next_id == 0)
		dev->next_id = 1;
	reg->id = dev->next_id;
	for (tail = &dev->regs; *tail; tail = &(*tail)->next)
		;
	*tail = reg;
	return reg->id;
}

static void reg_end(struct srup_device *dev, struct registration *reg)
{
	for (struct registration **pp = &dev->regs; *pp; pp = &(*pp)->next)
		if (*pp == reg) {
			*pp = reg->next;
			break;
		}
	if (reg->kind == REG_CALLBACKS) {
		memset(&dev->cb, 0, sizeof(dev->cb));
		dev->cb_id = 0;
		if (dev->role)
			srup_role_set_callbacks(dev->role, dev, NULL, NULL);
	}
	if (reg->destroy)
		reg->destroy(reg->user);
	free(reg);
}

void srup_device_unregister(struct srup_device *dev, unsigned id)
{
	if (!dev || id == 0)
		return;
	for (struct registration *reg = dev->regs; reg; reg = reg->next)
		if (reg->id == id) {
			reg_end(dev, reg);
			return;
		}
}

unsigned srup_device_on_connection(struct srup_device *dev, srup_device_connection_fn fn,
				   void *user, void (*destroy)(void *user))
{
	struct registration proto = {.kind = REG_CONNECTION, .connection = fn, .user = user,
				     .destroy = destroy};

	return dev && fn ? reg_add(dev, &proto) : 0;
}

unsigned srup_device_on_deregistered(struct srup_device *dev, srup_device_deregistered_fn fn,
				     void *user, void (*destroy)(void *user))
{
	struct registration proto = {.kind = REG_DEREGISTERED, .deregistered = fn, .user = user,
				     .destroy = destroy};

	return dev && fn ? reg_add(dev, &proto) : 0;
}

static struct registration *callbacks_reg(struct srup_device *dev)
{
	for (struct registration *reg = dev->regs; reg; reg = reg->next)
		if (reg->kind == REG_CALLBACKS)
			return reg;
	return NULL;
}

unsigned srup_device_set_callbacks(struct srup_device *dev, const struct srup_device_callbacks *cb,
				   void *user, void (*destroy)(void *user))
{
	struct registration proto = {.kind = REG_CALLBACKS, .user = user, .destroy = destroy};
	struct registration *old;
	size_t n;

	if (!dev || !cb || cb->size < sizeof(cb->size))
		return 0;
	old = callbacks_reg(dev);
	if (old)
		reg_end(dev, old);
	n = cb->size < sizeof(dev->cb) ? cb->size : sizeof(dev->cb);
	memset(&dev->cb, 0, sizeof(dev->cb));
	memcpy(&dev->cb, cb, n);
	dev->cb.size = sizeof(dev->cb);
	dev->cb_id = reg_add(dev, &proto);
	if (!dev->cb_id) {
		memset(&dev->cb, 0, sizeof(dev->cb));
		return 0;
	}
	if (dev->role)
		srup_role_set_callbacks(dev->role, dev, &dev->cb, user);
	return dev->cb_id;
}

/* Registrations run in order; one may end registrations (its own too). */
static void call_connection(struct srup_device *dev, bool connected, const char *broker)
{
	unsigned last = dev->next_id;

	for (unsigned id = 1; id <= last; id++)
		for (struct registration *reg = dev->regs; reg; reg = reg->next)
			if (reg->id == id && reg->kind == REG_CONNECTION) {
				reg->connection(dev, connected, broker, reg->user);
				break;
			}
}

/* ---- node and role ------------------------------------------------------------- */

static void on_node_connected(struct srup_node *node, void *user)
{
	struct srup_device *dev = user;

	call_connection(dev, true, srup_node_broker(node));
	srup_role_connected(dev->role);
	if (dev->flow)
		srup_flow_connected(dev->flow);
}

static void on_node_disconnected(struct srup_node *node, void *user)
{
	struct srup_device *dev = user;

	(void)node;
	call_connection(dev, false, NULL);
}

static void on_role_deregistered(void *user)
{
	struct srup_device *dev = user;
	unsigned last = dev->next_id;

	dev->deregistered = true;
	for (unsigned id = 1; id <= last; id++)
		for (struct registration *reg = dev->regs; reg; reg = reg->next)
			if (reg->id == id && reg->kind == REG_DEREGISTERED) {
				reg->deregistered(dev, reg->user);
				break;
			}
}

static enum srup_device_err build(struct srup_device *dev, char *detail, size_t detail_len)
{
	const struct srup_role_params rp = {
		.program = dev->program,
		.cfg = dev->cfg,
		.peers = dev->id->peers,
		.deregistered = on_role_deregistered,
		.user = dev,
	};
	struct srup_node_config ncfg;
	char why[512] = "";
	enum srup_node_err nerr;

	srup_node_config_from(dev->cfg, SRUP_NODE_ROLE_DEVICE, &ncfg);
	nerr = srup_node_new(dev->loop, &ncfg, dev->id->private_key, dev->id->peers, &dev->node,
			     why, sizeof(why));
	if (nerr != SRUP_NODE_OK) {
		set_detail(detail, detail_len, "%s: %s", srup_node_strerror(nerr), why);
		return nerr == SRUP_NODE_E_NOMEM ? SRUP_DEVICE_E_NOMEM
		       : nerr == SRUP_NODE_E_ARG ? SRUP_DEVICE_E_CONFIG
		       : nerr == SRUP_NODE_E_STATE ? SRUP_DEVICE_E_STATE
						   : SRUP_DEVICE_E_MQTT;
	}
	if (srup_role_new(dev->loop, dev->node, &rp, &dev->role, why, sizeof(why)) != 0) {
		set_detail(detail, detail_len, "device role: %s", why);
		return SRUP_DEVICE_E_STATE;
	}
	if (dev->cb_id)
		srup_role_set_callbacks(dev->role, dev, &dev->cb, callbacks_reg(dev)->user);
	return SRUP_DEVICE_OK;
}

/* ---- making a device ------------------------------------------------------------- */

static struct srup_device *device_alloc(const char *program)
{
	struct srup_device *dev = calloc(1, sizeof(*dev));

	if (dev)
		snprintf(dev->program, sizeof(dev->program), "%s", program);
	return dev;
}

enum srup_device_err srup_device_new_borrowed(const struct srup_device_borrowed *p,
					      struct srup_device **out, char *detail,
					      size_t detail_len)
{
	struct srup_device *dev;
	enum srup_device_err err;

	if (!out)
		return SRUP_DEVICE_E_ARG;
	*out = NULL;
	if (!p || !p->program || !p->loop || !p->cfg || !p->id) {
		set_detail(detail, detail_len, "srup_device_new_borrowed: missing argument");
		return SRUP_DEVICE_E_ARG;
	}
	dev = device_alloc(p->program);
	if (!dev) {
		set_detail(detail, detail_len, "out of memory");
		return SRUP_DEVICE_E_NOMEM;
	}
	dev->loop = sd_event_ref(p->loop);
	dev->cfg = p->cfg;
	dev->id = p->id;
	err = build(dev, detail, detail_len);
	if (err != SRUP_DEVICE_OK) {
		srup_device_free(dev);
		return err;
	}
	*out = dev;
	return SRUP_DEVICE_OK;
}

/* cfg (owned from now on) checked and its keys loaded into a new device. */
static enum srup_device_err device_from_config(struct srup_config *cfg, struct srup_device **out,
					       char *detail, size_t detail_len)
{
	struct srup_device *dev = device_alloc("libsrup-device");

	if (!dev) {
		free(cfg);
		set_detail(detail, detail_len, "out of memory");
		return SRUP_DEVICE_E_NOMEM;
	}
	dev->own_cfg = dev->cfg = cfg;
	if (srup_role_deregistered(cfg, detail, detail_len)) {
		srup_device_free(dev);
		return SRUP_DEVICE_E_DEREGISTERED;
	}
	if (srup_identity_load(cfg, &dev->own_id, detail, detail_len) != 0) {
		srup_device_free(dev);
		return SRUP_DEVICE_E_KEY;
	}
	dev->has_own_id = true;
	dev->id = &dev->own_id;
	*out = dev;
	return SRUP_DEVICE_OK;
}

enum srup_device_err srup_device_new_from_file(const char *path, struct srup_device **out,
					       char *detail, size_t detail_len)
{
	struct srup_config *cfg;

	if (!out)
		return SRUP_DEVICE_E_ARG;
	*out = NULL;
	if (!path || !path[0]) {
		set_detail(detail, detail_len, "srup_device_new_from_file: no path");
		return SRUP_DEVICE_E_ARG;
	}
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		set_detail(detail, detail_len, "out of memory");
		return SRUP_DEVICE_E_NOMEM;
	}
	if (srup_config_load(path, SRUP_CONFIG_DEVICE, cfg, detail, detail_len) != 0) {
		free(cfg);
		return SRUP_DEVICE_E_CONFIG;
	}
	return device_from_config(cfg, out, detail, detail_len);
}

/* One value of the settings, skipped when not set. */
static void value_add(struct srup_config_value *v, size_t *n, const char *section,
		      const char *key, const char *value)
{
	if (value && value[0])
		v[(*n)++] = (struct srup_config_value){section, key, value};
}

enum srup_device_err srup_device_new(const struct srup_device_settings *settings,
				     struct srup_device **out, char *detail, size_t detail_len)
{
	struct srup_device_settings st = {0};
	struct srup_config_value v[24];
	char id[17], server[17], max_bytes[24], timeout[16], groups_max[16];
	struct srup_config *cfg;
	size_t n = 0;

	if (!out)
		return SRUP_DEVICE_E_ARG;
	*out = NULL;
	if (!settings || settings->size < sizeof(settings->size)) {
		set_detail(detail, detail_len, "srup_device_new: no settings, or their size is not set");
		return SRUP_DEVICE_E_ARG;
	}
	memcpy(&st, settings, settings->size < sizeof(st) ? settings->size : sizeof(st));
	snprintf(id, sizeof(id), "%" PRIx64, st.id);
	snprintf(server, sizeof(server), "%" PRIx64, st.server_id);
	snprintf(max_bytes, sizeof(max_bytes), "%" PRIu64, st.update_max_bytes);
	snprintf(timeout, sizeof(timeout), "%u", st.update_timeout_seconds);
	snprintf(groups_max, sizeof(groups_max), "%u", st.groups_max);
	/* 0 is "not set" for every number, as an absent key is. */
	value_add(v, &n, "identity", "id", st.id ? id : NULL);
	value_add(v, &n, "identity", "private_key", st.private_key);
	value_add(v, &n, "server", "id", st.server_id ? server : NULL);
	value_add(v, &n, "server", "public_key", st.server_public_key);
	value_add(v, &n, "server", "join", st.join_auto ? "auto" : NULL);
	value_add(v, &n, "mqtt", "broker", st.broker);
	value_add(v, &n, "mqtt", "ca_file", st.mqtt_ca_file);
	value_add(v, &n, "mqtt", "cert_file", st.mqtt_cert_file);
	value_add(v, &n, "mqtt", "key_file", st.mqtt_key_file);
	value_add(v, &n, "state", "dir", st.state_dir);
	value_add(v, &n, "identification", "text", st.identification);
	value_add(v, &n, "update", "ca_file", st.update_ca_file);
	value_add(v, &n, "update", "max_bytes", st.update_max_bytes ? max_bytes : NULL);
	value_add(v, &n, "update", "timeout_seconds", st.update_timeout_seconds ? timeout : NULL);
	value_add(v, &n, "groups", "max", st.groups_max ? groups_max : NULL);
	value_add(v, &n, "join", "command", st.join_command_refuse ? "refuse" : NULL);
	value_add(v, &n, "sim", "socket", st.sim_socket);
	value_add(v, &n, "ble", "adapter", st.ble_adapter);
	value_add(v, &n, "nfc", "device", st.nfc_device);
	cfg = calloc(1, sizeof(*cfg));
	if (!cfg) {
		set_detail(detail, detail_len, "out of memory");
		return SRUP_DEVICE_E_NOMEM;
	}
	if (srup_config_load_values("srup_device_settings", SRUP_CONFIG_DEVICE, v, n, cfg, detail,
				    detail_len) != 0) {
		free(cfg);
		return SRUP_DEVICE_E_CONFIG;
	}
	return device_from_config(cfg, out, detail, detail_len);
}

void srup_device_free(struct srup_device *dev)
{
	struct registration *cbreg;

	if (!dev)
		return;
	/* A flow still running completes now ("cancelled"), while everything
	 * its caller may look at in its completion still exists. */
	srup_flow_free(dev->flow);
	/* The table first: an adapter stops what it runs for requests that
	 * the role frees next, unanswered. */
	cbreg = callbacks_reg(dev);
	if (cbreg)
		reg_end(dev, cbreg);
	srup_role_free(dev->role);
	srup_node_free(dev->node);
	while (dev->regs)
		reg_end(dev, dev->regs);
	if (dev->has_own_id)
		srup_identity_free(&dev->own_id);
	if (dev->own_cfg) {
		explicit_bzero(dev->own_cfg, sizeof(*dev->own_cfg));
		free(dev->own_cfg);
	}
	sd_event_unref(dev->loop);
	free(dev);
}

uint64_t srup_device_id(const struct srup_device *dev)
{
	return dev ? dev->cfg->identity_id : 0;
}

uint64_t srup_device_server_id(const struct srup_device *dev)
{
	return dev ? dev->cfg->server_id : 0;
}

/* ---- running it ------------------------------------------------------------------ */

enum srup_device_err srup_device_attach_event(struct srup_device *dev, sd_event *loop)
{
	if (!dev || !loop)
		return SRUP_DEVICE_E_ARG;
	if (dev->loop || dev->started)
		return SRUP_DEVICE_E_STATE_ORDER;
	dev->loop = sd_event_ref(loop);
	return SRUP_DEVICE_OK;
}

enum srup_device_err srup_device_start(struct srup_device *dev)
{
	char detail[768];
	enum srup_device_err err;

	if (!dev)
		return SRUP_DEVICE_E_ARG;
	if (dev->started)
		return SRUP_DEVICE_E_STATE_ORDER;
	if (dev->deregistered)
		return SRUP_DEVICE_E_DEREGISTERED;
	if (!dev->loop) {
		if (sd_event_new(&dev->loop) < 0)
			return SRUP_DEVICE_E_LOOP;
		dev->own_loop = true;
	}
	if (!dev->node) {
		err = build(dev, detail, sizeof(detail));
		if (err != SRUP_DEVICE_OK) {
			srup_log(LOG_ERR, "%s", detail);
			srup_role_free(dev->role);
			dev->role = NULL;
			srup_node_free(dev->node);
			dev->node = NULL;
			return err;
		}
	}
	srup_node_on_disconnected(dev->node, on_node_disconnected, dev);
	if (srup_node_connect(dev->node, on_node_connected, dev) != SRUP_NODE_OK)
		return SRUP_DEVICE_E_MQTT;
	dev->started = true;
	return SRUP_DEVICE_OK;
}

int srup_device_get_fd(struct srup_device *dev)
{
	/* -1 without a loop of its own (not started, or attached). */
	if (!dev || !dev->own_loop)
		return -1;
	return sd_event_get_fd(dev->loop);
}

int srup_device_get_timeout_ms(struct srup_device *dev)
{
	if (!dev || !dev->own_loop)
		return -1;
	return dev->process_more ? 0 : -1;
}

enum srup_device_err srup_device_process(struct srup_device *dev)
{
	int r = 1;

	if (!dev)
		return SRUP_DEVICE_E_ARG;
	if (!dev->own_loop)
		return SRUP_DEVICE_E_STATE_ORDER;
	dev->process_more = false;
	for (unsigned round = 0; round < PROCESS_ROUNDS_MAX && r > 0; round++)
		r = sd_event_run(dev->loop, 0);
	if (r < 0)
		return SRUP_DEVICE_E_LOOP;
	/* Still busy after the bound: the caller polls with no wait. */
	dev->process_more = r > 0;
	return SRUP_DEVICE_OK;
}

bool srup_device_is_connected(const struct srup_device *dev)
{
	return dev && dev->node && srup_node_is_connected(dev->node);
}

enum srup_device_err srup_device_flush(struct srup_device *dev, unsigned timeout_ms)
{
	if (!dev)
		return SRUP_DEVICE_E_ARG;
	if (!dev->node)
		return SRUP_DEVICE_E_STATE_ORDER;
	return srup_node_flush(dev->node, timeout_ms) == SRUP_NODE_OK ? SRUP_DEVICE_OK
								      : SRUP_DEVICE_E_TIMEOUT;
}

enum srup_device_err srup_device_send_data(struct srup_device *dev, const char *data_id,
					   const void *data, size_t len)
{
	if (!dev || !data_id || !data_id[0] || (len && !data))
		return SRUP_DEVICE_E_ARG;
	if (!dev->started)
		return SRUP_DEVICE_E_STATE_ORDER;
	if (dev->deregistered)
		return SRUP_DEVICE_E_DEREGISTERED;
	return srup_role_send_data(dev->role, data_id, data, len) == 0 ? SRUP_DEVICE_OK
								       : SRUP_DEVICE_E_PROTOCOL;
}

/* ---- for the in-tree programs ------------------------------------------------------ */

struct srup_node *srup_device_node(struct srup_device *dev)
{
	return dev ? dev->node : NULL;
}

struct srup_role *srup_device_role(struct srup_device *dev)
{
	return dev ? dev->role : NULL;
}

sd_event *srup_device_event(struct srup_device *dev)
{
	return dev ? dev->loop : NULL;
}

const struct srup_config *srup_device_config(const struct srup_device *dev)
{
	return dev ? dev->cfg : NULL;
}

/* ---- device-initiated flows (srup_flow.h) ------------------------------------------------ */

/* The flow's message types from the server: offered to the running flow
 * first; a RESPONSE it does not take goes to the role when the role hears
 * RESPONSE ([server] join = auto). */
static void on_flow_message(struct srup_node *node, const struct srup_msg *msg, const char *topic,
			    void *user)
{
	struct srup_device *dev = user;
	uint8_t type = srup_msg_get_type(msg);

	(void)node;
	if (srup_flow_offer(dev->flow, msg))
		return;
	if (srup_role_hears(dev->role, type)) {
		srup_role_handle(dev->role, msg, topic);
		return;
	}
	srup_log(LOG_WARNING, "%s from server %016" PRIx64 " on %s ignored: it answers no request "
		 "of ours", srup_type_name(type), dev->cfg->server_id, topic);
}

static void on_flow_show(struct srup_flow *flow, const char *value_text, const char *value_grouped,
			 void *user)
{
	struct srup_device *dev = user;

	(void)flow;
	dev->flow_show(dev, value_text, value_grouped, dev->flow_user);
}

/* What the caller of a flow gave for it, once the flow is over (or never
 * started). */
static void flow_forget_caller(struct srup_device *dev)
{
	dev->flow_done = NULL;
	dev->flow_show = NULL;
	dev->flow_user = NULL;
	dev->flow_destroy = NULL;
}

static void on_flow_done(struct srup_flow *flow, const struct srup_flow_result *res, void *user)
{
	struct srup_device *dev = user;
	const struct srup_device_result result = {
		.outcome = res->outcome,
		.status = res->status,
		.err = res->err,
		.detail = res->detail,
	};
	srup_device_done_fn done = dev->flow_done;
	void *done_user = dev->flow_user;
	void (*destroy)(void *) = dev->flow_destroy;
	bool deregistered = res->outcome == SRUP_DEVICE_ACCEPTED &&
			    srup_flow_request_name(flow) &&
			    strcmp(srup_flow_request_name(flow), "DEREGISTER_REQ") == 0;

	/* From srup_flow_free too (the device being freed): the flow is
	 * freed by whoever ends it, never here. */
	if (dev->flow == flow)
		dev->flow = NULL;
	else
		flow = NULL;
	flow_forget_caller(dev);
	srup_log(res->outcome == SRUP_DEVICE_ACCEPTED ? LOG_NOTICE : LOG_WARNING, "%s: %s",
		 flow ? srup_flow_request_name(flow) : "device flow", res->detail ? res->detail : "");
	done(dev, &result, done_user);
	if (destroy)
		destroy(done_user);
	if (deregistered)
		on_role_deregistered(dev);
	if (flow)
		srup_flow_free(flow);
}

static enum srup_device_err flow_start(struct srup_device *dev, enum srup_flow_kind kind,
				       uint64_t observer, const char *channel,
				       unsigned timeout_seconds, srup_device_show_fn show,
				       srup_device_done_fn done, void *user,
				       void (*destroy)(void *user))
{
	const struct srup_flow_exchange *ex = srup_flow_exchange(kind);
	const struct radio_channel_driver *driver = NULL;
	struct srup_flow_params fp;
	enum srup_device_err err;
	char detail[512] = "";

	if (!dev || !done || !ex)
		return SRUP_DEVICE_E_ARG;
	if (!dev->started)
		return SRUP_DEVICE_E_STATE_ORDER;
	if (dev->deregistered)
		return SRUP_DEVICE_E_DEREGISTERED;
	if (dev->flow)
		return SRUP_DEVICE_E_BUSY;
	if (kind == SRUP_FLOW_OBSERVED && channel && channel[0]) {
		driver = radio_channel_find(channel);
		if (!driver) {
			srup_log(LOG_ERR, "join: no channel named \"%s\" (ble, nfc or sim)", channel);
			return SRUP_DEVICE_E_ARG;
		}
	}
	if ((kind == SRUP_FLOW_HUMAN || (kind == SRUP_FLOW_OBSERVED && !driver)) && !show)
		return SRUP_DEVICE_E_ARG;
	if (timeout_seconds > UINT_MAX / 1000u)
		return SRUP_DEVICE_E_ARG;
	/* srup_node_on keeps one handler per type: these replace the role's
	 * RESPONSE handler (join = auto), which on_flow_message calls. */
	if (!dev->flow_handlers) {
		const uint8_t types[] = {SRUP_TYPE_RESPONSE, SRUP_TYPE_OBS_JOIN_RESPONSE,
					 SRUP_TYPE_HM_JOIN_RESPONSE};

		for (size_t i = 0; i < sizeof(types); i++) {
			if (!srup_flow_hears(types[i]))
				continue;
			if (srup_node_on(dev->node, types[i], dev->cfg->server_id, on_flow_message,
					 dev) != SRUP_NODE_OK)
				return SRUP_DEVICE_E_NOMEM;
		}
		dev->flow_handlers = true;
	}
	fp = (struct srup_flow_params){
		.kind = kind,
		.loop = dev->loop,
		.node = dev->node,
		.cfg = dev->cfg,
		.private_key = dev->id->private_key,
		.peers = dev->id->peers,
		.observer = observer,
		.channel = driver,
		.timeout_ms = timeout_seconds * 1000u,
		.show = show ? on_flow_show : NULL,
		.done = on_flow_done,
		.user = dev,
	};
	dev->flow_done = done;
	dev->flow_show = show;
	dev->flow_user = user;
	dev->flow_destroy = destroy;
	err = srup_flow_new(&fp, &dev->flow, detail, sizeof(detail));
	if (err != SRUP_DEVICE_OK) {
		srup_log(LOG_ERR, "%s: %s", ex->name, detail);
		dev->flow = NULL;
		flow_forget_caller(dev);
		return err;
	}
	if (srup_node_is_connected(dev->node))
		srup_flow_connected(dev->flow);
	return SRUP_DEVICE_OK;
}

enum srup_device_err srup_device_join(struct srup_device *dev,
				      const struct srup_device_join_params *params,
				      srup_device_done_fn done, void *user, void (*destroy)(void *user))
{
	static const enum srup_flow_kind kinds[] = {
		[SRUP_DEVICE_JOIN_OBSERVED] = SRUP_FLOW_OBSERVED,
		[SRUP_DEVICE_JOIN_HUMAN] = SRUP_FLOW_HUMAN,
		[SRUP_DEVICE_JOIN_UNMEDIATED] = SRUP_FLOW_UNMEDIATED,
	};
	struct srup_device_join_params p = {0};

	if (!params || params->size < offsetof(struct srup_device_join_params, mode) +
					  sizeof(params->mode))
		return SRUP_DEVICE_E_ARG;
	memcpy(&p, params, params->size < sizeof(p) ? params->size : sizeof(p));
	if ((unsigned)p.mode >= sizeof(kinds) / sizeof(kinds[0]) ||
	    (p.mode == SRUP_DEVICE_JOIN_OBSERVED && p.observer == 0))
		return SRUP_DEVICE_E_ARG;
	return flow_start(dev, kinds[p.mode], p.observer, p.channel, p.timeout_seconds, p.show,
			  done, user, destroy);
}

enum srup_device_err srup_device_resign(struct srup_device *dev, unsigned timeout_seconds,
					srup_device_done_fn done, void *user,
					void (*destroy)(void *user))
{
	return flow_start(dev, SRUP_FLOW_RESIGN, 0, NULL, timeout_seconds, NULL, done, user,
			  destroy);
}

enum srup_device_err srup_device_deregister(struct srup_device *dev, unsigned timeout_seconds,
					    srup_device_done_fn done, void *user,
					    void (*destroy)(void *user))
{
	return flow_start(dev, SRUP_FLOW_DEREGISTER, 0, NULL, timeout_seconds, NULL, done, user,
			  destroy);
}
