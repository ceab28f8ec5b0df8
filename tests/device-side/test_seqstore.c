/* Unit tests of the sequence store (device-side/srup_seqstore.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <inttypes.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "srup_seqstore.h"
#include "test_broker.h"

struct fixture {
	char dir[4096];
	char file[4200];
	bool blocked; /* block_persists() lowered RLIMIT_FSIZE */
	struct rlimit saved_fsize;
};

/* The documented format 3 layout (srup_seqstore.h). */
#define SLOT_ALIGN 4096u
#define SLOT_OFF_GENERATION 24u
#define SLOT_OFF_COUNT 32u
#define SLOT_HEAD 40u
#define SLOT_ENTRY 24u
#define SLOT_SUM 32u

static size_t slot_capacity_of(size_t slot_size)
{
	return (slot_size - SLOT_HEAD - SLOT_SUM) / SLOT_ENTRY;
}

static uint64_t le64(const void *p)
{
	const uint8_t *b = p;
	uint64_t v = 0;

	for (unsigned i = 0; i < 8; i++)
		v |= (uint64_t)b[i] << (8 * i);
	return v;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || test_tmpdir("srup-seqstore", f->dir) != 0)
		return -1;
	snprintf(f->file, sizeof(f->file), "%s/%s", f->dir, SRUP_SEQSTORE_FILE);
	*state = f;
	return 0;
}

static void unblock_persists(struct fixture *f);

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f->blocked)
		unblock_persists(f);
	test_rm_rf(f->dir);
	free(f);
	return 0;
}

static struct srup_seqstore *open_ok(const char *dir)
{
	struct srup_seqstore *s = NULL;
	char detail[512] = "";
	enum srup_seq_err e = srup_seqstore_new(dir, 0, &s, detail, sizeof(detail));

	if (e != SRUP_SEQ_OK)
		fail_msg("srup_seqstore_new(%s): %s: %s", dir, srup_seqstore_strerror(e), detail);
	return s;
}

static uint64_t next_ok(struct srup_seqstore *s, uint64_t peer)
{
	uint64_t seq = 0;
	char detail[256] = "";

	assert_int_equal(srup_seqstore_next(s, peer, &seq, detail, sizeof(detail)), SRUP_SEQ_OK);
	return seq;
}

static void write_file(const char *path, const char *content, size_t len)
{
	FILE *fp = fopen(path, "w");

	assert_non_null(fp);
	assert_int_equal(fwrite(content, 1, len, fp), len);
	assert_int_equal(fclose(fp), 0);
}

static char *read_text(const char *path, size_t *len)
{
	FILE *fp = fopen(path, "r");
	char *buf = calloc(1, 1 << 20);

	assert_non_null(fp);
	assert_non_null(buf);
	*len = fread(buf, 1, (1 << 20) - 1, fp);
	fclose(fp);
	return buf;
}

static ino_t inode_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_ino;
}

static off_t size_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* A text file of format 1 or 2 as earlier releases wrote it: header,
 * records (each "<16 hex> <16 hex> <16 hex>\n"), end line with count and
 * SHA-256. */
static size_t legacy_text(unsigned version, const char *records, char *out, size_t out_len)
{
	unsigned char md[32];
	unsigned int md_len = 0;
	size_t lines = 0;
	int n;

	for (const char *p = records; *p; p++)
		lines += *p == '\n';
	n = snprintf(out, out_len, "srup-sequences %u\n%s", version, records);
	assert_true(n > 0 && (size_t)n < out_len);
	assert_int_equal(EVP_Digest(out, (size_t)n, md, &md_len, EVP_sha256(), NULL), 1);
	n += snprintf(out + n, out_len - (size_t)n, "end %zu ", lines);
	for (unsigned i = 0; i < md_len; i++)
		n += snprintf(out + n, out_len - (size_t)n, "%02x", md[i]);
	n += snprintf(out + n, out_len - (size_t)n, "\n");
	return (size_t)n;
}

static void write_legacy(const char *path, unsigned version, const char *records)
{
	char text[4096];
	size_t len = legacy_text(version, records, text, sizeof(text));

	write_file(path, text, len);
}

/* last accepted from peer as the file on disk says now, read by a store
 * of its own on a copy (the store under test holds the lock). */
static uint64_t accepted_on_disk(struct fixture *f, uint64_t peer)
{
	char dir[4300], copy[4400], detail[512] = "";
	struct srup_seqstore *s = NULL;
	size_t len;
	char *buf = read_text(f->file, &len);
	uint64_t v;

	snprintf(dir, sizeof(dir), "%s/snapshot", f->dir);
	snprintf(copy, sizeof(copy), "%s/%s", dir, SRUP_SEQSTORE_FILE);
	test_rm_rf(dir);
	assert_int_equal(mkdir(dir, 0700), 0);
	write_file(copy, buf, len);
	free(buf);
	if (srup_seqstore_new(dir, 0, &s, detail, sizeof(detail)) != SRUP_SEQ_OK)
		fail_msg("copy of %s: %s", f->file, detail);
	v = srup_seqstore_last_accepted(s, peer);
	srup_seqstore_free(s);
	test_rm_rf(dir);
	return v;
}

/* Opening a store over the given file content must fail as corrupt, and
 * the detail must name the file and the expected line. */
static void expect_corrupt(struct fixture *f, const char *content, size_t len, const char *line_tag,
			   const char *what)
{
	struct srup_seqstore *s = NULL;
	char detail[512] = "";
	char want_prefix[4300];

	write_file(f->file, content, len);
	assert_int_equal(srup_seqstore_new(f->dir, 0, &s, detail, sizeof(detail)),
			 SRUP_SEQ_E_CORRUPT);
	assert_null(s);
	snprintf(want_prefix, sizeof(want_prefix), "%s:%s:", f->file, line_tag);
	if (strncmp(detail, want_prefix, strlen(want_prefix)) != 0 || !strstr(detail, what))
		fail_msg("detail \"%s\" does not start with \"%s\" or lacks \"%s\"", detail,
			 want_prefix, what);
}

/* The same for a format 3 file: the detail names the file. */
static void expect_corrupt_slots(struct fixture *f, const char *content, size_t len,
				 const char *what)
{
	struct srup_seqstore *s = NULL;
	char detail[1024] = "";
	char want_prefix[4300];

	write_file(f->file, content, len);
	assert_int_equal(srup_seqstore_new(f->dir, 0, &s, detail, sizeof(detail)),
			 SRUP_SEQ_E_CORRUPT);
	assert_null(s);
	snprintf(want_prefix, sizeof(want_prefix), "%s: ", f->file);
	if (strncmp(detail, want_prefix, strlen(want_prefix)) != 0 || !strstr(detail, what))
		fail_msg("detail \"%s\" does not start with \"%s\" or lacks \"%s\"", detail,
			 want_prefix, what);
}

