#include "srup_fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int srup_write_all(int fd, const void *data, size_t len)
{
	const char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int srup_sync_dir(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc, saved;

	if (fd < 0)
		return -1;
	rc = fsync(fd);
	saved = errno;
	close(fd);
	errno = saved;
	return rc;
}

int srup_sync_parent(const char *path)
{
	char *copy = strdup(path);
	int rc;

	if (!copy)
		return -1;
	rc = srup_sync_dir(dirname(copy));
	free(copy);
	return rc;
}

int srup_replace_file(const char *path, const void *data, size_t len, mode_t mode, bool durable,
		      const char **step)
{
	size_t n = strlen(path) + sizeof(".tmp");
	char *tmp = malloc(n);
	const char *failed = "create";
	bool created = false;
	int fd = -1, saved;

	if (!tmp) {
		errno = ENOMEM;
		goto fail;
	}
	snprintf(tmp, n, "%s.tmp", path);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, mode);
	if (fd < 0)
		goto fail;
	created = true;
	failed = "write";
	if (srup_write_all(fd, data, len) != 0)
		goto fail;
	failed = "sync";
	if (durable && fsync(fd) != 0)
		goto fail;
	failed = "write";
	saved = close(fd);
	fd = -1;
	if (saved != 0)
		goto fail;
	failed = "rename";
	if (rename(tmp, path) != 0)
		goto fail;
	free(tmp);
	/* Best effort: the rename itself already happened. */
	if (durable)
		(void)srup_sync_parent(path);
	return 0;
fail:
	saved = errno;
	if (fd >= 0)
		close(fd);
	if (created)
		unlink(tmp);
	free(tmp);
	if (step)
		*step = failed;
	errno = saved;
	return -1;
}
