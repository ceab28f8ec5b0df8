/* The SRUP wire codec: one table describes every message type, and the
 * encoder, the decoder and the pre-sign bytes all walk it (WIRE.md 1-3). */
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "srup.h"
#include "srup_cursor.h"
#include "srup_internal.h"

#define U8_FIELD(n, member) { (n), SRUP_FIELD_U8, offsetof(struct srup_msg, member), 0, false }
#define ID64_FIELD(n, member) { (n), SRUP_FIELD_ID64, offsetof(struct srup_msg, member), 0, false }
#define LV16_FIELD(n, member) \
	{ (n), SRUP_FIELD_LV16, offsetof(struct srup_msg, member), SRUP_LV16_MAX, false }
/* The blob's own guards (WIRE.md G3) are applied when it is opened, so that a
 * signed message with a hostile blob still decodes and is refused there. */
#define BLOB_FIELD(n, member) \
	{ (n), SRUP_FIELD_LV16, offsetof(struct srup_msg, member), SRUP_LV16_MAX, true }

/* Body fields, in wire order (WIRE.md section 3). */
static const struct srup_field_desc initiate_fields[] = {
	LV16_FIELD("url", url),
	LV16_FIELD("digest", digest),
};
static const struct srup_field_desc response_fields[] = {
	U8_FIELD("status", status),
};
static const struct srup_field_desc action_fields[] = {
	U8_FIELD("action_id", action_id),
};
static const struct srup_field_desc data_fields[] = {
	LV16_FIELD("data_id", data_id),
	LV16_FIELD("data", data),
};
static const struct srup_field_desc group_member_fields[] = {
	ID64_FIELD("device_id", device_id),
	LV16_FIELD("group_id", group_id),
};
static const struct srup_field_desc join_command_fields[] = {
	ID64_FIELD("device_id", device_id),
};
static const struct srup_field_desc blob_only_fields[] = {
	BLOB_FIELD("encrypted", encrypted),
};
static const struct srup_field_desc obs_join_request_fields[] = {
	ID64_FIELD("observer_id", observer_id),
};
static const struct srup_field_desc observe_request_fields[] = {
	ID64_FIELD("joining_device_id", joining_device_id),
	BLOB_FIELD("encrypted", encrypted),
};
static const struct srup_field_desc group_destroy_fields[] = {
	LV16_FIELD("group_id", group_id),
};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))
#define SIGNED_TYPE(code, name, fields) { (code), (name), true, N_OF(fields), (fields) }
#define EMPTY_TYPE(code, name) { (code), (name), true, 0, NULL }

/* Indexed by type code. */
static const struct srup_type_desc srup_types[] = {
	{ SRUP_TYPE_GENERIC, "generic", false, 0, NULL },
	SIGNED_TYPE(SRUP_TYPE_INITIATE, "initiate", initiate_fields),
	SIGNED_TYPE(SRUP_TYPE_RESPONSE, "response", response_fields),
	EMPTY_TYPE(SRUP_TYPE_ACTIVATE, "activate"),
	SIGNED_TYPE(SRUP_TYPE_ACTION, "action", action_fields),
	SIGNED_TYPE(SRUP_TYPE_DATA, "data", data_fields),
	EMPTY_TYPE(SRUP_TYPE_ID_REQUEST, "id_request"),
	SIGNED_TYPE(SRUP_TYPE_GROUP_ADD, "group_add", group_member_fields),
	SIGNED_TYPE(SRUP_TYPE_GROUP_DELETE, "group_delete", group_member_fields),
	EMPTY_TYPE(SRUP_TYPE_JOIN_REQUEST, "join_request"),
	SIGNED_TYPE(SRUP_TYPE_JOIN_COMMAND, "join_command", join_command_fields),
	EMPTY_TYPE(SRUP_TYPE_HM_JOIN_REQUEST, "hm_join_request"),
	SIGNED_TYPE(SRUP_TYPE_HM_JOIN_RESPONSE, "hm_join_response", blob_only_fields),
	SIGNED_TYPE(SRUP_TYPE_OBS_JOIN_REQUEST, "obs_join_request", obs_join_request_fields),
	SIGNED_TYPE(SRUP_TYPE_OBS_JOIN_RESPONSE, "obs_join_response", blob_only_fields),
	SIGNED_TYPE(SRUP_TYPE_OBSERVE_REQUEST, "observe_request", observe_request_fields),
	EMPTY_TYPE(SRUP_TYPE_RESIGN_REQUEST, "resign_request"),
	EMPTY_TYPE(SRUP_TYPE_TERMINATE_COMMAND, "terminate_command"),
	EMPTY_TYPE(SRUP_TYPE_DEREGISTER_REQUEST, "deregister_request"),
	EMPTY_TYPE(SRUP_TYPE_DEREGISTER_COMMAND, "deregister_command"),
	SIGNED_TYPE(SRUP_TYPE_GROUP_DESTROY, "group_destroy", group_destroy_fields),
};

