/* renameat2 comes with _GNU_SOURCE, which the build defines. */
#include "srup_inbound.h"
#include "srup_detail.h"
#include "srup_fnv1a.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "srup_log.h"

#define RECORD_MAGIC "SRUPIN1"  /* 8 bytes with its NUL */
#define NOTE_MAGIC "SRUPOUT"
#define HEADER_LEN (8u + 4u + 4u)
#define NOTE_HEADER_LEN (8u + 4u)
#define TRAILER_LEN 8u
#define RECORD_FILE_MAX \
	(SRUP_INBOUND_RECORD_OVERHEAD + SRUP_INBOUND_TOPIC_MAX + SRUP_INBOUND_PAYLOAD_MAX)
#define NOTE_FILE_MAX (NOTE_HEADER_LEN + SRUP_INBOUND_NOTE_MAX + TRAILER_LEN)

/* The slot file (layout in srup_inbound.h). */
#define SLOTS_FILE "slots"
#define SLOT_MAGIC "SRUPSL1"
#define SLOT_SIZE SRUP_INBOUND_SLOT_SIZE
#define SLOT_OFF_SUM 24u
#define SLOT_OFF_STATE 32u
#define SLOT_OFF_NOTE 40u
#define SLOT_NOTE_AREA (8u + SRUP_INBOUND_NOTE_MAX + 8u)
#define SLOTS_INITIAL 8u /* 32 KiB: state directories may be small */
#define NO_SLOT SIZE_MAX

struct listed {
	uint64_t id;
	bool accepted; /* files only: a slot's state is read with it */
	size_t slot;   /* NO_SLOT: a file */
};

struct srup_inbound {
	int dir;
	int slots;            /* the slot file, -1 until made (or if unusable) */
	bool slots_unusable;  /* every record a file */
	bool create_failed;   /* making the slot file failed (said once) */
	bool grow_failed;     /* growing it failed (said once until it grows) */
	size_t max_slots;
	pthread_mutex_t lock; /* next_id, the slot table and its sync counts */
	uint64_t next_id;
	uint64_t *slot_id;    /* per slot: its record's ID, 0 if free */
	size_t n_slots, n_used, next_free;
	/* Writes into slots not yet synced (records staged by
	 * srup_inbound_write_staged, notes), and how many of them a finished
	 * fdatasync covered: a sync with nothing new is skipped. */
	uint64_t slot_writes, slot_writes_synced;
	bool renames_unsynced; /* a record file renamed (marked accepted) since the last dir sync */
	struct listed *listed; /* found at open, sorted by ID */
	size_t n_listed, next_listed;
};

static const char *const err_names[SRUP_INBOUND_E__COUNT] = {
	[SRUP_INBOUND_OK] = "success",
	[SRUP_INBOUND_E_NOMEM] = "out of memory",
	[SRUP_INBOUND_E_ARG] = "topic, payload or note over its limit",
	[SRUP_INBOUND_E_IO] = "cannot read or write the inbound record",
	[SRUP_INBOUND_E_DAMAGED] = "inbound record damaged",
	[SRUP_INBOUND_E_IDS] = "inbound record IDs used up",
};

const char *srup_inbound_strerror(enum srup_inbound_err err)
{
	return (unsigned)err < SRUP_INBOUND_E__COUNT ? err_names[err] : "unknown error";
}

static void put_u32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put_u64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t get_u64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 0; i < 8; i++)
		v = v << 8 | p[i];
	return v;
}

enum kind { KIND_MSG, KIND_ACC, KIND_OUT };
static const char *const kind_ext[] = {"msg", "acc", "out"};

static void file_name(uint64_t id, enum kind k, char out[32])
{
	snprintf(out, 32, "%016" PRIx64 ".%s", id, kind_ext[k]);
}

/* ---- the formats ------------------------------------------------------ */

enum srup_inbound_err srup_inbound_parse(const uint8_t *buf, size_t len, const uint8_t **topic,
					 size_t *tlen, const uint8_t **payload, size_t *plen)
{
	uint32_t t, p;

	if (!buf || len < SRUP_INBOUND_RECORD_OVERHEAD || len > RECORD_FILE_MAX ||
	    memcmp(buf, RECORD_MAGIC, 8) != 0)
		return SRUP_INBOUND_E_DAMAGED;
	t = get_u32(buf + 8);
	p = get_u32(buf + 12);
	/* Each bounded first: their sum cannot overflow. */
	if (t > SRUP_INBOUND_TOPIC_MAX || p > SRUP_INBOUND_PAYLOAD_MAX ||
	    (size_t)SRUP_INBOUND_RECORD_OVERHEAD + t + p != len)
		return SRUP_INBOUND_E_DAMAGED;
	if (get_u64(buf + len - TRAILER_LEN) != srup_fnv1a(buf, len - TRAILER_LEN, SRUP_FNV1A_OFFSET))
		return SRUP_INBOUND_E_DAMAGED;
	*topic = buf + HEADER_LEN;
	*tlen = t;
	*payload = buf + HEADER_LEN + t;
	*plen = p;
	return SRUP_INBOUND_OK;
}

