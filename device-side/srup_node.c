#include "srup_node.h"
#include "srup_detail.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "srup_inbound.h"
#include "srup_log.h"
#include "srup_msg_layout.h"
#include "srup_receive.h"
#include "srup_seqstore.h"
#include "srup_transport.h"

#define NODE_PAYLOAD_MAX SRUP_INBOUND_PAYLOAD_MAX
_Static_assert(SRUP_NODE_NOTE_MAX <= SRUP_INBOUND_NOTE_MAX, "a note fits its record");
_Static_assert(SRUP_NODE_NOTE_MAX <= SRUP_TRANSPORT_NOTE_MAX, "a note fits its message");
_Static_assert(SRUP_INBOUND_PAYLOAD_MAX == SRUP_TRANSPORT_PAYLOAD_MAX &&
		       SRUP_INBOUND_TOPIC_MAX == SRUP_TRANSPORT_TOPIC_MAX,
	       "what the transport queues fits a record");
/* The pipeline's reasons are the node's, in the same order. */
_Static_assert(SRUP_RECEIVE_DROP_TOPIC == (int)SRUP_NODE_DROP_TOPIC &&
		       SRUP_RECEIVE_DROP_SIGNATURE == (int)SRUP_NODE_DROP_SIGNATURE &&
		       SRUP_RECEIVE_DROP_REPLAY == (int)SRUP_NODE_DROP_REPLAY &&
		       SRUP_RECEIVE_DROP_PERSIST == (int)SRUP_NODE_DROP_PERSIST &&
		       SRUP_RECEIVE_DROP__COUNT == (int)SRUP_NODE_DROP_QUEUE_FULL,
	       "drop reasons match");
_Static_assert(SRUP_RECEIVE_TOPIC_MAX == SRUP_TOPIC_MAX, "topic sizes match");
_Static_assert(SRUP_RECEIVE_ANY_SENDER == SRUP_NODE_ANY_SENDER, "any sender matches");
#define NODE_TOPIC_LEN_MAX SRUP_INBOUND_TOPIC_MAX

/* Records released after the accepted IDs' sync, and notes written
 * without one, at most this many waiting for it. */
#define NODE_RELEASES_PENDING_MAX 256u
#define NODE_NOTES_UNSYNCED_MAX 256u
/* How long accepted IDs and notes written without a sync wait for it. */
#define NODE_STATE_FLUSH_DELAY_US (50u * 1000u)
#define NODE_DEFAULT_KEEPALIVE 20u
#define NODE_DEFAULT_RECONNECT_MIN 1u
#define NODE_DEFAULT_RECONNECT_MAX 30u

/* What the transport's thread may know of senders, to write no record for
 * a message the loop will certainly drop (worth_a_record): the loop notes
 * each sender's key as it looks it up (a reference of its own), or its
 * absence. Own lock: the transport's thread verifies with a key outside
 * it. */
struct node_senders {
	uint64_t own_id;
	pthread_mutex_t lock;
	struct node_sender {
		uint64_t id;
		EVP_PKEY *key;      /* NULL: no key for it when last looked up */
		uint64_t noted_ms;  /* CLOCK_MONOTONIC */
		/* Last accepted sequence ID on disk (committed: it never goes
		 * back, unlike one only staged); 0: none known. */
		uint64_t committed_seq;
	} slot[64];
	uint64_t refused_unrecorded; /* messages given no record: certain drops */
};

struct srup_node {
	sd_event *loop;
	/* The MQTT session (srup_transport.h): everything of the client
	 * library lives behind it. */
	struct srup_transport tp;
	struct srup_inbound *records;      /* <state_dir>/inbound */
	struct node_senders senders;
	struct srup_transport_message *handling; /* the message whose handler runs */

	struct srup_node_config cfg;
	char own_topic[SRUP_TOPIC_MAX];      /* SRUP/<id> */
	char server_prefix[SRUP_TOPIC_MAX];  /* SRUP/servers/<id>/ */
	char id_text[17];
	char client_id[64];

	EVP_PKEY *identity;
	struct srup_keystore *peers;
	struct srup_seqstore *seq;
	/* A batch whose every message has an inbound record (on disk before
	 * the message's PUBACK) commits its accepted IDs without an
	 * fdatasync (the records prove the messages until then); the IDs are
	 * synced within 50 ms, and only after that are those records
	 * released: a record gone from the disk before its ID is there would
	 * let a replayed copy in after a power loss. */
	bool batch_unrecorded;            /* a message of the batch has no record */
	sd_event_source *flush_source; /* the state flush's timer, on while IDs or notes are unsynced */
	uint64_t *releases_pending;       /* records to release once the IDs are synced */
	size_t n_releases_pending, cap_releases_pending;
	/* Topic rules, checks, handlers and the batch (srup_receive.h); it
	 * also holds the watched devices and extra topics subscribed. */
	struct srup_receive *rx;

	bool connect_requested;
	bool connect_deferred; /* asked for while records from before a start were queued */

	/* Records from before this start, queued a queue's worth at a time
	 * before anything new is received (records_recover_some). */
	bool recovering;
	struct srup_inbound_record recover_next; /* read, not yet queued (id 0: none) */
	size_t recovered;

	/* Holds whose note is written, not yet synced, in a file of its own
	 * (notes in the slot file go with records_sync): synced by the state
	 * flush (srup_node_hold_note). */
	uint64_t *notes_unsynced;
	size_t n_notes_unsynced, cap_notes_unsynced;
	void (*on_connected)(struct srup_node *node, void *user);
	void *on_connected_user;
	void (*on_disconnected)(struct srup_node *node, void *user);
	void *on_disconnected_user;

	struct srup_node_stats stats;
};

/* The transport's operations, through its driver table. */
#define TP(n, op, ...) ((n)->tp.driver->op((n)->tp.handle, ##__VA_ARGS__))

