/* libsrup-device: the SRUP device role, for a device maker's own program.
 *
 * A struct srup_device is one device identity talking SRUP to its C2
 * server over MQTT: it connects (to the first broker of the list that
 * answers), checks every message (sender, signature, sequence ID, as
 * JOIN-FLOW.md section 4 says) and answers every server command, asking
 * the application through one table of callbacks (struct
 * srup_device_callbacks). It also sends what a device sends on its own:
 * DATA, and the device-initiated flows (observed, human-mediated and
 * unmediated join, resign, deregister) as asynchronous calls.
 *
 * Ownership: every _new has its _free; strings and buffers passed in are
 * copied unless a comment says "borrowed"; pointers handed to a callback
 * are valid for that call only. Every registration takes user data and a
 * destroy function (called once, when the registration ends: unregistered,
 * replaced or the device freed) and returns an id (> 0) to unregister.
 *
 * Event loop: the device runs either on an sd-event loop the application
 * owns (srup_device_attach_event) or on one of its own, driven from any
 * poll()-based loop: poll srup_device_get_fd for POLLIN with
 * srup_device_get_timeout_ms, then call srup_device_process. Neither needs
 * systemd running nor threads of the application's own.
 *
 * Threads: a struct srup_device and everything reached from it must be
 * used from one thread at a time; every callback runs on the thread that
 * runs the loop (sd_event_run or srup_device_process), never on another.
 * The library itself runs the MQTT client's threads and one worker thread
 * per update download; none of them calls application code except the
 * log handler, which they may call (it must be thread-safe).
 * srup_device_set_log_handler is the only process-wide setting and should
 * be called before any device exists.
 *
 * Process-wide state: the library changes no signal disposition or mask,
 * never calls exit(), and closes everything it opened by _free. Update
 * downloads and their staging files live under the state directory. */
#ifndef SRUP_DEVICE_H
#define SRUP_DEVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <systemd/sd-event.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---------------------------------------------------------------- */

enum srup_device_err {
	SRUP_DEVICE_OK = 0,
	SRUP_DEVICE_E_NOMEM,
	SRUP_DEVICE_E_ARG,          /* a NULL, out-of-range or unknown argument */
	SRUP_DEVICE_E_CONFIG,       /* the configuration is unusable (detail: FILE:LINE) */
	SRUP_DEVICE_E_KEY,          /* a key file cannot be used (detail names it) */
	SRUP_DEVICE_E_STATE,        /* the state directory cannot be used */
	SRUP_DEVICE_E_MQTT,         /* the MQTT client refused or failed */
	SRUP_DEVICE_E_LOOP,         /* the event loop failed */
	SRUP_DEVICE_E_BUSY,         /* a flow of that kind is already running */
	SRUP_DEVICE_E_STATE_ORDER,  /* called in the wrong state (not started, already done) */
	SRUP_DEVICE_E_DEREGISTERED, /* the server deregistered this device */
	SRUP_DEVICE_E_TERMINATED,   /* the server terminated this device */
	SRUP_DEVICE_E_RADIO,        /* the observation channel failed */
	SRUP_DEVICE_E_TIMEOUT,
	SRUP_DEVICE_E_PROTOCOL,     /* encoding, signing or decrypting failed */
	SRUP_DEVICE_E__COUNT
};

/* A short English text for err; never NULL. */
const char *srup_device_strerror(enum srup_device_err err);

/* The library's version, "MAJOR.MINOR.PATCH". */
const char *srup_device_version(void);

/* ---- logging --------------------------------------------------------------- */

/* priority is a syslog priority (LOG_ERR ... LOG_DEBUG); line has no
 * newline. Default handler: stderr, "<priority>line\n" (journald's prefix). */
typedef void (*srup_device_log_fn)(int priority, const char *line, void *user);
/* Process-wide (the library's logger); NULL restores the default. fn
 * may run on the library's own threads too (a failure seen there), at
 * most one line per call.
 * max_priority: lines above it are not formatted at all (default LOG_INFO). */
void srup_device_set_log_handler(srup_device_log_fn fn, void *user, int max_priority);

/* ---- making a device ------------------------------------------------------- */

struct srup_device;