enum srup_inbound_err srup_inbound_parse_note(const uint8_t *buf, size_t len, const uint8_t **note,
					      size_t *note_len)
{
	uint32_t n;

	if (!buf || len < NOTE_HEADER_LEN + TRAILER_LEN || len > NOTE_FILE_MAX ||
	    memcmp(buf, NOTE_MAGIC, 8) != 0)
		return SRUP_INBOUND_E_DAMAGED;
	n = get_u32(buf + 8);
	if (n > SRUP_INBOUND_NOTE_MAX || (size_t)NOTE_HEADER_LEN + n + TRAILER_LEN != len)
		return SRUP_INBOUND_E_DAMAGED;
	if (get_u64(buf + len - TRAILER_LEN) != srup_fnv1a(buf, len - TRAILER_LEN, SRUP_FNV1A_OFFSET))
		return SRUP_INBOUND_E_DAMAGED;
	*note = buf + NOTE_HEADER_LEN;
	*note_len = n;
	return SRUP_INBOUND_OK;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* The state word of an accepted record: derived from its ID so that a
 * stray value is not taken for it; never 0, "received". */
static uint64_t accepted_word(uint64_t id)
{
	uint8_t b[16];

	memcpy(b, "SRUPACC", 8);
	put_u64(b + 8, id);
	return srup_fnv1a(b, sizeof(b), SRUP_FNV1A_OFFSET) | 1;
}

/* The checksum of a slot's note area (its first 72 bytes) for record id. */
static uint64_t note_area_sum(uint64_t id, const uint8_t *area)
{
	uint8_t b[16];

	memcpy(b, NOTE_MAGIC, 8);
	put_u64(b + 8, id);
	return srup_fnv1a(area, SLOT_NOTE_AREA - 8, srup_fnv1a(b, sizeof(b), SRUP_FNV1A_OFFSET));
}

enum srup_inbound_err srup_inbound_parse_slot(const uint8_t *buf, size_t len,
					      struct srup_inbound_slot *out)
{
	const uint8_t *area;
	uint64_t id, state;
	uint32_t t, p, n;

	memset(out, 0, sizeof(*out));
	if (!buf || len != SLOT_SIZE)
		return SRUP_INBOUND_E_DAMAGED;
	if (all_zero(buf, 8))
		return SRUP_INBOUND_OK;
	if (memcmp(buf, SLOT_MAGIC, 8) != 0)
		return SRUP_INBOUND_E_DAMAGED;
	id = get_u64(buf + 8);
	t = get_u32(buf + 16);
	p = get_u32(buf + 20);
	/* Each bounded first: their sum cannot overflow. */
	if (id == 0 || id > SRUP_INBOUND_ID_MAX || t > SRUP_INBOUND_SLOT_CAPACITY ||
	    p > SRUP_INBOUND_SLOT_CAPACITY || t + p > SRUP_INBOUND_SLOT_CAPACITY)
		return SRUP_INBOUND_E_DAMAGED;
	if (get_u64(buf + SLOT_OFF_SUM) !=
	    srup_fnv1a(buf + SRUP_INBOUND_SLOT_HEADER, (size_t)t + p,
		       srup_fnv1a(buf, 24, SRUP_FNV1A_OFFSET)))
		return SRUP_INBOUND_E_DAMAGED;
	state = get_u64(buf + SLOT_OFF_STATE);
	if (state != 0 && state != accepted_word(id))
		return SRUP_INBOUND_E_DAMAGED;
	out->id = id;
	out->accepted = state != 0;
	out->topic = buf + SRUP_INBOUND_SLOT_HEADER;
	out->topic_len = t;
	out->payload = buf + SRUP_INBOUND_SLOT_HEADER + t;
	out->payload_len = p;
	area = buf + SLOT_OFF_NOTE;
	if (all_zero(area, SLOT_NOTE_AREA))
		return SRUP_INBOUND_OK;
	n = get_u32(area);
	if (n > SRUP_INBOUND_NOTE_MAX || get_u32(area + 4) != 0 ||
	    !all_zero(area + 8 + n, SRUP_INBOUND_NOTE_MAX - n) ||
	    get_u64(area + SLOT_NOTE_AREA - 8) != note_area_sum(id, area)) {
		out->note_damaged = true;
		return SRUP_INBOUND_OK;
	}
	out->note = area + 8;
	out->note_len = n;
	return SRUP_INBOUND_OK;
}

/* ---- the slot table (in->lock held) ------------------------------------ */

static size_t slot_find(const struct srup_inbound *in, uint64_t id)
{
	for (size_t i = 0; i < in->n_slots; i++)
		if (in->slot_id[i] == id)
			return i;
	return NO_SLOT;
}

static int pwrite_all(int fd, const void *buf, size_t len, off_t at)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t got = pwrite(fd, p, len, at);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0) {
			if (got == 0)
				errno = ENOSPC;
			return -1;
		}
		p += got;
		len -= (size_t)got;
		at += got;
	}
	return 0;
}

/* Extend the slot file to n slots, written with zeros (blocks the file
 * owns, so a record later costs no allocation) and synced with its size. */
static bool slots_grow(struct srup_inbound *in, size_t n)
{
	static const uint8_t zeros[16 * SLOT_SIZE];
	uint64_t *grown;
	off_t at = (off_t)in->n_slots * SLOT_SIZE, end = (off_t)n * SLOT_SIZE;

	grown = realloc(in->slot_id, n * sizeof(*grown));
	if (!grown)
		return false;
	in->slot_id = grown;
	while (at < end) {
		size_t len = end - at < (off_t)sizeof(zeros) ? (size_t)(end - at) : sizeof(zeros);

		if (pwrite_all(in->slots, zeros, len, at) != 0)
			break;
		at += (off_t)len;
	}
	if (at < end || fdatasync(in->slots) != 0) {
		int saved = errno;

		/* The space given back (a full disk is the usual cause). */
		if (ftruncate(in->slots, (off_t)in->n_slots * SLOT_SIZE) != 0 && !in->grow_failed)
			srup_log(LOG_WARNING, "inbound slot file: cannot give back the space of a "
				 "failed growth: %s", strerror(errno));
		errno = saved;
		if (!in->grow_failed)
			srup_log(LOG_ERR, "inbound slot file: cannot grow it to %zu slots: %s; "
				 "records that find no slot are files of their own", n,
				 strerror(errno));
		in->grow_failed = true;
		return false;
	}
	in->grow_failed = false;
	memset(in->slot_id + in->n_slots, 0, (n - in->n_slots) * sizeof(*grown));
	in->n_slots = n;
	return true;
}

/* Make the slot file: created, grown to its first size, and its directory
 * entry synced, before any record is written into it. */
