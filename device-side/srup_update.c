#include "srup_update.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "srup_detail.h"
#include "srup_fileio.h"
#include "srup_log.h"

struct srup_update {
	sd_event *loop;
	sd_event_source *done_source;
	int efd;
	pthread_t thread;
	bool thread_started;
	atomic_bool cancel;
	srup_update_done done;
	void *user;

	/* Owned by the worker until it signals the eventfd. */
	struct srup_update_config cfg;
	char *url;
	uint8_t digest[SRUP_UPDATE_DIGEST_LEN];
	char part_path[512];
	char final_path[512];
	char dir[256];
	int fd;
	EVP_MD_CTX *md;
	CURL *curl;
	bool too_large, write_failed;
	struct srup_update_result result;
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_FAILED_INIT;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- the worker thread --------------------------------------------------- */

static bool status_is_error(long status)
{
	return status >= 400;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
	struct srup_update *u = user;
	size_t n = size * nmemb;
	long status = 0;

	curl_easy_getinfo(u->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status_is_error(status)) {
		/* Kept for the HTTP_RESPONSE data message, the rest ignored. */
		size_t room = SRUP_UPDATE_BODY_MAX - u->result.body_len;
		size_t take = n < room ? n : room;

		memcpy(u->result.body + u->result.body_len, data, take);
		u->result.body_len += take;
		return n;
	}
	if (u->result.bytes + n > u->cfg.max_bytes) {
		u->too_large = true;
		return 0; /* aborts the transfer */
	}
	if (srup_write_all(u->fd, data, n) != 0) {
		u->write_failed = true;
		snprintf(u->result.detail, sizeof(u->result.detail), "writing %s: %s",
			 u->part_path, strerror(errno));
		return 0;
	}
	if (EVP_DigestUpdate(u->md, data, n) != 1) {
		u->write_failed = true;
		snprintf(u->result.detail, sizeof(u->result.detail), "SHA-256 update failed");
		return 0;
	}
	u->result.bytes += n;
	return n;
}

static int on_progress(void *user, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	struct srup_update *u = user;

	(void)dltotal;
	(void)dlnow;
	(void)ultotal;
	(void)ulnow;
	return atomic_load(&u->cancel) ? 1 : 0;
}

/* Sets the outcome from how the transfer ended. */
static void classify(struct srup_update *u, CURLcode rc)
{
	struct srup_update_result *r = &u->result;
	long status = 0;

	curl_easy_getinfo(u->curl, CURLINFO_RESPONSE_CODE, &status);
	r->http_status = status;
	if (rc == CURLE_OK && status_is_error(status)) {
		r->outcome = SRUP_UPDATE_HTTP_ERROR;
		snprintf(r->detail, sizeof(r->detail), "HTTP status %ld", status);
	} else if (rc == CURLE_OK && (status < 200 || status > 299)) {
		r->outcome = SRUP_UPDATE_NOT_SUPPLIED; /* e.g. 3xx past the redirect bound */
		snprintf(r->detail, sizeof(r->detail), "HTTP status %ld is not a file", status);
	} else if (rc == CURLE_OK) {
		r->outcome = SRUP_UPDATE_VERIFIED; /* digest checked by the caller */
	} else if (u->too_large || rc == CURLE_FILESIZE_EXCEEDED) {
		r->outcome = SRUP_UPDATE_NOT_SUPPLIED;
		snprintf(r->detail, sizeof(r->detail), "file larger than the limit of %llu bytes",
			 (unsigned long long)u->cfg.max_bytes);
	} else if (u->write_failed) {
		r->outcome = SRUP_UPDATE_NOT_SUPPLIED;
	} else if (rc == CURLE_UNSUPPORTED_PROTOCOL || rc == CURLE_URL_MALFORMAT) {
		/* Nothing was asked of any server: the URL names no file we fetch. */
		r->outcome = SRUP_UPDATE_NOT_SUPPLIED;
		snprintf(r->detail, sizeof(r->detail), "%s (only http and https URLs are fetched)",
			 curl_easy_strerror(rc));
	} else if (status == 0) {
		/* No HTTP answer: DNS, connect, TLS or a timeout before one. */
		r->outcome = SRUP_UPDATE_UNREACHABLE;
		snprintf(r->detail, sizeof(r->detail), "%s", curl_easy_strerror(rc));
	} else if (rc == CURLE_TOO_MANY_REDIRECTS) {
		r->outcome = SRUP_UPDATE_NOT_SUPPLIED;
		snprintf(r->detail, sizeof(r->detail), "more than %u redirects",
			 u->cfg.max_redirects);
	} else {
		r->outcome = SRUP_UPDATE_NOT_SUPPLIED;
		snprintf(r->detail, sizeof(r->detail), "transfer failed after HTTP status %ld: %s",
			 status, curl_easy_strerror(rc));
	}
}

static void finish_file(struct srup_update *u)
{
	struct srup_update_result *r = &u->result;
	uint8_t got[EVP_MAX_MD_SIZE];
	unsigned got_len = 0;

	if (r->outcome == SRUP_UPDATE_VERIFIED) {
		if (EVP_DigestFinal_ex(u->md, got, &got_len) != 1 ||
		    got_len != SRUP_UPDATE_DIGEST_LEN) {
			r->outcome = SRUP_UPDATE_NOT_SUPPLIED;
			snprintf(r->detail, sizeof(r->detail), "SHA-256 failed");
		} else if (CRYPTO_memcmp(got, u->digest, SRUP_UPDATE_DIGEST_LEN) != 0) {
			r->outcome = SRUP_UPDATE_DIGEST;
			snprintf(r->detail, sizeof(r->detail),
				 "SHA-256 of the %llu bytes received differs from the digest given",
				 (unsigned long long)r->bytes);
		} else if (fsync(u->fd) != 0 || close(u->fd) != 0) {
			u->fd = -1;
			r->outcome = SRUP_UPDATE_NOT_SUPPLIED;
			snprintf(r->detail, sizeof(r->detail), "syncing %s: %s", u->part_path,
				 strerror(errno));
		} else {
			u->fd = -1;
			if (rename(u->part_path, u->final_path) != 0) {
				r->outcome = SRUP_UPDATE_NOT_SUPPLIED;
				snprintf(r->detail, sizeof(r->detail), "renaming %s: %s",
					 u->part_path, strerror(errno));
			} else {
				(void)srup_sync_dir(u->dir);
				snprintf(r->path, sizeof(r->path), "%s", u->final_path);
				return;
			}
		}
	}
	if (u->fd >= 0)
		close(u->fd);
	u->fd = -1;
	unlink(u->part_path);
}

static void *worker(void *arg)
{
	struct srup_update *u = arg;
	char errbuf[CURL_ERROR_SIZE] = "";
	CURLcode rc;
	uint64_t one = 1;

	u->curl = curl_easy_init();
	u->md = EVP_MD_CTX_new();
	if (!u->curl || !u->md || EVP_DigestInit_ex(u->md, EVP_sha256(), NULL) != 1) {
		u->result.outcome = SRUP_UPDATE_NOT_SUPPLIED;
		snprintf(u->result.detail, sizeof(u->result.detail), "cannot set up the transfer");
		goto out;
	}
	curl_easy_setopt(u->curl, CURLOPT_URL, u->url);
	curl_easy_setopt(u->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(u->curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(u->curl, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(u->curl, CURLOPT_MAXREDIRS, (long)u->cfg.max_redirects);
	curl_easy_setopt(u->curl, CURLOPT_CONNECTTIMEOUT, (long)u->cfg.connect_timeout_seconds);
	curl_easy_setopt(u->curl, CURLOPT_TIMEOUT, (long)u->cfg.timeout_seconds);
	curl_easy_setopt(u->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)u->cfg.max_bytes);
	curl_easy_setopt(u->curl, CURLOPT_NOSIGNAL, 1L); /* threads: no SIGALRM */
	curl_easy_setopt(u->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(u->curl, CURLOPT_WRITEDATA, u);
	curl_easy_setopt(u->curl, CURLOPT_XFERINFOFUNCTION, on_progress);
	curl_easy_setopt(u->curl, CURLOPT_XFERINFODATA, u);
	curl_easy_setopt(u->curl, CURLOPT_NOPROGRESS, 0L);
	curl_easy_setopt(u->curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(u->curl, CURLOPT_USERAGENT, "srup-update");
	if (u->cfg.ca_file[0])
		curl_easy_setopt(u->curl, CURLOPT_CAINFO, u->cfg.ca_file);
	rc = curl_easy_perform(u->curl);
	classify(u, rc);
	if (rc != CURLE_OK && errbuf[0] && u->result.outcome == SRUP_UPDATE_UNREACHABLE)
		snprintf(u->result.detail, sizeof(u->result.detail), "%s", errbuf);
	finish_file(u);
out:
	if (u->fd >= 0) {
		close(u->fd);
		u->fd = -1;
		unlink(u->part_path);
	}
	curl_easy_cleanup(u->curl);
	u->curl = NULL;
	EVP_MD_CTX_free(u->md);
	u->md = NULL;
	if (write(u->efd, &one, sizeof(one)) < 0)
		srup_log(LOG_ERR, "update: cannot wake the event loop: %s", strerror(errno));
	return NULL;
}

/* ---- the loop side --------------------------------------------------------- */

static int on_worker_done(sd_event_source *s, int fd, uint32_t revents, void *user)
{
	struct srup_update *u = user;
	uint64_t v;

	(void)revents;
	if (read(fd, &v, sizeof(v)) < 0 && errno == EAGAIN)
		return 0;
	sd_event_source_set_enabled(s, SD_EVENT_OFF);
	pthread_join(u->thread, NULL);
	u->thread_started = false;
	if (u->done)
		u->done(u, &u->result, u->user);
	return 0;
}

void srup_update_free(struct srup_update *u)
{
	if (!u)
		return;
	if (u->thread_started) {
		atomic_store(&u->cancel, true);
		pthread_join(u->thread, NULL);
		/* A verified file stays: it was complete before the cancel. */
	}
	sd_event_source_disable_unref(u->done_source);
	if (u->efd >= 0)
		close(u->efd);
	free(u->url);
	sd_event_unref(u->loop);
	free(u);
}

int srup_update_start(sd_event *loop, const struct srup_update_config *cfg, const char *url,
		      const uint8_t digest[SRUP_UPDATE_DIGEST_LEN], const char *dir,
		      const char *name, srup_update_done done, void *user,
		      struct srup_update **out, char *err, size_t err_len)
{
	struct srup_update *u;

	if (out)
		*out = NULL;
	if (!loop || !cfg || !url || !digest || !dir || !name || !out || !*name ||
	    strchr(name, '/') || name[0] == '.') {
		set_detail(err, err_len, "srup_update_start: invalid arguments");
		return -1;
	}
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		set_detail(err, err_len, "libcurl: %s", curl_easy_strerror(curl_init_rc));
		return -1;
	}
	u = calloc(1, sizeof(*u));
	if (!u) {
		set_detail(err, err_len, "out of memory");
		return -1;
	}
	u->efd = -1;
	u->fd = -1;
	u->loop = sd_event_ref(loop);
	u->cfg = *cfg;
	u->done = done;
	u->user = user;
	memcpy(u->digest, digest, SRUP_UPDATE_DIGEST_LEN);
	atomic_init(&u->cancel, false);
	u->url = strdup(url);
	if (!u->url || snprintf(u->dir, sizeof(u->dir), "%s", dir) >= (int)sizeof(u->dir) ||
	    snprintf(u->part_path, sizeof(u->part_path), "%s/.%s.part", dir, name) >=
		    (int)sizeof(u->part_path) ||
	    snprintf(u->final_path, sizeof(u->final_path), "%s/%s", dir, name) >=
		    (int)sizeof(u->final_path)) {
		set_detail(err, err_len, "staging path too long or out of memory");
		goto fail;
	}
	/* A leftover of a crash is replaced; an existing staged file of the
	 * same name is replaced only when the new one is verified. */
	unlink(u->part_path);
	u->fd = open(u->part_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (u->fd < 0) {
		set_detail(err, err_len, "%s: %s", u->part_path, strerror(errno));
		goto fail;
	}
	u->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (u->efd < 0 ||
	    sd_event_add_io(loop, &u->done_source, u->efd, EPOLLIN, on_worker_done, u) < 0) {
		set_detail(err, err_len, "cannot watch the download on the event loop");
		goto fail;
	}
	if (pthread_create(&u->thread, NULL, worker, u) != 0) {
		set_detail(err, err_len, "cannot start the download thread");
		goto fail;
	}
	u->thread_started = true;
	*out = u;
	return 0;
fail:
	if (u->fd >= 0) {
		close(u->fd);
		u->fd = -1;
		unlink(u->part_path);
	}
	srup_update_free(u);
	return -1;
}