static void test_first_sequence_is_one(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);

	assert_int_equal(srup_seqstore_count(s), 0);
	assert_int_equal(next_ok(s, 0x42), 1);
	assert_int_equal(next_ok(s, 0x42), 2);
	assert_int_equal(next_ok(s, 0x43), 1); /* counters are per peer */
	assert_int_equal(srup_seqstore_last_sent(s, 0x42), 2);
	assert_int_equal(srup_seqstore_count(s), 2);
	srup_seqstore_free(s);
}

static void test_next_is_max_of_sent_and_accepted_plus_one(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);

	assert_int_equal(next_ok(s, 7), 1);
	/* The peer has sent 10 messages of its own: pySRUP shares one counter
	 * per pair, so our next must exceed what we accepted from it. */
	assert_int_equal(srup_seqstore_accept(s, 7, 10, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(next_ok(s, 7), 11);
	assert_int_equal(next_ok(s, 7), 12);
	/* Accepted below last sent: last sent still wins. */
	assert_int_equal(srup_seqstore_accept(s, 7, 11, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(next_ok(s, 7), 13);
	srup_seqstore_free(s);
}

static void test_accept_only_greater(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	char detail[256] = "";

	assert_true(srup_seqstore_is_fresh(s, 9, 1));
	assert_false(srup_seqstore_is_fresh(s, 9, 0));
	assert_int_equal(srup_seqstore_accept(s, 9, 5, NULL, 0), SRUP_SEQ_OK);
	assert_false(srup_seqstore_is_fresh(s, 9, 5));
	assert_false(srup_seqstore_is_fresh(s, 9, 4));
	assert_true(srup_seqstore_is_fresh(s, 9, 6));
	assert_int_equal(srup_seqstore_accept(s, 9, 5, detail, sizeof(detail)),
			 SRUP_SEQ_E_REPLAY);
	assert_non_null(strstr(detail, "5 <= last accepted 5"));
	assert_int_equal(srup_seqstore_accept(s, 9, 3, NULL, 0), SRUP_SEQ_E_REPLAY);
	assert_int_equal(srup_seqstore_last_accepted(s, 9), 5);
	/* Sending does not move the accept threshold. */
	assert_int_equal(next_ok(s, 9), 6);
	assert_true(srup_seqstore_is_fresh(s, 9, 6));
	assert_int_equal(srup_seqstore_accept(s, 9, UINT64_MAX, NULL, 0), SRUP_SEQ_OK);
	assert_false(srup_seqstore_is_fresh(s, 9, UINT64_MAX));
	srup_seqstore_free(s);
}

static void test_exhausted_counter(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	uint64_t seq = 0;

	assert_int_equal(srup_seqstore_accept(s, 3, UINT64_MAX, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_next(s, 3, &seq, NULL, 0), SRUP_SEQ_E_EXHAUSTED);
	srup_seqstore_free(s);
}

static void test_persists_across_reopen(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);

	assert_int_equal(next_ok(s, 0xa1a2a3a4a5a6a7a8ull), 1);
	assert_int_equal(next_ok(s, 0xa1a2a3a4a5a6a7a8ull), 2);
	assert_int_equal(srup_seqstore_accept(s, 0x11, 77, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_accept(s, 0xffffffffffffffffull, 3, NULL, 0), SRUP_SEQ_OK);
	srup_seqstore_free(s);

	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_count(s), 3);
	/* IDs up to the reservation made by the first send may have been
	 * used: the restart continues above it. */
	assert_int_equal(srup_seqstore_last_sent(s, 0xa1a2a3a4a5a6a7a8ull),
			 SRUP_SEQSTORE_SEND_RESERVATION);
	assert_int_equal(srup_seqstore_sent_reserved(s, 0xa1a2a3a4a5a6a7a8ull),
			 SRUP_SEQSTORE_SEND_RESERVATION);
	assert_int_equal(srup_seqstore_last_accepted(s, 0x11), 77);
	assert_false(srup_seqstore_is_fresh(s, 0x11, 77));
	assert_int_equal(next_ok(s, 0xa1a2a3a4a5a6a7a8ull), SRUP_SEQSTORE_SEND_RESERVATION + 1);
	assert_int_equal(next_ok(s, 0x11), 78);
	srup_seqstore_free(s);
}

static void test_atomic_write_leaves_no_temp_file(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	DIR *d;
	struct dirent *de;
	int files = 0;
	struct stat st;

	for (int i = 0; i < 20; i++)
		next_ok(s, (uint64_t)i);
	d = opendir(f->dir);
	assert_non_null(d);
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		if (strcmp(de->d_name, SRUP_SEQSTORE_FILE) != 0 &&
		    strcmp(de->d_name, SRUP_SEQSTORE_LOCK_FILE) != 0)
			fail_msg("unexpected file %s left in the state directory", de->d_name);
		files++;
	}
	closedir(d);
	assert_int_equal(files, 2);
	assert_int_equal(stat(f->file, &st), 0);
	assert_int_equal(st.st_mode & 077, 0); /* private */
	srup_seqstore_free(s);
}

static void test_stale_temp_file_is_ignored(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	char tmp[4300];
	struct stat st;

	assert_int_equal(srup_seqstore_accept(s, 5, 5, NULL, 0), SRUP_SEQ_OK);
	srup_seqstore_free(s);
	/* A crash between write and rename leaves a partial temp file. */
	snprintf(tmp, sizeof(tmp), "%s/%s", f->dir, SRUP_SEQSTORE_TMP_FILE);
	write_file(tmp, "srup-sequences 2\n0000", 21);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 5), 5);
	assert_int_not_equal(stat(tmp, &st), 0);
	srup_seqstore_free(s);
}