static void slots_create(struct srup_inbound *in)
{
	size_t first = in->max_slots < SLOTS_INITIAL ? in->max_slots : SLOTS_INITIAL;

	in->slots = openat(in->dir, SLOTS_FILE, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
			   0600);
	if (in->slots >= 0 && slots_grow(in, first) && fsync(in->dir) == 0) {
		in->create_failed = false;
		return;
	}
	/* Tried again at the next record (the disk may have room again);
	 * said once. */
	if (!in->create_failed)
		srup_log(LOG_ERR, "inbound slot file: cannot make it: %s; records are files of "
			 "their own until it can be made", strerror(errno));
	in->create_failed = true;
	if (in->slots >= 0) {
		close(in->slots);
		unlinkat(in->dir, SLOTS_FILE, 0);
	}
	in->slots = -1;
	in->n_slots = 0;
}

/* A free slot taken for id, the file made or grown if need be; NO_SLOT if
 * none can be had. */
static size_t slot_take(struct srup_inbound *in, uint64_t id)
{
	if (in->slots_unusable || in->max_slots == 0)
		return NO_SLOT;
	if (in->slots < 0)
		slots_create(in);
	if (in->slots < 0)
		return NO_SLOT;
	if (in->n_used == in->n_slots) {
		size_t n = in->n_slots ? in->n_slots * 2 : SLOTS_INITIAL;

		if (n < in->n_slots || n > in->max_slots) /* the bound, or overflow */
			n = in->max_slots;
		if (n <= in->n_slots || !slots_grow(in, n))
			return NO_SLOT;
	}
	/* Round the ring from where the last search ended. */
	for (size_t k = 0; k < in->n_slots; k++) {
		size_t i = (in->next_free + k) % in->n_slots;

		if (in->slot_id[i] == 0) {
			in->slot_id[i] = id;
			in->n_used++;
			in->next_free = (i + 1) % in->n_slots;
			return i;
		}
	}
	return NO_SLOT;
}

/* The slot marked free on disk (its magic zeroed, not synced), then in the
 * table: in that order, or a record written into it meanwhile would lose
 * its magic. */
static void slot_release(struct srup_inbound *in, size_t slot)
{
	static const uint8_t zero[8];

	if (pwrite_all(in->slots, zero, sizeof(zero), (off_t)slot * SLOT_SIZE) != 0)
		srup_log(LOG_WARNING, "inbound slot %zu: cannot mark it free: %s", slot,
			 strerror(errno));
	if (in->slot_id[slot]) {
		in->slot_id[slot] = 0;
		in->n_used--;
	}
}

/* ---- writing ---------------------------------------------------------- */

/* iov written to name (created or truncated), fdatasync'd if sync; removed
 * again if any step fails. */
static enum srup_inbound_err write_durable(struct srup_inbound *in, const char *name,
					   struct iovec *iov, int iovcnt, bool sync)
{
	ssize_t want = 0, got;
	int fd, saved;

	for (int i = 0; i < iovcnt; i++)
		want += (ssize_t)iov[i].iov_len;
	fd = openat(in->dir, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0)
		return SRUP_INBOUND_E_IO;
	got = writev(fd, iov, iovcnt);
	if (got == want && (!sync || fdatasync(fd) == 0)) {
		close(fd);
		return SRUP_INBOUND_OK;
	}
	saved = got >= 0 && got != want ? ENOSPC : errno;
	close(fd);
	unlinkat(in->dir, name, 0);
	errno = saved;
	return SRUP_INBOUND_E_IO;
}

/* Flush the slot file; what was written into slots before the call is
 * durable after. */
static enum srup_inbound_err slots_sync(struct srup_inbound *in)
{
	uint64_t upto;

	pthread_mutex_lock(&in->lock);
	upto = in->slot_writes;
	pthread_mutex_unlock(&in->lock);
	if (fdatasync(in->slots) != 0)
		return SRUP_INBOUND_E_IO;
	pthread_mutex_lock(&in->lock);
	if (in->slot_writes_synced < upto)
		in->slot_writes_synced = upto;
	pthread_mutex_unlock(&in->lock);
	return SRUP_INBOUND_OK;
}

/* The whole slot in one write (no byte of an earlier record left in it);
 * then, if sync, one fdatasync: the file's blocks and size are already on
 * disk. A failed write frees the slot; a failed sync too if sync. */
static enum srup_inbound_err slot_write(struct srup_inbound *in, size_t slot, uint64_t id,
					const char *topic, size_t tlen, const void *payload,
					size_t plen, bool sync)
{
	static const uint8_t zeros[SLOT_SIZE];
	uint8_t head[SRUP_INBOUND_SLOT_HEADER] = {0};
	struct iovec iov[4] = {
		{head, sizeof(head)},
		{(void *)topic, tlen},
		{(void *)payload, plen},
		{(void *)zeros, SRUP_INBOUND_SLOT_CAPACITY - tlen - plen},
	};
	ssize_t got;
	int saved;

	memcpy(head, SLOT_MAGIC, 8);
	put_u64(head + 8, id);
	put_u32(head + 16, (uint32_t)tlen);
	put_u32(head + 20, (uint32_t)plen);
	put_u64(head + SLOT_OFF_SUM,
		srup_fnv1a(payload, plen, srup_fnv1a(topic, tlen, srup_fnv1a(head, 24, SRUP_FNV1A_OFFSET))));
	do
		got = pwritev(in->slots, iov, 4, (off_t)slot * SLOT_SIZE);
	while (got < 0 && errno == EINTR);
	if (got == (ssize_t)SLOT_SIZE && !sync) {
		pthread_mutex_lock(&in->lock);
		in->slot_writes++;
		pthread_mutex_unlock(&in->lock);
		return SRUP_INBOUND_OK;
	}
	if (got == (ssize_t)SLOT_SIZE && slots_sync(in) == SRUP_INBOUND_OK)
		return SRUP_INBOUND_OK;
	saved = got >= 0 && got != (ssize_t)SLOT_SIZE ? ENOSPC : errno;
	pthread_mutex_lock(&in->lock);
	slot_release(in, slot);
	pthread_mutex_unlock(&in->lock);
	errno = saved;
	return SRUP_INBOUND_E_IO;
}

