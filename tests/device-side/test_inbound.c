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
	struct srup_inbound *in = open_ok(f);
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
	struct srup_inbound *in = open_ok(f);
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
	struct srup_inbound *in = open_ok(f);
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
	struct srup_inbound *in = open_ok(f);
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
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
