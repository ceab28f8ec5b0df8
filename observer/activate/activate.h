/* Update activation on the appliance: srup-observerd runs unprivileged, so
 * an update it has verified is installed by a root oneshot unit. The two
 * programs meet in a request directory the daemon owns
 * (/var/lib/srup-observer/activate):
 *
 *   request  written by srup-observer-activate-request (the daemon's
 *            activation hook), atomically (request.tmp, then rename):
 *              file=<absolute path of the staged package>
 *              sha256=<64 lowercase hex digits of its content>
 *              token=<the ACTIVATE token>
 *   taken    the installer renames request to this as it starts, so the
 *            path unit does not trigger again and one request is served once
 *   result   written by srup-observer-activate-install, atomically:
 *              token=<the request's token>
 *              status=0 (installed) | 1 (refused or failed)
 *              message=<one line for the log>
 *
 * The installer installs only a file whose SHA-256 is the one recorded in
 * the request, checked on its own copy of the file. */
#ifndef SRUP_ACTIVATE_H
#define SRUP_ACTIVATE_H

#include <stddef.h>
#include <stdint.h>

#define ACTIVATE_DEFAULT_DIR "/var/lib/srup-observer/activate"
#define ACTIVATE_REQUEST "request"
#define ACTIVATE_TAKEN "taken"
#define ACTIVATE_RESULT "result"
#define ACTIVATE_FILE_MAX 4096u   /* request and result files */
#define ACTIVATE_TOKEN_MAX 256u
#define ACTIVATE_SHA256_HEX 64u

struct activate_request {
	char file[1024];
	char sha256[ACTIVATE_SHA256_HEX + 1];
	char token[ACTIVATE_TOKEN_MAX + 1];
};

struct activate_result {
	char token[ACTIVATE_TOKEN_MAX + 1];
	int status; /* 0 installed, 1 refused or failed */
	char message[512];
};

/* A token is 1..ACTIVATE_TOKEN_MAX printable ASCII bytes (no control
 * characters: it goes into a line-based file and into logs). */
int activate_token_ok(const char *token);

/* SHA-256 of everything read from fd, as lowercase hex; if copy_fd >= 0
 * the bytes are also written there. At most max_bytes are accepted.
 * Returns 0, or -1 with errno (EFBIG past max_bytes). */
int activate_sha256_fd(int fd, int copy_fd, uint64_t max_bytes,
		       char hex[ACTIVATE_SHA256_HEX + 1]);

/* Write text to dir_fd/name atomically (name.tmp, fsync, rename), mode. */
int activate_write_file(int dir_fd, const char *name, const char *text, unsigned mode);

/* Read dir_fd/name (at most ACTIVATE_FILE_MAX bytes) into buf, NUL-ended.
 * Returns 0, or -1 with errno. */
int activate_read_file(int dir_fd, const char *name, char *buf, size_t len);

/* Parse the files above. Return 0, or -1 with a reason in why. */
int activate_request_parse(const char *text, struct activate_request *req, const char **why);
int activate_result_parse(const char *text, struct activate_result *res, const char **why);

/* Format them (NUL-ended text in buf). Return 0, or -1 if it does not fit. */
int activate_request_format(const struct activate_request *req, char *buf, size_t len);
int activate_result_format(const struct activate_result *res, char *buf, size_t len);

#endif