static void test_file_format_is_the_documented_one(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	uint8_t sum[32];
	unsigned int sum_len = 0;
	size_t len;
	char *buf;

	/* Creates the file: both slots, generations 1 and 2. */
	assert_int_equal(srup_seqstore_accept(s, 0x20, 0x10, NULL, 0), SRUP_SEQ_OK);
	/* In place, into slot 0, generation 3. */
	next_ok(s, 0x10);
	srup_seqstore_free(s);
	buf = read_text(f->file, &len);
	assert_int_equal(len, 2 * SLOT_ALIGN);
	for (unsigned i = 0; i < 2; i++) {
		const uint8_t *slot = (const uint8_t *)buf + i * SLOT_ALIGN;
		assert_memory_equal(slot, "srup-sequences 3", 16);
		assert_int_equal(le64(slot + 16), SLOT_ALIGN);
		assert_int_equal(EVP_Digest(slot, SLOT_ALIGN - SLOT_SUM, sum, &sum_len, EVP_sha256(),
					    NULL),
				 1);
		assert_memory_equal(sum, slot + SLOT_ALIGN - SLOT_SUM, 32);
	}
	const uint8_t *s0 = (const uint8_t *)buf, *s1 = s0 + SLOT_ALIGN;
	assert_int_equal(le64(s0 + SLOT_OFF_GENERATION), 3);
	assert_int_equal(le64(s0 + SLOT_OFF_COUNT), 2);
	/* Peer 0x10: one ID sent, 256 reserved; peer 0x20: 0x10 accepted. */
	assert_int_equal(le64(s0 + 40), 0x10);
	assert_int_equal(le64(s0 + 48), SRUP_SEQSTORE_SEND_RESERVATION);
	assert_int_equal(le64(s0 + 56), 0);
	assert_int_equal(le64(s0 + 64), 0x20);
	assert_int_equal(le64(s0 + 72), 0);
	assert_int_equal(le64(s0 + 80), 0x10);
	for (size_t i = SLOT_HEAD + 2 * SLOT_ENTRY; i < SLOT_ALIGN - SLOT_SUM; i++)
		assert_int_equal(s0[i], 0);
	/* Slot 1 still holds the state before. */
	assert_int_equal(le64(s1 + SLOT_OFF_GENERATION), 2);
	assert_int_equal(le64(s1 + SLOT_OFF_COUNT), 1);
	assert_int_equal(le64(s1 + 40), 0x20);
	free(buf);
}

/* Format 2 text with one byte changed and the checksum left as it was. */
static void test_corrupt_byte_detected(void **state)
{
	struct fixture *f = *state;
	char text[1024];
	size_t len = legacy_text(2, "0000000000000020 0000000000000000 0000000000000030\n", text,
				 sizeof(text));

	/* last_accepted 0x30 -> 0x20: a replay window if it went unnoticed. */
	char *p = strstr(text, "0000000000000030");
	assert_non_null(p);
	p[14] = '2';
	expect_corrupt(f, text, len, "3", "checksum does not match");
}

static void test_truncated_file(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s;
	char text[1024];
	size_t len = legacy_text(2,
				 "0000000000000001 0000000000000000 0000000000000065\n"
				 "0000000000000002 0000000000000000 0000000000000066\n"
				 "0000000000000003 0000000000000000 0000000000000067\n",
				 text, sizeof(text));
	char *slots;

	/* Format 2: cut after the second peer line: no 'end' line. */
	expect_corrupt(f, text, 17 + 51 * 2, "4", "without its 'end' line");
	/* Cut inside a line. */
	expect_corrupt(f, text, 17 + 51 + 20, "3", "no newline");
	/* Cut inside the 'end' line. */
	expect_corrupt(f, text, len - 10, "5", "no newline");
	/* Empty file. */
	expect_corrupt(f, "", 0, "1", "empty");

	/* Format 3 without its second slot, or cut inside it. */
	assert_int_equal(unlink(f->file), 0);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_accept(s, 1, 1, NULL, 0), SRUP_SEQ_OK);
	srup_seqstore_free(s);
	slots = read_text(f->file, &len);
	assert_int_equal(len, 2 * SLOT_ALIGN);
	expect_corrupt_slots(f, slots, SLOT_ALIGN, "not a sequence file");
	expect_corrupt_slots(f, slots, 2 * SLOT_ALIGN - 100, "not a sequence file");
	free(slots);
}

static void test_malformed_lines(void **state)
{
	struct fixture *f = *state;
	static const char bad_header[] = "sequences 2\nend 0 "
					 "0000000000000000000000000000000000000000000000000000000000000000\n";
	static const char future[] = "srup-sequences 9\nend 0 "
				     "0000000000000000000000000000000000000000000000000000000000000000\n";
	static const char upper_hex[] = "srup-sequences 2\n"
					"00000000000000AA 0000000000000001 0000000000000000\n";
	static const char short_line[] = "srup-sequences 1\n"
					 "aa 1 0\n";
	static const char bad_end[] = "srup-sequences 2\nend x\n";
	/* A header line as long as the bytes read to tell the formats apart. */
	static const char future_long[] = "srup-sequences 10\nend 0 "
					  "0000000000000000000000000000000000000000000000000000000000000000\n";

	/* Neither text nor slots. */
	expect_corrupt_slots(f, bad_header, strlen(bad_header), "not a sequence file");
	expect_corrupt(f, future, strlen(future), "1", "unsupported format \"srup-sequences 9\"");
	expect_corrupt(f, upper_hex, strlen(upper_hex), "2", "malformed line");
	expect_corrupt(f, short_line, strlen(short_line), "2", "malformed line");
	expect_corrupt(f, bad_end, strlen(bad_end), "2", "malformed 'end' line");
	expect_corrupt(f, future_long, strlen(future_long), "1",
		       "unsupported format \"srup-sequences 10\" (");
}

static void test_order_count_and_trailing_data(void **state)
{
	struct fixture *f = *state;
	char text[1024], copy[1100];
	size_t len = legacy_text(2,
				 "0000000000000001 0000000000000000 0000000000000001\n"
				 "0000000000000002 0000000000000000 0000000000000002\n",
				 text, sizeof(text));

	/* Lines swapped: out of order (the parse stops before the checksum). */
	memcpy(copy, text, len);
	memcpy(copy + 17, text + 17 + 51, 51);
	memcpy(copy + 17 + 51, text + 17, 51);
	expect_corrupt(f, copy, len, "3", "out of order");

	/* Wrong count in the end line. */
	memcpy(copy, text, len);
	copy[17 + 51 * 2 + 4] = '3';
	expect_corrupt(f, copy, len, "4", "counts 3 peers");

	/* Something after the end line. */
	memcpy(copy, text, len);
	memcpy(copy + len, "extra\n", 6);
	expect_corrupt(f, copy, len + 6, "5", "after the 'end' line");
}

static void test_lock_held_second_open_fails(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	struct srup_seqstore *second = NULL;
	char detail[512] = "";

	assert_int_equal(srup_seqstore_new(f->dir, 0, &second, detail, sizeof(detail)),
			 SRUP_SEQ_E_LOCKED);
	assert_null(second);
	assert_non_null(strstr(detail, f->dir));
	assert_non_null(strstr(detail, "in use by another process"));
	srup_seqstore_free(s);
	/* Released with the store. */
	s = open_ok(f->dir);
	srup_seqstore_free(s);
}

static void test_lock_held_by_other_process(void **state)
{
	struct fixture *f = *state;
	int pipefd[2];
	char c;

	assert_int_equal(pipe(pipefd), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct srup_seqstore *s = NULL;
		close(pipefd[0]);
		if (srup_seqstore_new(f->dir, 0, &s, NULL, 0) != SRUP_SEQ_OK)
			_exit(1);
		c = 'L';
		if (write(pipefd[1], &c, 1) != 1)
			_exit(1);
		pause(); /* hold the lock until killed */
		_exit(0);
	}
	close(pipefd[1]);
	assert_int_equal(read(pipefd[0], &c, 1), 1);
	close(pipefd[0]);
	struct srup_seqstore *s = NULL;
	enum srup_seq_err e = srup_seqstore_new(f->dir, 0, &s, NULL, 0);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	assert_int_equal(e, SRUP_SEQ_E_LOCKED);
	assert_null(s);
}