/* The same settings as srup-device's INI file ([identity], [server],
 * [mqtt], [state], [identification], [update], [groups], [join], the
 * channel sections), for an application that keeps its own configuration.
 * Strings are copied; NULL or "" means "not set" (the INI default). */
struct srup_device_settings {
	size_t size;                   /* sizeof(struct srup_device_settings) */
	uint64_t id;                   /* [identity] id */
	const char *private_key;       /* [identity] private_key (mode 0600 or stricter) */
	uint64_t server_id;            /* [server] id */
	const char *server_public_key; /* [server] public_key */
	const char *broker;            /* [mqtt] broker: one or more URLs, blank-separated */
	const char *mqtt_ca_file, *mqtt_cert_file, *mqtt_key_file;
	const char *state_dir;         /* [state] dir */
	const char *identification;    /* [identification] text */
	const char *update_ca_file;    /* [update] ca_file */
	uint64_t update_max_bytes;     /* 0: default */
	unsigned update_timeout_seconds;
	unsigned groups_max;           /* 0: default */
	bool join_command_refuse;      /* [join] command = refuse */
	bool join_auto;                /* [server] join = auto */
	const char *sim_socket;        /* [sim] socket */
	const char *ble_adapter;       /* [ble] adapter */
	const char *nfc_device;        /* [nfc] device */
};

/* From an INI file (drop-ins in FILE.d/ included), checked as
 * `srup-device --check-config` checks it. On error *out is NULL and detail
 * holds one line per problem ("FILE:LINE: [section] key: ..."). The
 * [actions], [data], [hooks] and [update] activate keys are read but have
 * no effect here: they are the hook adapter's (srup-device run). */
enum srup_device_err srup_device_new_from_file(const char *path, struct srup_device **out,
					       char *detail, size_t detail_len);
/* settings are checked as the same keys of a file would be; detail then
 * names "srup_device_settings:N: [section] key: ..." (N: the position of
 * the value among those set). A state directory holding a
 * deregistration record: SRUP_DEVICE_E_DEREGISTERED (both _new). */
enum srup_device_err srup_device_new(const struct srup_device_settings *settings,
				     struct srup_device **out, char *detail, size_t detail_len);
/* Stops everything the device runs (downloads, flows: their completion
 * callbacks run with SRUP_DEVICE_E_STATE_ORDER), calls the destroy
 * functions of every registration, disconnects and frees. */
void srup_device_free(struct srup_device *dev);

uint64_t srup_device_id(const struct srup_device *dev);
uint64_t srup_device_server_id(const struct srup_device *dev);

/* ---- running it ------------------------------------------------------------ */

/* Run on loop (borrowed; the application keeps it running). Call before
 * srup_device_start, at most once. */
enum srup_device_err srup_device_attach_event(struct srup_device *dev, sd_event *loop);

/* Connect and subscribe (asynchronously; the connection is kept and
 * re-made by the library). Without srup_device_attach_event the device
 * makes a loop of its own, driven by the three calls below. */
enum srup_device_err srup_device_start(struct srup_device *dev);

/* For a poll()-based loop: wait for POLLIN on this descriptor for at most
 * srup_device_get_timeout_ms milliseconds (-1: no timeout), then call
 * srup_device_process, which runs whatever is ready and never blocks.
 * Only for a device running on its own loop (SRUP_DEVICE_E_STATE_ORDER
 * otherwise). */
int srup_device_get_fd(struct srup_device *dev);
int srup_device_get_timeout_ms(struct srup_device *dev);
enum srup_device_err srup_device_process(struct srup_device *dev);

bool srup_device_is_connected(const struct srup_device *dev);

/* Wait (running nothing else) until what the device sent was
 * acknowledged by the broker or timeout_ms passed. For a clean exit. */
enum srup_device_err srup_device_flush(struct srup_device *dev, unsigned timeout_ms);

/* Connection changes: connected is true once the session is up with
 * every subscription in place, false when it was lost. */
typedef void (*srup_device_connection_fn)(struct srup_device *dev, bool connected,
					  const char *broker, void *user);
unsigned srup_device_on_connection(struct srup_device *dev, srup_device_connection_fn fn,
				   void *user, void (*destroy)(void *user));

