/* libFuzzer target: an inbound record and its note (device-side/
 * srup_inbound.h), parsed from memory and read back by srup_inbound_next
 * from a fresh state directory.
 *
 * Input: one flags byte, then the bytes of the record; with bit 1 set, the
 * last 20 + (flags >> 4) bytes become the note file instead (the record
 * then is what comes before).
 *   bit 0  before parsing, give the record (and note) the checksum they
 *          should carry, so that mutations reach the checks behind it.
 *
 * Checked: a record parses only if its lengths add up to its size, its
 * topic and payload lie inside it; srup_inbound_next gives back exactly
 * what srup_inbound_parse accepted (or nothing, the file removed), and the
 * directory is left empty once the record is removed. */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "srup_inbound.h"
#include "srup_log.h"

#include "fuzz_tmpdir.h"

static char inbound[128];

static uint64_t fnv1a(const uint8_t *p, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static void seal(uint8_t *buf, size_t len)
{
	uint64_t sum;

	if (len < 8)
		return;
	sum = fnv1a(buf, len - 8);
	for (int i = 0; i < 8; i++)
		buf[len - 8 + (size_t)i] = (uint8_t)(sum >> (56 - 8 * i));
}

static void write_file(const char *name, const uint8_t *data, size_t len)
{
	char path[192];
	int fd;

	snprintf(path, sizeof(path), "%s/%s", inbound, name);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || (len && write(fd, data, len) != (ssize_t)len))
		abort();
	close(fd);
}

static void cleanup(void)
{
	char path[192];

	snprintf(path, sizeof(path), "%s/0000000000000001.msg", inbound);
	unlink(path);
	snprintf(path, sizeof(path), "%s/0000000000000001.out", inbound);
	unlink(path);
	rmdir(inbound);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	srup_log_set_level(0); /* quiet: every input logs a damaged record */
	fuzz_tmpdir_make("inbound", cleanup);
	snprintf(inbound, sizeof(inbound), "%s/inbound", fuzz_tmpdir);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t rec_buf[8192], note_buf[64];
	const uint8_t *topic, *payload, *note;
	size_t rec_len, note_len = 0, tlen, plen, nlen;
	struct srup_inbound *in = NULL;
	struct srup_inbound_record rec;
	enum srup_inbound_err parsed, e;
	uint8_t flags;

	if (size < 1 || size - 1 > sizeof(rec_buf))
		return 0;
	flags = data[0];
	rec_len = size - 1;
	memcpy(rec_buf, data + 1, rec_len);
	if ((flags & 2) && rec_len >= 20u + (flags >> 4)) {
		note_len = 20u + (flags >> 4);
		rec_len -= note_len;
		memcpy(note_buf, rec_buf + rec_len, note_len);
	}
	if (flags & 1) {
		seal(rec_buf, rec_len);
		seal(note_buf, note_len);
	}
	parsed = srup_inbound_parse(rec_buf, rec_len, &topic, &tlen, &payload, &plen);
	if (parsed == SRUP_INBOUND_OK &&
	    (topic < rec_buf || payload < topic + tlen || payload + plen > rec_buf + rec_len ||
	     tlen + plen + SRUP_INBOUND_RECORD_OVERHEAD != rec_len))
		abort();
	if (note_len && srup_inbound_parse_note(note_buf, note_len, &note, &nlen) == SRUP_INBOUND_OK &&
	    (nlen > SRUP_INBOUND_NOTE_MAX || note < note_buf || note + nlen > note_buf + note_len))
		abort();

	/* The same bytes read back at start. */
	if (mkdir(inbound, 0700) != 0 && errno != EEXIST)
		abort();
	write_file("0000000000000001.msg", rec_buf, rec_len);
	if (note_len)
		write_file("0000000000000001.out", note_buf, note_len);
	if (srup_inbound_new(fuzz_tmpdir, &in, NULL, 0) != SRUP_INBOUND_OK)
		abort();
	e = srup_inbound_next(in, &rec);
	if (e != SRUP_INBOUND_OK || (rec.id != 0) != (parsed == SRUP_INBOUND_OK))
		abort();
	if (rec.id && (rec.id != 1 || rec.topic_len != tlen || rec.payload_len != plen ||
		       memcmp(rec.topic, topic, tlen) != 0 || memcmp(rec.payload, payload, plen) != 0 ||
		       rec.note_len > SRUP_INBOUND_NOTE_MAX))
		abort();
	srup_inbound_record_clear(&rec);
	srup_inbound_remove(in, 1);
	srup_inbound_free(in);
	cleanup();
	return 0;
}
