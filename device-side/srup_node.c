#include "srup_node.h"
#include "srup_detail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "paho_waker.h"
#include "srup_inbound.h"
#include "srup_log.h"
#include "srup_seqstore.h"

/* Bounds on what the Paho threads may pile up for the loop. */
#define NODE_QUEUE_MAX_MESSAGES 4096u
#define NODE_QUEUE_MAX_CONTROL 1024u  /* connection and delivery events */
/* Bytes the queued messages may hold: without it, 4096 payloads of the
 * largest size would be 512 MiB, for anyone allowed to publish to us. */
#define NODE_QUEUE_MAX_BYTES (8u * 1024u * 1024u)
#define NODE_PAYLOAD_MAX SRUP_INBOUND_PAYLOAD_MAX
_Static_assert(SRUP_NODE_NOTE_MAX <= SRUP_INBOUND_NOTE_MAX, "a note fits its record");
#define NODE_TOPIC_LEN_MAX SRUP_INBOUND_TOPIC_MAX
#define NODE_BUFFERED_MAX 10000       /* Paho's queue of publishes while offline */
#define NODE_CONNECT_TIMEOUT_S 10
#define NODE_DISCONNECT_WAIT_MS 2000u
/* Messages whose accepted IDs are persisted by one commit (group commit);
 * also bounds how long the first handler of a drained burst waits. */
#define NODE_BATCH_MAX 64u

#define NODE_DEFAULT_KEEPALIVE 20u
#define NODE_DEFAULT_RECONNECT_MIN 1u
#define NODE_DEFAULT_RECONNECT_MAX 30u

enum node_event_kind {
	NODE_EV_MESSAGE,         /* topic, payload (NULL when oversized), len */
	NODE_EV_CONNECTED,       /* text: Paho's cause */
	NODE_EV_CONNECTION_LOST, /* text: cause */
	NODE_EV_CONNECT_FAILED,  /* code, text */
	NODE_EV_SUBSCRIBED,      /* token */
	NODE_EV_SUBSCRIBE_FAILED,/* token, code, text */
	NODE_EV_PUBLISH_FAILED,  /* token, code, text; publish if tracked */
	NODE_EV_PUBLISHED,       /* publish (tracked sends only) */
};

struct node_event;

struct node_event {
	struct node_event *next;
	enum node_event_kind kind;
	char *topic;
	size_t topic_len; /* a NUL inside makes it shorter than strlen says */
	uint8_t *payload;
	size_t len;
	size_t cost; /* bytes counted against NODE_QUEUE_MAX_BYTES */
	int code;
	int token;
	char text[160];
	struct node_publish *publish;
	/* Messages: the inbound record on disk (0: none), whether it had
	 * passed every check before a restart, whether a handler holds it. */
	uint64_t record;
	bool recovered_accepted;
	bool held;
	bool keep_record;
	/* What a handler recorded for it before a restart (srup_node_hold_note). */
	uint8_t note[SRUP_NODE_NOTE_MAX];
	size_t note_len;
	/* The key its signature verified with on Paho's thread (a reference):
	 * the loop does not verify it again if the key store still gives it. */
	EVP_PKEY *verified_with;
};

/* A send whose outcome the caller wants to hear of. Its event is made with
 * it: the outcome always reaches the loop, whatever else is queued. */
struct node_publish {
	struct node_inbox *inbox;
	srup_node_sent_fn done;
	void *user;
	struct node_event ev;
};

/* The only state that Paho's threads touch. Everything else in struct
 * srup_node belongs to the loop thread. */
struct node_inbox {
	pthread_mutex_t lock;
	pthread_cond_t changed;  /* publishes_pending or disconnected changed */
	/* Room in the receive queue, or a reason to stop waiting for it:
	 * the loop calls into Paho (which waits for the thread that waits
	 * here) or the node stops. */
	pthread_cond_t room;
	unsigned loop_in_paho;
	bool stopping;
	uint64_t waited_for_room;    /* acknowledgements held back, for the stats log */

	/* What Paho's thread may know of senders, to write no record for a
	 * message the loop will certainly drop (sender_worth_a_record): the
	 * loop notes each sender's key as it looks it up (a reference of
	 * its own), or its absence. Own lock: Paho's thread verifies with a
	 * key outside it. */
	uint64_t own_id;
	pthread_mutex_t senders_lock;
	struct node_sender {
		uint64_t id;
		EVP_PKEY *key;      /* NULL: no key for it when last looked up */
		uint64_t noted_ms;  /* CLOCK_MONOTONIC */
		/* Last accepted sequence ID on disk (committed: it never goes
		 * back, unlike one only staged); 0: none known. */
		uint64_t committed_seq;
	} senders[64];
	uint64_t refused_unrecorded; /* messages given no record: certain drops */
	struct node_event *head, *tail;
	size_t queued_messages;
	size_t queued_control;
	size_t queued_bytes;     /* of the queued messages (their cost) */
	uint64_t received;       /* every message Paho handed over */
	uint64_t queue_full;     /* dropped because the queue was full */
	uint64_t queue_full_reported;
	uint64_t control_lost;
	uint64_t publishes_pending;  /* QoS 1 publishes not yet acknowledged */
	bool disconnected;
	int efd;

	/* Inbound records (see inbound_put). */
	struct srup_inbound *records; /* <state_dir>/inbound */
	bool records_unusable;       /* Paho's layout is not the one we know */
	/* Message IDs recorded by inbound_put that Paho will offer to
	 * messageArrived once more from its queue (a ring, in Paho's order). */
	int *recorded_ids;
	size_t recorded_head, recorded_count, recorded_cap;
	/* Paho's other records (its queued commands, which it reads back
	 * before sending them), kept in memory only: a new process starts
	 * without them, as with no persistence at all. */
	struct node_kept {
		struct node_kept *next;
		char *key;
		char *data;
		int len;
	} *kept[256];
};

struct node_handler {
	srup_node_handler fn;
	void *user;
	uint64_t allowed_sender;
};

/* Messages of one drained burst that passed every check, their accepted
 * IDs staged in the sequence store. Their handlers run, in arrival order,
 * only once one commit has put those IDs on disk. */
struct node_batch {
	size_t count;
	struct node_batch_item {
		struct node_event *ev; /* owns the topic */
		struct srup_msg *msg;
		struct node_handler handler; /* as checked */
	} items[NODE_BATCH_MAX];
};

struct srup_node {
	sd_event *loop;
	sd_event_source *inbox_source;
	sd_event_source *resubscribe_timer;
	struct node_inbox inbox;
	MQTTAsync client;
	bool client_created;
	MQTTClient_persistence persistence; /* inbound records, before the PUBACK */
	struct paho_waker *waker;
	bool dispatching;                   /* inside inbox_drain */
	struct node_event *handling;        /* the message whose handler runs */

	struct srup_node_config cfg;
	char paho_uri[272];
	bool tls;
	uint16_t broker_port;
	char own_topic[SRUP_TOPIC_MAX];      /* SRUP/<id> */
	char server_prefix[SRUP_TOPIC_MAX];  /* SRUP/servers/<id>/ */
	char id_text[17];

	EVP_PKEY *identity;
	struct srup_keystore *peers;
	struct srup_seqstore *seq;

	struct node_handler handlers[256];

	/* Server role: devices whose topics we handle, sorted. */
	uint64_t *watched;
	size_t n_watched, cap_watched;

	bool connect_requested;
	bool connect_deferred; /* asked for while records from before a start were queued */
	bool connected;  /* session up and subscriptions acknowledged */

	/* Records from before this start, queued a queue's worth at a time
	 * before anything new is received (records_recover_some). */
	bool recovering;
	struct srup_inbound_record recover_next; /* read, not yet queued (id 0: none) */
	size_t recovered;

	/* Holds whose note is written but not yet synced: synced together
	 * before anything is published (srup_node_hold_note). */
	uint64_t *notes_unsynced;
	size_t n_notes_unsynced, cap_notes_unsynced;
	/* Sends made by the handlers of a batch while notes wait for their
	 * sync: published in order once the batch is done, after one sync. */
	bool in_batch;
	struct node_deferred {
		char *topic;
		uint8_t *wire;
		size_t len;
		srup_node_sent_fn done;
		void *user;
		const char *type_name;
		uint64_t seq;
	} *deferred;
	size_t n_deferred, cap_deferred;
	/* The current round of subscriptions (one per topic filter, sorted
	 * by token): connected once every one was granted. */
	struct node_subscription {
		int token;
		bool granted;
	} *round;
	size_t round_count, round_pending;
	void (*on_connected)(struct srup_node *node, void *user);
	void *on_connected_user;

	/* Device role: extra topics (groups), and their subscriptions that
	 * are waiting for the broker's answer. */
	char **extra;
	size_t n_extra;
	struct node_topic_op {
		int token;
		char *topic;
		srup_node_topic_done done;
		void *user;
	} *topic_ops;
	size_t n_topic_ops;

	struct srup_node_stats stats;
};

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

static const char *type_name(uint8_t type)
{
	const struct srup_type_desc *t = srup_type_by_code(type);

	return t ? t->name : "unknown";
}

/* ---- the Paho side: only the inbox ------------------------------------ */

