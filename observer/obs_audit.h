/* The audit log: one JSON line per decided thing (an observation's outcome,
 * a device-role command) appended to a file, rotated by size, and the same
 * record as structured journald fields when journald runs.
 *
 * Generic on purpose: a record is a kind and a list of named fields, so
 * every part of the daemon that decides something writes the same way.
 *
 *   {"time":"2026-12-03T09:10:11.123Z","kind":"observation","device":"...",...}
 *   journald: MESSAGE=..., SRUP_KIND=observation, SRUP_DEVICE=..., ...
 *
 * Durability: each record is one write(2) on an O_APPEND descriptor (it
 * survives the daemon being killed). When fsync is on (the default) the
 * owner calls obs_audit_sync shortly after (srup-observerd: within 50 ms,
 * one fdatasync(2) for the records of that time), and rotation and
 * obs_audit_free sync first. A write that fails part-way is cut back, so
 * the file stays whole lines.
 *
 * Secrets never go in: a byte field can be stored only as its SHA-256. */
#ifndef SRUP_OBS_AUDIT_H
#define SRUP_OBS_AUDIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct obs_audit_config {
	const char *path;        /* the live file; rotated ones are path.1 .. path.keep */
	uint64_t max_bytes;      /* rotate before a record would pass this */
	unsigned keep;           /* rotated files kept; 0: the file is started afresh */
	bool fsync;              /* records are synced (obs_audit_sync) */
	bool journal;            /* also sd_journal_send, when journald runs */
};

enum obs_audit_type {
	OBS_AUDIT_STR,           /* .str (JSON string) */
	OBS_AUDIT_UINT,          /* .num (JSON number) */
	OBS_AUDIT_SHA256,        /* .bytes/.len stored as the hex SHA-256 of the bytes */
};

struct obs_audit_field {
	const char *name;        /* lowercase [a-z0-9_]; the journal field is SRUP_<NAME> */
	enum obs_audit_type type;
	const char *str;
	uint64_t num;
	const uint8_t *bytes;
	size_t len;
};

struct obs_audit;

/* Opens (creates, mode 0640) the file. On error returns -1 and writes why
 * to err. */
int obs_audit_open(const struct obs_audit_config *cfg, struct obs_audit **out, char *err,
		   size_t err_len);
void obs_audit_free(struct obs_audit *a);

/* Appends one record (rotating first if needed) and sends it to journald.
 * message is the journal's MESSAGE= (may be NULL). Returns 0, or -1 with
 * err set if the file could not take it (the journal copy is still sent). */
int obs_audit_record(struct obs_audit *a, const char *kind, int priority, const char *message,
		     const struct obs_audit_field *fields, size_t n_fields, char *err,
		     size_t err_len);

/* Whether a record written is not yet synced (fsync on), and the sync:
 * one fdatasync(2) for every record since the last. Returns 0, or -1 with
 * err set (the records stay unsynced, tried again at the next call). */
bool obs_audit_unsynced(const struct obs_audit *a);
int obs_audit_sync(struct obs_audit *a, char *err, size_t err_len);

/* Wall-clock time in milliseconds since the epoch, and as UTC ISO 8601
 * with milliseconds ("2026-12-03T09:10:11.123Z"). */
uint64_t obs_audit_now_unix_ms(void);
void obs_audit_format_time(uint64_t unix_ms, char out[32]);

/* Whether journald is there: JOURNAL_STREAM is set or its socket exists. */
bool obs_audit_journald_present(void);

#endif