static enum srup_inbound_err record_write(struct srup_inbound *in, const char *topic,
					  size_t tlen, const void *payload, size_t plen,
					  uint64_t *id, bool *durable)
{
	uint8_t head[HEADER_LEN], tail[TRAILER_LEN];
	struct iovec iov[4];
	char name[32];
	uint64_t new_id;
	size_t slot = NO_SLOT;
	enum srup_inbound_err e;

	*id = 0;
	if (tlen > SRUP_INBOUND_TOPIC_MAX || plen > SRUP_INBOUND_PAYLOAD_MAX)
		return SRUP_INBOUND_E_ARG;
	pthread_mutex_lock(&in->lock);
	new_id = in->next_id;
	if (new_id <= SRUP_INBOUND_ID_MAX) {
		in->next_id++;
		if (tlen + plen <= SRUP_INBOUND_SLOT_CAPACITY)
			slot = slot_take(in, new_id);
	}
	pthread_mutex_unlock(&in->lock);
	if (new_id > SRUP_INBOUND_ID_MAX)
		return SRUP_INBOUND_E_IDS;
	if (slot != NO_SLOT) {
		e = slot_write(in, slot, new_id, topic, tlen, payload, plen, *durable);
		if (e == SRUP_INBOUND_OK)
			*id = new_id;
		return e;
	}
	*durable = true; /* a file of its own is synced with its directory entry */

	memcpy(head, RECORD_MAGIC, 8);
	put_u32(head + 8, (uint32_t)tlen);
	put_u32(head + 12, (uint32_t)plen);
	put_u64(tail, srup_fnv1a(payload, plen,
				 srup_fnv1a(topic, tlen,
					    srup_fnv1a(head, sizeof(head), SRUP_FNV1A_OFFSET))));
	iov[0] = (struct iovec){head, sizeof(head)};
	iov[1] = (struct iovec){(void *)topic, tlen};
	iov[2] = (struct iovec){(void *)payload, plen};
	iov[3] = (struct iovec){tail, sizeof(tail)};
	file_name(new_id, KIND_MSG, name);
	e = write_durable(in, name, iov, 4, true);
	if (e == SRUP_INBOUND_OK)
		*id = new_id;
	return e;
}

enum srup_inbound_err srup_inbound_write(struct srup_inbound *in, const char *topic, size_t tlen,
					 const void *payload, size_t plen, uint64_t *id)
{
	bool durable = true;

	return record_write(in, topic, tlen, payload, plen, id, &durable);
}

enum srup_inbound_err srup_inbound_write_staged(struct srup_inbound *in, const char *topic,
						size_t tlen, const void *payload, size_t plen,
						uint64_t *id)
{
	bool durable = false;

	return record_write(in, topic, tlen, payload, plen, id, &durable);
}

enum srup_inbound_err srup_inbound_sync(struct srup_inbound *in)
{
	bool synced, renamed;

	if (!in)
		return SRUP_INBOUND_E_ARG;
	pthread_mutex_lock(&in->lock);
	synced = in->slots < 0 || in->slot_writes_synced == in->slot_writes;
	renamed = in->renames_unsynced;
	in->renames_unsynced = false;
	pthread_mutex_unlock(&in->lock);
	if (renamed && fsync(in->dir) != 0) {
		pthread_mutex_lock(&in->lock);
		in->renames_unsynced = true; /* tried again at the next call */
		pthread_mutex_unlock(&in->lock);
		return SRUP_INBOUND_E_IO;
	}
	return synced ? SRUP_INBOUND_OK : slots_sync(in);
}

/* The note area of slot for record id, written in place (in->lock held). */
static enum srup_inbound_err slot_note(struct srup_inbound *in, size_t slot, uint64_t id,
				       const void *note, size_t len)
{
	uint8_t area[SLOT_NOTE_AREA] = {0};

	put_u32(area, (uint32_t)len);
	if (len)
		memcpy(area + 8, note, len);
	put_u64(area + SLOT_NOTE_AREA - 8, note_area_sum(id, area));
	if (pwrite_all(in->slots, area, sizeof(area), (off_t)slot * SLOT_SIZE + SLOT_OFF_NOTE) != 0)
		return SRUP_INBOUND_E_IO;
	in->slot_writes++;
	return SRUP_INBOUND_OK;
}

enum srup_inbound_err srup_inbound_note(struct srup_inbound *in, uint64_t id, const void *note,
					size_t len, bool sync)
{
	uint8_t head[NOTE_HEADER_LEN], tail[TRAILER_LEN];
	struct iovec iov[3];
	char name[32];
	size_t slot;
	enum srup_inbound_err e;

	if (!in || id == 0 || id > SRUP_INBOUND_ID_MAX || len > SRUP_INBOUND_NOTE_MAX ||
	    (len && !note))
		return SRUP_INBOUND_E_ARG;
	/* Under the lock: the slot cannot be freed and taken by another
	 * record meanwhile. */
	pthread_mutex_lock(&in->lock);
	slot = slot_find(in, id);
	e = slot != NO_SLOT ? slot_note(in, slot, id, note, len) : SRUP_INBOUND_OK;
	pthread_mutex_unlock(&in->lock);
	if (slot != NO_SLOT)
		return e == SRUP_INBOUND_OK && sync ? slots_sync(in) : e;

	memcpy(head, NOTE_MAGIC, 8);
	put_u32(head + 8, (uint32_t)len);
	put_u64(tail, srup_fnv1a(note, len, srup_fnv1a(head, sizeof(head), SRUP_FNV1A_OFFSET)));
	iov[0] = (struct iovec){head, sizeof(head)};
	iov[1] = (struct iovec){(void *)note, len};
	iov[2] = (struct iovec){tail, sizeof(tail)};
	file_name(id, KIND_OUT, name);
	return write_durable(in, name, iov, 3, sync);
}

bool srup_inbound_in_slot(struct srup_inbound *in, uint64_t id)
{
	bool in_slot;

	if (!in || id == 0)
		return false;
	pthread_mutex_lock(&in->lock);
	in_slot = slot_find(in, id) != NO_SLOT;
	pthread_mutex_unlock(&in->lock);
	return in_slot;
}

enum srup_inbound_err srup_inbound_note_sync(struct srup_inbound *in, uint64_t id)
{
	char name[32];
	int fd, rc;
	bool in_slot, synced;

