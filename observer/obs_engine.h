/* The observation engine: the decision rules of OBSERVATION-CHANNEL.md
 * section 2 as a pure state machine over pending observations keyed by
 * joining device ID. No I/O, no clock of its own, no logging: every input
 * carries "now" (milliseconds, monotonic) and every consequence is an event
 * appended to the caller's event list.
 *
 * Secrets (the confirmation values, and the wrong values remembered to
 * count distinct attempts) are wiped when an observation ends. */
#ifndef SRUP_OBS_ENGINE_H
#define SRUP_OBS_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define OBS_VALUE_MAX 256u
#define OBS_TOKEN_MAX 256u

struct obs_engine_config {
	unsigned window_seconds; /* deadline after the request (default 120) */
	unsigned max_attempts;   /* distinct wrong values before 0x6E (default 3) */
	unsigned max_pending;    /* pending observations held at most (default 1000) */
};

enum obs_event_kind {
	OBS_EVENT_RESPOND,        /* send RESPONSE status with token */
	OBS_EVENT_LISTEN_START,   /* the first observation became pending */
	OBS_EVENT_LISTEN_STOP,    /* the last pending observation ended */
};

/* Why an observation ended (for the one log line per outcome). */
enum obs_outcome {
	OBS_OUTCOME_VALID,        /* 0x60 */
	OBS_OUTCOME_INVALID,      /* 0x6E after max_attempts distinct wrong values */
	OBS_OUTCOME_EXPIRED_INVALID, /* 0x6E at the deadline after a mismatch */
	OBS_OUTCOME_EXPIRED,      /* 0x6F at the deadline, nothing received */
	OBS_OUTCOME_SUPERSEDED,   /* 0x6F, a newer request for the same device */
	OBS_OUTCOME_OVERFLOW,     /* 0x6F at once, max_pending reached */
	OBS_OUTCOME_RADIO_LOST,   /* 0x6F, the channel became unavailable */
	OBS_OUTCOME_SHUTDOWN,     /* 0x6F, the daemon is stopping */
	OBS_OUTCOME_CANCELLED,    /* 0x6F, an operator cancelled it */
};

const char *obs_outcome_name(enum obs_outcome outcome);

struct obs_event {
	enum obs_event_kind kind;
	/* OBS_EVENT_RESPOND only: */
	uint8_t status;           /* 0x60, 0x6E, 0x6F */
	enum obs_outcome outcome;
	uint64_t device_id;
	uint8_t token[OBS_TOKEN_MAX];
	size_t token_len;
	unsigned attempts;        /* distinct wrong values seen */
	uint64_t duration_ms;     /* from request to outcome */
	int channel;              /* the channel whose frame decided it (valid, invalid),
				   * as passed to obs_engine_frame; OBS_CHANNEL_NONE
				   * when no frame did (deadline, superseded, ...) */
};

#define OBS_CHANNEL_NONE (-1)

/* A growable list the engine appends to; the caller empties it (len = 0)
 * after handling. */
struct obs_events {
	struct obs_event *ev;
	size_t len, cap;
};
void obs_events_clear(struct obs_events *evs);  /* len = 0, wipes tokens */
void obs_events_free(struct obs_events *evs);

struct obs_engine;

struct obs_engine *obs_engine_new(const struct obs_engine_config *cfg);
void obs_engine_free(struct obs_engine *e); /* wipes every secret */
/* A reloaded configuration: applies to observations requested from now on;
 * pending ones keep their deadline and max_attempts. Returns 0, or -1 (and
 * changes nothing) on a zero value. */
int obs_engine_set_config(struct obs_engine *e, const struct obs_engine_config *cfg);

/* A decrypted OBSERVE_REQ. value_len 1..OBS_VALUE_MAX, token_len
 * 0..OBS_TOKEN_MAX. Supersedes a pending observation for the same device;
 * at max_pending answers 0x6F at once. Returns 0, or -1 on bad arguments or
 * no memory (nothing changed, no event). */
int obs_engine_request(struct obs_engine *e, uint64_t device_id, const uint8_t *value,
		       size_t value_len, const uint8_t *token, size_t token_len, uint64_t now_ms,
		       struct obs_events *out);

/* A well-formed frame from a channel. Returns the result byte for the
 * channel: 0x60 match, 0x6E mismatch, 0x00 no observation pending for that
 * device (not compared). Returns 0x00 also if out could not grow.
 * channel (>= 0) only labels the outcome it decides: a frame counts the
 * same whichever channel brought it, and distinct wrong values are
 * counted over all channels (OBSERVATION-CHANNEL.md section 2). */
uint8_t obs_engine_frame(struct obs_engine *e, int channel, uint64_t device_id,
			 const uint8_t *value, size_t value_len, uint64_t now_ms,
			 struct obs_events *out);

/* Time passes: ends every observation whose deadline is <= now. */
void obs_engine_tick(struct obs_engine *e, uint64_t now_ms, struct obs_events *out);

/* Ends every pending observation with 0x6F (radio lost, shutdown). */
void obs_engine_fail_all(struct obs_engine *e, enum obs_outcome why, uint64_t now_ms,
			 struct obs_events *out);

/* Ends the pending observation for device_id with 0x6F (an operator's
 * cancel). Deadlines due at now are applied first, as for a frame. Returns
 * 1 if it was pending and is answered, 0 if nothing is pending for it, -1
 * on bad arguments or no memory (nothing changed). */
int obs_engine_cancel(struct obs_engine *e, uint64_t device_id, uint64_t now_ms,
		      struct obs_events *out);

/* What an operator may see of a pending observation (never its value). */
struct obs_pending_info {
	uint64_t device_id;
	uint64_t started_ms;
	uint64_t deadline_ms;
	unsigned attempts;        /* distinct wrong values seen */
};

/* Copies up to max pending observations into out, earliest deadline
 * first; returns how many were copied. */
size_t obs_engine_list(const struct obs_engine *e, struct obs_pending_info *out, size_t max);

/* Earliest deadline of a pending observation, or UINT64_MAX if none. */
uint64_t obs_engine_next_deadline(const struct obs_engine *e);
size_t obs_engine_pending(const struct obs_engine *e);

#endif
