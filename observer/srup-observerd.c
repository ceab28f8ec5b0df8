/* srup-observerd: the observer appliance.
 *
 * Wiring only: the SRUP node delivers verified, fresh OBSERVE_REQs from the
 * configured server; the blob is opened here and handed to the observation
 * engine, which decides (OBSERVATION-CHANNEL.md section 2); every listed
 * channel (found in the registry, radio.h) delivers frames to the same
 * engine, labelled with the channel that brought them; the engine's events
 * become RESPONSEs, listen start/stop on every channel and log lines.
 * Everything runs on one sd-event loop.
 *
 * Across channels: pending observations end with 0x6F for a lost radio
 * only when no listed channel can still listen; a lost channel keeps
 * trying to get its radio back and listens again once it has. */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "obs_audit.h"
#include "obs_control.h"
#include "obs_engine.h"
#include "obs_metrics.h"
#include "radio.h"
#include "srup.h"
#include "srup_msg_layout.h"
#include "srup_config.h"
#include "srup_config_reload.h"
#include "srup_exit.h"
#include "srup_identity.h"
#include "srup_keys.h"
#include "srup_log.h"
#include "srup_node.h"
#include "srup_role.h"
#include "srup_device_private.h"

#define SHUTDOWN_FLUSH_MS 5000
/* The node reports connections and losses (STATUS= changes at once); the
 * poll only catches what else may change unreported. */
#define STATUS_POLL_USEC (2u * 1000000u)

/* Every OBSERVE_REQ taken is held by the node (its record kept on disk)
 * until the broker acknowledged its RESPONSE: if the daemon dies before,
 * the next start hands the request to on_observe_request again, which
 * answers it or resumes the observation (with a new window). */
struct held_request {
	uint64_t device_id;
	uint64_t hold;
	size_t token_len;
	uint8_t token[OBS_TOKEN_MAX];
};

struct held_requests {
	struct held_request *v;
	size_t len, cap;
};

static void held_add(struct held_requests *h, uint64_t device_id, const uint8_t *token,
		     size_t token_len, uint64_t hold)
{
	if (!hold || token_len > OBS_TOKEN_MAX)
		return;
	if (h->len == h->cap) {
		size_t cap = h->cap ? h->cap * 2 : 16;
		struct held_request *grown = realloc(h->v, cap * sizeof(*grown));

		if (!grown)
			return; /* kept on disk until a restart answers it again */
		h->v = grown;
		h->cap = cap;
	}
	h->v[h->len] = (struct held_request){.device_id = device_id, .hold = hold,
					     .token_len = token_len};
	memcpy(h->v[h->len].token, token, token_len);
	h->len++;
}

/* The hold of the request that this RESPONSE answers (0 if none). */
static uint64_t held_take(struct held_requests *h, uint64_t device_id, const uint8_t *token,
			  size_t token_len)
{
	for (size_t i = 0; i < h->len; i++) {
		struct held_request *r = &h->v[i];
		uint64_t hold = r->hold;

		if (r->device_id != device_id || r->token_len != token_len ||
		    memcmp(r->token, token, token_len) != 0)
			continue;
		*r = h->v[--h->len];
		return hold;
	}
	return 0;
}

static void response_settled(struct srup_node *node, bool acknowledged, void *user)
{
	uint64_t *hold = user;

	if (acknowledged)
		srup_node_release(node, *hold);
	else
		srup_log(LOG_WARNING, "a RESPONSE was not acknowledged by the broker; its request "
			 "is answered again at the next start");
	free(hold);
}

struct observerd;

/* One listed channel. */
struct observer_channel {
	struct observerd *d;
	size_t index;                  /* in observerd.channels: the engine's and the metrics' label */
	const struct radio_channel_driver *driver;
	struct radio_channel *ch;
	const char *state;             /* idle, listening, unavailable */
};

struct observerd {
	sd_event *loop;
	const char *config_path;
	struct srup_config cfg;
	/* Restart-only keys changed by a reload, still at their old values
	 * ("[mqtt] broker, [observation] channel"; empty if none). */
	char restart_needed[512];
	struct srup_identity id;
	/* The observer is a device of its server too: the device (node and
	 * role, hooks by the adapter) with the OBSERVE_REQ handler added on
	 * its node. node and role are the device's. */
	struct srup_device *dev;
	struct srup_node *node;
	struct observer_channel channels[RADIO_CHANNELS_MAX];
	size_t n_channels;
	bool listen_wanted;            /* an observation is pending: channels listen */
	char channel_list[64];         /* "ble nfc": the listed channels */
	struct obs_engine *engine;
	struct obs_events events;
	sd_event_source *deadline_timer;
	char own_topic[SRUP_TOPIC_MAX];
	/* Operator interfaces: audit log, metrics, control socket. */
	struct obs_metrics metrics;
	struct obs_audit *audit;
	sd_event_source *audit_sync_timer; /* on while audit records wait for their sync */
	struct obs_control *control;
	sd_event_source *metrics_timer;
	uint64_t metrics_written;      /* metrics.changes when last written */
	uint64_t started_ms;
	/* The device role: the observer is a device of its server too. */
	struct srup_role *role;
	bool deregistered;
	/* What systemd was last told (sd_notify; no-ops outside systemd). */
	sd_event_source *status_timer;
	bool ready;
	char status[160];
	/* OBSERVE_REQs held until their RESPONSE was acknowledged. */
	struct held_requests held;
};

static void operator_outcome(struct observerd *d, const struct obs_event *ev);
static void operator_refused(struct observerd *d, uint64_t device, const struct srup_bytes *token);
static void metrics_changed(struct observerd *d);
static int metrics_start(struct observerd *d);
static int audit_open_for(const struct srup_config *cfg, struct obs_audit **out, char *err,
			  size_t err_len);

/* ---- systemd: READY=1 once subscribed, STATUS= as it changes ---------------- */

