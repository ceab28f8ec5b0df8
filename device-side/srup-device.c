/* srup-device: the device agent.
 *
 *   srup-device --config FILE join [--mode observed|human|unmediated]
 *                                  [--observer ID] [--channel sim|ble|nfc]
 *                                  [--timeout S] [--print-value]
 *   srup-device --config FILE resign [--timeout S]
 *   srup-device --config FILE deregister [--timeout S]
 *   srup-device --config FILE present --device ID --value HEX [--channel ...]
 *   srup-device --config FILE run
 *   srup-device --config FILE [run] --check-config
 *
 * join --mode observed (the default) runs the device's half of the
 * observed join (JOIN-FLOW.md): send OBS_JOIN_REQ naming the observer, open
 * the server's OBS_JOIN_RESP, present the confirmation frame to the
 * observer on the channel, and wait for the server's verdict. With
 * --print-value the agent prints the value instead of presenting it, for
 * devices that present it by other means (a screen, a QR code, their own
 * radio firmware).
 *
 * join --mode human sends HM_JOIN_REQ, opens the server's HM_JOIN_RESP and
 * prints the confirmation value for a person to compare with what the
 * server shows them, then waits for the verdict; --mode unmediated sends
 * JOIN_REQ and waits for the verdict (seed 7.1, 7.2). Joins travel on
 * SRUP/servers/<s>/<d>; resign (RESIGN_REQ, seed 8.1) and deregister
 * (DEREGISTER_REQ, seed 9.1) on the device's own topic SRUP/<d>, which the
 * server watches once the device joined. A verdict counts only from the
 * configured server, fresh (the node's pipeline) and echoing our request's
 * token (or, for the two joins with a response stage, the response's).
 * After DEREGISTER_SUCCESS the server's key is deleted: the in-memory store
 * forgets it and the [server] public_key file is unlinked.
 *
 * Exit status 0 only on success (JOIN_SUCCESS, RESIGN_SUCCESS,
 * DEREGISTER_SUCCESS with the key deleted).
 *
 * present sends one frame of the caller's choosing on a channel, without
 * SRUP: for checking a channel at provisioning time (and for tests).
 *
 * run is the resident device agent (srup_device_run.h). */
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "radio.h"
#include "srup.h"
#include "srup_msg_layout.h"
#include "srup_config.h"
#include "srup_device_run.h"
#include "srup_exit.h"
#include "srup_flow.h"
#include "srup_hex.h"
#include "srup_identity.h"
#include "srup_keys.h"
#include "srup_log.h"
#include "srup_node.h"

/* Exit statuses of the one-shot commands. */
enum {
	EXIT_SUCCEEDED = 0,  /* joined, resigned, deregistered */
	EXIT_REFUSED = 1,    /* refused, failed, or the channel failed */
	EXIT_USAGE = 2,
	EXIT_SETUP = 3,      /* configuration, keys, broker */
	EXIT_TIMEOUT = 4,
};

#define DEFAULT_TIMEOUT_S 150

struct agent {
	sd_event *loop;
	struct srup_config cfg;
	struct srup_identity id;
	struct srup_node *node;
	struct srup_flow *flow;
	bool has_flow;            /* join, resign, deregister (else present) */
	enum srup_flow_kind kind;
	const struct radio_channel_driver *channel;
	uint64_t observer_id;
	bool print_value;
	bool finished;
	int exit_status;
};

static void finish(struct agent *a, int status)
{
	if (a->finished)
		return;
	a->finished = true;
	a->exit_status = status;
	sd_event_exit(a->loop, 0);
}

