/* Reassembly of a confirmation frame written to the BLE Confirmation
 * characteristic in chunks (GATT long writes), without D-Bus or any I/O,
 * so that it is tested and fuzzed on its own. Private to radio/.
 *
 * A chunk is written at an offset (the WriteValue "offset" option, 0 when
 * absent). Offset 0 starts a new frame; a chunk at another offset must
 * continue exactly where the held bytes end, from the same device, and no
 * frame may pass 267 bytes. After every chunk the held bytes are judged as
 * far as they go: version 0x01 as soon as byte 0 is there, value length
 * 1..256 as soon as the 11-byte header is, never more bytes than the header
 * announces. When the held bytes reach 11 + N the frame is parsed
 * (srup_frame_parse). A frame still incomplete after a chunk is refused as
 * truncated when that chunk is a first chunk shorter than the header, or
 * when it came through BlueZ (it carries the "mtu" option) and is shorter
 * than a full Prepare Write payload (mtu - 5): BlueZ joins a long write's
 * contiguous chunks into one call, so a short incomplete chunk from it is
 * the writer's whole frame. Otherwise the chunk is held. */
#ifndef SRUP_BLE_LONGWRITE_H
#define SRUP_BLE_LONGWRITE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "radio.h"

#define BLE_LONGWRITE_DEVICE_MAX 128u   /* a BlueZ device object path */
#define BLE_PREPARE_WRITE_OVERHEAD 5u   /* ATT Prepare Write Request header */

/* The frame being written. Zero-initialised is empty. */
struct ble_longwrite {
	uint8_t held[SRUP_FRAME_MAX_LEN]; /* secret: part of a confirmation value */
	size_t held_len;
	char device[BLE_LONGWRITE_DEVICE_MAX]; /* who wrote the held bytes */
};

/* One WriteValue: the bytes and the options that came with them. */
struct ble_chunk {
	const uint8_t *data;
	size_t len;
	uint16_t offset;
	bool has_mtu;
	uint16_t mtu;
	const char *device; /* "" when the write named none */
};

enum ble_longwrite_result {
	BLE_LONGWRITE_HELD,     /* well-formed so far, kept: answer success */
	BLE_LONGWRITE_COMPLETE, /* *frame holds the parsed frame; nothing held */
	BLE_LONGWRITE_REFUSED,  /* malformed, why says how; nothing held */
};

/* Take one chunk. On BLE_LONGWRITE_COMPLETE the caller wipes *frame after
 * use (srup_frame_wipe); on the other results *frame is wiped. */
enum ble_longwrite_result ble_longwrite_chunk(struct ble_longwrite *lw,
					      const struct ble_chunk *chunk,
					      struct srup_frame *frame, char *why, size_t why_len);

/* Forget (and wipe) what is held. */
void ble_longwrite_drop(struct ble_longwrite *lw);

#endif