static const char *const node_err_names[SRUP_NODE_E__COUNT] = {
	[SRUP_NODE_OK] = "success",
	[SRUP_NODE_E_NOMEM] = "out of memory",
	[SRUP_NODE_E_ARG] = "invalid argument",
	[SRUP_NODE_E_MQTT] = "MQTT client error",
	[SRUP_NODE_E_STATE] = "state directory or sequence file unusable",
	[SRUP_NODE_E_PROTOCOL] = "message encoding or signing failed",
	[SRUP_NODE_E_TIMEOUT] = "timed out",
};

const char *srup_node_drop_name(enum srup_node_drop why)
{
	static const char *const names[SRUP_NODE_DROP__COUNT] = {
		[SRUP_NODE_DROP_TOPIC] = "topic",
		[SRUP_NODE_DROP_SIZE] = "size",
		[SRUP_NODE_DROP_DECODE] = "decode",
		[SRUP_NODE_DROP_UNSIGNED] = "unsigned",
		[SRUP_NODE_DROP_UNKNOWN_SENDER] = "unknown_sender",
		[SRUP_NODE_DROP_SIGNATURE] = "signature",
		[SRUP_NODE_DROP_NO_HANDLER] = "no_handler",
		[SRUP_NODE_DROP_SENDER_NOT_ALLOWED] = "sender_not_allowed",
		[SRUP_NODE_DROP_REPLAY] = "replay",
		[SRUP_NODE_DROP_PERSIST] = "persist",
		[SRUP_NODE_DROP_QUEUE_FULL] = "queue_full",
	};

	return (unsigned)why < SRUP_NODE_DROP__COUNT ? names[why] : "unknown";
}

const char *srup_node_strerror(enum srup_node_err err)
{
	if ((unsigned)err >= SRUP_NODE_E__COUNT)
		return "unknown node error";
	return node_err_names[err];
}

void srup_topic_device(uint64_t device, char out[SRUP_TOPIC_MAX])
{
	char id[17];

	srup_id_format_topic(device, id);
	snprintf(out, SRUP_TOPIC_MAX, "SRUP/%s", id);
}

void srup_topic_server_join(uint64_t server, uint64_t device, char out[SRUP_TOPIC_MAX])
{
	char s[17], d[17];

	srup_id_format_topic(server, s);
	srup_id_format_topic(device, d);
	snprintf(out, SRUP_TOPIC_MAX, "SRUP/servers/%s/%s", s, d);
}

static uint64_t monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* An absent key is believed for this long: a key file may be added while a
 * daemon runs. */
#define SENDER_ABSENT_MS 2000u

static struct node_sender *sender_slot(struct node_senders *in, uint64_t id)
{
	return &in->slot[(id ^ (id >> 17) ^ (id >> 41)) % 64];
}

/* The loop: sender's key as the key store gave it now (NULL: none). */
static void sender_note(struct node_senders *in, uint64_t id, EVP_PKEY *key)
{
	struct node_sender *e;
	EVP_PKEY *old = NULL;

	pthread_mutex_lock(&in->lock);
	e = sender_slot(in, id);
	if (e->id != id || e->key != key) {
		old = e->key;
		if (key)
			EVP_PKEY_up_ref(key);
		e->key = key;
		if (e->id != id)
			e->committed_seq = 0;
		e->id = id;
	}
	e->noted_ms = monotonic_ms();
	pthread_mutex_unlock(&in->lock);
	EVP_PKEY_free(old);
}

/* The loop, after a commit: seq from sender is on disk as accepted. */
static void sender_note_committed(struct node_senders *in, uint64_t id, uint64_t seq)
{
	struct node_sender *e;

	pthread_mutex_lock(&in->lock);
	e = sender_slot(in, id);
	if (e->id == id && seq > e->committed_seq)
		e->committed_seq = seq;
	pthread_mutex_unlock(&in->lock);
}

/* The transport's thread, before the PUBACK: false only for a message the
 * receive pipeline is certain to drop, which then gets no record (no write and no
 * fdatasync for junk, nor for our own messages coming back): not a SRUP
 * message, a type that carries no signature, our own, from a sender the
 * loop found no key for just now, a sequence ID not above one committed as
 * accepted from that sender, or whose signature does not verify with the
 * key the loop found. Anything it cannot tell is recorded. The loop
 * still checks every message in full, so a message given no record here
 * by a stale view of the keys is handled all the same, only not kept
 * across a crash. */
static bool worth_a_record(struct node_senders *in, const void *payload, size_t plen,
			   EVP_PKEY **verified_with)
{
	struct srup_msg *msg = NULL;
	struct srup_decode_error derr = {0};
	struct node_sender *e;
	EVP_PKEY *key = NULL;
	bool worth = true, certain_drop = false;

	if (srup_msg_decode(payload, plen, &msg, &derr) != SRUP_OK)
		return false;
	if (!srup_type_is_signed(msg->type) || msg->sender_id == in->own_id) {
		srup_msg_free(msg);
		return false;
	}
	pthread_mutex_lock(&in->lock);
	e = sender_slot(in, msg->sender_id);
	if (e->id == msg->sender_id && e->noted_ms) {
		if (msg->sequence_id <= e->committed_seq)
			certain_drop = true; /* a replay */
		else if (e->key) {
			key = e->key;
			EVP_PKEY_up_ref(key);
		} else
			certain_drop = monotonic_ms() - e->noted_ms < SENDER_ABSENT_MS;
	}
	pthread_mutex_unlock(&in->lock);
	if (certain_drop)
		worth = false;
	else if (key)
		worth = srup_msg_verify(msg, key) == SRUP_OK;
	if (worth && key)
		*verified_with = key; /* the reference goes with the message */
	else
		EVP_PKEY_free(key);
	srup_msg_free(msg);
	return worth;
}

