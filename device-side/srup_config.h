/* The INI configuration shared by srup-observerd and srup-device
 * (parsed with inih).
 *
 *   [identity]    id = <hex>, private_key = <path>
 *   [server]      id = <hex>, public_key = <path>
 *   [mqtt]        broker = <url> [<url> ...] (tried in order), ca_file, cert_file,
 *                 key_file (optional; the same files for every URL)
 *   [observation] channel = one or more of sim ble nfc (blanks between, each
 *                 at most once), window_seconds = 120,
 *                 max_attempts = 3, max_pending = 1000   (observer only)
 *   [sim]         socket = <path>
 *   [ble]         adapter = hci0, require_encryption = false
 *   [nfc]         device = <libnfc connstring>, poll_ms = 200
 *   [state]       dir = <path>
 *   [control]     socket = /run/srup-observer/control      (observer only)
 *   [audit]       file = <state dir>/audit.log, max_bytes = 10485760, keep = 5,
 *                 fsync = true, journal = true               (observer only)
 *   [metrics]     file = <path> (unset: off), interval_seconds = 15
 *                                                           (observer only)
 *   [server]      join = off|auto (send an unmediated JOIN_REQ at first start)
 *   [identification] text = <answer to ID_REQ>
 *   [update]      ca_file, max_bytes = 67108864, connect_timeout_seconds = 10,
 *                 timeout_seconds = 300, max_redirects = 5,
 *                 activate = <command>   (staged file and token appended)
 *   [hooks]       timeout_seconds = 120
 *   [actions]     <action ID 0..255> = <command>
 *   [data]        <data ID> = <command>  (the data on its stdin)
 *   [groups]      max = 8
 *   [join]        command = accept|refuse   (JOIN_COMMAND policy)
 *
 * A <command> is split into argv words at runs of blanks, with no quoting
 * or expansion of any kind (srup_config_split_command); its first word is
 * the program's absolute path.
 *
 * IDs are hex, 1..16 digits, leading zeros optional. Unknown sections or
 * keys, missing required keys and bad values are errors naming the file,
 * the line and the key.
 *
 * Drop-ins: after FILE come FILE.d/\*.conf (hidden files and other names
 * skipped), in byte order of their names; a key set again in a later file
 * replaces the earlier value (for [actions] and [data]: the entry of the
 * same ID). Within one file a key or section still appears once. A
 * required key is satisfied when any of the files sets it. */
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

#define SRUP_CONFIG_HOOKS_MAX 32   /* entries of [actions] and of [data] */
#define SRUP_CONFIG_DATA_ID_MAX 64
enum { SRUP_CONFIG_JOIN_OFF, SRUP_CONFIG_JOIN_AUTO };
enum { SRUP_CONFIG_JOIN_COMMAND_ACCEPT, SRUP_CONFIG_JOIN_COMMAND_REFUSE };

#define SRUP_CONFIG_FILES_MAX 64     /* the main file and its drop-ins */
#define SRUP_CONFIG_PATH_MAX 256
#define SRUP_CONFIG_KEYS_MAX 64      /* room for every key of the table */
#define SRUP_CONFIG_SECTIONS_MAX 32

/* Where a value was set: files[file], line (line 0: no file set it). */
struct srup_config_origin {
	unsigned file;
	unsigned line;
};

struct srup_config {
	char path[SRUP_CONFIG_PATH_MAX];   /* the main file */
	/* The files read, in order: path first, then its drop-ins. */
	char files[SRUP_CONFIG_FILES_MAX][SRUP_CONFIG_PATH_MAX];
	size_t n_files;
	/* Where each key and section header was last seen (srup_config_where),
	 * so that checks made after parsing name FILE:LINE too. */
	struct srup_config_origin key_origin[SRUP_CONFIG_KEYS_MAX];
	struct srup_config_origin section_origin[SRUP_CONFIG_SECTIONS_MAX];
	uint64_t identity_id;
	char identity_private_key[256];
	uint64_t server_id;
	char server_public_key[256];
	char mqtt_broker[256];
	char mqtt_ca_file[256];
	char mqtt_cert_file[256];
	char mqtt_key_file[256];
	/* [observation]: the channels listed, in the order given (registry
	 * drivers, radio.h); each at most once. */
	const struct radio_channel_driver *channels[RADIO_CHANNELS_MAX];
	size_t n_channels;
	unsigned window_seconds;
	unsigned max_attempts;
	unsigned max_pending;
	/* Channel sections (defaults filled in even when absent);
	 * radio.ble.observer_id = identity_id. */
	struct radio_channel_configs radio;
	char state_dir[256];
	/* [control], [audit], [metrics]: srup-observerd's operator interfaces. */
	char control_socket[108];    /* fits sockaddr_un.sun_path */
	char audit_file[256];        /* empty: <state_dir>/audit.log */
	unsigned audit_max_bytes;    /* rotate when the file would pass this */
	unsigned audit_keep;         /* rotated files kept (audit.log.1 ...) */
	bool audit_fsync;            /* fdatasync after each record */
	bool audit_journal;          /* structured journald records when journald runs */
	char metrics_file[256];      /* empty: no metrics */
	unsigned metrics_interval_seconds;
	/* The device role (srup_role.h). */
	unsigned server_join;          /* SRUP_CONFIG_JOIN_OFF / _AUTO */
	char identification[256];      /* empty: the program's default */
	struct {
		char ca_file[256];
		unsigned max_bytes;
		unsigned connect_timeout_seconds;
		unsigned timeout_seconds;
		unsigned max_redirects;
		char activate[256];    /* empty: ACTIVATE answered 0x1F */
	} update;
	unsigned hook_timeout_seconds;
	unsigned groups_max;
	unsigned join_command;         /* SRUP_CONFIG_JOIN_COMMAND_ACCEPT / _REFUSE */
	struct srup_config_hook {
		char id[SRUP_CONFIG_DATA_ID_MAX + 1]; /* [data]: the data ID */
		unsigned action_id;                   /* [actions]: 0..255 */
		char command[256];
		struct srup_config_origin origin;
	} actions[SRUP_CONFIG_HOOKS_MAX], data[SRUP_CONFIG_HOOKS_MAX];
	size_t n_actions, n_data;
};