_Static_assert(N_OF(srup_types) == SRUP_TYPE_GROUP_DESTROY + 1,
	       "one row per type code 0x00..0x14");

const struct srup_type_desc *srup_type_by_code(uint8_t code)
{
	if (code >= N_OF(srup_types))
		return NULL;
	return &srup_types[code];
}

const struct srup_type_desc *srup_type_by_name(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; i < N_OF(srup_types); i++)
		if (strcmp(srup_types[i].name, name) == 0)
			return &srup_types[i];
	return NULL;
}

const struct srup_field_desc *srup_type_blob_field(const struct srup_type_desc *t)
{
	if (!t)
		return NULL;
	for (size_t i = 0; i < t->n_fields; i++)
		if (t->fields[i].is_blob)
			return &t->fields[i];
	return NULL;
}

/* Field accessors: the table gives the member's offset in struct srup_msg. */
static void *field_ptr(const struct srup_msg *m, const struct srup_field_desc *f,
		       enum srup_field_kind kind)
{
	if (!m || !f || f->kind != kind)
		return NULL;
	return (char *)(uintptr_t)m + f->offset;
}

uint8_t *srup_field_u8(struct srup_msg *m, const struct srup_field_desc *f)
{
	return field_ptr(m, f, SRUP_FIELD_U8);
}

uint64_t *srup_field_id64(struct srup_msg *m, const struct srup_field_desc *f)
{
	return field_ptr(m, f, SRUP_FIELD_ID64);
}

struct srup_bytes *srup_field_bytes(struct srup_msg *m, const struct srup_field_desc *f)
{
	return field_ptr(m, f, SRUP_FIELD_LV16);
}

static const struct srup_bytes *field_bytes_const(const struct srup_msg *m,
						  const struct srup_field_desc *f)
{
	return field_ptr(m, f, SRUP_FIELD_LV16);
}

/* ---- allocation ---- */

struct srup_msg *srup_msg_new(uint8_t type)
{
	struct srup_msg *m = calloc(1, sizeof *m);

	if (!m)
		return NULL;
	m->version = SRUP_VERSION;
	m->type = type;
	return m;
}

static void bytes_free(struct srup_bytes *b)
{
	free(b->data);
	b->data = NULL;
	b->len = 0;
}

void srup_msg_free(struct srup_msg *m)
{
	if (!m)
		return;
	/* The token authorises the exchange it belongs to: wipe it. */
	srup_bytes_clear(&m->token);
	bytes_free(&m->signature);
	bytes_free(&m->url);
	bytes_free(&m->digest);
	bytes_free(&m->data_id);
	bytes_free(&m->data);
	bytes_free(&m->group_id);
	bytes_free(&m->encrypted);
	free(m);
}

enum srup_err srup_bytes_set(struct srup_bytes *b, const void *data, size_t len)
{
	uint8_t *copy = NULL;

	if (!b || (!data && len))
		return SRUP_E_ARG;
	if (len) {
		copy = malloc(len);
		if (!copy)
			return SRUP_E_NOMEM;
		memcpy(copy, data, len);
	}
	free(b->data);
	b->data = copy;
	b->len = len;
	return SRUP_OK;
}

void srup_bytes_clear(struct srup_bytes *b)
{
	if (!b)
		return;
	if (b->data)
		OPENSSL_cleanse(b->data, b->len);
	bytes_free(b);
}