static void inbox_wake(struct node_inbox *in)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already non-zero: the loop will wake. */
	if (write(in->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		srup_log(LOG_ERR, "cannot wake the event loop: %s", strerror(errno));
}

/* Append ev (control events only); frees it if the bound is reached. */
static void inbox_post(struct node_inbox *in, struct node_event *ev)
{
	pthread_mutex_lock(&in->lock);
	if (in->queued_control >= NODE_QUEUE_MAX_CONTROL) {
		in->control_lost++;
		pthread_mutex_unlock(&in->lock);
		free(ev->publish);
		free(ev);
		return;
	}
	in->queued_control++;
	if (in->tail)
		in->tail->next = ev;
	else
		in->head = ev;
	in->tail = ev;
	pthread_mutex_unlock(&in->lock);
	inbox_wake(in);
}

static void post_control(struct node_inbox *in, enum node_event_kind kind, int token, int code,
			 const char *text)
{
	struct node_event *ev = calloc(1, sizeof(*ev));

	if (!ev)
		return;
	ev->kind = kind;
	ev->token = token;
	ev->code = code;
	if (text)
		snprintf(ev->text, sizeof(ev->text), "%s", text);
	inbox_post(in, ev);
}

/* Queue one message for the loop (copying topic and payload). topic holds
 * copy_len bytes; topic_len is the length Paho reported (longer if the
 * topic held a NUL byte). record is the message's inbound record (0:
 * none). reserved: the caller took its room with inbox_reserve (a message
 * that was or will be acknowledged: never dropped for want of room);
 * otherwise it is dropped, and counted, if the queue is full. Any Paho
 * thread, or the loop at start. */
static void inbox_take(struct node_inbox *in, const char *topic, size_t copy_len,
		       size_t topic_len, const void *payload, size_t plen, uint64_t record,
		       bool recovered_accepted, bool reserved, const uint8_t *note,
		       size_t note_len, EVP_PKEY *verified_with);

/* What a queued message counts against NODE_QUEUE_MAX_BYTES; oversized
 * payloads are not copied, so they cost only their event. */
static size_t message_cost(size_t tlen, size_t plen)
{
	return sizeof(struct node_event) + tlen + 1 + (plen <= NODE_PAYLOAD_MAX ? plen : 0);
}

/* Under in->lock. */
static bool room_for(const struct node_inbox *in, size_t cost)
{
	return in->queued_messages < NODE_QUEUE_MAX_MESSAGES && in->queued_bytes <= NODE_QUEUE_MAX_BYTES &&
	       cost <= NODE_QUEUE_MAX_BYTES - in->queued_bytes;
}

/* Take room in the receive queue for a message about to be acknowledged,
 * waiting for it: Paho's thread, before the PUBACK, so while it waits the
 * broker keeps the rest (it sends no more than its in-flight window to an
 * unacknowledging client) instead of this process dropping them. The loop
 * makes room each time it takes the queue. The wait ends without room only
 * while the loop calls into Paho, which would wait for this thread, or the
 * node stops: then the message goes over the bound, never lost. */
static void inbox_reserve(struct node_inbox *in, size_t cost)
{
	bool waited = false;

	pthread_mutex_lock(&in->lock);
	while (!room_for(in, cost) && in->loop_in_paho == 0 && !in->stopping) {
		waited = true;
		pthread_cond_wait(&in->room, &in->lock);
	}
	in->waited_for_room += waited;
	in->queued_messages++;
	in->queued_bytes += cost;
	pthread_mutex_unlock(&in->lock);
}

/* Around every call the loop makes into Paho (or wait on it): Paho's
 * thread may be waiting in inbox_reserve with Paho's lock held. */
static void paho_enter(struct node_inbox *in)
{
	pthread_mutex_lock(&in->lock);
	in->loop_in_paho++;
	pthread_cond_broadcast(&in->room);
	pthread_mutex_unlock(&in->lock);
}

static void paho_leave(struct node_inbox *in)
{
	pthread_mutex_lock(&in->lock);
	in->loop_in_paho--;
	pthread_mutex_unlock(&in->lock);
}

#define PAHO(n, call)                            \
	({                                       \
		paho_enter(&(n)->inbox);         \
		__typeof__(call) paho_rc_ = call; \
		paho_leave(&(n)->inbox);         \
		paho_rc_;                        \
	})

/* ---- inbound records ---------------------------------------------------
 *
 * Paho 1.3.12 writes the PUBACK of an incoming QoS 1 PUBLISH as soon as
 * messageArrived returns (MQTTProtocol_handlePublishes calls
 * Protocol_processPublication, which calls it, then sends the PUBACK),
 * and any Paho call from another thread waits while messageArrived runs,
 * so the callback can neither wait for the loop nor let the loop publish.
 * Instead it returns 0 the first time it is offered a QoS 1 message: Paho
 * then queues the message and hands it to its client persistence before it
 * writes the PUBACK. That persistence is ours: inbound_put writes the
 * message to the inbound record store (srup_inbound.h) and queues it for
 * the loop. When Paho offers the message again from its queue the callback
 * returns 1 (already taken). The loop removes the record once it dropped
 * the message for a stated reason, or accepted it, committed its sequence
 * ID and ran its handler (or, if the handler holds it, once released).
 * Records left at start are read back and run through the pipeline:
 * records marked accepted had passed every check and had their ID
 * committed, so they go to their handler again without the replay rule.
 * Nothing but the queue entries ("q-" keys) is kept: Paho's own records of
 * outgoing messages and commands are ignored, as without persistence. */

static uint64_t fnv1a(const void *data, size_t len, uint64_t h)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

#define FNV_OFFSET 0xcbf29ce484222325ull

static void record_remove(struct node_inbox *in, uint64_t id)
{
	srup_inbound_remove(in->records, id);
}

static bool recorded_push(struct node_inbox *in, int msgid)
{
	if (in->recorded_count == in->recorded_cap) {
		size_t cap = in->recorded_cap ? in->recorded_cap * 2 : 64;
		int *grown = malloc(cap * sizeof(*grown));

		if (!grown)
			return false;
		for (size_t i = 0; i < in->recorded_count; i++)
			grown[i] = in->recorded_ids[(in->recorded_head + i) % in->recorded_cap];
		free(in->recorded_ids);
		in->recorded_ids = grown;
		in->recorded_cap = cap;
		in->recorded_head = 0;
	}
	in->recorded_ids[(in->recorded_head + in->recorded_count) % in->recorded_cap] = msgid;
	in->recorded_count++;
	return true;
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

static struct node_sender *sender_slot(struct node_inbox *in, uint64_t id)
{
	return &in->senders[(id ^ (id >> 17) ^ (id >> 41)) % 64];
}

/* The loop: sender's key as the key store gave it now (NULL: none). */
static void sender_note(struct node_inbox *in, uint64_t id, EVP_PKEY *key)
{
	struct node_sender *e;
	EVP_PKEY *old = NULL;

	pthread_mutex_lock(&in->senders_lock);
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
	pthread_mutex_unlock(&in->senders_lock);
	EVP_PKEY_free(old);
}

/* The loop, after a commit: seq from sender is on disk as accepted. */
static void sender_note_committed(struct node_inbox *in, uint64_t id, uint64_t seq)
{
	struct node_sender *e;

	pthread_mutex_lock(&in->senders_lock);
	e = sender_slot(in, id);
	if (e->id == id && seq > e->committed_seq)
		e->committed_seq = seq;
	pthread_mutex_unlock(&in->senders_lock);
}

/* Paho's thread, before the PUBACK: false only for a message the receive
 * pipeline is certain to drop, which then gets no record (no write and no
 * fdatasync for junk, nor for our own messages coming back): not a SRUP
 * message, a type that carries no signature, our own, from a sender the
 * loop found no key for just now, a sequence ID not above one committed as
 * accepted from that sender, or whose signature does not verify with the
 * key the loop found. Anything it cannot tell is recorded. The loop
 * still checks every message in full, so a message given no record here
 * by a stale view of the keys is handled all the same, only not kept
 * across a crash. */
static bool worth_a_record(struct node_inbox *in, const void *payload, size_t plen,
			   EVP_PKEY **verified_with)
{
	struct srup_msg *msg = NULL;
	struct srup_decode_error derr = {0};
	const struct srup_type_desc *desc;
	struct node_sender *e;
	EVP_PKEY *key = NULL;
	bool worth = true, certain_drop = false;

	if (srup_msg_decode(payload, plen, &msg, &derr) != SRUP_OK)
		return false;
	desc = srup_type_by_code(msg->type);
	if (!desc || !desc->is_signed || msg->sender_id == in->own_id) {
		srup_msg_free(msg);
		return false;
	}
	pthread_mutex_lock(&in->senders_lock);
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
	pthread_mutex_unlock(&in->senders_lock);
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

/* Paho's queue entry (MQTTPersistence_persistQueueEntry, MQTT 3.1.1): 8
 * buffers: payloadlen, payload, qos, retained, dup, msgid, topic with its
 * NUL, topicLen. */
static int inbound_put(struct node_inbox *in, int count, char *bufs[], int lens[])
{
	int payloadlen, msgid, topic_len;
	size_t copy_len, tlen;
	EVP_PKEY *verified_with = NULL;
	uint64_t id = 0;
	bool usable = count == 8 && lens[0] == (int)sizeof(int) && lens[5] == (int)sizeof(int) &&
		      lens[6] >= 1 && lens[7] == (int)sizeof(int);

	if (usable) {
		memcpy(&payloadlen, bufs[0], sizeof(int));
		memcpy(&msgid, bufs[5], sizeof(int));
		memcpy(&topic_len, bufs[7], sizeof(int));
		usable = payloadlen == lens[1] && payloadlen >= 0 && bufs[6][lens[6] - 1] == '\0' &&
			 topic_len >= 0;
	}
	pthread_mutex_lock(&in->lock);
	if (!in->records_unusable && (!usable || !recorded_push(in, msgid))) {
		in->records_unusable = true;
		pthread_mutex_unlock(&in->lock);
		srup_log(LOG_ERR, "MQTT client's received-message record is not as expected (or no "
			 "memory): from now on messages are acknowledged on arrival and are lost "
			 "if the process dies before handling them");
		return 0;
	}
	if (in->records_unusable) {
		pthread_mutex_unlock(&in->lock);
		return 0;
	}
	pthread_mutex_unlock(&in->lock);

	copy_len = strlen(bufs[6]);
	tlen = topic_len > 0 ? (size_t)topic_len : copy_len;
	inbox_reserve(in, message_cost(tlen, (size_t)payloadlen));
	/* An oversized message is dropped (and said so) without a record:
	 * nobody may make us write more than a message can hold. */
	if ((size_t)payloadlen <= NODE_PAYLOAD_MAX && tlen <= NODE_TOPIC_LEN_MAX &&
	    !worth_a_record(in, bufs[1], (size_t)payloadlen, &verified_with)) {
		pthread_mutex_lock(&in->lock);
		in->refused_unrecorded++;
		pthread_mutex_unlock(&in->lock);
	} else if ((size_t)payloadlen <= NODE_PAYLOAD_MAX && tlen <= NODE_TOPIC_LEN_MAX) {
		enum srup_inbound_err e = srup_inbound_write(in->records, bufs[6], copy_len, bufs[1],
							    (size_t)payloadlen, &id);
		if (e != SRUP_INBOUND_OK)
			srup_log(LOG_ERR, "cannot write inbound record for a message on %.*s: %s: "
				 "%s; it is lost if the process dies before handling it",
				 (int)(copy_len > 200 ? 200 : copy_len), bufs[6],
				 srup_inbound_strerror(e), strerror(errno));
	}
	inbox_take(in, bufs[6], copy_len, tlen, bufs[1], (size_t)payloadlen, id, false, true, NULL, 0,
		   verified_with);
	return 0;
}

static struct node_kept **kept_slot(struct node_inbox *in, const char *key)
{
	struct node_kept **slot = &in->kept[fnv1a(key, strlen(key), FNV_OFFSET) % 256];

	while (*slot && strcmp((*slot)->key, key) != 0)
		slot = &(*slot)->next;
	return slot;
}

static void kept_remove(struct node_kept **slot)
{
	struct node_kept *k = *slot;

	*slot = k->next;
	free(k->key);
	free(k->data);
	free(k);
}

static int kept_put(struct node_inbox *in, const char *key, int count, char *bufs[], int lens[])
{
	struct node_kept *k = calloc(1, sizeof(*k)), **slot;
	size_t total = 0, at = 0;

	for (int i = 0; i < count; i++)
		total += lens[i] > 0 ? (size_t)lens[i] : 0;
	if (!k || total > INT32_MAX || !(k->key = strdup(key)) ||
	    !(k->data = malloc(total ? total : 1))) {
		if (k)
			free(k->key);
		free(k);
		return MQTTCLIENT_PERSISTENCE_ERROR;
	}
	for (int i = 0; i < count; i++)
		if (lens[i] > 0) {
			memcpy(k->data + at, bufs[i], (size_t)lens[i]);
			at += (size_t)lens[i];
		}
	k->len = (int)total;
	pthread_mutex_lock(&in->lock);
	slot = kept_slot(in, key);
	if (*slot)
		kept_remove(slot);
	k->next = in->kept[fnv1a(key, strlen(key), FNV_OFFSET) % 256];
	in->kept[fnv1a(key, strlen(key), FNV_OFFSET) % 256] = k;
	pthread_mutex_unlock(&in->lock);
	return 0;
}

static void kept_clear(struct node_inbox *in)
{
	for (size_t i = 0; i < 256; i++)
		while (in->kept[i])
			kept_remove(&in->kept[i]);
}

static int persist_open(void **handle, const char *client_id, const char *uri, void *context)
{
	(void)client_id;
	(void)uri;
	*handle = context;
	return 0;
}

static int persist_close(void *handle)
{
	(void)handle;
	return 0;
}

static int persist_put(void *handle, char *key, int count, char *bufs[], int lens[])
{
	/* "q-": the received-message queue of an MQTT 3.1.1 client. */
	if (strncmp(key, "q-", 2) == 0)
		return inbound_put(handle, count, bufs, lens);
	return kept_put(handle, key, count, bufs, lens);
}

/* Paho up to 1.3.12 reads a buffered command back (pget) just before it
 * sends it and never frees the buffer (later versions do); it removes the
 * record right after. So those versions get our own copy, freed on remove,
 * and later ones a copy of it to free. (Debian 12's 1.3.12 reports itself
 * as 1.3.11.) */
static bool paho_frees_what_it_reads(void)
{
	static int cached = -1;
	MQTTAsync_nameValue *info;
	unsigned a = 0, b = 0, c = 0;

	if (cached >= 0)
		return cached;
	cached = 1;
	for (info = MQTTAsync_getVersionInfo(); info && info->name; info++)
		if (strcmp(info->name, "Version") == 0 && info->value &&
		    sscanf(info->value, "%u.%u.%u", &a, &b, &c) == 3)
			cached = a > 1 || (a == 1 && (b > 3 || (b == 3 && c > 12)));
	return cached;
}

static int persist_get(void *handle, char *key, char **buf, int *len)
{
	struct node_inbox *in = handle;
	struct node_kept **slot;
	bool copy = paho_frees_what_it_reads();
	int rc = MQTTCLIENT_PERSISTENCE_ERROR;

	pthread_mutex_lock(&in->lock);
	slot = kept_slot(in, key);
	if (*slot && !copy) {
		*buf = (*slot)->data;
		*len = (*slot)->len;
		rc = 0;
	} else if (*slot && (*buf = malloc((*slot)->len ? (size_t)(*slot)->len : 1))) {
		memcpy(*buf, (*slot)->data, (size_t)(*slot)->len);
		*len = (*slot)->len;
		rc = 0;
	}
	pthread_mutex_unlock(&in->lock);
	return rc;
}

static int persist_remove(void *handle, char *key)
{
	struct node_inbox *in = handle;
	struct node_kept **slot;

	/* Inbound records ("q-") are removed by the loop, once handled. */
	pthread_mutex_lock(&in->lock);
	slot = kept_slot(in, key);
	if (*slot)
		kept_remove(slot);
	pthread_mutex_unlock(&in->lock);
	return 0;
}

static int persist_keys(void *handle, char ***keys, int *nkeys)
{
	(void)handle;
	*keys = NULL;
	*nkeys = 0; /* the node reads its records back itself */
	return 0;
}

/* Paho cleans a session the broker did not keep: its queue is emptied
 * without the messages being offered again. */
static int persist_clear(void *handle)
{
	struct node_inbox *in = handle;

	pthread_mutex_lock(&in->lock);
	in->recorded_count = 0;
	in->recorded_head = 0;
	kept_clear(in);
	pthread_mutex_unlock(&in->lock);
	return 0;
}

static int persist_containskey(void *handle, char *key)
{
	struct node_inbox *in = handle;
	bool found;

	pthread_mutex_lock(&in->lock);
	found = *kept_slot(in, key) != NULL;
	pthread_mutex_unlock(&in->lock);
	return found ? 0 : MQTTCLIENT_PERSISTENCE_ERROR;
}

static void inbox_take(struct node_inbox *in, const char *topic, size_t copy_len,
		       size_t tlen, const void *payload, size_t plen, uint64_t record,
		       bool recovered_accepted, bool reserved, const uint8_t *note,
		       size_t note_len, EVP_PKEY *verified_with)
{
	struct node_event *ev = NULL;
	size_t cost = message_cost(tlen, plen);
	bool full = false, full_bytes = false;

	pthread_mutex_lock(&in->lock);
	in->received++;
	if (!reserved) {
		full = in->queued_messages >= NODE_QUEUE_MAX_MESSAGES;
		full_bytes = !full && !room_for(in, cost);
	}
	if (full || full_bytes) {
		full = true;
		in->queue_full++;
		/* One line per burst; the loop reports the total when it drains. */
		if (in->queue_full == in->queue_full_reported + 1)
			srup_log(LOG_WARNING,
				 "dropped message on %.*s: receive queue full (%u %s)",
				 (int)(copy_len > 200 ? 200 : copy_len), topic,
				 full_bytes ? NODE_QUEUE_MAX_BYTES : NODE_QUEUE_MAX_MESSAGES,
				 full_bytes ? "bytes" : "messages");
	} else if (!reserved) {
		/* Reserve the slot before copying. */
		in->queued_messages++;
		in->queued_bytes += cost;
	}
	pthread_mutex_unlock(&in->lock);
	if (full) {
		EVP_PKEY_free(verified_with);
		return; /* never one with a record: those were reserved */
	}

	if (tlen <= NODE_TOPIC_LEN_MAX) {
		ev = calloc(1, sizeof(*ev));
		if (ev) {
			ev->kind = NODE_EV_MESSAGE;
			ev->len = plen;
			ev->cost = cost;
			ev->topic_len = tlen;
			ev->record = record;
			ev->recovered_accepted = recovered_accepted;
			ev->verified_with = verified_with;
			verified_with = NULL;
			if (note && note_len <= sizeof(ev->note)) {
				memcpy(ev->note, note, note_len);
				ev->note_len = note_len;
			}
			/* Copied whole: strndup would stop at an embedded NUL
			 * and pass off the part before it as the topic. */
			ev->topic = calloc(1, tlen + 1);
			if (ev->topic)
				memcpy(ev->topic, topic, copy_len < tlen ? copy_len : tlen);
			/* Oversized payloads are not copied: the loop logs and
			 * counts them from the length alone. */
			if (plen <= NODE_PAYLOAD_MAX) {
				ev->payload = malloc(plen ? plen : 1);
				if (ev->payload)
					memcpy(ev->payload, payload, plen);
			}
			if (!ev->topic || (plen <= NODE_PAYLOAD_MAX && !ev->payload)) {
				EVP_PKEY_free(ev->verified_with);
				free(ev->topic);
				free(ev->payload);
				free(ev);
				ev = NULL;
			}
		}
	}
	EVP_PKEY_free(verified_with); /* not taken by an event */
	if (!ev && record)
		/* Its record stays: the next start hands it over. */
		srup_log(LOG_ERR, "out of memory for a message on %.*s; it is handled at the "
			 "next start", (int)(copy_len > 200 ? 200 : copy_len), topic);
	bool first = false;

	pthread_mutex_lock(&in->lock);
	if (ev) {
		/* The loop takes the whole queue each time it wakes: only the
		 * first of a run needs to wake it (a message per wake-up costs
		 * a context switch each under a flood). */
		first = !in->head;
		if (in->tail)
			in->tail->next = ev;
		else
			in->head = ev;
		in->tail = ev;
	} else {
		in->queued_messages--;
		in->queued_bytes -= cost;
		if (!record)
			in->queue_full++; /* lost for want of memory: count it */
	}
	pthread_mutex_unlock(&in->lock);
	if (first)
		inbox_wake(in);
}

static int paho_message_arrived(void *context, char *topic_name, int topic_len,
				MQTTAsync_message *message)
{
	struct node_inbox *in = context;
	size_t tlen = topic_len > 0 ? (size_t)topic_len : strlen(topic_name);
	size_t plen = message->payloadlen > 0 ? (size_t)message->payloadlen : 0;
	bool direct, recorded = false;

	pthread_mutex_lock(&in->lock);
	direct = message->qos == 0 || in->records_unusable;
	if (message->qos > 0 && in->recorded_count > 0 &&
	    in->recorded_ids[in->recorded_head] == message->msgid) {
		in->recorded_head = (in->recorded_head + 1) % in->recorded_cap;
		in->recorded_count--;
		recorded = true;
	}
	pthread_mutex_unlock(&in->lock);
	if (!direct && !recorded)
		return 0; /* Paho queues it, we record it (inbound_put), then the PUBACK */
	if (!recorded) {
		/* Acknowledged once this returns: never dropped for want of room. */
		if (message->qos > 0)
			inbox_reserve(in, message_cost(tlen, plen));
		inbox_take(in, topic_name, tlen, tlen, message->payload, plen, 0, false,
			   message->qos > 0, NULL, 0, NULL);
	}
	MQTTAsync_freeMessage(&message);
	MQTTAsync_free(topic_name);
	return 1; /* taken: Paho drops its copy */
}

static void paho_connected(void *context, char *cause)
{
	post_control(context, NODE_EV_CONNECTED, 0, 0, cause ? cause : "connected");
}

static void paho_connection_lost(void *context, char *cause)
{
	post_control(context, NODE_EV_CONNECTION_LOST, 0, 0, cause ? cause : "no cause given");
}

static void paho_connect_failed(void *context, MQTTAsync_failureData *data)
{
	post_control(context, NODE_EV_CONNECT_FAILED, 0, data ? data->code : 0,
		     data && data->message ? data->message
					   : MQTTAsync_strerror(data ? data->code : -1));
}

#define MQTT_SUBACK_FAILURE 0x80

/* Every subscription is of one topic filter: Paho reports a refused one
 * (granted 0x80) as a failure, while for several filters in one SUBSCRIBE
 * it reports success with a list of grants whose length it does not give. */
static void paho_subscribed_one(void *context, MQTTAsync_successData *data)
{
	if (data && data->alt.qos == MQTT_SUBACK_FAILURE)
		post_control(context, NODE_EV_SUBSCRIBE_FAILED, data->token, MQTT_SUBACK_FAILURE,
			     "topic filter refused");
	else
		post_control(context, NODE_EV_SUBSCRIBED, data ? data->token : 0, 0, NULL);
}

static void paho_subscribe_failed(void *context, MQTTAsync_failureData *data)
{
	post_control(context, NODE_EV_SUBSCRIBE_FAILED, data ? data->token : 0,
		     data ? data->code : 0,
		     data && data->message ? data->message
		     : data && data->code == MQTT_SUBACK_FAILURE
			     ? "the broker refused the topic filter"
			     : MQTTAsync_strerror(data ? data->code : -1));
}

static void publish_settled(struct node_inbox *in)
{
	pthread_mutex_lock(&in->lock);
	if (in->publishes_pending > 0)
		in->publishes_pending--;
	pthread_cond_broadcast(&in->changed);
	pthread_mutex_unlock(&in->lock);
}

static void paho_published(void *context, MQTTAsync_successData *data)
{
	(void)data;
	publish_settled(context);
}

static void paho_publish_failed(void *context, MQTTAsync_failureData *data)
{
	publish_settled(context);
	post_control(context, NODE_EV_PUBLISH_FAILED, data ? data->token : 0,
		     data ? data->code : 0,
		     data && data->message ? data->message
					   : MQTTAsync_strerror(data ? data->code : -1));
}

/* Tracked sends: the outcome goes to the loop with the caller's callback. */
static void post_publish(struct node_publish *p, enum node_event_kind kind, int token, int code,
			 const char *text)
{
	struct node_inbox *in = p->inbox;
	struct node_event *ev = &p->ev;

	ev->kind = kind;
	ev->token = token;
	ev->code = code;
	ev->publish = p;
	if (text)
		snprintf(ev->text, sizeof(ev->text), "%s", text);
	/* Not bounded: there is one per tracked send, made with it. Queued
	 * before a flush can see the publish settled. */
	pthread_mutex_lock(&in->lock);
	in->queued_control++;
	if (in->tail)
		in->tail->next = ev;
	else
		in->head = ev;
	in->tail = ev;
	pthread_mutex_unlock(&in->lock);
	inbox_wake(in);
	publish_settled(in);
}

static void paho_published_tracked(void *context, MQTTAsync_successData *data)
{
	post_publish(context, NODE_EV_PUBLISHED, data ? data->token : 0, 0, NULL);
}

static void paho_publish_failed_tracked(void *context, MQTTAsync_failureData *data)
{
	post_publish(context, NODE_EV_PUBLISH_FAILED, data ? data->token : 0,
		     data ? data->code : 0,
		     data && data->message ? data->message
					   : MQTTAsync_strerror(data ? data->code : -1));
}

static void paho_disconnect_done(void *context, MQTTAsync_successData *data)
{
	struct node_inbox *in = context;

	(void)data;
	pthread_mutex_lock(&in->lock);
	in->disconnected = true;
	pthread_cond_broadcast(&in->changed);
	pthread_mutex_unlock(&in->lock);
}

static void paho_disconnect_failed(void *context, MQTTAsync_failureData *data)
{
	(void)data;
	paho_disconnect_done(context, NULL);
}

/* ---- topic rules ------------------------------------------------------ */

static bool is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

static bool watched_find(const struct srup_node *n, uint64_t dev, size_t *pos)
{
	size_t lo = 0, hi = n->n_watched;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (n->watched[mid] == dev) {
			*pos = mid;
			return true;
		}
		if (n->watched[mid] < dev)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return false;
}

/* NULL if the topic is one this role handles, else why not. */
static bool extra_find(const struct srup_node *n, const char *topic, size_t *pos);

static const char *topic_rejected(const struct srup_node *n, const char *topic)
{
	size_t extra_pos;

	if (n->cfg.role == SRUP_NODE_ROLE_DEVICE)
		return strcmp(topic, n->own_topic) == 0 || extra_find(n, topic, &extra_pos)
			       ? NULL
			       : "topic is not this device's own nor one of its groups";

	/* Server: SRUP/servers/<own>/<\w+> */
	size_t plen = strlen(n->server_prefix);
	if (strncmp(topic, n->server_prefix, plen) == 0) {
		const char *rest = topic + plen;
		if (*rest == '\0')
			return "server topic has no sender segment";
		for (const char *p = rest; *p; p++)
			if (!is_word_char(*p))
				return "server topic segment is not a word (\\w+)";
		return NULL;
	}
	/* SRUP/<dev> or SRUP/<dev>/... for a watched device, the ID in its
	 * canonical topic form. */
	if (strncmp(topic, "SRUP/", 5) == 0) {
		const char *seg = topic + 5;
		size_t len = strcspn(seg, "/");
		char text[17], canon[17];
		uint64_t dev;
		size_t pos;

		if (len == 0 || len > 16)
			return "topic is not a watched device's";
		memcpy(text, seg, len);
		text[len] = '\0';
		if (srup_id_parse(text, &dev) != 0)
			return "topic is not a watched device's";
		srup_id_format_topic(dev, canon);
		if (strcmp(canon, text) != 0 || !watched_find(n, dev, &pos))
			return "topic is not a watched device's";
		return NULL;
	}
	return "topic is not one this server handles";
}

/* ---- the receive pipeline (loop thread) -------------------------------- */

#define DROP(n, reason, topic, ...)                                                             \
	do {                                                                                    \
		char reason_[400];                                                              \
		snprintf(reason_, sizeof(reason_), __VA_ARGS__);                                \
		srup_log(LOG_WARNING, "dropped message on %s: %s", (topic), reason_);           \
		(n)->stats.dropped++;                                                           \
		(n)->stats.dropped_by[SRUP_NODE_DROP_##reason]++;                               \
	} while (0)

/* Every check of the receive pipeline for one message, up to and including
 * the sequence ID against the in-memory values (which include the earlier
 * messages of this batch); a message that passes has its ID staged and is
 * added to the batch (true: the batch owns ev). */
static bool pipeline_check(struct srup_node *n, struct node_event *ev, struct node_batch *batch)
{
	const char *topic = ev->topic;
	const uint8_t *payload = ev->payload;
	size_t len = ev->len;
	struct srup_msg *msg = NULL;
	struct srup_decode_error derr = {0};
	const struct srup_type_desc *desc;
	const struct node_handler *h;
	char sender[17], allowed[17];
	char detail[512] = "";
	EVP_PKEY *key;
	enum srup_err err;
	enum srup_seq_err serr;

	const char *why = strlen(topic) != ev->topic_len ? "topic contains a NUL byte"
							 : topic_rejected(n, topic);
	if (why) {
		DROP(n, TOPIC, topic, "%s", why);
		return false;
	}
	if (!payload) {
		DROP(n, SIZE, topic, "payload of %zu bytes exceeds the limit of %u bytes", len,
		     NODE_PAYLOAD_MAX);
		return false;
	}
	err = srup_msg_decode(payload, len, &msg, &derr);
	if (err != SRUP_OK) {
		if (err == SRUP_E_TRUNCATED || err == SRUP_E_FIELD_BOUND)
			DROP(n, DECODE, topic,
			     "decode error: %s in field %s at offset %zu (needs %zu bytes, %zu "
			     "there)",
			     srup_strerror(err), derr.field ? derr.field : "?", derr.offset,
			     derr.need, derr.have);
		else
			DROP(n, DECODE, topic, "decode error: %s in field %s at offset %zu",
			     srup_strerror(err), derr.field ? derr.field : "?", derr.offset);
		return false;
	}
	desc = srup_type_by_code(msg->type);
	srup_id_format16(msg->sender_id, sender);
	if (!desc || !desc->is_signed) {
		DROP(n, UNSIGNED, topic, "type %s (0x%02x) carries no signature", type_name(msg->type),
		     msg->type);
		goto out;
	}
	if (msg->sender_id == n->cfg.id) {
		/* Both directions share SRUP/<dev>: our own messages come back. */
		srup_log(LOG_DEBUG, "ignored our own %s on %s", desc->name, topic);
		n->stats.ignored_own++;
		goto out;
	}
	key = srup_keystore_lookup(n->peers, msg->sender_id);
	sender_note(&n->inbox, msg->sender_id, key);
	if (!key) {
		DROP(n, UNKNOWN_SENDER, topic, "unknown sender key for %s (%s)", sender, desc->name);
		goto out;
	}
	/* Verified already on Paho's thread with this very key (still alive:
	 * the event holds a reference), over these bytes. */
	err = ev->verified_with == key ? SRUP_OK : srup_msg_verify(msg, key);
	if (err != SRUP_OK) {
		DROP(n, SIGNATURE, topic, "bad signature on %s from %s: %s", desc->name, sender,
		     srup_strerror(err));
		goto out;
	}
	h = &n->handlers[msg->type];
	if (!h->fn) {
		DROP(n, NO_HANDLER, topic, "no handler for type %s (0x%02x) from %s", desc->name, msg->type,
		     sender);
		goto out;
	}
	if (h->allowed_sender != SRUP_NODE_ANY_SENDER && h->allowed_sender != msg->sender_id) {
		srup_id_format16(h->allowed_sender, allowed);
		DROP(n, SENDER_NOT_ALLOWED, topic, "sender %s not allowed to send %s (only %s)", sender, desc->name,
		     allowed);
		goto out;
	}
	if (ev->recovered_accepted) {
		/* Accepted and committed before a restart; its handler may not
		 * have finished: it runs again (handlers are idempotent). */
		srup_log(LOG_INFO, "%s seq %" PRIu64 " from %s on %s: accepted before a restart, "
			 "handled again", desc->name, msg->sequence_id, sender, topic);
		/* Marked, but the crash may have come before the commit. */
		if (srup_seqstore_is_fresh(n->seq, msg->sender_id, msg->sequence_id) &&
		    srup_seqstore_stage_accept(n->seq, msg->sender_id, msg->sequence_id, detail,
					       sizeof(detail)) != SRUP_SEQ_OK)
			srup_log(LOG_ERR, "cannot record sequence id from %s: %s", sender, detail);
		batch->items[batch->count++] =
			(struct node_batch_item){.ev = ev, .msg = msg, .handler = *h};
		return true;
	}
	if (!srup_seqstore_is_fresh(n->seq, msg->sender_id, msg->sequence_id)) {
		DROP(n, REPLAY, topic, "replayed sequence id %" PRIu64 " <= last accepted %" PRIu64
			       " from %s (%s)",
		     msg->sequence_id, srup_seqstore_last_accepted(n->seq, msg->sender_id), sender,
		     desc->name);
		goto out;
	}
	/* Last accepted moves only here, after the signature and the sender
	 * were checked; it reaches the disk with the batch's commit. */
	serr = srup_seqstore_stage_accept(n->seq, msg->sender_id, msg->sequence_id, detail,
					  sizeof(detail));
	if (serr != SRUP_SEQ_OK) {
		srup_log(LOG_ERR, "cannot record sequence id from %s: %s: %s", sender,
			 srup_seqstore_strerror(serr), detail);
		DROP(n, PERSIST, topic, "sequence id %" PRIu64 " from %s could not be recorded",
		     msg->sequence_id, sender);
		goto out;
	}
	batch->items[batch->count++] =
		(struct node_batch_item){.ev = ev, .msg = msg, .handler = *h};
	return true;
out:
	srup_msg_free(msg);
	return false;
}

/* The end of an event: a message's inbound record goes with it, unless
 * its handler holds it or it must be tried again after a restart. */
static void event_free(struct node_inbox *in, struct node_event *ev)
{
	if (ev->publish && &ev->publish->ev == ev) {
		free(ev->publish); /* a tracked send's outcome, made with it */
		return;
	}
	if (ev->record && !ev->held && !ev->keep_record)
		record_remove(in, ev->record);
	EVP_PKEY_free(ev->verified_with);
	free(ev->publish);
	free(ev->topic);
	free(ev->payload);
	free(ev);
}

/* Persist the batch's accepted IDs with one write, then run its handlers
 * in arrival order. Persisted before acting: a crash after a handler must
 * not let the same message be accepted again, so if the commit fails no
 * handler runs and every message of the batch is dropped (their IDs are
 * unstaged: a retransmission can still be accepted). */
static void deferred_publish(struct srup_node *n);

static void batch_run(struct srup_node *n, struct node_batch *batch)
{
	char detail[512] = "";
	enum srup_seq_err serr;

	if (batch->count == 0)
		return;
	/* Their records say "accepted" before the IDs are committed: once
	 * committed, the replay rule would drop them at the next start, so a
	 * crash before a handler is done must find them marked, and their
	 * handlers run again. */
	for (size_t i = 0; i < batch->count; i++)
		if (batch->items[i].ev->record && !batch->items[i].ev->recovered_accepted)
			srup_inbound_mark_accepted(n->inbox.records, batch->items[i].ev->record);
	serr = srup_seqstore_commit(n->seq, detail, sizeof(detail));
	if (serr != SRUP_SEQ_OK)
		srup_log(LOG_ERR, "cannot persist %zu accepted sequence id(s): %s: %s",
			 batch->count, srup_seqstore_strerror(serr), detail);
	n->in_batch = true;
	for (size_t i = 0; i < batch->count; i++) {
		struct node_batch_item *it = &batch->items[i];

		if (serr == SRUP_SEQ_OK) {
			sender_note_committed(&n->inbox, it->msg->sender_id, it->msg->sequence_id);
			n->stats.accepted++;
			n->handling = it->ev;
			it->handler.fn(n, it->msg, it->ev->topic, it->handler.user);
			n->handling = NULL;
		} else {
			it->ev->keep_record = true; /* tried again at the next start */
			char sender[17];

			srup_id_format16(it->msg->sender_id, sender);
			DROP(n, PERSIST, it->ev->topic, "sequence id %" PRIu64 " from %s could not be persisted",
			     it->msg->sequence_id, sender);
		}
		srup_msg_free(it->msg);
		event_free(&n->inbox, it->ev);
	}
	batch->count = 0;
	n->in_batch = false;
	if (n->n_deferred)
		deferred_publish(n);
}

/* ---- connection handling (loop thread) --------------------------------- */

static int subscription_cmp(const void *a, const void *b)
{
	int x = ((const struct node_subscription *)a)->token;
	int y = ((const struct node_subscription *)b)->token;

	return (x > y) - (x < y);
}

/* Subscribe every topic filter of this role, one SUBSCRIBE each, as a new
 * round (an earlier round's acknowledgements no longer count). */
static int subscribe_all(struct srup_node *n)
{
	size_t count = n->cfg.role == SRUP_NODE_ROLE_DEVICE ? 1 + n->n_extra : 1 + n->n_watched;
	struct node_subscription *round = calloc(count, sizeof(*round));

	free(n->round);
	n->round = NULL;
	n->round_count = n->round_pending = 0;
	if (!round) {
		srup_log(LOG_ERR, "cannot subscribe on %s: out of memory", n->cfg.broker);
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
		char topic[SRUP_TOPIC_MAX + 2];
		int rc;

		if (n->cfg.role == SRUP_NODE_ROLE_DEVICE && i > 0) {
			MQTTAsync_responseOptions eo = MQTTAsync_responseOptions_initializer;

			eo.onSuccess = paho_subscribed_one;
			eo.onFailure = paho_subscribe_failed;
			eo.context = &n->inbox;
			rc = PAHO(n, MQTTAsync_subscribe(n->client, n->extra[i - 1], 1, &eo));
			if (rc != MQTTASYNC_SUCCESS) {
				srup_log(LOG_ERR, "cannot subscribe to %s on %s: %s", n->extra[i - 1],
					 n->cfg.broker, MQTTAsync_strerror(rc));
				free(round);
				return -1;
			}
			round[i].token = eo.token;
			continue;
		}
		if (n->cfg.role == SRUP_NODE_ROLE_DEVICE) {
			snprintf(topic, sizeof(topic), "%s", n->own_topic);
		} else if (i == 0) {
			snprintf(topic, sizeof(topic), "%s#", n->server_prefix);
		} else {
			char t[SRUP_TOPIC_MAX];
			srup_topic_device(n->watched[i - 1], t);
			snprintf(topic, sizeof(topic), "%s/#", t);
		}
		opts.onSuccess = paho_subscribed_one;
		opts.onFailure = paho_subscribe_failed;
		opts.context = &n->inbox;
		rc = PAHO(n, MQTTAsync_subscribe(n->client, topic, 1, &opts));
		if (rc != MQTTASYNC_SUCCESS) {
			srup_log(LOG_ERR, "cannot subscribe to %s on %s: %s", topic, n->cfg.broker,
				 MQTTAsync_strerror(rc));
			free(round);
			return -1;
		}
		round[i].token = opts.token;
	}
	/* Acknowledgements reach the loop only after this returns. */
	qsort(round, count, sizeof(*round), subscription_cmp);
	n->round = round;
	n->round_count = n->round_pending = count;
	return 0;
}

/* Whether token is a not yet granted subscription of the current round;
 * if so it is granted now. */
static bool round_grant(struct srup_node *n, int token)
{
	struct node_subscription key = {.token = token}, *found;

	if (!n->round)
		return false;
	found = bsearch(&key, n->round, n->round_count, sizeof(*n->round), subscription_cmp);
	if (!found || found->granted)
		return false;
	found->granted = true;
	n->round_pending--;
	return true;
}

static void schedule_resubscribe(struct srup_node *n);

static int resubscribe_timer_fired(sd_event_source *s, uint64_t usec, void *user)
{
	struct srup_node *n = user;

	(void)s;
	(void)usec;
	if (PAHO(n, MQTTAsync_isConnected(n->client)) && subscribe_all(n) != 0)
		schedule_resubscribe(n);
	return 0;
}

static void schedule_resubscribe(struct srup_node *n)
{
	uint64_t now;
	uint64_t delay = (uint64_t)n->cfg.reconnect_max_seconds * 1000000u;

	if (sd_event_now(n->loop, CLOCK_MONOTONIC, &now) < 0)
		return;
	if (n->resubscribe_timer) {
		sd_event_source_set_time(n->resubscribe_timer, now + delay);
		sd_event_source_set_enabled(n->resubscribe_timer, SD_EVENT_ONESHOT);
		return;
	}
	sd_event_add_time(n->loop, &n->resubscribe_timer, CLOCK_MONOTONIC, now + delay, 0,
			  resubscribe_timer_fired, n);
}

/* Paho leaves Nagle's algorithm on and offers no hook for socket options.
 * A SRUP hop is two small writes in a row (the PUBACK of what arrived, then
 * the reply PUBLISH), so with Nagle the reply waits for the broker's delayed
 * ACK: about 40 ms per hop on Linux, measured. After each connect, set
 * TCP_NODELAY on this process's TCP sockets to the broker's port (another
 * MQTT connection to that port, if any, is only made faster). */
static void disable_nagle_towards(uint16_t port)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d))) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		struct stat st;
		int fd, type, one = 1;
		socklen_t type_len = sizeof(type);
		uint16_t peer_port;

		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		fd = atoi(de->d_name);
		if (fd == dirfd(d) || fstat(fd, &st) != 0 || !S_ISSOCK(st.st_mode))
			continue;
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &type_len) != 0 ||
		    type != SOCK_STREAM || getpeername(fd, (struct sockaddr *)&peer, &len) != 0)
			continue;
		if (peer.ss_family == AF_INET)
			peer_port = ntohs(((struct sockaddr_in *)&peer)->sin_port);
		else if (peer.ss_family == AF_INET6)
			peer_port = ntohs(((struct sockaddr_in6 *)&peer)->sin6_port);
		else
			continue;
		if (peer_port == port &&
		    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
			srup_log(LOG_DEBUG, "TCP_NODELAY on fd %d: %s", fd, strerror(errno));
	}
	closedir(d);
}