static void notify_status(struct observerd *d)
{
	char text[sizeof(d->status)], channels[128] = "";
	size_t used = 0;
	const char *broker = d->node ? srup_node_broker(d->node) : NULL;
	bool connected = d->node && srup_node_is_connected(d->node) && broker;

	/* One channel: "sim channel idle"; several: "channels ble idle, nfc
	 * listening". */
	for (size_t i = 0; i < d->n_channels; i++) {
		int n = snprintf(channels + used, sizeof(channels) - used, "%s%s %s",
				 i ? ", " : d->n_channels > 1 ? "channels " : "",
				 d->channels[i].driver->name,
				 d->n_channels > 1 ? d->channels[i].state : "channel");

		if (n < 0 || (size_t)n >= sizeof(channels) - used)
			break;
		used += (size_t)n;
	}
	snprintf(text, sizeof(text), "broker %s%s; %s%s%s; %zu pending",
		 connected ? "connected to " : "disconnected", connected ? broker : "",
		 channels, d->n_channels == 1 ? " " : "",
		 d->n_channels == 1 ? d->channels[0].state : "",
		 d->engine ? obs_engine_pending(d->engine) : (size_t)0);
	if (strcmp(text, d->status) == 0)
		return;
	memcpy(d->status, text, sizeof(text));
	sd_notifyf(0, "STATUS=%s", text);
}

static int on_status_poll(sd_event_source *s, uint64_t usec, void *user)
{
	notify_status(user);
	return sd_event_source_set_time(s, usec + STATUS_POLL_USEC);
}

/* ---- The channels ------------------------------------------------------------ */

static void channel_start(struct observer_channel *c)
{
	enum radio_err rerr = radio_channel_start(c->ch);

	if (rerr != RADIO_OK) {
		srup_log(LOG_ERR, "%s channel cannot listen: %s", c->driver->name,
			 radio_strerror(rerr));
		c->state = "unavailable";
		return;
	}
	srup_log(LOG_INFO, "%s channel listening", c->driver->name);
	c->state = "listening";
}

static void channels_start(struct observerd *d)
{
	d->listen_wanted = true;
	for (size_t i = 0; i < d->n_channels; i++)
		channel_start(&d->channels[i]);
}

static void channels_stop(struct observerd *d)
{
	d->listen_wanted = false;
	for (size_t i = 0; i < d->n_channels; i++) {
		struct observer_channel *c = &d->channels[i];

		radio_channel_stop(c->ch);
		srup_log(LOG_INFO, "%s channel idle", c->driver->name);
		if (strcmp(c->state, "unavailable") != 0)
			c->state = "idle";
	}
}

/* Whether some listed channel can listen (is not unavailable). */
static bool channels_can_listen(const struct observerd *d)
{
	for (size_t i = 0; i < d->n_channels; i++)
		if (strcmp(d->channels[i].state, "unavailable") != 0)
			return true;
	return false;
}

/* Over all channels: listening if one listens, unavailable if none can. */
static const char *channels_state(const struct observerd *d)
{
	for (size_t i = 0; i < d->n_channels; i++)
		if (strcmp(d->channels[i].state, "listening") == 0)
			return "listening";
	return channels_can_listen(d) ? "idle" : "unavailable";
}

/* The channels that can still listen, for a log line: "nfc, sim". */
static const char *channels_listening_list(const struct observerd *d, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < d->n_channels; i++) {
		int n;

		if (strcmp(d->channels[i].state, "unavailable") == 0)
			continue;
		n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "",
			     d->channels[i].driver->name);
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	return buf;
}

static uint64_t now_ms(struct observerd *d)
{
	uint64_t usec = 0;

	sd_event_now(d->loop, CLOCK_MONOTONIC, &usec);
	return usec / 1000;
}

/* hold: the request answered (released once the broker has the RESPONSE);
 * noted: its status is recorded already (apply_events). */
static void send_response_noted(struct observerd *d, uint8_t status, const uint8_t *token,
				size_t token_len, uint64_t hold, bool noted)
{
	struct srup_msg *msg = srup_msg_new(SRUP_TYPE_RESPONSE);
	uint64_t *settle = hold ? malloc(sizeof(*settle)) : NULL;
	enum srup_node_err err;

	if (!msg) {
		srup_log(LOG_ERR, "cannot build RESPONSE 0x%02x: out of memory", status);
		free(settle);
		return;
	}
	msg->status = status;
	if (srup_bytes_set(&msg->token, token, token_len) != SRUP_OK) {
		srup_log(LOG_ERR, "cannot build RESPONSE 0x%02x: out of memory", status);
		srup_msg_free(msg);
		free(settle);
		return;
	}
	/* The observer is a device of its server: it answers on its own topic.
	 * What it answers is recorded first: a restart before the broker has
	 * the RESPONSE sends the same one again, never another (after a power
	 * loss, once the state flush had it: srup_node_hold_note). */
	if (hold && !noted && srup_node_hold_note(d->node, hold, &status, 1) != SRUP_NODE_OK)
		srup_log(LOG_ERR, "RESPONSE 0x%02x is sent without its record: a restart before "
			 "the broker has it decides that request again", status);
	if (settle)
		*settle = hold;
	err = srup_node_send_tracked(d->node, msg, d->cfg.server_id, d->own_topic,
				     settle ? response_settled : NULL, settle);
	if (err != SRUP_NODE_OK) {
		srup_log(LOG_ERR, "cannot send RESPONSE 0x%02x: %s", status,
			 srup_node_strerror(err));
		free(settle);
	}
	srup_msg_free(msg);
}

static void send_response(struct observerd *d, uint8_t status, const uint8_t *token,
			  size_t token_len, uint64_t hold)
{
	send_response_noted(d, status, token, token_len, hold, false);
}

static void rearm_deadline(struct observerd *d)
{
	uint64_t deadline = obs_engine_next_deadline(d->engine);

	if (deadline == UINT64_MAX) {
		sd_event_source_set_enabled(d->deadline_timer, SD_EVENT_OFF);
		return;
	}
	sd_event_source_set_time(d->deadline_timer, deadline * 1000);
	sd_event_source_set_enabled(d->deadline_timer, SD_EVENT_ONESHOT);
}

/* Carry out what the engine decided, then forget it. Every outcome is
 * recorded first, then the RESPONSEs go. Listening that
 * no channel can do ends the pending observations (0x6F), as one more run. */
