/* The observation channel: the confirmation frame (OBSERVATION-CHANNEL.md
 * section 1), the observer-side channel interface, and the device-side
 * presenters. The radio layer knows nothing of SRUP beyond the frame.
 *
 * Channels run on the caller's sd-event loop and call back on that loop's
 * thread only (a channel whose library blocks runs it on a thread of its
 * own and posts frames to the loop). */
#ifndef SRUP_RADIO_H
#define SRUP_RADIO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

/* ---- The confirmation frame ---------------------------------------- */

#define SRUP_FRAME_VERSION 0x01
#define SRUP_FRAME_VALUE_MAX 256u
#define SRUP_FRAME_HEADER_LEN 11u
#define SRUP_FRAME_MAX_LEN (SRUP_FRAME_HEADER_LEN + SRUP_FRAME_VALUE_MAX) /* 267 */

/* Result bytes, as the sim channel answers and BLE's Result holds. */
#define RADIO_RESULT_NOT_COMPARED 0x00
#define RADIO_RESULT_MATCH 0x60
#define RADIO_RESULT_MISMATCH 0x6E

enum radio_err {
	RADIO_OK = 0,
	RADIO_E_NOMEM,
	RADIO_E_ARG,
	RADIO_E_FRAME_SHORT,     /* fewer than 11 bytes */
	RADIO_E_FRAME_VERSION,   /* version byte is not 0x01 */
	RADIO_E_FRAME_LENGTH,    /* value length 0 or over 256 */
	RADIO_E_FRAME_SIZE,      /* value length disagrees with the frame size */
	RADIO_E_IO,              /* socket, D-Bus or device I/O failed (errno) */
	RADIO_E_TIMEOUT,
	RADIO_E_UNAVAILABLE,     /* radio/adapter/reader not present */
	RADIO_E_PROTOCOL,        /* peer broke the channel's protocol */
	RADIO_E_WRONG_OBSERVER,  /* BLE: observer ID differs from the one named */
	RADIO_E_REFUSED,         /* observer refused the frame */
	RADIO_E__COUNT
};

const char *radio_strerror(enum radio_err err);

struct srup_frame {
	uint64_t device_id;
	uint16_t value_len;                  /* 1..256 */
	uint8_t value[SRUP_FRAME_VALUE_MAX]; /* secret: wipe with srup_frame_wipe */
};

/* Parse exactly len bytes. */
enum radio_err srup_frame_parse(const uint8_t *buf, size_t len, struct srup_frame *out);
/* Encode into out (at least SRUP_FRAME_MAX_LEN bytes); *out_len set. */
enum radio_err srup_frame_encode(const struct srup_frame *f, uint8_t *out, size_t cap,
				 size_t *out_len);
void srup_frame_wipe(struct srup_frame *f);

/* ---- Observer side: the channel ------------------------------------ */

struct radio_channel;

struct radio_channel_callbacks {
	/* A well-formed frame arrived. Decide now and return the result byte:
	 * RADIO_RESULT_MATCH, RADIO_RESULT_MISMATCH, or RADIO_RESULT_NOT_COMPARED
	 * (no observation pending for that device). The channel wipes the frame
	 * after the call. */
	uint8_t (*frame)(const struct srup_frame *frame, void *user);
	/* The radio became unusable (reader lost, BlueZ gone past its grace
	 * period). The channel keeps trying to get it back. */
	void (*unavailable)(const char *why, void *user);
	/* Optional: after unavailable, the radio can be used again (BlueZ and
	 * the adapter are back, the reader opened). */
	void (*available)(void *user);
	void *user;
};

struct radio_channel_ops {
	const char *name; /* "sim", "ble", "nfc" */
	/* At least one observation is pending: listen (advertise, poll). */
	enum radio_err (*start)(struct radio_channel *ch);
	/* None is pending: stop listening (the channel may stay set up). */
	void (*stop)(struct radio_channel *ch);
	void (*destroy)(struct radio_channel *ch);
};

/* Every channel begins with this header. */
struct radio_channel {
	const struct radio_channel_ops *ops;
	struct radio_channel_callbacks cb;
	sd_event *loop;
	bool listening;
};

static inline enum radio_err radio_channel_start(struct radio_channel *ch)
{
	return ch->ops->start(ch);
}
static inline void radio_channel_stop(struct radio_channel *ch)
{
	ch->ops->stop(ch);
}
static inline void radio_channel_free(struct radio_channel *ch)
{
	if (ch)
		ch->ops->destroy(ch);
}

/* Channel configurations (the [sim], [ble], [nfc] sections). */
struct radio_sim_config {
	char socket_path[108];  /* sun_path */
};

struct radio_ble_config {
	char adapter[32];        /* "hci0" */
	bool require_encryption;
	uint64_t observer_id;    /* served by the Observer ID characteristic */
	unsigned bluez_grace_seconds; /* how long BlueZ may be gone before 0x6F (default 10) */
};

struct radio_nfc_config {
	char device[256];        /* libnfc connstring, e.g. "pn532_uart:/dev/ttyUSB0" */
	unsigned poll_ms;        /* pause between polls (default 200) */
};