/* ---- extra topics (device role: groups) ------------------------------- */

static bool extra_find(const struct srup_node *n, const char *topic, size_t *pos)
{
	for (size_t i = 0; i < n->n_extra; i++) {
		if (strcmp(n->extra[i], topic) == 0) {
			*pos = i;
			return true;
		}
	}
	return false;
}

static void extra_drop(struct srup_node *n, const char *topic)
{
	size_t pos;

	if (!extra_find(n, topic, &pos))
		return;
	free(n->extra[pos]);
	n->extra[pos] = n->extra[--n->n_extra];
}

/* The answer to an add_topic subscription, if token is one. */
static bool topic_op_settled(struct srup_node *n, int token, bool ok)
{
	for (size_t i = 0; i < n->n_topic_ops; i++) {
		struct node_topic_op op = n->topic_ops[i];

		if (op.token != token)
			continue;
		n->topic_ops[i] = n->topic_ops[--n->n_topic_ops];
		if (!ok)
			extra_drop(n, op.topic);
		if (op.done)
			op.done(n, op.topic, ok, op.user);
		free(op.topic);
		return true;
	}
	return false;
}

enum srup_node_err srup_node_add_topic(struct srup_node *n, const char *topic,
				       srup_node_topic_done done, void *user)
{
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	struct node_topic_op *ops;
	char **extra, *copy, *op_topic;
	size_t pos;
	int rc;

	if (!n || n->cfg.role != SRUP_NODE_ROLE_DEVICE || !topic || !*topic ||
	    strlen(topic) >= SRUP_NODE_EXTRA_TOPIC_MAX || strpbrk(topic, "#+"))
		return SRUP_NODE_E_ARG;
	if (!extra_find(n, topic, &pos)) {
		extra = realloc(n->extra, (n->n_extra + 1) * sizeof(*extra));
		if (!extra)
			return SRUP_NODE_E_NOMEM;
		n->extra = extra;
		copy = strdup(topic);
		if (!copy)
			return SRUP_NODE_E_NOMEM;
		n->extra[n->n_extra++] = copy;
	}
	if (!n->connect_requested || !PAHO(n, MQTTAsync_isConnected(n->client))) {
		if (done)
			done(n, topic, true, user);
		return SRUP_NODE_OK;
	}
	ops = realloc(n->topic_ops, (n->n_topic_ops + 1) * sizeof(*ops));
	op_topic = strdup(topic);
	if (ops)
		n->topic_ops = ops;
	if (!ops || !op_topic) {
		free(op_topic);
		extra_drop(n, topic);
		return SRUP_NODE_E_NOMEM;
	}
	opts.onSuccess = paho_subscribed_one;
	opts.onFailure = paho_subscribe_failed;
	opts.context = &n->inbox;
	rc = PAHO(n, MQTTAsync_subscribe(n->client, topic, 1, &opts));
	if (rc != MQTTASYNC_SUCCESS) {
		srup_log(LOG_ERR, "cannot subscribe to %s: %s", topic, MQTTAsync_strerror(rc));
		free(op_topic);
		extra_drop(n, topic);
		return SRUP_NODE_E_MQTT;
	}
	/* The answer is handled on this thread, after this returns. */
	n->topic_ops[n->n_topic_ops++] =
		(struct node_topic_op){.token = opts.token, .topic = op_topic, .done = done,
				       .user = user};
	return SRUP_NODE_OK;
}

