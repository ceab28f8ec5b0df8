/* The inbound record store: messages received at QoS 1, on disk before the
 * broker gets their PUBACK, until the node is done with them.
 *
 * A record whose topic and payload fit in SRUP_INBOUND_SLOT_CAPACITY bytes
 * (every message of a join does) takes one slot of <state_dir>/inbound/slots,
 * a file of SRUP_INBOUND_SLOT_SIZE-byte slots written with zeros when it is
 * made or grown, so that a record costs one pwrite into blocks the file
 * already has and one fdatasync: no file is created, renamed or removed and
 * no directory synced while messages arrive. A slot holds a header (magic,
 * ID, lengths, checksum), a state word ("accepted"), a note area and the
 * topic and payload; marking a record accepted, noting it and removing it
 * are small writes in place (see srup_inbound_parse_slot for the layout).
 * The file is made at the first write and grows (doubling) up to the
 * store's slot bound; a record too large for a slot, or written while every
 * slot is taken at that bound, is a file of the earlier format instead:
 * <id>.msg (16 lowercase hex digits), renamed <id>.acc once accepted, with
 * its note in <id>.out. Records of either form are read back at start, so a
 * directory an earlier version left is taken over as it is.
 *
 * Every record is durable (fdatasync) before srup_inbound_write returns
 * (srup_inbound_write_staged: once srup_inbound_sync returned).
 * Marking accepted is durable once srup_inbound_sync returned. Removing
 * is not synced (as the unlinks of the file form were not): it survives
 * the process being killed, and a removed record that comes back after a
 * power loss is one whose outcome is decided again or found in its note. IDs run from 1 to SRUP_INBOUND_ID_MAX
 * and only grow, so records sort in arrival order; 0 means "no record".
 *
 * Threads: srup_inbound_write, _write_staged, _sync, _remove,
 * _mark_accepted, _note, _note_sync and _in_slot may be called from any
 * thread; _new, _next and _free from one
 * thread only, and not concurrently with the others for _new and _free.
 * Nothing here knows of MQTT. */
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
/* One slot of the slot file: a 128-byte header, then topic and payload. */
#define SRUP_INBOUND_SLOT_SIZE 4096u
#define SRUP_INBOUND_SLOT_HEADER 128u
#define SRUP_INBOUND_SLOT_CAPACITY (SRUP_INBOUND_SLOT_SIZE - SRUP_INBOUND_SLOT_HEADER)
/* The slot file's bound for srup_inbound_new: 32 MiB. */
#define SRUP_INBOUND_SLOTS_MAX 8192u

struct srup_inbound;

/* Open (creating it if missing) <state_dir>/inbound and list the records a
 * previous run left, for srup_inbound_next. Records whose name carries an ID
 * out of range (0, or above SRUP_INBOUND_ID_MAX) are renamed to the next
 * free IDs, so new IDs never wrap into "no record"; notes without a record
 * are removed. */
enum srup_inbound_err srup_inbound_new(const char *state_dir, struct srup_inbound **out,
				       char *detail, size_t detail_len);
/* As srup_inbound_new with the slot file bounded to max_slots slots (0: no
 * slot file, every record a file of its own). A slot file already larger
 * is read whole and used as it is. */
enum srup_inbound_err srup_inbound_open(const char *state_dir, size_t max_slots,
					struct srup_inbound **out, char *detail, size_t detail_len);
void srup_inbound_free(struct srup_inbound *in);

/* Write a new record (durable before returning) and give its ID. */
enum srup_inbound_err srup_inbound_write(struct srup_inbound *in, const char *topic, size_t tlen,
					 const void *payload, size_t plen, uint64_t *id);
/* As srup_inbound_write, but a record that goes into a slot is only
 * written (it survives the process being killed) and is durable once a
 * later srup_inbound_sync returned; a record in a file of its own is
 * durable at once. Lets the caller hand the message on while the flush
 * runs (srup_node: before the PUBACK, not before the loop sees it). */
enum srup_inbound_err srup_inbound_write_staged(struct srup_inbound *in, const char *topic,
						size_t tlen, const void *payload, size_t plen,
						uint64_t *id);
/* Every slot written so far (staged records, accepted marks, notes)
 * durable: one fdatasync, none if a sync since the last write covered
 * them; and the renames of record files marked accepted (a directory
 * fsync). */
enum srup_inbound_err srup_inbound_sync(struct srup_inbound *in);
/* Remove the record (either state) and its note, if any. */
void srup_inbound_remove(struct srup_inbound *in, uint64_t id);
/* The record is accepted (it passed every check, its ID is committed). */
enum srup_inbound_err srup_inbound_mark_accepted(struct srup_inbound *in, uint64_t id);
/* Attach a note to the record (replaces an earlier one); durable before
 * returning if sync, else once srup_inbound_note_sync returned (notes
 * written together and then synced cost about one flush, not one each). */
enum srup_inbound_err srup_inbound_note(struct srup_inbound *in, uint64_t id, const void *note,
					size_t len, bool sync);
enum srup_inbound_err srup_inbound_note_sync(struct srup_inbound *in, uint64_t id);
/* Whether record id is in the slot file (its note then durable with the
 * next srup_inbound_sync), not a file of its own. */
bool srup_inbound_in_slot(struct srup_inbound *in, uint64_t id);

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

/* One slot as read from the slot file; pointers into the slot's bytes.
 * Layout (integers big-endian):
 *     0  magic "SRUPSL1\0" (eight zero bytes: a free slot)
 *     8  u64 ID             16  u32 topic length    20  u32 payload length
 *    24  u64 FNV-1a of bytes 0-23, the topic and the payload
 *    32  u64 state: 0 received, a value derived from the ID: accepted
 *    40  note area, all zero if none: u32 length, u32 zero, 64 bytes of
 *        note (zero padded), u64 FNV-1a of "SRUPOUT\0", the ID and the
 *        72 bytes before it
 *   120  zero                128  topic, then payload, then zeros */
struct srup_inbound_slot {
	uint64_t id; /* 0: a free slot (nothing else set) */
	bool accepted;
	const uint8_t *topic;
	size_t topic_len;
	const uint8_t *payload;
	size_t payload_len;
	const uint8_t *note;   /* NULL: no note (or a damaged one, below) */
	size_t note_len;
	bool note_damaged;     /* the note area is torn: the record stands without it */
};

/* SRUP_INBOUND_OK with out filled in (out->id 0 for a free slot), or
 * SRUP_INBOUND_E_DAMAGED: len is not SRUP_INBOUND_SLOT_SIZE, the magic is
 * neither ours nor zero, a length runs past the slot, the checksum or the
 * state word does not match, or the ID is out of range. */
enum srup_inbound_err srup_inbound_parse_slot(const uint8_t *buf, size_t len,
					      struct srup_inbound_slot *out);

#endif