	if (!in || id == 0)
		return SRUP_INBOUND_E_ARG;
	pthread_mutex_lock(&in->lock);
	in_slot = slot_find(in, id) != NO_SLOT;
	synced = in->slot_writes_synced == in->slot_writes;
	pthread_mutex_unlock(&in->lock);
	if (in_slot)
		return synced ? SRUP_INBOUND_OK : slots_sync(in);

	file_name(id, KIND_OUT, name);
	fd = openat(in->dir, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0)
		return SRUP_INBOUND_E_IO;
	rc = fdatasync(fd);
	close(fd);
	return rc == 0 ? SRUP_INBOUND_OK : SRUP_INBOUND_E_IO;
}

void srup_inbound_remove(struct srup_inbound *in, uint64_t id)
{
	char name[32];
	size_t slot;

	if (!in || id == 0)
		return;
	pthread_mutex_lock(&in->lock);
	slot = slot_find(in, id);
	if (slot != NO_SLOT)
		slot_release(in, slot);
	pthread_mutex_unlock(&in->lock);
	if (slot != NO_SLOT)
		return;
	/* The record first: a note left alone is removed at the next start,
	 * while a record left without its note would be decided again. */
	file_name(id, KIND_MSG, name);
	if (unlinkat(in->dir, name, 0) != 0 && errno == ENOENT) {
		file_name(id, KIND_ACC, name);
		unlinkat(in->dir, name, 0);
	}
	file_name(id, KIND_OUT, name);
	unlinkat(in->dir, name, 0);
}

enum srup_inbound_err srup_inbound_mark_accepted(struct srup_inbound *in, uint64_t id)
{
	char from[32], to[32];
	uint8_t word[8];
	size_t slot;
	int rc = 0;

	if (!in || id == 0)
		return SRUP_INBOUND_E_ARG;
	put_u64(word, accepted_word(id));
	pthread_mutex_lock(&in->lock);
	slot = slot_find(in, id);
	if (slot != NO_SLOT) {
		rc = pwrite_all(in->slots, word, sizeof(word), (off_t)slot * SLOT_SIZE + SLOT_OFF_STATE);
		in->slot_writes++;
	}
	pthread_mutex_unlock(&in->lock);
	if (slot != NO_SLOT) {
		if (rc == 0)
			return SRUP_INBOUND_OK;
		srup_log(LOG_ERR, "inbound record %016" PRIx64 " (slot %zu): cannot mark it "
			 "accepted: %s", id, slot, strerror(errno));
		return SRUP_INBOUND_E_IO;
	}

	file_name(id, KIND_MSG, from);
	file_name(id, KIND_ACC, to);
	if (renameat(in->dir, from, in->dir, to) != 0) {
		srup_log(LOG_ERR, "inbound record %s: cannot mark it accepted: %s", from,
			 strerror(errno));
		return SRUP_INBOUND_E_IO;
	}
	pthread_mutex_lock(&in->lock);
	in->renames_unsynced = true;
	pthread_mutex_unlock(&in->lock);
	return SRUP_INBOUND_OK;
}

/* ---- reading back ----------------------------------------------------- */

/* The whole of a small file, opened without following a symlink and
 * without waiting on a FIFO; anything but a regular file of at most max
 * bytes is E_DAMAGED (ENOENT: E_IO with errno kept). */
static enum srup_inbound_err read_small(int dir, const char *name, size_t max, uint8_t **out,
					size_t *len)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t have = 0;
	int fd = openat(dir, name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);

	*out = NULL;
	if (fd < 0)
		return errno == ELOOP ? SRUP_INBOUND_E_DAMAGED : SRUP_INBOUND_E_IO;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < 0 ||
	    (uint64_t)st.st_size > max) {
		close(fd);
		return SRUP_INBOUND_E_DAMAGED;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		close(fd);
		return SRUP_INBOUND_E_NOMEM;
	}
	while (have < (size_t)st.st_size) {
		ssize_t got = read(fd, buf + have, (size_t)st.st_size - have);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		have += (size_t)got;
	}
	close(fd);
	if (have != (size_t)st.st_size) {
		free(buf);
		return SRUP_INBOUND_E_DAMAGED;
	}
	*out = buf;
	*len = have;
	return SRUP_INBOUND_OK;
}

void srup_inbound_record_clear(struct srup_inbound_record *rec)
{
	if (!rec)
		return;
	free(rec->topic);
	free(rec->payload);
	memset(rec, 0, sizeof(*rec));
}

size_t srup_inbound_left(const struct srup_inbound *in)
{
	return in ? in->n_listed - in->next_listed : 0;
}

static void read_note(struct srup_inbound *in, struct srup_inbound_record *rec)
{
	char name[32];
	uint8_t *buf;
	const uint8_t *note;
	size_t len, note_len;
	enum srup_inbound_err e;

	file_name(rec->id, KIND_OUT, name);
	e = read_small(in->dir, name, NOTE_FILE_MAX, &buf, &len);
	if (e == SRUP_INBOUND_E_IO && errno == ENOENT)
		return;
	if (e == SRUP_INBOUND_OK)
		e = srup_inbound_parse_note(buf, len, &note, &note_len);
	if (e == SRUP_INBOUND_OK) {
		memcpy(rec->note, note, note_len);
		rec->note_len = note_len;
	} else {
		/* Torn: the process died while writing it, so before what it
		 * decided could be sent. */
		srup_log(LOG_WARNING, "inbound note %s: %s; removed", name,
			 srup_inbound_strerror(e));
		unlinkat(in->dir, name, 0);
	}
	free(buf);
}

/* The record in l's slot, read again (it was parsed when listed): rec->id
 * stays 0 if it cannot be used, its slot then freed. */
static enum srup_inbound_err slot_next(struct srup_inbound *in, const struct listed *l,
				       struct srup_inbound_record *rec)
{
	static const uint8_t zero_note[SLOT_NOTE_AREA];
	struct srup_inbound_slot v;
	uint8_t *buf = malloc(SLOT_SIZE);
	ssize_t got;
	enum srup_inbound_err e;

