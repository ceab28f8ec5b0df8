#include "srup_seqstore.h"
#include "srup_detail.h"
#include "srup_fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "srup_log.h"

/* Format 3: two slots of the same size (layout in the header). */
#define SLOT_MAGIC "srup-sequences 3"
#define SLOT_MAGIC_LEN 16u
#define SLOT_ALIGN 4096u /* slots never share a page or a disk sector */
#define SLOT_OFF_SIZE 16u
#define SLOT_OFF_GENERATION 24u
#define SLOT_OFF_COUNT 32u
#define SLOT_HEAD 40u
#define SLOT_ENTRY 24u
#define SLOT_SUM 32u /* SHA-256 */
/* Keeps slot sizes far from overflow (a slot of this many is 1.5 GiB). */
#define SEQ_MAX_PEERS_LIMIT (1u << 26)

/* Formats 1 and 2: text, read only to migrate them. */
#define TEXT_HEADER_V1 "srup-sequences 1"
#define TEXT_HEADER_V2 "srup-sequences 2"
#define SEQ_HEADER_PREFIX "srup-sequences "
#define SEQ_RECORD_LEN 50u /* "<16 hex> <16 hex> <16 hex>" without the newline */
#define SEQ_SHA256_HEX 64u

struct seq_entry {
	uint64_t peer;
	uint64_t last_sent;     /* in memory only: the last ID handed out */
	uint64_t sent_reserved; /* persisted: no ID above it was handed out */
	uint64_t last_accepted;
};

/* How to undo one staged accept if its commit fails. */
struct seq_undo {
	uint64_t peer;
	uint64_t prev_accepted;
	bool inserted; /* the accept created the peer's entry */
};

struct srup_seqstore {
	char dir[4096];
	int dir_fd;
	int lock_fd;
	size_t max_peers;
	/* Sorted by peer: binary search, and slots come out in order. */
	struct seq_entry *entries;
	size_t count;
	size_t capacity;
	unsigned loaded_version; /* format of the file read at open; 0 if none */
	/* Staged accepts not yet on disk, oldest first. */
	struct seq_undo *staged;
	size_t n_staged, cap_staged;

	/* The format 3 file, open for slot writes; -1 until one exists. */
	int data_fd;
	size_t slot_size;
	uint64_t generation; /* of the newest slot */
	unsigned newest;     /* which slot holds it */
	bool must_rewrite;   /* the next persist replaces the whole file */
	/* The newest slot was written but not yet fdatasync'd: the other
	 * slot holds the last durable persist and is left alone until a
	 * sync (srup_seqstore_commit_unsynced). */
	bool unsynced;
	uint8_t *slot_buf;   /* slot_size bytes: the image a commit writes */
};

static const char *const seq_err_names[SRUP_SEQ_E__COUNT] = {
	[SRUP_SEQ_OK] = "success",
	[SRUP_SEQ_E_NOMEM] = "out of memory",
	[SRUP_SEQ_E_ARG] = "invalid argument",
	[SRUP_SEQ_E_IO] = "sequence store I/O error",
	[SRUP_SEQ_E_CORRUPT] = "sequence file is corrupt",
	[SRUP_SEQ_E_LOCKED] = "state directory is in use by another process",
	[SRUP_SEQ_E_FULL] = "too many peers in the sequence store",
	[SRUP_SEQ_E_EXHAUSTED] = "sequence IDs for this peer are exhausted",
	[SRUP_SEQ_E_REPLAY] = "sequence ID is not greater than the last accepted",
};

const char *srup_seqstore_strerror(enum srup_seq_err err)
{
	if ((unsigned)err >= SRUP_SEQ_E__COUNT)
		return "unknown sequence store error";
	return seq_err_names[err];
}

/* mkdir -p with mode 0700 for every component created. */
static int make_dirs(const char *path)
{
	char buf[4096];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, path, len + 1);
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -1;
		buf[i] = saved;
	}
	return 0;
}

static size_t find_index(const struct srup_seqstore *s, uint64_t peer, bool *found)
{
	size_t lo = 0, hi = s->count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (s->entries[mid].peer == peer) {
			*found = true;
			return mid;
		}
		if (s->entries[mid].peer < peer)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = false;
	return lo;
}

static const struct seq_entry *find_entry(const struct srup_seqstore *s, uint64_t peer)
{
	bool found;
	size_t i = find_index(s, peer, &found);

	return found ? &s->entries[i] : NULL;
}

static int reserve(struct srup_seqstore *s, size_t want)
{
	if (want <= s->capacity)
		return 0;
	size_t cap = s->capacity ? s->capacity * 2 : 16;
	while (cap < want)
		cap *= 2;
	struct seq_entry *n = realloc(s->entries, cap * sizeof(*n));
	if (!n)
		return -1;
	s->entries = n;
	s->capacity = cap;
	return 0;
}

/* ---- format 3: two slots ----------------------------------------------- */