static void apply_events(struct observerd *d)
{
	for (;;) {
		uint64_t *holds = d->events.len ? calloc(d->events.len, sizeof(*holds)) : NULL;
		bool none_can_listen = false;

		for (size_t i = 0; holds && i < d->events.len; i++) {
			const struct obs_event *ev = &d->events.ev[i];

			if (ev->kind != OBS_EVENT_RESPOND)
				continue;
			holds[i] = held_take(&d->held, ev->device_id, ev->token, ev->token_len);
			if (holds[i] && srup_node_hold_note(d->node, holds[i], &ev->status, 1) !=
					     SRUP_NODE_OK)
				srup_log(LOG_ERR, "RESPONSE 0x%02x is sent without its record: a "
					 "restart before the broker has it decides that request again",
					 ev->status);
		}
		for (size_t i = 0; i < d->events.len; i++) {
			const struct obs_event *ev = &d->events.ev[i];
			char id[17];

			switch (ev->kind) {
			case OBS_EVENT_RESPOND:
				srup_id_format16(ev->device_id, id);
				srup_log(ev->status == SRUP_STATUS_OBSERVED_JOIN_VALID ? LOG_NOTICE
											: LOG_WARNING,
					 "observation device=%s outcome=%s status=0x%02x attempts=%u "
					 "duration_ms=%" PRIu64 "%s%s",
					 id, obs_outcome_name(ev->outcome), ev->status, ev->attempts,
					 ev->duration_ms, ev->channel >= 0 ? " channel=" : "",
					 ev->channel >= 0 ? d->channels[ev->channel].driver->name : "");
				if (holds)
					send_response_noted(d, ev->status, ev->token, ev->token_len,
							    holds[i], true);
				else
					send_response(d, ev->status, ev->token, ev->token_len,
						      held_take(&d->held, ev->device_id, ev->token,
								ev->token_len));
				operator_outcome(d, ev);
				break;
			case OBS_EVENT_LISTEN_START:
				channels_start(d);
				none_can_listen = !channels_can_listen(d);
				break;
			case OBS_EVENT_LISTEN_STOP:
				channels_stop(d);
				none_can_listen = false;
				break;
			}
		}
		free(holds);
		obs_events_clear(&d->events);
		if (!none_can_listen || !obs_engine_pending(d->engine))
			break;
		srup_log(LOG_ERR, "no channel can listen (%s all unavailable); pending "
			 "observations fail", d->channel_list);
		obs_engine_fail_all(d->engine, OBS_OUTCOME_RADIO_LOST, now_ms(d), &d->events);
	}
	rearm_deadline(d);
	notify_status(d);
}

static int on_deadline(sd_event_source *s, uint64_t usec, void *user)
{
	struct observerd *d = user;

	(void)s;
	(void)usec;
	obs_engine_tick(d->engine, now_ms(d), &d->events);
	apply_events(d);
	return 0;
}

static void on_observe_request(struct srup_node *node, const struct srup_msg *msg,
			       const char *topic, void *user)
{
	struct observerd *d = user;
	struct srup_bytes value = {0};
	uint64_t hold;
	uint8_t decided;
	enum srup_err err;
	char id[17];

	srup_id_format16(msg->joining_device_id, id);
	if (!srup_role_obeys(d->role, msg)) {
		srup_log(LOG_WARNING, "dropped OBSERVE_REQ on %s for device %s: the server "
			 "terminated this observer; only a JOIN_COMMAND is obeyed", topic, id);
		return;
	}
	/* From here every path answers the request, so it is held until then. */
	hold = srup_node_hold(node);
	if (srup_node_held_note(node, &decided, 1) == 1) {
		srup_log(LOG_NOTICE, "OBSERVE_REQ for device %s accepted before a restart and "
			 "answered 0x%02x then: that RESPONSE is sent again", id, decided);
		send_response(d, decided, msg->token.data, msg->token.len, hold);
		return;
	}
	if (msg->token.len > OBS_TOKEN_MAX) {
		srup_log(LOG_WARNING, "OBSERVE_REQ for device %s: token of %zu bytes is over %u; "
			 "answered 0x6F", id, msg->token.len, OBS_TOKEN_MAX);
		send_response(d, SRUP_STATUS_OBSERVED_JOIN_FAIL, msg->token.data, msg->token.len,
			      hold);
		operator_refused(d, msg->joining_device_id, &msg->token);
		return;
	}
	err = srup_msg_open(msg, d->id.private_key, &value);
	if (err != SRUP_OK) {
		/* Authentic and fresh, but not for us to open: the server must
		 * hear at once rather than wait for the deadline. */
		srup_log(LOG_WARNING, "OBSERVE_REQ for device %s: blob does not open (%s); "
			 "answered 0x6F", id, srup_strerror(err));
		send_response(d, SRUP_STATUS_OBSERVED_JOIN_FAIL, msg->token.data, msg->token.len,
			      hold);
		operator_refused(d, msg->joining_device_id, &msg->token);
		return;
	}
	if (value.len == 0 || value.len > OBS_VALUE_MAX) {
		srup_log(LOG_WARNING, "OBSERVE_REQ for device %s: confirmation value of %zu "
			 "bytes cannot be presented (1..%u); answered 0x6F", id, value.len,
			 OBS_VALUE_MAX);
		srup_bytes_clear(&value);
		send_response(d, SRUP_STATUS_OBSERVED_JOIN_FAIL, msg->token.data, msg->token.len,
			      hold);
		operator_refused(d, msg->joining_device_id, &msg->token);
		return;
	}
	/* Before the engine's events: an overflow answers this one at once. */
	held_add(&d->held, msg->joining_device_id, msg->token.data, msg->token.len, hold);
	if (obs_engine_request(d->engine, msg->joining_device_id, value.data, value.len,
			       msg->token.data, msg->token.len, now_ms(d), &d->events) != 0) {
		held_take(&d->held, msg->joining_device_id, msg->token.data, msg->token.len);
		srup_log(LOG_ERR, "OBSERVE_REQ for device %s: out of memory; answered 0x6F", id);
		send_response(d, SRUP_STATUS_OBSERVED_JOIN_FAIL, msg->token.data, msg->token.len,
			      hold);
		operator_refused(d, msg->joining_device_id, &msg->token);
	} else {
		srup_log(LOG_INFO, "OBSERVE_REQ for device %s accepted (pending: %zu)", id,
			 obs_engine_pending(d->engine));
		d->metrics.requests_accepted++;
		metrics_changed(d);
	}
	srup_bytes_clear(&value);
	apply_events(d);
}

