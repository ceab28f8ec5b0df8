/* The receive pipeline: what happens to a message between "these bytes
 * arrived on this topic" and "its handler runs" or "it was dropped, for
 * this reason" (JOIN-FLOW.md section 4). No I/O of its own: sender keys,
 * the sequence store, logging and what is done with an accepted message
 * come through the operations it is given (struct srup_receive_ops), so
 * it runs the same under the node and in a unit test.
 *
 * Checks, in this order, each failure reported with what was wrong:
 *   topic is one this role handles -> payload within bounds -> bounded
 *   decode (size, structure, version, known type) -> a signed type ->
 *   sender is not ourselves (ignored, not a drop) -> sender key known ->
 *   signature -> a handler is registered and the sender is allowed to send
 *   that type -> sequence ID greater than the last accepted from that
 *   sender -> last accepted staged in the sequence store.
 * Messages that pass go into a batch (up to SRUP_RECEIVE_BATCH_MAX). Running
 * the batch commits every staged ID with one commit and only then hands the
 * messages to their handlers in arrival order; if the commit fails no
 * handler runs and each message is dropped (reason persist).
 *
 * Topic rules: a device handles its own SRUP/<id> and the extra topics
 * (groups) it was given, matched exactly; a server handles
 * SRUP/servers/<id>/<\w+> and SRUP/<dev> or SRUP/<dev>/... of the devices
 * it watches (the ID in its canonical topic form).
 *
 * Not thread-safe: one owner thread. */
#ifndef SRUP_RECEIVE_H
#define SRUP_RECEIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "srup.h"
#include "srup_seqstore.h"

/* Messages whose accepted IDs are persisted by one commit (group commit);
 * also bounds how long the first handler of a drained burst waits. */
#define SRUP_RECEIVE_BATCH_MAX 64u
#define SRUP_RECEIVE_TOPIC_MAX 64
#define SRUP_RECEIVE_ANY_SENDER UINT64_MAX

enum srup_receive_role {
	SRUP_RECEIVE_ROLE_DEVICE,
	SRUP_RECEIVE_ROLE_SERVER,
};

/* Why a message was dropped; the same values as enum srup_node_drop. */
enum srup_receive_drop {
	SRUP_RECEIVE_DROP_TOPIC,
	SRUP_RECEIVE_DROP_SIZE,
	SRUP_RECEIVE_DROP_DECODE,
	SRUP_RECEIVE_DROP_UNSIGNED,
	SRUP_RECEIVE_DROP_UNKNOWN_SENDER,
	SRUP_RECEIVE_DROP_SIGNATURE,
	SRUP_RECEIVE_DROP_NO_HANDLER,
	SRUP_RECEIVE_DROP_SENDER_NOT_ALLOWED,
	SRUP_RECEIVE_DROP_REPLAY,
	SRUP_RECEIVE_DROP_PERSIST,
	SRUP_RECEIVE_DROP__COUNT
};

/* A handler as registered: fn is the caller's own function, cast to this
 * generic type and back by the caller (ops->deliver); NULL: none. */
struct srup_receive_handler {
	void (*fn)(void);
	void *user;
	uint64_t allowed_sender; /* or SRUP_RECEIVE_ANY_SENDER */
};

/* One message as it arrived. Borrowed for srup_receive_check, except that a
 * message added to the batch stays the caller's to keep alive until
 * ops->release is called for its owner. */
struct srup_receive_input {
	const char *topic;       /* topic_len bytes and a NUL */
	size_t topic_len;        /* shorter than strlen: the topic held a NUL */
	const uint8_t *payload;  /* NULL: over the payload limit (len says how big) */
	size_t len;
	size_t payload_limit;    /* for the message that names it */
	/* Accepted (and its ID committed) before a restart: handed to its
	 * handler again without the replay rule. */
	bool recovered_accepted;
	/* The key its signature already verified with (compared only): not
	 * verified again if the key store still gives this key. */
	const EVP_PKEY *verified_with;
	void *owner;             /* the caller's, passed back to the ops below */
};

/* What the pipeline is given. ctx is passed to every call. Optional
 * operations may be NULL. */
