/* The INI configuration shared by srup-observerd and srup-device
 * (parsed with inih).
 *
 *   [identity]    id = <hex>, private_key = <path>
 *   [server]      id = <hex>, public_key = <path>
 *   [mqtt]        broker = <url>, ca_file, cert_file, key_file (optional)
 *   [observation] channel = sim|ble|nfc, window_seconds = 120,
 *                 max_attempts = 3, max_pending = 1000   (observer only)
 *   [sim]         socket = <path>
 *   [ble]         adapter = hci0, require_encryption = false
 *   [nfc]         device = <libnfc connstring>, poll_ms = 200
 *   [state]       dir = <path>
 *
 * IDs are hex, 1..16 digits, leading zeros optional. Unknown sections or
 * keys, missing required keys and bad values are errors naming the file,
 * the line and the key. */
#ifndef SRUP_CONFIG_H
#define SRUP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "radio.h"

enum srup_config_kind {
	SRUP_CONFIG_OBSERVER, /* [observation] allowed and required */
	SRUP_CONFIG_DEVICE,   /* [observation] is an unknown section */
};

enum srup_channel_kind {
	SRUP_CHANNEL_SIM,
	SRUP_CHANNEL_BLE,
	SRUP_CHANNEL_NFC,
};

const char *srup_channel_name(enum srup_channel_kind kind);
/* Returns 0 and sets *out for "sim", "ble", "nfc"; -1 otherwise. */
int srup_channel_parse(const char *text, enum srup_channel_kind *out);

struct srup_config {
	char path[256];              /* the file it came from */
	uint64_t identity_id;
	char identity_private_key[256];
	uint64_t server_id;
	char server_public_key[256];
	char mqtt_broker[256];
	char mqtt_ca_file[256];
	char mqtt_cert_file[256];
	char mqtt_key_file[256];
	/* [observation] */
	enum srup_channel_kind channel;
	unsigned window_seconds;
	unsigned max_attempts;
	unsigned max_pending;
	/* Channel sections (defaults filled in even when absent). */
	struct radio_sim_config sim;
	struct radio_ble_config ble;  /* ble.observer_id = identity_id */
	struct radio_nfc_config nfc;
	char state_dir[256];
};

/* Parse path into cfg. On error returns -1 and writes one line to err
 * ("FILE:LINE: [section] key: what is wrong"). Checks that what the chosen
 * channel needs is present ([sim] socket for sim, [nfc] device for nfc).
 * Once the file parses and is complete, what is still unusable is reported
 * all together, one such line per problem (joined with '\n'): an observer
 * or server ID of 0 (observer files), a broker host reserved for examples
 * (example.com/.net/.org, .invalid), and for an mqtts:// broker a missing
 * ca_file or a ca_file, cert_file or key_file the caller cannot read. */
int srup_config_load(const char *path, enum srup_config_kind kind, struct srup_config *cfg,
		     char *err, size_t err_len);

#endif
