/* libFuzzer target: the sequence store file (device-side/srup_seqstore.h)
 * loaded by srup_seqstore_new from a fresh state directory per input.
 *
 * Input: one flags byte, then the bytes of "<dir>/sequences".
 *   bit 0  before writing, give each format 3 slot (the file split in two
 *          halves) the SHA-256 it should carry, so that mutations reach
 *          the checks behind the checksum;
 *   bit 1  the same for a format 1/2 text file's "end <count> <sha256>"
 *          line (the checksum of every byte before it);
 *   bit 2  open with max_peers 4 instead of the default.
 *
 * Checked: an open either fails with a detail naming the file or the
 * directory, or gives a store that (a) opens again with the same content
 * (after a migration from formats 1 and 2 too), (b) hands out a sequence
 * ID above what the file held and still holds that ID's reservation after
 * another reopen, and (c) refuses a replay of the last accepted ID. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "srup_log.h"
#include "srup_seqstore.h"

#define SLOT_ALIGN 4096u
#define SLOT_HEAD 40u
#define SLOT_ENTRY 24u
#define MAX_PROBES 64u

#include "fuzz_tmpdir.h"

static char dir[96], file_path[128];
static uint8_t file[1 << 16];

static void remove_state(void)
{
	static const char *const names[] = {SRUP_SEQSTORE_FILE, SRUP_SEQSTORE_TMP_FILE,
					    SRUP_SEQSTORE_LOCK_FILE};
	char p[160];

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		if (unlink(p) != 0 && errno != ENOENT)
			abort();
	}
	if (rmdir(dir) != 0 && errno != ENOENT)
		abort();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_tmpdir_make("seqstore", remove_state);
	snprintf(dir, sizeof(dir), "%s/state", fuzz_tmpdir);
	snprintf(file_path, sizeof(file_path), "%s/%s", dir, SRUP_SEQSTORE_FILE);
	/* A store with one damaged slot says so at LOG_WARNING, many times. */
	srup_log_set_level(LOG_ERR);
	return 0;
}

static void sha256(const uint8_t *data, size_t len, uint8_t out[32])
{
	unsigned int n = 0;

	if (EVP_Digest(data, len, out, &n, EVP_sha256(), NULL) != 1 || n != 32)
		abort();
}

static void fix_slots(uint8_t *buf, size_t len)
{
	size_t half = len / 2;

	if (len < 2 * SLOT_ALIGN || len % (2 * SLOT_ALIGN) != 0)
		return;
	for (int i = 0; i < 2; i++)
		sha256(buf + i * half, half - 32, buf + (i + 1) * half - 32);
}

static void fix_text_trailer(uint8_t *buf, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	uint8_t md[32];

	/* The first line "end <digits> " followed by 64 bytes and a newline. */
	for (size_t pos = 0; pos < len;) {
		uint8_t *nl = memchr(buf + pos, '\n', len - pos);
		size_t line_len = nl ? (size_t)(nl - (buf + pos)) : len - pos;
		uint8_t *line = buf + pos;

		if (pos > 0 && line_len > 4 + 64 && memcmp(line, "end ", 4) == 0 &&
		    line[line_len - 65] == ' ') {
			sha256(buf, pos, md);
			for (int i = 0; i < 32; i++) {
				line[line_len - 64 + 2 * i] = (uint8_t)hex[md[i] >> 4];
				line[line_len - 63 + 2 * i] = (uint8_t)hex[md[i] & 15];
			}
			return;
		}
		pos += line_len + 1;
	}
}

/* Peers worth asking about: those a slot or a text line of the input names. */
static size_t probe_peers(const uint8_t *buf, size_t len, uint64_t *peers)
{
	size_t n = 0;

	if (len >= 2 * SLOT_ALIGN && len % (2 * SLOT_ALIGN) == 0)
		for (int s = 0; s < 2; s++)
			for (size_t i = 0; i < MAX_PROBES / 4; i++) {
				size_t at = s * (len / 2) + SLOT_HEAD + i * SLOT_ENTRY;
				uint64_t v = 0;

				for (int b = 7; b >= 0; b--)
					v = v << 8 | buf[at + (size_t)b];
				peers[n++] = v;
			}
	for (size_t pos = 0; pos < len && n < MAX_PROBES;) {
		const uint8_t *nl = memchr(buf + pos, '\n', len - pos);
		size_t line_len = nl ? (size_t)(nl - (buf + pos)) : len - pos;
		char hex[17];

		if (line_len == 50) {
			memcpy(hex, buf + pos, 16);
			hex[16] = '\0';
			peers[n++] = strtoull(hex, NULL, 16);
		}
		pos += line_len + 1;
	}
	peers[n++] = 0x5eed0b5e2f0a11c3ull;
	return n;
}

