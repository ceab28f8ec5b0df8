/* Unit tests of the receive pipeline (device-side/srup_receive.h): every
 * check and the batch commit, with an in-memory sequence store and key
 * store in place of the node's, and no broker. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "srup.h"
#include "srup_msg_layout.h"
#include "srup_keys.h"
#include "srup_receive.h"

#define OWN_ID 0x5eedu
#define SERVER_ID 0x5e4e4u
#define OTHER_ID 0x07e4u     /* known key, not the server */
#define STRANGER_ID 0xbad1u  /* no key at all */
#define DEVICE_ID 0xd1ceu    /* a device a server watches */
#define PAYLOAD_LIMIT 4096u

static EVP_PKEY *server_key, *other_key;

/* What the pipeline did, in order: "a<n>" accepting, "C" commit, "d<n>"
 * deliver, "n<n>" not committed, "r<n>" release, "[" and "]" the batch. */
struct fake {
	/* The sequence store: per peer, last accepted on "disk" and staged. */
	struct {
		uint64_t peer, committed, staged;
	} seq[8];
	size_t n_seq;
	bool fail_commit;
	unsigned commits;

	struct srup_receive *rx;
	char trail[1024];
	unsigned delivered;
	uint64_t delivered_seq[128];
	uint64_t noted_sender;
	bool noted_key;
	enum srup_receive_drop last_drop;
	char last_why[400];
	unsigned drops;
	unsigned handler_calls;
};

/* A message made by the test, alive until the test ends. */
struct input {
	unsigned n;
	uint8_t *wire;
	size_t len;
	char topic[80];
	struct srup_receive_input in;
};

static struct input inputs[256];
static size_t n_inputs;

static void trail(struct fake *f, char what, unsigned n)
{
	size_t at = strlen(f->trail);

	snprintf(f->trail + at, sizeof(f->trail) - at, "%c%u ", what, n);
}

static EVP_PKEY *key_lookup(void *ctx, uint64_t sender, char *why, size_t why_len)
{
	(void)ctx;
	if (sender == SERVER_ID)
		return server_key;
	if (sender == OTHER_ID)
		return other_key;
	snprintf(why, why_len, "no key for %016" PRIx64, sender);
	return NULL;
}

static void key_noted(void *ctx, uint64_t sender, EVP_PKEY *key)
{
	struct fake *f = ctx;

	f->noted_sender = sender;
	f->noted_key = key != NULL;
}

static size_t seq_slot(struct fake *f, uint64_t peer)
{
	for (size_t i = 0; i < f->n_seq; i++)
		if (f->seq[i].peer == peer)
			return i;
	assert_true(f->n_seq < 8);
	f->seq[f->n_seq].peer = peer;
	return f->n_seq++;
}

static bool seq_is_fresh(void *ctx, uint64_t peer, uint64_t seq)
{
	struct fake *f = ctx;
	size_t i = seq_slot(f, peer);
	uint64_t last = f->seq[i].staged > f->seq[i].committed ? f->seq[i].staged
							       : f->seq[i].committed;

	return seq > last;
}

static uint64_t seq_last_accepted(void *ctx, uint64_t peer)
{
	struct fake *f = ctx;
	size_t i = seq_slot(f, peer);

	return f->seq[i].staged > f->seq[i].committed ? f->seq[i].staged : f->seq[i].committed;
}

static enum srup_seq_err seq_stage_accept(void *ctx, uint64_t peer, uint64_t seq, char *detail,
					  size_t detail_len)
{
	struct fake *f = ctx;

	(void)detail;
	(void)detail_len;
	if (!seq_is_fresh(ctx, peer, seq))
		return SRUP_SEQ_E_REPLAY;
	f->seq[seq_slot(f, peer)].staged = seq;
	return SRUP_SEQ_OK;
}

static enum srup_seq_err seq_commit(void *ctx, char *detail, size_t detail_len)
{
	struct fake *f = ctx;

