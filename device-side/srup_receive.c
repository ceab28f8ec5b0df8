#include "srup_receive.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "srup_keys.h"
#include "srup_msg_layout.h"

struct srup_receive {
	enum srup_receive_role role;
	uint64_t own_id;
	const struct srup_receive_ops *ops;
	void *ctx;
	char own_topic[SRUP_RECEIVE_TOPIC_MAX];     /* SRUP/<id> */
	char server_prefix[SRUP_RECEIVE_TOPIC_MAX]; /* SRUP/servers/<id>/ */

	struct srup_receive_handler handlers[256];

	/* Server role: devices whose topics we handle, sorted. */
	uint64_t *watched;
	size_t n_watched, cap_watched;
	/* Device role: extra topics (groups). */
	char **extra;
	size_t n_extra;

	/* Messages of one drained burst that passed every check, their
	 * accepted IDs staged in the sequence store. */
	size_t count;
	struct receive_item {
		void *owner;
		const char *topic;
		bool recovered_accepted;
		struct srup_msg *msg;
		struct srup_receive_handler handler; /* as checked */
	} items[SRUP_RECEIVE_BATCH_MAX];

	struct srup_receive_stats stats;
};

struct srup_receive *srup_receive_new(enum srup_receive_role role, uint64_t own_id,
				      const struct srup_receive_ops *ops, void *ctx)
{
	struct srup_receive *rx;
	char id[17];

	if (!ops || !ops->key_lookup || !ops->seq_is_fresh || !ops->seq_last_accepted ||
	    !ops->seq_stage_accept || !ops->seq_commit || !ops->deliver || !ops->release ||
	    (role != SRUP_RECEIVE_ROLE_DEVICE && role != SRUP_RECEIVE_ROLE_SERVER))
		return NULL;
	rx = calloc(1, sizeof(*rx));
	if (!rx)
		return NULL;
	rx->role = role;
	rx->own_id = own_id;
	rx->ops = ops;
	rx->ctx = ctx;
	srup_id_format_topic(own_id, id);
	snprintf(rx->own_topic, sizeof(rx->own_topic), "SRUP/%s", id);
	snprintf(rx->server_prefix, sizeof(rx->server_prefix), "SRUP/servers/%s/", id);
	return rx;
}

void srup_receive_free(struct srup_receive *rx)
{
	if (!rx)
		return;
	for (size_t i = 0; i < rx->count; i++) {
		srup_msg_free(rx->items[i].msg);
		rx->ops->release(rx->ctx, rx->items[i].owner);
	}
	free(rx->watched);
	for (size_t i = 0; i < rx->n_extra; i++)
		free(rx->extra[i]);
	free(rx->extra);
	free(rx);
}

void srup_receive_on(struct srup_receive *rx, uint8_t type,
		     const struct srup_receive_handler *handler)
{
	if (!rx)
		return;
	if (handler)
		rx->handlers[type] = *handler;
	else
		rx->handlers[type] = (struct srup_receive_handler){0};
}

/* ---- topic rules ------------------------------------------------------ */

static bool watched_find(const struct srup_receive *rx, uint64_t dev, size_t *pos)
{
	size_t lo = 0, hi = rx->n_watched;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (rx->watched[mid] == dev) {
			*pos = mid;
			return true;
		}
		if (rx->watched[mid] < dev)
			lo = mid + 1;
		else
			hi = mid;
	}
	*pos = lo;
	return false;
}

int srup_receive_watch(struct srup_receive *rx, uint64_t device)
{
	size_t pos;

	if (watched_find(rx, device, &pos))
		return 0;
	if (rx->n_watched == rx->cap_watched) {
		size_t cap = rx->cap_watched ? rx->cap_watched * 2 : 16;
		uint64_t *w = realloc(rx->watched, cap * sizeof(*w));
		if (!w)
			return -1;
		rx->watched = w;
		rx->cap_watched = cap;
	}
	memmove(&rx->watched[pos + 1], &rx->watched[pos],
		(rx->n_watched - pos) * sizeof(*rx->watched));
	rx->watched[pos] = device;
	rx->n_watched++;
	return 1;
}

