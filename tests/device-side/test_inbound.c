/* Unit tests of the inbound record store (device-side/srup_inbound.h): no
 * broker, a temporary state directory each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srup_inbound.h"
#include "test_broker.h"

struct fixture {
	char dir[4096];
	char inbound[4200];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f || test_tmpdir("srup-inbound", f->dir) != 0)
		return -1;
	snprintf(f->inbound, sizeof(f->inbound), "%s/inbound", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	test_rm_rf(f->dir);
	free(f);
	return 0;
}

static struct srup_inbound *open_ok(struct fixture *f)
{
	struct srup_inbound *in = NULL;
	char detail[256] = "";

	assert_int_equal(srup_inbound_new(f->dir, &in, detail, sizeof(detail)), SRUP_INBOUND_OK);
	assert_non_null(in);
	return in;
}

/* A store with no slot file: every record a file of its own, as records
 * too large for a slot (or written while every slot is taken) are, and as
 * every record was before the slot file. */
static struct srup_inbound *open_file_form(struct fixture *f)
{
	struct srup_inbound *in = NULL;
	char detail[256] = "";

	assert_int_equal(srup_inbound_open(f->dir, 0, &in, detail, sizeof(detail)),
			 SRUP_INBOUND_OK);
	assert_non_null(in);
	return in;
}

static uint64_t write_ok(struct srup_inbound *in, const char *topic, const char *payload)
{
	uint64_t id = 0;

	assert_int_equal(srup_inbound_write(in, topic, strlen(topic), payload, strlen(payload), &id),
			 SRUP_INBOUND_OK);
	assert_true(id != 0);
	return id;
}

static unsigned files_in(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	unsigned n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

static void path_of(struct fixture *f, const char *name, char out[4300])
{
	snprintf(out, 4300, "%s/%s", f->inbound, name);
}

static void test_records_come_back_in_order_with_state_and_note(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in = open_ok(f);
	struct srup_inbound_record rec;
	uint64_t a = write_ok(in, "SRUP/a", "first");
	uint64_t b = write_ok(in, "SRUP/b", "second");
	uint64_t c = write_ok(in, "SRUP/c", "");

	assert_true(a < b && b < c);
	assert_int_equal(srup_inbound_mark_accepted(in, b), SRUP_INBOUND_OK);
	assert_int_equal(srup_inbound_note(in, b, "\x60", 1, true), SRUP_INBOUND_OK);
	srup_inbound_remove(in, c);
	srup_inbound_free(in);

	in = open_ok(f);
	assert_int_equal(srup_inbound_left(in), 2);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, a);
	assert_false(rec.accepted);
	assert_string_equal(rec.topic, "SRUP/a");
	assert_int_equal(rec.payload_len, 5);
	assert_memory_equal(rec.payload, "first", 5);
	assert_int_equal(rec.note_len, 0);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, b);
	assert_true(rec.accepted);
	assert_int_equal(rec.note_len, 1);
	assert_int_equal(rec.note[0], 0x60);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, 0);
	/* New IDs continue above the old ones. */
	assert_true(write_ok(in, "SRUP/d", "x") > b);
	srup_inbound_remove(in, a);
	srup_inbound_remove(in, b);
	srup_inbound_free(in);
	assert_int_equal(files_in(f->inbound), 1);
}

/* A FIFO named as a record must not block the start (it is removed). */
static void test_fifo_does_not_block_and_is_removed(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in = open_ok(f);
	struct srup_inbound_record rec;
	char fifo[4300];
	uint64_t a = write_ok(in, "SRUP/a", "kept");

	srup_inbound_free(in);
	path_of(f, "0000000000000002.msg", fifo);
	assert_int_equal(mkfifo(fifo, 0600), 0);
	in = open_ok(f);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, a);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, 0);
	assert_int_not_equal(access(fifo, F_OK), 0);
	srup_inbound_free(in);
}