	if (!buf)
		return SRUP_INBOUND_E_NOMEM;
	do
		got = pread(in->slots, buf, SLOT_SIZE, (off_t)l->slot * SLOT_SIZE);
	while (got < 0 && errno == EINTR);
	e = got == (ssize_t)SLOT_SIZE ? srup_inbound_parse_slot(buf, SLOT_SIZE, &v)
				      : got < 0 ? SRUP_INBOUND_E_IO : SRUP_INBOUND_E_DAMAGED;
	if (e == SRUP_INBOUND_OK && v.id != l->id)
		e = SRUP_INBOUND_E_DAMAGED;
	if (e != SRUP_INBOUND_OK) {
		srup_log(LOG_WARNING, "inbound record %016" PRIx64 " (slot %zu): %s (%s); freed",
			 l->id, l->slot, srup_inbound_strerror(e),
			 e == SRUP_INBOUND_E_IO ? strerror(errno) : "the broker still has it");
		pthread_mutex_lock(&in->lock);
		slot_release(in, l->slot);
		pthread_mutex_unlock(&in->lock);
		free(buf);
		return SRUP_INBOUND_OK;
	}
	rec->topic = malloc(v.topic_len + 1);
	rec->payload = malloc(v.payload_len ? v.payload_len : 1);
	if (!rec->topic || !rec->payload) {
		free(buf);
		srup_inbound_record_clear(rec);
		return SRUP_INBOUND_E_NOMEM;
	}
	memcpy(rec->topic, v.topic, v.topic_len);
	rec->topic[v.topic_len] = '\0';
	rec->topic_len = v.topic_len;
	memcpy(rec->payload, v.payload, v.payload_len);
	rec->payload_len = v.payload_len;
	rec->accepted = v.accepted;
	if (v.note) {
		memcpy(rec->note, v.note, v.note_len);
		rec->note_len = v.note_len;
	} else if (v.note_damaged) {
		/* Torn: the process died while writing it, so before what it
		 * decided could be sent. */
		srup_log(LOG_WARNING, "inbound note of record %016" PRIx64 " (slot %zu): %s; "
			 "removed", l->id, l->slot, srup_inbound_strerror(SRUP_INBOUND_E_DAMAGED));
		pthread_mutex_lock(&in->lock);
		pwrite_all(in->slots, zero_note, sizeof(zero_note),
			   (off_t)l->slot * SLOT_SIZE + SLOT_OFF_NOTE);
		pthread_mutex_unlock(&in->lock);
	}
	rec->id = l->id;
	free(buf);
	return SRUP_INBOUND_OK;
}

enum srup_inbound_err srup_inbound_next(struct srup_inbound *in, struct srup_inbound_record *rec)
{
	memset(rec, 0, sizeof(*rec));
	while (in && in->next_listed < in->n_listed) {
		const struct listed *l = &in->listed[in->next_listed];
		const uint8_t *topic, *payload;
		size_t len, tlen, plen;
		uint8_t *buf;
		char name[32];
		enum srup_inbound_err e;

		if (l->id == 0) {
			in->next_listed++;
			continue;
		}
		if (l->slot != NO_SLOT) {
			e = slot_next(in, l, rec);
			if (e == SRUP_INBOUND_E_NOMEM)
				return e;
			in->next_listed++;
			if (rec->id)
				return SRUP_INBOUND_OK;
			continue;
		}
		file_name(l->id, l->accepted ? KIND_ACC : KIND_MSG, name);
		e = read_small(in->dir, name, RECORD_FILE_MAX, &buf, &len);
		if (e == SRUP_INBOUND_E_NOMEM)
			return e;
		in->next_listed++;
		if (e == SRUP_INBOUND_E_IO && errno == ENOENT)
			continue; /* gone meanwhile */
		if (e == SRUP_INBOUND_OK)
			e = srup_inbound_parse(buf, len, &topic, &tlen, &payload, &plen);
		if (e == SRUP_INBOUND_OK) {
			rec->topic = malloc(tlen + 1);
			rec->payload = malloc(plen ? plen : 1);
			if (!rec->topic || !rec->payload) {
				free(buf);
				srup_inbound_record_clear(rec);
				in->next_listed--;
				return SRUP_INBOUND_E_NOMEM;
			}
			memcpy(rec->topic, topic, tlen);
			rec->topic[tlen] = '\0';
			rec->topic_len = tlen;
			memcpy(rec->payload, payload, plen);
			rec->payload_len = plen;
			rec->id = l->id;
			rec->accepted = l->accepted;
			free(buf);
			read_note(in, rec);
			return SRUP_INBOUND_OK;
		}
		free(buf);
		srup_log(LOG_WARNING, "inbound record %s: %s (%s); removed", name,
			 e == SRUP_INBOUND_E_DAMAGED ? "damaged or not a regular file"
						    : srup_inbound_strerror(e),
			 e == SRUP_INBOUND_E_IO ? strerror(errno) : "the broker still has it");
		if (unlinkat(in->dir, name, 0) != 0 && errno == EISDIR)
			unlinkat(in->dir, name, AT_REMOVEDIR);
		srup_inbound_remove(in, l->id);
	}
	return SRUP_INBOUND_OK;
}

/* ---- opening ---------------------------------------------------------- */

static int listed_cmp(const void *a, const void *b)
{
	const struct listed *p = a, *q = b;

	if (p->id != q->id)
		return (p->id > q->id) - (p->id < q->id);
	/* A file before a slot of the same ID (see slots_list). */
	if ((p->slot == NO_SLOT) != (q->slot == NO_SLOT))
		return p->slot == NO_SLOT ? -1 : 1;
	return (p->slot > q->slot) - (p->slot < q->slot);
}

