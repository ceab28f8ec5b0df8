/* The inbound record store: messages received at QoS 1, on disk before the
 * broker gets their PUBACK, until the node is done with them.
 *
 * <state_dir>/inbound/ holds one file per message, <id>.msg (16 lowercase
 * hex digits), renamed <id>.acc once the message passed every check and its
 * sequence ID is committed; a decided outcome (a note of at most
 * SRUP_INBOUND_NOTE_MAX bytes the handler wants back after a restart) is
 * <id>.out beside it. Every file is written with fdatasync before the call
 * returns. IDs run from 1 to SRUP_INBOUND_ID_MAX and only grow, so the
 * records of one directory sort in arrival order; 0 means "no record".
 *
 * Threads: srup_inbound_write, _remove, _mark_accepted and _note may be
 * called from any thread; _new, _next and _free from one thread only, and
 * not concurrently with the others for _new and _free. Nothing here knows
 * of MQTT. */
#ifndef SRUP_INBOUND_H
#define SRUP_INBOUND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum srup_inbound_err {
	SRUP_INBOUND_OK = 0,
	SRUP_INBOUND_E_NOMEM,
	SRUP_INBOUND_E_ARG,     /* topic, payload or note over its bound */
	SRUP_INBOUND_E_IO,      /* the directory or a file cannot be used (errno kept) */
	SRUP_INBOUND_E_DAMAGED, /* a record is torn, of another format or not a regular file */
	SRUP_INBOUND_E_IDS,     /* every record ID is used up */
	SRUP_INBOUND_E__COUNT
};

const char *srup_inbound_strerror(enum srup_inbound_err err);

#define SRUP_INBOUND_ID_MAX ((uint64_t)INT64_MAX)
#define SRUP_INBOUND_TOPIC_MAX 65535u         /* MQTT topic names are u16-length strings */
#define SRUP_INBOUND_PAYLOAD_MAX (128u * 1024u) /* the node's payload limit */
#define SRUP_INBOUND_NOTE_MAX 64u
/* Header (magic, topic length, payload length) and checksum trailer. */
#define SRUP_INBOUND_RECORD_OVERHEAD (8u + 4u + 4u + 8u)

struct srup_inbound;

/* Open (creating it if missing) <state_dir>/inbound and list the records a
 * previous run left, for srup_inbound_next. Records whose name carries an ID
 * out of range (0, or above SRUP_INBOUND_ID_MAX) are renamed to the next
 * free IDs, so new IDs never wrap into "no record"; notes without a record
 * are removed. */
enum srup_inbound_err srup_inbound_new(const char *state_dir, struct srup_inbound **out,
				       char *detail, size_t detail_len);
void srup_inbound_free(struct srup_inbound *in);

/* Write a new record (durable before returning) and give its ID. */
enum srup_inbound_err srup_inbound_write(struct srup_inbound *in, const char *topic, size_t tlen,
					 const void *payload, size_t plen, uint64_t *id);
/* Remove the record (either state) and its note, if any. */
void srup_inbound_remove(struct srup_inbound *in, uint64_t id);
/* <id>.msg becomes <id>.acc. */
enum srup_inbound_err srup_inbound_mark_accepted(struct srup_inbound *in, uint64_t id);
/* Attach a note to the record (replaces an earlier one); durable before
 * returning if sync, else once srup_inbound_note_sync returned (notes
 * written together and then synced cost about one flush, not one each). */
enum srup_inbound_err srup_inbound_note(struct srup_inbound *in, uint64_t id, const void *note,
					size_t len, bool sync);
enum srup_inbound_err srup_inbound_note_sync(struct srup_inbound *in, uint64_t id);

/* One record read back at start. */
struct srup_inbound_record {
	uint64_t id;
	bool accepted;
	char *topic; /* topic_len bytes and a NUL (a NUL inside is kept) */
	size_t topic_len;
	uint8_t *payload;
	size_t payload_len;
	uint8_t note[SRUP_INBOUND_NOTE_MAX];
	size_t note_len; /* 0: no note */
};

/* Records listed by srup_inbound_new and not yet read. */
size_t srup_inbound_left(const struct srup_inbound *in);
/* The next listed record, in ID order: SRUP_INBOUND_OK with rec filled in
 * (free with srup_inbound_record_clear), or rec->id == 0 when none is left.
 * A record that cannot be used (damaged, not a regular file) is logged,
 * removed and skipped: it was written by a process that died before the
 * PUBACK, so the broker still has the message. */
enum srup_inbound_err srup_inbound_next(struct srup_inbound *in, struct srup_inbound_record *rec);
void srup_inbound_record_clear(struct srup_inbound_record *rec);

/* The record format, for the reader above and the fuzz target: topic and
 * payload point into buf. */
enum srup_inbound_err srup_inbound_parse(const uint8_t *buf, size_t len, const uint8_t **topic,
					 size_t *tlen, const uint8_t **payload, size_t *plen);
/* A note file's content: the note points into buf. */
enum srup_inbound_err srup_inbound_parse_note(const uint8_t *buf, size_t len, const uint8_t **note,
					      size_t *note_len);

#endif