/* The transport's thread: a QoS 1 message about to be acknowledged is
 * written to the inbound record store (srup_inbound.h), unless it is
 * certain to be dropped. */
static uint64_t tp_record(void *ctx, const char *topic, size_t tlen, const void *payload,
			  size_t plen, EVP_PKEY **verified_with)
{
	struct srup_node *n = ctx;
	enum srup_inbound_err e;
	uint64_t id = 0;

	if (!worth_a_record(&n->senders, payload, plen, verified_with)) {
		pthread_mutex_lock(&n->senders.lock);
		n->senders.refused_unrecorded++;
		pthread_mutex_unlock(&n->senders.lock);
		return 0;
	}
	e = srup_inbound_write_staged(n->records, topic, tlen, payload, plen, &id);
	if (e != SRUP_INBOUND_OK)
		srup_log(LOG_ERR, "cannot write inbound record for a message on %.*s: %s: "
			 "%s; it is lost if the process dies before handling it",
			 (int)(tlen > 200 ? 200 : tlen), topic, srup_inbound_strerror(e),
			 strerror(errno));
	return e == SRUP_INBOUND_OK ? id : 0;
}

/* The transport's thread, after the message was queued for the loop and
 * before its PUBACK. A failed flush leaves the record written, not
 * durable: the message is then as safe as the process (as when the write
 * fails), and the loop may already be handling it. */
static void tp_record_durable(void *ctx, uint64_t record)
{
	struct srup_node *n = ctx;

	if (srup_inbound_sync(n->records) != SRUP_INBOUND_OK)
		srup_log(LOG_ERR, "cannot sync inbound record %016" PRIx64 ": %s; it is lost if "
			 "the machine loses power before the message is handled", record,
			 strerror(errno));
}

/* ---- the receive pipeline (srup_receive.h), wired to the node --------- */

static EVP_PKEY *rx_key_lookup(void *ctx, uint64_t sender, char *why, size_t why_len)
{
	struct srup_node *n = ctx;
	EVP_PKEY *key = NULL;

	return srup_keystore_find(n->peers, sender, &key, why, why_len) == SRUP_KEYS_OK ? key
											: NULL;
}

/* What the transport's thread may know of senders (worth_a_record). */
static void rx_key_noted(void *ctx, uint64_t sender, EVP_PKEY *key)
{
	struct srup_node *n = ctx;

	sender_note(&n->senders, sender, key);
}

static bool rx_seq_is_fresh(void *ctx, uint64_t sender, uint64_t seq)
{
	struct srup_node *n = ctx;

	return srup_seqstore_is_fresh(n->seq, sender, seq);
}

static uint64_t rx_seq_last_accepted(void *ctx, uint64_t sender)
{
	struct srup_node *n = ctx;

	return srup_seqstore_last_accepted(n->seq, sender);
}

static enum srup_seq_err rx_seq_stage_accept(void *ctx, uint64_t sender, uint64_t seq,
					     char *detail, size_t detail_len)
{
	struct srup_node *n = ctx;

	return srup_seqstore_stage_accept(n->seq, sender, seq, detail, detail_len);
}

static void state_flush_arm(struct srup_node *n);

/* What was written into the inbound records (accepted marks, notes) on
 * disk. */
static void records_sync(struct srup_node *n)
{
	if (srup_inbound_sync(n->records) != SRUP_INBOUND_OK)
		srup_log(LOG_ERR, "cannot sync the inbound records' marks and notes: %s",
			 strerror(errno));
}

static enum srup_seq_err rx_seq_commit(void *ctx, char *detail, size_t detail_len)
{
	struct srup_node *n = ctx;
	bool all_recorded = !n->batch_unrecorded && n->flush_source;
	enum srup_seq_err e;

	n->batch_unrecorded = false;
	if (!all_recorded) {
		/* The batch's "accepted" marks reach the disk before its IDs:
		 * after a power loss a record whose ID is there is handed over
		 * again, never dropped as a replay. */
		records_sync(n);
		return srup_seqstore_commit(n->seq, detail, detail_len);
	}
	e = srup_seqstore_commit_unsynced(n->seq, detail, detail_len);
	if (e == SRUP_SEQ_OK && srup_seqstore_unsynced(n->seq))
		state_flush_arm(n);
	return e;
}

/* The state flush (marks and notes, then the accepted IDs) comes
 * NODE_STATE_FLUSH_DELAY_US after the first unsynced commit, note or release
 * waiting for it: what comes in that time shares one fdatasync of each
 * file. Armed once, not pushed back. */
static void state_flush_arm(struct srup_node *n)
{
	int enabled = SD_EVENT_OFF;

	if (sd_event_source_get_enabled(n->flush_source, &enabled) >= 0 &&
	    enabled != SD_EVENT_OFF)
		return;
	if (sd_event_source_set_time_relative(n->flush_source, NODE_STATE_FLUSH_DELAY_US) < 0 ||
	    sd_event_source_set_enabled(n->flush_source, SD_EVENT_ONESHOT) < 0)
		srup_log(LOG_ERR, "cannot arm the sync of accepted sequence IDs and notes; it "
			 "comes with the next one");
}

/* Records released now, or once the accepted IDs are on disk. */
static void records_release_pending(struct srup_node *n)
{
	for (size_t i = 0; i < n->n_releases_pending; i++)
		srup_inbound_remove(n->records, n->releases_pending[i]);
	n->n_releases_pending = 0;
}

static void notes_sync(struct srup_node *n);

/* Marks and notes first (as in rx_seq_commit), then the accepted IDs, then
 * the notes in files of their own; records wait for the IDs. */
static bool state_flush_now(struct srup_node *n)
{
	char detail[512] = "";
	enum srup_seq_err e;

	records_sync(n);
	e = srup_seqstore_sync(n->seq, detail, sizeof(detail));
	if (n->n_notes_unsynced)
		notes_sync(n);
	if (e != SRUP_SEQ_OK) {
		/* The records stay: handed over again at the next start. */
		srup_log(LOG_ERR, "cannot sync accepted sequence IDs: %s: %s; %zu inbound "
			 "record(s) kept until they are", srup_seqstore_strerror(e), detail,
			 n->n_releases_pending);
		return false;
	}
	records_release_pending(n);
	return true;
}