static void test_peer_bound(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = NULL;
	uint64_t seq;
	char detail[256] = "";

	assert_int_equal(srup_seqstore_new(f->dir, 3, &s, NULL, 0), SRUP_SEQ_OK);
	for (uint64_t p = 1; p <= 3; p++)
		assert_int_equal(srup_seqstore_accept(s, p, 1, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_accept(s, 4, 1, detail, sizeof(detail)), SRUP_SEQ_E_FULL);
	assert_non_null(strstr(detail, "0000000000000004"));
	assert_int_equal(srup_seqstore_next(s, 5, &seq, NULL, 0), SRUP_SEQ_E_FULL);
	/* Known peers still work, and nothing of the refused ones remains. */
	assert_int_equal(srup_seqstore_accept(s, 2, 2, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_count(s), 3);
	srup_seqstore_free(s);

	/* A file with more peers than the bound is refused at load. */
	assert_int_equal(srup_seqstore_new(f->dir, 2, &s, detail, sizeof(detail)),
			 SRUP_SEQ_E_CORRUPT);
	assert_non_null(strstr(detail, f->file));
	assert_non_null(strstr(detail, "2 peers"));
}

/* Make every write to a regular file at or beyond limit bytes fail
 * (RLIMIT_FSIZE, SIGXFSZ ignored); block_persists makes every write fail.
 * The test process writes nothing else meanwhile. */
static void block_writes_from(struct fixture *f, rlim_t limit)
{
	struct rlimit lim;

	assert_false(f->blocked);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &f->saved_fsize), 0);
	lim = f->saved_fsize;
	lim.rlim_cur = limit;
	signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	f->blocked = true;
}

static void block_persists(struct fixture *f)
{
	block_writes_from(f, 0);
}

static void unblock_persists(struct fixture *f)
{
	assert_true(f->blocked);
	f->blocked = false;
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &f->saved_fsize), 0);
}

static void test_failed_write_changes_nothing(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	char detail[512] = "";
	uint64_t seq = 0;
	enum srup_seq_err e1, e2;

	assert_int_equal(srup_seqstore_accept(s, 1, 10, NULL, 0), SRUP_SEQ_OK);
	block_persists(f);
	e1 = srup_seqstore_accept(s, 1, 11, detail, sizeof(detail));
	e2 = srup_seqstore_next(s, 2, &seq, NULL, 0);
	unblock_persists(f);
	assert_int_equal(e1, SRUP_SEQ_E_IO);
	assert_non_null(strstr(detail, f->file));
	assert_non_null(strstr(detail, "writing slot"));
	assert_int_equal(srup_seqstore_last_accepted(s, 1), 10);
	assert_int_equal(e2, SRUP_SEQ_E_IO);
	assert_int_equal(srup_seqstore_count(s), 1);
	assert_int_equal(accepted_on_disk(f, 1), 10);
	assert_int_equal(next_ok(s, 1), 11);
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 1), 10);
	assert_int_equal(srup_seqstore_sent_reserved(s, 1), 10 + SRUP_SEQSTORE_SEND_RESERVATION);
	srup_seqstore_free(s);
}

static void test_sends_within_reservation_persist_nothing(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	char detail[512] = "";
	uint64_t seq = 0;
	enum srup_seq_err e;

	assert_int_equal(next_ok(s, 0x31), 1);
	assert_int_equal(srup_seqstore_sent_reserved(s, 0x31), SRUP_SEQSTORE_SEND_RESERVATION);
	/* With persists impossible, the rest of the reservation is still
	 * handed out... */
	block_persists(f);
	for (uint64_t want = 2; want <= SRUP_SEQSTORE_SEND_RESERVATION; want++)
		if (srup_seqstore_next(s, 0x31, &seq, NULL, 0) != SRUP_SEQ_OK || seq != want) {
			unblock_persists(f);
			fail_msg("send %" PRIu64 " inside the reservation failed or got %" PRIu64,
				 want, seq);
		}
	/* ...and the first ID above it is refused, changing nothing. */
	e = srup_seqstore_next(s, 0x31, &seq, detail, sizeof(detail));
	unblock_persists(f);
	assert_int_equal(e, SRUP_SEQ_E_IO);
	assert_non_null(strstr(detail, f->file));
	assert_int_equal(srup_seqstore_last_sent(s, 0x31), SRUP_SEQSTORE_SEND_RESERVATION);
	assert_int_equal(srup_seqstore_sent_reserved(s, 0x31), SRUP_SEQSTORE_SEND_RESERVATION);
	assert_int_equal(next_ok(s, 0x31), SRUP_SEQSTORE_SEND_RESERVATION + 1);
	assert_int_equal(srup_seqstore_sent_reserved(s, 0x31),
			 2 * SRUP_SEQSTORE_SEND_RESERVATION);
	srup_seqstore_free(s);
}

/* A process that sends `sends` IDs to peer and dies without closing the
 * store, writing every ID it handed out to fd. */
static void crash_after_sending(const char *dir, uint64_t peer, unsigned sends, int fd)
{
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		struct srup_seqstore *s = NULL;
		if (srup_seqstore_new(dir, 0, &s, NULL, 0) != SRUP_SEQ_OK)
			_exit(1);
		for (unsigned i = 0; i < sends; i++) {
			uint64_t seq;
			if (srup_seqstore_next(s, peer, &seq, NULL, 0) != SRUP_SEQ_OK ||
			    write(fd, &seq, sizeof(seq)) != (ssize_t)sizeof(seq))
				_exit(1);
		}
		_exit(0); /* no srup_seqstore_free: nothing more reaches the disk */
	}
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_reservation_survives_restart_never_reuses(void **state)
{
	struct fixture *f = *state;
	/* Runs of sends across crashes: inside one reservation, exactly to
	 * its end, and across several. */
	static const unsigned runs[] = {3, 1, SRUP_SEQSTORE_SEND_RESERVATION - 1, 700, 1};
	int pipefd[2];
	uint64_t highest = 0, seq;
	struct srup_seqstore *s;

	assert_int_equal(pipe(pipefd), 0);
	for (size_t r = 0; r < sizeof(runs) / sizeof(runs[0]); r++) {
		crash_after_sending(f->dir, 0x77, runs[r], pipefd[1]);
		for (unsigned i = 0; i < runs[r]; i++) {
			assert_int_equal(read(pipefd[0], &seq, sizeof(seq)), sizeof(seq));
			if (seq <= highest)
				fail_msg("run %zu: ID %" PRIu64 " sent again (highest before %" PRIu64
					 ")", r, seq, highest);
			highest = seq;
		}
	}
	close(pipefd[0]);
	close(pipefd[1]);
	s = open_ok(f->dir);
	assert_true(srup_seqstore_sent_reserved(s, 0x77) >= highest);
	assert_true(next_ok(s, 0x77) > highest);
	srup_seqstore_free(s);
}