/* The server deregistered this device (DEREGISTER_CMD, or a completed
 * srup_device_deregister): its key is gone, nothing more is sent; the
 * application should stop. */
typedef void (*srup_device_deregistered_fn)(struct srup_device *dev, void *user);
unsigned srup_device_on_deregistered(struct srup_device *dev, srup_device_deregistered_fn fn,
				     void *user, void (*destroy)(void *user));

/* Ends any registration by its id (0 and unknown ids are ignored). */
void srup_device_unregister(struct srup_device *dev, unsigned id);

/* ---- server commands ------------------------------------------------------- */

/* One server command waiting for its answer. Owned by the library; valid
 * from the callback that received it until it was completed (or the
 * device freed: then its completion is a no-op you must not make). */
struct srup_device_request;

/* What a callback returns: a RESPONSE status byte (0..255, sent at once
 * with the request's token), or SRUP_DEVICE_LATER: the application
 * answers later with srup_device_request_complete (from any callback or
 * loop iteration, on the loop's thread). */
#define SRUP_DEVICE_LATER (-1)

/* The request's token and type, for logs and for answers by DATA. */
uint8_t srup_device_request_type(const struct srup_device_request *req);
const uint8_t *srup_device_request_token(const struct srup_device_request *req, size_t *len);

/* Answer a request: RESPONSE status, echoing its token. Ends the request. */
enum srup_device_err srup_device_request_complete(struct srup_device_request *req,
						  uint8_t status);
/* Send a DATA echoing the request's token (before completing it; e.g. the
 * identification text). Does not end the request. */
enum srup_device_err srup_device_request_send_data(struct srup_device_request *req,
						   const char *data_id, const void *data,
						   size_t len);

/* A NULL entry means the library's own answer (in brackets). The library
 * checks what it can before asking: sender, signature and sequence ID
 * always; for INITIATE it downloads and verifies the file first (only a
 * verified file reaches update_ready; the error answers 0xFC..0xFF are its
 * own); for groups the ID's form and the limit. */
struct srup_device_callbacks {
	size_t size; /* sizeof(struct srup_device_callbacks) */
	/* ID_REQ [DATA IDENTIFICATION_RESPONSE with the configured text].
	 * Answer with srup_device_request_send_data(req,
	 * "IDENTIFICATION_RESPONSE", ...) and then complete with any status
	 * (no RESPONSE is sent for ID_REQ: the DATA is the answer). */
	int (*identification)(struct srup_device *dev, struct srup_device_request *req,
			      void *user);
	/* INITIATE, file downloaded to path and its digest verified [0x00:
	 * kept for ACTIVATE]. Return 0x00 to keep it staged. */
	int (*update_ready)(struct srup_device *dev, struct srup_device_request *req,
			    const char *path, void *user);
	/* ACTIVATE of a staged update (path) [0x1F]. 0x10 success, 0x1F failure. */
	int (*activate)(struct srup_device *dev, struct srup_device_request *req,
			const char *path, void *user);
	/* ACTION [0x2E unknown action]: 0x20 done, 0x2F failed, 0x2E unknown. */
	int (*action)(struct srup_device *dev, struct srup_device_request *req,
		      uint8_t action_id, void *user);
	/* DATA [0x3F unknown data ID]: 0x30 taken, 0x3F unknown. 0x30 is not
	 * sent: the seed defines no RESPONSE to a handled DATA. */
	int (*data)(struct srup_device *dev, struct srup_device_request *req,
		    const char *data_id, const void *data, size_t len, void *user);
	/* GROUP_ADD / GROUP_DELETE / GROUP_DESTROY [accepted]: return 0x40
	 * (add) or 0x41 (leave) to let the library (un)subscribe and persist
	 * the membership, or a refusal status to leave it as it is. */
	int (*group_add)(struct srup_device *dev, struct srup_device_request *req,
			 const char *group, void *user);
	int (*group_delete)(struct srup_device *dev, struct srup_device_request *req,
			    const char *group, void *user);
	int (*group_destroy)(struct srup_device *dev, struct srup_device_request *req,
			     const char *group, void *user);
	/* JOIN_COMMAND [the configured policy]: 0x41 accept, 0x5E refuse. */
	int (*join_command)(struct srup_device *dev, struct srup_device_request *req, void *user);
	/* TERMINATE_CMD [0x70]: told, the library answers 0x70 and obeys only
	 * a JOIN_COMMAND from then on, whatever is returned. This request and
	 * DEREGISTER_CMD's end when the callback returns (no LATER). */
	int (*terminate)(struct srup_device *dev, struct srup_device_request *req, void *user);
	/* DEREGISTER_CMD: told before the library removes the server's key
	 * and stops sending; the return value is ignored. */
	int (*deregister)(struct srup_device *dev, struct srup_device_request *req, void *user);
};