enum srup_node_err srup_node_remove_topic(struct srup_node *n, const char *topic)
{
	size_t pos;
	int rc;

	if (!n || !topic || !extra_find(n, topic, &pos))
		return SRUP_NODE_E_ARG;
	extra_drop(n, topic);
	if (!n->connect_requested || !PAHO(n, MQTTAsync_isConnected(n->client)))
		return SRUP_NODE_OK; /* not subscribed again at the next connect */
	rc = PAHO(n, MQTTAsync_unsubscribe(n->client, topic, NULL));
	if (rc != MQTTASYNC_SUCCESS) {
		srup_log(LOG_ERR, "cannot unsubscribe from %s: %s", topic, MQTTAsync_strerror(rc));
		return SRUP_NODE_E_MQTT;
	}
	return SRUP_NODE_OK;
}

static void handle_control(struct srup_node *n, const struct node_event *ev)
{
	switch (ev->kind) {
	case NODE_EV_CONNECTED:
		n->connected = false; /* until the subscriptions are acknowledged */
		srup_log(LOG_INFO, "connected to %s", n->cfg.broker);
		disable_nagle_towards(n->broker_port);
		/* The broker may have lost our session (restart without
		 * persistence): subscribe again every time. */
		if (subscribe_all(n) != 0)
			schedule_resubscribe(n);
		break;
	case NODE_EV_CONNECTION_LOST:
		n->connected = false;
		/* Their SUBACKs will not come; the topics are in the next
		 * connect's round. */
		while (n->n_topic_ops > 0)
			topic_op_settled(n, n->topic_ops[0].token, true);
		srup_log(LOG_WARNING, "connection to %s lost (%s); reconnecting", n->cfg.broker,
			 ev->text);
		break;
	case NODE_EV_CONNECT_FAILED:
		srup_log(LOG_WARNING, "cannot connect to %s: %s (code %d); retrying",
			 n->cfg.broker, ev->text, ev->code);
		break;
	case NODE_EV_SUBSCRIBED:
		if (topic_op_settled(n, ev->token, true))
			break;
		/* Not of the current round: an earlier one, or a single
		 * watch_device subscription. */
		if (!round_grant(n, ev->token) || n->round_pending > 0)
			break;
		if (!n->connected) {
			n->connected = true;
			srup_log(LOG_INFO, "subscribed on %s as %s", n->cfg.broker, n->own_topic);
			if (n->on_connected)
				n->on_connected(n, n->on_connected_user);
		}
		break;
	case NODE_EV_SUBSCRIBE_FAILED:
		if (topic_op_settled(n, ev->token, false)) {
			srup_log(LOG_ERR, "broker %s refused a group subscription: %s (code %d)",
				 n->cfg.broker, ev->text, ev->code);
			break;
		}
		srup_log(LOG_ERR, "broker %s refused a subscription: %s (code %d)", n->cfg.broker,
			 ev->text, ev->code);
		/* Any filter, of the round or a single watch_device one: all
		 * are subscribed again. */
		schedule_resubscribe(n);
		break;
	case NODE_EV_PUBLISH_FAILED:
		srup_log(LOG_ERR, "publish (token %d) to %s failed: %s (code %d)", ev->token,
			 n->cfg.broker, ev->text, ev->code);
		if (ev->publish && ev->publish->done)
			ev->publish->done(n, false, ev->publish->user);
		break;
	case NODE_EV_PUBLISHED:
		if (ev->publish && ev->publish->done)
			ev->publish->done(n, true, ev->publish->user);
		break;
	case NODE_EV_MESSAGE:
		break;
	}
}