static void on_flow_event(struct srup_flow *flow, const struct srup_flow_event *ev, void *user)
{
	struct agent *a = user;
	char observer[17];

	switch (ev->kind) {
	case SRUP_FLOW_EVENT_SENT:
		if (a->kind == SRUP_FLOW_OBSERVED) {
			srup_id_format16(a->observer_id, observer);
			printf("OBS_JOIN_REQ sent on %s naming observer %s (token %s)\n", ev->topic,
			       observer, ev->token);
		} else {
			printf("%s sent on %s (token %s)\n", srup_flow_request_name(flow), ev->topic,
			       ev->token);
		}
		break;
	case SRUP_FLOW_EVENT_PRESENTING:
		printf("OBS_JOIN_RESP received after %.1f ms; presenting the confirmation value on "
		       "%s\n", srup_flow_elapsed_ms(flow), ev->channel);
		break;
	case SRUP_FLOW_EVENT_PRESENTED:
		if (ev->result != RADIO_RESULT_NOT_COMPARED)
			printf("observer compared the value: %s\n",
			       ev->result == RADIO_RESULT_MATCH ? "match" : "mismatch");
		else
			printf("the observer read the value\n");
		printf("waiting for the server's verdict\n");
		break;
	}
	fflush(stdout);
}

/* The value: with --print-value (observed) as hex, to present by other
 * means; for a person (human) as text when it is printable ASCII (pySRUP
 * sends uuid4().hex, 32 hex characters), else as hex, then the same in
 * groups of four characters, easier to compare by eye. */
static void on_flow_show(struct srup_flow *flow, const char *value_text,
			 const char *value_grouped, void *user)
{
	struct agent *a = user;

	if (a->kind == SRUP_FLOW_OBSERVED) {
		printf("OBS_JOIN_RESP received after %.1f ms; confirmation value: %s\n",
		       srup_flow_elapsed_ms(flow), value_text);
	} else {
		printf("HM_JOIN_RESP received after %.1f ms; compare this value with the one the "
		       "server shows:\n", srup_flow_elapsed_ms(flow));
		printf("CONFIRMATION VALUE: %s\nCONFIRMATION VALUE (grouped): %s\n", value_text,
		       value_grouped);
	}
	printf("waiting for the server's verdict\n");
	fflush(stdout);
}

/* The exit status of the one-shot commands for the flow's outcome. */
static void on_flow_done(struct srup_flow *flow, const struct srup_flow_result *r, void *user)
{
	struct agent *a = user;
	const char *name = srup_status_name(r->status);
	int status;

	(void)flow;
	if (a->finished) /* stopped by a signal: the flow was cancelled */
		return;
	if (r->outcome != SRUP_DEVICE_FAILED) {
		printf("%s (0x%02x) after %.1f ms\n", name ? name : "?", r->status, r->elapsed_ms);
		status = r->outcome == SRUP_DEVICE_ACCEPTED ? EXIT_SUCCEEDED : EXIT_REFUSED;
		switch (r->key_file) {
		case SRUP_FLOW_KEY_FILE_DELETED:
			printf("deleted the server's public key %s\n", a->cfg.server_public_key);
			break;
		case SRUP_FLOW_KEY_FILE_ALREADY_GONE:
			printf("the server's public key %s is already gone\n",
			       a->cfg.server_public_key);
			break;
		case SRUP_FLOW_KEY_FILE_NOT_DELETED:
			fflush(stdout);
			srup_log(LOG_ERR, "%s", r->detail);
			status = EXIT_SETUP;
			break;
		case SRUP_FLOW_KEY_FILE_UNTOUCHED:
			break;
		}
		fflush(stdout);
		finish(a, status);
		return;
	}
	if (r->err == SRUP_DEVICE_E_TIMEOUT) {
		if (r->stage == SRUP_FLOW_STAGE_PRESENTING) {
			srup_log(LOG_ERR, "%s", r->detail);
			printf("timeout: the observer did not compare the value\n");
		} else {
			printf("timeout: %s\n", r->detail);
		}
		fflush(stdout);
		finish(a, EXIT_TIMEOUT);
		return;
	}
	srup_log(LOG_ERR, "%s", r->detail);
	finish(a, r->stage == SRUP_FLOW_STAGE_SENDING || r->err == SRUP_DEVICE_E_NOMEM ||
				  r->err == SRUP_DEVICE_E_LOOP
			  ? EXIT_SETUP
			  : EXIT_REFUSED);
}