/* ---- decoding ---- */

static enum srup_err decode_fail(struct srup_decode_error *e, enum srup_err code,
				 const char *field, size_t offset, size_t need, size_t have)
{
	e->err = code;
	e->field = field;
	e->offset = offset;
	e->need = need;
	e->have = have;
	return code;
}

static enum srup_err decode_u8(struct srup_cursor *c, const char *name, uint8_t *out,
			       struct srup_decode_error *e)
{
	size_t at = c->pos;

	if (srup_cursor_u8(c, out) != SRUP_OK)
		return decode_fail(e, SRUP_E_TRUNCATED, name, at, 1, srup_cursor_left(c));
	return SRUP_OK;
}

static enum srup_err decode_id64(struct srup_cursor *c, const char *name, uint64_t *out,
				 struct srup_decode_error *e)
{
	size_t at = c->pos;

	if (srup_cursor_u64le(c, out) != SRUP_OK)
		return decode_fail(e, SRUP_E_TRUNCATED, name, at, 8, srup_cursor_left(c));
	return SRUP_OK;
}

/* An lv16 field whose length must lie in min_len..max_len. Errors report the
 * offset of the length prefix and the bytes needed from there. */
static enum srup_err decode_lv16(struct srup_cursor *c, const char *name, size_t min_len,
				 size_t max_len, struct srup_bytes *out,
				 struct srup_decode_error *e)
{
	size_t at = c->pos;
	uint16_t n;
	const uint8_t *p;

	if (srup_cursor_u16be(c, &n) != SRUP_OK)
		return decode_fail(e, SRUP_E_TRUNCATED, name, at, 2, srup_cursor_left(c));
	if (n < min_len)
		return decode_fail(e, SRUP_E_FIELD_BOUND, name, at, min_len, n);
	if (n > max_len)
		return decode_fail(e, SRUP_E_FIELD_BOUND, name, at, max_len, n);
	if (srup_cursor_bytes(c, n, &p) != SRUP_OK)
		return decode_fail(e, SRUP_E_TRUNCATED, name, at, 2 + (size_t)n,
				   2 + srup_cursor_left(c));
	if (srup_bytes_set(out, p, n) != SRUP_OK)
		return decode_fail(e, SRUP_E_NOMEM, name, at, 0, 0);
	return SRUP_OK;
}

static enum srup_err decode_body_field(struct srup_cursor *c, struct srup_msg *m,
				       const struct srup_field_desc *f,
				       struct srup_decode_error *e)
{
	switch (f->kind) {
	case SRUP_FIELD_U8:
		return decode_u8(c, f->name, srup_field_u8(m, f), e);
	case SRUP_FIELD_ID64:
		return decode_id64(c, f->name, srup_field_id64(m, f), e);
	case SRUP_FIELD_LV16:
		return decode_lv16(c, f->name, 0, f->max_len, srup_field_bytes(m, f), e);
	}
	return decode_fail(e, SRUP_E_ARG, f->name, c->pos, 0, 0);
}

static enum srup_err decode_message(struct srup_cursor *c, int expected_type,
				    struct srup_msg **out, struct srup_decode_error *e)
{
	uint8_t version, code;
	const struct srup_type_desc *t;
	struct srup_msg *m;
	enum srup_err rc;

	rc = decode_u8(c, "version", &version, e);
	if (rc)
		return rc;
	if (version != SRUP_VERSION)
		return decode_fail(e, SRUP_E_VERSION, "version", 0, 0, version);
	rc = decode_u8(c, "type", &code, e);
	if (rc)
		return rc;
	t = srup_type_by_code(code);
	if (!t)
		return decode_fail(e, SRUP_E_TYPE, "type", 1, 0, code);
	if (expected_type >= 0 && code != expected_type)
		return decode_fail(e, SRUP_E_WRONG_TYPE, "type", 1, 0, code);