/* A symlink named as a record is not followed. */
static void test_symlink_not_followed(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in = open_file_form(f);
	struct srup_inbound_record rec;
	char link[4300], target[4300];
	uint64_t a = write_ok(in, "SRUP/a", "x");

	srup_inbound_free(in);
	path_of(f, "0000000000000001.msg", target);
	path_of(f, "0000000000000005.msg", link);
	assert_int_equal(symlink(target, link), 0);
	in = open_ok(f);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, a);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, 0);
	assert_int_not_equal(access(link, F_OK), 0);
	assert_int_equal(access(target, F_OK), 0);
	srup_inbound_free(in);
}

/* A record named with the largest ID (or 0) is renamed into range: the next
 * ID never wraps to 0, "no record". */
static void test_out_of_range_ids_are_renumbered(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in = open_file_form(f);
	struct srup_inbound_record rec;
	char from[4300], to[4300];
	uint64_t a = write_ok(in, "SRUP/a", "low");
	uint64_t b = write_ok(in, "SRUP/b", "high");
	uint64_t c = write_ok(in, "SRUP/c", "zero"), id = 0;

	assert_int_equal(srup_inbound_note(in, b, "n", 1, false), SRUP_INBOUND_OK);
	srup_inbound_free(in);
	path_of(f, "0000000000000002.msg", from);
	path_of(f, "ffffffffffffffff.msg", to);
	assert_int_equal(rename(from, to), 0);
	path_of(f, "0000000000000002.out", from);
	path_of(f, "ffffffffffffffff.out", to);
	assert_int_equal(rename(from, to), 0);
	path_of(f, "0000000000000003.msg", from);
	path_of(f, "0000000000000000.msg", to);
	assert_int_equal(rename(from, to), 0);
	(void)b;
	(void)c;

	in = open_ok(f);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, a);
	srup_inbound_record_clear(&rec);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
		assert_true(rec.id > a && rec.id <= SRUP_INBOUND_ID_MAX);
		if (rec.payload_len == 4 && memcmp(rec.payload, "high", 4) == 0)
			assert_int_equal(rec.note_len, 1);
		else
			assert_memory_equal(rec.payload, "zero", 4);
		srup_inbound_record_clear(&rec);
	}
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, 0);
	assert_int_equal(srup_inbound_write(in, "t", 1, "p", 1, &id), SRUP_INBOUND_OK);
	assert_true(id > 3 && id <= SRUP_INBOUND_ID_MAX);
	srup_inbound_free(in);
	path_of(f, "ffffffffffffffff.msg", to);
	assert_int_not_equal(access(to, F_OK), 0);
}

static void test_damaged_record_and_orphan_note_removed(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in = open_file_form(f);
	struct srup_inbound_record rec;
	char path[4300];
	uint64_t a = write_ok(in, "SRUP/a", "payload");
	uint64_t b = write_ok(in, "SRUP/b", "payload");
	int fd;

	assert_int_equal(srup_inbound_note(in, 9, "x", 1, true), SRUP_INBOUND_OK); /* no record 9 */
	srup_inbound_free(in);
	path_of(f, "0000000000000001.msg", path);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, "X", 1, 20), 1); /* inside the topic: checksum fails */
	close(fd);
	in = open_ok(f);
	path_of(f, "0000000000000009.out", path);
	assert_int_not_equal(access(path, F_OK), 0);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, b);
	srup_inbound_record_clear(&rec);
	path_of(f, "0000000000000001.msg", path);
	assert_int_not_equal(access(path, F_OK), 0);
	(void)a;
	srup_inbound_free(in);
}

