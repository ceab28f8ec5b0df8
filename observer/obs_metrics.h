/* The observer's counters and its join-latency histogram, and their
 * Prometheus text exposition (for node_exporter's textfile collector).
 *
 * The same counters answer the control socket's "status". The file is
 * written whole to a temporary name in its directory and renamed over the
 * old one, so a scrape never sees half a file. */
#ifndef SRUP_OBS_METRICS_H
#define SRUP_OBS_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "obs_engine.h"
#include "srup_node.h"

#define OBS_OUTCOME_COUNT (OBS_OUTCOME_CANCELLED + 1)
#define OBS_LATENCY_BUCKETS 13
#define OBS_METRICS_CHANNELS_MAX 8

/* Upper bounds of the histogram's buckets, in milliseconds (the last is
 * +Inf). */
extern const uint64_t obs_latency_bounds_ms[OBS_LATENCY_BUCKETS - 1];

/* One listening channel's share of the counters. */
struct obs_metrics_channel {
	const char *name;                  /* "ble"; NULL: the slot is unused */
	uint64_t frames_match, frames_mismatch, frames_not_compared;
	uint64_t outcomes[OBS_OUTCOME_COUNT]; /* outcomes a frame of this channel decided */
};

struct obs_metrics {
	uint64_t requests_accepted;        /* OBSERVE_REQs handed to the engine */
	uint64_t requests_refused;         /* answered 0x6F before the engine */
	uint64_t outcomes[OBS_OUTCOME_COUNT];
	uint64_t frames_match, frames_mismatch, frames_not_compared;
	uint64_t audit_errors;
	/* Join latency: OBSERVE_REQ accepted -> RESPONSE published. */
	uint64_t latency_buckets[OBS_LATENCY_BUCKETS]; /* not cumulative */
	uint64_t latency_count;
	uint64_t latency_sum_ms;
	uint64_t changes;                  /* bumped on every change, for "write on change" */
	/* Per channel, in the order configured (obs_metrics_channels). */
	struct obs_metrics_channel channel[OBS_METRICS_CHANNELS_MAX];
	size_t n_channels;
};

/* Names the channels counted per channel (at most OBS_METRICS_CHANNELS_MAX;
 * the names must outlive m). */
void obs_metrics_channels(struct obs_metrics *m, const char *const *names, size_t n);
/* A frame that channel (an index of the names) brought, by its result byte
 * (0x60, 0x6E, 0x00): counted in the totals and the channel's share. */
void obs_metrics_frame(struct obs_metrics *m, size_t channel, uint8_t result);
/* An outcome a frame of channel decided (the totals are
 * obs_metrics_outcome's). */
void obs_metrics_channel_outcome(struct obs_metrics *m, size_t channel, enum obs_outcome outcome);

void obs_metrics_outcome(struct obs_metrics *m, enum obs_outcome outcome, uint64_t latency_ms);

/* A channel's state now: "idle", "listening" or "unavailable". */
struct obs_metrics_channel_state {
	const char *name;
	const char *state;
};

/* The point-in-time values that are no counters of ours. */
struct obs_metrics_gauges {
	size_t pending;
	int broker_connected;
	const char *brokers;         /* the configured list, blank-separated (may be NULL) */
	const char *broker_current;  /* the entry the session is on (NULL: none) */
	int channel_listening;             /* without channels[]: the one channel */
	const struct obs_metrics_channel_state *channels; /* per channel, labelled */
	size_t n_channels;
	uint64_t uptime_seconds;
	const struct srup_node_stats *node;
};

/* The exposition text (malloc'd), or NULL if out of memory. */
char *obs_metrics_render(const struct obs_metrics *m, const struct obs_metrics_gauges *g);

/* Writes text to path through path.tmp and rename. Returns 0, or -1 with
 * err set. */
int obs_metrics_write(const char *path, const char *text, char *err, size_t err_len);

#endif