static void put_le64(uint8_t *p, uint64_t v)
{
	for (unsigned i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le64(const uint8_t *p)
{
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

static size_t slot_capacity(size_t slot_size)
{
	return slot_size < SLOT_HEAD + SLOT_SUM ? 0 : (slot_size - SLOT_HEAD - SLOT_SUM) / SLOT_ENTRY;
}

/* The smallest slot size, a multiple of SLOT_ALIGN, that holds peers. */
static size_t slot_size_for(size_t peers)
{
	size_t need = SLOT_HEAD + SLOT_SUM + peers * SLOT_ENTRY;

	return (need + SLOT_ALIGN - 1) / SLOT_ALIGN * SLOT_ALIGN;
}

static bool sha256(const uint8_t *data, size_t len, uint8_t out[32])
{
	unsigned int md_len = 0;

	return EVP_Digest(data, len, out, &md_len, EVP_sha256(), NULL) == 1 && md_len == 32;
}

/* The whole store as one slot of size bytes (count fits). */
static int fill_slot(const struct srup_seqstore *s, uint8_t *slot, size_t size, uint64_t generation)
{
	memset(slot, 0, size);
	memcpy(slot, SLOT_MAGIC, SLOT_MAGIC_LEN);
	put_le64(slot + SLOT_OFF_SIZE, size);
	put_le64(slot + SLOT_OFF_GENERATION, generation);
	put_le64(slot + SLOT_OFF_COUNT, s->count);
	for (size_t i = 0; i < s->count; i++) {
		uint8_t *p = slot + SLOT_HEAD + i * SLOT_ENTRY;
		put_le64(p, s->entries[i].peer);
		put_le64(p + 8, s->entries[i].sent_reserved);
		put_le64(p + 16, s->entries[i].last_accepted);
	}
	return sha256(slot, size - SLOT_SUM, slot + size - SLOT_SUM) ? 0 : -1;
}

/* Whether one slot is whole; why says what is wrong if not. */
static bool check_slot(const uint8_t *slot, size_t size, uint64_t *generation, uint64_t *count,
		       char *why, size_t why_len)
{
	uint8_t sum[32];
	uint64_t n, g;

	if (memcmp(slot, SLOT_MAGIC, SLOT_MAGIC_LEN) != 0) {
		set_detail(why, why_len, "no \"%s\" slot header", SLOT_MAGIC);
		return false;
	}
	if (get_le64(slot + SLOT_OFF_SIZE) != size) {
		set_detail(why, why_len, "records a slot size of %" PRIu64 " bytes, not %zu",
			   get_le64(slot + SLOT_OFF_SIZE), size);
		return false;
	}
	if (!sha256(slot, size - SLOT_SUM, sum) ||
	    CRYPTO_memcmp(sum, slot + size - SLOT_SUM, SLOT_SUM) != 0) {
		set_detail(why, why_len, "checksum does not match (torn or damaged)");
		return false;
	}
	/* Checked by the checksum; what follows finds a writer's bug. */
	g = get_le64(slot + SLOT_OFF_GENERATION);
	n = get_le64(slot + SLOT_OFF_COUNT);
	if (g == 0) {
		set_detail(why, why_len, "generation 0");
		return false;
	}
	if (n > slot_capacity(size)) {
		set_detail(why, why_len, "%" PRIu64 " peers, more than a slot holds (%zu)", n,
			   slot_capacity(size));
		return false;
	}
	for (uint64_t i = 1; i < n; i++)
		if (get_le64(slot + SLOT_HEAD + i * SLOT_ENTRY) <=
		    get_le64(slot + SLOT_HEAD + (i - 1) * SLOT_ENTRY)) {
			set_detail(why, why_len, "peer %" PRIu64 " is out of order or repeated", i);
			return false;
		}
	for (size_t i = SLOT_HEAD + (size_t)n * SLOT_ENTRY; i < size - SLOT_SUM; i++)
		if (slot[i] != 0) {
			set_detail(why, why_len, "byte %zu after the last peer is not zero", i);
			return false;
		}
	*generation = g;
	*count = n;
	return true;
}

static int read_at(int fd, uint8_t *buf, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pread(fd, buf, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO; /* shrank while reading */
			return -1;
		}
		buf += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Load the newest valid slot of a format 3 file of size bytes. On success
 * the store keeps fd for its slot writes. */
static enum srup_seq_err load_slots(struct srup_seqstore *s, const char *path, int fd, size_t size,
				    char *detail, size_t detail_len)
{
	char why[2][200];
	uint64_t gen[2] = {0, 0}, cnt[2] = {0, 0};
	bool valid[2];
	size_t half = size / 2;
	unsigned pick;
	uint8_t *buf;

	if (size < 2 * SLOT_ALIGN || size % (2 * SLOT_ALIGN) != 0 ||
	    half > slot_size_for(s->max_peers)) {
		set_detail(detail, detail_len,
			   "%s: not a sequence file: %zu bytes is not two slots of a multiple of "
			   "%u bytes (at most %zu bytes each for %zu peers)",
			   path, size, SLOT_ALIGN, slot_size_for(s->max_peers), s->max_peers);
		return SRUP_SEQ_E_CORRUPT;
	}
	buf = malloc(size);
	if (!buf)
		return SRUP_SEQ_E_NOMEM;
	if (read_at(fd, buf, size, 0) != 0) {
		set_detail(detail, detail_len, "%s: read failed: %s", path, strerror(errno));
		free(buf);
		return SRUP_SEQ_E_IO;
	}
	for (unsigned i = 0; i < 2; i++)
		valid[i] = check_slot(buf + i * half, half, &gen[i], &cnt[i], why[i], sizeof(why[i]));
	if (!valid[0] && !valid[1]) {
		set_detail(detail, detail_len,
			   "%s: no valid slot (slot 0 at offset 0: %s; slot 1 at offset %zu: %s)",
			   path, why[0], half, why[1]);
		free(buf);
		return SRUP_SEQ_E_CORRUPT;
	}
	if (valid[0] && valid[1] && gen[0] == gen[1]) {
		set_detail(detail, detail_len, "%s: both slots claim generation %" PRIu64, path,
			   gen[0]);
		free(buf);
		return SRUP_SEQ_E_CORRUPT;
	}
	pick = !valid[0] ? 1 : !valid[1] ? 0 : gen[1] > gen[0] ? 1 : 0;
	/* The bound applies to what is loaded: an older slot is no way out. */
	if (cnt[pick] > s->max_peers) {
		set_detail(detail, detail_len,
			   "%s: slot %u (generation %" PRIu64 ") holds %" PRIu64
			   " peers, more than %zu peers",
			   path, pick, gen[pick], cnt[pick], s->max_peers);
		free(buf);
		return SRUP_SEQ_E_CORRUPT;
	}
	if (!valid[pick ^ 1])
		/* Expected after a crash during a commit, whose caller never
		 * acted on it. */
		srup_log(LOG_WARNING, "%s: slot %u at offset %zu is not valid (%s); using slot %u, "
			 "generation %" PRIu64, path, pick ^ 1, (pick ^ 1) * half, why[pick ^ 1],
			 pick, gen[pick]);
	if (reserve(s, (size_t)cnt[pick]) != 0) {
		free(buf);
		return SRUP_SEQ_E_NOMEM;
	}
	s->slot_buf = malloc(half);
	if (!s->slot_buf) {
		free(buf);
		return SRUP_SEQ_E_NOMEM;
	}
	for (size_t i = 0; i < cnt[pick]; i++) {
		const uint8_t *p = buf + pick * half + SLOT_HEAD + i * SLOT_ENTRY;
		struct seq_entry *e = &s->entries[i];

		e->peer = get_le64(p);
		e->sent_reserved = get_le64(p + 8);
		e->last_accepted = get_le64(p + 16);
		/* Every ID up to the bound may have been sent before the
		 * restart: continue above it. */
		e->last_sent = e->sent_reserved;
	}
	s->count = (size_t)cnt[pick];
	s->slot_size = half;
	s->generation = gen[pick];
	s->newest = pick;
	s->data_fd = fd;
	s->loaded_version = 3;
	free(buf);
	return SRUP_SEQ_OK;
}

/* ---- parsing ---------------------------------------------------------- */

static int hex_digit(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Exactly 16 lowercase hex digits. */
static bool parse_hex16(const char *p, uint64_t *out)
{
	uint64_t v = 0;

	for (int i = 0; i < 16; i++) {
		int d = hex_digit(p[i]);
		if (d < 0)
			return false;
		v = (v << 4) | (uint64_t)d;
	}
	*out = v;
	return true;
}

static void sha256_hex(const uint8_t *data, size_t len, char out[SEQ_SHA256_HEX + 1])
{
	unsigned char md[32];
	unsigned int md_len = 0;
	static const char digits[] = "0123456789abcdef";

	if (EVP_Digest(data, len, md, &md_len, EVP_sha256(), NULL) != 1 || md_len != 32) {
		/* A digest that cannot be computed never matches a stored one. */
		memset(out, 'x', SEQ_SHA256_HEX);
		out[SEQ_SHA256_HEX] = '\0';
		return;
	}
	for (size_t i = 0; i < 32; i++) {
		out[2 * i] = digits[md[i] >> 4];
		out[2 * i + 1] = digits[md[i] & 0xf];
	}
	out[SEQ_SHA256_HEX] = '\0';
}

static enum srup_seq_err parse_trailer(struct srup_seqstore *s, const char *path, size_t lineno,
				       const char *line, size_t len, const uint8_t *file,
				       size_t body_len, char *detail, size_t detail_len)
{
	/* "end <count> <sha256>" */
	size_t i = 4;
	uint64_t count = 0;
	size_t digits = 0;

	while (i < len && line[i] >= '0' && line[i] <= '9') {
		if (++digits > 10)
			goto bad;
		count = count * 10 + (uint64_t)(line[i] - '0');
		i++;
	}
	/* Canonical decimal only: no leading zeros. */
	if (digits == 0 || (digits > 1 && line[4] == '0') || i >= len || line[i] != ' ')
		goto bad;
	i++;
	if (len - i != SEQ_SHA256_HEX)
		goto bad;
	for (size_t k = 0; k < SEQ_SHA256_HEX; k++)
		if (hex_digit(line[i + k]) < 0)
			goto bad;
	if (count != s->count) {
		set_detail(detail, detail_len,
			   "%s:%zu: 'end' line counts %" PRIu64 " peers but the file has %zu", path,
			   lineno, count, s->count);
		return SRUP_SEQ_E_CORRUPT;
	}
	char want[SEQ_SHA256_HEX + 1];
	sha256_hex(file, body_len, want);
	if (CRYPTO_memcmp(want, line + i, SEQ_SHA256_HEX) != 0) {
		set_detail(detail, detail_len,
			   "%s:%zu: checksum does not match the content above it", path, lineno);
		return SRUP_SEQ_E_CORRUPT;
	}
	return SRUP_SEQ_OK;
bad:
	set_detail(detail, detail_len,
		   "%s:%zu: malformed 'end' line (want \"end <count> <64 hex digits>\")", path,
		   lineno);
	return SRUP_SEQ_E_CORRUPT;
}

static enum srup_seq_err parse_text(struct srup_seqstore *s, const char *path, const uint8_t *buf,
				    size_t len, char *detail, size_t detail_len)
{
	size_t pos = 0, lineno = 0;
	bool have_trailer = false;

	if (len == 0) {
		set_detail(detail, detail_len, "%s:1: file is empty (truncated?)", path);
		return SRUP_SEQ_E_CORRUPT;
	}
	while (pos < len) {
		const char *line = (const char *)buf + pos;
		const uint8_t *nl = memchr(buf + pos, '\n', len - pos);
		size_t line_len;

		lineno++;
		if (have_trailer) {
			set_detail(detail, detail_len, "%s:%zu: data after the 'end' line", path,
				   lineno);
			return SRUP_SEQ_E_CORRUPT;
		}
		if (!nl) {
			set_detail(detail, detail_len,
				   "%s:%zu: last line has no newline (truncated?)", path, lineno);
			return SRUP_SEQ_E_CORRUPT;
		}
		line_len = (size_t)(nl - (buf + pos));
		if (lineno == 1) {
			if (line_len == strlen(TEXT_HEADER_V2) &&
			    memcmp(line, TEXT_HEADER_V2, line_len) == 0) {
				s->loaded_version = 2;
			} else if (line_len == strlen(TEXT_HEADER_V1) &&
				   memcmp(line, TEXT_HEADER_V1, line_len) == 0) {
				s->loaded_version = 1;
			} else {
				set_detail(detail, detail_len,
					   "%s:1: not a sequence file (want header \"%s\")", path,
					   TEXT_HEADER_V2);
				return SRUP_SEQ_E_CORRUPT;
			}
		} else if (line_len >= 4 && memcmp(line, "end ", 4) == 0) {
			enum srup_seq_err e = parse_trailer(s, path, lineno, line, line_len, buf,
							    pos, detail, detail_len);
			if (e != SRUP_SEQ_OK)
				return e;
			have_trailer = true;
		} else {
			struct seq_entry e;
			/* Format 1's last sent is exactly the bound of what was
			 * used, so both formats read into the reservation. */
			if (line_len != SEQ_RECORD_LEN || line[16] != ' ' || line[33] != ' ' ||
			    !parse_hex16(line, &e.peer) ||
			    !parse_hex16(line + 17, &e.sent_reserved) ||
			    !parse_hex16(line + 34, &e.last_accepted)) {
				set_detail(detail, detail_len,
					   "%s:%zu: malformed line (want \"<peer> <%s> "
					   "<last accepted>\", each 16 lowercase hex digits)",
					   path, lineno,
					   s->loaded_version == 1 ? "last sent" : "reserved bound");
				return SRUP_SEQ_E_CORRUPT;
			}
			/* Every ID up to the bound may have been sent before the
			 * restart: continue above it. */
			e.last_sent = e.sent_reserved;
			if (s->count > 0 && e.peer <= s->entries[s->count - 1].peer) {
				set_detail(detail, detail_len,
					   "%s:%zu: peer %016" PRIx64
					   " is out of order or repeated",
					   path, lineno, e.peer);
				return SRUP_SEQ_E_CORRUPT;
			}
			if (s->count >= s->max_peers) {
				set_detail(detail, detail_len,
					   "%s:%zu: more than %zu peers", path, lineno,
					   s->max_peers);
				return SRUP_SEQ_E_CORRUPT;
			}
			if (reserve(s, s->count + 1) != 0)
				return SRUP_SEQ_E_NOMEM;
			s->entries[s->count++] = e;
		}
		pos += line_len + 1;
	}
	if (!have_trailer) {
		set_detail(detail, detail_len,
			   "%s:%zu: file ends without its 'end' line (truncated?)", path,
			   lineno + 1);
		return SRUP_SEQ_E_CORRUPT;
	}
	return SRUP_SEQ_OK;
}

static enum srup_seq_err load(struct srup_seqstore *s, char *detail, size_t detail_len)
{
	char path[4200];
	/* A text file of max_peers records; anything larger is not ours. */
	size_t max_text = sizeof(TEXT_HEADER_V2) + s->max_peers * (SEQ_RECORD_LEN + 1) + 100;
	uint8_t head[SLOT_MAGIC_LEN + 1];
	size_t head_len;
	size_t plen = strlen(SEQ_HEADER_PREFIX);
	struct stat st;
	uint8_t *buf;
	size_t size;
	enum srup_seq_err e;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", s->dir, SRUP_SEQSTORE_FILE);
	fd = openat(s->dir_fd, SRUP_SEQSTORE_FILE, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		if (errno == ENOENT)
			return SRUP_SEQ_OK; /* first start: no peers yet */
		set_detail(detail, detail_len, "%s: cannot open: %s", path, strerror(errno));
		return SRUP_SEQ_E_IO;
	}
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		set_detail(detail, detail_len, "%s: not a regular file", path);
		close(fd);
		return SRUP_SEQ_E_CORRUPT;
	}
	size = (size_t)st.st_size;
	if (size == 0) {
		set_detail(detail, detail_len, "%s:1: file is empty (truncated?)", path);
		close(fd);
		return SRUP_SEQ_E_CORRUPT;
	}
	memset(head, 0, sizeof(head));
	head_len = size < sizeof(head) ? size : sizeof(head);
	if (read_at(fd, head, head_len, 0) != 0) {
		set_detail(detail, detail_len, "%s: read failed: %s", path, strerror(errno));
		close(fd);
		return SRUP_SEQ_E_IO;
	}
	if (memcmp(head, TEXT_HEADER_V1 "\n", sizeof(head)) != 0 &&
	    memcmp(head, TEXT_HEADER_V2 "\n", sizeof(head)) != 0) {
		/* A torn slot 0 holds old or new slot bytes, never another
		 * format's header. */
		if (memcmp(head, SEQ_HEADER_PREFIX, plen) == 0 &&
		    memcmp(head, SLOT_MAGIC, SLOT_MAGIC_LEN) != 0) {
			/* head is not a string: as many bytes as were read. */
			const uint8_t *nl = memchr(head, '\n', head_len);
			size_t n = nl ? (size_t)(nl - head) : head_len;
			set_detail(detail, detail_len,
				   "%s:1: unsupported format \"%.*s\" (this build reads \"%s\", and "
				   "\"%s\" and \"%s\" to migrate them)",
				   path, (int)n, (const char *)head, SLOT_MAGIC, TEXT_HEADER_V2,
				   TEXT_HEADER_V1);
			close(fd);
			return SRUP_SEQ_E_CORRUPT;
		}
		e = load_slots(s, path, fd, size, detail, detail_len);
		if (e != SRUP_SEQ_OK)
			close(fd);
		return e;
	}
	/* Format 1 or 2: read, then migrated by the caller. */
	if (size > max_text) {
		set_detail(detail, detail_len, "%s: %zu bytes is more than a file of %zu peers can hold",
			   path, size, s->max_peers);
		close(fd);
		return SRUP_SEQ_E_CORRUPT;
	}
	buf = malloc(size);
	if (!buf) {
		close(fd);
		return SRUP_SEQ_E_NOMEM;
	}
	if (read_at(fd, buf, size, 0) != 0) {
		set_detail(detail, detail_len, "%s: read failed: %s", path, strerror(errno));
		free(buf);
		close(fd);
		return SRUP_SEQ_E_IO;
	}
	close(fd);
	e = parse_text(s, path, buf, size, detail, detail_len);
	free(buf);
	return e;
}

/* ---- writing ---------------------------------------------------------- */

static int pwrite_all(int fd, const uint8_t *data, size_t len, off_t off)
{
	while (len > 0) {
		ssize_t n = pwrite(fd, data, len, off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
		off += n;
	}
	return 0;
}

/* Replace the file with a new one holding the store in both slots
 * (generations 1 and 2), through a temporary file: fsync, rename,
 * directory fsync. Used to create the file, to grow its slots, and after a
 * failed slot write. */
static enum srup_seq_err rewrite_file(struct srup_seqstore *s, char *detail, size_t detail_len)
{
	size_t size = s->slot_size;
	uint8_t *image, *slot_buf;
	int fd;

	if (size == 0 || s->count > slot_capacity(size)) {
		/* Room for as many again, so that growth stays rare. */
		size_t want = s->count > s->max_peers / 2 ? s->max_peers : s->count * 2;
		size = slot_size_for(want > s->count ? want : s->count);
	}
	image = malloc(2 * size);
	slot_buf = size == s->slot_size ? s->slot_buf : malloc(size);
	if (!image || !slot_buf) {
		free(image);
		if (slot_buf != s->slot_buf)
			free(slot_buf);
		return SRUP_SEQ_E_NOMEM;
	}
	if (fill_slot(s, image, size, 1) != 0 || fill_slot(s, image + size, size, 2) != 0) {
		set_detail(detail, detail_len, "%s/%s: cannot compute the slot checksum", s->dir,
			   SRUP_SEQSTORE_FILE);
		goto fail;
	}
	fd = openat(s->dir_fd, SRUP_SEQSTORE_TMP_FILE,
		    O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		set_detail(detail, detail_len, "%s/%s: cannot create: %s", s->dir,
			   SRUP_SEQSTORE_TMP_FILE, strerror(errno));
		goto fail;
	}
	if (srup_write_all(fd, image, 2 * size) != 0 || fsync(fd) != 0) {
		set_detail(detail, detail_len, "%s/%s: write failed: %s", s->dir,
			   SRUP_SEQSTORE_TMP_FILE, strerror(errno));
		close(fd);
		unlinkat(s->dir_fd, SRUP_SEQSTORE_TMP_FILE, 0);
		goto fail;
	}
	if (renameat(s->dir_fd, SRUP_SEQSTORE_TMP_FILE, s->dir_fd, SRUP_SEQSTORE_FILE) != 0) {
		set_detail(detail, detail_len, "%s/%s: rename failed: %s", s->dir,
			   SRUP_SEQSTORE_FILE, strerror(errno));
		close(fd);
		unlinkat(s->dir_fd, SRUP_SEQSTORE_TMP_FILE, 0);
		goto fail;
	}
	free(image);
	/* The renamed file is the store's file from here on, whatever
	 * follows: slot writes to the old one would be lost. */
	if (s->data_fd >= 0)
		close(s->data_fd);
	s->data_fd = fd;
	if (slot_buf != s->slot_buf)
		free(s->slot_buf);
	s->slot_buf = slot_buf;
	s->slot_size = size;
	s->generation = 2;
	s->newest = 1;
	s->unsynced = false;
	/* The rename is durable only once the directory entry is. */
	if (fsync(s->dir_fd) != 0) {
		set_detail(detail, detail_len, "%s: directory fsync failed: %s", s->dir,
			   strerror(errno));
		s->must_rewrite = true;
		return SRUP_SEQ_E_IO;
	}
	s->must_rewrite = false;
	return SRUP_SEQ_OK;
fail:
	free(image);
	if (slot_buf != s->slot_buf)
		free(slot_buf);
	return SRUP_SEQ_E_IO;
}

/* Write the store in place into the slot not holding the newest
 * generation, and make it durable with one fdatasync (the file's size and
 * blocks never change, so no metadata has to follow). A torn write can only
 * damage that slot. Without sync the write stays in the kernel's hands:
 * the slot written is then the target of every later write until a sync,
 * so that the other slot, the last durable persist, is never overwritten
 * while the newest may not be on disk. */
static enum srup_seq_err write_slot(struct srup_seqstore *s, bool sync, char *detail,
				    size_t detail_len)
{
	unsigned target = s->unsynced ? s->newest : s->newest ^ 1;
	uint64_t generation = s->generation + 1;

	if (fill_slot(s, s->slot_buf, s->slot_size, generation) != 0) {
		set_detail(detail, detail_len, "%s/%s: cannot compute the slot checksum", s->dir,
			   SRUP_SEQSTORE_FILE);
		return SRUP_SEQ_E_IO;
	}
	if (pwrite_all(s->data_fd, s->slot_buf, s->slot_size, (off_t)(target * s->slot_size)) != 0 ||
	    (sync && fdatasync(s->data_fd) != 0)) {
		set_detail(detail, detail_len, "%s/%s: writing slot %u failed: %s", s->dir,
			   SRUP_SEQSTORE_FILE, target, strerror(errno));
		/* After a failed write the kernel may have dropped the pages
		 * and reports the error only once: trust a new file only. */
		s->must_rewrite = true;
		return SRUP_SEQ_E_IO;
	}
	s->generation = generation;
	s->newest = target;
	s->unsynced = !sync;
	return SRUP_SEQ_OK;
}

static enum srup_seq_err persist(struct srup_seqstore *s, bool sync, char *detail,
				 size_t detail_len)
{
	enum srup_seq_err e;

	if (s->data_fd < 0 || s->must_rewrite || s->count > slot_capacity(s->slot_size) ||
	    s->generation == UINT64_MAX)
		e = rewrite_file(s, detail, detail_len);
	else
		e = write_slot(s, sync, detail, detail_len);
	if (e == SRUP_SEQ_OK)
		s->n_staged = 0; /* whatever was staged is written now */
	return e;
}

/* ---- public ----------------------------------------------------------- */

enum srup_seq_err srup_seqstore_new(const char *dir, size_t max_peers, struct srup_seqstore **out,
				    char *detail, size_t detail_len)
{
	struct srup_seqstore *s;
	enum srup_seq_err e;

	if (out)
		*out = NULL;
	if (!dir || !out || dir[0] == '\0') {
		set_detail(detail, detail_len, "no state directory given");
		return SRUP_SEQ_E_ARG;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return SRUP_SEQ_E_NOMEM;
	s->dir_fd = -1;
	s->lock_fd = -1;
	s->data_fd = -1;
	s->max_peers = max_peers ? max_peers : SRUP_SEQSTORE_DEFAULT_MAX_PEERS;
	if (s->max_peers > SEQ_MAX_PEERS_LIMIT) {
		set_detail(detail, detail_len, "at most %u peers, not %zu", SEQ_MAX_PEERS_LIMIT,
			   s->max_peers);
		e = SRUP_SEQ_E_ARG;
		goto fail;
	}
	if (strlen(dir) >= sizeof(s->dir)) {
		set_detail(detail, detail_len, "state directory path is too long");
		e = SRUP_SEQ_E_ARG;
		goto fail;
	}
	strcpy(s->dir, dir);
	if (make_dirs(dir) != 0) {
		set_detail(detail, detail_len, "%s: cannot create state directory: %s", dir,
			   strerror(errno));
		e = SRUP_SEQ_E_IO;
		goto fail;
	}
	s->dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (s->dir_fd < 0) {
		set_detail(detail, detail_len, "%s: cannot open state directory: %s", dir,
			   strerror(errno));
		e = SRUP_SEQ_E_IO;
		goto fail;
	}
	s->lock_fd = openat(s->dir_fd, SRUP_SEQSTORE_LOCK_FILE,
			    O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (s->lock_fd < 0) {
		set_detail(detail, detail_len, "%s/%s: cannot open lock file: %s", dir,
			   SRUP_SEQSTORE_LOCK_FILE, strerror(errno));
		e = SRUP_SEQ_E_IO;
		goto fail;
	}
	if (flock(s->lock_fd, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK) {
			set_detail(detail, detail_len,
				   "%s: state directory is in use by another process (lock %s held)",
				   dir, SRUP_SEQSTORE_LOCK_FILE);
			e = SRUP_SEQ_E_LOCKED;
		} else {
			set_detail(detail, detail_len, "%s/%s: flock failed: %s", dir,
				   SRUP_SEQSTORE_LOCK_FILE, strerror(errno));
			e = SRUP_SEQ_E_IO;
		}
		goto fail;
	}
	/* A temporary file left by a crash mid-write is incomplete by
	 * definition; the renamed file is the last complete state. */
	if (unlinkat(s->dir_fd, SRUP_SEQSTORE_TMP_FILE, 0) != 0 && errno != ENOENT) {
		set_detail(detail, detail_len, "%s/%s: cannot remove stale file: %s", dir,
			   SRUP_SEQSTORE_TMP_FILE, strerror(errno));
		e = SRUP_SEQ_E_IO;
		goto fail;
	}
	e = load(s, detail, detail_len);
	if (e != SRUP_SEQ_OK)
		goto fail;
	if (s->loaded_version == 1 || s->loaded_version == 2) {
		char why[400] = "";
		/* Migrated now, not at the first change, so that the file on
		 * disk is in the current format whenever the store is open. */
		e = rewrite_file(s, why, sizeof(why));
		if (e != SRUP_SEQ_OK) {
			set_detail(detail, detail_len, "%s/%s: cannot migrate from format %u: %s",
				   dir, SRUP_SEQSTORE_FILE, s->loaded_version, why);
			goto fail;
		}
	}
	/* A process killed after an unsynced commit left the newest slot in
	 * the kernel's hands only: on disk before a write may go to the
	 * other slot, the last durable one. */
	if (s->data_fd >= 0 && fdatasync(s->data_fd) != 0)
		s->must_rewrite = true;
	*out = s;
	return SRUP_SEQ_OK;
fail:
	srup_seqstore_free(s);
	return e;
}

void srup_seqstore_free(struct srup_seqstore *s)
{
	if (!s)
		return;
	if (s->lock_fd >= 0)
		close(s->lock_fd); /* releases the flock */
	if (s->dir_fd >= 0)
		close(s->dir_fd);
	if (s->data_fd >= 0)
		close(s->data_fd);
	free(s->slot_buf);
	free(s->entries);
	free(s->staged);
	free(s);
}

uint64_t srup_seqstore_last_sent(const struct srup_seqstore *s, uint64_t peer)
{
	const struct seq_entry *e = s ? find_entry(s, peer) : NULL;

	return e ? e->last_sent : 0;
}

uint64_t srup_seqstore_sent_reserved(const struct srup_seqstore *s, uint64_t peer)
{
	const struct seq_entry *e = s ? find_entry(s, peer) : NULL;

	return e ? e->sent_reserved : 0;
}

uint64_t srup_seqstore_last_accepted(const struct srup_seqstore *s, uint64_t peer)
{
	const struct seq_entry *e = s ? find_entry(s, peer) : NULL;

	return e ? e->last_accepted : 0;
}

size_t srup_seqstore_count(const struct srup_seqstore *s)
{
	return s ? s->count : 0;
}

bool srup_seqstore_is_fresh(const struct srup_seqstore *s, uint64_t peer, uint64_t seq)
{
	return seq > srup_seqstore_last_accepted(s, peer);
}

/* The entry for peer, inserted (zeroed) if new. *inserted says which, so a
 * failed persist can undo it. */
static enum srup_seq_err get_or_insert(struct srup_seqstore *s, uint64_t peer, size_t *index,
				       bool *inserted, char *detail, size_t detail_len)
{
	bool found;
	size_t i = find_index(s, peer, &found);

	*inserted = false;
	if (!found) {
		if (s->count >= s->max_peers) {
			set_detail(detail, detail_len,
				   "sequence store holds %zu peers already; peer %016" PRIx64
				   " refused",
				   s->count, peer);
			return SRUP_SEQ_E_FULL;
		}
		if (reserve(s, s->count + 1) != 0)
			return SRUP_SEQ_E_NOMEM;
		memmove(&s->entries[i + 1], &s->entries[i], (s->count - i) * sizeof(s->entries[0]));
		s->entries[i] = (struct seq_entry){.peer = peer};
		s->count++;
		*inserted = true;
	}
	*index = i;
	return SRUP_SEQ_OK;
}

static void undo(struct srup_seqstore *s, size_t i, bool inserted, struct seq_entry saved)
{
	if (inserted) {
		memmove(&s->entries[i], &s->entries[i + 1],
			(s->count - i - 1) * sizeof(s->entries[0]));
		s->count--;
	} else {
		s->entries[i] = saved;
	}
}

enum srup_seq_err srup_seqstore_next(struct srup_seqstore *s, uint64_t peer, uint64_t *out,
				     char *detail, size_t detail_len)
{
	size_t i;
	bool inserted;
	struct seq_entry saved;
	uint64_t base, next;
	enum srup_seq_err e;

	if (!s || !out)
		return SRUP_SEQ_E_ARG;
	base = srup_seqstore_last_sent(s, peer);
	if (srup_seqstore_last_accepted(s, peer) > base)
		base = srup_seqstore_last_accepted(s, peer);
	if (base == UINT64_MAX) {
		set_detail(detail, detail_len, "sequence IDs toward peer %016" PRIx64 " exhausted",
			   peer);
		return SRUP_SEQ_E_EXHAUSTED;
	}
	next = base + 1;
	e = get_or_insert(s, peer, &i, &inserted, detail, detail_len);
	if (e != SRUP_SEQ_OK)
		return e;
	saved = s->entries[i];
	s->entries[i].last_sent = next;
	if (next > s->entries[i].sent_reserved) {
		/* Persisted before the ID is used: a crash after sending it
		 * must restart above it. */
		uint64_t room = UINT64_MAX - next;
		s->entries[i].sent_reserved = next + (room < SRUP_SEQSTORE_SEND_RESERVATION - 1
							     ? room
							     : SRUP_SEQSTORE_SEND_RESERVATION - 1);
		e = persist(s, true, detail, detail_len);
		if (e != SRUP_SEQ_OK) {
			undo(s, i, inserted, saved);
			return e;
		}
	}
	*out = next;
	return SRUP_SEQ_OK;
}

/* Undo every staged accept, newest first, so that a peer staged twice
 * gets its oldest value back and an entry created by staging goes. */
static void rollback_staged(struct srup_seqstore *s)
{
	while (s->n_staged > 0) {
		const struct seq_undo *u = &s->staged[--s->n_staged];
		bool found;
		size_t i = find_index(s, u->peer, &found);

		if (!found)
			continue;
		if (u->inserted) {
			memmove(&s->entries[i], &s->entries[i + 1],
				(s->count - i - 1) * sizeof(s->entries[0]));
			s->count--;
		} else {
			s->entries[i].last_accepted = u->prev_accepted;
		}
	}
}

enum srup_seq_err srup_seqstore_stage_accept(struct srup_seqstore *s, uint64_t peer, uint64_t seq,
					     char *detail, size_t detail_len)
{
	size_t i;
	bool inserted;
	struct seq_entry saved;
	enum srup_seq_err e;

	if (!s)
		return SRUP_SEQ_E_ARG;
	if (!srup_seqstore_is_fresh(s, peer, seq)) {
		set_detail(detail, detail_len,
			   "sequence ID %" PRIu64 " <= last accepted %" PRIu64 " from %016" PRIx64,
			   seq, srup_seqstore_last_accepted(s, peer), peer);
		return SRUP_SEQ_E_REPLAY;
	}
	/* Room for the undo record first, so that staging cannot fail
	 * half-way. */
	if (s->n_staged == s->cap_staged) {
		size_t cap = s->cap_staged ? s->cap_staged * 2 : 16;
		struct seq_undo *n = realloc(s->staged, cap * sizeof(*n));
		if (!n)
			return SRUP_SEQ_E_NOMEM;
		s->staged = n;
		s->cap_staged = cap;
	}
	e = get_or_insert(s, peer, &i, &inserted, detail, detail_len);
	if (e != SRUP_SEQ_OK)
		return e;
	saved = s->entries[i];
	s->staged[s->n_staged++] = (struct seq_undo){
		.peer = peer, .prev_accepted = saved.last_accepted, .inserted = inserted};
	s->entries[i].last_accepted = seq;
	return SRUP_SEQ_OK;
}

static enum srup_seq_err commit(struct srup_seqstore *s, bool sync, char *detail,
				size_t detail_len)
{
	enum srup_seq_err e;

	if (!s)
		return SRUP_SEQ_E_ARG;
	if (s->n_staged == 0)
		return SRUP_SEQ_OK;
	e = persist(s, sync, detail, detail_len);
	if (e != SRUP_SEQ_OK)
		rollback_staged(s);
	return e;
}

enum srup_seq_err srup_seqstore_commit(struct srup_seqstore *s, char *detail, size_t detail_len)
{
	return commit(s, true, detail, detail_len);
}

enum srup_seq_err srup_seqstore_commit_unsynced(struct srup_seqstore *s, char *detail,
						size_t detail_len)
{
	return commit(s, false, detail, detail_len);
}

bool srup_seqstore_unsynced(const struct srup_seqstore *s)
{
	return s && s->unsynced;
}

enum srup_seq_err srup_seqstore_sync(struct srup_seqstore *s, char *detail, size_t detail_len)
{
	if (!s)
		return SRUP_SEQ_E_ARG;
	if (!s->unsynced)
		return SRUP_SEQ_OK;
	/* A failed sync may have lost the written pages: a new file then. */
	if (!s->must_rewrite && fdatasync(s->data_fd) == 0) {
		s->unsynced = false;
		return SRUP_SEQ_OK;
	}
	if (!s->must_rewrite)
		set_detail(detail, detail_len, "%s/%s: fdatasync failed: %s", s->dir,
			   SRUP_SEQSTORE_FILE, strerror(errno));
	s->must_rewrite = true;
	return rewrite_file(s, detail, detail_len);
}

size_t srup_seqstore_staged(const struct srup_seqstore *s)
{
	return s ? s->n_staged : 0;
}

enum srup_seq_err srup_seqstore_accept(struct srup_seqstore *s, uint64_t peer, uint64_t seq,
				       char *detail, size_t detail_len)
{
	enum srup_seq_err e = srup_seqstore_stage_accept(s, peer, seq, detail, detail_len);

	if (e != SRUP_SEQ_OK)
		return e;
	return srup_seqstore_commit(s, detail, detail_len);
}