static void test_parse_checks_every_length(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in = open_file_form(f);
	const uint8_t *topic, *payload;
	size_t tlen, plen, len;
	uint8_t buf[256];
	char path[4300];
	uint64_t id = write_ok(in, "SRUP/x", "abc");
	FILE *fp;

	(void)id;
	srup_inbound_free(in);
	path_of(f, "0000000000000001.msg", path);
	fp = fopen(path, "rb");
	assert_non_null(fp);
	len = fread(buf, 1, sizeof(buf), fp);
	fclose(fp);
	assert_int_equal(len, SRUP_INBOUND_RECORD_OVERHEAD + 6 + 3);
	assert_int_equal(srup_inbound_parse(buf, len, &topic, &tlen, &payload, &plen),
			 SRUP_INBOUND_OK);
	assert_int_equal(tlen, 6);
	assert_int_equal(plen, 3);
	for (size_t cut = 0; cut < len; cut++)
		assert_int_equal(srup_inbound_parse(buf, cut, &topic, &tlen, &payload, &plen),
				 SRUP_INBOUND_E_DAMAGED);
	buf[11] = 0xff; /* topic length far beyond the file */
	assert_int_equal(srup_inbound_parse(buf, len, &topic, &tlen, &payload, &plen),
			 SRUP_INBOUND_E_DAMAGED);
	memset(buf + 8, 0xff, 8); /* both lengths at their largest: no overflow */
	assert_int_equal(srup_inbound_parse(buf, len, &topic, &tlen, &payload, &plen),
			 SRUP_INBOUND_E_DAMAGED);
}

static void test_bounds_refused(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in = open_ok(f);
	static char big[SRUP_INBOUND_PAYLOAD_MAX + 1];
	uint64_t id = 1;

	assert_int_equal(srup_inbound_write(in, "t", 1, big, sizeof(big), &id), SRUP_INBOUND_E_ARG);
	assert_int_equal(id, 0);
	assert_int_equal(srup_inbound_note(in, 1, big, SRUP_INBOUND_NOTE_MAX + 1, true),
			 SRUP_INBOUND_E_ARG);
	assert_int_equal(srup_inbound_note(in, 0, "x", 1, true), SRUP_INBOUND_E_ARG);
	srup_inbound_free(in);
	assert_int_equal(files_in(f->inbound), 0);
}

/* ---- the slot file -------------------------------------------------- */

static void slots_path(struct fixture *f, char out[4300])
{
	path_of(f, "slots", out);
}

static off_t size_of(const char *path)
{
	struct stat st;

	assert_int_equal(stat(path, &st), 0);
	return st.st_size;
}

/* The slot holding record id, found by parsing every slot. */
static size_t slot_of(struct fixture *f, uint64_t id)
{
	static uint8_t buf[SRUP_INBOUND_SLOT_SIZE];
	struct srup_inbound_slot v;
	char path[4300];
	int fd;

	slots_path(f, path);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	for (size_t i = 0;; i++) {
		ssize_t got = pread(fd, buf, sizeof(buf), (off_t)(i * sizeof(buf)));

		assert_int_equal(got, (ssize_t)sizeof(buf));
		assert_int_equal(srup_inbound_parse_slot(buf, sizeof(buf), &v), SRUP_INBOUND_OK);
		if (v.id == id) {
			close(fd);
			return i;
		}
	}
}

static void poke(struct fixture *f, size_t slot, size_t at, uint8_t byte)
{
	char path[4300];
	int fd;

	slots_path(f, path);
	fd = open(path, O_WRONLY);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, &byte, 1, (off_t)(slot * SRUP_INBOUND_SLOT_SIZE + at)), 1);
	close(fd);
}

/* Small records go to slots of one file (no file each), and a slot is used
 * again once its record is removed: a run of write/remove leaves the file
 * at its first size. */