static void records_recover_some(struct srup_node *n);

/* Everything queued so far: messages through the pipeline, connection
 * and publish events in order. */
static void inbox_drain(struct srup_node *n)
{
	struct node_inbox *in = &n->inbox;
	struct node_event *ev, *next;
	struct node_batch batch;
	uint64_t newly_full = 0, lost_control;

	batch.count = 0;
	n->dispatching = true;
	pthread_mutex_lock(&in->lock);
	ev = in->head;
	in->head = in->tail = NULL;
	/* Slots reserved by a callback still copying stay counted. */
	for (struct node_event *e = ev; e; e = e->next) {
		if (e->kind == NODE_EV_MESSAGE) {
			in->queued_messages--;
			in->queued_bytes -= e->cost;
		} else
			in->queued_control--;
	}
	pthread_cond_broadcast(&in->room);
	if (in->queue_full > in->queue_full_reported) {
		newly_full = in->queue_full - in->queue_full_reported;
		in->queue_full_reported = in->queue_full;
	}
	lost_control = in->control_lost;
	in->control_lost = 0;
	pthread_mutex_unlock(&in->lock);

	if (newly_full) {
		srup_log(LOG_WARNING, "%" PRIu64 " messages dropped: receive queue full",
			 newly_full);
		n->stats.dropped += newly_full;
		n->stats.dropped_by[SRUP_NODE_DROP_QUEUE_FULL] += newly_full;
	}
	if (lost_control)
		srup_log(LOG_WARNING, "%" PRIu64 " connection events dropped: queue full",
			 lost_control);
	/* A run of messages is one batch; a connection event first lets the
	 * messages before it act, so the order of effects is kept. */
	for (; ev; ev = next) {
		next = ev->next;
		if (ev->kind == NODE_EV_MESSAGE) {
			if (pipeline_check(n, ev, &batch)) {
				if (batch.count == NODE_BATCH_MAX)
					batch_run(n, &batch);
				continue;
			}
		} else {
			batch_run(n, &batch);
			handle_control(n, ev);
		}
		event_free(in, ev);
	}
	batch_run(n, &batch);
	n->dispatching = false;
	if (n->recovering)
		records_recover_some(n);
}