/* What the server sends for the flow; anything it does not take is
 * answered by no request of ours. */
static void on_flow_message(struct srup_node *node, const struct srup_msg *msg,
			    const char *topic, void *user)
{
	struct agent *a = user;

	(void)node;
	(void)topic;
	if (srup_flow_offer(a->flow, msg))
		return;
	if (msg->type == SRUP_TYPE_RESPONSE)
		srup_log(LOG_WARNING, "RESPONSE 0x%02x with a token of no %s of ours ignored",
			 msg->status, srup_flow_request_name(a->flow));
	else
		srup_log(LOG_WARNING, "unexpected %s ignored",
			 msg->type == SRUP_TYPE_OBS_JOIN_RESPONSE ? "OBS_JOIN_RESP" : "HM_JOIN_RESP");
}

static void on_connected(struct srup_node *node, void *user)
{
	struct agent *a = user;

	(void)node;
	srup_flow_connected(a->flow);
}

static int on_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *user)
{
	(void)s;
	(void)si;
	finish(user, EXIT_REFUSED);
	return 0;
}

static int load_agent_config(struct agent *a, const char *path)
{
	char err[4096];

	if (srup_config_load(path, SRUP_CONFIG_DEVICE, &a->cfg, err, sizeof(err)) != 0) {
		srup_log_lines(LOG_ERR, err);
		return -1;
	}
	return 0;
}

/* --check-config: the checks srup-observerd makes of its own (shared). */
static int check_config(const char *path)
{
	struct srup_config *cfg = calloc(1, sizeof(*cfg));
	struct srup_identity id;
	char hex[17];
	int rc = SRUP_EXIT_CONFIG;

	if (!cfg) {
		srup_log(LOG_ERR, "%s: cannot check: out of memory", path);
		return SRUP_EXIT_FAILURE;
	}
	if (srup_setup_load(path, SRUP_CONFIG_DEVICE, true, cfg, &id) == 0) {
		srup_id_format16(cfg->identity_id, hex);
		printf("%s: configuration valid (device %s)\n", path, hex);
		srup_identity_free(&id);
		/* Root reads every file; the service need not run as root. */
		if (geteuid() == 0)
			fprintf(stderr, "note: checked as root; check as the service user too\n");
		rc = SRUP_EXIT_OK;
	}
	free(cfg);
	return rc;
}

static int run_exchange(struct agent *a, unsigned timeout_s)
{
	const struct srup_flow_exchange *ex = srup_flow_exchange(a->kind);
	struct srup_node_config ncfg;
	struct srup_flow_params fp;
	char detail[768] = "";
	enum srup_node_err nerr;
	sigset_t mask;

	if (srup_identity_load(&a->cfg, &a->id, detail, sizeof(detail)) != 0) {
		srup_log_lines(LOG_ERR, detail);
		return EXIT_SETUP;
	}
	if (sd_event_new(&a->loop) < 0)
		return EXIT_SETUP;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	sd_event_add_signal(a->loop, NULL, SIGTERM, on_signal, a);
	sd_event_add_signal(a->loop, NULL, SIGINT, on_signal, a);

	srup_node_config_from(&a->cfg, SRUP_NODE_ROLE_DEVICE, &ncfg);
	nerr = srup_node_new(a->loop, &ncfg, a->id.private_key, a->id.peers, &a->node, detail,
			     sizeof(detail));
	if (nerr != SRUP_NODE_OK) {
		srup_log(LOG_ERR, "%s: %s", srup_node_strerror(nerr), detail);
		return EXIT_SETUP;
	}
	fp = (struct srup_flow_params){
		.kind = a->kind,
		.loop = a->loop,
		.node = a->node,
		.cfg = &a->cfg,
		.private_key = a->id.private_key,
		.peers = a->id.peers,
		.observer = a->observer_id,
		.channel = a->kind == SRUP_FLOW_OBSERVED && !a->print_value ? a->channel : NULL,
		.timeout_ms = timeout_s * 1000u,
		.timeout_name = "--timeout",
		.show = on_flow_show,
		.event = on_flow_event,
		.done = on_flow_done,
		.user = a,
	};
	if (srup_flow_new(&fp, &a->flow, detail, sizeof(detail)) != SRUP_DEVICE_OK) {
		srup_log(LOG_ERR, "%s: %s", ex->name, detail);
		return EXIT_SETUP;
	}
	/* Only the configured server is heard, and only the messages this
	 * exchange expects (the pipeline drops any other type). */
	if ((ex->response_type &&
	     srup_node_on(a->node, ex->response_type, a->cfg.server_id, on_flow_message, a) !=
		     SRUP_NODE_OK) ||
	    srup_node_on(a->node, SRUP_TYPE_RESPONSE, a->cfg.server_id, on_flow_message, a) !=
		    SRUP_NODE_OK)
		return EXIT_SETUP;
	nerr = srup_node_connect(a->node, on_connected, a);
	if (nerr != SRUP_NODE_OK) {
		srup_log(LOG_ERR, "cannot connect to %s: %s", a->cfg.mqtt_broker,
			 srup_node_strerror(nerr));
		return EXIT_SETUP;
	}
	a->exit_status = EXIT_REFUSED;
	if (sd_event_loop(a->loop) < 0)
		return EXIT_SETUP;
	srup_node_flush(a->node, 2000);
	return a->exit_status;
}