struct seen {
	size_t count;
	uint64_t sent[MAX_PROBES + 1], accepted[MAX_PROBES + 1];
};

static void look(const struct srup_seqstore *st, const uint64_t *peers, size_t n, struct seen *v)
{
	v->count = srup_seqstore_count(st);
	for (size_t i = 0; i < n; i++) {
		v->sent[i] = srup_seqstore_sent_reserved(st, peers[i]);
		v->accepted[i] = srup_seqstore_last_accepted(st, peers[i]);
		if (srup_seqstore_last_sent(st, peers[i]) != v->sent[i])
			__builtin_trap(); /* after a restart, last sent is the bound */
	}
}

static struct srup_seqstore *reopen(size_t max_peers)
{
	struct srup_seqstore *st = NULL;
	char detail[600];

	if (srup_seqstore_new(dir, max_peers, &st, detail, sizeof(detail)) != SRUP_SEQ_OK)
		__builtin_trap(); /* what was open once must open again */
	return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t peers[MAX_PROBES + 1];
	struct seen first, again;
	struct srup_seqstore *st = NULL;
	char detail[600] = "";
	size_t len, max_peers, n;
	uint64_t id, peer;
	enum srup_seq_err e;
	FILE *f;

	if (size < 1 || size - 1 > sizeof(file))
		return -1;
	len = size - 1;
	memcpy(file, data + 1, len);
	if (data[0] & 1)
		fix_slots(file, len);
	if (data[0] & 2)
		fix_text_trailer(file, len);
	max_peers = (data[0] & 4) ? 4 : 0;

	if (mkdir(dir, 0700) != 0)
		abort();
	f = fopen(file_path, "wb");
	if (!f || fwrite(file, 1, len, f) != len || fclose(f) != 0)
		abort();

	e = srup_seqstore_new(dir, max_peers, &st, detail, sizeof(detail));
	if (e != SRUP_SEQ_OK) {
		if (st || !srup_seqstore_strerror(e) || strnlen(detail, sizeof(detail)) >= sizeof(detail) ||
		    strncmp(detail, dir, strlen(dir)) != 0)
			__builtin_trap();
		remove_state();
		return 0;
	}
	n = probe_peers(file, len, peers);
	look(st, peers, n, &first);
	srup_seqstore_free(st);

	/* (a) The same content after a reopen. */
	st = reopen(max_peers);
	look(st, peers, n, &again);
	if (again.count != first.count ||
	    memcmp(again.sent, first.sent, n * sizeof(first.sent[0])) != 0 ||
	    memcmp(again.accepted, first.accepted, n * sizeof(first.accepted[0])) != 0)
		__builtin_trap();

	/* (b) A new ID is above both counters and survives a restart. */
	peer = peers[0];
	e = srup_seqstore_next(st, peer, &id, detail, sizeof(detail));
	if (e == SRUP_SEQ_OK) {
		uint64_t floor = first.sent[0] > first.accepted[0] ? first.sent[0] : first.accepted[0];

		if (id <= floor)
			__builtin_trap();
		srup_seqstore_free(st);
		st = reopen(max_peers);
		if (srup_seqstore_sent_reserved(st, peer) < id)
			__builtin_trap();
	} else if (e != SRUP_SEQ_E_EXHAUSTED && e != SRUP_SEQ_E_FULL) {
		__builtin_trap();
	}

	/* (c) The last accepted ID is a replay. */
	if (first.accepted[0] &&
	    srup_seqstore_accept(st, peer, first.accepted[0], detail, sizeof(detail)) !=
		    SRUP_SEQ_E_REPLAY)
		__builtin_trap();
	srup_seqstore_free(st);
	remove_state();
	return 0;
}
