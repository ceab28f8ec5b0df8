/* The SRUP node: one identity talking SRUP over MQTT.
 *
 * The observer daemon, the device agent and the test server peer are the
 * same node with different roles, handlers and topic rules (JOIN-FLOW.md).
 *
 * Threads: Paho's callbacks only queue incoming payloads (and record them,
 * see below) and wake the sd-event loop through an eventfd; the receive
 * pipeline and every handler run on the loop's thread. Once connected, a
 * node also keeps Paho's receive thread from its idle sleep (paho_waker.h),
 * so that no message waits for the library.
 *
 * Receive pipeline (JOIN-FLOW.md section 4), in this order, each failure
 * logged with what was wrong and the message dropped:
 *   topic is one this role handles -> bounded decode (size, structure,
 *   version, known type) -> sender is not ourselves -> sender key known ->
 *   signature -> a handler is registered and the sender is allowed to send
 *   that type -> sequence ID greater than the last accepted from that
 *   sender -> last accepted updated and persisted -> handler runs.
 * Messages drained together (up to a batch) are checked one by one, their
 * accepted IDs persisted by one write, then handled in arrival order; a
 * handler never runs before its message's ID is written to the sequence
 * store. That write is also on disk (fdatasync) before the handlers run,
 * unless every message of the batch has an inbound record (below):
 * then the IDs are synced within 50 ms (one fdatasync for the batches and
 * notes of that time, the state flush), and the batch's records are
 * released only after that, so that at every moment either a message's ID
 * is on disk or its record is. After a crash or a power loss, while the
 * record is there the message comes back (ahead of anything new) and is
 * handed over again, as below; once it is gone, its ID is on disk and a
 * replayed copy is dropped.
 *
 * At-least-once: a QoS 1 message is written to <state_dir>/inbound, and
 * that record is on disk before the broker gets its PUBACK (the loop may
 * already be handling the message while it is flushed: a power loss before
 * the PUBACK makes the broker deliver it again). The record stays until the
 * message was dropped for a stated reason, or accepted and its handler
 * returned (or the handler released what it held), and its ID, if
 * committed without a sync, is on disk (at most 256 records wait for
 * that). Records a crash left behind go through the pipeline again at the
 * next srup_node_new; one accepted before the crash is handed to its
 * handler again without the replay rule. So a handler may see the same
 * message twice across a crash: it must be idempotent, or make what it did
 * durable and recognise it. */
#ifndef SRUP_NODE_H
#define SRUP_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <systemd/sd-event.h>

#include "srup.h"
#include "srup_keys.h"

enum srup_node_err {
	SRUP_NODE_OK = 0,
	SRUP_NODE_E_NOMEM,
	SRUP_NODE_E_ARG,
	SRUP_NODE_E_MQTT,       /* Paho refused or failed (detail says why) */
	SRUP_NODE_E_STATE,      /* state directory or sequence file unusable */
	SRUP_NODE_E_PROTOCOL,   /* encoding or signing failed */
	SRUP_NODE_E_TIMEOUT,
	SRUP_NODE_E__COUNT
};

const char *srup_node_strerror(enum srup_node_err err);

enum srup_node_role {
	SRUP_NODE_ROLE_DEVICE, /* subscribes SRUP/<own id>, exact topic only */
	SRUP_NODE_ROLE_SERVER, /* subscribes SRUP/servers/<own id>/# and SRUP/<dev>/# per device */
};

struct srup_node_config {
	enum srup_node_role role;
	uint64_t id;
	/* One broker URL or several separated by blanks (srup_broker_list.h):
	 * "tcp://127.0.0.1:1883", "mqtt://host:port", or "mqtts://host:port"
	 * (then TLS with the files below, the same for every entry; ca_file
	 * required). The node connects to the first that answers, trying
	 * the list from its first entry after every loss (srup_node_connect). */
	char broker[256];
	char ca_file[256];
	char cert_file[256];
	char key_file[256];
	char state_dir[256];  /* sequence store lives here; created if missing */
	unsigned keepalive_seconds;          /* default 20 */
	unsigned reconnect_min_seconds;      /* default 1 */
	unsigned reconnect_max_seconds;      /* default 30 */
};

struct srup_node;