static int run_present(struct agent *a, uint64_t device, const char *value_hex,
		       unsigned timeout_s)
{
	struct srup_frame frame = {.device_id = device};
	uint8_t result = RADIO_RESULT_NOT_COMPARED;
	char detail[256] = "";
	uint8_t *value = NULL;
	size_t len = 0, bad_at;
	enum radio_err err;

	if (srup_hex_decode(value_hex, strlen(value_hex), false, &value, &len, &bad_at) != 0 ||
	    len == 0 || len > sizeof(frame.value)) {
		srup_log(LOG_ERR, "--value: '%s' is not 1..%zu bytes of hex", value_hex,
			 sizeof(frame.value));
		free(value);
		return EXIT_USAGE;
	}
	memcpy(frame.value, value, len);
	frame.value_len = (uint16_t)len;
	OPENSSL_cleanse(value, len);
	free(value);
	err = a->channel->present(&a->cfg.radio, a->observer_id, &frame, timeout_s * 1000,
				  &result, detail, sizeof(detail));
	srup_frame_wipe(&frame);
	if (err == RADIO_E_REFUSED) {
		/* The observer answered, but did not compare the value. */
		printf("result 0x00 (not compared: %s)\n", detail);
		return EXIT_REFUSED;
	}
	if (err != RADIO_OK) {
		printf("present failed: %s%s%s\n", radio_strerror(err), detail[0] ? ": " : "",
		       detail);
		return EXIT_REFUSED;
	}
	printf("result 0x%02x (%s)\n", result,
	       result == RADIO_RESULT_MATCH	  ? "match"
	       : result == RADIO_RESULT_MISMATCH ? "mismatch"
						 : "not compared");
	return 0;
}