struct srup_receive_ops {
	/* The sender's public key, borrowed; NULL when none is known, then
	 * with why in why (a missing, unreadable or corrupt key file...).
	 * Required. */
	EVP_PKEY *(*key_lookup)(void *ctx, uint64_t sender, char *why, size_t why_len);
	/* Told the key (or NULL) each lookup gave. Optional. */
	void (*key_noted)(void *ctx, uint64_t sender, EVP_PKEY *key);

	/* The sequence store (as srup_seqstore.h). Required. */
	bool (*seq_is_fresh)(void *ctx, uint64_t sender, uint64_t seq);
	uint64_t (*seq_last_accepted)(void *ctx, uint64_t sender);
	enum srup_seq_err (*seq_stage_accept)(void *ctx, uint64_t sender, uint64_t seq,
					      char *detail, size_t detail_len);
	enum srup_seq_err (*seq_commit)(void *ctx, char *detail, size_t detail_len);

	/* A batch is about to be committed: this message passed every check
	 * (called for each, before the commit). Optional. */
	void (*accepting)(void *ctx, void *owner);
	/* After a successful commit, for each message of the batch. Optional. */
	void (*committed)(void *ctx, uint64_t sender, uint64_t seq);
	/* Run the handler (after the commit, in arrival order). Required. */
	void (*deliver)(void *ctx, const struct srup_receive_handler *handler,
			const struct srup_msg *msg, const char *topic, void *owner);
	/* The commit failed: owner's message was not handled. Optional. */
	void (*not_committed)(void *ctx, void *owner);
	/* The pipeline is done with a message it kept in the batch. Required. */
	void (*release)(void *ctx, void *owner);
	/* Around the handlers of one batch. Optional. */
	void (*batch_begin)(void *ctx);
	void (*batch_end)(void *ctx);

	/* A message was dropped: why (a sentence naming what was wrong). */
	void (*dropped)(void *ctx, enum srup_receive_drop reason, const char *topic,
			const char *why);
	/* Anything else worth a log line (syslog priority). Optional. */
	void (*log)(void *ctx, int priority, const char *text);
};

struct srup_receive_stats {
	uint64_t accepted;
	uint64_t dropped;
	uint64_t dropped_by[SRUP_RECEIVE_DROP__COUNT];
	uint64_t ignored_own;
};

struct srup_receive;

/* NULL if out of memory or a required operation is missing. */
struct srup_receive *srup_receive_new(enum srup_receive_role role, uint64_t own_id,
				      const struct srup_receive_ops *ops, void *ctx);
/* Releases what the batch still holds (without running handlers). */
void srup_receive_free(struct srup_receive *rx);

/* The handler for one message type (fn NULL: none). */
void srup_receive_on(struct srup_receive *rx, uint8_t type,
		     const struct srup_receive_handler *handler);

/* Server role: the devices whose topics are handled, kept sorted.
 * srup_receive_watch returns 1 if added, 0 if already watched, -1 if out
 * of memory. */
int srup_receive_watch(struct srup_receive *rx, uint64_t device);
size_t srup_receive_watched(const struct srup_receive *rx, const uint64_t **devices);

/* Device role: extra topics. add: 1 added, 0 already there, -1 no memory.
 * remove: 0 removed, -1 not there. */
int srup_receive_extra_add(struct srup_receive *rx, const char *topic);
int srup_receive_extra_remove(struct srup_receive *rx, const char *topic);
bool srup_receive_extra_has(const struct srup_receive *rx, const char *topic);
size_t srup_receive_extra(const struct srup_receive *rx, const char *const **topics);

/* NULL if the topic is one this role handles, else why not. */
const char *srup_receive_topic_rejected(const struct srup_receive *rx, const char *topic);

/* Every check for one message, up to and including staging its sequence
 * ID. True: it is in the batch (and the batch ran if it became full);
 * false: dropped or ignored, the caller keeps it. */
bool srup_receive_check(struct srup_receive *rx, const struct srup_receive_input *in);
/* Commit the batch and run its handlers (nothing if it is empty). */
void srup_receive_run(struct srup_receive *rx);
size_t srup_receive_pending(const struct srup_receive *rx);

void srup_receive_get_stats(const struct srup_receive *rx, struct srup_receive_stats *out);

#endif
