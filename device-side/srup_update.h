/* Update downloads (INITIATE): the file at a URL, fetched with libcurl on a
 * worker thread of its own, so the event loop never waits for a server.
 *
 * The body streams to "<dir>/.<name>.part" (mode 0600) with a size bound
 * while SHA-256 is computed over it (EVP); only a complete file whose digest
 * matches (compared in constant time) is renamed to "<dir>/<name>" and
 * synced; in every other case the partial file is removed. http and https
 * only (redirects too, bounded); CA file, connect and total timeouts from
 * the configuration. The result reaches the loop through an eventfd. */
#ifndef SRUP_UPDATE_H
#define SRUP_UPDATE_H

#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#define SRUP_UPDATE_DIGEST_LEN 32u
#define SRUP_UPDATE_BODY_MAX 4096u  /* bytes of an HTTP error body kept */

struct srup_update_config {
	char ca_file[256];          /* empty: the system's CA store */
	uint64_t max_bytes;         /* largest file accepted */
	unsigned connect_timeout_seconds;
	unsigned timeout_seconds;   /* the whole transfer */
	unsigned max_redirects;
};

enum srup_update_outcome {
	SRUP_UPDATE_VERIFIED,     /* staged file in place, digest matched */
	SRUP_UPDATE_UNREACHABLE,  /* no HTTP answer at all (DNS, connect, TLS, timeout) */
	SRUP_UPDATE_HTTP_ERROR,   /* an HTTP error status (http_status, body) */
	SRUP_UPDATE_NOT_SUPPLIED, /* answered, but no complete file within the bounds */
	SRUP_UPDATE_DIGEST,       /* complete file, wrong digest */
};

struct srup_update_result {
	enum srup_update_outcome outcome;
	long http_status;          /* the last HTTP status seen, 0 if none */
	uint8_t body[SRUP_UPDATE_BODY_MAX]; /* HTTP_ERROR: the first bytes of the body */
	size_t body_len;
	uint64_t bytes;            /* body bytes received */
	char path[512];            /* VERIFIED: the staged file */
	char detail[768];          /* what went wrong, for the log */
};

struct srup_update;

typedef void (*srup_update_done)(struct srup_update *update,
				 const struct srup_update_result *result, void *user);

/* Start fetching url into dir under name (a plain file name). done runs on
 * the loop when the transfer has ended; free the update there or later.
 * Returns 0, or -1 with a line in err (nothing started). */
int srup_update_start(sd_event *loop, const struct srup_update_config *cfg, const char *url,
		      const uint8_t digest[SRUP_UPDATE_DIGEST_LEN], const char *dir,
		      const char *name, srup_update_done done, void *user,
		      struct srup_update **out, char *err, size_t err_len);
/* Cancels a running transfer (its partial file removed) and waits for
 * the worker to end; done is not called then. */
void srup_update_free(struct srup_update *update);

#endif