	f->commits++;
	trail(f, 'C', f->commits);
	if (f->fail_commit) {
		snprintf(detail, detail_len, "disk full (test)");
		for (size_t i = 0; i < f->n_seq; i++)
			f->seq[i].staged = 0; /* undone, as srup_seqstore_commit does */
		return SRUP_SEQ_E_IO;
	}
	for (size_t i = 0; i < f->n_seq; i++)
		if (f->seq[i].staged > f->seq[i].committed)
			f->seq[i].committed = f->seq[i].staged;
	for (size_t i = 0; i < f->n_seq; i++)
		f->seq[i].staged = 0;
	return SRUP_SEQ_OK;
}

static void accepting(void *ctx, void *owner)
{
	trail(ctx, 'a', ((struct input *)owner)->n);
}

static void not_committed(void *ctx, void *owner)
{
	trail(ctx, 'n', ((struct input *)owner)->n);
}

static void release(void *ctx, void *owner)
{
	trail(ctx, 'r', ((struct input *)owner)->n);
}

static void batch_begin(void *ctx)
{
	strcat(((struct fake *)ctx)->trail, "[ ");
}

static void batch_end(void *ctx)
{
	strcat(((struct fake *)ctx)->trail, "] ");
}

typedef void (*test_handler)(struct fake *f, const struct srup_msg *msg, const char *topic);

static void on_message(struct fake *f, const struct srup_msg *msg, const char *topic)
{
	(void)topic;
	f->handler_calls++;
	/* Handlers run only once the message's ID is on disk. */
	assert_true(f->seq[seq_slot(f, msg->sender_id)].committed >= msg->sequence_id);
}

static void deliver(void *ctx, const struct srup_receive_handler *h, const struct srup_msg *msg,
		    const char *topic, void *owner)
{
	struct fake *f = ctx;

	assert_ptr_equal(h->user, f);
	trail(f, 'd', ((struct input *)owner)->n);
	if (f->delivered < 128)
		f->delivered_seq[f->delivered] = msg->sequence_id;
	f->delivered++;
	((test_handler)h->fn)(f, msg, topic);
}

static void dropped(void *ctx, enum srup_receive_drop reason, const char *topic, const char *why)
{
	struct fake *f = ctx;

	(void)topic;
	f->drops++;
	f->last_drop = reason;
	snprintf(f->last_why, sizeof(f->last_why), "%s", why);
}

static const struct srup_receive_ops ops = {
	.key_lookup = key_lookup,
	.key_noted = key_noted,
	.seq_is_fresh = seq_is_fresh,
	.seq_last_accepted = seq_last_accepted,
	.seq_stage_accept = seq_stage_accept,
	.seq_commit = seq_commit,
	.accepting = accepting,
	.deliver = deliver,
	.not_committed = not_committed,
	.release = release,
	.batch_begin = batch_begin,
	.batch_end = batch_end,
	.dropped = dropped,
};

static int group_setup(void **state)
{
	(void)state;
	return srup_key_generate(2048, &server_key) == SRUP_KEYS_OK &&
			       srup_key_generate(2048, &other_key) == SRUP_KEYS_OK
		       ? 0
		       : -1;
}

static int group_teardown(void **state)
{
	(void)state;
	EVP_PKEY_free(server_key);
	EVP_PKEY_free(other_key);
	return 0;
}

static struct fake *fake_new(enum srup_receive_role role)
{
	struct fake *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->rx = srup_receive_new(role, OWN_ID, &ops, f);
	assert_non_null(f->rx);
	return f;
}

static int setup_device(void **state)
{
	struct fake *f = fake_new(SRUP_RECEIVE_ROLE_DEVICE);

	/* Actions only from the server; data from anyone with a key. */
	srup_receive_on(f->rx, SRUP_TYPE_ACTION,
			&(struct srup_receive_handler){.fn = (void (*)(void))on_message, .user = f,
						       .allowed_sender = SERVER_ID});
	srup_receive_on(f->rx, SRUP_TYPE_DATA,
			&(struct srup_receive_handler){.fn = (void (*)(void))on_message, .user = f,
						       .allowed_sender = SRUP_RECEIVE_ANY_SENDER});
	*state = f;
	return 0;
}