static int inbox_readable(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct srup_node *n = user;
	uint64_t counter;

	(void)s;
	(void)revents;
	if (read(fd, &counter, sizeof(counter)) < 0 && errno != EAGAIN)
		srup_log(LOG_ERR, "reading the node's eventfd: %s", strerror(errno));
	inbox_drain(n);
	return 0;
}

/* ---- construction ----------------------------------------------------- */

/* The port of "host", "host:port" or "[v6]:port" (default 1883, 8883 with
 * TLS). */
static enum srup_node_err parse_port(struct srup_node *n, const char *hostport, char *detail,
				     size_t detail_len)
{
	const char *colon = strrchr(hostport, ':');
	const char *bracket = strrchr(hostport, ']');
	unsigned long port = 0;

	n->broker_port = n->tls ? 8883 : 1883;
	if (!colon || (bracket && bracket > colon))
		return SRUP_NODE_OK;
	if (colon[1] == '\0' || strspn(colon + 1, "0123456789") != strlen(colon + 1) ||
	    strlen(colon + 1) > 5 || (port = strtoul(colon + 1, NULL, 10)) == 0 || port > 65535) {
		set_detail(detail, detail_len, "broker URL \"%s\": bad port", n->cfg.broker);
		return SRUP_NODE_E_ARG;
	}
	n->broker_port = (uint16_t)port;
	return SRUP_NODE_OK;
}

/* Paho URI from the configured URL: tcp:// and mqtt:// are plain,
 * mqtts:// is TLS (Paho's ssl://). */
static enum srup_node_err translate_url(struct srup_node *n, char *detail, size_t detail_len)
{
	static const struct {
		const char *scheme;
		const char *paho;
		bool tls;
	} schemes[] = {
		{"tcp://", "tcp://", false},
		{"mqtt://", "tcp://", false},
		{"mqtts://", "ssl://", true},
	};
	const char *url = n->cfg.broker;

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		size_t len = strlen(schemes[i].scheme);
		if (strncmp(url, schemes[i].scheme, len) != 0)
			continue;
		const char *rest = url + len;
		if (*rest == '\0' || *rest == ':' || *rest == '/' || strchr(rest, ' ')) {
			set_detail(detail, detail_len, "broker URL \"%s\" has no host", url);
			return SRUP_NODE_E_ARG;
		}
		snprintf(n->paho_uri, sizeof(n->paho_uri), "%s%s", schemes[i].paho, rest);
		n->tls = schemes[i].tls;
		return parse_port(n, rest, detail, detail_len);
	}
	set_detail(detail, detail_len,
		   "broker URL \"%s\": scheme must be tcp://, mqtt:// or mqtts://", url);
	return SRUP_NODE_E_ARG;
}

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
	enum srup_node_err e = translate_url(n, detail, detail_len);
	if (e != SRUP_NODE_OK)
		return e;
	if (n->tls) {
		if (c->ca_file[0] == '\0') {
			set_detail(detail, detail_len, "broker URL \"%s\" is mqtts:// but no ca_file given",
				   c->broker);
			return SRUP_NODE_E_ARG;
		}
		if (c->key_file[0] != '\0' && c->cert_file[0] == '\0') {
			set_detail(detail, detail_len, "key_file given without cert_file");
			return SRUP_NODE_E_ARG;
		}
	}
	return SRUP_NODE_OK;
}

static enum srup_node_err create_client(struct srup_node *n, char *detail, size_t detail_len)
{
	MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
	char client_id[64];
	int rc;