/* Set the table (copied; entries beyond cb->size are taken as NULL). A
 * later table replaces an earlier one (whose destroy is called then). */
unsigned srup_device_set_callbacks(struct srup_device *dev,
				   const struct srup_device_callbacks *cb, void *user,
				   void (*destroy)(void *user));

/* ---- what a device sends on its own ------------------------------------------ */

/* DATA to the server on the device's topic, with a fresh token. */
enum srup_device_err srup_device_send_data(struct srup_device *dev, const char *data_id,
					   const void *data, size_t len);

enum srup_device_join_mode {
	SRUP_DEVICE_JOIN_OBSERVED,   /* OBS_JOIN_REQ; the value presented to an observer */
	SRUP_DEVICE_JOIN_HUMAN,      /* HM_JOIN_REQ; the value shown to a person */
	SRUP_DEVICE_JOIN_UNMEDIATED, /* JOIN_REQ */
};

enum srup_device_outcome {
	SRUP_DEVICE_ACCEPTED,  /* JOIN_SUCCESS / RESIGN_SUCCESS / DEREGISTER_SUCCESS */
	SRUP_DEVICE_REFUSED,   /* the server's refusal (status in the result) */
	SRUP_DEVICE_FAILED,    /* no verdict: see err */
};

struct srup_device_result {
	enum srup_device_outcome outcome;
	uint8_t status;              /* the server's RESPONSE status, if any */
	enum srup_device_err err;    /* FAILED: why */
	const char *detail;          /* one line for the log; borrowed */
};

typedef void (*srup_device_done_fn)(struct srup_device *dev,
				    const struct srup_device_result *result, void *user);

/* The confirmation value to show: a human-mediated join's, as a person
 * compares it (printable text as it is, else lowercase hex), or an
 * observed join's without a channel (lowercase hex, for the device to
 * present by means of its own: a screen, a QR code, its own radio);
 * value_grouped is the same in blank-separated groups of four. Both are
 * wiped after the call. */
typedef void (*srup_device_show_fn)(struct srup_device *dev, const char *value_text,
				    const char *value_grouped, void *user);

struct srup_device_join_params {
	size_t size;                 /* sizeof(struct srup_device_join_params) */
	enum srup_device_join_mode mode;
	uint64_t observer;           /* OBSERVED: the observer's ID */
	/* OBSERVED: "ble", "nfc" or "sim" (the channel sections of the
	 * configuration apply), or NULL to have the value shown instead. */
	const char *channel;
	unsigned timeout_seconds;    /* the whole flow, presenting included; 0: no bound */
	srup_device_show_fn show;    /* HUMAN, and OBSERVED without a channel: required */
};

/* One device-initiated flow at a time (SRUP_DEVICE_E_BUSY otherwise). done
 * runs once, on the loop, with the outcome; its user is released with
 * destroy afterwards. The device must be started. */
enum srup_device_err srup_device_join(struct srup_device *dev,
				      const struct srup_device_join_params *params,
				      srup_device_done_fn done, void *user,
				      void (*destroy)(void *user));
enum srup_device_err srup_device_resign(struct srup_device *dev, unsigned timeout_seconds,
					srup_device_done_fn done, void *user,
					void (*destroy)(void *user));
enum srup_device_err srup_device_deregister(struct srup_device *dev, unsigned timeout_seconds,
					    srup_device_done_fn done, void *user,
					    void (*destroy)(void *user));

#ifdef __cplusplus
}
#endif

#endif
