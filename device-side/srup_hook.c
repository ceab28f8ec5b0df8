#include "srup_hook.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "srup_detail.h"
#include "srup_fileio.h"
#include "srup_log.h"

extern char **environ;

#define HOOK_LINE_MAX 256u

struct srup_hook {
	sd_event *loop;
	char name[64];
	pid_t pid;
	int pidfd;
	int out_fd;
	sd_event_source *pid_source, *out_source, *timer;
	bool reaped, term_sent;
	struct srup_hook_result result;
	srup_hook_done done;
	void *user;
	/* Output: the current line, what was logged, what was not. */
	char line[HOOK_LINE_MAX];
	size_t line_len;
	size_t logged, unlogged;
};

bool srup_hook_succeeded(const struct srup_hook_result *r)
{
	return r && r->exited && r->exit_status == 0 && !r->timed_out;
}

pid_t srup_hook_pid(const struct srup_hook *h)
{
	return h ? h->pid : -1;
}

/* One line of the hook's output; control bytes shown as '?'. */
static void hook_emit_line(struct srup_hook *h)
{
	if (h->logged >= SRUP_HOOK_LOG_MAX) {
		h->unlogged += h->line_len;
		h->line_len = 0;
		return;
	}
	for (size_t i = 0; i < h->line_len; i++)
		if (iscntrl((unsigned char)h->line[i]))
			h->line[i] = '?';
	srup_log(LOG_INFO, "hook %s[%d]: %.*s", h->name, (int)h->pid, (int)h->line_len, h->line);
	h->logged += h->line_len + 1;
	h->line_len = 0;
}

static void hook_take_output(struct srup_hook *h, const char *data, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (data[i] == '\n') {
			hook_emit_line(h);
			continue;
		}
		if (h->line_len == sizeof(h->line))
			hook_emit_line(h); /* a long line is logged in pieces */
		h->line[h->line_len++] = data[i];
	}
}

