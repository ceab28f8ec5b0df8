/* Small file-writing helpers for what every layer keeps on disk: state
 * files, key files, staged downloads, logs.
 *
 * All return 0, or -1 with errno set; a write that makes no progress is
 * EIO. Callers word their own messages. */
#ifndef SRUP_FILEIO_H
#define SRUP_FILEIO_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* Write all len bytes to fd, retrying on EINTR and short writes. */
int srup_write_all(int fd, const void *data, size_t len);

/* fsync the directory dir, so that a rename or a creation in it survives a
 * power loss. */
int srup_sync_dir(const char *dir);

/* srup_sync_dir of the directory holding path ("." for a bare name). */
int srup_sync_parent(const char *path);

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