static void test_slots_hold_small_records_and_are_reused(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in = open_ok(f);
	struct srup_inbound_record rec;
	char path[4300];
	uint64_t a = write_ok(in, "SRUP/a", "first"), b = write_ok(in, "SRUP/b", "second");
	off_t first_size;

	assert_int_equal(files_in(f->inbound), 1);
	slots_path(f, path);
	first_size = size_of(path);
	assert_true(first_size > 0 && first_size % SRUP_INBOUND_SLOT_SIZE == 0);
	assert_int_equal(srup_inbound_mark_accepted(in, b), SRUP_INBOUND_OK);
	assert_int_equal(srup_inbound_note(in, b, "\x61\x62", 2, false), SRUP_INBOUND_OK);
	assert_int_equal(srup_inbound_note_sync(in, b), SRUP_INBOUND_OK);
	for (int i = 0; i < 1000; i++) {
		uint64_t id = write_ok(in, "SRUP/t", "transient");

		assert_int_equal(srup_inbound_mark_accepted(in, id), SRUP_INBOUND_OK);
		srup_inbound_remove(in, id);
	}
	assert_int_equal(size_of(path), first_size);
	assert_int_equal(files_in(f->inbound), 1);
	srup_inbound_free(in);

	in = open_ok(f);
	assert_int_equal(srup_inbound_left(in), 2);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, a);
	assert_false(rec.accepted);
	assert_string_equal(rec.topic, "SRUP/a");
	assert_int_equal(rec.payload_len, 5);
	assert_memory_equal(rec.payload, "first", 5);
	assert_int_equal(rec.note_len, 0);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, b);
	assert_true(rec.accepted);
	assert_int_equal(rec.note_len, 2);
	assert_memory_equal(rec.note, "\x61\x62", 2);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, 0);
	assert_true(write_ok(in, "SRUP/c", "x") > b);
	srup_inbound_remove(in, a);
	srup_inbound_remove(in, b);
	srup_inbound_free(in);
	in = open_ok(f);
	assert_int_equal(srup_inbound_left(in), 1);
	srup_inbound_free(in);
}

/* A slot torn or changed on disk is reported and freed, never handed on;
 * the records around it come back; a torn note leaves its record without
 * the note. */
static void test_torn_slots_are_skipped(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in = open_ok(f);
	struct srup_inbound_record rec;
	uint64_t a = write_ok(in, "SRUP/a", "payload-a"), b = write_ok(in, "SRUP/b", "payload-b");
	uint64_t c = write_ok(in, "SRUP/c", "payload-c"), d = write_ok(in, "SRUP/d", "payload-d");
	uint64_t e = write_ok(in, "SRUP/e", "payload-e");

	assert_int_equal(srup_inbound_note(in, d, "n", 1, true), SRUP_INBOUND_OK);
	size_t sa, sc, sd, se;

	srup_inbound_free(in);
	sa = slot_of(f, a);
	sc = slot_of(f, c);
	sd = slot_of(f, d);
	se = slot_of(f, e);
	poke(f, sa, SRUP_INBOUND_SLOT_HEADER + 8, 'X'); /* in the payload */
	poke(f, sc, 33, 0x5a);                          /* the state word */
	poke(f, sd, 48, 'm');                           /* the note */
	poke(f, se, 0, 'T');                            /* the magic */

	in = open_ok(f);
	assert_int_equal(srup_inbound_left(in), 2);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, b);
	assert_memory_equal(rec.payload, "payload-b", 9);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, d);
	assert_int_equal(rec.note_len, 0);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, 0);
	srup_inbound_free(in);
	/* Freed: not reported again, and their slots taken by new records. */
	in = open_ok(f);
	assert_int_equal(srup_inbound_left(in), 2);
	for (int i = 0; i < 3; i++)
		write_ok(in, "SRUP/n", "new");
	srup_inbound_free(in);
	assert_int_equal(files_in(f->inbound), 1);
}