static int on_state_flush(sd_event_source *s, uint64_t usec, void *user)
{
	(void)s;
	(void)usec;
	state_flush_now(user);
	return 0;
}

static void record_release(struct srup_node *n, uint64_t id)
{
	if (!srup_seqstore_unsynced(n->seq) && !n->n_releases_pending) {
		srup_inbound_remove(n->records, id);
		return;
	}
	if (n->n_releases_pending == n->cap_releases_pending) {
		size_t cap = n->cap_releases_pending ? n->cap_releases_pending * 2 : 64;
		uint64_t *grown = realloc(n->releases_pending, cap * sizeof(*grown));

		if (!grown) {
			if (state_flush_now(n))
				srup_inbound_remove(n->records, id);
			return; /* else kept: handed over again at the next start */
		}
		n->releases_pending = grown;
		n->cap_releases_pending = cap;
	}
	n->releases_pending[n->n_releases_pending++] = id;
	/* A flood syncs every so many: records and this list stay
	 * bounded. */
	if (n->n_releases_pending >= NODE_RELEASES_PENDING_MAX)
		state_flush_now(n);
	else
		state_flush_arm(n);
}

/* Their records say "accepted" before the IDs are committed: once
 * committed, the replay rule would drop them at the next start, so a
 * crash before a handler is done must find them marked, and their
 * handlers run again. */
static void rx_accepting(void *ctx, void *owner)
{
	struct srup_node *n = ctx;
	struct srup_transport_message *m = owner;

	if (!m->record)
		n->batch_unrecorded = true; /* its ID must be on disk before it is acted on */
	else if (!m->recovered_accepted)
		srup_inbound_mark_accepted(n->records, m->record);
}

static void rx_committed(void *ctx, uint64_t sender, uint64_t seq)
{
	struct srup_node *n = ctx;

	sender_note_committed(&n->senders, sender, seq);
}

static void rx_deliver(void *ctx, const struct srup_receive_handler *h,
		       const struct srup_msg *msg, const char *topic, void *owner)
{
	struct srup_node *n = ctx;

	n->handling = owner;
	((srup_node_handler)h->fn)(n, msg, topic, h->user);
	n->handling = NULL;
}

static void rx_not_committed(void *ctx, void *owner)
{
	struct srup_transport_message *m = owner;

	(void)ctx;
	m->keep_record = true; /* tried again at the next start */
}

/* The end of a message: its inbound record goes with it, unless its
 * handler holds it or it must be tried again after a restart. */
static void message_done(struct srup_node *n, struct srup_transport_message *m)
{
	if (m->record && !m->held && !m->keep_record)
		record_release(n, m->record);
	srup_transport_message_free(m);
}

static void rx_release(void *ctx, void *owner)
{
	struct srup_node *n = ctx;

	message_done(n, owner);
}

static void rx_dropped(void *ctx, enum srup_receive_drop reason, const char *topic,
		       const char *why)
{
	(void)ctx;
	(void)reason;
	srup_log(LOG_WARNING, "dropped message on %s: %s", topic, why);
}

static void rx_log(void *ctx, int priority, const char *text)
{
	(void)ctx;
	srup_log(priority, "%s", text);
}

static const struct srup_receive_ops node_receive_ops = {
	.key_lookup = rx_key_lookup,
	.key_noted = rx_key_noted,
	.seq_is_fresh = rx_seq_is_fresh,
	.seq_last_accepted = rx_seq_last_accepted,
	.seq_stage_accept = rx_seq_stage_accept,
	.seq_commit = rx_seq_commit,
	.accepting = rx_accepting,
	.committed = rx_committed,
	.deliver = rx_deliver,
	.not_committed = rx_not_committed,
	.release = rx_release,
	.dropped = rx_dropped,
	.log = rx_log,
};

/* ---- the transport's operations (loop thread) -------------------------- */

static void tp_message(void *ctx, struct srup_transport_message *m)
{
	struct srup_node *n = ctx;
	struct srup_receive_input in = {
		.topic = m->topic, .topic_len = m->topic_len, .payload = m->payload, .len = m->len,
		.payload_limit = NODE_PAYLOAD_MAX, .recovered_accepted = m->recovered_accepted,
		.verified_with = m->verified_with, .owner = m,
	};

	if (!srup_receive_check(n->rx, &in))
		message_done(n, m); /* else the batch has it */
}

static void tp_messages_end(void *ctx)
{
	struct srup_node *n = ctx;

	srup_receive_run(n->rx);
}

static void records_recover_some(struct srup_node *n);

static void tp_drained(void *ctx)
{
	struct srup_node *n = ctx;

	if (n->recovering)
		records_recover_some(n);
}

static void tp_queue_full(void *ctx, uint64_t count)
{
	struct srup_node *n = ctx;

	n->stats.dropped += count;
	n->stats.dropped_by[SRUP_NODE_DROP_QUEUE_FULL] += count;
}

static void tp_up(void *ctx)
{
	struct srup_node *n = ctx;

	if (n->on_connected)
		n->on_connected(n, n->on_connected_user);
}

static void tp_lost(void *ctx)
{
	struct srup_node *n = ctx;

	if (n->on_disconnected)
		n->on_disconnected(n, n->on_disconnected_user);
}

/* Every topic filter of this role: a device its own topic and its extra
 * ones, a server its own prefix and each watched device's topics. */