static int setup_server(void **state)
{
	struct fake *f = fake_new(SRUP_RECEIVE_ROLE_SERVER);

	srup_receive_on(f->rx, SRUP_TYPE_DATA,
			&(struct srup_receive_handler){.fn = (void (*)(void))on_message, .user = f,
						       .allowed_sender = SRUP_RECEIVE_ANY_SENDER});
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fake *f = *state;

	srup_receive_free(f->rx);
	free(f);
	for (size_t i = 0; i < n_inputs; i++)
		free(inputs[i].wire);
	n_inputs = 0;
	return 0;
}

/* A message of type from sender with seq, signed by key (NULL: unsigned),
 * on topic. */
static struct srup_receive_input *make(const char *topic, uint8_t type, uint64_t sender,
				       uint64_t seq, EVP_PKEY *key)
{
	struct input *in;
	struct srup_msg *m = srup_msg_new(type);

	assert_true(n_inputs < sizeof(inputs) / sizeof(inputs[0]));
	in = &inputs[n_inputs];
	*in = (struct input){.n = (unsigned)n_inputs + 1};
	n_inputs++;
	assert_non_null(m);
	m->sender_id = sender;
	m->sequence_id = seq;
	assert_int_equal(srup_bytes_set(&m->token, "tok", 3), SRUP_OK);
	if (type == SRUP_TYPE_DATA || type == SRUP_TYPE_GENERIC) {
		assert_int_equal(srup_bytes_set(&m->data_id, "t", 1), SRUP_OK);
		assert_int_equal(srup_bytes_set(&m->data, "21.5", 4), SRUP_OK);
	}
	if (key)
		assert_int_equal(srup_msg_sign(m, key), SRUP_OK);
	assert_int_equal(srup_msg_encode(m, &in->wire, &in->len), SRUP_OK);
	srup_msg_free(m);
	snprintf(in->topic, sizeof(in->topic), "%s", topic);
	in->in = (struct srup_receive_input){.topic = in->topic, .topic_len = strlen(in->topic),
					     .payload = in->wire, .len = in->len,
					     .payload_limit = PAYLOAD_LIMIT, .owner = in};
	return &in->in;
}

#define OWN_TOPIC "SRUP/5eed"

static struct srup_receive_stats stats(struct fake *f)
{
	struct srup_receive_stats s;

	srup_receive_get_stats(f->rx, &s);
	return s;
}

/* Checked, then refused for reason, with nothing staged or handled. */
static void assert_refused(struct fake *f, const struct srup_receive_input *in,
			   enum srup_receive_drop reason)
{
	unsigned drops = f->drops, before = stats(f).dropped_by[reason];

	assert_false(srup_receive_check(f->rx, in));
	assert_int_equal(f->drops, drops + 1);
	assert_int_equal(f->last_drop, reason);
	assert_int_equal(stats(f).dropped_by[reason], before + 1);
}

/* ---- tests ------------------------------------------------------------ */

static void test_accepted_after_commit(void **state)
{
	struct fake *f = *state;

	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 5,
						   server_key)));
	assert_int_equal(srup_receive_pending(f->rx), 1);
	assert_int_equal(f->delivered, 0); /* not before the commit */
	assert_int_equal(f->noted_sender, SERVER_ID);
	assert_true(f->noted_key);
	srup_receive_run(f->rx);
	assert_string_equal(f->trail, "a1 C1 [ d1 r1 ] ");
	assert_int_equal(f->handler_calls, 1);
	assert_int_equal(f->seq[seq_slot(f, SERVER_ID)].committed, 5);
	assert_int_equal(stats(f).accepted, 1);
	assert_int_equal(stats(f).dropped, 0);
	assert_int_equal(srup_receive_pending(f->rx), 0);
	/* Nothing to commit: no commit. */
	srup_receive_run(f->rx);
	assert_int_equal(f->commits, 1);
}

