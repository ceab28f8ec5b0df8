/* The reload classification of every configuration key (see the header).
 *
 * When a key is added to srup_config.c's table, add it here too: the
 * unit test (tests/config) checks that every key of the loader's table is
 * classified. Until then the key is treated as restart-only, which is
 * never wrong, only less convenient. */
#include "srup_config_reload.h"

#include <stdio.h>
#include <string.h>

struct reload_class {
	const char *section;
	const char *name;   /* NULL: every key of the section */
	bool reloadable;
};

static const struct reload_class reload_table[] = {
	/* The session and what it is signed and encrypted with. */
	{"identity", NULL, false},
	{"server", "id", false},
	{"server", "public_key", false},
	/* The JOIN_REQ of join = auto is sent, and its verdict handler
	 * registered, once per session start. */
	{"server", "join", false},
	{"mqtt", NULL, false},
	/* The channels are opened once, each configured by its section (a
	 * channel's section is restart-only: reload_find). */
	{"observation", "channel", false},
	/* Sequence IDs, held requests and groups live there. */
	{"state", NULL, false},
	{"control", NULL, false},
	/* For observations that start after the reload. */
	{"observation", "window_seconds", true},
	{"observation", "max_attempts", true},
	{"observation", "max_pending", true},
	{"audit", NULL, true},       /* the log is reopened */
	{"metrics", NULL, true},     /* the timer is set up again */
	{"identification", NULL, true},
	{"update", NULL, true},      /* for downloads and activations that start after */
	{"hooks", NULL, true},
	{"actions", NULL, true},
	{"data", NULL, true},
	{"groups", NULL, true},      /* members beyond a lower max stay members */
	{"join", NULL, true},
};

static const struct reload_class *reload_find(const char *section, const char *name)
{
	static const struct reload_class channel_section = {NULL, NULL, false};
	const struct reload_class *section_wide = NULL;

	if (!section)
		return NULL;
	if (radio_channel_find(section))
		return &channel_section;
	for (size_t i = 0; i < sizeof(reload_table) / sizeof(reload_table[0]); i++) {
		const struct reload_class *c = &reload_table[i];

		if (strcmp(c->section, section) != 0)
			continue;
		if (!c->name)
			section_wide = c;
		else if (name && strcmp(c->name, name) == 0)
			return c;
	}
	return section_wide;
}

bool srup_config_reload_classified(const char *section, const char *name)
{
	return reload_find(section, name) != NULL;
}

bool srup_config_reloadable(const char *section, const char *name)
{
	const struct reload_class *c = reload_find(section, name);

	return c && c->reloadable;
}

static void restart_add(char *restart, size_t len, const char *section, const char *name)
{
	size_t used = strlen(restart);

	if (used < len)
		snprintf(restart + used, len - used, "%s[%s] %s", used ? ", " : "", section, name);
}

void srup_config_reload_merge(const struct srup_config *running, struct srup_config *next,
			      char *restart, size_t restart_len)
{
	const char *old = (const char *)running;
	char *new = (char *)next;
	struct srup_config_key k;

	if (restart && restart_len)
		restart[0] = '\0';
	for (size_t i = 0; srup_config_key_at(i, &k) == 0; i++) {
		if (srup_config_reloadable(k.section, k.name) ||
		    memcmp(old + k.offset, new + k.offset, k.size) == 0)
			continue;
		memcpy(new + k.offset, old + k.offset, k.size);
		if (restart && restart_len)
			restart_add(restart, restart_len, k.section, k.name);
	}
	/* What the loader derives for the channels, beyond their keys. */
	next->radio = running->radio;
	/* [observation] channel is restart-only: the list and its length
	 * stay together. */
	memcpy(next->channels, running->channels, sizeof(next->channels));
	next->n_channels = running->n_channels;
}