static bool tp_filter(void *ctx, size_t i, char *out, size_t cap)
{
	struct srup_node *n = ctx;

	if (n->cfg.role == SRUP_NODE_ROLE_DEVICE) {
		const char *const *extra;
		size_t n_extra = srup_receive_extra(n->rx, &extra);

		if (i == 0)
			snprintf(out, cap, "%s", n->own_topic);
		else if (i - 1 < n_extra)
			snprintf(out, cap, "%s", extra[i - 1]);
		else
			return false;
		return true;
	}
	const uint64_t *watched;
	size_t n_watched = srup_receive_watched(n->rx, &watched);

	if (i == 0) {
		snprintf(out, cap, "%s#", n->server_prefix);
	} else if (i - 1 < n_watched) {
		char t[SRUP_TOPIC_MAX];

		srup_topic_device(watched[i - 1], t);
		snprintf(out, cap, "%s/#", t);
	} else
		return false;
	return true;
}

/* The answer to an add_topic subscription: a refused topic is removed. */
static void tp_subscribed(void *ctx, const char *topic, bool ok, srup_transport_fn done,
			  void *user)
{
	struct srup_node *n = ctx;

	if (!ok)
		srup_receive_extra_remove(n->rx, topic);
	if (done)
		((srup_node_topic_done)done)(n, topic, ok, user);
}

static void tp_sent(void *ctx, srup_transport_fn done, void *user, bool acknowledged)
{
	struct srup_node *n = ctx;

	if (done)
		((srup_node_sent_fn)done)(n, acknowledged, user);
}

static const struct srup_transport_ops node_transport_ops = {
	.record = tp_record,
	.record_durable = tp_record_durable,
	.message = tp_message,
	.messages_end = tp_messages_end,
	.drained = tp_drained,
	.queue_full = tp_queue_full,
	.up = tp_up,
	.lost = tp_lost,
	.filter = tp_filter,
	.subscribed = tp_subscribed,
	.sent = tp_sent,
};

/* ---- extra topics (device role: groups) ------------------------------- */

enum srup_node_err srup_node_add_topic(struct srup_node *n, const char *topic,
				       srup_node_topic_done done, void *user)
{
	if (!n || n->cfg.role != SRUP_NODE_ROLE_DEVICE || !topic || !*topic ||
	    strlen(topic) >= SRUP_NODE_EXTRA_TOPIC_MAX || strpbrk(topic, "#+"))
		return SRUP_NODE_E_ARG;
	if (srup_receive_extra_add(n->rx, topic) < 0)
		return SRUP_NODE_E_NOMEM;
	if (!n->connect_requested || !TP(n, session_up)) {
		if (done)
			done(n, topic, true, user);
		return SRUP_NODE_OK;
	}
	/* The answer comes to tp_subscribed, which removes a refused topic. */
	if (TP(n, subscribe, topic, true, (srup_transport_fn)done, user) != 0) {
		srup_receive_extra_remove(n->rx, topic);
		return SRUP_NODE_E_MQTT;
	}
	return SRUP_NODE_OK;
}

enum srup_node_err srup_node_remove_topic(struct srup_node *n, const char *topic)
{
	if (!n || !topic || srup_receive_extra_remove(n->rx, topic) != 0)
		return SRUP_NODE_E_ARG;
	if (!n->connect_requested || !TP(n, session_up))
		return SRUP_NODE_OK; /* not subscribed again at the next connect */
	return TP(n, unsubscribe, topic) == 0 ? SRUP_NODE_OK : SRUP_NODE_E_MQTT;
}

/* ---- construction ----------------------------------------------------- */

static enum srup_node_err check_config(struct srup_node *n, char *detail, size_t detail_len)
{
	struct srup_node_config *c = &n->cfg;

	if (c->role != SRUP_NODE_ROLE_DEVICE && c->role != SRUP_NODE_ROLE_SERVER) {
		set_detail(detail, detail_len, "unknown node role %d", (int)c->role);
		return SRUP_NODE_E_ARG;
	}
	/* The fixed-size strings must be terminated. */
	if (!memchr(c->broker, '\0', sizeof(c->broker)) ||
	    !memchr(c->ca_file, '\0', sizeof(c->ca_file)) ||
	    !memchr(c->cert_file, '\0', sizeof(c->cert_file)) ||
	    !memchr(c->key_file, '\0', sizeof(c->key_file)) ||
	    !memchr(c->state_dir, '\0', sizeof(c->state_dir))) {
		set_detail(detail, detail_len, "a node config string is not terminated");
		return SRUP_NODE_E_ARG;
	}
	if (c->broker[0] == '\0') {
		set_detail(detail, detail_len, "no broker URL given");
		return SRUP_NODE_E_ARG;
	}
	if (c->state_dir[0] == '\0') {
		set_detail(detail, detail_len, "no state directory given");
		return SRUP_NODE_E_ARG;
	}
	if (c->keepalive_seconds == 0)
		c->keepalive_seconds = NODE_DEFAULT_KEEPALIVE;
	if (c->reconnect_min_seconds == 0)
		c->reconnect_min_seconds = NODE_DEFAULT_RECONNECT_MIN;
	if (c->reconnect_max_seconds == 0)
		c->reconnect_max_seconds = NODE_DEFAULT_RECONNECT_MAX;
	if (c->reconnect_min_seconds > c->reconnect_max_seconds ||
	    c->reconnect_max_seconds > 86400 || c->keepalive_seconds > 65535) {
		set_detail(detail, detail_len,
			   "reconnect interval %u..%u s or keepalive %u s out of range",
			   c->reconnect_min_seconds, c->reconnect_max_seconds,
			   c->keepalive_seconds);
		return SRUP_NODE_E_ARG;
	}
	return SRUP_NODE_OK;
}

