/* A list of MQTT broker URLs: "[mqtt] broker" holds one or more URLs
 * separated by blanks (spaces or tabs), tried in order by the node.
 * Splitting is shared by the configuration check and the node so that
 * both read the same list the same way. */
#ifndef SRUP_BROKER_LIST_H
#define SRUP_BROKER_LIST_H

#include <stdbool.h>
#include <stddef.h>

#define SRUP_BROKER_LIST_MAX 8   /* URLs in one list */
#define SRUP_BROKER_URL_MAX 256  /* bytes of one URL, with its NUL */

struct srup_broker_list {
	size_t count;
	char url[SRUP_BROKER_LIST_MAX][SRUP_BROKER_URL_MAX];
};

/* Split text into out. Returns 0, or -1 with why set to what is wrong:
 * nothing given, a separator other than blanks (',' ';' '|'), an empty
 * entry, too many or too long an entry, or the same broker twice
 * (tcp:// and mqtt:// name the same transport; a missing port is the
 * scheme's default). The URLs themselves are not checked here. */
int srup_broker_list_split(const char *text, struct srup_broker_list *out, char *why,
			   size_t why_len);

/* Whether url uses TLS (mqtts://). */
bool srup_broker_url_is_tls(const char *url);

#endif