/* Reads what the pipe holds now; returns true at end of file or error. */
static bool hook_drain(struct srup_hook *h)
{
	char buf[4096];

	for (;;) {
		ssize_t n = read(h->out_fd, buf, sizeof(buf));

		if (n > 0) {
			hook_take_output(h, buf, (size_t)n);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return !(n < 0 && errno == EAGAIN);
	}
}

static void hook_close_output(struct srup_hook *h)
{
	if (h->line_len)
		hook_emit_line(h);
	h->out_source = sd_event_source_disable_unref(h->out_source);
	if (h->out_fd >= 0)
		close(h->out_fd);
	h->out_fd = -1;
}

static int hook_output_readable(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct srup_hook *h = user;

	(void)s;
	(void)fd;
	(void)revents;
	if (hook_drain(h))
		hook_close_output(h);
	return 0;
}

static int hook_exited(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct srup_hook *h = user;
	siginfo_t si;

	(void)s;
	(void)revents;
	memset(&si, 0, sizeof(si));
	if (waitid(P_PIDFD, (id_t)fd, &si, WEXITED | WNOHANG) < 0) {
		if (errno == EINTR || errno == EAGAIN)
			return 0;
		srup_log(LOG_ERR, "hook %s[%d]: waitid: %s", h->name, (int)h->pid, strerror(errno));
		si.si_code = CLD_KILLED;
		si.si_status = SIGKILL;
	} else if (si.si_pid == 0) {
		return 0; /* not yet */
	}
	h->reaped = true;
	h->pid_source = sd_event_source_disable_unref(h->pid_source);
	h->timer = sd_event_source_disable_unref(h->timer);
	/* What it wrote before exiting is in the pipe already; a descendant
	 * that keeps the pipe open is not waited for. */
	if (h->out_fd >= 0) {
		hook_drain(h);
		hook_close_output(h);
	}
	if (si.si_code == CLD_EXITED) {
		h->result.exited = true;
		h->result.exit_status = si.si_status;
		h->result.exec_failed = si.si_status == 127;
	} else {
		h->result.signal = si.si_status;
	}
	if (h->unlogged)
		srup_log(LOG_INFO, "hook %s[%d]: %zu further output bytes not logged", h->name,
			 (int)h->pid, h->unlogged);
	if (h->result.timed_out)
		srup_log(LOG_WARNING, "hook %s[%d] stopped at its timeout (signal %d)", h->name,
			 (int)h->pid, h->result.signal);
	else if (h->result.exited)
		srup_log(h->result.exit_status ? LOG_WARNING : LOG_INFO,
			 "hook %s[%d] exited with status %d%s", h->name, (int)h->pid,
			 h->result.exit_status,
			 h->result.exec_failed ? " (127: the program could not be run)" : "");
	else
		srup_log(LOG_WARNING, "hook %s[%d] killed by signal %d", h->name, (int)h->pid,
			 h->result.signal);
	if (h->done)
		h->done(&h->result, h->user);
	return 0;
}

static int hook_timer_fired(sd_event_source *s, uint64_t usec, void *user)
{
	struct srup_hook *h = user;

	if (!h->term_sent) {
		h->term_sent = true;
		h->result.timed_out = true;
		srup_log(LOG_WARNING, "hook %s[%d]: timeout; sending SIGTERM", h->name,
			 (int)h->pid);
		kill(-h->pid, SIGTERM);
		sd_event_source_set_time(s, usec + SRUP_HOOK_KILL_GRACE_S * 1000000ull);
		sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
	} else {
		srup_log(LOG_WARNING, "hook %s[%d]: still running; sending SIGKILL", h->name,
			 (int)h->pid);
		kill(-h->pid, SIGKILL);
	}
	return 0;
}

/* Between fork and execve only async-signal-safe calls. */
static void hook_child(char *const argv[], int in_fd, int out_fd)
{
	sigset_t none;

	setpgid(0, 0);
	sigemptyset(&none);
	sigprocmask(SIG_SETMASK, &none, NULL); /* the daemon blocks SIGTERM for its loop */
	signal(SIGPIPE, SIG_DFL);
	if (dup2(in_fd, STDIN_FILENO) < 0 || dup2(out_fd, STDOUT_FILENO) < 0 ||
	    dup2(out_fd, STDERR_FILENO) < 0)
		_exit(127);
	close_range(3, ~0u, 0);
	execve(argv[0], argv, environ);
	_exit(127);
}

static int hook_stdin_fd(const void *data, size_t len, char *err, size_t err_len)
{
	int fd;

	if (!data || len == 0) {
		fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			set_detail(err, err_len, "/dev/null: %s", strerror(errno));
		return fd;
	}
	fd = memfd_create("srup-hook-stdin", MFD_CLOEXEC);
	if (fd < 0) {
		set_detail(err, err_len, "memfd_create: %s", strerror(errno));
		return -1;
	}
	if (srup_write_all(fd, data, len) != 0) {
		set_detail(err, err_len, "writing the hook's input: %s", strerror(errno));
		close(fd);
		return -1;
	}
	if (lseek(fd, 0, SEEK_SET) < 0) {
		set_detail(err, err_len, "lseek: %s", strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int srup_hook_start(sd_event *loop, const char *name, char *const argv[],
		    const void *stdin_data, size_t stdin_len, unsigned timeout_seconds,
		    srup_hook_done done, void *user, struct srup_hook **out, char *err,
		    size_t err_len)
{
	struct srup_hook *h;
	int pipefd[2] = {-1, -1}, in_fd = -1;
	size_t argc = 0;
	uint64_t now;

	if (out)
		*out = NULL;
	if (!loop || !argv || !argv[0] || !out || timeout_seconds == 0) {
		set_detail(err, err_len, "srup_hook_start: invalid arguments");
		return -1;
	}
	while (argv[argc])
		argc++;
	if (argc > SRUP_HOOK_ARGV_MAX || argv[0][0] != '/') {
		set_detail(err, err_len, "hook %s: program must be an absolute path and at most "
			   "%u words", argv[0], SRUP_HOOK_ARGV_MAX);
		return -1;
	}
	if (stdin_len > SRUP_HOOK_STDIN_MAX) {
		set_detail(err, err_len, "hook input of %zu bytes is over %u", stdin_len,
			   SRUP_HOOK_STDIN_MAX);
		return -1;
	}
	if (access(argv[0], X_OK) != 0) {
		set_detail(err, err_len, "hook %s: %s", argv[0], strerror(errno));
		return -1;
	}
	h = calloc(1, sizeof(*h));
	if (!h) {
		set_detail(err, err_len, "out of memory");
		return -1;
	}
	h->pid = -1;
	h->pidfd = -1;
	h->out_fd = -1;
	h->loop = sd_event_ref(loop);
	h->done = done;
	h->user = user;
	snprintf(h->name, sizeof(h->name), "%s", name ? name : "hook");

	in_fd = hook_stdin_fd(stdin_data, stdin_len, err, err_len);
	if (in_fd < 0)
		goto fail;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		set_detail(err, err_len, "pipe: %s", strerror(errno));
		goto fail;
	}
	h->pid = fork();
	if (h->pid < 0) {
		set_detail(err, err_len, "fork: %s", strerror(errno));
		goto fail;
	}
	if (h->pid == 0)
		hook_child(argv, in_fd, pipefd[1]);
	setpgid(h->pid, h->pid); /* also here: kill(-pid) must work at once */
	close(in_fd);
	in_fd = -1;
	close(pipefd[1]);
	pipefd[1] = -1;
	h->out_fd = pipefd[0];
	pipefd[0] = -1;
	fcntl(h->out_fd, F_SETFL, fcntl(h->out_fd, F_GETFL) | O_NONBLOCK);

	h->pidfd = pidfd_open(h->pid, 0);
	if (h->pidfd < 0) {
		set_detail(err, err_len, "pidfd_open: %s", strerror(errno));
		goto fail;
	}
	if (sd_event_now(loop, CLOCK_MONOTONIC, &now) < 0 ||
	    sd_event_add_io(loop, &h->pid_source, h->pidfd, EPOLLIN, hook_exited, h) < 0 ||
	    sd_event_add_io(loop, &h->out_source, h->out_fd, EPOLLIN, hook_output_readable, h) < 0 ||
	    sd_event_add_time(loop, &h->timer, CLOCK_MONOTONIC,
			      now + (uint64_t)timeout_seconds * 1000000ull, 0, hook_timer_fired,
			      h) < 0) {
		set_detail(err, err_len, "cannot watch the hook on the event loop");
		goto fail;
	}
	srup_log(LOG_INFO, "hook %s[%d] started: %s (%zu argument(s), timeout %u s)", h->name,
		 (int)h->pid, argv[0], argc - 1, timeout_seconds);
	*out = h;
	return 0;
fail:
	if (in_fd >= 0)
		close(in_fd);
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	srup_hook_free(h);
	return -1;
}

void srup_hook_free(struct srup_hook *h)
{
	if (!h)
		return;
	if (h->pid > 0 && !h->reaped) {
		siginfo_t si;

		kill(-h->pid, SIGKILL);
		if (h->pidfd >= 0)
			while (waitid(P_PIDFD, (id_t)h->pidfd, &si, WEXITED) < 0 && errno == EINTR)
				;
		else
			while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
				;
	}
	sd_event_source_disable_unref(h->pid_source);
	sd_event_source_disable_unref(h->out_source);
	sd_event_source_disable_unref(h->timer);
	if (h->pidfd >= 0)
		close(h->pidfd);
	if (h->out_fd >= 0)
		close(h->out_fd);
	sd_event_unref(h->loop);
	free(h);
}
