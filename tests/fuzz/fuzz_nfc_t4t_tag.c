/* libFuzzer target: the device's Type 4 Tag emulation (nfc_t4t_tag_respond)
 * answering C-APDUs from any reader that comes near. The input is the
 * C-APDUs, each a u8 length and that many bytes; a length of 0xFF starts
 * a new activation (selections forgotten). The tag serves one frame.
 *
 * Checked: every answer has a status word and fits the R-APDU buffer; a
 * successful READ BINARY returns the bytes of the selected file at the
 * offset asked; the count of NDEF bytes not yet read never goes wrong. */
#include <stdint.h>
#include <string.h>

#include "nfc_t4t.h"
#include "radio.h"

static struct nfc_t4t_tag tag;
static uint8_t frame[SRUP_FRAME_MAX_LEN];
static size_t frame_len;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	struct srup_frame f = {.device_id = 0xC1C2C3C4C5C6C7C8ull, .value_len = 32};

	(void)argc;
	(void)argv;
	memcpy(f.value, "5e1f0c2d3b4a69788796a5b4c3d2e1f0", 32);
	if (srup_frame_encode(&f, frame, sizeof(frame), &frame_len) != RADIO_OK)
		__builtin_trap();
	return 0;
}

static size_t unread(const struct nfc_t4t_tag *t)
{
	size_t n = 0;

	for (size_t i = 0; i < t->file_len; i++)
		n += !t->read_map[i];
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t rapdu[NFC_T4T_RAPDU_MAX + 16];
	size_t off = 0;

	if (nfc_t4t_tag_init(&tag, frame, frame_len) != RADIO_OK)
		__builtin_trap();
	while (off < size) {
		size_t clen = data[off++], rlen;
		const uint8_t *capdu = data + off;
		enum nfc_t4t_file current = tag.current;

		if (clen == 0xFF) {
			nfc_t4t_tag_reset_selection(&tag);
			continue;
		}
		if (clen > size - off)
			clen = size - off;
		off += clen;
		memset(rapdu, 0xEE, sizeof(rapdu));
		rlen = nfc_t4t_tag_respond(&tag, capdu, clen, rapdu, NFC_T4T_RAPDU_MAX);
		if (rlen < 2 || rlen > NFC_T4T_RAPDU_MAX || rapdu[NFC_T4T_RAPDU_MAX] != 0xEE)
			__builtin_trap();
		if (clen >= 4 && capdu[0] == 0x00 && capdu[1] == 0xB0 && rapdu[rlen - 2] == 0x90 &&
		    rapdu[rlen - 1] == 0x00) {
			size_t offset = (size_t)capdu[2] << 8 | capdu[3];
			const uint8_t *body = current == NFC_T4T_FILE_CC ? tag.cc : tag.file;
			size_t body_len = current == NFC_T4T_FILE_CC ? sizeof(tag.cc) : tag.file_len;

			if (current == NFC_T4T_FILE_NONE || offset + rlen - 2 > body_len ||
			    memcmp(rapdu, body + offset, rlen - 2) != 0)
				__builtin_trap();
		}
		if (tag.unread != unread(&tag))
			__builtin_trap();
	}
	nfc_t4t_tag_wipe(&tag);
	return 0;
}