	m = srup_msg_new(code);
	if (!m)
		return decode_fail(e, SRUP_E_NOMEM, "message", 0, 0, 0);
	m->version = version;
	rc = decode_id64(c, "sequence_id", &m->sequence_id, e);
	if (!rc)
		rc = decode_id64(c, "sender_id", &m->sender_id, e);
	/* G7: tokens are 1..65535 bytes. */
	if (!rc)
		rc = decode_lv16(c, "token", 1, SRUP_LV16_MAX, &m->token, e);
	/* G7: a signature is as long as an RSA modulus of 2048..4096 bits. */
	if (!rc && t->is_signed)
		rc = decode_lv16(c, "signature", SRUP_SIG_MIN_BYTES, SRUP_SIG_MAX_BYTES,
				 &m->signature, e);
	for (size_t i = 0; !rc && i < t->n_fields; i++)
		rc = decode_body_field(c, m, &t->fields[i], e);
	/* G1: nothing may follow the last field. */
	if (!rc && srup_cursor_left(c))
		rc = decode_fail(e, SRUP_E_TRAILING, "message", c->pos, 0, srup_cursor_left(c));
	if (rc) {
		srup_msg_free(m);
		return rc;
	}
	*out = m;
	return SRUP_OK;
}

static enum srup_err decode_entry(const uint8_t *buf, size_t len, int expected_type,
				  struct srup_msg **out, struct srup_decode_error *err)
{
	struct srup_decode_error scratch;
	struct srup_cursor c;
	enum srup_err rc;

	if (!err)
		err = &scratch;
	memset(err, 0, sizeof *err);
	if (out)
		*out = NULL;
	if (!out || (!buf && len))
		return decode_fail(err, SRUP_E_ARG, "message", 0, 0, 0);
	srup_cursor_init(&c, buf, len);
	rc = decode_message(&c, expected_type, out, err);
	if (rc == SRUP_OK)
		err->err = SRUP_OK;
	return rc;
}

enum srup_err srup_msg_decode(const uint8_t *buf, size_t len, struct srup_msg **out,
			      struct srup_decode_error *err)
{
	return decode_entry(buf, len, -1, out, err);
}

enum srup_err srup_msg_decode_as(const uint8_t *buf, size_t len, uint8_t expected_type,
				 struct srup_msg **out, struct srup_decode_error *err)
{
	return decode_entry(buf, len, expected_type, out, err);
}

/* ---- encoding and pre-sign bytes ---- */

static enum srup_err check_lv16(const struct srup_bytes *b, size_t min_len, size_t max_len)
{
	if (!b->data && b->len)
		return SRUP_E_ARG;
	/* G6: reject, never truncate to 16 bits. */
	if (b->len < min_len || b->len > max_len)
		return SRUP_E_FIELD_BOUND;
	return SRUP_OK;
}

/* Validate m against its row and compute its length with or without the
 * signature; every bound the decoder enforces is enforced here too, so what
 * we send is something we would accept. */
static enum srup_err measure(const struct srup_msg *m, bool with_signature,
			     const struct srup_type_desc **type_out, size_t *len_out)
{
	const struct srup_type_desc *t;
	enum srup_err rc;
	size_t len = 1 + 1 + 8 + 8 + 2;

	if (!m || !len_out)
		return SRUP_E_ARG;
	if (m->version != SRUP_VERSION)
		return SRUP_E_VERSION;
	t = srup_type_by_code(m->type);
	if (!t)
		return SRUP_E_TYPE;
	rc = check_lv16(&m->token, 1, SRUP_LV16_MAX);
	if (rc)
		return rc;
	len += m->token.len;
	if (with_signature && t->is_signed) {
		if (m->signature.len == 0)
			return SRUP_E_UNSIGNED;
		rc = check_lv16(&m->signature, SRUP_SIG_MIN_BYTES, SRUP_SIG_MAX_BYTES);
		if (rc)
			return rc;
		len += 2 + m->signature.len;
	}
	for (size_t i = 0; i < t->n_fields; i++) {
		const struct srup_field_desc *f = &t->fields[i];

		switch (f->kind) {
		case SRUP_FIELD_U8:
			len += 1;
			break;
		case SRUP_FIELD_ID64:
			len += 8;
			break;
		case SRUP_FIELD_LV16:
			rc = check_lv16(field_bytes_const(m, f), 0, f->max_len);
			if (rc)
				return rc;
			len += 2 + field_bytes_const(m, f)->len;
			break;
		}
	}
	*type_out = t;
	*len_out = len;
	return SRUP_OK;
}