/* The MQTT session; also checks the broker list and its TLS settings. */
static enum srup_node_err transport_new(struct srup_node *n, char *detail, size_t detail_len)
{
	struct srup_transport_config tc = {
		.broker = n->cfg.broker,
		.ca_file = n->cfg.ca_file,
		.cert_file = n->cfg.cert_file,
		.key_file = n->cfg.key_file,
		.client_id = n->client_id,
		.log_name = n->own_topic,
		.keepalive_seconds = n->cfg.keepalive_seconds,
		.reconnect_min_seconds = n->cfg.reconnect_min_seconds,
		.reconnect_max_seconds = n->cfg.reconnect_max_seconds,
	};
	int r = srup_transport_paho_new(n->loop, &tc, &node_transport_ops, n, &n->tp, detail,
					detail_len);

	if (r == -2)
		return SRUP_NODE_E_ARG;
	return r == 0 ? SRUP_NODE_OK : SRUP_NODE_E_MQTT;
}

static enum srup_node_err start_connect(struct srup_node *n);

/* Queue records left by a previous run, in arrival order, as many as the
 * receive queue has room for; the rest follow each time the loop has taken
 * the queue. Until the last is queued the node does not connect: what the
 * broker sends then comes after them, as it did. */
static void records_recover_some(struct srup_node *n)
{
	struct srup_inbound_record *rec = &n->recover_next;
	enum srup_inbound_err e;
	bool room;

	while (n->recovering) {
		if (!rec->id) {
			e = srup_inbound_next(n->records, rec);
			if (e != SRUP_INBOUND_OK) {
				srup_log(LOG_ERR, "cannot read inbound records: %s; the rest are "
					 "handled at the next start", srup_inbound_strerror(e));
				rec->id = 0;
			}
			if (!rec->id) {
				n->recovering = false;
				if (n->recovered)
					srup_log(LOG_NOTICE, "%zu received message(s) from before a "
						 "restart to handle", n->recovered);
				if (n->connect_deferred)
					start_connect(n);
				break;
			}
		}
		room = TP(n, inject, rec->topic, rec->topic_len, rec->payload, rec->payload_len,
			  rec->id, rec->accepted, rec->note, rec->note_len);
		if (!room)
			break;
		srup_inbound_record_clear(rec);
		n->recovered++;
	}
}

/* Open <state_dir>/inbound and start queueing what a previous run left
 * there. */
static enum srup_node_err records_recover(struct srup_node *n, char *detail, size_t detail_len)
{
	enum srup_inbound_err e;

	e = srup_inbound_new(n->cfg.state_dir, &n->records, detail, detail_len);
	if (e != SRUP_INBOUND_OK)
		return e == SRUP_INBOUND_E_NOMEM ? SRUP_NODE_E_NOMEM : SRUP_NODE_E_STATE;
	n->recovering = true;
	records_recover_some(n);
	return SRUP_NODE_OK;
}
enum srup_node_err srup_node_new(sd_event *loop, const struct srup_node_config *cfg,
				 EVP_PKEY *identity, struct srup_keystore *peers,
				 struct srup_node **out, char *detail, size_t detail_len)
{
	struct srup_node *n;
	enum srup_node_err e;
	enum srup_seq_err serr;
	char seq_detail[512] = "";

	if (out)
		*out = NULL;
	if (!loop || !cfg || !identity || !peers || !out) {
		set_detail(detail, detail_len, "srup_node_new: missing argument");
		return SRUP_NODE_E_ARG;
	}
	if (srup_key_check(identity) != SRUP_OK) {
		set_detail(detail, detail_len, "identity key is not RSA of 2048..4096 bits");
		return SRUP_NODE_E_ARG;
	}
	n = calloc(1, sizeof(*n));
	if (!n)
		return SRUP_NODE_E_NOMEM;
	if (pthread_mutex_init(&n->senders.lock, NULL) != 0) {
		free(n);
		return SRUP_NODE_E_NOMEM;
	}
	n->senders.own_id = cfg->id;
	n->cfg = *cfg;
	n->loop = sd_event_ref(loop);
	n->peers = peers;
	EVP_PKEY_up_ref(identity);
	n->identity = identity;
	srup_id_format_topic(cfg->id, n->id_text);
	srup_topic_device(cfg->id, n->own_topic);
	snprintf(n->server_prefix, sizeof(n->server_prefix), "SRUP/servers/%s/", n->id_text);
	snprintf(n->client_id, sizeof(n->client_id), "SRUP Client: %s", n->id_text);

	e = check_config(n, detail, detail_len);
	if (e != SRUP_NODE_OK)
		goto fail;
	/* The broker list is checked before any state is touched. */
	e = transport_new(n, detail, detail_len);
	if (e != SRUP_NODE_OK)
		goto fail;
	n->rx = srup_receive_new(n->cfg.role == SRUP_NODE_ROLE_DEVICE ? SRUP_RECEIVE_ROLE_DEVICE
								      : SRUP_RECEIVE_ROLE_SERVER,
				 n->cfg.id, &node_receive_ops, n);
	if (!n->rx) {
		e = SRUP_NODE_E_NOMEM;
		goto fail;
	}
	serr = srup_seqstore_new(n->cfg.state_dir, 0, &n->seq, seq_detail, sizeof(seq_detail));
	if (serr != SRUP_SEQ_OK) {
		set_detail(detail, detail_len, "%s: %s", srup_seqstore_strerror(serr), seq_detail);
		e = serr == SRUP_SEQ_E_NOMEM ? SRUP_NODE_E_NOMEM : SRUP_NODE_E_STATE;
		goto fail;
	}
	if (sd_event_add_time_relative(loop, &n->flush_source, CLOCK_MONOTONIC,
				       NODE_STATE_FLUSH_DELAY_US, NODE_STATE_FLUSH_DELAY_US / 10,
				       on_state_flush, n) < 0 ||
	    sd_event_source_set_enabled(n->flush_source, SD_EVENT_OFF) < 0) {
		e = SRUP_NODE_E_NOMEM;
		goto fail;
	}
	e = records_recover(n, detail, detail_len);
	if (e != SRUP_NODE_OK)
		goto fail;
	*out = n;
	return SRUP_NODE_OK;
fail:
	srup_node_free(n);
	return e;
}