/* A frame counts the same whichever channel brought it (the engine is per
 * observation); the channel only labels what it decides and is counted. */
static uint8_t on_frame(const struct srup_frame *frame, void *user)
{
	struct observer_channel *c = user;
	struct observerd *d = c->d;
	uint8_t result;
	char id[17];

	result = obs_engine_frame(d->engine, (int)c->index, frame->device_id, frame->value,
				  frame->value_len, now_ms(d), &d->events);
	srup_id_format16(frame->device_id, id);
	obs_metrics_frame(&d->metrics, c->index, result);
	metrics_changed(d);
	if (result == RADIO_RESULT_NOT_COMPARED)
		srup_log(LOG_WARNING, "frame for device %s ignored: no observation pending (%s)",
			 id, c->driver->name);
	else
		srup_log(LOG_INFO, "frame for device %s: %s (%s)", id,
			 result == RADIO_RESULT_MATCH ? "value matches" : "value does not match",
			 c->driver->name);
	apply_events(d);
	return result;
}

/* A lost radio fails the pending observations only when no listed channel
 * can listen any more; the lost channel keeps trying to get it back. */
static void on_channel_unavailable(const char *why, void *user)
{
	struct observer_channel *c = user;
	struct observerd *d = c->d;
	char others[64];

	c->state = "unavailable";
	if (channels_can_listen(d)) {
		srup_log(LOG_ERR, "%s channel unavailable: %s; pending observations go on over %s",
			 c->driver->name, why, channels_listening_list(d, others, sizeof(others)));
		notify_status(d);
		metrics_changed(d);
		return;
	}
	srup_log(LOG_ERR, "%s channel unavailable: %s; pending observations fail%s",
		 c->driver->name, why, d->n_channels > 1 ? " (no channel can listen)" : "");
	obs_engine_fail_all(d->engine, OBS_OUTCOME_RADIO_LOST, now_ms(d), &d->events);
	apply_events(d);
	metrics_changed(d);
}

/* The radio is back: listen again if observations are pending. */
static void on_channel_available(void *user)
{
	struct observer_channel *c = user;
	struct observerd *d = c->d;

	srup_log(LOG_NOTICE, "%s channel available again", c->driver->name);
	if (d->listen_wanted && !c->ch->listening)
		channel_start(c);
	else
		c->state = d->listen_wanted ? "listening" : "idle";
	notify_status(d);
	metrics_changed(d);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *user)
{
	struct observerd *d = user;

	(void)s;
	srup_log(LOG_NOTICE, "signal %u: shutting down", si->ssi_signo);
	sd_notify(0, "STOPPING=1");
	sd_event_exit(d->loop, 0);
	return 0;
}

/* ---- SIGHUP: reload the configuration ------------------------------------- */

/* systemd's reload protocol for Type=notify: RELOADING=1 with the time the
 * reload began, READY=1 when it is done (applied or refused). Before the
 * first READY=1 the reload still happens, and nothing is told. */
static void notify_reloading(struct observerd *d)
{
	struct timespec ts;

	if (!d->ready || clock_gettime(CLOCK_MONOTONIC, &ts) != 0)
		return;
	sd_notifyf(0, "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC=%llu",
		   (unsigned long long)ts.tv_sec * 1000000ull +
			   (unsigned long long)ts.tv_nsec / 1000ull);
}

static bool audit_settings_differ(const struct srup_config *a, const struct srup_config *b)
{
	return strcmp(a->audit_file, b->audit_file) != 0 || a->audit_max_bytes != b->audit_max_bytes ||
	       a->audit_keep != b->audit_keep || a->audit_fsync != b->audit_fsync ||
	       a->audit_journal != b->audit_journal;
}

/* Re-reads the file (and what the loader reads with it) into a fresh
 * configuration, checked as --check-config checks it; if anything fails,
 * nothing changes. Otherwise what can change with the broker session up
 * takes effect, and restart-only keys keep their running values and are
 * named (srup_config_reload.h). Pending observations keep their window. */
static void reload(struct observerd *d)
{
	struct srup_config *next = calloc(1, sizeof(*next));
	struct srup_identity check = {0};
	struct obs_audit *audit = NULL;
	struct obs_engine_config ecfg;
	char err[2048], restart[sizeof(d->restart_needed)];
	bool metrics_changed_settings;

	notify_reloading(d);
	if (!next) {
		srup_log(LOG_ERR, "reload refused: out of memory; running on unchanged");
		goto done;
	}
	if (srup_config_load(d->config_path, SRUP_CONFIG_OBSERVER, next, err, sizeof(err)) != 0 ||
	    srup_identity_load(next, &check, err, sizeof(err)) != 0) {
		for (char *line = strtok(err, "\n"); line; line = strtok(NULL, "\n"))
			srup_log(LOG_ERR, "reload refused: %s", line);
		srup_log(LOG_ERR, "reload refused: the configuration in %s fails its checks; "
			 "running on unchanged", d->config_path);
		goto done;
	}
	srup_config_reload_merge(&d->cfg, next, restart, sizeof(restart));
	/* The new audit log opens before anything is applied: if it cannot,
	 * the reload is refused whole. */
	if (audit_settings_differ(&d->cfg, next) &&
	    audit_open_for(next, &audit, err, sizeof(err)) != 0) {
		srup_log(LOG_ERR, "reload refused: %s; running on unchanged", err);
		goto done;
	}
	ecfg = (struct obs_engine_config){
		.window_seconds = next->window_seconds,
		.max_attempts = next->max_attempts,
		.max_pending = next->max_pending,
	};
	if (obs_engine_set_config(d->engine, &ecfg) != 0) {
		srup_log(LOG_ERR, "reload refused: invalid observation settings; running on "
			 "unchanged");
		obs_audit_free(audit);
		goto done;
	}
	metrics_changed_settings = strcmp(d->cfg.metrics_file, next->metrics_file) != 0 ||
				   d->cfg.metrics_interval_seconds != next->metrics_interval_seconds;
	/* In place: the device role borrows d->cfg. */
	d->cfg = *next;
	srup_role_reconfigured(d->role);
	if (audit) {
		obs_audit_free(d->audit);
		d->audit = audit;
	}
	if (metrics_changed_settings)
		metrics_start(d);
	memcpy(d->restart_needed, restart, sizeof(restart));
	if (restart[0])
		srup_log(LOG_WARNING, "reload: restart needed for: %s", restart);
	srup_log(LOG_NOTICE, "reload: %s (%zu drop-in file(s)) applied: window %us, "
		 "max_attempts %u, max_pending %u for new observations (%zu pending keep theirs)",
		 d->config_path, d->cfg.n_files ? d->cfg.n_files - 1 : 0, d->cfg.window_seconds, d->cfg.max_attempts, d->cfg.max_pending,
		 obs_engine_pending(d->engine));
done:
	srup_identity_free(&check);
	if (next) {
		explicit_bzero(next, sizeof(*next));
		free(next);
	}
	if (d->ready)
		sd_notify(0, "READY=1");
	d->status[0] = '\0'; /* STATUS= again, after the reload's own */
	notify_status(d);
}