/* "<16 hex digits>.<ext>": the ID and kind, or false. */
static bool parse_name(const char *name, uint64_t *id, enum kind *k)
{
	uint64_t v = 0;

	if (strlen(name) != 20 || name[16] != '.')
		return false;
	for (int i = 0; i < 16; i++) {
		char c = name[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;

		if (d < 0)
			return false;
		v = v << 4 | (uint64_t)d;
	}
	for (int e = KIND_MSG; e <= KIND_OUT; e++)
		if (strcmp(name + 17, kind_ext[e]) == 0) {
			*id = v;
			*k = (enum kind)e;
			return true;
		}
	return false;
}

static bool in_range(uint64_t id)
{
	return id != 0 && id <= SRUP_INBOUND_ID_MAX;
}

/* Give records whose ID is out of range the next IDs above every other:
 * IDs are only ever taken in range, so such a name was made by someone
 * else, and after it the next ID would wrap to 0 ("no record"). */
static void renumber(struct srup_inbound *in, uint64_t *max)
{
	for (size_t i = 0; i < in->n_listed; i++) {
		struct listed *l = &in->listed[i];
		char from[32], to[32], note_from[32], note_to[32];
		uint64_t new_id = *max + 1;

		if (in_range(l->id))
			continue;
		if (new_id > SRUP_INBOUND_ID_MAX)
			break; /* cannot happen: every in-range ID below is taken */
		file_name(l->id, KIND_OUT, note_from);
		file_name(new_id, KIND_OUT, note_to);
		file_name(l->id, l->accepted ? KIND_ACC : KIND_MSG, from);
		file_name(new_id, l->accepted ? KIND_ACC : KIND_MSG, to);
		renameat2(in->dir, note_from, in->dir, note_to, RENAME_NOREPLACE);
		if (renameat2(in->dir, from, in->dir, to, RENAME_NOREPLACE) != 0) {
			srup_log(LOG_WARNING, "inbound record %s: its ID is out of range and it "
				 "cannot be renamed %s: %s; ignored", from, to, strerror(errno));
			l->id = 0; /* skipped by srup_inbound_next */
			continue;
		}
		srup_log(LOG_WARNING, "inbound record %s: its ID is out of range (not one this "
			 "node writes); renamed %s", from, to);
		l->id = new_id;
		*max = new_id;
	}
}

static bool listed_push(struct srup_inbound *in, size_t *cap, struct listed l)
{
	if (in->n_listed == *cap) {
		size_t c = *cap ? *cap * 2 : 64;
		struct listed *grown = realloc(in->listed, c * sizeof(*grown));

		if (!grown)
			return false;
		in->listed = grown;
		*cap = c;
	}
	in->listed[in->n_listed++] = l;
	return true;
}

/* At start, the free slots at the end of a file a burst grew are given
 * back (synced: slots past the end must not come back with their old
 * bytes); it grows again when needed. */
static void slots_trim(struct srup_inbound *in)
{
	size_t keep = SLOTS_INITIAL;

	if (in->slots_unusable)
		return;
	for (size_t i = in->n_slots; i > keep; i--)
		if (in->slot_id[i - 1]) {
			keep = i;
			break;
		}
	if (keep >= in->n_slots)
		return;
	if (ftruncate(in->slots, (off_t)keep * SLOT_SIZE) != 0 || fdatasync(in->slots) != 0) {
		srup_log(LOG_WARNING, "inbound slot file: cannot shrink it to %zu slots: %s", keep,
			 strerror(errno));
		return;
	}
	in->n_slots = keep;
}

/* Open the slot file, if there is one, and list the records in it. A slot
 * that does not parse is reported and freed, never trusted: it was being
 * written by a process that died before the PUBACK, so the broker still has
 * the message. Anything but a regular file under the slot file's name is
 * removed; a slot file that cannot be read is left alone (and no record is
 * written into it). */
static enum srup_inbound_err slots_list(struct srup_inbound *in, uint64_t *max, size_t *cap)
{
	static const uint8_t zero[8];
	enum { CHUNK = 64 };
	struct stat st;
	uint8_t *buf;
	size_t n;
	int fd;

	if (fstatat(in->dir, SLOTS_FILE, &st, AT_SYMLINK_NOFOLLOW) != 0)
		return SRUP_INBOUND_OK; /* made at the first write */
	if (!S_ISREG(st.st_mode)) {
		srup_log(LOG_WARNING, "inbound slot file: not a regular file; removed");
		if (unlinkat(in->dir, SLOTS_FILE, S_ISDIR(st.st_mode) ? AT_REMOVEDIR : 0) != 0) {
			srup_log(LOG_ERR, "inbound slot file: cannot remove it: %s; every record "
				 "is a file of its own", strerror(errno));
			in->slots_unusable = true;
		}
		return SRUP_INBOUND_OK;
	}
	fd = openat(in->dir, SLOTS_FILE, O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		srup_log(LOG_ERR, "inbound slot file: cannot open it: %s; its records are left "
			 "for a later start, new ones are files of their own",
			 fd < 0 ? strerror(errno) : "not a regular file");
		if (fd >= 0)
			close(fd);
		in->slots_unusable = true;
		return SRUP_INBOUND_OK;
	}
	n = (size_t)st.st_size / SLOT_SIZE;
	buf = malloc((size_t)CHUNK * SLOT_SIZE);
	in->slot_id = calloc(n ? n : 1, sizeof(*in->slot_id));
	if (!buf || !in->slot_id) {
		free(buf);
		close(fd);
		return SRUP_INBOUND_E_NOMEM;
	}
	in->slots = fd;
	in->n_slots = n;
	for (size_t first = 0; first < n; first += CHUNK) {
		size_t count = n - first < CHUNK ? n - first : CHUNK, have = 0;

		while (have < count * SLOT_SIZE) {
			ssize_t got = pread(fd, buf + have, count * SLOT_SIZE - have,
					    (off_t)(first * SLOT_SIZE + have));

			if (got < 0 && errno == EINTR)
				continue;
			if (got <= 0)
				break;
			have += (size_t)got;
		}
		if (have < count * SLOT_SIZE) {
			/* Slots past here unknown: none may be overwritten. */
			srup_log(LOG_ERR, "inbound slot file: cannot read slot %zu on: %s; those "
				 "records are left for a later start, new ones are files of their "
				 "own", first + have / SLOT_SIZE, have ? "short read" : strerror(errno));
			in->slots_unusable = true;
			break;
		}
		for (size_t i = 0; i < count; i++) {
			struct srup_inbound_slot v;
			size_t slot = first + i;

			if (srup_inbound_parse_slot(buf + i * SLOT_SIZE, SLOT_SIZE, &v) !=
			    SRUP_INBOUND_OK) {
				srup_log(LOG_WARNING, "inbound slot %zu: %s (torn or not of this "
					 "format); freed, the broker still has it", slot,
					 srup_inbound_strerror(SRUP_INBOUND_E_DAMAGED));
				pwrite_all(fd, zero, sizeof(zero), (off_t)slot * SLOT_SIZE);
				continue;
			}
			if (!v.id)
				continue;
			if (!listed_push(in, cap, (struct listed){v.id, false, slot})) {
				free(buf);
				return SRUP_INBOUND_E_NOMEM;
			}
			in->slot_id[slot] = v.id;
			in->n_used++;
			if (v.id > *max)
				*max = v.id;
		}
	}
	free(buf);
	slots_trim(in);
	return SRUP_INBOUND_OK;
}

/* A slot whose record's ID another slot or a file (listed first) already
 * has is no record of ours: freed. listed is sorted. */
static void slots_drop_duplicates(struct srup_inbound *in)
{
	size_t kept = 0;

	for (size_t i = 0; i < in->n_listed; i++) {
		struct listed *l = &in->listed[i];

		if (kept && l->slot != NO_SLOT && in_range(l->id) &&
		    in->listed[kept - 1].id == l->id) {
			srup_log(LOG_WARNING, "inbound slot %zu: its record ID %016" PRIx64 " is "
				 "taken by another record; freed", l->slot, l->id);
			slot_release(in, l->slot);
			continue;
		}
		in->listed[kept++] = *l;
	}
	in->n_listed = kept;
}

enum srup_inbound_err srup_inbound_new(const char *state_dir, struct srup_inbound **out,
				       char *detail, size_t detail_len)
{
	return srup_inbound_open(state_dir, SRUP_INBOUND_SLOTS_MAX, out, detail, detail_len);
}

enum srup_inbound_err srup_inbound_open(const char *state_dir, size_t max_slots,
					struct srup_inbound **out, char *detail, size_t detail_len)
{
	struct srup_inbound *in;
	char path[4096];
	uint64_t *notes = NULL, max = 0;
	size_t n_notes = 0, cap_notes = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd;
	enum srup_inbound_err e;

	*out = NULL;
	if ((size_t)snprintf(path, sizeof(path), "%s/inbound", state_dir) >= sizeof(path)) {
		set_detail(detail, detail_len, "state directory path too long");
		return SRUP_INBOUND_E_ARG;
	}
	if (mkdir(path, 0700) != 0 && errno != EEXIST) {
		set_detail(detail, detail_len, "cannot create %s: %s", path, strerror(errno));
		return SRUP_INBOUND_E_IO;
	}
	in = calloc(1, sizeof(*in));
	if (!in)
		return SRUP_INBOUND_E_NOMEM;
	in->slots = -1;
	in->max_slots = max_slots;
	if (pthread_mutex_init(&in->lock, NULL) != 0) {
		free(in);
		return SRUP_INBOUND_E_NOMEM;
	}
	in->dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
	fd = in->dir >= 0 ? dup(in->dir) : -1;
	d = fd >= 0 ? fdopendir(fd) : NULL;
	if (!d) {
		set_detail(detail, detail_len, "cannot open %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		srup_inbound_free(in);
		return SRUP_INBOUND_E_IO;
	}
	while ((de = readdir(d))) {
		uint64_t id;
		enum kind k;

		if (!parse_name(de->d_name, &id, &k))
			continue;
		if (k == KIND_OUT) {
			if (n_notes == cap_notes) {
				size_t c = cap_notes ? cap_notes * 2 : 64;
				uint64_t *grown = realloc(notes, c * sizeof(*grown));

				if (!grown)
					goto nomem;
				notes = grown;
				cap_notes = c;
			}
			notes[n_notes++] = id;
			continue;
		}
		if (in->n_listed == cap) {
			size_t c = cap ? cap * 2 : 64;
			struct listed *grown = realloc(in->listed, c * sizeof(*grown));

			if (!grown)
				goto nomem;
			in->listed = grown;
			cap = c;
		}
		in->listed[in->n_listed++] = (struct listed){id, k == KIND_ACC, NO_SLOT};
		if (in_range(id) && id > max)
			max = id;
	}
	closedir(d);
	d = NULL;
	if (in->n_listed > 1)
		qsort(in->listed, in->n_listed, sizeof(*in->listed), listed_cmp);
	/* Notes whose record is gone: removed before the renumbering can
	 * give their ID to another record. */
	for (size_t i = 0; i < n_notes; i++) {
		struct listed key = {notes[i], false, NO_SLOT};
		char name[32];

		if (bsearch(&key, in->listed, in->n_listed, sizeof(*in->listed), listed_cmp))
			continue;
		file_name(notes[i], KIND_OUT, name);
		unlinkat(in->dir, name, 0);
	}
	free(notes);
	notes = NULL;
	e = slots_list(in, &max, &cap);
	if (e != SRUP_INBOUND_OK) {
		srup_inbound_free(in);
		return e;
	}
	if (in->n_listed > 1)
		qsort(in->listed, in->n_listed, sizeof(*in->listed), listed_cmp);
	slots_drop_duplicates(in);
	renumber(in, &max);
	if (in->n_listed > 1)
		qsort(in->listed, in->n_listed, sizeof(*in->listed), listed_cmp);
	in->next_id = max + 1;
	*out = in;
	return SRUP_INBOUND_OK;
nomem:
	closedir(d);
	free(notes);
	srup_inbound_free(in);
	return SRUP_INBOUND_E_NOMEM;
}

void srup_inbound_free(struct srup_inbound *in)
{
	if (!in)
		return;
	if (in->dir >= 0)
		close(in->dir);
	if (in->slots >= 0)
		close(in->slots);
	free(in->slot_id);
	free(in->listed);
	pthread_mutex_destroy(&in->lock);
	free(in);
}
