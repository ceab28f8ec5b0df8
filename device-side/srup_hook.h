/* Operator programs (activation, action and data hooks), run off the event
 * loop.
 *
 * A hook is started with fork + execve and an argument vector, never a
 * shell. Its stdin is the given data (or /dev/null), its stdout and stderr
 * one pipe read by the loop and logged line by line (at most
 * SRUP_HOOK_LOG_MAX bytes; the rest is counted, not kept). The child runs
 * in a process group of its own with signals unblocked; at the timeout the
 * group gets SIGTERM, SRUP_HOOK_KILL_GRACE_S later SIGKILL. The child is
 * watched through a pidfd on the loop and never waited for synchronously.
 * done runs on the loop once the child was reaped. */
#ifndef SRUP_HOOK_H
#define SRUP_HOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include <systemd/sd-event.h>

#define SRUP_HOOK_ARGV_MAX 32     /* words, the program included */
#define SRUP_HOOK_LOG_MAX 4096u   /* output bytes logged per run */
#define SRUP_HOOK_STDIN_MAX (1u << 20)
#define SRUP_HOOK_KILL_GRACE_S 5u

struct srup_hook;

struct srup_hook_result {
	bool exited;       /* exited by itself (exit_status valid) */
	int exit_status;   /* 0..255 when exited */
	int signal;        /* the signal that ended it, when !exited */
	bool timed_out;    /* the timeout was reached (it was signalled) */
	bool exec_failed;  /* execve failed (logged; exit status 127) */
};

/* true only for a hook that exited 0 within its timeout. */
bool srup_hook_succeeded(const struct srup_hook_result *r);

typedef void (*srup_hook_done)(const struct srup_hook_result *result, void *user);

/* Start argv[0] (an absolute path) with argv (NULL-terminated, at most
 * SRUP_HOOK_ARGV_MAX words). name labels its log lines. stdin_data may be
 * NULL. On success *out is the running hook, owned by the caller until
 * done has run (free it in done or later; freeing a running hook kills its
 * group with SIGKILL and reaps it without calling done). Returns 0, or -1
 * with a line in err. */
int srup_hook_start(sd_event *loop, const char *name, char *const argv[],
		    const void *stdin_data, size_t stdin_len, unsigned timeout_seconds,
		    srup_hook_done done, void *user, struct srup_hook **out, char *err,
		    size_t err_len);
void srup_hook_free(struct srup_hook *hook);
pid_t srup_hook_pid(const struct srup_hook *hook);

#endif
