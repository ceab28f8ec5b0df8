/* renameat2 comes with _GNU_SOURCE, which the build defines. */
#include "srup_inbound.h"
#include "srup_detail.h"

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
#define FNV_OFFSET 0xcbf29ce484222325ull

struct listed {
	uint64_t id;
	bool accepted;
};

struct srup_inbound {
	int dir;
	pthread_mutex_t lock; /* next_id */
	uint64_t next_id;
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

static uint64_t fnv1a(const void *data, size_t len, uint64_t h)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
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
	if (get_u64(buf + len - TRAILER_LEN) != fnv1a(buf, len - TRAILER_LEN, FNV_OFFSET))
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
	if (get_u64(buf + len - TRAILER_LEN) != fnv1a(buf, len - TRAILER_LEN, FNV_OFFSET))
		return SRUP_INBOUND_E_DAMAGED;
	*note = buf + NOTE_HEADER_LEN;
	*note_len = n;
	return SRUP_INBOUND_OK;
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

enum srup_inbound_err srup_inbound_write(struct srup_inbound *in, const char *topic, size_t tlen,
					 const void *payload, size_t plen, uint64_t *id)
{
	uint8_t head[HEADER_LEN], tail[TRAILER_LEN];
	struct iovec iov[4];
	char name[32];
	uint64_t new_id;
	enum srup_inbound_err e;

	*id = 0;
	if (tlen > SRUP_INBOUND_TOPIC_MAX || plen > SRUP_INBOUND_PAYLOAD_MAX)
		return SRUP_INBOUND_E_ARG;
	pthread_mutex_lock(&in->lock);
	new_id = in->next_id;
	if (new_id <= SRUP_INBOUND_ID_MAX)
		in->next_id++;
	pthread_mutex_unlock(&in->lock);
	if (new_id > SRUP_INBOUND_ID_MAX)
		return SRUP_INBOUND_E_IDS;

	memcpy(head, RECORD_MAGIC, 8);
	put_u32(head + 8, (uint32_t)tlen);
	put_u32(head + 12, (uint32_t)plen);
	put_u64(tail, fnv1a(payload, plen, fnv1a(topic, tlen, fnv1a(head, sizeof(head), FNV_OFFSET))));
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

enum srup_inbound_err srup_inbound_note(struct srup_inbound *in, uint64_t id, const void *note,
					size_t len, bool sync)
{
	uint8_t head[NOTE_HEADER_LEN], tail[TRAILER_LEN];
	struct iovec iov[3];
	char name[32];

	if (!in || id == 0 || id > SRUP_INBOUND_ID_MAX || len > SRUP_INBOUND_NOTE_MAX ||
	    (len && !note))
		return SRUP_INBOUND_E_ARG;
	memcpy(head, NOTE_MAGIC, 8);
	put_u32(head + 8, (uint32_t)len);
	put_u64(tail, fnv1a(note, len, fnv1a(head, sizeof(head), FNV_OFFSET)));
	iov[0] = (struct iovec){head, sizeof(head)};
	iov[1] = (struct iovec){(void *)note, len};
	iov[2] = (struct iovec){tail, sizeof(tail)};
	file_name(id, KIND_OUT, name);
	return write_durable(in, name, iov, 3, sync);
}

enum srup_inbound_err srup_inbound_note_sync(struct srup_inbound *in, uint64_t id)
{
	char name[32];
	int fd, rc;

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

	if (!in || id == 0)
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

	file_name(id, KIND_MSG, from);
	file_name(id, KIND_ACC, to);
	if (renameat(in->dir, from, in->dir, to) != 0) {
		srup_log(LOG_ERR, "inbound record %s: cannot mark it accepted: %s", from,
			 strerror(errno));
		return SRUP_INBOUND_E_IO;
	}
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
	uint64_t x = ((const struct listed *)a)->id, y = ((const struct listed *)b)->id;

	return (x > y) - (x < y);
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

enum srup_inbound_err srup_inbound_new(const char *state_dir, struct srup_inbound **out,
				       char *detail, size_t detail_len)
{
	struct srup_inbound *in;
	char path[4096];
	uint64_t *notes = NULL, max = 0;
	size_t n_notes = 0, cap_notes = 0, cap = 0;
	struct dirent *de;
	DIR *d;
	int fd;

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
		in->listed[in->n_listed++] = (struct listed){id, k == KIND_ACC};
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
		struct listed key = {notes[i], false};
		char name[32];

		if (bsearch(&key, in->listed, in->n_listed, sizeof(*in->listed), listed_cmp))
			continue;
		file_name(notes[i], KIND_OUT, name);
		unlinkat(in->dir, name, 0);
	}
	free(notes);
	notes = NULL;
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
	free(in->listed);
	pthread_mutex_destroy(&in->lock);
	free(in);
}