	/* RESPONSEs decided while the broker is away are kept and sent after
	 * the reconnect, also before the first connect succeeded. */
	co.sendWhileDisconnected = 1;
	co.allowDisconnectedSendAtAnyTime = 1;
	co.maxBufferedMessages = NODE_BUFFERED_MAX;
	co.MQTTVersion = MQTTVERSION_3_1_1;
	snprintf(client_id, sizeof(client_id), "SRUP Client: %s", n->id_text);
	n->persistence = (MQTTClient_persistence){
		.context = &n->inbox,
		.popen = persist_open,
		.pclose = persist_close,
		.pput = persist_put,
		.pget = persist_get,
		.premove = persist_remove,
		.pkeys = persist_keys,
		.pclear = persist_clear,
		.pcontainskey = persist_containskey,
	};
	rc = MQTTAsync_createWithOptions(&n->client, n->paho_uri, client_id,
					 MQTTCLIENT_PERSISTENCE_USER, &n->persistence, &co);
	if (rc != MQTTASYNC_SUCCESS) {
		set_detail(detail, detail_len, "MQTT client for %s: %s", n->cfg.broker,
			   MQTTAsync_strerror(rc));
		return SRUP_NODE_E_MQTT;
	}
	n->client_created = true;
	rc = MQTTAsync_setCallbacks(n->client, &n->inbox, paho_connection_lost,
				    paho_message_arrived, NULL);
	if (rc == MQTTASYNC_SUCCESS)
		rc = MQTTAsync_setConnected(n->client, &n->inbox, paho_connected);
	if (rc != MQTTASYNC_SUCCESS) {
		set_detail(detail, detail_len, "MQTT callbacks: %s", MQTTAsync_strerror(rc));
		return SRUP_NODE_E_MQTT;
	}
	return SRUP_NODE_OK;
}

static enum srup_node_err start_connect(struct srup_node *n);

/* Queue records left by a previous run, in arrival order, as many as the
 * receive queue has room for; the rest follow each time the loop has taken
 * the queue. Until the last is queued the node does not connect: what the
 * broker sends then comes after them, as it did. */
