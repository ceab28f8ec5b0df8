/* The layout of struct srup_msg and the codec table: libsrup's own, not
 * installed. In-tree code that reads or writes a message's fields directly
 * includes this beside srup.h; an application uses the getters and setters
 * of srup.h instead, so that the layout can change without breaking it. */
#ifndef SRUP_MSG_LAYOUT_H
#define SRUP_MSG_LAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "srup.h"

struct srup_msg {
	uint8_t version;  /* SRUP_VERSION on everything this library makes */
	uint8_t type;     /* enum srup_type */
	uint64_t sequence_id;
	uint64_t sender_id;
	struct srup_bytes token;
	struct srup_bytes signature;  /* empty until signed; absent on GENERIC */
	/* Body fields; which ones a type uses is given by its srup_type_desc. */
	uint8_t status;
	uint8_t action_id;
	uint64_t device_id;
	uint64_t observer_id;
	uint64_t joining_device_id;
	struct srup_bytes url;
	struct srup_bytes digest;
	struct srup_bytes data_id;
	struct srup_bytes data;
	struct srup_bytes group_id;
	struct srup_bytes encrypted;  /* the whole blob, as on the wire */
};

/* The codec table: one row per message type, its body fields in wire
 * order. Not exported by libsrup.so: srup-msg, srup_json and the tests
 * get srup_type_by_code and the rest from the static srup_codec_private
 * (the same sources); code that links libsrup.so uses only the fields. */
enum srup_field_kind {
	SRUP_FIELD_U8,    /* one byte */
	SRUP_FIELD_ID64,  /* u64, little-endian on the wire */
	SRUP_FIELD_LV16,  /* u16 big-endian length, then the bytes */
};

struct srup_field_desc {
	const char *name;          /* JSON key: "status", "observer_id", ... */
	enum srup_field_kind kind;
	size_t offset;             /* offsetof(struct srup_msg, ...) */
	size_t max_len;            /* LV16 only: largest accepted length */
	bool is_blob;              /* LV16 holding an encrypted blob */
};

struct srup_type_desc {
	uint8_t code;
	const char *name;          /* JSON "type": "observe_request", ... */
	bool is_signed;            /* false only for GENERIC */
	size_t n_fields;
	const struct srup_field_desc *fields;
};

const struct srup_type_desc *srup_type_by_code(uint8_t code);
const struct srup_type_desc *srup_type_by_name(const char *name);
/* The blob field of a type, or NULL if it carries none. */
const struct srup_field_desc *srup_type_blob_field(const struct srup_type_desc *t);

/* Accessors used by table walkers (srup-msg, tests). */
uint8_t *srup_field_u8(struct srup_msg *m, const struct srup_field_desc *f);
uint64_t *srup_field_id64(struct srup_msg *m, const struct srup_field_desc *f);
struct srup_bytes *srup_field_bytes(struct srup_msg *m, const struct srup_field_desc *f);

#endif