static void test_replay_refused(void **state)
{
	struct fake *f = *state;

	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 7,
						   server_key)));
	srup_receive_run(f->rx);
	assert_int_equal(f->delivered, 1);

	/* The same message again, and an older one: committed before. */
	assert_refused(f, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 7, server_key),
		       SRUP_RECEIVE_DROP_REPLAY);
	assert_non_null(strstr(f->last_why, "replayed sequence id 7 <= last accepted 7"));
	assert_refused(f, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 3, server_key),
		       SRUP_RECEIVE_DROP_REPLAY);

	/* Within one batch: against the staged ID, before any commit. */
	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 8,
						   server_key)));
	assert_refused(f, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 8, server_key),
		       SRUP_RECEIVE_DROP_REPLAY);
	srup_receive_run(f->rx);
	assert_int_equal(f->delivered, 2);
	assert_int_equal(f->delivered_seq[1], 8);
	assert_int_equal(f->handler_calls, 2);
}

static void test_foreign_sender_refused(void **state)
{
	struct fake *f = *state;

	/* No key for it. */
	assert_refused(f, make(OWN_TOPIC, SRUP_TYPE_ACTION, STRANGER_ID, 1, other_key),
		       SRUP_RECEIVE_DROP_UNKNOWN_SENDER);
	assert_int_equal(f->noted_sender, STRANGER_ID);
	assert_false(f->noted_key);
	/* The key store's reason is in the drop's words. */
	assert_non_null(strstr(f->last_why, "unknown sender key for "));
	assert_non_null(strstr(f->last_why, ": no key for "));
	/* A key, good signature, but only the server may send actions. */
	assert_refused(f, make(OWN_TOPIC, SRUP_TYPE_ACTION, OTHER_ID, 1, other_key),
		       SRUP_RECEIVE_DROP_SENDER_NOT_ALLOWED);
	assert_non_null(strstr(f->last_why, "not allowed to send"));
	/* Claims to be the server, signed by another key. */
	assert_refused(f, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 1, other_key),
		       SRUP_RECEIVE_DROP_SIGNATURE);
	/* Data may come from any sender with a key. */
	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_DATA, OTHER_ID, 1,
						   other_key)));
	srup_receive_run(f->rx);
	assert_int_equal(f->delivered, 1);
	assert_int_equal(stats(f).dropped, 3);
	/* Nothing refused touched the sequence store. */
	assert_int_equal(f->seq[seq_slot(f, SERVER_ID)].committed, 0);
}

static void test_own_message_ignored(void **state)
{
	struct fake *f = *state;

	assert_false(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_DATA, OWN_ID, 1,
						    server_key)));
	assert_int_equal(stats(f).ignored_own, 1);
	assert_int_equal(stats(f).dropped, 0);
	assert_int_equal(f->drops, 0);
}

static void test_wrong_type_refused(void **state)
{
	struct fake *f = *state;

	/* No handler for the type. */
	assert_refused(f, make(OWN_TOPIC, SRUP_TYPE_ID_REQUEST, SERVER_ID, 1, server_key),
		       SRUP_RECEIVE_DROP_NO_HANDLER);
	assert_non_null(strstr(f->last_why, "no handler for type"));
	/* A type that carries no signature. */
	assert_refused(f, make(OWN_TOPIC, SRUP_TYPE_GENERIC, SERVER_ID, 1, NULL),
		       SRUP_RECEIVE_DROP_UNSIGNED);
	/* Not a SRUP message. */
	struct srup_receive_input *junk = make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 1, server_key);
	junk->len = 5;
	assert_refused(f, junk, SRUP_RECEIVE_DROP_DECODE);
	assert_non_null(strstr(f->last_why, "decode error"));
	/* Over the payload limit (the caller did not keep its bytes). */
	struct srup_receive_input *big = make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 1, server_key);
	big->payload = NULL;
	big->len = PAYLOAD_LIMIT + 1;
	assert_refused(f, big, SRUP_RECEIVE_DROP_SIZE);
	assert_int_equal(f->delivered, 0);
	assert_int_equal(srup_receive_pending(f->rx), 0);
}

