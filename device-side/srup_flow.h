/* The device-initiated flows (JOIN-FLOW.md; seed 7.1, 7.2, 8.1, 9.1), one
 * at a time, asynchronously on the node's sd-event loop:
 *
 *   observed join   OBS_JOIN_REQ on SRUP/servers/<s>/<d> naming the
 *                   observer -> OBS_JOIN_RESP opened -> the confirmation
 *                   frame presented on the channel (or shown) -> verdict
 *   human join      HM_JOIN_REQ on SRUP/servers/<s>/<d> -> HM_JOIN_RESP
 *                   opened -> the value shown -> verdict
 *   unmediated join JOIN_REQ on SRUP/servers/<s>/<d> -> verdict
 *   resign          RESIGN_REQ on SRUP/<d> -> verdict
 *   deregister      DEREGISTER_REQ on SRUP/<d> -> verdict; after
 *                   DEREGISTER_SUCCESS the server's key is removed from
 *                   the peer store and its file ([server] public_key)
 *                   unlinked
 *
 * A verdict is a RESPONSE from the configured server (the node's pipeline
 * checks sender, signature and freshness) echoing the request's token or,
 * for the two joins with a response stage, the join response's.
 *
 * Messages: the flow registers no node handler. Its owner registers one
 * per type srup_flow_hears() names (sender: the configured server) and
 * offers each message to the running flow with srup_flow_offer() first;
 * what the flow does not take stays the owner's (a device role with
 * [server] join = auto hears its own JOIN_REQ's verdict the same way).
 * srup_node_on keeps one handler per type, so this is how a flow and a
 * role share RESPONSE.
 *
 * Presenting runs the channel's blocking presenter on a thread of its
 * own, one attempt at a time; the loop is never blocked. A frame the
 * observer answers "not compared" (it may not hold the OBSERVE_REQ yet)
 * is presented again after a pause, for up to 30 s, never past the flow's
 * timeout. A presenter cannot be interrupted: when the flow ends during an
 * attempt, the attempt finishes on its thread (bounded by its own
 * timeout) and its result is dropped. A verdict that comes during an
 * attempt (the observer told the server before the presenter heard back)
 * waits for that attempt, up to 500 ms, so that PRESENTED comes before
 * the end; the flow does not present again after it.
 *
 * Threads: everything, callbacks included, on the loop's thread. */
#ifndef SRUP_FLOW_H
#define SRUP_FLOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <systemd/sd-event.h>

#include "radio.h"
#include "srup.h"
#include "srup_config.h"
#include "srup_device.h"
#include "srup_keys.h"
#include "srup_node.h"

enum srup_flow_kind {
	SRUP_FLOW_OBSERVED,
	SRUP_FLOW_HUMAN,
	SRUP_FLOW_UNMEDIATED,
	SRUP_FLOW_RESIGN,
	SRUP_FLOW_DEREGISTER,
	SRUP_FLOW__COUNT
};

/* One request to the server and the RESPONSE statuses that answer it. */
struct srup_flow_exchange {
	const char *name;      /* the request, as logs name it: "OBS_JOIN_REQ" ... */
	uint8_t type;          /* SRUP_TYPE_*_REQUEST */
	uint8_t response_type; /* OBS_JOIN_RESP / HM_JOIN_RESP, or 0: none */
	bool on_server_topic;  /* SRUP/servers/<s>/<d> (joins), else SRUP/<d> */
	uint8_t success;       /* the verdict statuses */
	uint8_t refused;
	uint8_t failed;
};

/* NULL for an unknown kind. */
const struct srup_flow_exchange *srup_flow_exchange(enum srup_flow_kind kind);

/* Where a flow was when it ended. */
enum srup_flow_stage {
	SRUP_FLOW_STAGE_SENDING,    /* the request has not left yet */
	SRUP_FLOW_STAGE_RESPONSE,   /* waiting for OBS_JOIN_RESP / HM_JOIN_RESP */
	SRUP_FLOW_STAGE_PRESENTING, /* presenting the frame to the observer */
	SRUP_FLOW_STAGE_VERDICT,    /* waiting for the verdict */
	SRUP_FLOW_STAGE_DONE,
};

/* After DEREGISTER_SUCCESS: what became of the [server] public_key file. */
enum srup_flow_key_file {
	SRUP_FLOW_KEY_FILE_UNTOUCHED,    /* no deregistration */
	SRUP_FLOW_KEY_FILE_DELETED,
	SRUP_FLOW_KEY_FILE_ALREADY_GONE,
	SRUP_FLOW_KEY_FILE_NOT_DELETED,  /* unlink failed: detail says why */
};

struct srup_flow_result {
	enum srup_device_outcome outcome;
	uint8_t status;            /* the verdict's status (ACCEPTED, REFUSED) */
	enum srup_device_err err;  /* FAILED: why (OK otherwise) */
	/* One line. A verdict: "JOIN_SUCCESS (0x50) after 12.3 ms"; a failure:
	 * what failed ("no answer to RESIGN_REQ from the server", ...); a
	 * deregistration whose key file stayed: why. */
	const char *detail;
	enum srup_flow_stage stage;   /* where the flow ended (for FAILED) */
	enum srup_flow_key_file key_file;
	double elapsed_ms;            /* a verdict: since the request was sent */
};

struct srup_flow;