/* Parse path and then its drop-ins (path.d/\*.conf) into cfg, which is
 * cleared first: a reload loads into a fresh struct with the same call and
 * compares. On error returns -1 and writes to err, one line per problem,
 * each "FILE:LINE: [section] key: what is wrong" naming the file (main or
 * drop-in) where the value was set; a file that cannot be read is named
 * with what was wrong. The first syntax or value error ends the load.
 * Once the files parse and are complete, what is still unusable is
 * reported all together (joined with '\n'): an identity or server ID of 0,
 * a broker host reserved for examples (example.com/.net/.org, .invalid),
 * for an mqtts:// broker a missing ca_file or a ca_file, cert_file or
 * key_file the caller cannot read, and an [identity] private_key or
 * [server] public_key file the caller cannot read. Also checks what each
 * listed channel needs ([sim] socket for sim, [nfc] device for nfc).
 * cfg->files and cfg->n_files list the files read, also on error. */
int srup_config_load(const char *path, enum srup_config_kind kind, struct srup_config *cfg,
		     char *err, size_t err_len);

/* "FILE:LINE" where [section] key was last set (for [actions] and [data]
 * the key is the ID), or the main file's name when no file set it. */
/* The same as srup_config_load for values given by a program rather than a
 * file (libsrup-device's struct srup_device_settings): each value is
 * checked as that key in a file would be, then the whole as a file is;
 * errors name origin and the value's position (1-based) as FILE:LINE. */
struct srup_config_value {
	const char *section, *key, *value;
};
int srup_config_load_values(const char *origin, enum srup_config_kind kind,
			    const struct srup_config_value *values, size_t n,
			    struct srup_config *cfg, char *err, size_t err_len);
const char *srup_config_where(const struct srup_config *cfg, const char *section,
			      const char *key, char *buf, size_t len);

/* What this machine lacks for the channels a loaded configuration uses:
 * every channel listed in the observer's [observation] channel; for a
 * device (which picks its channel per join) the channels whose section it
 * set (sim needs nothing of the machine).
 * - ble: BlueZ must own org.bluez on the system bus or be activatable
 *   there (what the radio needs; a bus that cannot be reached counts);
 * - nfc: a connstring of a serial, SPI or I2C driver (pn532_uart, arygon,
 *   acr122s, pn532_spi, pn532_i2c) must name an existing device node.
 * Writes one line per problem ("FILE:LINE: [section] key: ...") to out,
 * joined with '\n', and returns their number. */
/* Whether the configuration lists channel (observer). */
bool srup_config_lists(const struct srup_config *cfg, const struct radio_channel_driver *channel);
/* The listed channels' names joined by sep ("ble nfc"), for messages. */
const char *srup_config_channel_list(const struct srup_config *cfg, const char *sep, char *buf,
				     size_t len);

int srup_config_check_channels(const struct srup_config *cfg, enum srup_config_kind kind,
			       char *out, size_t out_len);

/* Split a configured <command> into argv words: words are separated by
 * runs of spaces and tabs; there is no quoting, escaping, globbing or
 * variable expansion (a word cannot hold a blank). buf (len bytes) receives
 * the words; argv gets at most max - 1 of them and a NULL. Returns the
 * number of words, or -1 if there are none, too many, or they do not fit. */
int srup_config_split_command(const char *line, char *buf, size_t len, char *argv[], size_t max);
#define SRUP_CONFIG_COMMAND_WORDS 24

/* The loader's table of keys, one entry per key, so that what depends on
 * every key (srup_config_reload.h) can be checked against it. [actions]
 * and [data], whose keys are IDs, are not in it. */
struct srup_config_key {
	const char *section; /* "mqtt" */
	const char *name;    /* "broker" */
	size_t offset, size; /* the field in struct srup_config */
};
size_t srup_config_key_count(void);
/* Returns 0 and fills *out for i < srup_config_key_count(), else -1. */
int srup_config_key_at(size_t i, struct srup_config_key *out);

#endif