static int on_reload_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *user)
{
	(void)s;
	(void)si;
	reload(user);
	return 0;
}

static void metrics_changed(struct observerd *d);

/* The operator sees the loss at once: STATUS= and the metrics file. */
static void on_disconnected(struct srup_node *node, void *user)
{
	struct observerd *d = user;

	(void)node;
	notify_status(d);
	metrics_changed(d);
}

static void on_connected(struct srup_node *node, void *user)
{
	struct observerd *d = user;

	srup_log(LOG_INFO, "connected to the broker %s; listening on its topic",
		 srup_node_broker(node) ? srup_node_broker(node) : "");
	notify_status(d);
	metrics_changed(d);
	/* Ready means OBSERVE_REQs can arrive: the session is up and
	 * subscribed (the node calls this only then). */
	if (!d->ready) {
		d->ready = true;
		sd_notify(0, "READY=1");
	}
}

static void on_connection(struct srup_device *dev, bool connected, const char *broker,
			  void *user)
{
	(void)dev;
	(void)broker;
	if (connected)
		on_connected(srup_device_node(dev), user);
	else
		on_disconnected(srup_device_node(dev), user);
}

static void on_deregistered(struct srup_device *dev, void *user)
{
	struct observerd *d = user;

	(void)dev;
	d->deregistered = true;
	sd_event_exit(d->loop, SRUP_EXIT_DEREGISTERED);
}

/* Every other server command (srup_role.h), on the same node, the hooks
 * of the configuration answering. */
static int start_role(struct observerd *d)
{
	if (srup_device_hooks_attach(d->dev) != 0 ||
	    !srup_device_on_connection(d->dev, on_connection, d, NULL) ||
	    !srup_device_on_deregistered(d->dev, on_deregistered, d, NULL)) {
		srup_log(LOG_ERR, "device role: out of memory");
		return -1;
	}
	return 0;
}

/* Every listed channel, each with its own section; counted per channel. */
static int open_channels(struct observerd *d)
{
	const char *names[RADIO_CHANNELS_MAX];

	srup_config_channel_list(&d->cfg, " ", d->channel_list, sizeof(d->channel_list));
	for (size_t i = 0; i < d->cfg.n_channels; i++) {
		struct observer_channel *c = &d->channels[i];
		const struct radio_channel_callbacks cb = {
			.frame = on_frame,
			.unavailable = on_channel_unavailable,
			.available = on_channel_available,
			.user = c,
		};
		enum radio_err rerr;

		*c = (struct observer_channel){.d = d, .index = i, .driver = d->cfg.channels[i],
					       .state = "idle"};
		rerr = c->driver->open(d->loop, &d->cfg.radio, &cb, &c->ch);
		if (rerr != RADIO_OK) {
			srup_log(LOG_ERR, "%s channel: %s", c->driver->name, radio_strerror(rerr));
			return -1;
		}
		names[i] = c->driver->name;
		d->n_channels = i + 1;
	}
	obs_metrics_channels(&d->metrics, names, d->n_channels);
	return 0;
}

/* ---- Operator interfaces: audit log, metrics file, control socket -------- */

#define METRICS_SOON_MS 200
/* Audit records are synced this long after the first one written since the
 * last sync: the decisions of that time share one fdatasync. */
#define AUDIT_SYNC_DELAY_US (50u * 1000u)

static int on_audit_sync(sd_event_source *s, uint64_t usec, void *user)
{
	struct observerd *d = user;
	char err[512];

	(void)s;
	(void)usec;
	if (obs_audit_sync(d->audit, err, sizeof(err)) != 0) {
		d->metrics.audit_errors++;
		srup_log(LOG_ERR, "%s", err);
	}
	return 0;
}

static void audit_sync_soon(struct observerd *d)
{
	int enabled = SD_EVENT_OFF;

	if (!obs_audit_unsynced(d->audit) ||
	    (sd_event_source_get_enabled(d->audit_sync_timer, &enabled) >= 0 &&
	     enabled != SD_EVENT_OFF))
		return;
	if (sd_event_source_set_time_relative(d->audit_sync_timer, AUDIT_SYNC_DELAY_US) < 0 ||
	    sd_event_source_set_enabled(d->audit_sync_timer, SD_EVENT_ONESHOT) < 0)
		on_audit_sync(d->audit_sync_timer, 0, d); /* now, then */
}

/* channel: the one whose frame decided, or NULL (then the channels
 * listed, "ble nfc", on which it was observed). */
