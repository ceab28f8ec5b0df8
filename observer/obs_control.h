/* The control socket of srup-observerd: a UNIX stream socket that answers
 * srup-observerctl (requests in obs_control_proto.h, answers one JSON line
 * each).
 *
 * Never blocks the loop: every connection is an sd-event io source with a
 * non-blocking descriptor; while an answer is still being written the
 * connection is not read, so each holds at most one request and one answer
 * (answers are bounded: list shows at most OBS_CTL_LIST_MAX entries); a
 * client that makes no progress for OBS_CTL_IDLE_SECONDS is closed, and at
 * most OBS_CTL_CONNECTIONS_MAX are open at once.
 *
 * Access: the socket is mode 0660, group srup-observer when that group
 * exists; each peer is checked with SO_PEERCRED (and SO_PEERGROUPS): root,
 * the daemon's own user, or a member of the socket's group. */
#ifndef SRUP_OBS_CONTROL_H
#define SRUP_OBS_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#include "obs_engine.h"
#include "obs_metrics.h"
#include "srup_node.h"

#define OBS_CTL_CONNECTIONS_MAX 16u
#define OBS_CTL_IDLE_SECONDS 30u
#define OBS_CTL_LIST_MAX 1000u
#define OBS_CTL_GROUP "srup-observer"

/* What "status" shows; filled by the daemon on each request. */
struct obs_control_status {
	uint64_t identity_id, server_id;
	const char *broker;          /* the configured list */
	bool broker_connected;
	const char *broker_current;  /* the entry the session is on (NULL: none) */
	const char *channel;        /* the channels listed, "ble nfc" */
	const char *channel_state;  /* over all: listening (one listens), unavailable
				     * (none can), else idle */
	/* Each channel (may be none: then only the above). */
	struct obs_control_channel {
		const char *kind;   /* sim, ble, nfc */
		const char *state;  /* idle, listening, unavailable */
	} channels[OBS_METRICS_CHANNELS_MAX];
	size_t n_channels;
	size_t pending;
	uint64_t uptime_seconds;
	const struct obs_metrics *metrics;
	struct srup_node_stats node;
	/* Keys a reload found changed that take effect only at a restart,
	 * "[mqtt] broker, [observation] channel" (NULL or empty: none). */
	const char *restart_needed;
};

/* One decided observation, for "history". */
struct obs_history_entry {
	uint64_t time_unix_ms;
	uint64_t device_id;
	uint8_t status;
	enum obs_outcome outcome;
	unsigned attempts;
	uint64_t duration_ms;
};

struct obs_control_ops {
	void (*status)(struct obs_control_status *out, void *user);
	/* Up to max pending observations, earliest deadline first; *total is
	 * how many are pending, *now_ms the engine's clock. */
	size_t (*list)(struct obs_pending_info *out, size_t max, size_t *total, uint64_t *now_ms,
		       void *user);
	/* 1 answered 0x6F, 0 nothing pending for it, -1 failed. */
	int (*cancel)(uint64_t device_id, void *user);
	void *user;
};

struct obs_control;

/* Creates the socket at path (its directory is created if missing; a
 * stale socket is replaced, a live one is an error). On error returns -1
 * with err set. */
int obs_control_new(sd_event *loop, const char *path, const struct obs_control_ops *ops,
		    struct obs_control **out, char *err, size_t err_len);
/* Closes every connection and removes the socket. */
void obs_control_free(struct obs_control *c);

/* Remembers a decided observation (a ring of OBS_CTL_HISTORY_MAX). */
void obs_control_note(struct obs_control *c, const struct obs_history_entry *entry);

/* The answer to one request line (len bytes, no newline), as a malloc'd
 * JSON text without newline; NULL only if out of memory. */
char *obs_control_answer(struct obs_control *c, const char *line, size_t len);

#endif
