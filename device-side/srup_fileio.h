/* Small file-writing helpers for the state the device side and the
 * observer keep on disk.
 *
 * Both return 0, or -1 with errno set; a write that makes no progress is
 * EIO. Callers word their own messages. */
#ifndef SRUP_FILEIO_H
#define SRUP_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Write all len bytes to fd, retrying on EINTR and short writes. */
int srup_write_all(int fd, const void *data, size_t len);

/* Replace path with data: written to "<path>.tmp" (created with mode,
 * never through a symlink), then renamed over path, so a reader sees the
 * old file or the new one, never a part. durable: the file is fsync'd
 * before the rename and its directory after it, so the new content also
 * survives a power loss. On failure the temporary file is removed and
 * *step (if not NULL) names what failed: "create", "write", "sync" or
 * "rename". */
int srup_replace_file(const char *path, const void *data, size_t len, mode_t mode, bool durable,
		      const char **step);

#endif
