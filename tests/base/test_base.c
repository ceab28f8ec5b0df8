/* Unit tests of base/: srup_fileio.h and srup_detail.h. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srup_detail.h"
#include "srup_fileio.h"

struct fixture {
	char dir[64];
	char path[128];
	char tmp[128];
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/srup-base-XXXXXX");
	if (!mkdtemp(f->dir)) {
		free(f);
		return -1;
	}
	snprintf(f->path, sizeof(f->path), "%s/state", f->dir);
	snprintf(f->tmp, sizeof(f->tmp), "%s/state.tmp", f->dir);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	unlink(f->tmp);
	unlink(f->path);
	rmdir(f->dir);
	free(f);
	return 0;
}

static void assert_file_is(const char *path, const char *want)
{
	char got[64] = "";
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, got, sizeof(got) - 1);
	close(fd);
	assert_int_equal(n, (ssize_t)strlen(want));
	assert_string_equal(got, want);
}

static void replace_creates_then_replaces(void **state)
{
	struct fixture *f = *state;
	const char *step = "untouched";
	mode_t old_mask = umask(0);
	struct stat st;

	assert_int_equal(srup_replace_file(f->path, "first", 5, 0640, true, &step), 0);
	assert_file_is(f->path, "first");
	assert_int_equal(stat(f->path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0640);
	assert_int_equal(srup_replace_file(f->path, "second", 6, 0600, false, &step), 0);
	umask(old_mask);
	assert_file_is(f->path, "second");
	/* No temporary file is left behind, and step is only set on failure. */
	assert_int_equal(access(f->tmp, F_OK), -1);
	assert_string_equal(step, "untouched");
}

static void replace_never_follows_a_planted_link(void **state)
{
	struct fixture *f = *state;
	const char *step = NULL;

	assert_int_equal(srup_replace_file(f->path, "kept", 4, 0600, true, NULL), 0);
	/* "<path>.tmp" a symlink to the file itself: written through, it
	 * would clobber it. */
	assert_int_equal(symlink(f->path, f->tmp), 0);
	errno = 0;
	assert_int_equal(srup_replace_file(f->path, "other", 5, 0600, true, &step), -1);
	assert_int_equal(errno, ELOOP);
	assert_string_equal(step, "create");
	assert_file_is(f->path, "kept");
}

static void sync_dir_reports_what_failed(void **state)
{
	struct fixture *f = *state;
	char missing[160];

	assert_int_equal(srup_sync_dir(f->dir), 0);
	snprintf(missing, sizeof(missing), "%s/none", f->dir);
	errno = 0;
	assert_int_equal(srup_sync_dir(missing), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(srup_replace_file(f->path, "x", 1, 0600, false, NULL), 0);
	errno = 0;
	assert_int_equal(srup_sync_dir(f->path), -1);
	assert_int_equal(errno, ENOTDIR);
}

static void sync_parent_of_paths(void **state)
{
	struct fixture *f = *state;
	char in_missing[160];

	assert_int_equal(srup_sync_parent(f->path), 0);
	/* A bare name is in the working directory. */
	assert_int_equal(srup_sync_parent("state"), 0);
	snprintf(in_missing, sizeof(in_missing), "%s/none/state", f->dir);
	errno = 0;
	assert_int_equal(srup_sync_parent(in_missing), -1);
	assert_int_equal(errno, ENOENT);
}

static void write_all_reports_a_bad_descriptor(void **state)
{
	struct fixture *f = *state;
	int fd;

	assert_int_equal(srup_replace_file(f->path, "r", 1, 0600, false, NULL), 0);
	fd = open(f->path, O_RDONLY | O_CLOEXEC);
	assert_true(fd >= 0);
	errno = 0;
	assert_int_equal(srup_write_all(fd, "abc", 3), -1);
	assert_int_equal(errno, EBADF);
	close(fd);
}

__attribute__((format(printf, 3, 4))) static int fail_with(char *detail, size_t len,
							    const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vset_detail(detail, len, fmt, ap);
	va_end(ap);
	return -1;
}

static void detail_is_optional_and_bounded(void **state)
{
	char small[8];
	char kept[4] = "abc";

	(void)state;
	set_detail(NULL, 16, "no %s", "buffer");
	set_detail(kept, 0, "no room");
	assert_string_equal(kept, "abc");
	set_detail(small, sizeof(small), "key %d of %s", 12, "peer");
	assert_string_equal(small, "key 12 ");
	assert_int_equal(fail_with(small, sizeof(small), "%s", "io"), -1);
	assert_string_equal(small, "io");
	assert_int_equal(fail_with(NULL, 0, "%s", "io"), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(replace_creates_then_replaces, setup, teardown),
		cmocka_unit_test_setup_teardown(replace_never_follows_a_planted_link, setup,
						teardown),
		cmocka_unit_test_setup_teardown(sync_dir_reports_what_failed, setup, teardown),
		cmocka_unit_test_setup_teardown(sync_parent_of_paths, setup, teardown),
		cmocka_unit_test_setup_teardown(write_all_reports_a_bad_descriptor, setup,
						teardown),
		cmocka_unit_test(detail_is_optional_and_bounded),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
