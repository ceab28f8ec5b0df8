/* libFuzzer target: the INI configuration (srup_config_load) with the
 * input as the file's content, loaded as an observer's and as a device's
 * configuration. Every load either succeeds or fails with one line naming
 * the file ("FILE:LINE: ..." or "FILE: ..."); a success leaves every text
 * field terminated, a broker URL of a known scheme, the numbers in the
 * ranges srup_config.c documents, and every configured command ([update]
 * activate, [actions], [data]) splitting into words as the device role
 * splits it to run it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "srup_config.h"

#include "fuzz_tmpdir.h"

static char path[96];

static void remove_file(void)
{
	unlink(path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_tmpdir_make("config", remove_file);
	snprintf(path, sizeof(path), "%s/fuzz.conf", fuzz_tmpdir);
	return 0;
}

static void check_text(const char *field, size_t size)
{
	if (strnlen(field, size) >= size)
		__builtin_trap();
}

/* A configured <command> splits as srup_role.c splits it before execve:
 * 1..SRUP_CONFIG_COMMAND_WORDS blank-free words, the first a path. */
static void check_command(const char *command)
{
	char buf[512];
	char *argv[SRUP_CONFIG_COMMAND_WORDS + 1];
	int n;

	check_text(command, 256);
	if (!command[0])
		return;
	n = srup_config_split_command(command, buf, sizeof(buf), argv, SRUP_CONFIG_COMMAND_WORDS + 1);
	if (n < 1 || n > SRUP_CONFIG_COMMAND_WORDS || argv[n] || argv[0][0] != '/')
		__builtin_trap();
	for (int i = 0; i < n; i++)
		if (!argv[i][0] || strpbrk(argv[i], " \t") || argv[i] < buf ||
		    argv[i] + strlen(argv[i]) >= buf + sizeof(buf))
			__builtin_trap();
}

/* Every listed channel is a registry driver, listed once, with what it
 * needs set. */
static int listed_configured(const struct srup_config *c)
{
	for (size_t i = 0; i < c->n_channels; i++) {
		if (!c->channels[i] || radio_channel_find(c->channels[i]->name) != c->channels[i] ||
		    !c->channels[i]->configured(&c->radio))
			return 0;
		for (size_t j = 0; j < i; j++)
			if (c->channels[j] == c->channels[i])
				return 0;
	}
	return 1;
}

static void check_hooks(const struct srup_config *cfg)
{
	if (cfg->n_actions > SRUP_CONFIG_HOOKS_MAX || cfg->n_data > SRUP_CONFIG_HOOKS_MAX)
		__builtin_trap();
	for (size_t i = 0; i < cfg->n_actions; i++) {
		if (cfg->actions[i].action_id > 255 || !cfg->actions[i].command[0])
			__builtin_trap();
		for (size_t j = 0; j < i; j++)
			if (cfg->actions[j].action_id == cfg->actions[i].action_id)
				__builtin_trap();
		check_command(cfg->actions[i].command);
	}
	for (size_t i = 0; i < cfg->n_data; i++) {
		check_text(cfg->data[i].id, sizeof(cfg->data[i].id));
		if (!cfg->data[i].id[0] || !cfg->data[i].command[0])
			__builtin_trap();
		check_command(cfg->data[i].command);
	}
	check_command(cfg->update.activate);
	check_text(cfg->identification, sizeof(cfg->identification));
	check_text(cfg->update.ca_file, sizeof(cfg->update.ca_file));
}

static void check_load(enum srup_config_kind kind)
{
	struct srup_config cfg;
	char err[512];
	size_t plen = strlen(path);

	memset(err, 0x55, sizeof(err));
	if (srup_config_load(path, kind, &cfg, err, sizeof(err)) != 0) {
		/* One line per problem (a file that parses may have several left
		 * to fill in), each naming the file. */
		if (strnlen(err, sizeof(err)) >= sizeof(err))
			__builtin_trap();
		for (const char *line = err; *line;) {
			const char *end = strchr(line, '\n');

			if (strncmp(line, path, plen) != 0 || line[plen] != ':')
				__builtin_trap();
			if (!end)
				break;
			line = end + 1;
		}
		return;
	}
	if (strcmp(cfg.path, path) != 0 || !cfg.identity_private_key[0] ||
	    !cfg.server_public_key[0] || !cfg.mqtt_broker[0] || !cfg.state_dir[0])
		__builtin_trap();
	check_text(cfg.identity_private_key, sizeof(cfg.identity_private_key));
	check_text(cfg.server_public_key, sizeof(cfg.server_public_key));
	check_text(cfg.mqtt_broker, sizeof(cfg.mqtt_broker));
	check_text(cfg.mqtt_ca_file, sizeof(cfg.mqtt_ca_file));
	check_text(cfg.mqtt_cert_file, sizeof(cfg.mqtt_cert_file));
	check_text(cfg.mqtt_key_file, sizeof(cfg.mqtt_key_file));
	check_text(cfg.radio.sim.socket_path, sizeof(cfg.radio.sim.socket_path));
	check_text(cfg.radio.ble.adapter, sizeof(cfg.radio.ble.adapter));
	check_text(cfg.radio.nfc.device, sizeof(cfg.radio.nfc.device));
	check_text(cfg.state_dir, sizeof(cfg.state_dir));
	if (cfg.n_channels > RADIO_CHANNELS_MAX || cfg.radio.ble.observer_id != cfg.identity_id)
		__builtin_trap();
	if (strncmp(cfg.mqtt_broker, "mqtt://", 7) != 0 && strncmp(cfg.mqtt_broker, "mqtts://", 8) != 0 &&
	    strncmp(cfg.mqtt_broker, "tcp://", 6) != 0)
		__builtin_trap();
	if (cfg.radio.nfc.poll_ms < 10 || cfg.radio.nfc.poll_ms > 60000)
		__builtin_trap();
	check_hooks(&cfg);
	if (kind == SRUP_CONFIG_OBSERVER &&
	    (cfg.n_channels == 0 || !listed_configured(&cfg) ||
	     cfg.window_seconds < 1 || cfg.window_seconds > 86400 || cfg.max_attempts < 1 ||
	     cfg.max_attempts > 100 || cfg.max_pending < 1 || cfg.max_pending > 100000))
		__builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "wb");

	if (!f || fwrite(data, 1, size, f) != size || fclose(f) != 0)
		abort();
	check_load(SRUP_CONFIG_OBSERVER);
	check_load(SRUP_CONFIG_DEVICE);
	return 0;
}
