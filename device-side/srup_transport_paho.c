/* The node's transport on Eclipse Paho MQTT C (srup_transport.h): every
 * part of the node that knows Paho, its threads and its version-specific
 * behaviour.
 *
 * Threads: Paho's callbacks only queue what happened (an inbox guarded by
 * a mutex) and wake the sd-event loop through an eventfd; the loop takes
 * the whole queue at once and hands it to the node's operations. Once
 * connected, Paho's receive thread is also kept from its idle sleep
 * (paho_waker.h), so that no message waits for the library. */
#include "srup_transport.h"
#include "srup_detail.h"
#include "srup_fnv1a.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <MQTTAsync.h>

#include "paho_waker.h"
#include "srup_broker_list.h"
#include "srup_log.h"

/* Bounds on what the Paho threads may pile up for the loop. */
#define NODE_QUEUE_MAX_MESSAGES 4096u
#define NODE_QUEUE_MAX_CONTROL 1024u  /* connection and delivery events */
/* Bytes the queued messages may hold: without it, 4096 payloads of the
 * largest size would be 512 MiB, for anyone allowed to publish to us. */
#define NODE_QUEUE_MAX_BYTES (8u * 1024u * 1024u)
#define NODE_PAYLOAD_MAX SRUP_TRANSPORT_PAYLOAD_MAX
#define NODE_TOPIC_LEN_MAX SRUP_TRANSPORT_TOPIC_MAX
#define NODE_BUFFERED_MAX 10000       /* Paho's queue of publishes while offline */
#define NODE_CONNECT_TIMEOUT_S 10
#define NODE_DISCONNECT_WAIT_MS 2000u
#define NODE_FILTER_MAX 256            /* bytes of one topic filter, with its NUL */

enum node_event_kind {
	NODE_EV_MESSAGE,         /* topic, payload (NULL when oversized), len */
	NODE_EV_CONNECTED,       /* text: the Paho URI reached; code: session present */
	NODE_EV_CONNECTION_LOST, /* text: cause */
	NODE_EV_CONNECT_FAILED,  /* code, text */
	NODE_EV_SUBSCRIBED,      /* token */
	NODE_EV_SUBSCRIBE_FAILED,/* token, code, text */
	NODE_EV_PUBLISH_FAILED,  /* token, code, text; publish if tracked */
	NODE_EV_PUBLISHED,       /* publish (tracked sends only) */
};

struct tp_event {
	/* First: srup_transport_message_free finds the event from it. */
	struct srup_transport_message msg;
	struct tp_event *next;
	enum node_event_kind kind;
	size_t cost; /* bytes counted against NODE_QUEUE_MAX_BYTES */
	int code;
	int token;
	char text[160];
	struct tp_publish *publish;
};

/* A send whose outcome the caller wants to hear of. Its event is made with
 * it: the outcome always reaches the loop, whatever else is queued. */
struct tp_publish {
	struct tp_inbox *inbox;
	srup_transport_fn done;
	void *user;
	/* A copy of what was published: a broker that holds no session for
	 * us makes Paho drop what was in flight (MQTTASYNC_OPERATION_INCOMPLETE),
	 * and the node publishes it again there. */
	char *topic;
	uint8_t *payload;
	int len;
	unsigned resent;
	struct tp_event ev;
};

static void publish_free(struct tp_publish *p)
{
	if (!p)
		return;
	free(p->topic);
	free(p->payload);
	free(p);
}

/* The only state that Paho's threads touch. Everything else in struct
 * paho_transport belongs to the loop thread. */
struct tp_inbox {
	pthread_mutex_t lock;
	pthread_cond_t changed;  /* publishes_pending or disconnected changed */
	/* Room in the receive queue, or a reason to stop waiting for it:
	 * the loop calls into Paho (which waits for the thread that waits
	 * here) or the node stops. */
	pthread_cond_t room;
	unsigned loop_in_paho;
	bool stopping;
	uint64_t waited_for_room;    /* acknowledgements held back, for the stats log */

	struct tp_event *head, *tail;
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

	/* Inbound records (see inbound_put), written by the node. */
	const struct srup_transport_ops *ops;
	void *ctx;
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

/* What the transport keeps of its configuration. */
struct tp_config {
	char broker[256];
	char ca_file[256];
	char cert_file[256];
	char key_file[256];
	char client_id[64];
	char log_name[64];
	unsigned keepalive_seconds;
	unsigned reconnect_min_seconds;
	unsigned reconnect_max_seconds;
};

struct paho_transport {
	sd_event *loop;
	const struct srup_transport_ops *ops;
	void *ctx;
	sd_event_source *inbox_source;
	sd_event_source *resubscribe_timer;
	struct tp_inbox inbox;
	MQTTAsync client;
	bool client_created;
	MQTTClient_persistence persistence; /* inbound records, before the PUBACK */
	struct paho_waker *waker;
	bool dispatching;                   /* inside inbox_drain */

	struct tp_config cfg;
	/* The brokers, in the configured order: URL as written, Paho's URI
	 * (ssl:// for mqtts://) and port. */
	struct srup_broker_list brokers;
	char paho_uri[SRUP_BROKER_LIST_MAX][SRUP_BROKER_URL_MAX + 8];
	char *paho_uris[SRUP_BROKER_LIST_MAX];
	uint16_t broker_port[SRUP_BROKER_LIST_MAX];
	bool tls;
	/* The broker of the session (index in brokers), -1 while there is
	 * none; the one before, for the log at a change. */
	int current;
	int previous;
	/* The entry the connect under way dials: one at a time, so that the
	 * transport knows which one answered. */
	size_t trying;
	/* Our own reconnect (Paho's automatic one stays on the URI it last
	 * reached): every attempt walks the list from the first entry, after
	 * a bounded, jittered backoff that doubles while attempts fail. */
	sd_event_source *reconnect_timer;
	unsigned backoff_ms;
	bool freeing;
	bool connect_requested;
	bool connected;  /* session up and subscriptions acknowledged */

	/* The current round of subscriptions (one per topic filter, sorted
	 * by token): connected once every one was granted. */
	struct node_subscription {
		int token;
		bool granted;
	} *round;
	size_t round_count, round_pending;