static void usage(FILE *out)
{
	fprintf(out,
		"usage: srup-device --config FILE join [--mode observed|human|unmediated]\n"
		"                   [--observer ID] [--channel sim|ble|nfc] [--timeout SECONDS]\n"
		"                   [--print-value]\n"
		"       srup-device --config FILE resign [--timeout SECONDS]\n"
		"       srup-device --config FILE deregister [--timeout SECONDS]\n"
		"       srup-device --config FILE present --device ID --value HEX\n"
		"                   [--channel sim|ble|nfc] [--observer ID] [--timeout SECONDS]\n"
		"       srup-device --config FILE run [--verbose]\n"
		"       srup-device --config FILE [run] --check-config\n"
		"\n"
		"join: ask the configured C2 server to join, and wait for its verdict.\n"
		"      --mode observed (default): under the eye of observer ID (--observer,\n"
		"      required); present the confirmation value on the channel (default\n"
		"      sim), or with --print-value print it (hex) to present it by other\n"
		"      means. --mode human: print the confirmation value for a person, as\n"
		"      'CONFIRMATION VALUE: <value>' and in groups of four, to compare with\n"
		"      what the server shows them. --mode unmediated: just ask.\n"
		"resign: ask the server to release this device (RESIGN_REQ).\n"
		"deregister: ask the server to deregister this device (DEREGISTER_REQ); on\n"
		"      success the server's public key ([server] public_key) is deleted.\n"
		"      Exit status of join, resign and deregister: 0 success, 1 refused or\n"
		"      failed, 2 usage, 3 configuration/keys/broker, 4 timeout (default %u s).\n"
		"present: send one confirmation frame (device ID, value) on a channel and\n"
		"      print the observer's answer; for checking a channel.\n"
		"run: the resident device agent: answer the server's commands until\n"
		"      stopped (SIGTERM); logs with syslog priority prefixes.\n"
		"--check-config: print the files read (the file, then FILE.d/*.conf),\n"
		"      check the configuration and the key files it names, report every\n"
		"      problem (one line each, FILE:LINE), then exit: 0 valid, 78 not.\n",
		DEFAULT_TIMEOUT_S);
}