size_t srup_receive_watched(const struct srup_receive *rx, const uint64_t **devices)
{
	*devices = rx->watched;
	return rx->n_watched;
}

static bool extra_find(const struct srup_receive *rx, const char *topic, size_t *pos)
{
	for (size_t i = 0; i < rx->n_extra; i++) {
		if (strcmp(rx->extra[i], topic) == 0) {
			*pos = i;
			return true;
		}
	}
	return false;
}

int srup_receive_extra_add(struct srup_receive *rx, const char *topic)
{
	char **extra, *copy;
	size_t pos;

	if (extra_find(rx, topic, &pos))
		return 0;
	extra = realloc(rx->extra, (rx->n_extra + 1) * sizeof(*extra));
	if (!extra)
		return -1;
	rx->extra = extra;
	copy = strdup(topic);
	if (!copy)
		return -1;
	rx->extra[rx->n_extra++] = copy;
	return 1;
}

int srup_receive_extra_remove(struct srup_receive *rx, const char *topic)
{
	size_t pos;

	if (!extra_find(rx, topic, &pos))
		return -1;
	free(rx->extra[pos]);
	rx->extra[pos] = rx->extra[--rx->n_extra];
	return 0;
}

bool srup_receive_extra_has(const struct srup_receive *rx, const char *topic)
{
	size_t pos;

	return extra_find(rx, topic, &pos);
}

size_t srup_receive_extra(const struct srup_receive *rx, const char *const **topics)
{
	*topics = (const char *const *)rx->extra;
	return rx->n_extra;
}

static bool is_word_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '_';
}

const char *srup_receive_topic_rejected(const struct srup_receive *rx, const char *topic)
{
	size_t extra_pos;

	if (rx->role == SRUP_RECEIVE_ROLE_DEVICE)
		return strcmp(topic, rx->own_topic) == 0 || extra_find(rx, topic, &extra_pos)
			       ? NULL
			       : "topic is not this device's own nor one of its groups";

	/* Server: SRUP/servers/<own>/<\w+> */
	size_t plen = strlen(rx->server_prefix);
	if (strncmp(topic, rx->server_prefix, plen) == 0) {
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
		if (strcmp(canon, text) != 0 || !watched_find(rx, dev, &pos))
			return "topic is not a watched device's";
		return NULL;
	}
	return "topic is not one this server handles";
}

/* ---- the checks ------------------------------------------------------- */

__attribute__((format(printf, 4, 5))) static void drop(struct srup_receive *rx,
						       enum srup_receive_drop reason,
						       const char *topic, const char *fmt, ...)
{
	char why[400];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	rx->stats.dropped++;
	rx->stats.dropped_by[reason]++;
	if (rx->ops->dropped)
		rx->ops->dropped(rx->ctx, reason, topic, why);
}

__attribute__((format(printf, 3, 4))) static void say(struct srup_receive *rx, int priority,
						      const char *fmt, ...)
{
	char text[600];
	va_list ap;

	if (!rx->ops->log)
		return;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	rx->ops->log(rx->ctx, priority, text);
}

static const char *type_name(uint8_t type)
{
	const char *name = srup_type_name(type);

	return name ? name : "unknown";
}

static void batch_add(struct srup_receive *rx, const struct srup_receive_input *in,
		      struct srup_msg *msg, const struct srup_receive_handler *h)
{
	rx->items[rx->count++] = (struct receive_item){
		.owner = in->owner, .topic = in->topic, .recovered_accepted = in->recovered_accepted,
		.msg = msg, .handler = *h};
	if (rx->count == SRUP_RECEIVE_BATCH_MAX)
		srup_receive_run(rx);
}