static void test_parse_slot_checks_every_field(void **state)
{
	static uint8_t buf[SRUP_INBOUND_SLOT_SIZE], copy[SRUP_INBOUND_SLOT_SIZE];
	struct fixture *f = *state;
	struct srup_inbound *in = open_ok(f);
	struct srup_inbound_slot v;
	char path[4300];
	uint64_t id = write_ok(in, "SRUP/x", "abc");
	int fd;

	assert_int_equal(srup_inbound_note(in, id, "zz", 2, true), SRUP_INBOUND_OK);
	srup_inbound_free(in);
	slots_path(f, path);
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, sizeof(buf), 0), (ssize_t)sizeof(buf));
	close(fd);
	assert_int_equal(srup_inbound_parse_slot(buf, sizeof(buf), &v), SRUP_INBOUND_OK);
	assert_int_equal(v.id, id);
	assert_int_equal(v.topic_len, 6);
	assert_memory_equal(v.topic, "SRUP/x", 6);
	assert_int_equal(v.payload_len, 3);
	assert_memory_equal(v.payload, "abc", 3);
	assert_int_equal(v.note_len, 2);
	assert_false(v.accepted);
	assert_int_equal(srup_inbound_parse_slot(buf, sizeof(buf) - 1, &v), SRUP_INBOUND_E_DAMAGED);
	assert_int_equal(srup_inbound_parse_slot(NULL, sizeof(buf), &v), SRUP_INBOUND_E_DAMAGED);
	/* Every byte of header, topic and payload is covered: a change is
	 * damage; in the note area, the note is dropped. */
	for (size_t at = 0; at < SRUP_INBOUND_SLOT_HEADER + 9; at++) {
		memcpy(copy, buf, sizeof(buf));
		copy[at] ^= 0x01;
		if (at >= 40 && at < 120) {
			assert_int_equal(srup_inbound_parse_slot(copy, sizeof(copy), &v),
					 SRUP_INBOUND_OK);
			assert_true(v.note_damaged && !v.note);
		} else if (at >= 120 && at < SRUP_INBOUND_SLOT_HEADER) {
			assert_int_equal(srup_inbound_parse_slot(copy, sizeof(copy), &v),
					 SRUP_INBOUND_OK); /* reserved */
		} else {
			assert_int_equal(srup_inbound_parse_slot(copy, sizeof(copy), &v),
					 SRUP_INBOUND_E_DAMAGED);
		}
	}
	/* Lengths past the slot, each and together: no overflow. */
	memcpy(copy, buf, sizeof(buf));
	memset(copy + 16, 0xff, 8);
	assert_int_equal(srup_inbound_parse_slot(copy, sizeof(copy), &v), SRUP_INBOUND_E_DAMAGED);
	memcpy(copy, buf, sizeof(buf));
	copy[18] = 0x0f; /* topic 3846 + payload 3 fits; the checksum then fails */
	assert_int_equal(srup_inbound_parse_slot(copy, sizeof(copy), &v), SRUP_INBOUND_E_DAMAGED);
	/* A free slot. */
	memset(copy, 0, 8);
	assert_int_equal(srup_inbound_parse_slot(copy, sizeof(copy), &v), SRUP_INBOUND_OK);
	assert_int_equal(v.id, 0);
}

/* With every slot taken at the bound, a record is a file of its own; a
 * freed slot is taken again (round the ring); both forms come back in ID
 * order. Below the bound, the file grows. */
