/* What a node takes from its configuration: its own private key, its
 * server's public key in a key store of their own, and the node settings.
 * Shared by srup-observerd, srup-device and the benchmarks. */
#ifndef SRUP_IDENTITY_H
#define SRUP_IDENTITY_H

#include <stdbool.h>

#include <openssl/evp.h>

#include "srup_config.h"
#include "srup_keys.h"
#include "srup_node.h"

struct srup_identity {
	EVP_PKEY *private_key;
	EVP_PKEY *server_key;
	struct srup_keystore *peers; /* holds the server's key */
};

/* Load both keys (the private one refused if group or others can read
 * it) and the store. On failure returns -1 and err holds one line naming
 * the config file, the key and what was wrong; *id holds nothing. */
int srup_identity_load(const struct srup_config *cfg, struct srup_identity *id, char *err,
		       size_t err_len);
void srup_identity_free(struct srup_identity *id);

/* Logs text (lines joined with '\n', as the loaders report problems) one
 * log line per line: one journal entry per problem. */
void srup_log_lines(int priority, const char *text);

/* What srup-observerd and srup-device check before they run, and all that
 * their --check-config does: the configuration and its drop-ins
 * (srup_config_load), the key files it names (srup_identity_load) and
 * what this machine lacks for the configured channel
 * (srup_config_check_channels). Every problem is logged as a line of its
 * own naming FILE:LINE, all in one pass. With check set (--check-config),
 * "read FILE" is first printed on stdout for each file read, and an
 * observer's channel that cannot work is an error; otherwise, and for a
 * device (whose channel is chosen per join), it is a warning. Returns 0
 * with cfg and *id loaded, or -1 (exit status SRUP_EXIT_CONFIG) with *id
 * empty. */
int srup_setup_load(const char *path, enum srup_config_kind kind, bool check,
		    struct srup_config *cfg, struct srup_identity *id);

/* Node settings from the [identity], [mqtt] and [state] sections. */
void srup_node_config_from(const struct srup_config *cfg, enum srup_node_role role,
			   struct srup_node_config *out);

#endif