enum radio_err radio_sim_channel_new(sd_event *loop, const struct radio_sim_config *cfg,
				     const struct radio_channel_callbacks *cb,
				     struct radio_channel **out);
enum radio_err radio_ble_channel_new(sd_event *loop, const struct radio_ble_config *cfg,
				     const struct radio_channel_callbacks *cb,
				     struct radio_channel **out);
enum radio_err radio_nfc_channel_new(sd_event *loop, const struct radio_nfc_config *cfg,
				     const struct radio_channel_callbacks *cb,
				     struct radio_channel **out);

/* Every channel's section, as one struct: the registry's functions take
 * it whole and each uses its own member. */
struct radio_channel_configs {
	struct radio_sim_config sim;
	struct radio_ble_config ble;
	struct radio_nfc_config nfc;
};

/* ---- The channel registry --------------------------------------------- */

/* A key of a channel's section, for the configuration's key table: its
 * value lands at offset (size bytes) in struct radio_channel_configs. */
enum radio_config_type {
	RADIO_CONFIG_TEXT,   /* char[size], non-empty (a path, a name, a connstring) */
	RADIO_CONFIG_UINT,   /* unsigned, min..max */
	RADIO_CONFIG_BOOL,   /* bool */
};

struct radio_config_key {
	const char *name;    /* NULL ends the list */
	enum radio_config_type type;
	size_t offset, size;
	unsigned min, max;   /* RADIO_CONFIG_UINT */
	const char *unit;    /* UINT: "milliseconds"; TEXT: what the value is */
};

#define RADIO_CONFIG_FIELD(f) \
	offsetof(struct radio_channel_configs, f), sizeof(((struct radio_channel_configs *)0)->f)

/* Every channel is one driver: a row of radio_channel_drivers[]
 * (radio_channels.c) pointing at the driver its file defines. The daemon,
 * the device-side agent and the configuration find channels there, by
 * name, and never name one themselves. */
struct radio_channel_driver {
	/* Its name in [observation] channel and srup-device --channel, and the
	 * name of its configuration section. */
	const char *name;
	/* Its section's keys (NULL-name ended). */
	const struct radio_config_key *keys;
	/* Defaults of its section's values. */
	void (*defaults)(struct radio_channel_configs *cfg);
	/* The key of its section that must be set for it to be used (NULL:
	 * none), and whether it is set. */
	const char *required_key;
	bool (*configured)(const struct radio_channel_configs *cfg);
	/* What this machine lacks for it: returns 0 when nothing, else 1 with
	 * why filled in and *key set to the key of its section the problem is
	 * about (NULL: the section as a whole). May be NULL. */
	int (*machine_problem)(const struct radio_channel_configs *cfg, char *why, size_t len,
			       const char **key);
	/* Observer side: the channel (not listening until started). */
	enum radio_err (*open)(sd_event *loop, const struct radio_channel_configs *cfg,
			       const struct radio_channel_callbacks *cb,
			       struct radio_channel **out);
	/* Device side: present one frame (see the presenters below). */
	enum radio_err (*present)(const struct radio_channel_configs *cfg,
				  uint64_t expected_observer, const struct srup_frame *f,
				  unsigned timeout_ms, uint8_t *result, char *detail,
				  size_t detail_len);
	/* Whether a presenter learns the observer's result (a tag cannot). */
	bool present_learns_result;
};

#define RADIO_CHANNELS_MAX 8

/* The registry, in the order channels are listed in messages; NULL-ended. */
extern const struct radio_channel_driver *const radio_channel_drivers[];
/* The driver called name, or NULL. */
const struct radio_channel_driver *radio_channel_find(const char *name);
/* "sim, ble, nfc": the names, for messages. */
const char *radio_channel_names(char *buf, size_t len);

/* The drivers themselves (each defined in its channel's file, declared
 * beside its row in radio_channels.c); named here for tests and for the
 * device-side default. */
extern const struct radio_channel_driver radio_sim_driver, radio_ble_driver, radio_nfc_driver;

/* ---- Device side: presenters ---------------------------------------- */
/* Each presents one frame to the observer and blocks until done or the
 * timeout. *result (may be NULL) receives what the observer answered, when
 * the channel can tell (RADIO_RESULT_*; RADIO_RESULT_NOT_COMPARED when it
 * cannot). Errors carry a message in detail (may be NULL). */

enum radio_err radio_sim_present(const struct radio_sim_config *cfg, const struct srup_frame *f,
				 unsigned timeout_ms, uint8_t *result, char *detail,
				 size_t detail_len);
/* BLE: the observer's Observer ID characteristic must equal expected_observer. */
enum radio_err radio_ble_present(const struct radio_ble_config *cfg, uint64_t expected_observer,
				 const struct srup_frame *f, unsigned timeout_ms,
				 uint8_t *result, char *detail, size_t detail_len);
/* NFC: emulate a Type 4 tag serving the frame until a reader has read it. */
enum radio_err radio_nfc_present(const struct radio_nfc_config *cfg, const struct srup_frame *f,
				 unsigned timeout_ms, uint8_t *result, char *detail,
				 size_t detail_len);

#endif