static void test_restart_keeps_the_max_rule(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);

	assert_int_equal(next_ok(s, 0x40), 1);
	assert_int_equal(srup_seqstore_accept(s, 0x40, 5000, NULL, 0), SRUP_SEQ_OK);
	srup_seqstore_free(s);
	/* The peer is past our reservation: we continue above what it sent. */
	s = open_ok(f->dir);
	assert_int_equal(next_ok(s, 0x40), 5001);
	assert_int_equal(srup_seqstore_sent_reserved(s, 0x40),
			 5000 + SRUP_SEQSTORE_SEND_RESERVATION);
	srup_seqstore_free(s);
}

static void test_reservation_stops_at_the_top(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	uint64_t seq = 0;

	assert_int_equal(srup_seqstore_accept(s, 0x41, UINT64_MAX - 3, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(next_ok(s, 0x41), UINT64_MAX - 2);
	assert_int_equal(srup_seqstore_sent_reserved(s, 0x41), UINT64_MAX);
	assert_int_equal(next_ok(s, 0x41), UINT64_MAX - 1);
	assert_int_equal(next_ok(s, 0x41), UINT64_MAX);
	assert_int_equal(srup_seqstore_next(s, 0x41, &seq, NULL, 0), SRUP_SEQ_E_EXHAUSTED);
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_next(s, 0x41, &seq, NULL, 0), SRUP_SEQ_E_EXHAUSTED);
	srup_seqstore_free(s);
}

/* A format 1 file, as the previous release wrote it. */
static const char format1_records[] = "0000000000000010 0000000000000005 0000000000000000\n"
				      "0000000000000020 0000000000000000 0000000000000007\n";

static void test_format1_migrated_at_open(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s;
	size_t len;
	char *text;

	write_legacy(f->file, 1, format1_records);
	s = open_ok(f->dir);
	/* Rewritten before any change, in the current format. */
	text = read_text(f->file, &len);
	assert_int_equal(len, 2 * SLOT_ALIGN);
	assert_memory_equal(text, "srup-sequences 3", 16);
	assert_int_equal(le64(text + SLOT_OFF_COUNT), 2);
	free(text);
	/* Format 1's last sent was exact: sending continues right above it. */
	assert_int_equal(srup_seqstore_last_sent(s, 0x10), 5);
	assert_int_equal(next_ok(s, 0x10), 6);
	assert_int_equal(srup_seqstore_last_accepted(s, 0x20), 7);
	assert_false(srup_seqstore_is_fresh(s, 0x20, 7));
	assert_int_equal(next_ok(s, 0x20), 8);
	srup_seqstore_free(s);
}

static void test_format1_migration_failure_is_an_error(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = NULL;
	size_t len;
	char *text;
	int status;

	write_legacy(f->file, 1, format1_records);
	/* In a child whose file size limit (RLIMIT_FSIZE) makes every write
	 * of the new file fail: the open fails, naming the file. */
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		struct rlimit lim;
		char detail[512] = "";
		signal(SIGXFSZ, SIG_IGN);
		if (getrlimit(RLIMIT_FSIZE, &lim) != 0)
			_exit(10);
		lim.rlim_cur = 16;
		if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
			_exit(11);
		if (srup_seqstore_new(f->dir, 0, &s, detail, sizeof(detail)) != SRUP_SEQ_E_IO || s)
			_exit(12);
		if (!strstr(detail, f->file) || !strstr(detail, "cannot migrate from format 1"))
			_exit(13);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	/* The format 1 file is untouched, and migrates once writes work. */
	text = read_text(f->file, &len);
	assert_int_equal(strncmp(text, "srup-sequences 1\n", 17), 0);
	free(text);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 0x20), 7);
	srup_seqstore_free(s);
}

static void test_format2_migrated_at_open(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s;
	size_t len;
	char *text;

	write_legacy(f->file, 2,
		     "0000000000000010 0000000000000100 0000000000000000\n"
		     "0000000000000020 0000000000000000 0000000000000007\n");
	s = open_ok(f->dir);
	text = read_text(f->file, &len);
	assert_int_equal(len, 2 * SLOT_ALIGN);
	assert_memory_equal(text, "srup-sequences 3", 16);
	free(text);
	/* Format 2 records the reservation: continue above it. */
	assert_int_equal(srup_seqstore_sent_reserved(s, 0x10), 0x100);
	assert_int_equal(next_ok(s, 0x10), 0x101);
	assert_false(srup_seqstore_is_fresh(s, 0x20, 7));
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 0x20), 7);
	assert_int_equal(srup_seqstore_sent_reserved(s, 0x10), 0x100 + SRUP_SEQSTORE_SEND_RESERVATION);
	srup_seqstore_free(s);
}

