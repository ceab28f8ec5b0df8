/* Unit tests of the hook runner (device-side/srup_hook.h) and of the
 * parts of the downloader that need no HTTP server (srup_update.h): the
 * digest field, refused schemes, an unreachable server, cancelling a
 * transfer that hangs. The HTTP(S) paths run in the integration tests
 * (test_device_role.py) against tests/lib/http_server.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-event.h>

#include "srup_hook.h"
#include "srup_update.h"
#include "test_broker.h"

struct run {
	sd_event *loop;
	bool done;
	struct srup_hook_result result;
	bool timer_fired_before_done;
	bool timer_fired;
	const char *release; /* created by the timer, if set */
};

static char tmp[4096];

static int group_setup(void **state)
{
	sigset_t mask;

	(void)state;
	/* As the daemons do: the loop's signals are blocked; a hook must
	 * still get them. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	return test_tmpdir("srup-hook", tmp);
}

static int group_teardown(void **state)
{
	(void)state;
	test_rm_rf(tmp);
	return 0;
}

static void on_done(const struct srup_hook_result *r, void *user)
{
	struct run *run = user;

	run->done = true;
	run->result = *r;
	run->timer_fired_before_done = run->timer_fired;
	sd_event_exit(run->loop, 0);
}

static int on_timer(sd_event_source *s, uint64_t usec, void *user)
{
	struct run *run = user;

	(void)s;
	(void)usec;
	run->timer_fired = true;
	if (run->release)
		close(open(run->release, O_WRONLY | O_CREAT, 0600));
	return 0;
}

/* Runs argv to its end on a fresh loop. */
static struct srup_hook_result run_hook(char *const argv[], const char *in, unsigned timeout_s,
					struct run *run)
{
	struct srup_hook *h = NULL;
	char err[256] = "";
	const char *release = run->release;

	memset(run, 0, sizeof(*run));
	run->release = release;
	assert_int_equal(sd_event_new(&run->loop), 0);
	assert_int_equal(sd_event_add_time_relative(run->loop, NULL, CLOCK_MONOTONIC, 100000, 0,
						    on_timer, run),
			 0);
	if (srup_hook_start(run->loop, "test", argv, in, in ? strlen(in) : 0, timeout_s, on_done,
			    run, &h, err, sizeof(err)) != 0)
		fail_msg("start: %s", err);
	assert_true(srup_hook_pid(h) > 0);
	assert_int_equal(sd_event_loop(run->loop), 0);
	assert_true(run->done);
	srup_hook_free(h);
	sd_event_unref(run->loop);
	return run->result;
}

static char *read_file(const char *path)
{
	static char buf[4096];
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	return buf;
}

static void test_argv_and_stdin(void **state)
{
	char out[4200], script[8800];
	struct run run = {0};

	(void)state;
	snprintf(out, sizeof(out), "%s/out", tmp);
	snprintf(script, sizeof(script), "printf '%%s|%%s|' \"$1\" \"$2\" > %s; cat >> %s", out, out);
	/* Words with blanks and shell characters reach the program as they are. */
	char *argv[] = {"/bin/sh", "-c", script, "sh", "a b", "$(x);*", NULL};
	struct srup_hook_result r = run_hook(argv, "from stdin", 5, &run);

	assert_true(srup_hook_succeeded(&r));
	assert_string_equal(read_file(out), "a b|$(x);*|from stdin");
}

static void test_exit_status(void **state)
{
	struct run run = {0};
	char *argv[] = {"/bin/sh", "-c", "echo some output; exit 3", NULL};
	struct srup_hook_result r = run_hook(argv, NULL, 5, &run);

	(void)state;
	assert_true(r.exited);
	assert_int_equal(r.exit_status, 3);
	assert_false(srup_hook_succeeded(&r));
	assert_false(r.timed_out);
}

/* The loop runs on while the hook does: the hook waits for a file that
 * only a timer of the loop creates. */
static void test_loop_not_blocked(void **state)
{
	struct run run = {0};
	char release[4200], script[8800];

	(void)state;
	snprintf(release, sizeof(release), "%s/release", tmp);
	snprintf(script, sizeof(script), "while [ ! -e %s ]; do sleep 0.05; done", release);
	run.release = release;
	char *argv[] = {"/bin/sh", "-c", script, NULL};
	struct srup_hook_result r = run_hook(argv, NULL, 60, &run);

	assert_true(srup_hook_succeeded(&r));
	assert_true(run.timer_fired_before_done);
}

static void test_timeout_sigterm(void **state)
{
	struct run run = {0};
	char *argv[] = {"/bin/sleep", "30", NULL};
	struct srup_hook_result r = run_hook(argv, NULL, 1, &run);

	(void)state;
	assert_true(r.timed_out);
	assert_false(r.exited);
	assert_int_equal(r.signal, SIGTERM); /* unblocked in the child */
	assert_false(srup_hook_succeeded(&r));
}

static void test_timeout_sigkill(void **state)
{
	struct run run = {0};
	char *argv[] = {"/bin/sh", "-c", "trap '' TERM; sleep 30", NULL};
	struct srup_hook_result r = run_hook(argv, NULL, 1, &run);

	(void)state;
	assert_true(r.timed_out);
	assert_int_equal(r.signal, SIGKILL);
}

static void test_refused_programs(void **state)
{
	sd_event *loop;
	struct srup_hook *h = NULL;
	char err[256];
	char *relative[] = {"sleep", "1", NULL};
	char *missing[] = {"/nonexistent/program", NULL};

	(void)state;
	assert_int_equal(sd_event_new(&loop), 0);
	assert_int_equal(srup_hook_start(loop, "t", relative, NULL, 0, 5, on_done, NULL, &h, err,
					 sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "absolute path"));
	assert_int_equal(srup_hook_start(loop, "t", missing, NULL, 0, 5, on_done, NULL, &h, err,
					 sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "/nonexistent/program"));
	assert_null(h);
	sd_event_unref(loop);
}

/* Freeing a running hook kills it; done is not called. */
static void test_free_running(void **state)
{
	sd_event *loop;
	struct srup_hook *h = NULL;
	struct run run = {0};
	char err[256];
	char *argv[] = {"/bin/sleep", "30", NULL};
	pid_t pid;

	(void)state;
	assert_int_equal(sd_event_new(&loop), 0);
	run.loop = loop;
	assert_int_equal(srup_hook_start(loop, "t", argv, NULL, 0, 60, on_done, &run, &h, err,
					 sizeof(err)),
			 0);
	pid = srup_hook_pid(h);
	srup_hook_free(h);
	assert_int_equal(kill(pid, 0), -1); /* reaped: no such process */
	assert_false(run.done);
	sd_event_unref(loop);
}

/* ---- srup_update without a server ---------------------------------------- */

struct fetch {
	sd_event *loop;
	bool done;
	struct srup_update_result result;
};

static void on_fetched(struct srup_update *u, const struct srup_update_result *r, void *user)
{
	struct fetch *f = user;

	(void)u;
	f->done = true;
	f->result = *r;
	sd_event_exit(f->loop, 0);
}

static size_t dir_entries(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *de;
	size_t n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
	closedir(d);
	return n;
}

static struct srup_update_result fetch(const char *url, struct srup_update_config *cfg)
{
	struct fetch f = {0};
	struct srup_update *u = NULL;
	uint8_t digest[32] = {0};
	char err[256] = "";

	assert_int_equal(sd_event_new(&f.loop), 0);
	if (srup_update_start(f.loop, cfg, url, digest, tmp, "staged", on_fetched, &f, &u, err,
			      sizeof(err)) != 0)
		fail_msg("start: %s", err);
	assert_int_equal(sd_event_loop(f.loop), 0);
	assert_true(f.done);
	srup_update_free(u);
	sd_event_unref(f.loop);
	return f.result;
}

static void test_update_refused_and_unreachable(void **state)
{
	struct srup_update_config cfg = {.max_bytes = 1000, .connect_timeout_seconds = 5,
					 .timeout_seconds = 10, .max_redirects = 2};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	char url[128];
	int s;

	(void)state;
	test_rm_rf(tmp);
	assert_int_equal(mkdir(tmp, 0700), 0);
	/* A closed port: no HTTP answer at all. */
	s = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
	close(s);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/x", ntohs(a.sin_port));
	assert_int_equal(fetch(url, &cfg).outcome, SRUP_UPDATE_UNREACHABLE);
	/* Only http and https. */
	assert_int_not_equal(fetch("file:///etc/hostname", &cfg).outcome, SRUP_UPDATE_VERIFIED);
	assert_int_not_equal(fetch("ftp://127.0.0.1/x", &cfg).outcome, SRUP_UPDATE_VERIFIED);
	assert_int_equal(dir_entries(tmp), 0); /* nothing left behind */
}

/* A server that accepts but never answers: freeing the update cancels it
 * and removes the partial file. */
static void test_update_cancel(void **state)
{
	struct srup_update_config cfg = {.max_bytes = 1000, .connect_timeout_seconds = 5,
					 .timeout_seconds = 60, .max_redirects = 0};
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t alen = sizeof(a);
	struct srup_update *u = NULL;
	struct fetch f = {0};
	uint8_t digest[32] = {0};
	char url[128], err[256];
	int s;

	(void)state;
	test_rm_rf(tmp);
	assert_int_equal(mkdir(tmp, 0700), 0);
	s = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(bind(s, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(s, 4), 0);
	assert_int_equal(getsockname(s, (struct sockaddr *)&a, &alen), 0);
	snprintf(url, sizeof(url), "http://127.0.0.1:%u/hang", ntohs(a.sin_port));
	assert_int_equal(sd_event_new(&f.loop), 0);
	assert_int_equal(srup_update_start(f.loop, &cfg, url, digest, tmp, "staged", on_fetched, &f,
					   &u, err, sizeof(err)),
			 0);
	assert_int_equal(dir_entries(tmp), 1); /* the .part file */
	srup_update_free(u);
	assert_false(f.done);
	assert_int_equal(dir_entries(tmp), 0);
	close(s);
	/* A name that is not a plain file name is refused. */
	assert_int_equal(srup_update_start(f.loop, &cfg, url, digest, tmp, "../x", on_fetched, &f,
					   &u, err, sizeof(err)),
			 -1);
	sd_event_unref(f.loop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_argv_and_stdin),
		cmocka_unit_test(test_exit_status),
		cmocka_unit_test(test_loop_not_blocked),
		cmocka_unit_test(test_timeout_sigterm),
		cmocka_unit_test(test_timeout_sigkill),
		cmocka_unit_test(test_refused_programs),
		cmocka_unit_test(test_free_running),
		cmocka_unit_test(test_update_refused_and_unreachable),
		cmocka_unit_test(test_update_cancel),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