void srup_node_free(struct srup_node *n)
{
	if (!n)
		return;
	/* First: the transport's thread writes records and reads the
	 * senders; what it still queued keeps its records for the next
	 * start, and tracked sends not yet settled hear of it. */
	if (n->tp.driver)
		TP(n, free);
	srup_receive_free(n->rx); /* its batch is empty outside a drain */
	if (n->seq && n->records)
		state_flush_now(n);
	sd_event_source_disable_unref(n->flush_source);
	free(n->releases_pending);
	srup_inbound_free(n->records);
	for (size_t i = 0; i < 64; i++)
		EVP_PKEY_free(n->senders.slot[i].key);
	pthread_mutex_destroy(&n->senders.lock);
	srup_inbound_record_clear(&n->recover_next);
	free(n->notes_unsynced);
	srup_seqstore_free(n->seq);
	EVP_PKEY_free(n->identity);
	sd_event_unref(n->loop);
	free(n);
}

enum srup_node_err srup_node_on(struct srup_node *n, uint8_t type, uint64_t allowed_sender,
				srup_node_handler handler, void *user)
{
	if (!n || !handler || !srup_type_is_signed(type))
		return SRUP_NODE_E_ARG;
	/* Cast back to srup_node_handler in rx_deliver. */
	srup_receive_on(n->rx, type,
			&(struct srup_receive_handler){.fn = (void (*)(void))handler, .user = user,
						       .allowed_sender = allowed_sender});
	return SRUP_NODE_OK;
}
enum srup_node_err srup_node_watch_device(struct srup_node *n, uint64_t device)
{
	int added;

	if (!n || n->cfg.role != SRUP_NODE_ROLE_SERVER)
		return SRUP_NODE_E_ARG;
	added = srup_receive_watch(n->rx, device);
	if (added < 0)
		return SRUP_NODE_E_NOMEM;
	if (added == 0)
		return SRUP_NODE_OK;

	/* Subscribed now if the session is up; every reconnect subscribes
	 * the whole list again. */
	if (n->connect_requested && TP(n, session_up)) {
		char topic[SRUP_TOPIC_MAX + 2], dev[SRUP_TOPIC_MAX];

		srup_topic_device(device, dev);
		snprintf(topic, sizeof(topic), "%s/#", dev);
		if (TP(n, subscribe, topic, false, NULL, NULL) != 0)
			return SRUP_NODE_E_MQTT;
	}
	return SRUP_NODE_OK;
}

enum srup_node_err srup_node_connect(struct srup_node *n,
				     void (*on_connected)(struct srup_node *node, void *user),
				     void *user)
{
	if (!n)
		return SRUP_NODE_E_ARG;
	if (n->connect_requested || n->connect_deferred)
		return SRUP_NODE_OK;
	n->on_connected = on_connected;
	n->on_connected_user = user;
	if (n->recovering) {
		n->connect_deferred = true; /* once every record is queued */
		return SRUP_NODE_OK;
	}
	return start_connect(n);
}

static enum srup_node_err start_connect(struct srup_node *n)
{
	n->connect_deferred = false;
	if (TP(n, connect) != 0)
		return SRUP_NODE_E_MQTT;
	n->connect_requested = true;
	return SRUP_NODE_OK;
}

const char *srup_node_broker(const struct srup_node *n)
{
	return n ? TP(n, broker) : NULL;
}

void srup_node_on_disconnected(struct srup_node *n,
			       void (*fn)(struct srup_node *node, void *user), void *user)
{
	if (!n)
		return;
	n->on_disconnected = fn;
	n->on_disconnected_user = user;
}

bool srup_node_is_connected(const struct srup_node *n)
{
	return n && TP(n, ready);
}

enum srup_node_err srup_node_send(struct srup_node *n, struct srup_msg *msg, uint64_t peer,
				  const char *topic)
{
	return srup_node_send_tracked(n, msg, peer, topic, NULL, NULL);
}

static enum srup_node_err publish_wire(struct srup_node *n, const char *topic, uint8_t *wire,
				       size_t wire_len, srup_node_sent_fn done, void *user,
				       const char *type_name, uint64_t seq);

enum srup_node_err srup_node_send_tracked(struct srup_node *n, struct srup_msg *msg,
					  uint64_t peer, const char *topic, srup_node_sent_fn done,
					  void *user)
{
	const char *type_text;
	char detail[512] = "";
	uint8_t *wire = NULL;
	size_t wire_len = 0;
	uint64_t seq;
	enum srup_seq_err serr;
	enum srup_err err;

	if (!n || !msg || !topic || topic[0] == '\0' || strlen(topic) >= NODE_TOPIC_LEN_MAX)
		return SRUP_NODE_E_ARG;
	type_text = srup_type_name(msg->type);
	if (!srup_type_is_signed(msg->type)) {
		srup_log(LOG_ERR, "cannot send type 0x%02x: not a signed SRUP message type",
			 msg->type);
		return SRUP_NODE_E_ARG;
	}
	msg->version = SRUP_VERSION;
	msg->sender_id = n->cfg.id;
	serr = srup_seqstore_next(n->seq, peer, &seq, detail, sizeof(detail));
	if (serr != SRUP_SEQ_OK) {
		srup_log(LOG_ERR, "cannot send %s on %s: %s: %s", type_text, topic,
			 srup_seqstore_strerror(serr), detail);
		return serr == SRUP_SEQ_E_NOMEM ? SRUP_NODE_E_NOMEM : SRUP_NODE_E_STATE;
	}
	msg->sequence_id = seq;
	err = srup_msg_sign(msg, n->identity);
	if (err == SRUP_OK)
		err = srup_msg_encode(msg, &wire, &wire_len);
	if (err != SRUP_OK) {
		srup_log(LOG_ERR, "cannot send %s on %s: %s", type_text, topic,
			 srup_strerror(err));
		return err == SRUP_E_NOMEM ? SRUP_NODE_E_NOMEM : SRUP_NODE_E_PROTOCOL;
	}
	if (wire_len > (size_t)INT32_MAX) {
		free(wire);
		return SRUP_NODE_E_PROTOCOL;
	}
	return publish_wire(n, topic, wire, wire_len, done, user, type_text, seq);
}
/* Hand an encoded message to the transport (takes wire). */
static enum srup_node_err publish_wire(struct srup_node *n, const char *topic, uint8_t *wire,
				       size_t wire_len, srup_node_sent_fn done, void *user,
				       const char *type_name, uint64_t seq)
{
	if (TP(n, publish, topic, wire, wire_len, type_name, (srup_transport_fn)done, user) != 0)
		return SRUP_NODE_E_MQTT;
	n->stats.sent++;
	srup_log(LOG_DEBUG, "sent %s seq %" PRIu64 " on %s", type_name, seq, topic);
	return SRUP_NODE_OK;
}