static void test_wrong_topic_refused(void **state)
{
	struct fake *f = *state;
	struct srup_receive_input *nul;

	/* Another device's topic, a prefix of ours, a subtopic. */
	assert_refused(f, make("SRUP/5eee", SRUP_TYPE_ACTION, SERVER_ID, 1, server_key),
		       SRUP_RECEIVE_DROP_TOPIC);
	assert_refused(f, make("SRUP/5eed/x", SRUP_TYPE_ACTION, SERVER_ID, 1, server_key),
		       SRUP_RECEIVE_DROP_TOPIC);
	/* A NUL inside: "SRUP/5eed" then more. */
	nul = make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 1, server_key);
	nul->topic_len += 2;
	assert_refused(f, nul, SRUP_RECEIVE_DROP_TOPIC);
	assert_string_equal(f->last_why, "topic contains a NUL byte");
	/* A group topic, once added and until removed. */
	assert_refused(f, make("SRUP/groups/g1", SRUP_TYPE_ACTION, SERVER_ID, 1, server_key),
		       SRUP_RECEIVE_DROP_TOPIC);
	assert_int_equal(srup_receive_extra_add(f->rx, "SRUP/groups/g1"), 1);
	assert_int_equal(srup_receive_extra_add(f->rx, "SRUP/groups/g1"), 0);
	assert_true(srup_receive_check(f->rx, make("SRUP/groups/g1", SRUP_TYPE_ACTION, SERVER_ID,
						   1, server_key)));
	srup_receive_run(f->rx);
	assert_int_equal(f->delivered, 1);
	assert_int_equal(srup_receive_extra_remove(f->rx, "SRUP/groups/g1"), 0);
	assert_refused(f, make("SRUP/groups/g1", SRUP_TYPE_ACTION, SERVER_ID, 2, server_key),
		       SRUP_RECEIVE_DROP_TOPIC);
}

static void test_server_topics(void **state)
{
	struct fake *f = *state;
	const uint64_t *watched;

	assert_true(srup_receive_check(f->rx, make("SRUP/servers/5eed/d1ce", SRUP_TYPE_DATA,
						   OTHER_ID, 1, other_key)));
	assert_refused(f, make("SRUP/servers/5eed/", SRUP_TYPE_DATA, OTHER_ID, 2, other_key),
		       SRUP_RECEIVE_DROP_TOPIC);
	assert_refused(f, make("SRUP/servers/5eed/a-b", SRUP_TYPE_DATA, OTHER_ID, 2, other_key),
		       SRUP_RECEIVE_DROP_TOPIC);
	assert_refused(f, make("SRUP/servers/5eee/d1ce", SRUP_TYPE_DATA, OTHER_ID, 2, other_key),
		       SRUP_RECEIVE_DROP_TOPIC);
	/* A device's topic only while it is watched, in canonical form. */
	assert_refused(f, make("SRUP/d1ce", SRUP_TYPE_DATA, OTHER_ID, 2, other_key),
		       SRUP_RECEIVE_DROP_TOPIC);
	assert_int_equal(srup_receive_watch(f->rx, DEVICE_ID), 1);
	assert_int_equal(srup_receive_watch(f->rx, DEVICE_ID), 0);
	assert_int_equal(srup_receive_watched(f->rx, &watched), 1);
	assert_int_equal(watched[0], DEVICE_ID);
	assert_true(srup_receive_check(f->rx, make("SRUP/d1ce", SRUP_TYPE_DATA, OTHER_ID, 2,
						   other_key)));
	assert_true(srup_receive_check(f->rx, make("SRUP/d1ce/x", SRUP_TYPE_DATA, OTHER_ID, 3,
						   other_key)));
	assert_refused(f, make("SRUP/00d1ce", SRUP_TYPE_DATA, OTHER_ID, 4, other_key),
		       SRUP_RECEIVE_DROP_TOPIC);
	srup_receive_run(f->rx);
	assert_int_equal(f->delivered, 3);
}