static void test_staged_accepts_commit_together(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	char detail[256] = "";

	assert_int_equal(srup_seqstore_accept(s, 0xa, 2, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_stage_accept(s, 0xa, 5, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_stage_accept(s, 0xb, 1, NULL, 0), SRUP_SEQ_OK);
	/* Freshness sees what is staged: a burst is checked against its
	 * own earlier messages. */
	assert_false(srup_seqstore_is_fresh(s, 0xa, 5));
	assert_int_equal(srup_seqstore_stage_accept(s, 0xa, 4, detail, sizeof(detail)),
			 SRUP_SEQ_E_REPLAY);
	assert_non_null(strstr(detail, "4 <= last accepted 5"));
	assert_int_equal(srup_seqstore_stage_accept(s, 0xa, 9, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_staged(s), 3);
	/* Not on disk before the commit. */
	assert_int_equal(accepted_on_disk(f, 0xa), 2);
	assert_int_equal(accepted_on_disk(f, 0xb), 0);
	assert_int_equal(srup_seqstore_commit(s, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(accepted_on_disk(f, 0xa), 9);
	assert_int_equal(accepted_on_disk(f, 0xb), 1);
	assert_int_equal(srup_seqstore_staged(s), 0);
	assert_int_equal(srup_seqstore_commit(s, NULL, 0), SRUP_SEQ_OK); /* nothing to do */
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 0xa), 9);
	assert_int_equal(srup_seqstore_last_accepted(s, 0xb), 1);
	srup_seqstore_free(s);
}

static void test_failed_commit_undoes_every_staged_accept(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	char detail[512] = "";
	enum srup_seq_err e;

	assert_int_equal(srup_seqstore_accept(s, 0xa, 2, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_stage_accept(s, 0xa, 5, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_stage_accept(s, 0xc, 3, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_stage_accept(s, 0xc, 4, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_stage_accept(s, 0xa, 6, NULL, 0), SRUP_SEQ_OK);
	block_persists(f);
	e = srup_seqstore_commit(s, detail, sizeof(detail));
	unblock_persists(f);
	assert_int_equal(e, SRUP_SEQ_E_IO);
	assert_non_null(strstr(detail, f->file));
	/* As before the burst: the messages were never acted on, so their
	 * IDs stay fresh. */
	assert_int_equal(srup_seqstore_staged(s), 0);
	assert_int_equal(srup_seqstore_last_accepted(s, 0xa), 2);
	assert_int_equal(srup_seqstore_count(s), 1);
	assert_true(srup_seqstore_is_fresh(s, 0xc, 3));
	assert_int_equal(accepted_on_disk(f, 0xa), 2);
	assert_int_equal(srup_seqstore_accept(s, 0xa, 5, NULL, 0), SRUP_SEQ_OK);
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 0xa), 5);
	assert_int_equal(srup_seqstore_count(s), 1);
	srup_seqstore_free(s);
}

static void test_staged_accepts_reach_disk_with_a_reservation(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);

	/* A persist made for a send carries what is staged: it is durable,
	 * so nothing is left to undo. */
	assert_int_equal(srup_seqstore_stage_accept(s, 0xd, 40, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(next_ok(s, 0xe), 1);
	assert_int_equal(srup_seqstore_staged(s), 0);
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 0xd), 40);
	srup_seqstore_free(s);
}

static void test_stage_respects_peer_bound(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = NULL;

	assert_int_equal(srup_seqstore_new(f->dir, 2, &s, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_stage_accept(s, 1, 1, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_stage_accept(s, 2, 1, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_stage_accept(s, 3, 1, NULL, 0), SRUP_SEQ_E_FULL);
	assert_int_equal(srup_seqstore_staged(s), 2);
	assert_int_equal(srup_seqstore_commit(s, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_count(s), 2);
	srup_seqstore_free(s);
}

/* ---- format 3: slots written in place ---------------------------------- */

static void test_commits_write_in_place(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	char tmp[4300];
	struct stat st;
	ino_t created;

	assert_int_equal(srup_seqstore_accept(s, 1, 1, NULL, 0), SRUP_SEQ_OK);
	created = inode_of(f->file);
	/* Accepts, new peers and reservations: the same file, the same size,
	 * no temporary file (no rename). */
	for (uint64_t i = 2; i < 40; i++) {
		assert_int_equal(srup_seqstore_accept(s, 1, i, NULL, 0), SRUP_SEQ_OK);
		assert_int_equal(next_ok(s, 100 + i), 1);
		assert_int_equal(inode_of(f->file), created);
	}
	assert_int_equal(size_of(f->file), 2 * SLOT_ALIGN);
	snprintf(tmp, sizeof(tmp), "%s/%s", f->dir, SRUP_SEQSTORE_TMP_FILE);
	assert_int_not_equal(stat(tmp, &st), 0);
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 1), 39);
	assert_int_equal(srup_seqstore_count(s), 39);
	srup_seqstore_free(s);
}

/* The file after accepts of 1..upto from peer 5, each its own commit. */
static char *file_after_accepts(struct fixture *f, uint64_t from, uint64_t upto, size_t *len)
{
	struct srup_seqstore *s = open_ok(f->dir);

	for (uint64_t i = from; i <= upto; i++)
		assert_int_equal(srup_seqstore_accept(s, 5, i, NULL, 0), SRUP_SEQ_OK);
	srup_seqstore_free(s);
	return read_text(f->file, len);
}

static void test_torn_write_keeps_the_previous_commit(void **state)
{
	struct fixture *f = *state;
	size_t len_a, len_b, torn_at[] = {0, 512, 2048, SLOT_ALIGN - 512, SLOT_ALIGN};
	char *before = file_after_accepts(f, 1, 2, &len_a);
	char *after = file_after_accepts(f, 3, 3, &len_b);
	char *torn = malloc(2 * SLOT_ALIGN);
	unsigned target = 2;

	assert_non_null(torn);
	assert_int_equal(len_a, 2 * SLOT_ALIGN);
	assert_int_equal(len_b, 2 * SLOT_ALIGN);
	/* The commit of 3 wrote exactly one slot. */
	for (unsigned i = 0; i < 2; i++)
		if (memcmp(before + i * SLOT_ALIGN, after + i * SLOT_ALIGN, SLOT_ALIGN) != 0) {
			assert_int_equal(target, 2);
			target = i;
		}
	assert_true(target < 2);
	/* A crash when the write had reached only part of that slot (pages
	 * and sectors reach the disk in any order; here, a prefix). */
	for (size_t k = 0; k < sizeof(torn_at) / sizeof(torn_at[0]); k++) {
		struct srup_seqstore *s;
		uint64_t want = torn_at[k] == SLOT_ALIGN ? 3 : 2;

		memcpy(torn, before, 2 * SLOT_ALIGN);
		memcpy(torn + target * SLOT_ALIGN, after + target * SLOT_ALIGN, torn_at[k]);
		write_file(f->file, torn, 2 * SLOT_ALIGN);
		s = open_ok(f->dir);
		if (srup_seqstore_last_accepted(s, 5) != want)
			fail_msg("write torn after %zu bytes: last accepted %" PRIu64 ", want %" PRIu64,
				 torn_at[k], srup_seqstore_last_accepted(s, 5), want);
		srup_seqstore_free(s);
	}
	/* The suffix missing instead (the checksum at the end is old). */
	memcpy(torn, after, 2 * SLOT_ALIGN);
	memcpy(torn + target * SLOT_ALIGN + SLOT_ALIGN - 512,
	       before + target * SLOT_ALIGN + SLOT_ALIGN - 512, 512);
	write_file(f->file, torn, 2 * SLOT_ALIGN);
	struct srup_seqstore *s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 5), 2);
	/* The next commit goes into the damaged slot and repairs it. */
	assert_int_equal(srup_seqstore_accept(s, 5, 3, NULL, 0), SRUP_SEQ_OK);
	srup_seqstore_free(s);
	free(torn);
	torn = read_text(f->file, &len_a);
	assert_memory_equal(torn + target * SLOT_ALIGN, after + target * SLOT_ALIGN, SLOT_ALIGN);
	free(torn);
	free(before);
	free(after);
}

/* Accept seq from peer and commit it without an fdatasync. */
static void commit_unsynced(struct srup_seqstore *s, uint64_t peer, uint64_t seq)
{
	assert_int_equal(srup_seqstore_stage_accept(s, peer, seq, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(srup_seqstore_commit_unsynced(s, NULL, 0), SRUP_SEQ_OK);
}

/* Commits without an fdatasync (srup_seqstore_commit_unsynced) all go into
 * one slot: the other keeps the last synced persist byte for byte, so a
 * power loss that takes every unsynced write (here: that slot zeroed, or
 * torn) falls back to it. After srup_seqstore_sync the next unsynced
 * commit goes to the other slot, leaving the newly synced one alone. */
static void test_unsynced_commits_leave_the_synced_slot_alone(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	char *durable, *now, *lost;
	size_t len;
	unsigned kept = 2;

	assert_int_equal(srup_seqstore_accept(s, 5, 1, NULL, 0), SRUP_SEQ_OK);
	assert_false(srup_seqstore_unsynced(s));
	durable = read_text(f->file, &len);
	assert_int_equal(len, 2 * SLOT_ALIGN);
	for (uint64_t i = 2; i <= 4; i++) {
		commit_unsynced(s, 5, i);
		assert_true(srup_seqstore_unsynced(s));
		assert_int_equal(srup_seqstore_staged(s), 0);
		now = read_text(f->file, &len);
		/* Exactly one slot, always the same, is as it was after the
		 * synced accept. */
		unsigned same = 0, which = 2;

		for (unsigned k = 0; k < 2; k++)
			if (memcmp(now + k * SLOT_ALIGN, durable + k * SLOT_ALIGN, SLOT_ALIGN) == 0) {
				same++;
				which = k;
			}
		if (same != 1 || (kept != 2 && which != kept))
			fail_msg("unsynced commit of %" PRIu64 ": the synced slot was overwritten", i);
		kept = which;
		free(now);
	}
	/* The process killed: the kernel had the writes, and the next open
	 * syncs them (the slot that held 1 may be written now). */
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 5), 4);
	free(durable);
	durable = read_text(f->file, &len);
	commit_unsynced(s, 5, 5);
	srup_seqstore_free(s);
	/* A power loss: the unsynced slot zeroed, or half written. */
	now = read_text(f->file, &len);
	lost = malloc(2 * SLOT_ALIGN);
	assert_non_null(lost);
	for (size_t cut = 0; cut <= SLOT_ALIGN; cut += SLOT_ALIGN / 2) {
		unsigned unsynced = memcmp(now, durable, SLOT_ALIGN) == 0 ? 1 : 0;

		memcpy(lost, now, 2 * SLOT_ALIGN);
		memset(lost + unsynced * SLOT_ALIGN + cut, 0, SLOT_ALIGN - cut);
		write_file(f->file, lost, 2 * SLOT_ALIGN);
		s = open_ok(f->dir);
		assert_int_equal(srup_seqstore_last_accepted(s, 5), cut == SLOT_ALIGN ? 5 : 4);
		srup_seqstore_free(s);
	}
	write_file(f->file, now, 2 * SLOT_ALIGN);
	/* Synced: the next unsynced commit keeps that slot. */
	s = open_ok(f->dir);
	commit_unsynced(s, 5, 6);
	assert_int_equal(srup_seqstore_sync(s, NULL, 0), SRUP_SEQ_OK);
	assert_false(srup_seqstore_unsynced(s));
	assert_int_equal(srup_seqstore_sync(s, NULL, 0), SRUP_SEQ_OK); /* nothing to do */
	free(durable);
	durable = read_text(f->file, &len);
	commit_unsynced(s, 5, 7);
	free(now);
	now = read_text(f->file, &len);
	assert_int_equal(memcmp(now, durable, SLOT_ALIGN) == 0 ||
			 memcmp(now + SLOT_ALIGN, durable + SLOT_ALIGN, SLOT_ALIGN) == 0, 1);
	assert_int_not_equal(memcmp(now, durable, 2 * SLOT_ALIGN), 0);
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 5), 7);
	srup_seqstore_free(s);
	free(lost);
	free(now);
	free(durable);
}

static void test_one_damaged_slot_uses_the_other(void **state)
{
	struct fixture *f = *state;
	size_t len;
	/* Slot 0: generation 3, last accepted 2; slot 1: generation 4, 3. */
	char *image = file_after_accepts(f, 1, 3, &len);
	char *copy = malloc(len);
	struct srup_seqstore *s;

	assert_non_null(copy);
	assert_int_equal(le64(image + SLOT_OFF_GENERATION), 3);
	assert_int_equal(le64(image + SLOT_ALIGN + SLOT_OFF_GENERATION), 4);
	/* The older slot damaged: the newest still wins. */
	memcpy(copy, image, len);
	copy[SLOT_HEAD + 20] ^= 0x01;
	write_file(f->file, copy, len);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 5), 3);
	srup_seqstore_free(s);
	/* The newest damaged: the commit before it (logged). */
	memcpy(copy, image, len);
	copy[SLOT_ALIGN + SLOT_HEAD + 20] ^= 0x01;
	write_file(f->file, copy, len);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 5), 2);
	srup_seqstore_free(s);
	free(copy);
	free(image);
}