static void records_recover_some(struct srup_node *n)
{
	struct node_inbox *in = &n->inbox;
	struct srup_inbound_record *rec = &n->recover_next;
	enum srup_inbound_err e;
	bool room;

	while (n->recovering) {
		if (!rec->id) {
			e = srup_inbound_next(in->records, rec);
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
		pthread_mutex_lock(&in->lock);
		room = room_for(in, message_cost(rec->topic_len, rec->payload_len));
		if (room) {
			in->queued_messages++;
			in->queued_bytes += message_cost(rec->topic_len, rec->payload_len);
		}
		pthread_mutex_unlock(&in->lock);
		if (!room)
			break;
		inbox_take(in, rec->topic, rec->topic_len, rec->topic_len, rec->payload,
			   rec->payload_len, rec->id, rec->accepted, true, rec->note, rec->note_len,
			   NULL);
		srup_inbound_record_clear(rec);
		n->recovered++;
	}
}

/* Open <state_dir>/inbound and start queueing what a previous run left
 * there. */
static enum srup_node_err records_recover(struct srup_node *n, char *detail, size_t detail_len)
{
	enum srup_inbound_err e;

	e = srup_inbound_new(n->cfg.state_dir, &n->inbox.records, detail, detail_len);
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
	pthread_condattr_t cattr;
	char seq_detail[512] = "";
	int r;

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
	n->inbox.efd = -1;
	if (pthread_mutex_init(&n->inbox.lock, NULL) != 0) {
		free(n);
		return SRUP_NODE_E_NOMEM;
	}
	if (pthread_mutex_init(&n->inbox.senders_lock, NULL) != 0) {
		pthread_mutex_destroy(&n->inbox.lock);
		free(n);
		return SRUP_NODE_E_NOMEM;
	}
	n->inbox.own_id = cfg ? cfg->id : 0;
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	r = pthread_cond_init(&n->inbox.changed, &cattr);
	pthread_condattr_destroy(&cattr);
	if (r == 0 && pthread_cond_init(&n->inbox.room, NULL) != 0) {
		pthread_cond_destroy(&n->inbox.changed);
		r = -1;
	}
	if (r != 0) {
		pthread_mutex_destroy(&n->inbox.senders_lock);
		pthread_mutex_destroy(&n->inbox.lock);
		free(n);
		return SRUP_NODE_E_NOMEM;
	}
	n->cfg = *cfg;
	n->loop = sd_event_ref(loop);
	n->peers = peers;
	EVP_PKEY_up_ref(identity);
	n->identity = identity;
	srup_id_format_topic(cfg->id, n->id_text);
	srup_topic_device(cfg->id, n->own_topic);
	snprintf(n->server_prefix, sizeof(n->server_prefix), "SRUP/servers/%s/", n->id_text);

	e = check_config(n, detail, detail_len);
	if (e != SRUP_NODE_OK)
		goto fail;
	serr = srup_seqstore_new(n->cfg.state_dir, 0, &n->seq, seq_detail, sizeof(seq_detail));
	if (serr != SRUP_SEQ_OK) {
		set_detail(detail, detail_len, "%s: %s", srup_seqstore_strerror(serr), seq_detail);
		e = serr == SRUP_SEQ_E_NOMEM ? SRUP_NODE_E_NOMEM : SRUP_NODE_E_STATE;
		goto fail;
	}
	n->inbox.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (n->inbox.efd < 0) {
		set_detail(detail, detail_len, "eventfd: %s", strerror(errno));
		e = SRUP_NODE_E_NOMEM;
		goto fail;
	}
	r = sd_event_add_io(loop, &n->inbox_source, n->inbox.efd, EPOLLIN, inbox_readable, n);
	if (r < 0) {
		set_detail(detail, detail_len, "sd_event_add_io: %s", strerror(-r));
		e = SRUP_NODE_E_NOMEM;
		goto fail;
	}
	e = records_recover(n, detail, detail_len);
	if (e != SRUP_NODE_OK)
		goto fail;
	e = create_client(n, detail, detail_len);
	if (e != SRUP_NODE_OK)
		goto fail;
	*out = n;
	return SRUP_NODE_OK;
fail:
	srup_node_free(n);
	return e;
}

/* Disconnect cleanly so that no Paho callback can run once we free. */
static void disconnect_client(struct srup_node *n)
{
	MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
	struct timespec deadline;

	if (!n->connect_requested || !PAHO(n, MQTTAsync_isConnected(n->client)))
		return;
	opts.timeout = 0; /* in-flight QoS 1 messages were settled by flush, if wanted */
	opts.onSuccess = paho_disconnect_done;
	opts.onFailure = paho_disconnect_failed;
	opts.context = &n->inbox;
	if (PAHO(n, MQTTAsync_disconnect(n->client, &opts)) != MQTTASYNC_SUCCESS)
		return;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += NODE_DISCONNECT_WAIT_MS / 1000;
	pthread_mutex_lock(&n->inbox.lock);
	while (!n->inbox.disconnected)
		if (pthread_cond_timedwait(&n->inbox.changed, &n->inbox.lock, &deadline) ==
		    ETIMEDOUT)
			break;
	pthread_mutex_unlock(&n->inbox.lock);
}

void srup_node_free(struct srup_node *n)
{
	struct node_event *ev, *next;

	if (!n)
		return;
	/* Paho's thread no longer waits for room: nothing takes the queue. */
	pthread_mutex_lock(&n->inbox.lock);
	n->inbox.stopping = true;
	pthread_cond_broadcast(&n->inbox.room);
	pthread_mutex_unlock(&n->inbox.lock);
	paho_waker_free(n->waker);
	if (n->client_created) {
		disconnect_client(n);
		MQTTAsync_destroy(&n->client);
	}
	sd_event_source_disable_unref(n->inbox_source);
	sd_event_source_disable_unref(n->resubscribe_timer);
	/* Messages not handled keep their records for the next start;
	 * tracked sends not yet settled are, as far as the caller knows, not
	 * acknowledged. */
	for (ev = n->inbox.head; ev; ev = next) {
		next = ev->next;
		if (ev->publish && ev->publish->done)
			ev->publish->done(n, ev->kind == NODE_EV_PUBLISHED, ev->publish->user);
		if (ev->publish && &ev->publish->ev == ev) {
			free(ev->publish);
			continue;
		}
		EVP_PKEY_free(ev->verified_with);
		free(ev->publish);
		free(ev->topic);
		free(ev->payload);
		free(ev);
	}
	if (n->inbox.efd >= 0)
		close(n->inbox.efd);
	srup_inbound_free(n->inbox.records);
	free(n->inbox.recorded_ids);
	kept_clear(&n->inbox);
	pthread_cond_destroy(&n->inbox.changed);
	pthread_cond_destroy(&n->inbox.room);
	pthread_mutex_destroy(&n->inbox.lock);
	for (size_t i = 0; i < 64; i++)
		EVP_PKEY_free(n->inbox.senders[i].key);
	pthread_mutex_destroy(&n->inbox.senders_lock);
	srup_inbound_record_clear(&n->recover_next);
	free(n->notes_unsynced);
	free(n->deferred);
	srup_seqstore_free(n->seq);
	EVP_PKEY_free(n->identity);
	free(n->watched);
	free(n->round);
	for (size_t i = 0; i < n->n_extra; i++)
		free(n->extra[i]);
	free(n->extra);
	for (size_t i = 0; i < n->n_topic_ops; i++)
		free(n->topic_ops[i].topic);
	free(n->topic_ops);
	sd_event_unref(n->loop);
	free(n);
}

enum srup_node_err srup_node_on(struct srup_node *n, uint8_t type, uint64_t allowed_sender,
				srup_node_handler handler, void *user)
{
	const struct srup_type_desc *desc = srup_type_by_code(type);

	if (!n || !handler || !desc || !desc->is_signed)
		return SRUP_NODE_E_ARG;
	n->handlers[type] = (struct node_handler){
		.fn = handler, .user = user, .allowed_sender = allowed_sender};
	return SRUP_NODE_OK;
}

enum srup_node_err srup_node_watch_device(struct srup_node *n, uint64_t device)
{
	size_t pos;

	if (!n || n->cfg.role != SRUP_NODE_ROLE_SERVER)
		return SRUP_NODE_E_ARG;
	if (watched_find(n, device, &pos))
		return SRUP_NODE_OK;
	if (n->n_watched == n->cap_watched) {
		size_t cap = n->cap_watched ? n->cap_watched * 2 : 16;
		uint64_t *w = realloc(n->watched, cap * sizeof(*w));
		if (!w)
			return SRUP_NODE_E_NOMEM;
		n->watched = w;
		n->cap_watched = cap;
	}
	memmove(&n->watched[pos + 1], &n->watched[pos], (n->n_watched - pos) * sizeof(*n->watched));
	n->watched[pos] = device;
	n->n_watched++;

	/* Subscribed now if the session is up; every reconnect subscribes
	 * the whole list again. */
	if (n->connect_requested && PAHO(n, MQTTAsync_isConnected(n->client))) {
		MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
		char topic[SRUP_TOPIC_MAX + 2], dev[SRUP_TOPIC_MAX];
		int rc;

		srup_topic_device(device, dev);
		snprintf(topic, sizeof(topic), "%s/#", dev);
		opts.onSuccess = paho_subscribed_one;
		opts.onFailure = paho_subscribe_failed;
		opts.context = &n->inbox;
		rc = PAHO(n, MQTTAsync_subscribe(n->client, topic, 1, &opts));
		if (rc != MQTTASYNC_SUCCESS) {
			srup_log(LOG_ERR, "cannot subscribe to %s: %s", topic,
				 MQTTAsync_strerror(rc));
			return SRUP_NODE_E_MQTT;
		}
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
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;
	int rc;

	n->connect_deferred = false;
	opts.keepAliveInterval = (int)n->cfg.keepalive_seconds;
	opts.cleansession = 0; /* the broker keeps our subscriptions and QoS 1 messages */
	opts.MQTTVersion = MQTTVERSION_3_1_1;
	opts.automaticReconnect = 1;
	opts.minRetryInterval = (int)n->cfg.reconnect_min_seconds;
	opts.maxRetryInterval = (int)n->cfg.reconnect_max_seconds;
	opts.connectTimeout = NODE_CONNECT_TIMEOUT_S;
	opts.onFailure = paho_connect_failed;
	opts.context = &n->inbox;
	if (n->tls) {
		ssl.trustStore = n->cfg.ca_file;
		ssl.keyStore = n->cfg.cert_file[0] ? n->cfg.cert_file : NULL;
		ssl.privateKey = n->cfg.key_file[0] ? n->cfg.key_file : NULL;
		ssl.enableServerCertAuth = 1;
		ssl.verify = 1; /* the certificate must name the host we dialled */
		opts.ssl = &ssl;
	}
	rc = PAHO(n, MQTTAsync_connect(n->client, &opts));
	if (rc != MQTTASYNC_SUCCESS) {
		srup_log(LOG_ERR, "cannot start connecting to %s: %s", n->cfg.broker,
			 MQTTAsync_strerror(rc));
		return SRUP_NODE_E_MQTT;
	}
	n->connect_requested = true;
	if (!n->waker) {
		char detail[256] = "";

		/* Without it messages still arrive, some up to 100 ms late. */
		if (paho_waker_new(n->loop, &n->waker, detail, sizeof(detail)) != 0)
			srup_log(LOG_WARNING, "MQTT receive waker not started: %s", detail);
	}
	return SRUP_NODE_OK;
}

bool srup_node_is_connected(const struct srup_node *n)
{
	return n && n->connected;
}

enum srup_node_err srup_node_send(struct srup_node *n, struct srup_msg *msg, uint64_t peer,
				  const char *topic)
{
	return srup_node_send_tracked(n, msg, peer, topic, NULL, NULL);
}

static void notes_sync(struct srup_node *n);
static enum srup_node_err publish_wire(struct srup_node *n, const char *topic, uint8_t *wire,
				       size_t wire_len, srup_node_sent_fn done, void *user,
				       const char *type_name, uint64_t seq);

enum srup_node_err srup_node_send_tracked(struct srup_node *n, struct srup_msg *msg,
					  uint64_t peer, const char *topic, srup_node_sent_fn done,
					  void *user)
{
	const struct srup_type_desc *desc;
	char detail[512] = "";
	uint8_t *wire = NULL;
	size_t wire_len = 0;
	uint64_t seq;
	enum srup_seq_err serr;
	enum srup_err err;

	if (!n || !msg || !topic || topic[0] == '\0' || strlen(topic) >= NODE_TOPIC_LEN_MAX)
		return SRUP_NODE_E_ARG;
	desc = srup_type_by_code(msg->type);
	if (!desc || !desc->is_signed) {
		srup_log(LOG_ERR, "cannot send type 0x%02x: not a signed SRUP message type",
			 msg->type);
		return SRUP_NODE_E_ARG;
	}
	msg->version = SRUP_VERSION;
	msg->sender_id = n->cfg.id;
	serr = srup_seqstore_next(n->seq, peer, &seq, detail, sizeof(detail));
	if (serr != SRUP_SEQ_OK) {
		srup_log(LOG_ERR, "cannot send %s on %s: %s: %s", desc->name, topic,
			 srup_seqstore_strerror(serr), detail);
		return serr == SRUP_SEQ_E_NOMEM ? SRUP_NODE_E_NOMEM : SRUP_NODE_E_STATE;
	}
	msg->sequence_id = seq;
	err = srup_msg_sign(msg, n->identity);
	if (err == SRUP_OK)
		err = srup_msg_encode(msg, &wire, &wire_len);
	if (err != SRUP_OK) {
		srup_log(LOG_ERR, "cannot send %s on %s: %s", desc->name, topic,
			 srup_strerror(err));
		return err == SRUP_E_NOMEM ? SRUP_NODE_E_NOMEM : SRUP_NODE_E_PROTOCOL;
	}
	if (wire_len > (size_t)INT32_MAX) {
		free(wire);
		return SRUP_NODE_E_PROTOCOL;
	}
	if (n->in_batch && (n->n_notes_unsynced || n->n_deferred)) {
		struct node_deferred *dp;

		if (n->n_deferred == n->cap_deferred) {
			size_t cap = n->cap_deferred ? n->cap_deferred * 2 : 16;
			struct node_deferred *grown = realloc(n->deferred, cap * sizeof(*grown));

			if (!grown) {
				free(wire);
				return SRUP_NODE_E_NOMEM;
			}
			n->deferred = grown;
			n->cap_deferred = cap;
		}
		dp = &n->deferred[n->n_deferred];
		*dp = (struct node_deferred){.topic = strdup(topic), .wire = wire, .len = wire_len,
					     .done = done, .user = user, .type_name = desc->name,
					     .seq = seq};
		if (!dp->topic) {
			free(wire);
			return SRUP_NODE_E_NOMEM;
		}
		n->n_deferred++;
		return SRUP_NODE_OK;
	}
	if (n->n_notes_unsynced)
		notes_sync(n);
	return publish_wire(n, topic, wire, wire_len, done, user, desc->name, seq);
}

/* Hand an encoded message to Paho (takes wire). */
static enum srup_node_err publish_wire(struct srup_node *n, const char *topic, uint8_t *wire,
				       size_t wire_len, srup_node_sent_fn done, void *user,
				       const char *type_name, uint64_t seq)
{
	struct node_publish *tracked = NULL;
	MQTTAsync_message pub = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	int rc;

	pub.payload = wire;
	pub.payloadlen = (int)wire_len;
	pub.qos = 1;
	pub.retained = 0;
	opts.onSuccess = paho_published;
	opts.onFailure = paho_publish_failed;
	opts.context = &n->inbox;
	if (done) {
		tracked = malloc(sizeof(*tracked));
		if (!tracked) {
			free(wire);
			return SRUP_NODE_E_NOMEM;
		}
		*tracked = (struct node_publish){.inbox = &n->inbox, .done = done, .user = user};
		opts.onSuccess = paho_published_tracked;
		opts.onFailure = paho_publish_failed_tracked;
		opts.context = tracked;
	}

	/* Counted before Paho can call back. */
	pthread_mutex_lock(&n->inbox.lock);
	n->inbox.publishes_pending++;
	pthread_mutex_unlock(&n->inbox.lock);
	rc = PAHO(n, MQTTAsync_sendMessage(n->client, topic, &pub, &opts));
	free(wire);
	if (rc != MQTTASYNC_SUCCESS) {
		free(tracked);
		publish_settled(&n->inbox);
		srup_log(LOG_ERR, "cannot publish %s on %s: %s", type_name, topic,
			 MQTTAsync_strerror(rc));
		return SRUP_NODE_E_MQTT;
	}
	n->stats.sent++;
	srup_log(LOG_DEBUG, "sent %s seq %" PRIu64 " on %s", type_name, seq, topic);
	return SRUP_NODE_OK;
}

/* The sends deferred by a batch's handlers: the notes first, with one
 * sync, then each publish in the order made. */
static void deferred_publish(struct srup_node *n)
{
	if (n->n_notes_unsynced)
		notes_sync(n);
	for (size_t i = 0; i < n->n_deferred; i++) {
		struct node_deferred *dp = &n->deferred[i];

		/* done runs once per send that returned OK: here if it fails. */
		if (publish_wire(n, dp->topic, dp->wire, dp->len, dp->done, dp->user,
				 dp->type_name, dp->seq) != SRUP_NODE_OK &&
		    dp->done)
			dp->done(n, false, dp->user);
		free(dp->topic);
	}
	n->n_deferred = 0;
}

enum srup_node_err srup_node_flush(struct srup_node *n, unsigned timeout_ms)
{
	struct timespec deadline;
	uint64_t left;

	if (!n)
		return SRUP_NODE_E_ARG;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	/* Waiting on Paho as in a call to it: its thread must not wait for
	 * room meanwhile, or the acknowledgements would not be read. */
	pthread_mutex_lock(&n->inbox.lock);
	n->inbox.loop_in_paho++;
	pthread_cond_broadcast(&n->inbox.room);
	while (n->inbox.publishes_pending > 0)
		if (pthread_cond_timedwait(&n->inbox.changed, &n->inbox.lock, &deadline) ==
		    ETIMEDOUT)
			break;
	left = n->inbox.publishes_pending;
	n->inbox.loop_in_paho--;
	pthread_mutex_unlock(&n->inbox.lock);
	/* The outcomes of tracked sends reach their callers (and what
	 * arrived meanwhile is handled) before the caller stops the loop. */
	if (!n->dispatching)
		inbox_drain(n);
	if (left > 0) {
		srup_log(LOG_WARNING, "%" PRIu64 " message(s) not acknowledged by %s after %u ms",
			 left, n->cfg.broker, timeout_ms);
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
	/* Synced with the others before the next publish: the first flush
	 * takes the rest with it, so a run of decisions costs about one. */
	e = srup_inbound_note(n->inbox.records, hold, note, len, false);
	if (e == SRUP_INBOUND_OK)
		n->notes_unsynced[n->n_notes_unsynced++] = hold;
	if (e != SRUP_INBOUND_OK) {
		srup_log(LOG_ERR, "cannot record what was decided for inbound record %016" PRIx64
			 ": %s: %s", hold, srup_inbound_strerror(e), strerror(errno));
		return e == SRUP_INBOUND_E_NOMEM ? SRUP_NODE_E_NOMEM : SRUP_NODE_E_STATE;
	}
	return SRUP_NODE_OK;
}

/* Every note written since the last publish is on disk before the next. */
static void notes_sync(struct srup_node *n)
{
	for (size_t i = 0; i < n->n_notes_unsynced; i++) {
		enum srup_inbound_err e = srup_inbound_note_sync(n->inbox.records,
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
		record_remove(&n->inbox, hold);
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
	/* Messages that arrived or were dropped since the loop last drained
	 * are known only to the inbox. */
	pthread_mutex_lock((pthread_mutex_t *)&n->inbox.lock);
	out->received = n->inbox.received;
	out->dropped += n->inbox.queue_full - n->inbox.queue_full_reported;
	out->dropped_by[SRUP_NODE_DROP_QUEUE_FULL] += n->inbox.queue_full - n->inbox.queue_full_reported;
	pthread_mutex_unlock((pthread_mutex_t *)&n->inbox.lock);
}
