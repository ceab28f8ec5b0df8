/* The channel registry: one row per channel. Adding a channel is its own
 * file (a struct radio_channel_driver and what it points at, its section's
 * keys included) and one row here, with its extern; README.md ("Adding a
 * channel") says what else it takes. */
#include <stdio.h>
#include <string.h>

#include "radio.h"

extern const struct radio_channel_driver radio_sim_driver, radio_ble_driver, radio_nfc_driver;

const struct radio_channel_driver *const radio_channel_drivers[] = {
	&radio_sim_driver,
	&radio_ble_driver,
	&radio_nfc_driver,
	NULL,
};

_Static_assert(sizeof(radio_channel_drivers) / sizeof(radio_channel_drivers[0]) - 1 <=
		       RADIO_CHANNELS_MAX,
	       "RADIO_CHANNELS_MAX too small for the registry");

const struct radio_channel_driver *radio_channel_find(const char *name)
{
	if (!name)
		return NULL;
	for (size_t i = 0; radio_channel_drivers[i]; i++)
		if (strcmp(radio_channel_drivers[i]->name, name) == 0)
			return radio_channel_drivers[i];
	return NULL;
}

const char *radio_channel_names(char *buf, size_t len)
{
	size_t used = 0;

	if (!buf || !len)
		return "";
	buf[0] = '\0';
	for (size_t i = 0; radio_channel_drivers[i]; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "",
				 radio_channel_drivers[i]->name);

		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	return buf;
}
