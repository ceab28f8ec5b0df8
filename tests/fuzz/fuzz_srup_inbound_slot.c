/* libFuzzer target: one slot of the inbound slot file (device-side/
 * srup_inbound.h), parsed from memory by srup_inbound_parse_slot and read
 * back by srup_inbound_next from a fresh state directory.
 *
 * Input: one flags byte, then up to SRUP_INBOUND_SLOT_SIZE bytes of the
 * slot (zero padded to a whole slot). Before parsing, so that mutations
 * reach the checks behind them:
 *   bit 0  the record checksum is made right for the lengths in the header
 *          (when they fit in the slot),
 *   bit 1  the note area's checksum is made right,
 *   bit 2  the state word is set to "accepted" for the slot's ID.
 *
 * Checked: a slot parses only with its topic and payload inside it and
 * within the slot's capacity, its note inside the note area; the reader
 * gives back exactly what the parser accepted (or nothing, the slot
 * freed), and once the record is removed a new start finds none. */
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

#define FNV_OFFSET 0xcbf29ce484222325ull

static char inbound[128];

static uint64_t fnv1a(const void *data, size_t len, uint64_t h)
{
	const uint8_t *p = data;

	for (size_t i = 0; i < len; i++) {
		h ^= p[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static uint64_t get_be(const uint8_t *p, int n)
{
	uint64_t v = 0;

	for (int i = 0; i < n; i++)
		v = v << 8 | p[i];
	return v;
}

static void put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static void seal(uint8_t *slot, uint8_t flags)
{
	uint64_t id = get_be(slot + 8, 8);
	uint8_t b[16];

	if (flags & 1) {
		uint64_t t = get_be(slot + 16, 4), p = get_be(slot + 20, 4);

		if (t + p <= SRUP_INBOUND_SLOT_CAPACITY)
			put_be64(slot + 24, fnv1a(slot + SRUP_INBOUND_SLOT_HEADER, t + p,
						  fnv1a(slot, 24, FNV_OFFSET)));
	}
	put_be64(b + 8, id);
	if (flags & 2) {
		memcpy(b, "SRUPOUT", 8);
		put_be64(slot + 112, fnv1a(slot + 40, 72, fnv1a(b, 16, FNV_OFFSET)));
	}
	if (flags & 4) {
		memcpy(b, "SRUPACC", 8);
		put_be64(slot + 32, fnv1a(b, 16, FNV_OFFSET) | 1);
	}
}

static void cleanup(void)
{
	char path[192];

	snprintf(path, sizeof(path), "%s/slots", inbound);
	unlink(path);
	rmdir(inbound);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	srup_log_set_level(0); /* quiet: most inputs log a damaged slot */
	fuzz_tmpdir_make("inbound-slot", cleanup);
	snprintf(inbound, sizeof(inbound), "%s/inbound", fuzz_tmpdir);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t slot[SRUP_INBOUND_SLOT_SIZE];
	const uint8_t *end = slot + sizeof(slot);
	struct srup_inbound_slot v;
	struct srup_inbound *in = NULL;
	struct srup_inbound_record rec;
	enum srup_inbound_err parsed;
	char path[192];
	int fd;

	if (size < 1 || size - 1 > sizeof(slot))
		return 0;
	memset(slot, 0, sizeof(slot));
	memcpy(slot, data + 1, size - 1);
	seal(slot, data[0]);
	parsed = srup_inbound_parse_slot(slot, sizeof(slot), &v);
	if (parsed == SRUP_INBOUND_OK && v.id &&
	    (v.topic != slot + SRUP_INBOUND_SLOT_HEADER || v.payload != v.topic + v.topic_len ||
	     v.payload + v.payload_len > end ||
	     v.topic_len + v.payload_len > SRUP_INBOUND_SLOT_CAPACITY ||
	     v.id > SRUP_INBOUND_ID_MAX ||
	     (v.note && (v.note < slot + 40 || v.note_len > SRUP_INBOUND_NOTE_MAX ||
			 v.note + v.note_len > slot + SRUP_INBOUND_SLOT_HEADER))))
		abort();
	if (parsed != SRUP_INBOUND_OK && parsed != SRUP_INBOUND_E_DAMAGED)
		abort();

	/* The same bytes as the slot file's only slot, read back at start. */
	if (mkdir(inbound, 0700) != 0 && errno != EEXIST)
		abort();
	snprintf(path, sizeof(path), "%s/slots", inbound);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0 || write(fd, slot, sizeof(slot)) != (ssize_t)sizeof(slot))
		abort();
	close(fd);
	if (srup_inbound_new(fuzz_tmpdir, &in, NULL, 0) != SRUP_INBOUND_OK)
		abort();
	if (srup_inbound_next(in, &rec) != SRUP_INBOUND_OK)
		abort();
	if (rec.id != (parsed == SRUP_INBOUND_OK ? v.id : 0))
		abort();
	if (rec.id && (rec.accepted != v.accepted || rec.topic_len != v.topic_len ||
		       rec.payload_len != v.payload_len ||
		       memcmp(rec.topic, v.topic, v.topic_len) != 0 ||
		       memcmp(rec.payload, v.payload, v.payload_len) != 0 ||
		       rec.note_len != (v.note ? v.note_len : 0) ||
		       (v.note && memcmp(rec.note, v.note, v.note_len) != 0)))
		abort();
	srup_inbound_remove(in, rec.id);
	srup_inbound_record_clear(&rec);
	srup_inbound_free(in);
	/* Removed or freed: nothing comes back. */
	if (srup_inbound_new(fuzz_tmpdir, &in, NULL, 0) != SRUP_INBOUND_OK ||
	    srup_inbound_left(in) != 0)
		abort();
	srup_inbound_free(in);
	cleanup();
	return 0;
}