/* Topic strings (IDs as lowercase hex without leading zeros). */
#define SRUP_TOPIC_MAX 64
void srup_topic_device(uint64_t device, char out[SRUP_TOPIC_MAX]);              /* SRUP/<d> */
void srup_topic_server_join(uint64_t server, uint64_t device, char out[SRUP_TOPIC_MAX]); /* SRUP/servers/<s>/<d> */

#define SRUP_NODE_ANY_SENDER UINT64_MAX

/* A verified, fresh message for this node. msg and topic are borrowed for
 * the call. A handler may send and register handlers, but must not free
 * the node (the batch it belongs to is still being walked). */
typedef void (*srup_node_handler)(struct srup_node *node, const struct srup_msg *msg,
				  const char *topic, void *user);

/* Create the node on loop. identity is the node's private key (the node
 * takes a reference); peers resolves sender keys (borrowed, must outlive the
 * node). Loads the sequence store from state_dir: a corrupt file is an
 * error naming it. Does not connect yet. */
enum srup_node_err srup_node_new(sd_event *loop, const struct srup_node_config *cfg,
				 EVP_PKEY *identity, struct srup_keystore *peers,
				 struct srup_node **out, char *detail, size_t detail_len);
void srup_node_free(struct srup_node *node);

/* Register the handler for one message type. allowed_sender is the only
 * sender accepted for it, or SRUP_NODE_ANY_SENDER (any sender whose key the
 * store knows). A type with no handler is dropped (logged). */
enum srup_node_err srup_node_on(struct srup_node *node, uint8_t type, uint64_t allowed_sender,
				srup_node_handler handler, void *user);

/* Server role: also handle SRUP/<device> and SRUP/<device>/#. */
enum srup_node_err srup_node_watch_device(struct srup_node *node, uint64_t device);

/* Device role: extra topics (a group's SRUP/groups/<id>), matched exactly,
 * whose messages go through the same pipeline as the own topic's.
 * add_topic subscribes now if the session is up, and with every
 * (re)connect; done (may be NULL) runs on the loop with ok = false if the
 * broker refused it (the topic is then removed again), ok = true once it
 * was granted, or at once when the session is not up or is lost before
 * the answer (it is subscribed with the next connect's round).
 * remove_topic stops handling the topic at once
 * and unsubscribes. */
#define SRUP_NODE_EXTRA_TOPIC_MAX 128
typedef void (*srup_node_topic_done)(struct srup_node *node, const char *topic, bool ok,
				     void *user);
enum srup_node_err srup_node_add_topic(struct srup_node *node, const char *topic,
				       srup_node_topic_done done, void *user);
enum srup_node_err srup_node_remove_topic(struct srup_node *node, const char *topic);

/* Connect (asynchronously). Every attempt walks the broker list from its
 * first entry and takes the first that answers; after a failed attempt
 * the next comes after a bounded, jittered backoff (reconnect_min_seconds
 * doubling up to reconnect_max_seconds), after a lost connection at once.
 * A session that is up is kept, whichever entry it is on. Every connect
 * subscribes everything again (another broker holds no session), and a
 * publish the last broker never acknowledged is sent on the next one.
 * on_connected (may be NULL) runs on the loop each time the session is
 * (re)established and subscriptions are in place. */
enum srup_node_err srup_node_connect(struct srup_node *node,
				     void (*on_connected)(struct srup_node *node, void *user),
				     void *user);
bool srup_node_is_connected(const struct srup_node *node);

/* The URL (as configured) of the broker the session is up with, or NULL
 * while there is none. */
const char *srup_node_broker(const struct srup_node *node);

/* fn (may be NULL) runs on the loop each time an established connection
 * is lost, before the node tries the list again. */
void srup_node_on_disconnected(struct srup_node *node,
			       void (*fn)(struct srup_node *node, void *user), void *user);

/* Send msg to peer on topic: the node sets sender ID and version, takes the
 * next sequence ID for that peer (max(last sent, last accepted) + 1,
 * persisted before publishing), signs with the identity key and publishes
 * at QoS 1. Queued by Paho while the broker is unreachable. */
enum srup_node_err srup_node_send(struct srup_node *node, struct srup_msg *msg, uint64_t peer,
				  const char *topic);