static void audit_observation(struct observerd *d, uint64_t device, const char *outcome,
			      uint8_t status, unsigned attempts, uint64_t duration_ms,
			      const char *channel, const uint8_t *token, size_t token_len)
{
	char dev[17], server[17], status_text[8], message[160], err[512];
	const struct obs_audit_field fields[] = {
		{.name = "device", .type = OBS_AUDIT_STR, .str = dev},
		{.name = "server", .type = OBS_AUDIT_STR, .str = server},
		{.name = "outcome", .type = OBS_AUDIT_STR, .str = outcome},
		{.name = "status", .type = OBS_AUDIT_STR, .str = status_text},
		{.name = "attempts", .type = OBS_AUDIT_UINT, .num = attempts},
		{.name = "duration_ms", .type = OBS_AUDIT_UINT, .num = duration_ms},
		{.name = "channel", .type = OBS_AUDIT_STR, .str = channel ? channel : d->channel_list},
		{.name = "token_sha256", .type = OBS_AUDIT_SHA256, .bytes = token, .len = token_len},
	};

	if (!d->audit)
		return;
	srup_id_format16(device, dev);
	srup_id_format16(d->cfg.server_id, server);
	snprintf(status_text, sizeof(status_text), "0x%02x", status);
	snprintf(message, sizeof(message), "observation device=%s outcome=%s status=%s", dev,
		 outcome, status_text);
	if (obs_audit_record(d->audit, "observation",
			     status == SRUP_STATUS_OBSERVED_JOIN_VALID ? LOG_NOTICE : LOG_WARNING,
			     message, fields, sizeof(fields) / sizeof(fields[0]), err,
			     sizeof(err)) != 0) {
		d->metrics.audit_errors++;
		srup_log(LOG_ERR, "%s", err);
	}
	audit_sync_soon(d);
}

/* The metrics file is rewritten shortly after a change (changes that come
 * together make one write), and every interval_seconds anyway. */
static void metrics_soon(struct observerd *d)
{
	uint64_t next = 0, now = 0;

	if (!d->metrics_timer)
		return;
	sd_event_now(d->loop, CLOCK_MONOTONIC, &now);
	sd_event_source_get_time(d->metrics_timer, &next);
	if (next > now + METRICS_SOON_MS * 1000u)
		sd_event_source_set_time(d->metrics_timer, now + METRICS_SOON_MS * 1000u);
}

/* A decided observation: audit record, counters, history. */
static void operator_outcome(struct observerd *d, const struct obs_event *ev)
{
	struct obs_history_entry h = {
		.time_unix_ms = obs_audit_now_unix_ms(),
		.device_id = ev->device_id,
		.status = ev->status,
		.outcome = ev->outcome,
		.attempts = ev->attempts,
		.duration_ms = ev->duration_ms,
	};

	const char *channel = ev->channel >= 0 ? d->channels[ev->channel].driver->name : NULL;

	audit_observation(d, ev->device_id, obs_outcome_name(ev->outcome), ev->status,
			  ev->attempts, ev->duration_ms, channel, ev->token, ev->token_len);
	/* The RESPONSE was just handed to the node: accepted -> published. */
	obs_metrics_outcome(&d->metrics, ev->outcome, ev->duration_ms);
	if (ev->channel >= 0)
		obs_metrics_channel_outcome(&d->metrics, (size_t)ev->channel, ev->outcome);
	obs_control_note(d->control, &h);
	metrics_soon(d);
}

/* An OBSERVE_REQ answered 0x6F before the engine saw it. */
static void operator_refused(struct observerd *d, uint64_t device, const struct srup_bytes *token)
{
	audit_observation(d, device, "refused", SRUP_STATUS_OBSERVED_JOIN_FAIL, 0, 0, NULL,
			  token->data, token->len);
	d->metrics.requests_refused++;
	metrics_changed(d);
}

static void metrics_changed(struct observerd *d)
{
	d->metrics.changes++;
	metrics_soon(d);
}

static void control_status(struct obs_control_status *out, void *user)
{
	struct observerd *d = user;

	out->identity_id = d->cfg.identity_id;
	out->server_id = d->cfg.server_id;
	out->broker = d->cfg.mqtt_broker;
	out->broker_connected = srup_node_is_connected(d->node);
	out->broker_current = out->broker_connected ? srup_node_broker(d->node) : NULL;
	out->channel = d->channel_list;
	out->channel_state = channels_state(d);
	for (size_t i = 0; i < d->n_channels && i < OBS_METRICS_CHANNELS_MAX; i++)
		out->channels[i] = (struct obs_control_channel){.kind = d->channels[i].driver->name,
								.state = d->channels[i].state};
	out->n_channels = d->n_channels;
	out->pending = obs_engine_pending(d->engine);
	out->uptime_seconds = (now_ms(d) - d->started_ms) / 1000u;
	out->metrics = &d->metrics;
	out->restart_needed = d->restart_needed;
	srup_node_get_stats(d->node, &out->node);
}

static size_t control_list(struct obs_pending_info *out, size_t max, size_t *total,
			   uint64_t *now, void *user)
{
	struct observerd *d = user;

	*total = obs_engine_pending(d->engine);
	*now = now_ms(d);
	return obs_engine_list(d->engine, out, max);
}

static int control_cancel(uint64_t device_id, void *user)
{
	struct observerd *d = user;
	char id[17];
	int r = obs_engine_cancel(d->engine, device_id, now_ms(d), &d->events);

	srup_id_format16(device_id, id);
	if (r > 0)
		srup_log(LOG_NOTICE, "observation for device %s cancelled by the operator", id);
	apply_events(d);
	return r;
}

static void metrics_write(struct observerd *d)
{
	struct srup_node_stats node;
	struct obs_metrics_channel_state channels[RADIO_CHANNELS_MAX];
	struct obs_metrics_gauges g = {
		.pending = obs_engine_pending(d->engine),
		.broker_connected = srup_node_is_connected(d->node),
		.brokers = d->cfg.mqtt_broker,
		.broker_current = srup_node_is_connected(d->node) ? srup_node_broker(d->node) : NULL,
		.channel_listening = strcmp(channels_state(d), "listening") == 0,
		.channels = channels,
		.n_channels = d->n_channels,
		.uptime_seconds = (now_ms(d) - d->started_ms) / 1000u,
		.node = &node,
	};
	char err[512], *text;

	for (size_t i = 0; i < d->n_channels; i++)
		channels[i] = (struct obs_metrics_channel_state){.name = d->channels[i].driver->name,
								 .state = d->channels[i].state};

	srup_node_get_stats(d->node, &node);
	text = obs_metrics_render(&d->metrics, &g);
	if (!text || obs_metrics_write(d->cfg.metrics_file, text, err, sizeof(err)) != 0)
		srup_log(LOG_WARNING, "%s", text ? err : "metrics: out of memory");
	else
		d->metrics_written = d->metrics.changes;
	free(text);
}