static void test_both_slots_damaged_is_an_error(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = NULL;
	char detail[1024] = "";
	size_t len;
	char *image = file_after_accepts(f, 1, 3, &len);

	image[SLOT_HEAD + 20] ^= 0x01;
	image[SLOT_ALIGN + SLOT_HEAD + 20] ^= 0x01;
	expect_corrupt_slots(f, image, len, "no valid slot");
	assert_int_equal(srup_seqstore_new(f->dir, 0, &s, detail, sizeof(detail)),
			 SRUP_SEQ_E_CORRUPT);
	assert_null(s);
	assert_non_null(strstr(detail, "slot 0 at offset 0: checksum does not match"));
	assert_non_null(strstr(detail, "slot 1 at offset 4096: checksum does not match"));
	/* Zeroed slots (blocks lost), the same. */
	memset(image, 0, len);
	expect_corrupt_slots(f, image, len, "no valid slot");
	free(image);
}

static void test_equal_generations_is_an_error(void **state)
{
	struct fixture *f = *state;
	size_t len;
	char *image = file_after_accepts(f, 1, 3, &len);

	memcpy(image, image + SLOT_ALIGN, SLOT_ALIGN);
	expect_corrupt_slots(f, image, len, "both slots claim generation 4");
	free(image);
}

static void test_failed_slot_write_rewrites_the_file(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	char detail[512] = "";
	enum srup_seq_err e2, e3;
	ino_t created, rewritten;

	/* Creation leaves slot 1 newest: the next commits go to slot 0,
	 * then slot 1, which the size limit makes fail. */
	assert_int_equal(srup_seqstore_accept(s, 9, 1, NULL, 0), SRUP_SEQ_OK);
	created = inode_of(f->file);
	block_writes_from(f, SLOT_ALIGN);
	e2 = srup_seqstore_accept(s, 9, 2, NULL, 0);
	e3 = srup_seqstore_accept(s, 9, 3, detail, sizeof(detail));
	unblock_persists(f);
	assert_int_equal(e2, SRUP_SEQ_OK);
	assert_int_equal(e3, SRUP_SEQ_E_IO);
	assert_non_null(strstr(detail, "writing slot 1 failed"));
	assert_int_equal(srup_seqstore_last_accepted(s, 9), 2);
	assert_int_equal(accepted_on_disk(f, 9), 2);
	assert_int_equal(inode_of(f->file), created);
	/* The pages of a failed write are not trusted: a new file... */
	assert_int_equal(srup_seqstore_accept(s, 9, 3, NULL, 0), SRUP_SEQ_OK);
	rewritten = inode_of(f->file);
	assert_true(rewritten != created);
	/* ...then in place again. */
	assert_int_equal(srup_seqstore_accept(s, 9, 4, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(inode_of(f->file), rewritten);
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_last_accepted(s, 9), 4);
	srup_seqstore_free(s);
}

static void test_growth_rewrites_with_bigger_slots(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	size_t cap = slot_capacity_of(SLOT_ALIGN);
	char tmp[4300];
	struct stat st;
	ino_t small, grown;
	off_t size;

	for (uint64_t p = 1; p <= cap; p++)
		assert_int_equal(srup_seqstore_accept(s, p, 1000 + p, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(size_of(f->file), 2 * SLOT_ALIGN);
	small = inode_of(f->file);
	/* One peer more than a slot holds: a new file with bigger slots,
	 * room for twice as many. */
	assert_int_equal(next_ok(s, cap + 1), 1);
	grown = inode_of(f->file);
	assert_true(grown != small);
	size = size_of(f->file);
	assert_int_equal(size % (2 * SLOT_ALIGN), 0);
	assert_true(slot_capacity_of((size_t)size / 2) >= 2 * (cap + 1));
	snprintf(tmp, sizeof(tmp), "%s/%s", f->dir, SRUP_SEQSTORE_TMP_FILE);
	assert_int_not_equal(stat(tmp, &st), 0);
	/* In place again in the bigger file. */
	assert_int_equal(srup_seqstore_accept(s, 1, 5000, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(inode_of(f->file), grown);
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_count(s), cap + 1);
	assert_int_equal(srup_seqstore_last_accepted(s, 1), 5000);
	assert_int_equal(srup_seqstore_last_accepted(s, cap), 1000 + cap);
	assert_int_equal(srup_seqstore_sent_reserved(s, cap + 1), SRUP_SEQSTORE_SEND_RESERVATION);
	srup_seqstore_free(s);
}

static void test_failed_growth_changes_nothing(void **state)
{
	struct fixture *f = *state;
	struct srup_seqstore *s = open_ok(f->dir);
	size_t cap = slot_capacity_of(SLOT_ALIGN);
	char tmp[4300], detail[512] = "";

	for (uint64_t p = 1; p <= cap; p++)
		assert_int_equal(srup_seqstore_accept(s, p, 1, NULL, 0), SRUP_SEQ_OK);
	/* A directory where the new file would be written. */
	snprintf(tmp, sizeof(tmp), "%s/%s", f->dir, SRUP_SEQSTORE_TMP_FILE);
	assert_int_equal(mkdir(tmp, 0700), 0);
	assert_int_equal(srup_seqstore_accept(s, cap + 1, 1, detail, sizeof(detail)),
			 SRUP_SEQ_E_IO);
	assert_non_null(strstr(detail, tmp));
	assert_int_equal(srup_seqstore_count(s), cap);
	assert_int_equal(size_of(f->file), 2 * SLOT_ALIGN);
	/* Known peers still commit in place. */
	assert_int_equal(srup_seqstore_accept(s, 1, 7, NULL, 0), SRUP_SEQ_OK);
	assert_int_equal(accepted_on_disk(f, 1), 7);
	assert_int_equal(rmdir(tmp), 0);
	assert_int_equal(srup_seqstore_accept(s, cap + 1, 1, NULL, 0), SRUP_SEQ_OK);
	srup_seqstore_free(s);
	s = open_ok(f->dir);
	assert_int_equal(srup_seqstore_count(s), cap + 1);
	assert_int_equal(srup_seqstore_last_accepted(s, 1), 7);
	srup_seqstore_free(s);
}

static void test_creates_missing_state_dir(void **state)
{
	struct fixture *f = *state;
	char nested[4300];
	struct srup_seqstore *s;

	snprintf(nested, sizeof(nested), "%s/a/b/state", f->dir);
	s = open_ok(nested);
	assert_int_equal(next_ok(s, 1), 1);
	srup_seqstore_free(s);
	s = open_ok(nested);
	assert_int_equal(srup_seqstore_sent_reserved(s, 1), SRUP_SEQSTORE_SEND_RESERVATION);
	srup_seqstore_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_first_sequence_is_one, setup, teardown),
		cmocka_unit_test_setup_teardown(test_next_is_max_of_sent_and_accepted_plus_one, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_accept_only_greater, setup, teardown),
		cmocka_unit_test_setup_teardown(test_exhausted_counter, setup, teardown),
		cmocka_unit_test_setup_teardown(test_persists_across_reopen, setup, teardown),
		cmocka_unit_test_setup_teardown(test_atomic_write_leaves_no_temp_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_stale_temp_file_is_ignored, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_format_is_the_documented_one, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_corrupt_byte_detected, setup, teardown),
		cmocka_unit_test_setup_teardown(test_truncated_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed_lines, setup, teardown),
		cmocka_unit_test_setup_teardown(test_order_count_and_trailing_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_held_second_open_fails, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lock_held_by_other_process, setup, teardown),
		cmocka_unit_test_setup_teardown(test_peer_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_write_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_creates_missing_state_dir, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sends_within_reservation_persist_nothing, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reservation_survives_restart_never_reuses,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_restart_keeps_the_max_rule, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reservation_stops_at_the_top, setup, teardown),
		cmocka_unit_test_setup_teardown(test_format1_migrated_at_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_staged_accepts_commit_together, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_commit_undoes_every_staged_accept, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_staged_accepts_reach_disk_with_a_reservation,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_stage_respects_peer_bound, setup, teardown),
		cmocka_unit_test_setup_teardown(test_format2_migrated_at_open, setup, teardown),
		cmocka_unit_test_setup_teardown(test_commits_write_in_place, setup, teardown),
		cmocka_unit_test_setup_teardown(test_unsynced_commits_leave_the_synced_slot_alone,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_write_keeps_the_previous_commit, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_one_damaged_slot_uses_the_other, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_both_slots_damaged_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_equal_generations_is_an_error, setup, teardown),
		cmocka_unit_test_setup_teardown(test_failed_slot_write_rewrites_the_file, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_growth_rewrites_with_bigger_slots, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_failed_growth_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_format1_migration_failure_is_an_error, setup,
						teardown),
	};
	return cmocka_run_group_tests_name("seqstore", tests, NULL, NULL);
}