typedef void (*srup_node_sent_fn)(struct srup_node *node, bool acknowledged, void *user);

/* As srup_node_send; done then runs on the loop once the broker
 * acknowledged the publish (true) or the MQTT client gave it up (false),
 * or at the latest from srup_node_free (which tells what it knows): it runs
 * once per send that returned SRUP_NODE_OK. The publish is handed to the
 * MQTT client at once, also from a handler. */
enum srup_node_err srup_node_send_tracked(struct srup_node *node, struct srup_msg *msg,
					  uint64_t peer, const char *topic, srup_node_sent_fn done,
					  void *user);

/* From a handler: keep the message being handled past the handler's
 * return, until srup_node_release(hold). Until then every start of a node
 * on the same state directory hands it to its handler again (as accepted,
 * without the replay rule), and that handler's srup_node_hold returns the
 * same hold. Returns 0 (nothing held) for a message that has no record
 * (QoS 0, or the record could not be written). */
uint64_t srup_node_hold(struct srup_node *node);
void srup_node_release(struct srup_node *node, uint64_t hold);

/* What was decided for a held message (up to SRUP_NODE_NOTE_MAX bytes;
 * replaces an earlier note), recorded before acting on it: written into
 * the message's record before this returns, so it survives the process
 * being killed at any later moment, and on disk (fdatasync) within 50 ms,
 * together with the other notes and the accepted IDs of that time (at most
 * 256 notes wait). Every later start hands the message over with its note
 * (srup_node_held_note from its handler), so that what was decided is
 * repeated, never decided again; only a power loss within those 50 ms can
 * bring the message back without it, to be decided again. Goes with the
 * hold's release. */
#define SRUP_NODE_NOTE_MAX 64
enum srup_node_err srup_node_hold_note(struct srup_node *node, uint64_t hold, const void *note,
				       size_t len);
/* From a handler: the note recorded for the message being handled before a
 * restart, copied to out; its length, or 0 if none (or cap is too small). */
size_t srup_node_held_note(const struct srup_node *node, void *out, size_t cap);

/* Wait (running nothing else) until every published message was
 * acknowledged by the broker, or timeout_ms, then handle what the loop has
 * queued (publish outcomes for srup_node_send_tracked, messages that
 * arrived meanwhile). For clean shutdown. */
enum srup_node_err srup_node_flush(struct srup_node *node, unsigned timeout_ms);

uint64_t srup_node_id(const struct srup_node *node);

/* Why the receive pipeline dropped a message (one counter each). */
enum srup_node_drop {
	SRUP_NODE_DROP_TOPIC,              /* not a topic of this role, or holds a NUL */
	SRUP_NODE_DROP_SIZE,               /* payload over the limit */
	SRUP_NODE_DROP_DECODE,             /* not a well-formed SRUP message */
	SRUP_NODE_DROP_UNSIGNED,           /* a type that carries no signature */
	SRUP_NODE_DROP_UNKNOWN_SENDER,     /* no key for the sender */
	SRUP_NODE_DROP_SIGNATURE,          /* bad signature */
	SRUP_NODE_DROP_NO_HANDLER,         /* a type this node does not handle */
	SRUP_NODE_DROP_SENDER_NOT_ALLOWED, /* that sender may not send that type */
	SRUP_NODE_DROP_REPLAY,             /* sequence ID not above the last accepted */
	SRUP_NODE_DROP_PERSIST,            /* its sequence ID could not be stored */
	SRUP_NODE_DROP_QUEUE_FULL,         /* the receive queue was full (QoS 0 only) */
	SRUP_NODE_DROP__COUNT
};
/* A short name for metrics and status ("signature", "replay", ...). */
const char *srup_node_drop_name(enum srup_node_drop why);

/* Counters for logs and tests. */
struct srup_node_stats {
	uint64_t received;
	uint64_t accepted;
	uint64_t dropped;    /* every pipeline rejection */
	uint64_t dropped_by[SRUP_NODE_DROP__COUNT]; /* the same, by reason */
	uint64_t sent;
	uint64_t ignored_own; /* our own messages echoed back (not counted as dropped) */
};
void srup_node_get_stats(const struct srup_node *node, struct srup_node_stats *out);

#endif