/* Progress, for the owner's log or display. */
enum srup_flow_event_kind {
	SRUP_FLOW_EVENT_SENT,       /* the request was handed to the node: topic, token */
	SRUP_FLOW_EVENT_PRESENTING, /* OBS_JOIN_RESP opened; presenting on channel */
	SRUP_FLOW_EVENT_PRESENTED,  /* the observer took the frame: result */
};

struct srup_flow_event {
	enum srup_flow_event_kind kind;
	const char *topic;    /* SENT */
	const char *token;    /* SENT: the request's token (text) */
	const char *channel;  /* PRESENTING, PRESENTED */
	/* PRESENTED: RADIO_RESULT_MATCH / _MISMATCH, or _NOT_COMPARED when
	 * the channel cannot learn the result (a tag was read). */
	uint8_t result;
};

typedef void (*srup_flow_event_fn)(struct srup_flow *flow, const struct srup_flow_event *ev,
				   void *user);
/* The value to show: human joins (value_text as a person compares it:
 * printable ASCII as is, else lowercase hex) and observed joins without a
 * channel (value_text: lowercase hex, to present by other means);
 * value_grouped is value_text in blank-separated groups of four. Both are
 * wiped after the call. Must not free the flow. */
typedef void (*srup_flow_show_fn)(struct srup_flow *flow, const char *value_text,
				  const char *value_grouped, void *user);
/* Runs exactly once per flow srup_flow_new returned, on the loop (from
 * srup_flow_free too, if the flow had not ended). result is valid for the
 * call. May free the flow. */
typedef void (*srup_flow_done_fn)(struct srup_flow *flow, const struct srup_flow_result *result,
				  void *user);

struct srup_flow_params {
	enum srup_flow_kind kind;
	sd_event *loop;                /* borrowed */
	struct srup_node *node;        /* borrowed; a device-role node */
	/* Borrowed: [identity] id, [server] id and public_key (the file a
	 * deregistration deletes), the channel sections, the file's name. */
	const struct srup_config *cfg;
	EVP_PKEY *private_key;         /* borrowed: opens the join responses */
	struct srup_keystore *peers;   /* borrowed: the node's; a deregistration removes the server */
	uint64_t observer;             /* OBSERVED: the observer's ID */
	/* OBSERVED: the channel to present on, or NULL to show the value
	 * (show) instead. */
	const struct radio_channel_driver *channel;
	unsigned timeout_ms;           /* the whole flow, presenting included; 0: no bound */
	/* How failures name the timeout ("--timeout"); NULL: "the timeout". */
	const char *timeout_name;
	srup_flow_show_fn show;        /* HUMAN, and OBSERVED without channel: required */
	srup_flow_event_fn event;      /* optional */
	srup_flow_done_fn done;        /* required */
	void *user;
};

/* Start a flow: its timeout counts from now; the request is sent now if
 * the node is connected, else with srup_flow_connected. Returns
 * SRUP_DEVICE_E_ARG (a missing or inconsistent parameter; detail says
 * which) or SRUP_DEVICE_E_NOMEM with *out NULL and done not called. */
enum srup_device_err srup_flow_new(const struct srup_flow_params *params, struct srup_flow **out,
				   char *detail, size_t detail_len);

/* Call from the node's on_connected: the request leaves with the first
 * connect (once; a later connect changes nothing). */
void srup_flow_connected(struct srup_flow *flow);

/* The message types a flow may take: RESPONSE, OBS_JOIN_RESP,
 * HM_JOIN_RESP. */
bool srup_flow_hears(uint8_t type);

/* Offer a message the node accepted from the configured server (from the
 * owner's handler). true: the flow's (an answer to its request, or its
 * join response), handled; the owner does nothing more with it. false:
 * not the flow's (another request's token; a join response it does not
 * wait for); the owner handles or logs it. flow may be NULL (false). */
bool srup_flow_offer(struct srup_flow *flow, const struct srup_msg *msg);

/* The request's name ("RESIGN_REQ"), for the owner's logs. */
const char *srup_flow_request_name(const struct srup_flow *flow);
/* Milliseconds since the request was sent (0 before). */
double srup_flow_elapsed_ms(const struct srup_flow *flow);
bool srup_flow_ended(const struct srup_flow *flow);

/* Ends the flow: a flow still running completes with FAILED,
 * SRUP_DEVICE_E_STATE_ORDER, "cancelled". NULL is ignored. */
void srup_flow_free(struct srup_flow *flow);

/* ---- parts, for tests ------------------------------------------------------- */

/* The verdict a RESPONSE is for exchange ex: 1 success, 0 refusal or
 * failure, -1 none of ex's statuses. */
int srup_flow_verdict(const struct srup_flow_exchange *ex, uint8_t status);

/* Whether token is the pending one: the request's (request, text) or the
 * join response's (response, response_len; may be empty). Never matches
 * an empty token. */
bool srup_flow_token_matches(const struct srup_bytes *token, const char *request,
			     const uint8_t *response, size_t response_len);

/* The value as a person compares it (see srup_flow_show_fn): text into
 * text (2 * len + 1 bytes), grouped into grouped (3 * len + 1 bytes).
 * as_hex forces hex. */
void srup_flow_value_text(const uint8_t *value, size_t len, bool as_hex, char *text,
			  char *grouped);

#endif