static void agent_free(struct agent *a)
{
	srup_flow_free(a->flow);
	srup_node_free(a->node);
	srup_identity_free(&a->id);
	sd_event_unref(a->loop);
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{"config", required_argument, NULL, 'c'},
		{"observer", required_argument, NULL, 'o'},
		{"channel", required_argument, NULL, 'C'},
		{"timeout", required_argument, NULL, 't'},
		{"device", required_argument, NULL, 'd'},
		{"value", required_argument, NULL, 'V'},
		{"print-value", no_argument, NULL, 'P'},
		{"mode", required_argument, NULL, 'm'},
		{"verbose", no_argument, NULL, 'v'},
		{"check-config", no_argument, NULL, 'k'},
		{"help", no_argument, NULL, 'h'},
		{NULL, 0, NULL, 0},
	};
	struct agent a = {.channel = &radio_sim_driver};
	const char *config_path = NULL, *command = NULL, *value_hex = NULL, *mode = NULL;
	bool have_observer = false, have_device = false, have_channel = false, verbose = false;
	bool have_timeout = false, check_only = false;
	unsigned timeout_s = DEFAULT_TIMEOUT_S;
	uint64_t device = 0;
	int opt, rc;

	/* Options may come before or after the command word (getopt permutes). */
	while ((opt = getopt_long(argc, argv, "c:vh", options, NULL)) != -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 'o':
			if (srup_id_parse(optarg, &a.observer_id) != 0) {
				fprintf(stderr, "srup-device: --observer: '%s' is not a SRUP ID "
						"(1..16 hex digits)\n", optarg);
				return EXIT_USAGE;
			}
			have_observer = true;
			break;
		case 'd':
			if (srup_id_parse(optarg, &device) != 0) {
				fprintf(stderr, "srup-device: --device: '%s' is not a SRUP ID "
						"(1..16 hex digits)\n", optarg);
				return EXIT_USAGE;
			}
			have_device = true;
			break;
		case 'C':
			a.channel = radio_channel_find(optarg);
			if (!a.channel) {
				char names[64];

				fprintf(stderr, "srup-device: --channel: '%s' is not a channel (%s)\n",
					optarg, radio_channel_names(names, sizeof(names)));
				return EXIT_USAGE;
			}
			have_channel = true;
			break;
		case 'm':
			mode = optarg;
			break;
		case 't': {
			char *end;
			unsigned long v = strtoul(optarg, &end, 10);

			if (*optarg == '\0' || *end != '\0' || v == 0 || v > 86400) {
				fprintf(stderr, "srup-device: --timeout: '%s' is not 1..86400 "
						"seconds\n", optarg);
				return EXIT_USAGE;
			}
			timeout_s = (unsigned)v;
			have_timeout = true;
			break;
		}
		case 'V':
			value_hex = optarg;
			break;
		case 'P':
			a.print_value = true;
			break;
		case 'k':
			check_only = true;
			break;
		case 'v':
			srup_log_set_level(LOG_DEBUG);
			verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind == argc - 1)
		command = argv[optind];
	if (check_only) {
		/* Alone or with run (the unit's command line plus the option). */
		if (!config_path || optind < argc - 1 || (command && strcmp(command, "run") != 0) ||
		    have_observer || have_channel || have_device || a.print_value || value_hex ||
		    have_timeout || mode) {
			fprintf(stderr, "srup-device: --check-config takes --config FILE and at most "
					"the command run\n");
			return EXIT_USAGE;
		}
		return check_config(config_path);
	}
	if (!config_path || !command) {
		usage(stderr);
		return EXIT_USAGE;
	}
	if (mode && strcmp(command, "join") != 0) {
		fprintf(stderr, "srup-device: --mode belongs to join\n");
		return EXIT_USAGE;
	}
	if (strcmp(command, "join") == 0) {
		a.has_flow = true;
		if (!mode || strcmp(mode, "observed") == 0) {
			a.kind = SRUP_FLOW_OBSERVED;
		} else if (strcmp(mode, "human") == 0) {
			a.kind = SRUP_FLOW_HUMAN;
		} else if (strcmp(mode, "unmediated") == 0) {
			a.kind = SRUP_FLOW_UNMEDIATED;
		} else {
			fprintf(stderr, "srup-device: --mode: '%s' is not observed, human or "
					"unmediated\n", mode);
			return EXIT_USAGE;
		}
		if (a.kind == SRUP_FLOW_OBSERVED && !have_observer) {
			fprintf(stderr, "srup-device: join needs --observer ID\n");
			return EXIT_USAGE;
		}
		if (a.kind != SRUP_FLOW_OBSERVED &&
		    (have_observer || have_channel || a.print_value)) {
			fprintf(stderr, "srup-device: --observer, --channel and --print-value "
					"belong to join --mode observed\n");
			return EXIT_USAGE;
		}
	} else if (strcmp(command, "resign") == 0 || strcmp(command, "deregister") == 0) {
		a.has_flow = true;
		a.kind = command[0] == 'r' ? SRUP_FLOW_RESIGN : SRUP_FLOW_DEREGISTER;
		if (have_observer || have_channel || have_device || a.print_value || value_hex) {
			fprintf(stderr, "srup-device: %s takes only --timeout\n", command);
			return EXIT_USAGE;
		}
	} else if (strcmp(command, "present") == 0) {
		if (!have_device || !value_hex) {
			fprintf(stderr, "srup-device: present needs --device ID and --value HEX\n");
			return EXIT_USAGE;
		}
	} else if (strcmp(command, "run") == 0) {
		if (have_observer || have_channel || have_device || a.print_value || value_hex ||
		    have_timeout) {
			fprintf(stderr, "srup-device: run takes only --verbose\n");
			return EXIT_USAGE;
		}
		/* Resident: the exit statuses of srup_exit.h, not the one-shot ones. */
		return srup_device_run(config_path, verbose);
	} else {
		fprintf(stderr, "srup-device: unknown command '%s'\n", command);
		usage(stderr);
		return EXIT_USAGE;
	}

	if (load_agent_config(&a, config_path) != 0)
		return EXIT_SETUP;
	/* A device config names no channel: check the section the chosen one
	 * needs, when one is used (--print-value presents nothing). */
	if ((a.kind == SRUP_FLOW_OBSERVED && !a.print_value) || !a.has_flow) {
		if (!a.channel->configured(&a.cfg.radio)) {
			srup_log(LOG_ERR, "%s: [%s] %s: needed for --channel %s", a.cfg.path,
				 a.channel->name, a.channel->required_key, a.channel->name);
			return EXIT_SETUP;
		}
	}
	if (a.has_flow)
		rc = run_exchange(&a, timeout_s);
	else
		rc = run_present(&a, device, value_hex, timeout_s);
	agent_free(&a);
	return rc;
}