static int on_metrics_timer(sd_event_source *s, uint64_t usec, void *user)
{
	struct observerd *d = user;

	metrics_write(d);
	sd_event_source_set_time(s, usec + (uint64_t)d->cfg.metrics_interval_seconds * 1000000u);
	sd_event_source_set_enabled(s, SD_EVENT_ON);
	return 0;
}

/* The metrics timer for d->cfg (none without a file); the first write is
 * at once. */
static int metrics_start(struct observerd *d)
{
	sd_event_source_disable_unref(d->metrics_timer);
	d->metrics_timer = NULL;
	if (!d->cfg.metrics_file[0])
		return 0;
	if (sd_event_add_time_relative(d->loop, &d->metrics_timer, CLOCK_MONOTONIC, 0, 1000,
				       on_metrics_timer, d) < 0) {
		srup_log(LOG_ERR, "cannot create the metrics timer");
		return -1;
	}
	sd_event_source_set_enabled(d->metrics_timer, SD_EVENT_ON);
	return 0;
}

static int audit_open_for(const struct srup_config *cfg, struct obs_audit **out, char *err,
			  size_t err_len)
{
	char path[sizeof(cfg->state_dir) + 16];
	const struct obs_audit_config acfg = {
		.path = cfg->audit_file[0] ? cfg->audit_file : path,
		.max_bytes = cfg->audit_max_bytes,
		.keep = cfg->audit_keep,
		.fsync = cfg->audit_fsync,
		.journal = cfg->audit_journal,
	};

	snprintf(path, sizeof(path), "%s/audit.log", cfg->state_dir);
	return obs_audit_open(&acfg, out, err, err_len);
}

/* After the node (which creates the state directory). */
static int operator_start(struct observerd *d)
{
	const struct obs_control_ops ops = {
		.status = control_status,
		.list = control_list,
		.cancel = control_cancel,
		.user = d,
	};
	char err[512];

	d->started_ms = now_ms(d);
	if (audit_open_for(&d->cfg, &d->audit, err, sizeof(err)) != 0 ||
	    obs_control_new(d->loop, d->cfg.control_socket, &ops, &d->control, err,
			    sizeof(err)) != 0) {
		srup_log(LOG_ERR, "%s", err);
		return -1;
	}
	return metrics_start(d);
}

static void operator_stop(struct observerd *d)
{
	/* The last counts, taken after the drain. */
	if (d->metrics_timer && d->metrics_written != d->metrics.changes)
		metrics_write(d);
	sd_event_source_disable_unref(d->metrics_timer);
	d->metrics_timer = NULL;
	obs_control_free(d->control);
	d->control = NULL;
	obs_audit_free(d->audit);
	d->audit = NULL;
}

/* Keys and configuration: everything --check-config validates (shared
 * with srup-device; one log line per problem). */
static int load_identity(struct observerd *d, const char *config_path, bool check)
{
	return srup_setup_load(config_path, SRUP_CONFIG_OBSERVER, check, &d->cfg, &d->id);
}

static int start(struct observerd *d)
{
	struct srup_device_borrowed bp = {
		.program = "srup-observerd",
		.cfg = &d->cfg,
		.id = &d->id,
	};
	const struct obs_engine_config ecfg = {
		.window_seconds = d->cfg.window_seconds,
		.max_attempts = d->cfg.max_attempts,
		.max_pending = d->cfg.max_pending,
	};
	char detail[768];
	enum srup_node_err nerr;
	enum srup_device_err derr;
	sigset_t mask;

	if (sd_event_new(&d->loop) < 0) {
		srup_log(LOG_ERR, "cannot create the event loop");
		return -1;
	}
	/* WATCHDOG=1 from the loop itself, at half of WatchdogSec= (nothing
	 * without it), so a wedged loop is what the watchdog catches. */
	if (sd_event_set_watchdog(d->loop, true) < 0)
		srup_log(LOG_WARNING, "cannot arm the systemd watchdog");
	if (sd_event_add_time_relative(d->loop, &d->status_timer, CLOCK_MONOTONIC,
				       STATUS_POLL_USEC, 0, on_status_poll, d) < 0 ||
	    sd_event_source_set_enabled(d->status_timer, SD_EVENT_ON) < 0) {
		srup_log(LOG_ERR, "cannot create the status timer");
		return -1;
	}
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	if (sd_event_add_signal(d->loop, NULL, SIGTERM, on_signal, d) < 0 ||
	    sd_event_add_signal(d->loop, NULL, SIGINT, on_signal, d) < 0 ||
	    sd_event_add_signal(d->loop, NULL, SIGHUP, on_reload_signal, d) < 0) {
		srup_log(LOG_ERR, "cannot watch signals");
		return -1;
	}
	if (sd_event_add_time(d->loop, &d->deadline_timer, CLOCK_MONOTONIC, UINT64_MAX, 1000,
			      on_deadline, d) < 0) {
		srup_log(LOG_ERR, "cannot create the deadline timer");
		return -1;
	}
	sd_event_source_set_enabled(d->deadline_timer, SD_EVENT_OFF);
	if (sd_event_add_time_relative(d->loop, &d->audit_sync_timer, CLOCK_MONOTONIC,
				       AUDIT_SYNC_DELAY_US, AUDIT_SYNC_DELAY_US / 10, on_audit_sync,
				       d) < 0 ||
	    sd_event_source_set_enabled(d->audit_sync_timer, SD_EVENT_OFF) < 0) {
		srup_log(LOG_ERR, "cannot create the audit log's sync timer");
		return -1;
	}

	d->engine = obs_engine_new(&ecfg);
	if (!d->engine) {
		srup_log(LOG_ERR, "cannot create the observation engine");
		return -1;
	}
	bp.loop = d->loop;
	if (srup_device_new_borrowed(&bp, &d->dev, detail, sizeof(detail)) != SRUP_DEVICE_OK) {
		srup_log(LOG_ERR, "%s", detail);
		return -1;
	}
	d->node = srup_device_node(d->dev);
	d->role = srup_device_role(d->dev);
	srup_topic_device(d->cfg.identity_id, d->own_topic);
	if (operator_start(d) != 0)
		return -1;
	/* An OBSERVE_REQ is accepted only from the server this observer is
	 * subordinate to (JOIN-FLOW.md section 4). */
	nerr = srup_node_on(d->node, SRUP_TYPE_OBSERVE_REQUEST, d->cfg.server_id,
			    on_observe_request, d);
	if (nerr != SRUP_NODE_OK) {
		srup_log(LOG_ERR, "cannot register the OBSERVE_REQ handler: %s",
			 srup_node_strerror(nerr));
		return -1;
	}
	if (start_role(d) != 0)
		return -1;

	if (open_channels(d) != 0)
		return -1;
	derr = srup_device_start(d->dev);
	if (derr != SRUP_DEVICE_OK) {
		srup_log(LOG_ERR, "cannot connect to %s: %s", d->cfg.mqtt_broker,
			 srup_device_strerror(derr));
		return -1;
	}
	return 0;
}