bool srup_receive_check(struct srup_receive *rx, const struct srup_receive_input *in)
{
	const char *topic = in->topic;
	struct srup_msg *msg = NULL;
	struct srup_decode_error derr = {0};
	const char *type_text;
	const struct srup_receive_handler *h;
	char sender[17], allowed[17];
	char detail[512] = "", key_why[320] = "";
	EVP_PKEY *key;
	enum srup_err err;
	enum srup_seq_err serr;

	const char *why = strlen(topic) != in->topic_len ? "topic contains a NUL byte"
							 : srup_receive_topic_rejected(rx, topic);
	if (why) {
		drop(rx, SRUP_RECEIVE_DROP_TOPIC, topic, "%s", why);
		return false;
	}
	if (!in->payload) {
		drop(rx, SRUP_RECEIVE_DROP_SIZE, topic,
		     "payload of %zu bytes exceeds the limit of %zu bytes", in->len,
		     in->payload_limit);
		return false;
	}
	err = srup_msg_decode(in->payload, in->len, &msg, &derr);
	if (err != SRUP_OK) {
		if (err == SRUP_E_TRUNCATED || err == SRUP_E_FIELD_BOUND)
			drop(rx, SRUP_RECEIVE_DROP_DECODE, topic,
			     "decode error: %s in field %s at offset %zu (needs %zu bytes, %zu "
			     "there)",
			     srup_strerror(err), derr.field ? derr.field : "?", derr.offset,
			     derr.need, derr.have);
		else
			drop(rx, SRUP_RECEIVE_DROP_DECODE, topic,
			     "decode error: %s in field %s at offset %zu", srup_strerror(err),
			     derr.field ? derr.field : "?", derr.offset);
		return false;
	}
	type_text = srup_type_name(msg->type);
	srup_id_format16(msg->sender_id, sender);
	if (!srup_type_is_signed(msg->type)) {
		drop(rx, SRUP_RECEIVE_DROP_UNSIGNED, topic, "type %s (0x%02x) carries no signature",
		     type_name(msg->type), msg->type);
		goto out;
	}
	if (msg->sender_id == rx->own_id) {
		/* Both directions share SRUP/<dev>: our own messages come back. */
		say(rx, LOG_DEBUG, "ignored our own %s on %s", type_text, topic);
		rx->stats.ignored_own++;
		goto out;
	}
	key = rx->ops->key_lookup(rx->ctx, msg->sender_id, key_why, sizeof(key_why));
	if (rx->ops->key_noted)
		rx->ops->key_noted(rx->ctx, msg->sender_id, key);
	if (!key) {
		drop(rx, SRUP_RECEIVE_DROP_UNKNOWN_SENDER, topic, "unknown sender key for %s (%s)%s%s",
		     sender, type_text, key_why[0] ? ": " : "", key_why);
		goto out;
	}
	/* Verified already (before the record was written) with this very
	 * key, over these bytes. */
	err = in->verified_with == key ? SRUP_OK : srup_msg_verify(msg, key);
	if (err != SRUP_OK) {
		drop(rx, SRUP_RECEIVE_DROP_SIGNATURE, topic, "bad signature on %s from %s: %s",
		     type_text, sender, srup_strerror(err));
		goto out;
	}
	h = &rx->handlers[msg->type];
	if (!h->fn) {
		drop(rx, SRUP_RECEIVE_DROP_NO_HANDLER, topic,
		     "no handler for type %s (0x%02x) from %s", type_text, msg->type, sender);
		goto out;
	}
	if (h->allowed_sender != SRUP_RECEIVE_ANY_SENDER && h->allowed_sender != msg->sender_id) {
		srup_id_format16(h->allowed_sender, allowed);
		drop(rx, SRUP_RECEIVE_DROP_SENDER_NOT_ALLOWED, topic,
		     "sender %s not allowed to send %s (only %s)", sender, type_text, allowed);
		goto out;
	}
	if (in->recovered_accepted) {
		/* Accepted and committed before a restart; its handler may not
		 * have finished: it runs again (handlers are idempotent). */
		say(rx, LOG_INFO,
		    "%s seq %" PRIu64 " from %s on %s: accepted before a restart, handled again",
		    type_text, msg->sequence_id, sender, topic);
		/* Marked, but the crash may have come before the commit. */
		if (rx->ops->seq_is_fresh(rx->ctx, msg->sender_id, msg->sequence_id) &&
		    rx->ops->seq_stage_accept(rx->ctx, msg->sender_id, msg->sequence_id, detail,
					      sizeof(detail)) != SRUP_SEQ_OK)
			say(rx, LOG_ERR, "cannot record sequence id from %s: %s", sender, detail);
		batch_add(rx, in, msg, h);
		return true;
	}
	if (!rx->ops->seq_is_fresh(rx->ctx, msg->sender_id, msg->sequence_id)) {
		drop(rx, SRUP_RECEIVE_DROP_REPLAY, topic,
		     "replayed sequence id %" PRIu64 " <= last accepted %" PRIu64 " from %s (%s)",
		     msg->sequence_id, rx->ops->seq_last_accepted(rx->ctx, msg->sender_id), sender,
		     type_text);
		goto out;
	}
	/* Last accepted moves only here, after the signature and the sender
	 * were checked; it reaches the disk with the batch's commit. */
	serr = rx->ops->seq_stage_accept(rx->ctx, msg->sender_id, msg->sequence_id, detail,
					 sizeof(detail));
	if (serr != SRUP_SEQ_OK) {
		say(rx, LOG_ERR, "cannot record sequence id from %s: %s: %s", sender,
		    srup_seqstore_strerror(serr), detail);
		drop(rx, SRUP_RECEIVE_DROP_PERSIST, topic,
		     "sequence id %" PRIu64 " from %s could not be recorded", msg->sequence_id,
		     sender);
		goto out;
	}
	batch_add(rx, in, msg, h);
	return true;
out:
	srup_msg_free(msg);
	return false;
}

