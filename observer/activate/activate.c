/* The request and result files shared by the activation hook and the
 * installer (activate.h). */
#include "activate.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "srup_fileio.h"

int activate_token_ok(const char *token)
{
	size_t n = strlen(token);

	if (n == 0 || n > ACTIVATE_TOKEN_MAX)
		return 0;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)token[i] < 0x20 || (unsigned char)token[i] > 0x7e)
			return 0;
	return 1;
}

int activate_sha256_fd(int fd, int copy_fd, uint64_t max_bytes,
		       char hex[ACTIVATE_SHA256_HEX + 1])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned char buf[65536], md[32];
	unsigned md_len = 0;
	uint64_t total = 0;
	int rc = -1, saved = EIO;

	if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
		goto out;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			saved = errno;
			goto out;
		}
		if (n == 0)
			break;
		total += (uint64_t)n;
		if (total > max_bytes) {
			saved = EFBIG;
			goto out;
		}
		if (EVP_DigestUpdate(ctx, buf, (size_t)n) != 1)
			goto out;
		if (copy_fd >= 0 && srup_write_all(copy_fd, buf, (size_t)n) != 0) {
			saved = errno;
			goto out;
		}
	}
	if (EVP_DigestFinal_ex(ctx, md, &md_len) != 1 || md_len != sizeof(md))
		goto out;
	for (unsigned i = 0; i < md_len; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	rc = 0;
out:
	EVP_MD_CTX_free(ctx);
	if (rc)
		errno = saved;
	return rc;
}

int activate_write_file(int dir_fd, const char *name, const char *text, unsigned mode)
{
	char tmp[64];
	int fd, saved;

	snprintf(tmp, sizeof(tmp), "%s.tmp", name);
	unlinkat(dir_fd, tmp, 0);
	fd = openat(dir_fd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		return -1;
	if (fchmod(fd, mode) != 0 || srup_write_all(fd, text, strlen(text)) != 0 || fsync(fd) != 0) {
		saved = errno;
		close(fd);
		unlinkat(dir_fd, tmp, 0);
		errno = saved;
		return -1;
	}
	if (close(fd) != 0 || renameat(dir_fd, tmp, dir_fd, name) != 0) {
		saved = errno;
		unlinkat(dir_fd, tmp, 0);
		errno = saved;
		return -1;
	}
	return 0;
}

int activate_read_file(int dir_fd, const char *name, char *buf, size_t len)
{
	size_t used = 0;
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	struct stat st;

	if (fd < 0)
		return -1;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	for (;;) {
		ssize_t n;

		if (used + 1 >= len) {
			close(fd);
			errno = EFBIG;
			return -1;
		}
		n = read(fd, buf + used, len - 1 - used);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int saved = errno;

			close(fd);
			errno = saved;
			return -1;
		}
		if (n == 0)
			break;
		used += (size_t)n;
	}
	close(fd);
	buf[used] = '\0';
	if (memchr(buf, '\0', used)) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/* Walks "key=value\n" lines; calls take(key, value) for each. */
static int parse_lines(const char *text, int (*take)(void *, const char *, const char *),
		       void *out, const char **why)
{
	const char *line = text;

	while (*line) {
		const char *nl = strchr(line, '\n'), *eq;
		char key[32], value[1100];
		size_t n;

		if (!nl) {
			*why = "last line is not ended";
			return -1;
		}
		eq = memchr(line, '=', (size_t)(nl - line));
		if (!eq || eq == line || (size_t)(eq - line) >= sizeof(key)) {
			*why = "a line is not key=value";
			return -1;
		}
		n = (size_t)(nl - eq - 1);
		if (n >= sizeof(value)) {
			*why = "a value is too long";
			return -1;
		}
		memcpy(key, line, (size_t)(eq - line));
		key[eq - line] = '\0';
		memcpy(value, eq + 1, n);
		value[n] = '\0';
		if (take(out, key, value) != 0) {
			*why = "unknown key, repeated key or bad value";
			return -1;
		}
		line = nl + 1;
	}
	return 0;
}

static int set_string(char *dst, size_t size, const char *value)
{
	if (dst[0] || !value[0] || strlen(value) >= size)
		return -1; /* repeated, empty or too long */
	memcpy(dst, value, strlen(value) + 1);
	return 0;
}

static int take_request(void *out, const char *key, const char *value)
{
	struct activate_request *req = out;

	if (strcmp(key, "file") == 0)
		return value[0] == '/' ? set_string(req->file, sizeof(req->file), value) : -1;
	if (strcmp(key, "sha256") == 0) {
		if (strlen(value) != ACTIVATE_SHA256_HEX ||
		    strspn(value, "0123456789abcdef") != ACTIVATE_SHA256_HEX)
			return -1;
		return set_string(req->sha256, sizeof(req->sha256), value);
	}
	if (strcmp(key, "token") == 0)
		return activate_token_ok(value) ? set_string(req->token, sizeof(req->token), value)
						: -1;
	return -1;
}

int activate_request_parse(const char *text, struct activate_request *req, const char **why)
{
	memset(req, 0, sizeof(*req));
	if (parse_lines(text, take_request, req, why) != 0)
		return -1;
	if (!req->file[0] || !req->sha256[0] || !req->token[0]) {
		*why = "file, sha256 or token missing";
		return -1;
	}
	return 0;
}

static int take_result(void *out, const char *key, const char *value)
{
	struct activate_result *res = out;

	if (strcmp(key, "token") == 0)
		return activate_token_ok(value) ? set_string(res->token, sizeof(res->token), value)
						: -1;
	if (strcmp(key, "status") == 0) {
		if (res->status != -1 || (strcmp(value, "0") != 0 && strcmp(value, "1") != 0))
			return -1;
		res->status = value[0] - '0';
		return 0;
	}
	if (strcmp(key, "message") == 0)
		return set_string(res->message, sizeof(res->message), value);
	return -1;
}

int activate_result_parse(const char *text, struct activate_result *res, const char **why)
{
	memset(res, 0, sizeof(*res));
	res->status = -1;
	if (parse_lines(text, take_result, res, why) != 0)
		return -1;
	if (!res->token[0] || res->status < 0) {
		*why = "token or status missing";
		return -1;
	}
	return 0;
}

static int fits(int n, size_t len)
{
	return n >= 0 && (size_t)n < len ? 0 : -1;
}

int activate_request_format(const struct activate_request *req, char *buf, size_t len)
{
	return fits(snprintf(buf, len, "file=%s\nsha256=%s\ntoken=%s\n", req->file, req->sha256,
			     req->token),
		    len);
}

int activate_result_format(const struct activate_result *res, char *buf, size_t len)
{
	char message[sizeof(res->message)];

	/* One line: the message comes from dpkg's outcome and file names. */
	snprintf(message, sizeof(message), "%s", res->message[0] ? res->message : "-");
	for (char *c = message; *c; c++)
		if ((unsigned char)*c < 0x20)
			*c = ' ';
	return fits(snprintf(buf, len, "token=%s\nstatus=%d\nmessage=%s\n", res->token,
			     res->status, message),
		    len);
}