static void test_full_slots_fall_back_to_files(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in = NULL;
	struct srup_inbound_record rec;
	char detail[256], path[4300], name[32];
	uint64_t ids[8];

	assert_int_equal(srup_inbound_open(f->dir, 4, &in, detail, sizeof(detail)),
			 SRUP_INBOUND_OK);
	for (int i = 0; i < 4; i++) {
		char payload[16];

		snprintf(payload, sizeof(payload), "slot-%d", i);
		ids[i] = write_ok(in, "SRUP/s", payload);
	}
	assert_int_equal(files_in(f->inbound), 1);
	slots_path(f, path);
	assert_int_equal(size_of(path), 4 * SRUP_INBOUND_SLOT_SIZE);
	ids[4] = write_ok(in, "SRUP/f", "file-4");
	assert_int_equal(files_in(f->inbound), 2);
	snprintf(name, sizeof(name), "%016llx.msg", (unsigned long long)ids[4]);
	path_of(f, name, path);
	assert_int_equal(access(path, F_OK), 0);
	assert_int_equal(srup_inbound_mark_accepted(in, ids[4]), SRUP_INBOUND_OK);
	assert_int_equal(srup_inbound_note(in, ids[4], "o", 1, true), SRUP_INBOUND_OK);
	srup_inbound_remove(in, ids[1]);
	ids[5] = write_ok(in, "SRUP/s", "slot-5"); /* the freed slot */
	assert_int_equal(files_in(f->inbound), 3); /* slots, <id>.acc, <id>.out */
	srup_inbound_remove(in, ids[2]);
	srup_inbound_free(in);

	assert_int_equal(srup_inbound_open(f->dir, 4, &in, detail, sizeof(detail)),
			 SRUP_INBOUND_OK);
	{
		const uint64_t want[] = {ids[0], ids[3], ids[4], ids[5]};
		const char *payloads[] = {"slot-0", "slot-3", "file-4", "slot-5"};

		for (int i = 0; i < 4; i++) {
			assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
			assert_int_equal(rec.id, want[i]);
			assert_int_equal(rec.payload_len, 6);
			assert_memory_equal(rec.payload, payloads[i], 6);
			assert_int_equal(rec.accepted, i == 2);
			assert_int_equal(rec.note_len, i == 2 ? 1 : 0);
			srup_inbound_record_clear(&rec);
		}
	}
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, 0);
	/* One slot free (ids[2]'s): taken; the next is a file again. */
	ids[6] = write_ok(in, "SRUP/s", "slot-6");
	assert_int_equal(files_in(f->inbound), 3);
	ids[7] = write_ok(in, "SRUP/f", "file-7");
	assert_int_equal(files_in(f->inbound), 4);
	for (int i = 0; i < 8; i++)
		srup_inbound_remove(in, ids[i]);
	assert_int_equal(files_in(f->inbound), 1);
	srup_inbound_free(in);

	/* Below the bound the file doubles. */
	assert_int_equal(srup_inbound_open(f->dir, 16, &in, detail, sizeof(detail)),
			 SRUP_INBOUND_OK);
	for (int i = 0; i < 9; i++)
		write_ok(in, "SRUP/g", "grow");
	slots_path(f, path);
	assert_int_equal(size_of(path), 16 * SRUP_INBOUND_SLOT_SIZE);
	assert_int_equal(files_in(f->inbound), 1);
	srup_inbound_free(in);
	in = open_ok(f);
	assert_int_equal(srup_inbound_left(in), 9);
	for (uint64_t id = 1; id <= 9; id++)
		srup_inbound_remove(in, id);
	srup_inbound_free(in);
	/* A start gives back the free slots at the end, down to the first
	 * size (8 slots), and the file grows again from there. */
	in = open_ok(f);
	assert_int_equal(srup_inbound_left(in), 0);
	assert_int_equal(size_of(path), 8 * SRUP_INBOUND_SLOT_SIZE);
	for (int i = 0; i < 9; i++)
		write_ok(in, "SRUP/g", "again");
	assert_int_equal(size_of(path), 16 * SRUP_INBOUND_SLOT_SIZE);
	srup_inbound_free(in);
}

/* A record larger than a slot holds is a file of its own; one that just
 * fits takes a slot. */
static void test_large_payload_is_a_file(void **state)
{
	static uint8_t big[SRUP_INBOUND_PAYLOAD_MAX], fits[SRUP_INBOUND_SLOT_CAPACITY - 6];
	struct fixture *f = *state;
	struct srup_inbound *in = open_ok(f);
	struct srup_inbound_record rec;
	uint64_t a, b, c;

	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 7 + 3);
	memcpy(fits, big, sizeof(fits));
	assert_int_equal(srup_inbound_write(in, "SRUP/b", 6, big, sizeof(big), &a),
			 SRUP_INBOUND_OK);
	assert_int_equal(files_in(f->inbound), 1); /* no slot file yet */
	assert_int_equal(srup_inbound_write(in, "SRUP/f", 6, fits, sizeof(fits), &b),
			 SRUP_INBOUND_OK);
	assert_int_equal(files_in(f->inbound), 2);
	assert_int_equal(srup_inbound_write(in, "SRUP/g", 6, big, sizeof(fits) + 1, &c),
			 SRUP_INBOUND_OK);
	assert_int_equal(files_in(f->inbound), 3);
	assert_int_equal(srup_inbound_mark_accepted(in, a), SRUP_INBOUND_OK);
	assert_int_equal(srup_inbound_note(in, a, "big", 3, true), SRUP_INBOUND_OK);
	srup_inbound_free(in);

	in = open_ok(f);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, a);
	assert_true(rec.accepted);
	assert_int_equal(rec.payload_len, sizeof(big));
	assert_memory_equal(rec.payload, big, sizeof(big));
	assert_int_equal(rec.note_len, 3);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, b);
	assert_int_equal(rec.payload_len, sizeof(fits));
	assert_memory_equal(rec.payload, fits, sizeof(fits));
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, c);
	assert_int_equal(rec.payload_len, sizeof(fits) + 1);
	assert_memory_equal(rec.payload, big, sizeof(fits) + 1);
	srup_inbound_record_clear(&rec);
	srup_inbound_remove(in, a);
	srup_inbound_remove(in, b);
	srup_inbound_remove(in, c);
	srup_inbound_free(in);
	assert_int_equal(files_in(f->inbound), 1);
}