	/* Single subscriptions whose answer the node waits for. */
	struct node_topic_op {
		int token;
		char *topic;
		srup_transport_fn done;
		void *user;
	} *topic_ops;
	size_t n_topic_ops;
};

static const char *broker_name(const struct paho_transport *t);

void srup_transport_message_free(struct srup_transport_message *m)
{
	struct tp_event *ev = (struct tp_event *)m;

	if (!m)
		return;
	EVP_PKEY_free(m->verified_with);
	free(m->topic);
	free(m->payload);
	free(ev);
}

/* ---- the Paho side: only the inbox ------------------------------------ */

static void inbox_wake(struct tp_inbox *in)
{
	uint64_t one = 1;

	/* EAGAIN means the counter is already non-zero: the loop will wake. */
	if (write(in->efd, &one, sizeof(one)) < 0 && errno != EAGAIN)
		srup_log(LOG_ERR, "cannot wake the event loop: %s", strerror(errno));
}

/* Append ev (control events only); frees it if the bound is reached. */
/* ev at the end of the queue (in->lock held). */
static void inbox_append_locked(struct tp_inbox *in, struct tp_event *ev)
{
	if (in->tail)
		in->tail->next = ev;
	else
		in->head = ev;
	in->tail = ev;
}

static void inbox_post(struct tp_inbox *in, struct tp_event *ev)
{
	pthread_mutex_lock(&in->lock);
	if (in->queued_control >= NODE_QUEUE_MAX_CONTROL) {
		in->control_lost++;
		pthread_mutex_unlock(&in->lock);
		publish_free(ev->publish);
		free(ev);
		return;
	}
	in->queued_control++;
	inbox_append_locked(in, ev);
	pthread_mutex_unlock(&in->lock);
	inbox_wake(in);
}

static void post_control(struct tp_inbox *in, enum node_event_kind kind, int token, int code,
			 const char *text)
{
	struct tp_event *ev = calloc(1, sizeof(*ev));

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
static void inbox_take(struct tp_inbox *in, const char *topic, size_t copy_len,
		       size_t topic_len, const void *payload, size_t plen, uint64_t record,
		       bool recovered_accepted, bool reserved, const uint8_t *note,
		       size_t note_len, EVP_PKEY *verified_with);

/* What a queued message counts against NODE_QUEUE_MAX_BYTES; oversized
 * payloads are not copied, so they cost only their event. */
static size_t message_cost(size_t tlen, size_t plen)
{
	return sizeof(struct tp_event) + tlen + 1 + (plen <= NODE_PAYLOAD_MAX ? plen : 0);
}

/* Under in->lock. */
static bool room_for(const struct tp_inbox *in, size_t cost)
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
static void inbox_reserve(struct tp_inbox *in, size_t cost)
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
static void paho_enter(struct tp_inbox *in)
{
	pthread_mutex_lock(&in->lock);
	in->loop_in_paho++;
	pthread_cond_broadcast(&in->room);
	pthread_mutex_unlock(&in->lock);
}

static void paho_leave(struct tp_inbox *in)
{
	pthread_mutex_lock(&in->lock);
	in->loop_in_paho--;
	pthread_mutex_unlock(&in->lock);
}

#define PAHO(t, call)                            \
	({                                       \
		paho_enter(&(t)->inbox);         \
		__typeof__(call) paho_rc_ = call; \
		paho_leave(&(t)->inbox);         \
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
 * writes the PUBACK. That persistence is ours: inbound_put has the node
 * write the message (ops->record), queues it for the loop and has the
 * node make the record durable (ops->record_durable) while the loop
 * already handles it. When
 * Paho offers the message again from its queue the callback returns 1
 * (already taken). The node removes the record once it is done with the
 * message. Nothing but the queue entries ("q-" keys) is kept: Paho's own
 * records of outgoing messages and commands are ignored, as without
 * persistence. */


static bool recorded_push(struct tp_inbox *in, int msgid)
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

/* Paho's queue entry (MQTTPersistence_persistQueueEntry, MQTT 3.1.1): 8
 * buffers: payloadlen, payload, qos, retained, dup, msgid, topic with its
 * NUL, topicLen. */
static int inbound_put(struct tp_inbox *in, int count, char *bufs[], int lens[])
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
	if ((size_t)payloadlen <= NODE_PAYLOAD_MAX && tlen <= NODE_TOPIC_LEN_MAX)
		id = in->ops->record(in->ctx, bufs[6], copy_len, bufs[1], (size_t)payloadlen,
				     &verified_with);
	inbox_take(in, bufs[6], copy_len, tlen, bufs[1], (size_t)payloadlen, id, false, true, NULL, 0,
		   verified_with);
	/* Paho writes the PUBACK when this returns: the record is on disk by
	 * then, while the loop is already at work on the message. */
	if (id)
		in->ops->record_durable(in->ctx, id);
	return 0;
}

static struct node_kept **kept_bucket(struct tp_inbox *in, const char *key)
{
	return &in->kept[srup_fnv1a(key, strlen(key), SRUP_FNV1A_OFFSET) % 256];
}

static struct node_kept **kept_slot(struct tp_inbox *in, const char *key)
{
	struct node_kept **slot = kept_bucket(in, key);

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

static int kept_put(struct tp_inbox *in, const char *key, int count, char *bufs[], int lens[])
{
	struct node_kept *k = calloc(1, sizeof(*k)), **slot, **bucket;
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
	bucket = kept_bucket(in, key);
	k->next = *bucket;
	*bucket = k;
	pthread_mutex_unlock(&in->lock);
	return 0;
}

static void kept_clear(struct tp_inbox *in)
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
	struct tp_inbox *in = handle;
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
	struct tp_inbox *in = handle;
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
	struct tp_inbox *in = handle;

	pthread_mutex_lock(&in->lock);
	in->recorded_count = 0;
	in->recorded_head = 0;
	kept_clear(in);
	pthread_mutex_unlock(&in->lock);
	return 0;
}

static int persist_containskey(void *handle, char *key)
{
	struct tp_inbox *in = handle;
	bool found;

	pthread_mutex_lock(&in->lock);
	found = *kept_slot(in, key) != NULL;
	pthread_mutex_unlock(&in->lock);
	return found ? 0 : MQTTCLIENT_PERSISTENCE_ERROR;
}

static void inbox_take(struct tp_inbox *in, const char *topic, size_t copy_len,
		       size_t tlen, const void *payload, size_t plen, uint64_t record,
		       bool recovered_accepted, bool reserved, const uint8_t *note,
		       size_t note_len, EVP_PKEY *verified_with)
{
	struct tp_event *ev = NULL;
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
			struct srup_transport_message *m = &ev->msg;

			ev->kind = NODE_EV_MESSAGE;
			ev->cost = cost;
			m->len = plen;
			m->topic_len = tlen;
			m->record = record;
			m->recovered_accepted = recovered_accepted;
			m->verified_with = verified_with;
			verified_with = NULL;
			if (note && note_len <= sizeof(m->note)) {
				memcpy(m->note, note, note_len);
				m->note_len = note_len;
			}
			/* Copied whole: strndup would stop at an embedded NUL
			 * and pass off the part before it as the topic. */
			m->topic = calloc(1, tlen + 1);
			if (m->topic)
				memcpy(m->topic, topic, copy_len < tlen ? copy_len : tlen);
			/* Oversized payloads are not copied: the loop logs and
			 * counts them from the length alone. */
			if (plen <= NODE_PAYLOAD_MAX) {
				m->payload = malloc(plen ? plen : 1);
				if (m->payload)
					memcpy(m->payload, payload, plen);
			}
			if (!m->topic || (plen <= NODE_PAYLOAD_MAX && !m->payload)) {
				EVP_PKEY_free(m->verified_with);
				free(m->topic);
				free(m->payload);
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
		inbox_append_locked(in, ev);
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
	struct tp_inbox *in = context;
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

static void paho_connect_succeeded(void *context, MQTTAsync_successData *data)
{
	post_control(context, NODE_EV_CONNECTED, 0,
		     data ? data->alt.connect.sessionPresent : 0,
		     data && data->alt.connect.serverURI ? data->alt.connect.serverURI : "");
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

static void publish_settled(struct tp_inbox *in)
{
	pthread_mutex_lock(&in->lock);
	if (in->publishes_pending > 0)
		in->publishes_pending--;
	pthread_cond_broadcast(&in->changed);
	pthread_mutex_unlock(&in->lock);
}

/* Tracked sends: the outcome goes to the loop with the caller's callback. */
static void post_publish(struct tp_publish *p, enum node_event_kind kind, int token, int code,
			 const char *text)
{
	struct tp_inbox *in = p->inbox;
	struct tp_event *ev = &p->ev;

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
	inbox_append_locked(in, ev);
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
	struct tp_inbox *in = context;

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

/* ---- connection handling (loop thread) --------------------------------- */

static int subscription_cmp(const void *a, const void *b)
{
	int x = ((const struct node_subscription *)a)->token;
	int y = ((const struct node_subscription *)b)->token;

	return (x > y) - (x < y);
}

/* Subscribe every topic filter of this role, one SUBSCRIBE each, as a new
 * round (an earlier round's acknowledgements no longer count). */
static int subscribe_all(struct paho_transport *t)
{
	char topic[NODE_FILTER_MAX];
	struct node_subscription *round;
	size_t count = 0;

	while (t->ops->filter(t->ctx, count, topic, sizeof(topic)))
		count++;
	round = calloc(count ? count : 1, sizeof(*round));
	free(t->round);
	t->round = NULL;
	t->round_count = t->round_pending = 0;
	if (!round) {
		srup_log(LOG_ERR, "cannot subscribe on %s: out of memory", broker_name(t));
		return -1;
	}
	for (size_t i = 0; i < count; i++) {
		MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
		int rc;

		if (!t->ops->filter(t->ctx, i, topic, sizeof(topic))) {
			free(round);
			return -1;
		}
		opts.onSuccess = paho_subscribed_one;
		opts.onFailure = paho_subscribe_failed;
		opts.context = &t->inbox;
		rc = PAHO(t, MQTTAsync_subscribe(t->client, topic, 1, &opts));
		if (rc != MQTTASYNC_SUCCESS) {
			srup_log(LOG_ERR, "cannot subscribe to %s on %s: %s", topic, broker_name(t),
				 MQTTAsync_strerror(rc));
			free(round);
			return -1;
		}
		round[i].token = opts.token;
	}
	/* Acknowledgements reach the loop only after this returns. */
	qsort(round, count, sizeof(*round), subscription_cmp);
	t->round = round;
	t->round_count = t->round_pending = count;
	return 0;
}

/* Whether token is a not yet granted subscription of the current round;
 * if so it is granted now. */
static bool round_grant(struct paho_transport *t, int token)
{
	struct node_subscription key = {.token = token}, *found;

	if (!t->round)
		return false;
	found = bsearch(&key, t->round, t->round_count, sizeof(*t->round), subscription_cmp);
	if (!found || found->granted)
		return false;
	found->granted = true;
	t->round_pending--;
	return true;
}

static void schedule_resubscribe(struct paho_transport *t);

static int resubscribe_timer_fired(sd_event_source *s, uint64_t usec, void *user)
{
	struct paho_transport *t = user;

	(void)s;
	(void)usec;
	if (PAHO(t, MQTTAsync_isConnected(t->client)) && subscribe_all(t) != 0)
		schedule_resubscribe(t);
	return 0;
}

static void schedule_resubscribe(struct paho_transport *t)
{
	uint64_t now;
	uint64_t delay = (uint64_t)t->cfg.reconnect_max_seconds * 1000000u;

	if (sd_event_now(t->loop, CLOCK_MONOTONIC, &now) < 0)
		return;
	if (t->resubscribe_timer) {
		sd_event_source_set_time(t->resubscribe_timer, now + delay);
		sd_event_source_set_enabled(t->resubscribe_timer, SD_EVENT_ONESHOT);
		return;
	}
	sd_event_add_time(t->loop, &t->resubscribe_timer, CLOCK_MONOTONIC, now + delay, 0,
			  resubscribe_timer_fired, t);
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

/* ---- single subscriptions (the node's extra topics) ------------------ */

/* The answer to a subscription the node waits for, if token is one. */
static bool topic_op_settled(struct paho_transport *t, int token, bool ok)
{
	for (size_t i = 0; i < t->n_topic_ops; i++) {
		struct node_topic_op op = t->topic_ops[i];

		if (op.token != token)
			continue;
		t->topic_ops[i] = t->topic_ops[--t->n_topic_ops];
		t->ops->subscribed(t->ctx, op.topic, ok, op.done, op.user);
		free(op.topic);
		return true;
	}
	return false;
}

static int tp_subscribe(void *h, const char *filter, bool answer, srup_transport_fn done,
			void *user)
{
	struct paho_transport *t = h;
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	struct node_topic_op *ops;
	char *op_topic = NULL;
	int rc;

	if (answer) {
		ops = realloc(t->topic_ops, (t->n_topic_ops + 1) * sizeof(*ops));
		op_topic = strdup(filter);
		if (ops)
			t->topic_ops = ops;
		if (!ops || !op_topic) {
			free(op_topic);
			return -1;
		}
	}
	opts.onSuccess = paho_subscribed_one;
	opts.onFailure = paho_subscribe_failed;
	opts.context = &t->inbox;
	rc = PAHO(t, MQTTAsync_subscribe(t->client, filter, 1, &opts));
	if (rc != MQTTASYNC_SUCCESS) {
		srup_log(LOG_ERR, "cannot subscribe to %s: %s", filter, MQTTAsync_strerror(rc));
		free(op_topic);
		return -1;
	}
	/* The answer is handled on this thread, after this returns. */
	if (answer)
		t->topic_ops[t->n_topic_ops++] = (struct node_topic_op){
			.token = opts.token, .topic = op_topic, .done = done, .user = user};
	return 0;
}

static int tp_unsubscribe(void *h, const char *filter)
{
	struct paho_transport *t = h;
	int rc = PAHO(t, MQTTAsync_unsubscribe(t->client, filter, NULL));

	if (rc != MQTTASYNC_SUCCESS) {
		srup_log(LOG_ERR, "cannot unsubscribe from %s: %s", filter, MQTTAsync_strerror(rc));
		return -1;
	}
	return 0;
}

/* ---- the list of brokers: which one, and reconnecting through it ------- */

#define NODE_RESEND_MAX 8 /* a message dropped by that many session losses is given up */

/* Doubling from reconnect_min_seconds up to reconnect_max_seconds, with
 * +-20% jitter so that many nodes do not retry in step. */
static unsigned next_backoff_ms(const struct paho_transport *t)
{
	unsigned min_ms = t->cfg.reconnect_min_seconds * 1000u;
	unsigned max_ms = t->cfg.reconnect_max_seconds * 1000u;
	unsigned base = t->backoff_ms ? t->backoff_ms : min_ms / 2;
	unsigned next = base >= max_ms / 2 ? max_ms : base * 2;
	unsigned span = next / 5;
	unsigned r = 0;

	if (next < min_ms)
		next = min_ms;
	if (span)
		r = (unsigned)(random() % (2 * span + 1));
	next = next - span + r;
	return next > max_ms + max_ms / 5 ? max_ms : next;
}

static void connect_attempt(struct paho_transport *t);

static int reconnect_timer_fired(sd_event_source *s, uint64_t usec, void *user)
{
	(void)s;
	(void)usec;
	connect_attempt(user);
	return 0;
}

static void schedule_reconnect(struct paho_transport *t, unsigned delay_ms)
{
	uint64_t now;

	if (t->freeing || sd_event_now(t->loop, CLOCK_MONOTONIC, &now) < 0)
		return;
	if (t->reconnect_timer) {
		sd_event_source_set_time(t->reconnect_timer, now + (uint64_t)delay_ms * 1000u);
		sd_event_source_set_enabled(t->reconnect_timer, SD_EVENT_ONESHOT);
		return;
	}
	if (sd_event_add_time(t->loop, &t->reconnect_timer, CLOCK_MONOTONIC,
			      now + (uint64_t)delay_ms * 1000u, 0, reconnect_timer_fired, t) < 0)
		srup_log(LOG_ERR, "cannot schedule reconnecting: out of memory");
}

static void paho_published_tracked(void *context, MQTTAsync_successData *data);
static void paho_publish_failed_tracked(void *context, MQTTAsync_failureData *data);

/* Publish p's copy again, on whichever broker the node reaches next (Paho
 * keeps it while disconnected). The new publish takes over p's caller
 * and copy; p is left empty, to be freed with its event. */
static int publish_again(struct paho_transport *t, struct tp_publish *p)
{
	MQTTAsync_message pub = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	struct tp_publish *q;
	int rc;

	if (!p->topic || !p->payload || p->resent >= NODE_RESEND_MAX)
		return -1;
	q = malloc(sizeof(*q));
	if (!q)
		return -1;
	*q = (struct tp_publish){.inbox = p->inbox, .done = p->done, .user = p->user,
				   .topic = p->topic, .payload = p->payload, .len = p->len,
				   .resent = p->resent + 1};
	pub.payload = q->payload;
	pub.payloadlen = q->len;
	pub.qos = 1;
	pub.retained = 0;
	opts.onSuccess = paho_published_tracked;
	opts.onFailure = paho_publish_failed_tracked;
	opts.context = q;
	pthread_mutex_lock(&t->inbox.lock);
	t->inbox.publishes_pending++;
	pthread_mutex_unlock(&t->inbox.lock);
	rc = PAHO(t, MQTTAsync_sendMessage(t->client, q->topic, &pub, &opts));
	if (rc != MQTTASYNC_SUCCESS) {
		free(q);
		publish_settled(&t->inbox);
		return -1;
	}
	srup_log(LOG_NOTICE, "publish on %s dropped with the last broker's session; sent again",
		 p->topic);
	p->topic = NULL;
	p->payload = NULL;
	p->done = NULL;
	return 0;
}

static void handle_control(struct paho_transport *t, const struct tp_event *ev)
{
	switch (ev->kind) {
	case NODE_EV_CONNECTED:
		t->connected = false; /* until the subscriptions are acknowledged */
		t->backoff_ms = 0;
		t->current = (int)t->trying;
		if (t->previous >= 0 && t->previous != t->current)
			srup_log(LOG_NOTICE, "connected to %s (broker %d of %zu), no longer to %s%s",
				 broker_name(t), t->current + 1, t->brokers.count,
				 t->brokers.url[t->previous],
				 ev->code ? "" : "; the broker holds no session for us");
		else
			srup_log(LOG_INFO, "connected to %s (broker %d of %zu)", broker_name(t),
				 t->current + 1, t->brokers.count);
		t->previous = t->current;
		for (size_t i = 0; i < t->brokers.count; i++)
			disable_nagle_towards(t->broker_port[i]);
		/* A different broker, or one restarted without persistence,
		 * holds no session: subscribe again every time. */
		if (subscribe_all(t) != 0)
			schedule_resubscribe(t);
		break;
	case NODE_EV_CONNECTION_LOST:
		t->connected = false;
		/* Their SUBACKs will not come; the topics are in the next
		 * connect's round. */
		while (t->n_topic_ops > 0)
			topic_op_settled(t, t->topic_ops[0].token, true);
		srup_log(LOG_WARNING, "connection to %s lost (%s); trying %s", broker_name(t),
			 ev->text, t->brokers.count > 1 ? "the list from its first broker" : "again");
		t->current = -1;
		t->trying = 0;
		/* At once: another broker of the list may well answer. */
		schedule_reconnect(t, 0);
		t->ops->lost(t->ctx);
		break;
	case NODE_EV_CONNECT_FAILED:
		if (t->trying + 1 < t->brokers.count) {
			srup_log(LOG_WARNING, "cannot connect to %s: %s (code %d); trying %s",
				 t->brokers.url[t->trying], ev->text, ev->code,
				 t->brokers.url[t->trying + 1]);
			t->trying++;
			schedule_reconnect(t, 0);
			break;
		}
		t->backoff_ms = next_backoff_ms(t);
		srup_log(LOG_WARNING, "cannot connect to %s: %s (code %d); trying %s again in %u ms",
			 t->brokers.url[t->trying], ev->text, ev->code,
			 t->brokers.count > 1 ? "the list" : "it", t->backoff_ms);
		t->trying = 0;
		schedule_reconnect(t, t->backoff_ms);
		break;
	case NODE_EV_SUBSCRIBED:
		if (topic_op_settled(t, ev->token, true))
			break;
		/* Not of the current round: an earlier one, or a single
		 * watch_device subscription. */
		if (!round_grant(t, ev->token) || t->round_pending > 0)
			break;
		if (!t->connected) {
			t->connected = true;
			srup_log(LOG_INFO, "subscribed on %s as %s", broker_name(t), t->cfg.log_name);
			t->ops->up(t->ctx);
		}
		break;
	case NODE_EV_SUBSCRIBE_FAILED:
		if (topic_op_settled(t, ev->token, false)) {
			srup_log(LOG_ERR, "broker %s refused a group subscription: %s (code %d)",
				 broker_name(t), ev->text, ev->code);
			break;
		}
		srup_log(LOG_ERR, "broker %s refused a subscription: %s (code %d)", broker_name(t),
			 ev->text, ev->code);
		/* Any filter, of the round or a single watch_device one: all
		 * are subscribed again. */
		schedule_resubscribe(t);
		break;
	case NODE_EV_PUBLISH_FAILED:
		if (ev->code == MQTTASYNC_OPERATION_INCOMPLETE && ev->publish && !t->freeing &&
		    publish_again(t, ev->publish) == 0)
			break;
		srup_log(LOG_ERR, "publish (token %d) to %s failed: %s (code %d)", ev->token,
			 broker_name(t), ev->text, ev->code);
		if (ev->publish && ev->publish->done)
			t->ops->sent(t->ctx, ev->publish->done, ev->publish->user, false);
		break;
	case NODE_EV_PUBLISHED:
		if (ev->publish && ev->publish->done)
			t->ops->sent(t->ctx, ev->publish->done, ev->publish->user, true);
		break;
	case NODE_EV_MESSAGE:
		break;
	}
}

/* The end of an event that is not a message (those go to the node). */
static void event_free(struct tp_event *ev)
{
	if (ev->publish && &ev->publish->ev == ev) {
		publish_free(ev->publish); /* a tracked send's outcome, made with it */
		return;
	}
	publish_free(ev->publish);
	free(ev);
}

/* Everything queued so far: messages to the node, connection and publish
 * events in order. */
static void inbox_drain(struct paho_transport *t)
{
	struct tp_inbox *in = &t->inbox;
	struct tp_event *ev, *next;
	uint64_t newly_full = 0, lost_control;

	t->dispatching = true;
	pthread_mutex_lock(&in->lock);
	ev = in->head;
	in->head = in->tail = NULL;
	/* Slots reserved by a callback still copying stay counted. */
	for (struct tp_event *e = ev; e; e = e->next) {
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
		t->ops->queue_full(t->ctx, newly_full);
	}
	if (lost_control)
		srup_log(LOG_WARNING, "%" PRIu64 " connection events dropped: queue full",
			 lost_control);
	/* A run of messages is one batch; a connection event first lets the
	 * messages before it act, so the order of effects is kept. */
	for (; ev; ev = next) {
		next = ev->next;
		if (ev->kind == NODE_EV_MESSAGE) {
			ev->next = NULL;
			t->ops->message(t->ctx, &ev->msg); /* the node's now */
			continue;
		}
		t->ops->messages_end(t->ctx);
		handle_control(t, ev);
		event_free(ev);
	}
	t->ops->messages_end(t->ctx);
	t->dispatching = false;
	t->ops->drained(t->ctx);
}

static int inbox_readable(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct paho_transport *t = user;
	uint64_t counter;

	(void)s;
	(void)revents;
	if (read(fd, &counter, sizeof(counter)) < 0 && errno != EAGAIN)
		srup_log(LOG_ERR, "reading the node's eventfd: %s", strerror(errno));
	inbox_drain(t);
	return 0;
}

/* ---- construction ----------------------------------------------------- */

/* The port of "host", "host:port" or "[v6]:port" (default 1883, 8883 with
 * TLS); url names the entry in errors. */
static int parse_port(const char *url, const char *hostport, bool tls, uint16_t *out,
		      char *detail, size_t detail_len)
{
	const char *end = hostport + strcspn(hostport, "/");
	const char *colon = NULL, *bracket = NULL;
	char digits[8];
	size_t n;
	unsigned long port = 0;

	for (const char *c = hostport; c < end; c++) {
		if (*c == ':')
			colon = c;
		else if (*c == ']')
			bracket = c;
	}
	*out = tls ? 8883 : 1883;
	if (!colon || (bracket && bracket > colon))
		return 0;
	n = (size_t)(end - colon - 1);
	if (n == 0 || n > 5 || strspn(colon + 1, "0123456789") < n) {
		set_detail(detail, detail_len, "broker URL \"%s\": bad port", url);
		return -2;
	}
	memcpy(digits, colon + 1, n);
	digits[n] = '\0';
	port = strtoul(digits, NULL, 10);
	if (port == 0 || port > 65535) {
		set_detail(detail, detail_len, "broker URL \"%s\": bad port", url);
		return -2;
	}
	*out = (uint16_t)port;
	return 0;
}

/* Paho URIs from the configured list: tcp:// and mqtt:// are plain,
 * mqtts:// is TLS (Paho's ssl://); every entry the same. */
static int translate_urls(struct paho_transport *t, char *detail, size_t detail_len)
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
	char why[160];

	if (srup_broker_list_split(t->cfg.broker, &t->brokers, why, sizeof(why)) < 0) {
		set_detail(detail, detail_len, "broker list \"%s\": %s", t->cfg.broker, why);
		return -2;
	}
	for (size_t e = 0; e < t->brokers.count; e++) {
		const char *url = t->brokers.url[e];
		bool known = false;

		for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]) && !known; i++) {
			size_t len = strlen(schemes[i].scheme);
			const char *rest = url + len;

			if (strncmp(url, schemes[i].scheme, len) != 0)
				continue;
			known = true;
			if (*rest == '\0' || *rest == ':' || *rest == '/') {
				set_detail(detail, detail_len, "broker URL \"%s\" has no host", url);
				return -2;
			}
			if (e > 0 && schemes[i].tls != t->tls) {
				set_detail(detail, detail_len,
					   "broker URL \"%s\": the list mixes TLS and plain brokers",
					   url);
				return -2;
			}
			t->tls = schemes[i].tls;
			snprintf(t->paho_uri[e], sizeof(t->paho_uri[e]), "%s%.*s", schemes[i].paho,
				 SRUP_BROKER_URL_MAX, rest);
			t->paho_uris[e] = t->paho_uri[e];
			if (parse_port(url, rest, t->tls, &t->broker_port[e], detail, detail_len) != 0)
				return -2;
		}
		if (!known) {
			set_detail(detail, detail_len,
				   "broker URL \"%s\": scheme must be tcp://, mqtt:// or mqtts://",
				   url);
			return -2;
		}
	}
	return 0;
}

/* The broker of the session, or the whole list while there is none. */
static const char *broker_name(const struct paho_transport *t)
{
	return t->current >= 0 ? t->brokers.url[t->current] : t->cfg.broker;
}

/* The broker list and, for TLS, the files it needs. */
static int check_config(struct paho_transport *t, char *detail, size_t detail_len)
{
	int e = translate_urls(t, detail, detail_len);

	if (e != 0)
		return e;
	if (t->tls) {
		if (t->cfg.ca_file[0] == '\0') {
			set_detail(detail, detail_len, "broker URL \"%s\" is mqtts:// but no ca_file given",
				   t->cfg.broker);
			return -2;
		}
		if (t->cfg.key_file[0] != '\0' && t->cfg.cert_file[0] == '\0') {
			set_detail(detail, detail_len, "key_file given without cert_file");
			return -2;
		}
	}
	return 0;
}

static int create_client(struct paho_transport *t, char *detail, size_t detail_len)
{
	MQTTAsync_createOptions co = MQTTAsync_createOptions_initializer;
	int rc;

	/* RESPONSEs decided while the broker is away are kept and sent after
	 * the reconnect, also before the first connect succeeded. */
	co.sendWhileDisconnected = 1;
	co.allowDisconnectedSendAtAnyTime = 1;
	co.maxBufferedMessages = NODE_BUFFERED_MAX;
	co.MQTTVersion = MQTTVERSION_3_1_1;
	t->persistence = (MQTTClient_persistence){
		.context = &t->inbox,
		.popen = persist_open,
		.pclose = persist_close,
		.pput = persist_put,
		.pget = persist_get,
		.premove = persist_remove,
		.pkeys = persist_keys,
		.pclear = persist_clear,
		.pcontainskey = persist_containskey,
	};
	/* The URI given here is only Paho's default: every connect names
	 * the whole list (start_connect). */
	rc = MQTTAsync_createWithOptions(&t->client, t->paho_uri[0], t->cfg.client_id,
					 MQTTCLIENT_PERSISTENCE_USER, &t->persistence, &co);
	if (rc != MQTTASYNC_SUCCESS) {
		set_detail(detail, detail_len, "MQTT client for %s: %s", t->cfg.broker,
			   MQTTAsync_strerror(rc));
		return -1;
	}
	t->client_created = true;
	rc = MQTTAsync_setCallbacks(t->client, &t->inbox, paho_connection_lost,
				    paho_message_arrived, NULL);
	if (rc != MQTTASYNC_SUCCESS) {
		set_detail(detail, detail_len, "MQTT callbacks: %s", MQTTAsync_strerror(rc));
		return -1;
	}
	return 0;
}

/* One connect, to the entry t->trying (Paho's own walk through a list
 * reports the entry it reached wrongly in 1.3.12); its failure brings
 * the next entry, a failure of the last the backoff, and a later loss the
 * list again from its first entry (handle_control). */
static int connect_request(struct paho_transport *t)
{
	MQTTAsync_connectOptions opts = MQTTAsync_connectOptions_initializer;
	MQTTAsync_SSLOptions ssl = MQTTAsync_SSLOptions_initializer;

	opts.keepAliveInterval = (int)t->cfg.keepalive_seconds;
	opts.cleansession = 0; /* the broker keeps our subscriptions and QoS 1 messages */
	opts.MQTTVersion = MQTTVERSION_3_1_1;
	opts.automaticReconnect = 0; /* it would stay on the URI last reached */
	opts.serverURIs = &t->paho_uris[t->trying];
	opts.serverURIcount = 1;
	opts.connectTimeout = NODE_CONNECT_TIMEOUT_S;
	opts.onSuccess = paho_connect_succeeded;
	opts.onFailure = paho_connect_failed;
	opts.context = &t->inbox;
	if (t->tls) {
		ssl.trustStore = t->cfg.ca_file;
		ssl.keyStore = t->cfg.cert_file[0] ? t->cfg.cert_file : NULL;
		ssl.privateKey = t->cfg.key_file[0] ? t->cfg.key_file : NULL;
		ssl.enableServerCertAuth = 1;
		ssl.verify = 1; /* the certificate must name the host we dialled */
		opts.ssl = &ssl;
	}
	return PAHO(t, MQTTAsync_connect(t->client, &opts));
}

static void connect_attempt(struct paho_transport *t)
{
	int rc;

	if (t->freeing || PAHO(t, MQTTAsync_isConnected(t->client)))
		return;
	rc = connect_request(t);
	if (rc != MQTTASYNC_SUCCESS) {
		t->backoff_ms = next_backoff_ms(t);
		srup_log(LOG_WARNING, "cannot start connecting to %s: %s; trying again in %u ms",
			 t->cfg.broker, MQTTAsync_strerror(rc), t->backoff_ms);
		schedule_reconnect(t, t->backoff_ms);
	}
}

static int tp_connect(void *h)
{
	struct paho_transport *t = h;
	int rc;

	if (t->connect_requested)
		return 0;
	rc = connect_request(t);
	if (rc != MQTTASYNC_SUCCESS) {
		srup_log(LOG_ERR, "cannot start connecting to %s: %s", t->cfg.broker,
			 MQTTAsync_strerror(rc));
		return -1;
	}
	t->connect_requested = true;
	if (!t->waker) {
		char detail[256] = "";

		/* Without it messages still arrive, some up to 100 ms late. */
		if (paho_waker_new(t->loop, &t->waker, detail, sizeof(detail)) != 0)
			srup_log(LOG_WARNING, "MQTT receive waker not started: %s", detail);
	}
	return 0;
}

/* Hand an encoded message to Paho (takes wire). */
static int tp_publish(void *h, const char *topic, uint8_t *wire, size_t wire_len,
		      const char *what, srup_transport_fn done, void *user)
{
	struct paho_transport *t = h;
	struct tp_publish *tracked = NULL;
	char *topic_copy;
	MQTTAsync_message pub = MQTTAsync_message_initializer;
	MQTTAsync_responseOptions opts = MQTTAsync_responseOptions_initializer;
	int rc;

	pub.payload = wire;
	pub.payloadlen = (int)wire_len;
	pub.qos = 1;
	pub.retained = 0;
	/* Every publish is tracked with a copy until the broker has it: it
	 * is published again if a change of broker drops it (publish_again). */
	topic_copy = strdup(topic);
	tracked = topic_copy ? malloc(sizeof(*tracked)) : NULL;
	if (!tracked) {
		free(topic_copy);
		free(wire);
		srup_log(LOG_ERR, "cannot publish %s on %s: out of memory", what, topic);
		return -1;
	}
	*tracked = (struct tp_publish){
		.inbox = &t->inbox, .done = done, .user = user, .topic = topic_copy,
		.payload = wire, /* Paho copies what it sends; the node keeps this */
		.len = (int)wire_len,
	};
	opts.onSuccess = paho_published_tracked;
	opts.onFailure = paho_publish_failed_tracked;
	opts.context = tracked;

	/* Counted before Paho can call back. */
	pthread_mutex_lock(&t->inbox.lock);
	t->inbox.publishes_pending++;
	pthread_mutex_unlock(&t->inbox.lock);
	rc = PAHO(t, MQTTAsync_sendMessage(t->client, topic, &pub, &opts));
	if (rc != MQTTASYNC_SUCCESS) {
		publish_free(tracked);
		publish_settled(&t->inbox);
		srup_log(LOG_ERR, "cannot publish %s on %s: %s", what, topic,
			 MQTTAsync_strerror(rc));
		return -1;
	}
	return 0;
}

static uint64_t tp_flush(void *h, unsigned timeout_ms)
{
	struct paho_transport *t = h;
	struct timespec deadline;
	uint64_t left;

	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += timeout_ms / 1000;
	deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (deadline.tv_nsec >= 1000000000L) {
		deadline.tv_sec++;
		deadline.tv_nsec -= 1000000000L;
	}
	/* Waiting on Paho as in a call to it: its thread must not wait for
	 * room meanwhile, or the acknowledgements would not be read. */
	pthread_mutex_lock(&t->inbox.lock);
	t->inbox.loop_in_paho++;
	pthread_cond_broadcast(&t->inbox.room);
	while (t->inbox.publishes_pending > 0)
		if (pthread_cond_timedwait(&t->inbox.changed, &t->inbox.lock, &deadline) ==
		    ETIMEDOUT)
			break;
	left = t->inbox.publishes_pending;
	t->inbox.loop_in_paho--;
	pthread_mutex_unlock(&t->inbox.lock);
	return left;
}

/* Disconnect cleanly so that no Paho callback can run once we free. */
static void disconnect_client(struct paho_transport *t)
{
	MQTTAsync_disconnectOptions opts = MQTTAsync_disconnectOptions_initializer;
	struct timespec deadline;

	if (!t->connect_requested || !PAHO(t, MQTTAsync_isConnected(t->client)))
		return;
	opts.timeout = 0; /* in-flight QoS 1 messages were settled by flush, if wanted */
	opts.onSuccess = paho_disconnect_done;
	opts.onFailure = paho_disconnect_failed;
	opts.context = &t->inbox;
	if (PAHO(t, MQTTAsync_disconnect(t->client, &opts)) != MQTTASYNC_SUCCESS)
		return;
	clock_gettime(CLOCK_MONOTONIC, &deadline);
	deadline.tv_sec += NODE_DISCONNECT_WAIT_MS / 1000;
	pthread_mutex_lock(&t->inbox.lock);
	while (!t->inbox.disconnected)
		if (pthread_cond_timedwait(&t->inbox.changed, &t->inbox.lock, &deadline) ==
		    ETIMEDOUT)
			break;
	pthread_mutex_unlock(&t->inbox.lock);
}

static void tp_free(void *h)
{
	struct paho_transport *t = h;
	struct tp_event *ev, *next;

	if (!t)
		return;
	t->freeing = true; /* no reconnect, no publish again from here on */
	/* Paho's thread no longer waits for room: nothing takes the queue. */
	pthread_mutex_lock(&t->inbox.lock);
	t->inbox.stopping = true;
	pthread_cond_broadcast(&t->inbox.room);
	pthread_mutex_unlock(&t->inbox.lock);
	paho_waker_free(t->waker);
	if (t->client_created) {
		disconnect_client(t);
		MQTTAsync_destroy(&t->client);
	}
	sd_event_source_disable_unref(t->inbox_source);
	sd_event_source_disable_unref(t->resubscribe_timer);
	sd_event_source_disable_unref(t->reconnect_timer);
	/* Messages not handled keep their records for the next start;
	 * tracked sends not yet settled are, as far as the caller knows, not
	 * acknowledged. */
	for (ev = t->inbox.head; ev; ev = next) {
		next = ev->next;
		if (ev->publish && ev->publish->done)
			t->ops->sent(t->ctx, ev->publish->done, ev->publish->user,
				     ev->kind == NODE_EV_PUBLISHED);
		if (ev->kind == NODE_EV_MESSAGE)
			srup_transport_message_free(&ev->msg);
		else
			event_free(ev);
	}
	if (t->inbox.efd >= 0)
		close(t->inbox.efd);
	free(t->inbox.recorded_ids);
	kept_clear(&t->inbox);
	pthread_cond_destroy(&t->inbox.changed);
	pthread_cond_destroy(&t->inbox.room);
	pthread_mutex_destroy(&t->inbox.lock);
	free(t->round);
	for (size_t i = 0; i < t->n_topic_ops; i++)
		free(t->topic_ops[i].topic);
	free(t->topic_ops);
	sd_event_unref(t->loop);
	free(t);
}

static bool tp_session_up(void *h)
{
	struct paho_transport *t = h;

	return t->connect_requested && PAHO(t, MQTTAsync_isConnected(t->client));
}

static bool tp_ready(void *h)
{
	return ((struct paho_transport *)h)->connected;
}

static const char *tp_broker(void *h)
{
	struct paho_transport *t = h;

	return t->current >= 0 ? t->brokers.url[t->current] : NULL;
}

static const char *tp_broker_name(void *h)
{
	return broker_name(h);
}

/* Records read back at start, behind what is queued; each takes its room
 * first (false: none now). */
static bool tp_inject(void *h, const char *topic, size_t topic_len, const void *payload,
		      size_t len, uint64_t record, bool accepted, const uint8_t *note,
		      size_t note_len)
{
	struct paho_transport *t = h;
	struct tp_inbox *in = &t->inbox;
	bool room;

	pthread_mutex_lock(&in->lock);
	room = room_for(in, message_cost(topic_len, len));
	if (room) {
		in->queued_messages++;
		in->queued_bytes += message_cost(topic_len, len);
	}
	pthread_mutex_unlock(&in->lock);
	if (!room)
		return false;
	inbox_take(in, topic, topic_len, topic_len, payload, len, record, accepted, true, note,
		   note_len, NULL);
	return true;
}

static void tp_process(void *h)
{
	struct paho_transport *t = h;

	if (!t->dispatching)
		inbox_drain(t);
}

static void tp_counts(void *h, uint64_t *received, uint64_t *queue_full)
{
	struct paho_transport *t = h;

	pthread_mutex_lock(&t->inbox.lock);
	*received = t->inbox.received;
	*queue_full = t->inbox.queue_full - t->inbox.queue_full_reported;
	pthread_mutex_unlock(&t->inbox.lock);
}

static const struct srup_transport_driver paho_driver = {
	.name = "paho",
	.free = tp_free,
	.connect = tp_connect,
	.session_up = tp_session_up,
	.ready = tp_ready,
	.broker = tp_broker,
	.broker_name = tp_broker_name,
	.publish = tp_publish,
	.subscribe = tp_subscribe,
	.unsubscribe = tp_unsubscribe,
	.inject = tp_inject,
	.flush = tp_flush,
	.process = tp_process,
	.counts = tp_counts,
};

static bool copy_text(char *out, size_t cap, const char *text)
{
	int n = snprintf(out, cap, "%s", text ? text : "");

	return n >= 0 && (size_t)n < cap;
}

int srup_transport_paho_new(sd_event *loop, const struct srup_transport_config *cfg,
			    const struct srup_transport_ops *ops, void *ctx,
			    struct srup_transport *out, char *detail, size_t detail_len)
{
	struct paho_transport *t;
	pthread_condattr_t cattr;
	int r, e;

	out->driver = NULL;
	out->handle = NULL;
	t = calloc(1, sizeof(*t));
	if (!t) {
		set_detail(detail, detail_len, "out of memory");
		return -1;
	}
	t->inbox.efd = -1;
	t->current = -1;
	t->previous = -1;
	t->ops = ops;
	t->ctx = ctx;
	t->inbox.ops = ops;
	t->inbox.ctx = ctx;
	if (!copy_text(t->cfg.broker, sizeof(t->cfg.broker), cfg->broker) ||
	    !copy_text(t->cfg.ca_file, sizeof(t->cfg.ca_file), cfg->ca_file) ||
	    !copy_text(t->cfg.cert_file, sizeof(t->cfg.cert_file), cfg->cert_file) ||
	    !copy_text(t->cfg.key_file, sizeof(t->cfg.key_file), cfg->key_file) ||
	    !copy_text(t->cfg.client_id, sizeof(t->cfg.client_id), cfg->client_id) ||
	    !copy_text(t->cfg.log_name, sizeof(t->cfg.log_name), cfg->log_name)) {
		set_detail(detail, detail_len, "a transport setting is too long");
		free(t);
		return -2;
	}
	t->cfg.keepalive_seconds = cfg->keepalive_seconds;
	t->cfg.reconnect_min_seconds = cfg->reconnect_min_seconds;
	t->cfg.reconnect_max_seconds = cfg->reconnect_max_seconds;
	e = check_config(t, detail, detail_len);
	if (e != 0) {
		free(t);
		return e;
	}
	if (pthread_mutex_init(&t->inbox.lock, NULL) != 0) {
		free(t);
		return -1;
	}
	pthread_condattr_init(&cattr);
	pthread_condattr_setclock(&cattr, CLOCK_MONOTONIC);
	r = pthread_cond_init(&t->inbox.changed, &cattr);
	pthread_condattr_destroy(&cattr);
	if (r == 0 && pthread_cond_init(&t->inbox.room, NULL) != 0) {
		pthread_cond_destroy(&t->inbox.changed);
		r = -1;
	}
	if (r != 0) {
		pthread_mutex_destroy(&t->inbox.lock);
		free(t);
		return -1;
	}
	t->loop = sd_event_ref(loop);
	t->inbox.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (t->inbox.efd < 0) {
		set_detail(detail, detail_len, "eventfd: %s", strerror(errno));
		goto fail;
	}
	r = sd_event_add_io(loop, &t->inbox_source, t->inbox.efd, EPOLLIN, inbox_readable, t);
	if (r < 0) {
		set_detail(detail, detail_len, "sd_event_add_io: %s", strerror(-r));
		goto fail;
	}
	if (create_client(t, detail, detail_len) != 0)
		goto fail;
	out->driver = &paho_driver;
	out->handle = t;
	return 0;
fail:
	tp_free(t);
	return -1;
}