static void observerd_free(struct observerd *d)
{
	operator_stop(d);
	for (size_t i = 0; i < d->n_channels; i++)
		radio_channel_free(d->channels[i].ch);
	srup_device_free(d->dev);
	d->dev = NULL;
	d->node = NULL;
	d->role = NULL;
	srup_identity_free(&d->id);
	obs_engine_free(d->engine);
	obs_events_free(&d->events);
	free(d->held.v);
	sd_event_source_unref(d->deadline_timer);
	sd_event_source_disable_unref(d->audit_sync_timer);
	sd_event_source_unref(d->status_timer);
	sd_event_unref(d->loop);
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: srup-observerd --config FILE [--check-config] [--verbose]\n"
		"\n"
		"The SRUP observer: witnesses machine-mediated joins over the channels\n"
		"listed in the configuration (any of sim, ble, nfc, all at once) and\n"
		"reports each outcome to its C2 server.\n"
		"\n"
		"  -c, --config FILE   configuration (INI)\n"
		"      --check-config  validate the configuration and keys, then exit; run\n"
		"                      it as the service user, and before restarting\n"
		"  -v, --verbose       also log debug messages\n"
		"  -h, --help          this text\n"
		"\n"
		"Exit status: 0 stopped by SIGTERM/SIGINT (or the check passed); 1 runtime\n"
		"failure; 2 usage; 78 configuration or key files unusable; 79 deregistered by\n"
		"its server (it stays stopped until the record the log names is removed).\n");
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"check-config", no_argument, NULL, 'k'},
		{"verbose", no_argument, NULL, 'v'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct observerd d = {0};
	const char *config_path = NULL;
	int check_only = 0;
	int opt;
	int rc = 1;

	while ((opt = getopt_long(argc, argv, "c:vh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'k':
			check_only = 1;
			break;
		case 'v':
			srup_log_set_level(LOG_DEBUG);
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return SRUP_EXIT_USAGE;
		}
	}
	if (!config_path || optind != argc) {
		usage(stderr);
		return SRUP_EXIT_USAGE;
	}

	/* A restart cannot mend a configuration: the unit names this status
	 * in RestartPreventExitStatus=. */
	rc = SRUP_EXIT_CONFIG;
	d.config_path = config_path;
	if (load_identity(&d, config_path, check_only) != 0)
		goto out;
	rc = SRUP_EXIT_FAILURE;
	if (check_only) {
		char id[17], list[64];

		srup_id_format16(d.cfg.identity_id, id);
		printf("%s: configuration valid (observer %s, %s %s)\n", config_path, id,
		       d.cfg.n_channels > 1 ? "channels" : "channel",
		       srup_config_channel_list(&d.cfg, ", ", list, sizeof(list)));
		/* Root reads every file; the service does not run as root. */
		if (geteuid() == 0)
			fprintf(stderr, "note: checked as root; check as the service user too "
					"(runuser -u srup-observer -- srup-observerd --config %s "
					"--check-config)\n", config_path);
		rc = 0;
		goto out;
	}
	{
		char why[768];

		if (srup_role_deregistered(&d.cfg, why, sizeof(why))) {
			srup_log(LOG_CRIT, "%s", why);
			rc = SRUP_EXIT_DEREGISTERED;
			goto out;
		}
	}
	if (start(&d) != 0)
		goto out;
	notify_status(&d);
	srup_log(LOG_NOTICE, "srup-observerd started: observer %s on %s, %s %s, window "
		 "%us, max_attempts %u, max_pending %u", d.own_topic, d.cfg.mqtt_broker,
		 d.n_channels > 1 ? "channels" : "channel", d.channel_list, d.cfg.window_seconds,
		 d.cfg.max_attempts, d.cfg.max_pending);
	rc = sd_event_loop(d.loop) < 0 ? SRUP_EXIT_FAILURE : SRUP_EXIT_OK;
	if (d.deregistered) {
		/* Nothing more is sent to a server that revoked us (seed 9.2). */
		rc = SRUP_EXIT_DEREGISTERED;
		srup_log(LOG_NOTICE, "srup-observerd stopped: deregistered by its server");
		goto out;
	}

	/* Drain: observations that cannot continue without this process are
	 * answered now, and every decided RESPONSE is published before exit. */
	obs_engine_fail_all(d.engine, OBS_OUTCOME_SHUTDOWN, now_ms(&d), &d.events);
	apply_events(&d);
	if (srup_node_flush(d.node, SHUTDOWN_FLUSH_MS) != SRUP_NODE_OK)
		srup_log(LOG_WARNING, "some RESPONSEs were not acknowledged by the broker "
			 "before shutdown");
	srup_log(LOG_NOTICE, "srup-observerd stopped");
out:
	observerd_free(&d);
	return rc;
}
