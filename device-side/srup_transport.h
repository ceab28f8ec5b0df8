/* The node's transport: an MQTT session to one of a list of brokers, seen
 * from the node as a table of operations on an opaque handle.
 *
 * A transport owns the client library and its threads, the queue from
 * those threads to the sd-event loop, reconnecting through the broker
 * list, and subscribing the node's topic filters again with every
 * connect. It knows nothing of SRUP: what arrives goes to the node's
 * operations (struct srup_transport_ops) on the loop thread, except
 * ops->record and ops->record_durable, which run on the client's thread
 * before the broker is acknowledged.
 *
 * srup_transport_paho.c is the one implementation (Eclipse Paho MQTT C). */
#ifndef SRUP_TRANSPORT_H
#define SRUP_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <systemd/sd-event.h>

#define SRUP_TRANSPORT_PAYLOAD_MAX (128u * 1024u) /* larger ones arrive without payload */
#define SRUP_TRANSPORT_TOPIC_MAX 65535u           /* MQTT topic names are u16-length strings */
#define SRUP_TRANSPORT_NOTE_MAX 64u

/* One message for the node, from the broker or handed back in by
 * srup_transport_inject. The node owns it once given: free it with
 * srup_transport_message_free. */
struct srup_transport_message {
	char *topic;
	size_t topic_len;  /* a NUL inside makes it shorter than strlen says */
	uint8_t *payload;  /* NULL when over SRUP_TRANSPORT_PAYLOAD_MAX */
	size_t len;
	/* Its record (0: none), as ops->record gave it or as injected. */
	uint64_t record;
	bool recovered_accepted;
	uint8_t note[SRUP_TRANSPORT_NOTE_MAX];
	size_t note_len;
	/* The key ops->record verified it with (a reference), or NULL. */
	EVP_PKEY *verified_with;
	/* The node's own marks. */
	bool held;
	bool keep_record;
};

void srup_transport_message_free(struct srup_transport_message *m);

/* A generic callback, cast back by the node that passed it. */
typedef void (*srup_transport_fn)(void);

/* What the node gives the transport; ctx is passed to every call. */
struct srup_transport_ops {
	/* Client's thread: a QoS 1 message about to be acknowledged. Returns
	 * the ID of a record of it (0: none, for a message certain to be
	 * dropped or one that could not be written); may set *verified_with
	 * (a reference that goes with the message). The record is durable
	 * once record_durable returned: the transport queues the message for
	 * the loop first (the loop's work and the flush overlap), then calls
	 * it, then lets the client acknowledge. */
	uint64_t (*record)(void *ctx, const char *topic, size_t topic_len, const void *payload,
			   size_t len, EVP_PKEY **verified_with);
	void (*record_durable)(void *ctx, uint64_t record);
	/* Loop thread, while the queue is taken (srup_transport_process):
	 * each message in arrival order; messages_end before any connection
	 * event and after the last message; drained at the very end. */
	void (*message)(void *ctx, struct srup_transport_message *m);
	void (*messages_end)(void *ctx);
	void (*drained)(void *ctx);
	/* QoS 0 messages lost because the queue was full (n since the last). */
	void (*queue_full)(void *ctx, uint64_t n);
	/* The session is up and every topic filter was granted. */
	void (*up)(void *ctx);
	/* An established session was lost; the transport tries again. */
	void (*lost)(void *ctx);
	/* Topic filter number i of the node's subscriptions (false past the
	 * last): every connect subscribes them all. */
	bool (*filter)(void *ctx, size_t i, char *out, size_t cap);
	/* The answer to srup_transport_subscribe with done set. */
	void (*subscribed)(void *ctx, const char *topic, bool ok, srup_transport_fn done,
			   void *user);
	/* The outcome of a publish: acknowledged by the broker or given up. */
	void (*sent)(void *ctx, srup_transport_fn done, void *user, bool acknowledged);
};

struct srup_transport_config {
	const char *broker;    /* one URL or several separated by blanks */
	const char *ca_file;   /* TLS (mqtts://): required */
	const char *cert_file; /* "" for none */
	const char *key_file;
	const char *client_id;
	const char *log_name;  /* the node as its log lines name it */
	unsigned keepalive_seconds;
	unsigned reconnect_min_seconds;
	unsigned reconnect_max_seconds;
};

/* The driver table: every call takes the handle. Return values: 0 or -1
 * (then the transport logged what failed). */
struct srup_transport_driver {
	const char *name;
	void (*free)(void *h);
	/* Start connecting (the first attempt now, then by itself). */
	int (*connect)(void *h);
	/* The session is up (subscriptions may still be pending). */
	bool (*session_up)(void *h);
	/* Up and every topic filter granted. */
	bool (*ready)(void *h);
	/* URL of the broker of the session (NULL: none); the one, or the
	 * list, to name in a log line. */
	const char *(*broker)(void *h);
	const char *(*broker_name)(void *h);
	/* Publish at QoS 1 (takes wire, malloc'd); what names it in a log
	 * line; done/user go to ops->sent (always, once, if this returned 0). */
	int (*publish)(void *h, const char *topic, uint8_t *wire, size_t len, const char *what,
		       srup_transport_fn done, void *user);
	/* One topic filter now (the session must be up). With answer, the
	 * broker's answer goes to ops->subscribed with done and user (or
	 * ok = true if the session is lost first: the filter is in the next
	 * connect's round); without, a refusal subscribes everything again
	 * later. */
	int (*subscribe)(void *h, const char *filter, bool answer, srup_transport_fn done,
			 void *user);
	int (*unsubscribe)(void *h, const char *filter);
	/* Queue a message (a record read back) behind what is queued; false:
	 * no room now (try again after ops->drained). */
	bool (*inject)(void *h, const char *topic, size_t topic_len, const void *payload,
		       size_t len, uint64_t record, bool accepted, const uint8_t *note,
		       size_t note_len);
	/* Wait (running nothing) until every publish was settled or
	 * timeout_ms; the number still pending. */
	uint64_t (*flush)(void *h, unsigned timeout_ms);
	/* Take the queue now, unless it is being taken (ops are called). */
	void (*process)(void *h);
	/* Messages received so far, and those lost to a full queue not yet
	 * reported through ops->queue_full. */
	void (*counts)(void *h, uint64_t *received, uint64_t *queue_full);
};

struct srup_transport {
	const struct srup_transport_driver *driver;
	void *handle;
};

/* Paho MQTT C on loop. Checks the broker list (detail says what is wrong,
 * -2 for a bad configuration, -1 otherwise). */
int srup_transport_paho_new(sd_event *loop, const struct srup_transport_config *cfg,
			    const struct srup_transport_ops *ops, void *ctx,
			    struct srup_transport *out, char *detail, size_t detail_len);

#endif
