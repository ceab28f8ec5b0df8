/* The activation request and result files (observer/activate/activate.h):
 * the root installer parses what the daemon's user wrote, so every
 * malformation is refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "activate.h"

#define SHA "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static void test_request_round_trip(void **state)
{
	struct activate_request req = {0}, back;
	char text[ACTIVATE_FILE_MAX];
	const char *why = NULL;

	(void)state;
	snprintf(req.file, sizeof(req.file), "/var/lib/srup-observer/updates/u.deb");
	snprintf(req.sha256, sizeof(req.sha256), SHA);
	snprintf(req.token, sizeof(req.token), "8d3e1c0a-token");
	assert_int_equal(activate_request_format(&req, text, sizeof(text)), 0);
	assert_int_equal(activate_request_parse(text, &back, &why), 0);
	assert_string_equal(back.file, req.file);
	assert_string_equal(back.sha256, SHA);
	assert_string_equal(back.token, req.token);
}

static void expect_bad_request(const char *text)
{
	struct activate_request req;
	const char *why = NULL;

	assert_int_equal(activate_request_parse(text, &req, &why), -1);
	assert_non_null(why);
	print_message("    refused (%s)\n", why);
}

static void test_bad_requests(void **state)
{
	char long_path[1200];

	(void)state;
	expect_bad_request("");
	expect_bad_request("file=/a\nsha256=" SHA "\n");                      /* no token */
	expect_bad_request("file=/a\nsha256=" SHA "\ntoken=t");                 /* unended */
	expect_bad_request("file=a\nsha256=" SHA "\ntoken=t\n");                /* relative */
	expect_bad_request("file=/a\nfile=/b\nsha256=" SHA "\ntoken=t\n");      /* twice */
	expect_bad_request("file=/a\nsha256=" SHA "0\ntoken=t\n");              /* 65 digits */
	expect_bad_request("file=/a\nsha256=0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\n"
			   "token=t\n");                                        /* upper case */
	expect_bad_request("file=/a\nsha256=" SHA "\ntoken=t\x01x\n");          /* control */
	expect_bad_request("file=/a\nsha256=" SHA "\ntoken=\n");                /* empty */
	expect_bad_request("file=/a\nsha256=" SHA "\ntoken=t\nother=1\n");      /* unknown */
	expect_bad_request("=x\nfile=/a\nsha256=" SHA "\ntoken=t\n");           /* no key */
	expect_bad_request("garbage\n");
	memset(long_path, 'a', sizeof(long_path) - 1);
	long_path[0] = '/';
	long_path[sizeof(long_path) - 1] = '\0';
	{
		char text[1400];

		snprintf(text, sizeof(text), "file=%s\nsha256=" SHA "\ntoken=t\n", long_path);
		expect_bad_request(text);
	}
}

static void test_result_round_trip_and_bad(void **state)
{
	struct activate_result res = {.status = 1}, back;
	char text[ACTIVATE_FILE_MAX];
	const char *why = NULL;

	(void)state;
	snprintf(res.token, sizeof(res.token), "tok");
	snprintf(res.message, sizeof(res.message), "dpkg said\nno");
	assert_int_equal(activate_result_format(&res, text, sizeof(text)), 0);
	/* The message is kept on one line. */
	assert_non_null(strstr(text, "message=dpkg said no\n"));
	assert_int_equal(activate_result_parse(text, &back, &why), 0);
	assert_int_equal(back.status, 1);
	assert_string_equal(back.token, "tok");
	assert_int_equal(activate_result_parse("token=t\nstatus=2\n", &back, &why), -1);
	assert_int_equal(activate_result_parse("token=t\nstatus=0\nstatus=0\n", &back, &why), -1);
	assert_int_equal(activate_result_parse("status=0\n", &back, &why), -1);
	assert_int_equal(activate_result_parse("token=t\nstatus=0\n", &back, &why), 0);
	assert_int_equal(back.status, 0);
}

static void test_sha256_and_copy(void **state)
{
	char dir[] = "/tmp/srup-activate-files-XXXXXX", hex[ACTIVATE_SHA256_HEX + 1];
	char in_path[64], out_path[64], copied[16] = {0};
	int in, out, dfd;

	(void)state;
	assert_non_null(mkdtemp(dir));
	dfd = open(dir, O_RDONLY | O_DIRECTORY);
	assert_true(dfd >= 0);
	assert_int_equal(activate_write_file(dfd, "in", "abc", 0600), 0);
	snprintf(in_path, sizeof(in_path), "%s/in", dir);
	snprintf(out_path, sizeof(out_path), "%s/out", dir);
	in = open(in_path, O_RDONLY);
	out = open(out_path, O_RDWR | O_CREAT | O_EXCL, 0600);
	assert_true(in >= 0 && out >= 0);
	/* SHA-256("abc"), FIPS 180-2 appendix B.1. */
	assert_int_equal(activate_sha256_fd(in, out, 3, hex), 0);
	assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_int_equal(pread(out, copied, sizeof(copied), 0), 3);
	assert_string_equal(copied, "abc");
	/* Past the bound: refused. */
	assert_int_equal(lseek(in, 0, SEEK_SET), 0);
	assert_int_equal(activate_sha256_fd(in, -1, 2, hex), -1);
	close(in);
	close(out);
	/* Reading: bounded, regular files only. */
	assert_int_equal(activate_read_file(dfd, "in", copied, sizeof(copied)), 0);
	assert_string_equal(copied, "abc");
	assert_int_equal(activate_read_file(dfd, "in", copied, 3), -1);
	assert_int_equal(symlinkat("in", dfd, "link"), 0);
	assert_int_equal(activate_read_file(dfd, "link", copied, sizeof(copied)), -1);
	unlinkat(dfd, "link", 0);
	unlinkat(dfd, "in", 0);
	unlink(out_path);
	close(dfd);
	rmdir(dir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_request_round_trip),
		cmocka_unit_test(test_bad_requests),
		cmocka_unit_test(test_result_round_trip_and_bad),
		cmocka_unit_test(test_sha256_and_copy),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
