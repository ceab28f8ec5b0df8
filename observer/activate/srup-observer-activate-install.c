/* srup-observer-activate-install: the root half of update activation on a
 * Debian appliance (srup-observer-activate.service, started by its path
 * unit when srup-observerd's hook leaves a request).
 *
 * Takes the request, opens the staged package beneath the staging
 * directory without following any symbolic link, copies it to its own
 * directory while hashing it, and installs the copy with dpkg only if the
 * hash is the one the request recorded; then writes the result the hook
 * waits for. Exit 0 nothing to do or installed, 1 refused or failed,
 * 2 usage. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "activate.h"

#define DEFAULT_STAGING "/var/lib/srup-observer"
#define DEFAULT_WORK "/run/srup-observer-activate"
#define DEFAULT_DPKG "/usr/bin/dpkg"
#define DEFAULT_TIMEOUT_S 900u
#define PACKAGE_MAX_BYTES (1ull << 30)

struct options {
	const char *dir, *staging, *work, *dpkg, *dpkg_root;
	unsigned timeout_s;
};

__attribute__((format(printf, 2, 3))) static void set_message(struct activate_result *res,
							       const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(res->message, sizeof(res->message), fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s%s\n", res->status == 0 ? "<5>" : "<3>", res->message);
}

/* The staged file, opened beneath the staging directory with no symbolic
 * link and no ".." on the way (the directory belongs to the daemon's user). */
static int open_staged(const char *staging, const char *file, struct activate_result *res)
{
	size_t n = strlen(staging);
	struct open_how how = {
		.flags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
	};
	int base, fd;

	while (n > 1 && staging[n - 1] == '/')
		n--;
	if (strncmp(file, staging, n) != 0 || file[n] != '/') {
		set_message(res, "refused: %s is not beneath %s", file, staging);
		return -1;
	}
	base = open(staging, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (base < 0) {
		set_message(res, "cannot open %s: %s", staging, strerror(errno));
		return -1;
	}
	fd = (int)syscall(SYS_openat2, base, file + n + 1, &how, sizeof(how));
	if (fd < 0)
		set_message(res, "refused: cannot open %s beneath %s without links: %s", file,
			    staging, strerror(errno));
	close(base);
	return fd;
}

/* dpkg --install, with a deadline; its output goes to the journal. */
static int run_dpkg(const struct options *o, const char *package, struct activate_result *res)
{
	char root_arg[1100];
	char *argv[6];
	char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive",
			"LC_ALL=C.UTF-8", NULL};
	struct timespec tick = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
	unsigned waited_ms = 0;
	int argc = 0, status;
	pid_t pid;

	argv[argc++] = (char *)o->dpkg;
	if (o->dpkg_root) {
		snprintf(root_arg, sizeof(root_arg), "--root=%s", o->dpkg_root);
		argv[argc++] = root_arg;
	}
	argv[argc++] = "--install";
	argv[argc++] = (char *)package;
	argv[argc] = NULL;
	pid = fork();
	if (pid < 0) {
		set_message(res, "cannot run %s: %s", o->dpkg, strerror(errno));
		return -1;
	}
	if (pid == 0) {
		int null = open("/dev/null", O_RDONLY);

		if (null >= 0)
			dup2(null, STDIN_FILENO);
		dup2(STDERR_FILENO, STDOUT_FILENO);
		execve(o->dpkg, argv, envp);
		fprintf(stderr, "<3>cannot run %s: %s\n", o->dpkg, strerror(errno));
		_exit(127);
	}
	for (;;) {
		pid_t r = waitpid(pid, &status, WNOHANG);

		if (r == pid)
			break;
		if (r < 0 && errno != EINTR) {
			set_message(res, "lost %s: %s", o->dpkg, strerror(errno));
			return -1;
		}
		if (waited_ms >= o->timeout_s * 1000u) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			set_message(res, "%s --install took longer than %us; killed", o->dpkg,
				    o->timeout_s);
			return -1;
		}
		nanosleep(&tick, NULL);
		waited_ms += 100;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	if (WIFEXITED(status))
		set_message(res, "%s --install failed with status %d", o->dpkg, WEXITSTATUS(status));
	else
		set_message(res, "%s --install killed by signal %d", o->dpkg, WTERMSIG(status));
	return -1;
}

/* Check and install; res->status and message say how it went. */
static void activate(const struct options *o, const struct activate_request *req,
		     struct activate_result *res)
{
	char copy[1100], digest[ACTIVATE_SHA256_HEX + 1];
	struct stat st;
	int in, out;