static void test_bad_signature_refused(void **state)
{
	struct fake *f = *state;
	struct srup_receive_input *in;
	struct input *raw;

	/* One byte of the signed content changed after signing: the token
	 * "tok" is near the start (after version, type, sequence, sender and
	 * the token's length). */
	in = make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 1, server_key);
	raw = in->owner;
	uint8_t *t = memmem(raw->wire, raw->len, "tok", 3);
	assert_non_null(t);
	t[0] = 'T';
	assert_refused(f, in, SRUP_RECEIVE_DROP_SIGNATURE);
	assert_non_null(strstr(f->last_why, "bad signature on"));
	/* The signature itself damaged. */
	in = make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 2, server_key);
	raw = in->owner;
	raw->wire[raw->len - 1] ^= 0x01;
	assert_refused(f, in, SRUP_RECEIVE_DROP_SIGNATURE);
	assert_int_equal(f->seq[seq_slot(f, SERVER_ID)].committed, 0);
	assert_int_equal(f->seq[seq_slot(f, SERVER_ID)].staged, 0);
	/* A refused message did not spend its sequence ID: the genuine one
	 * is accepted. */
	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 2,
						   server_key)));
	srup_receive_run(f->rx);
	assert_int_equal(f->delivered, 1);
}

static void test_batch_commit(void **state)
{
	struct fake *f = *state;

	/* One drained burst: good, bad signature, good from another sender,
	 * replay of the first, good. */
	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 10,
						   server_key)));
	assert_false(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 11,
						    other_key)));
	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_DATA, OTHER_ID, 4,
						   other_key)));
	assert_false(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 10,
						    server_key)));
	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 12,
						   server_key)));
	assert_int_equal(srup_receive_pending(f->rx), 3);
	assert_int_equal(f->commits, 0);
	assert_int_equal(f->seq[seq_slot(f, SERVER_ID)].committed, 0);
	srup_receive_run(f->rx);
	/* One commit, every passed message marked before it, handlers after
	 * it in arrival order; 11 (bad signature) was never staged. */
	assert_string_equal(f->trail, "a1 a3 a5 C1 [ d1 r1 d3 r3 d5 r5 ] ");
	assert_int_equal(f->commits, 1);
	assert_int_equal(f->seq[seq_slot(f, SERVER_ID)].committed, 12);
	assert_int_equal(f->seq[seq_slot(f, OTHER_ID)].committed, 4);
	assert_int_equal(f->delivered, 3);
	assert_int_equal(f->delivered_seq[0], 10);
	assert_int_equal(f->delivered_seq[1], 4);
	assert_int_equal(f->delivered_seq[2], 12);
	assert_int_equal(stats(f).accepted, 3);
	assert_int_equal(stats(f).dropped, 2);
	/* Sequence 11 was skipped by the commit of 12: now a replay. */
	assert_refused(f, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 11, server_key),
		       SRUP_RECEIVE_DROP_REPLAY);
}

static void test_batch_commit_failure(void **state)
{
	struct fake *f = *state;

	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 1,
						   server_key)));
	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 2,
						   server_key)));
	f->fail_commit = true;
	srup_receive_run(f->rx);
	/* No handler ran; every message of the batch was dropped. */
	assert_string_equal(f->trail, "a1 a2 C1 [ n1 r1 n2 r2 ] ");
	assert_int_equal(f->delivered, 0);
	assert_int_equal(stats(f).dropped_by[SRUP_RECEIVE_DROP_PERSIST], 2);
	assert_int_equal(stats(f).accepted, 0);
	/* Unstaged: the retransmission is accepted. */
	f->fail_commit = false;
	f->trail[0] = '\0';
	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 1,
						   server_key)));
	srup_receive_run(f->rx);
	assert_string_equal(f->trail, "a3 C2 [ d3 r3 ] ");
}

