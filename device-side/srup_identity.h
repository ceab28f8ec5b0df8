/* What a node takes from its configuration: its own private key, its
 * server's public key in a key store of their own, and the node settings.
 * Shared by srup-observerd, srup-device and the benchmarks. */
#ifndef SRUP_IDENTITY_H
#define SRUP_IDENTITY_H

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

/* Node settings from the [identity], [mqtt] and [state] sections. */
void srup_node_config_from(const struct srup_config *cfg, enum srup_node_role role,
			   struct srup_node_config *out);

#endif
