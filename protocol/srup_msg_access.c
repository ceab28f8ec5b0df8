/* The getters, setters and constructors of srup.h: what an application
 * uses instead of struct srup_msg's layout. Each field is found through the
 * codec table, so a setter refuses a field the message's type does not
 * carry, as the encoder would silently leave it out. */
#include <string.h>

#include "srup.h"
#include "srup_msg_layout.h"

#ifndef SRUP_LIBRARY_VERSION
#error "SRUP_LIBRARY_VERSION (the project's version) must be defined by the build"
#endif

const char *srup_version(void)
{
	return SRUP_LIBRARY_VERSION;
}

const char *srup_type_name(uint8_t type)
{
	const struct srup_type_desc *t = srup_type_by_code(type);

	return t ? t->name : NULL;
}

bool srup_type_is_signed(uint8_t type)
{
	const struct srup_type_desc *t = srup_type_by_code(type);

	return t && t->is_signed;
}

/* The body field at this offset of m's type, or NULL if the type has none. */
static const struct srup_field_desc *body_field(const struct srup_msg *m, size_t offset)
{
	const struct srup_type_desc *t = m ? srup_type_by_code(m->type) : NULL;

	if (!t)
		return NULL;
	for (size_t i = 0; i < t->n_fields; i++)
		if (t->fields[i].offset == offset)
			return &t->fields[i];
	return NULL;
}

static const uint8_t *bytes_view(const struct srup_bytes *b, size_t *len)
{
	if (len)
		*len = b ? b->len : 0;
	return b ? b->data : NULL;
}

static enum srup_err bytes_store(struct srup_bytes *b, const void *data, size_t len,
				 size_t max_len)
{
	if (!data && len)
		return SRUP_E_ARG;
	if (len > max_len)
		return SRUP_E_FIELD_BOUND;
	return srup_bytes_set(b, data, len);
}

/* Body fields by member name: a getter of the right type and a setter, both
 * going through body_field so that only the type's own fields answer. */
#define BODY_SCALAR(ctype, member)                                                       \
	ctype srup_msg_get_##member(const struct srup_msg *m)                            \
	{                                                                                \
		return body_field(m, offsetof(struct srup_msg, member)) ? m->member : 0; \
	}                                                                                \
	enum srup_err srup_msg_set_##member(struct srup_msg *m, ctype value)              \
	{                                                                                \
		if (!m)                                                                  \
			return SRUP_E_ARG;                                               \
		if (!body_field(m, offsetof(struct srup_msg, member)))                   \
			return SRUP_E_NO_FIELD;                                          \
		m->member = value;                                                       \
		return SRUP_OK;                                                          \
	}

#define BODY_BYTES(member)                                                                \
	const uint8_t *srup_msg_##member(const struct srup_msg *m, size_t *len)          \
	{                                                                                 \
		const struct srup_field_desc *f =                                         \
			body_field(m, offsetof(struct srup_msg, member));                 \
		return bytes_view(f ? &m->member : NULL, len);                            \
	}                                                                                 \
	enum srup_err srup_msg_set_##member(struct srup_msg *m, const void *data, size_t len) \
	{                                                                                 \
		const struct srup_field_desc *f;                                          \
		if (!m)                                                                   \
			return SRUP_E_ARG;                                                \
		f = body_field(m, offsetof(struct srup_msg, member));                     \
		if (!f)                                                                   \
			return SRUP_E_NO_FIELD;                                           \
		return bytes_store(&m->member, data, len, f->max_len);                    \
	}

BODY_SCALAR(uint8_t, status)
BODY_SCALAR(uint8_t, action_id)
BODY_SCALAR(uint64_t, device_id)
BODY_SCALAR(uint64_t, observer_id)
BODY_SCALAR(uint64_t, joining_device_id)
BODY_BYTES(url)
BODY_BYTES(digest)
BODY_BYTES(data_id)
BODY_BYTES(data)
BODY_BYTES(group_id)
BODY_BYTES(encrypted)

/* ---- the common fields ---- */

uint8_t srup_msg_get_version(const struct srup_msg *m)
{
	return m ? m->version : 0;
}

uint8_t srup_msg_get_type(const struct srup_msg *m)
{
	return m ? m->type : 0;
}

uint64_t srup_msg_get_sequence_id(const struct srup_msg *m)
{
	return m ? m->sequence_id : 0;
}

enum srup_err srup_msg_set_sequence_id(struct srup_msg *m, uint64_t sequence_id)
{
	if (!m)
		return SRUP_E_ARG;
	m->sequence_id = sequence_id;
	return SRUP_OK;
}

uint64_t srup_msg_get_sender_id(const struct srup_msg *m)
{
	return m ? m->sender_id : 0;
}

enum srup_err srup_msg_set_sender_id(struct srup_msg *m, uint64_t sender_id)
{
	if (!m)
		return SRUP_E_ARG;
	m->sender_id = sender_id;
	return SRUP_OK;
}

const uint8_t *srup_msg_token(const struct srup_msg *m, size_t *len)
{
	return bytes_view(m ? &m->token : NULL, len);
}

enum srup_err srup_msg_set_token(struct srup_msg *m, const void *token, size_t len)
{
	if (!m)
		return SRUP_E_ARG;
	if (!token && len)
		return SRUP_E_ARG;
	if (len > SRUP_LV16_MAX)
		return SRUP_E_FIELD_BOUND;
	/* The old token authorised an exchange: wipe it, as srup_msg_free does. */
	srup_bytes_clear(&m->token);
	return srup_bytes_set(&m->token, token, len);
}

const uint8_t *srup_msg_signature(const struct srup_msg *m, size_t *len)
{
	return bytes_view(m ? &m->signature : NULL, len);
}

enum srup_err srup_msg_set_signature(struct srup_msg *m, const void *signature, size_t len)
{
	if (!m)
		return SRUP_E_ARG;
	if (!srup_type_is_signed(m->type))
		return SRUP_E_NO_FIELD;
	return bytes_store(&m->signature, signature, len, SRUP_LV16_MAX);
}

/* ---- constructors ---- */

struct srup_msg *srup_msg_new_response(uint8_t status)
{
	struct srup_msg *m = srup_msg_new(SRUP_TYPE_RESPONSE);

	if (m)
		m->status = status;
	return m;
}

struct srup_msg *srup_msg_new_action(uint8_t action_id)
{
	struct srup_msg *m = srup_msg_new(SRUP_TYPE_ACTION);

	if (m)
		m->action_id = action_id;
	return m;
}

struct srup_msg *srup_msg_new_data(const char *data_id, const void *data, size_t len)
{
	struct srup_msg *m;

	if (!data_id)
		return NULL;
	m = srup_msg_new(SRUP_TYPE_DATA);
	if (m && (srup_msg_set_data_id(m, data_id, strlen(data_id)) != SRUP_OK ||
		  srup_msg_set_data(m, data, len) != SRUP_OK)) {
		srup_msg_free(m);
		return NULL;
	}
	return m;
}