static void test_batch_full_commits(void **state)
{
	struct fake *f = *state;

	for (unsigned i = 1; i < SRUP_RECEIVE_BATCH_MAX; i++)
		assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID,
							   i, server_key)));
	assert_int_equal(f->commits, 0);
	assert_int_equal(srup_receive_pending(f->rx), SRUP_RECEIVE_BATCH_MAX - 1);
	/* The batch's last place runs it. */
	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID,
						   SRUP_RECEIVE_BATCH_MAX, server_key)));
	assert_int_equal(f->commits, 1);
	assert_int_equal(f->delivered, SRUP_RECEIVE_BATCH_MAX);
	assert_int_equal(srup_receive_pending(f->rx), 0);
	assert_int_equal(f->seq[seq_slot(f, SERVER_ID)].committed, SRUP_RECEIVE_BATCH_MAX);
}

static void test_recovered_accepted_handled_again(void **state)
{
	struct fake *f = *state;
	struct srup_receive_input *in;

	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 9,
						   server_key)));
	srup_receive_run(f->rx);
	/* Accepted before a restart whose handler may not have finished:
	 * handed over again, not refused as a replay. */
	in = make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 9, server_key);
	in->recovered_accepted = true;
	assert_true(srup_receive_check(f->rx, in));
	srup_receive_run(f->rx);
	assert_int_equal(f->delivered, 2);
	/* Not so for a bad signature. */
	in = make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 9, other_key);
	in->recovered_accepted = true;
	assert_refused(f, in, SRUP_RECEIVE_DROP_SIGNATURE);
}

static void test_verified_key_not_verified_again(void **state)
{
	struct fake *f = *state;
	struct srup_receive_input *in;

	/* The caller verified it with this very key: trusted. */
	in = make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 1, other_key);
	in->verified_with = server_key;
	assert_true(srup_receive_check(f->rx, in));
	/* With another key than the store now gives: verified again. */
	in = make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 2, other_key);
	in->verified_with = other_key;
	assert_refused(f, in, SRUP_RECEIVE_DROP_SIGNATURE);
	srup_receive_run(f->rx);
}

static void test_free_releases_batch(void **state)
{
	struct fake *f = *state;

	assert_true(srup_receive_check(f->rx, make(OWN_TOPIC, SRUP_TYPE_ACTION, SERVER_ID, 1,
						   server_key)));
	srup_receive_free(f->rx);
	f->rx = NULL;
	assert_string_equal(f->trail, "r1 ");
	assert_int_equal(f->delivered, 0);
}

static void test_missing_ops_refused(void **state)
{
	struct srup_receive_ops partial = ops;

	(void)state;
	partial.seq_commit = NULL;
	assert_null(srup_receive_new(SRUP_RECEIVE_ROLE_DEVICE, OWN_ID, &partial, NULL));
	assert_null(srup_receive_new((enum srup_receive_role)7, OWN_ID, &ops, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_accepted_after_commit, setup_device, teardown),
		cmocka_unit_test_setup_teardown(test_replay_refused, setup_device, teardown),
		cmocka_unit_test_setup_teardown(test_foreign_sender_refused, setup_device, teardown),
		cmocka_unit_test_setup_teardown(test_own_message_ignored, setup_device, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_type_refused, setup_device, teardown),
		cmocka_unit_test_setup_teardown(test_wrong_topic_refused, setup_device, teardown),
		cmocka_unit_test_setup_teardown(test_server_topics, setup_server, teardown),
		cmocka_unit_test_setup_teardown(test_bad_signature_refused, setup_device, teardown),
		cmocka_unit_test_setup_teardown(test_batch_commit, setup_device, teardown),
		cmocka_unit_test_setup_teardown(test_batch_commit_failure, setup_device, teardown),
		cmocka_unit_test_setup_teardown(test_batch_full_commits, setup_device, teardown),
		cmocka_unit_test_setup_teardown(test_recovered_accepted_handled_again, setup_device,
						teardown),
		cmocka_unit_test_setup_teardown(test_verified_key_not_verified_again, setup_device,
						teardown),
		cmocka_unit_test_setup_teardown(test_free_releases_batch, setup_device, teardown),
		cmocka_unit_test(test_missing_ops_refused),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