enum srup_node_err srup_node_flush(struct srup_node *n, unsigned timeout_ms)
{
	uint64_t left;

	if (!n)
		return SRUP_NODE_E_ARG;
	left = TP(n, flush, timeout_ms);
	/* The outcomes of tracked sends reach their callers (and what
	 * arrived meanwhile is handled) before the caller stops the loop. */
	TP(n, process);
	if (left > 0) {
		srup_log(LOG_WARNING, "%" PRIu64 " message(s) not acknowledged by %s after %u ms",
			 left, TP(n, broker_name), timeout_ms);
		return SRUP_NODE_E_TIMEOUT;
	}
	return SRUP_NODE_OK;
}

uint64_t srup_node_hold(struct srup_node *n)
{
	if (!n || !n->handling || !n->handling->record)
		return 0;
	n->handling->held = true;
	return n->handling->record;
}

enum srup_node_err srup_node_hold_note(struct srup_node *n, uint64_t hold, const void *note,
				       size_t len)
{
	enum srup_inbound_err e;

	if (!n || !hold || len > SRUP_NODE_NOTE_MAX || (len && !note))
		return SRUP_NODE_E_ARG;
	if (n->n_notes_unsynced == n->cap_notes_unsynced) {
		size_t cap = n->cap_notes_unsynced ? n->cap_notes_unsynced * 2 : 64;
		uint64_t *grown = realloc(n->notes_unsynced, cap * sizeof(*grown));

		if (!grown)
			return SRUP_NODE_E_NOMEM;
		n->notes_unsynced = grown;
		n->cap_notes_unsynced = cap;
	}
	/* Written now (it survives the process being killed) and synced by
	 * the state flush with the others of that time: a run of decisions
	 * costs one fdatasync, and none waits for it. */
	e = srup_inbound_note(n->records, hold, note, len, false);
	if (e != SRUP_INBOUND_OK) {
		srup_log(LOG_ERR, "cannot record what was decided for inbound record %016" PRIx64
			 ": %s: %s", hold, srup_inbound_strerror(e), strerror(errno));
		return e == SRUP_INBOUND_E_NOMEM ? SRUP_NODE_E_NOMEM : SRUP_NODE_E_STATE;
	}
	if (!srup_inbound_in_slot(n->records, hold))
		n->notes_unsynced[n->n_notes_unsynced++] = hold; /* a file of its own */
	if (n->n_notes_unsynced >= NODE_NOTES_UNSYNCED_MAX)
		state_flush_now(n);
	else
		state_flush_arm(n);
	return SRUP_NODE_OK;
}

/* The notes in files of their own (records too large for a slot; those in
 * the slot file go with records_sync). */
static void notes_sync(struct srup_node *n)
{
	for (size_t i = 0; i < n->n_notes_unsynced; i++) {
		enum srup_inbound_err e = srup_inbound_note_sync(n->records,
								 n->notes_unsynced[i]);

		/* ENOENT: released meanwhile, nothing to keep. */
		if (e != SRUP_INBOUND_OK && errno != ENOENT)
			srup_log(LOG_ERR, "cannot sync what was decided for inbound record %016"
				 PRIx64 ": %s", n->notes_unsynced[i], strerror(errno));
	}
	n->n_notes_unsynced = 0;
}

size_t srup_node_held_note(const struct srup_node *n, void *out, size_t cap)
{
	if (!n || !n->handling || !n->handling->note_len || !out || cap < n->handling->note_len)
		return 0;
	memcpy(out, n->handling->note, n->handling->note_len);
	return n->handling->note_len;
}

void srup_node_release(struct srup_node *n, uint64_t hold)
{
	if (n && hold)
		record_release(n, hold);
}

uint64_t srup_node_id(const struct srup_node *n)
{
	return n ? n->cfg.id : 0;
}
void srup_node_get_stats(const struct srup_node *n, struct srup_node_stats *out)
{
	if (!out)
		return;
	memset(out, 0, sizeof(*out));
	if (!n)
		return;
	*out = n->stats;
	if (n->rx) {
		struct srup_receive_stats rs;

		srup_receive_get_stats(n->rx, &rs);
		out->accepted += rs.accepted;
		out->dropped += rs.dropped;
		out->ignored_own += rs.ignored_own;
		for (size_t i = 0; i < SRUP_RECEIVE_DROP__COUNT; i++)
			out->dropped_by[i] += rs.dropped_by[i];
	}
	/* Messages that arrived or were dropped since the loop last drained
	 * are known only to the inbox. */
	if (n->tp.driver) {
		uint64_t received, queue_full;

		TP(n, counts, &received, &queue_full);
		out->received = received;
		out->dropped += queue_full;
		out->dropped_by[SRUP_NODE_DROP_QUEUE_FULL] += queue_full;
	}
}