/* Persist the batch's accepted IDs with one commit, then run its handlers
 * in arrival order. Persisted before acting: a crash after a handler must
 * not let the same message be accepted again, so if the commit fails no
 * handler runs and every message of the batch is dropped (the store unstages
 * their IDs: a retransmission can still be accepted). */
void srup_receive_run(struct srup_receive *rx)
{
	char detail[512] = "";
	enum srup_seq_err serr;
	size_t count = rx->count;

	if (count == 0)
		return;
	if (rx->ops->accepting)
		for (size_t i = 0; i < count; i++)
			rx->ops->accepting(rx->ctx, rx->items[i].owner);
	serr = rx->ops->seq_commit(rx->ctx, detail, sizeof(detail));
	if (serr != SRUP_SEQ_OK)
		say(rx, LOG_ERR, "cannot persist %zu accepted sequence id(s): %s: %s", count,
		    srup_seqstore_strerror(serr), detail);
	/* A handler may feed more messages in: they start a batch of their
	 * own once this one is taken. */
	struct receive_item items[SRUP_RECEIVE_BATCH_MAX];

	memcpy(items, rx->items, count * sizeof(items[0]));
	rx->count = 0;
	if (rx->ops->batch_begin)
		rx->ops->batch_begin(rx->ctx);
	for (size_t i = 0; i < count; i++) {
		struct receive_item *it = &items[i];

		if (serr == SRUP_SEQ_OK) {
			if (rx->ops->committed)
				rx->ops->committed(rx->ctx, it->msg->sender_id, it->msg->sequence_id);
			rx->stats.accepted++;
			rx->ops->deliver(rx->ctx, &it->handler, it->msg, it->topic, it->owner);
		} else {
			char sender[17];

			if (rx->ops->not_committed)
				rx->ops->not_committed(rx->ctx, it->owner);
			srup_id_format16(it->msg->sender_id, sender);
			drop(rx, SRUP_RECEIVE_DROP_PERSIST, it->topic,
			     "sequence id %" PRIu64 " from %s could not be persisted",
			     it->msg->sequence_id, sender);
		}
		srup_msg_free(it->msg);
		rx->ops->release(rx->ctx, it->owner);
	}
	if (rx->ops->batch_end)
		rx->ops->batch_end(rx->ctx);
}

size_t srup_receive_pending(const struct srup_receive *rx)
{
	return rx->count;
}

void srup_receive_get_stats(const struct srup_receive *rx, struct srup_receive_stats *out)
{
	*out = rx->stats;
}