	res->status = 1;
	in = open_staged(o->staging, req->file, res);
	if (in < 0)
		return;
	if (fstat(in, &st) != 0 || !S_ISREG(st.st_mode)) {
		set_message(res, "refused: %s is not a regular file", req->file);
		close(in);
		return;
	}
	if (mkdir(o->work, 0700) != 0 && errno != EEXIST) {
		set_message(res, "cannot create %s: %s", o->work, strerror(errno));
		close(in);
		return;
	}
	snprintf(copy, sizeof(copy), "%s/package.deb", o->work);
	unlink(copy);
	out = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (out < 0) {
		set_message(res, "cannot create %s: %s", copy, strerror(errno));
		close(in);
		return;
	}
	/* The copy is what dpkg reads: the daemon's user cannot change it
	 * between this check and the install. */
	if (activate_sha256_fd(in, out, PACKAGE_MAX_BYTES, digest) != 0 || fsync(out) != 0) {
		set_message(res, "cannot copy %s: %s", req->file, strerror(errno));
	} else if (CRYPTO_memcmp(digest, req->sha256, ACTIVATE_SHA256_HEX) != 0) {
		set_message(res, "refused: %s has sha256 %s, the observer recorded %s", req->file,
			    digest, req->sha256);
	} else if (run_dpkg(o, copy, res) == 0) {
		res->status = 0;
		set_message(res, "installed %s (sha256 %s)", req->file, digest);
	}
	close(out);
	close(in);
	unlink(copy);
}

static void usage(FILE *to)
{
	fprintf(to,
		"usage: srup-observer-activate-install [--dir DIR] [--staging DIR] [--work DIR]\n"
		"                                      [--dpkg PATH] [--dpkg-root DIR] [--timeout S]\n"
		"\n"
		"Installs the package srup-observerd's activation hook asked for in\n"
		"DIR/request (default " ACTIVATE_DEFAULT_DIR "), if it lies beneath the\n"
		"staging directory (default " DEFAULT_STAGING ") and its SHA-256 is the\n"
		"recorded one, and writes DIR/result. --dpkg-root passes --root to dpkg.\n");
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"dir", required_argument, NULL, 'd'},	   {"staging", required_argument, NULL, 's'},
		{"work", required_argument, NULL, 'w'},	   {"dpkg", required_argument, NULL, 'p'},
		{"dpkg-root", required_argument, NULL, 'r'}, {"timeout", required_argument, NULL, 't'},
		{"help", no_argument, NULL, 'h'},	   {NULL, 0, NULL, 0},
	};
	struct options o = {ACTIVATE_DEFAULT_DIR, DEFAULT_STAGING, DEFAULT_WORK, DEFAULT_DPKG, NULL,
			    DEFAULT_TIMEOUT_S};
	struct activate_request req;
	struct activate_result res = {.status = 1};
	char text[ACTIVATE_FILE_MAX];
	const char *why;
	int opt, dir_fd;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'd': o.dir = optarg; break;
		case 's': o.staging = optarg; break;
		case 'w': o.work = optarg; break;
		case 'p': o.dpkg = optarg; break;
		case 'r': o.dpkg_root = optarg; break;
		case 't':
			o.timeout_s = (unsigned)strtoul(optarg, NULL, 10);
			if (o.timeout_s == 0) {
				usage(stderr);
				return 2;
			}
			break;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 2;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 2;
	}
	dir_fd = open(o.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dir_fd < 0) {
		fprintf(stderr, "<3>cannot open %s: %s\n", o.dir, strerror(errno));
		return 1;
	}
	/* Taken once: the path unit does not fire again for it. */
	if (renameat(dir_fd, ACTIVATE_REQUEST, dir_fd, ACTIVATE_TAKEN) != 0) {
		close(dir_fd);
		if (errno == ENOENT) {
			fprintf(stderr, "<6>no activation request in %s\n", o.dir);
			return 0;
		}
		fprintf(stderr, "<3>cannot take %s/%s: %s\n", o.dir, ACTIVATE_REQUEST,
			strerror(errno));
		return 1;
	}
	if (activate_read_file(dir_fd, ACTIVATE_TAKEN, text, sizeof(text)) != 0) {
		fprintf(stderr, "<3>cannot read %s/%s: %s\n", o.dir, ACTIVATE_TAKEN, strerror(errno));
		unlinkat(dir_fd, ACTIVATE_TAKEN, 0);
		close(dir_fd);
		return 1; /* no token to answer: the hook times out */
	}
	if (activate_request_parse(text, &req, &why) != 0) {
		fprintf(stderr, "<3>activation request refused: %s\n", why);
		unlinkat(dir_fd, ACTIVATE_TAKEN, 0);
		close(dir_fd);
		return 1;
	}
	snprintf(res.token, sizeof(res.token), "%s", req.token);
	activate(&o, &req, &res);
	if (activate_result_format(&res, text, sizeof(text)) != 0 ||
	    activate_write_file(dir_fd, ACTIVATE_RESULT, text, 0644) != 0) {
		fprintf(stderr, "<3>cannot write %s/%s: %s\n", o.dir, ACTIVATE_RESULT,
			strerror(errno));
		res.status = 1;
	}
	unlinkat(dir_fd, ACTIVATE_TAKEN, 0);
	close(dir_fd);
	return res.status;
}