/* ---- records an earlier version left -------------------------------- */

static uint64_t fnv(const void *data, size_t len, uint64_t h)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static void be32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static void put_file(struct fixture *f, const char *name, const uint8_t *data, size_t len)
{
	char path[4300];
	FILE *fp;

	path_of(f, name, path);
	fp = fopen(path, "wb");
	assert_non_null(fp);
	assert_int_equal(fwrite(data, 1, len, fp), len);
	fclose(fp);
}

/* A record file and note file byte for byte as the file-per-record store
 * wrote them ("SRUPIN1", lengths, topic, payload, FNV-1a; "SRUPOUT",
 * length, note, FNV-1a). */
static void legacy_record(struct fixture *f, const char *name, const char *topic,
			  const char *payload)
{
	uint8_t buf[512];
	size_t t = strlen(topic), p = strlen(payload), len = 16 + t + p;

	memcpy(buf, "SRUPIN1", 8);
	be32(buf + 8, (uint32_t)t);
	be32(buf + 12, (uint32_t)p);
	memcpy(buf + 16, topic, t);
	memcpy(buf + 16 + t, payload, p);
	be64(buf + len, fnv(buf, len, 0xcbf29ce484222325ull));
	put_file(f, name, buf, len + 8);
}

static void legacy_note(struct fixture *f, const char *name, const char *note)
{
	uint8_t buf[128];
	size_t n = strlen(note), len = 12 + n;

	memcpy(buf, "SRUPOUT", 8);
	be32(buf + 8, (uint32_t)n);
	memcpy(buf + 12, note, n);
	be64(buf + len, fnv(buf, len, 0xcbf29ce484222325ull));
	put_file(f, name, buf, len + 8);
}

/* An upgraded node takes over the records the file-per-record store left
 * (accepted or not, with their notes), after them come the new ones, in
 * slots; removing one of the old removes its files. */
/* Staged records (written, flushed later by srup_inbound_sync) are
 * records like the others: read back in order at the next open, in a
 * slot or, when too large, as a file of their own (durable at once). */
static void test_staged_records_come_back(void **state)
{
	static uint8_t big[SRUP_INBOUND_SLOT_CAPACITY + 1];
	struct fixture *f = *state;
	struct srup_inbound *in = open_ok(f);
	struct srup_inbound_record rec;
	uint64_t a = 0, b = 0, c = 0;

	assert_int_equal(srup_inbound_sync(in), SRUP_INBOUND_OK); /* nothing written yet */
	memset(big, 0x5a, sizeof(big));
	assert_int_equal(srup_inbound_write_staged(in, "SRUP/a", 6, "first", 5, &a),
			 SRUP_INBOUND_OK);
	assert_int_equal(srup_inbound_write_staged(in, "SRUP/b", 6, big, sizeof(big), &b),
			 SRUP_INBOUND_OK);
	assert_int_equal(files_in(f->inbound), 2); /* the slot file and b's own */
	assert_int_equal(srup_inbound_sync(in), SRUP_INBOUND_OK);
	assert_int_equal(srup_inbound_sync(in), SRUP_INBOUND_OK); /* nothing new */
	assert_int_equal(srup_inbound_write_staged(in, "SRUP/c", 6, "third", 5, &c),
			 SRUP_INBOUND_OK);
	assert_true(a && b > a && c > b);
	assert_int_equal(srup_inbound_mark_accepted(in, c), SRUP_INBOUND_OK);
	srup_inbound_free(in); /* c never synced: as after the process was killed */

	in = open_ok(f);
	assert_int_equal(srup_inbound_left(in), 3);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, a);
	assert_memory_equal(rec.payload, "first", 5);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, b);
	assert_int_equal(rec.payload_len, sizeof(big));
	assert_memory_equal(rec.payload, big, sizeof(big));
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, c);
	assert_true(rec.accepted);
	assert_memory_equal(rec.topic, "SRUP/c", 6);
	srup_inbound_record_clear(&rec);
	srup_inbound_free(in);
}

