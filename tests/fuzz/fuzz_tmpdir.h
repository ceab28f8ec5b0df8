/* A private temporary folder for a fuzz target that must go through files,
 * made once per process and removed at exit. On a tmpfs when there is one
 * (/dev/shm): every input writes a file, and some fdatasync it. $TMPDIR
 * wins when set. */
#ifndef SRUP_FUZZ_TMPDIR_H
#define SRUP_FUZZ_TMPDIR_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_tmpdir[64];

static void fuzz_tmpdir_remove(void)
{
	rmdir(fuzz_tmpdir);
}

/* Makes fuzz_tmpdir ("<tmp>/fuzz-<name>-XXXXXX"); cleanup runs at exit
 * before the folder goes (atexit order), so it removes what is inside. */
static void fuzz_tmpdir_make(const char *name, void (*cleanup)(void))
{
	const char *tmp = getenv("TMPDIR");

	if (!tmp || strlen(tmp) >= 32)
		tmp = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
	snprintf(fuzz_tmpdir, sizeof(fuzz_tmpdir), "%s/fuzz-%.16s-XXXXXX", tmp, name);
	if (!mkdtemp(fuzz_tmpdir)) {
		perror(fuzz_tmpdir);
		exit(2);
	}
	atexit(fuzz_tmpdir_remove);
	if (cleanup)
		atexit(cleanup);
}

#endif
