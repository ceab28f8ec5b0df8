/* libFuzzer target: BLE long-write reassembly (radio/ble_longwrite.h) over
 * a stream of WriteValue chunks. Each chunk in the input is
 *
 *   u8 flags   bit 0: the mtu option is present, bit 1: from the second
 *              device, bit 2: offset taken from the input (else the number
 *              of bytes held, a chunk that continues the write)
 *   u16 BE offset, u16 BE mtu, u8 length, length bytes
 *
 * Checked against a shadow of the bytes written since the last offset 0:
 * held bytes are exactly that shadow and never more than a frame; a
 * complete frame encodes back to exactly the shadow; a refusal says why
 * and leaves nothing held. */
#include <stdint.h>
#include <string.h>

#include "ble_longwrite.h"
#include "radio.h"

#define DEV_A "/org/bluez/hci0/dev_00_11_22_33_44_55"
#define DEV_B "/org/bluez/hci0/dev_66_77_88_99_AA_BB"

struct shadow {
	uint8_t bytes[1024];
	size_t len;
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t zero[SRUP_FRAME_MAX_LEN];
	struct ble_longwrite lw = {0};
	struct shadow sh = {.len = 0};
	struct srup_frame frame;
	uint8_t encoded[SRUP_FRAME_MAX_LEN];
	size_t off = 0, enc_len;

	while (size - off >= 6) {
		uint8_t flags = data[off];
		uint16_t offset = (uint16_t)(data[off + 1] << 8 | data[off + 2]);
		uint16_t mtu = (uint16_t)(data[off + 3] << 8 | data[off + 4]);
		size_t len = data[off + 5];
		struct ble_chunk c;
		char why[160] = "";

		off += 6;
		if (len > size - off)
			len = size - off;
		c = (struct ble_chunk){.data = data + off, .len = len,
				       .offset = (flags & 4) ? offset : (uint16_t)lw.held_len,
				       .has_mtu = flags & 1, .mtu = mtu,
				       .device = (flags & 2) ? DEV_B : DEV_A};
		off += len;
		if (c.offset == 0)
			sh.len = 0;
		if (sh.len + len <= sizeof(sh.bytes)) {
			memcpy(sh.bytes + sh.len, c.data, len);
			sh.len += len;
		}

		switch (ble_longwrite_chunk(&lw, &c, &frame, why, sizeof(why))) {
		case BLE_LONGWRITE_HELD:
			if (lw.held_len == 0 || lw.held_len >= SRUP_FRAME_MAX_LEN ||
			    lw.held_len != sh.len || memcmp(lw.held, sh.bytes, sh.len) != 0 ||
			    strcmp(lw.device, c.device) != 0)
				__builtin_trap();
			break;
		case BLE_LONGWRITE_COMPLETE:
			if (srup_frame_encode(&frame, encoded, sizeof(encoded), &enc_len) != RADIO_OK ||
			    enc_len != sh.len || memcmp(encoded, sh.bytes, enc_len) != 0 ||
			    lw.held_len != 0)
				__builtin_trap();
			srup_frame_wipe(&frame);
			sh.len = 0;
			break;
		case BLE_LONGWRITE_REFUSED:
			if (!why[0] || strnlen(why, sizeof(why)) >= sizeof(why) || lw.held_len != 0 ||
			    lw.device[0] || memcmp(lw.held, zero, sizeof(zero)) != 0 ||
			    frame.value_len != 0)
				__builtin_trap();
			sh.len = 0;
			break;
		default:
			__builtin_trap();
		}
	}
	ble_longwrite_drop(&lw);
	return 0;
}
