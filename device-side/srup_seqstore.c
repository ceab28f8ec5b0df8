#include "srup_seqstore.h"

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

/* The format written; format 1 is read and migrated (see the header). */
#define SEQ_HEADER "srup-sequences 2"
#define SEQ_HEADER_V1 "srup-sequences 1"
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
	/* Sorted by peer: binary search, and the file comes out in order. */
	struct seq_entry *entries;
	size_t count;
	size_t capacity;
	unsigned loaded_version; /* format of the file read at open; 0 if none */
	/* Staged accepts not yet on disk, oldest first. */
	struct seq_undo *staged;
	size_t n_staged, cap_staged;
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

__attribute__((format(printf, 3, 4))) static void set_detail(char *detail, size_t len,
							      const char *fmt, ...)
{
	va_list ap;

	if (!detail || len == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(detail, len, fmt, ap);
	va_end(ap);
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

static enum srup_seq_err parse_file(struct srup_seqstore *s, const char *path, const uint8_t *buf,
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
			size_t plen = strlen(SEQ_HEADER_PREFIX);
			if (line_len == strlen(SEQ_HEADER) &&
			    memcmp(line, SEQ_HEADER, line_len) == 0) {
				s->loaded_version = 2;
			} else if (line_len == strlen(SEQ_HEADER_V1) &&
				   memcmp(line, SEQ_HEADER_V1, line_len) == 0) {
				s->loaded_version = 1;
			} else if (line_len > plen && memcmp(line, SEQ_HEADER_PREFIX, plen) == 0) {
				set_detail(detail, detail_len,
					   "%s:1: unsupported format \"%.*s\" (this build reads "
					   "\"%s\" and \"%s\")",
					   path, (int)(line_len > 40 ? 40 : line_len), line,
					   SEQ_HEADER, SEQ_HEADER_V1);
				return SRUP_SEQ_E_CORRUPT;
			} else {
				set_detail(detail, detail_len,
					   "%s:1: not a sequence file (want header \"%s\")", path,
					   SEQ_HEADER);
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
	/* Header, max_peers records, trailer; anything larger is not ours. */
	size_t max_size = sizeof(SEQ_HEADER) + s->max_peers * (SEQ_RECORD_LEN + 1) + 100;
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	enum srup_seq_err e;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", s->dir, SRUP_SEQSTORE_FILE);
	fd = openat(s->dir_fd, SRUP_SEQSTORE_FILE, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
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
	if ((uint64_t)st.st_size > max_size) {
		set_detail(detail, detail_len, "%s: %lld bytes is more than a file of %zu peers can hold",
			   path, (long long)st.st_size, s->max_peers);
		close(fd);
		return SRUP_SEQ_E_CORRUPT;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (!buf) {
		close(fd);
		return SRUP_SEQ_E_NOMEM;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			set_detail(detail, detail_len, "%s: read failed: %s", path,
				   n < 0 ? strerror(errno) : "file shrank while reading");
			free(buf);
			close(fd);
			return SRUP_SEQ_E_IO;
		}
		got += (size_t)n;
	}
	close(fd);
	e = parse_file(s, path, buf, got, detail, detail_len);
	free(buf);
	return e;
}

/* ---- writing ---------------------------------------------------------- */

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

static enum srup_seq_err persist(struct srup_seqstore *s, char *detail, size_t detail_len)
{
	size_t cap = sizeof(SEQ_HEADER) + s->count * (SEQ_RECORD_LEN + 1) + 100;
	char *buf = malloc(cap);
	size_t len = 0;
	char digest[SEQ_SHA256_HEX + 1];
	int fd;

	if (!buf)
		return SRUP_SEQ_E_NOMEM;
	len += (size_t)snprintf(buf + len, cap - len, "%s\n", SEQ_HEADER);
	for (size_t i = 0; i < s->count; i++) {
		const struct seq_entry *e = &s->entries[i];
		len += (size_t)snprintf(buf + len, cap - len,
					"%016" PRIx64 " %016" PRIx64 " %016" PRIx64 "\n", e->peer,
					e->sent_reserved, e->last_accepted);
	}
	sha256_hex((const uint8_t *)buf, len, digest);
	len += (size_t)snprintf(buf + len, cap - len, "end %zu %s\n", s->count, digest);

	fd = openat(s->dir_fd, SRUP_SEQSTORE_TMP_FILE,
		    O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd < 0) {
		set_detail(detail, detail_len, "%s/%s: cannot create: %s", s->dir,
			   SRUP_SEQSTORE_TMP_FILE, strerror(errno));
		free(buf);
		return SRUP_SEQ_E_IO;
	}
	if (write_all(fd, buf, len) != 0 || fsync(fd) != 0) {
		set_detail(detail, detail_len, "%s/%s: write failed: %s", s->dir,
			   SRUP_SEQSTORE_TMP_FILE, strerror(errno));
		close(fd);
		unlinkat(s->dir_fd, SRUP_SEQSTORE_TMP_FILE, 0);
		free(buf);
		return SRUP_SEQ_E_IO;
	}
	free(buf);
	if (close(fd) != 0) {
		set_detail(detail, detail_len, "%s/%s: close failed: %s", s->dir,
			   SRUP_SEQSTORE_TMP_FILE, strerror(errno));
		unlinkat(s->dir_fd, SRUP_SEQSTORE_TMP_FILE, 0);
		return SRUP_SEQ_E_IO;
	}
	if (renameat(s->dir_fd, SRUP_SEQSTORE_TMP_FILE, s->dir_fd, SRUP_SEQSTORE_FILE) != 0) {
		set_detail(detail, detail_len, "%s/%s: rename failed: %s", s->dir,
			   SRUP_SEQSTORE_FILE, strerror(errno));
		unlinkat(s->dir_fd, SRUP_SEQSTORE_TMP_FILE, 0);
		return SRUP_SEQ_E_IO;
	}
	/* The rename is durable only once the directory entry is. */
	if (fsync(s->dir_fd) != 0) {
		set_detail(detail, detail_len, "%s: directory fsync failed: %s", s->dir,
			   strerror(errno));
		return SRUP_SEQ_E_IO;
	}
	/* Whatever was staged is on disk now. */
	s->n_staged = 0;
	return SRUP_SEQ_OK;
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
	s->max_peers = max_peers ? max_peers : SRUP_SEQSTORE_DEFAULT_MAX_PEERS;
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
	if (s->loaded_version == 1) {
		char why[400] = "";
		/* Migrated now, not at the first change, so that the file on
		 * disk is in the current format whenever the store is open. */
		e = persist(s, why, sizeof(why));
		if (e != SRUP_SEQ_OK) {
			set_detail(detail, detail_len, "%s/%s: cannot migrate from format 1: %s",
				   dir, SRUP_SEQSTORE_FILE, why);
			goto fail;
		}
	}
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
		e = persist(s, detail, detail_len);
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

enum srup_seq_err srup_seqstore_commit(struct srup_seqstore *s, char *detail, size_t detail_len)
{
	enum srup_seq_err e;

	if (!s)
		return SRUP_SEQ_E_ARG;
	if (s->n_staged == 0)
		return SRUP_SEQ_OK;
	e = persist(s, detail, detail_len);
	if (e != SRUP_SEQ_OK)
		rollback_staged(s);
	return e;
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