static void test_records_of_the_file_format_are_taken_over(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in;
	struct srup_inbound_record rec;
	uint64_t fresh;

	assert_int_equal(mkdir(f->inbound, 0700), 0);
	legacy_record(f, "0000000000000003.acc", "SRUP/held", "held-request");
	legacy_note(f, "0000000000000003.out", "\x60");
	legacy_record(f, "0000000000000005.msg", "SRUP/new", "not-yet-checked");
	legacy_note(f, "0000000000000004.out", "\x6f"); /* its record gone */
	in = open_ok(f);
	assert_int_equal(srup_inbound_left(in), 2);
	fresh = write_ok(in, "SRUP/slot", "after the upgrade");
	assert_true(fresh > 5);
	srup_inbound_free(in);
	assert_int_equal(files_in(f->inbound), 4); /* .acc, .out, .msg, slots */

	in = open_ok(f);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, 3);
	assert_true(rec.accepted);
	assert_string_equal(rec.topic, "SRUP/held");
	assert_memory_equal(rec.payload, "held-request", 12);
	assert_int_equal(rec.note_len, 1);
	assert_int_equal(rec.note[0], 0x60);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, 5);
	assert_false(rec.accepted);
	assert_int_equal(rec.note_len, 0);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, fresh);
	assert_memory_equal(rec.payload, "after the upgrade", 17);
	srup_inbound_record_clear(&rec);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, 0);
	/* The old record goes on as a file: accepted, noted, removed. */
	assert_int_equal(srup_inbound_mark_accepted(in, 5), SRUP_INBOUND_OK);
	assert_int_equal(srup_inbound_note(in, 5, "\x61", 1, true), SRUP_INBOUND_OK);
	srup_inbound_remove(in, 3);
	assert_int_equal(files_in(f->inbound), 3); /* 5.acc, 5.out, slots */
	srup_inbound_remove(in, 5);
	srup_inbound_remove(in, fresh);
	srup_inbound_free(in);
	assert_int_equal(files_in(f->inbound), 1);
}

/* Something else under the slot file's name (a FIFO here) neither blocks
 * the start nor is written into: removed, and a slot file made. */
static void test_slot_file_not_regular_is_replaced(void **state)
{
	struct fixture *f = *state;
	struct srup_inbound *in;
	struct srup_inbound_record rec;
	char path[4300];
	struct stat st;
	uint64_t id;

	assert_int_equal(mkdir(f->inbound, 0700), 0);
	slots_path(f, path);
	assert_int_equal(mkfifo(path, 0600), 0);
	in = open_ok(f);
	id = write_ok(in, "SRUP/a", "x");
	srup_inbound_free(in);
	assert_int_equal(lstat(path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	in = open_ok(f);
	assert_int_equal(srup_inbound_next(in, &rec), SRUP_INBOUND_OK);
	assert_int_equal(rec.id, id);
	srup_inbound_record_clear(&rec);
	srup_inbound_free(in);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_records_come_back_in_order_with_state_and_note,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_fifo_does_not_block_and_is_removed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_symlink_not_followed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_out_of_range_ids_are_renumbered, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_damaged_record_and_orphan_note_removed, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_parse_checks_every_length, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bounds_refused, setup, teardown),
		cmocka_unit_test_setup_teardown(test_slots_hold_small_records_and_are_reused,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_torn_slots_are_skipped, setup, teardown),
		cmocka_unit_test_setup_teardown(test_parse_slot_checks_every_field, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_full_slots_fall_back_to_files, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_large_payload_is_a_file, setup, teardown),
		cmocka_unit_test_setup_teardown(test_staged_records_come_back, setup, teardown),
		cmocka_unit_test_setup_teardown(test_records_of_the_file_format_are_taken_over,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_slot_file_not_regular_is_replaced, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