static enum srup_err write_lv16(struct srup_writer *w, const struct srup_bytes *b)
{
	enum srup_err rc = srup_writer_u16be(w, (uint16_t)b->len);

	return rc ? rc : srup_writer_bytes(w, b->data, b->len);
}

/* Serialize a message already checked by measure(). */
static enum srup_err serialize(const struct srup_msg *m, const struct srup_type_desc *t,
			       bool with_signature, struct srup_writer *w)
{
	enum srup_err rc;

	rc = srup_writer_u8(w, m->version);
	if (!rc)
		rc = srup_writer_u8(w, m->type);
	if (!rc)
		rc = srup_writer_u64le(w, m->sequence_id);
	if (!rc)
		rc = srup_writer_u64le(w, m->sender_id);
	if (!rc)
		rc = write_lv16(w, &m->token);
	if (!rc && with_signature && t->is_signed)
		rc = write_lv16(w, &m->signature);
	for (size_t i = 0; !rc && i < t->n_fields; i++) {
		const struct srup_field_desc *f = &t->fields[i];
		const void *p = (const char *)m + f->offset;

		switch (f->kind) {
		case SRUP_FIELD_U8:
			rc = srup_writer_u8(w, *(const uint8_t *)p);
			break;
		case SRUP_FIELD_ID64:
			rc = srup_writer_u64le(w, *(const uint64_t *)p);
			break;
		case SRUP_FIELD_LV16:
			rc = write_lv16(w, p);
			break;
		}
	}
	if (!rc && w->pos != w->cap)
		rc = SRUP_E_ARG;
	return rc;
}

static enum srup_err serialize_alloc(const struct srup_msg *m, bool with_signature,
				     uint8_t **out, size_t *out_len)
{
	const struct srup_type_desc *t = NULL;
	struct srup_writer w;
	enum srup_err rc;
	uint8_t *buf;
	size_t len = 0;

	if (!out || !out_len)
		return SRUP_E_ARG;
	*out = NULL;
	*out_len = 0;
	rc = measure(m, with_signature, &t, &len);
	if (rc)
		return rc;
	buf = malloc(len);
	if (!buf)
		return SRUP_E_NOMEM;
	srup_writer_init(&w, buf, len);
	rc = serialize(m, t, with_signature, &w);
	if (rc) {
		free(buf);
		return rc;
	}
	*out = buf;
	*out_len = len;
	return SRUP_OK;
}

enum srup_err srup_msg_encode(const struct srup_msg *m, uint8_t **out, size_t *out_len)
{
	return serialize_alloc(m, true, out, out_len);
}

enum srup_err srup_presign_length(const struct srup_msg *m, size_t *len)
{
	const struct srup_type_desc *t = NULL;
	enum srup_err rc = measure(m, false, &t, len);

	if (rc == SRUP_OK && !t->is_signed)
		rc = SRUP_E_UNSIGNED;
	return rc;
}

enum srup_err srup_presign_write(const struct srup_msg *m, uint8_t *buf, size_t cap)
{
	const struct srup_type_desc *t = NULL;
	struct srup_writer w;
	size_t len = 0;
	enum srup_err rc = measure(m, false, &t, &len);

	if (rc)
		return rc;
	if (!t->is_signed)
		return SRUP_E_UNSIGNED;
	if (!buf || cap < len)
		return SRUP_E_ARG;
	srup_writer_init(&w, buf, len);
	return serialize(m, t, false, &w);
}

enum srup_err srup_msg_presign(const struct srup_msg *m, uint8_t **out, size_t *out_len)
{
	enum srup_err rc;

	if (!m)
		return SRUP_E_ARG;
	/* GENERIC cannot be signed, so it has no pre-sign bytes. */
	if (srup_type_by_code(m->type) && !srup_type_by_code(m->type)->is_signed)
		return SRUP_E_UNSIGNED;
	rc = serialize_alloc(m, false, out, out_len);
	return rc;
}
