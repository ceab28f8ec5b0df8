#include "srup_broker_list.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

bool srup_broker_url_is_tls(const char *url)
{
	return strncmp(url, "mqtts://", 8) == 0;
}

/* The broker a URL names, as "tls|plain host:port" with the host lowercased
 * and the default port filled in, so that two spellings of one broker
 * compare equal. */
static void broker_identity(const char *url, char *out, size_t len)
{
	const char *h = strstr(url, "://");
	const char *end, *path;
	bool tls = srup_broker_url_is_tls(url);
	char host[SRUP_BROKER_URL_MAX];
	size_t n;

	h = h ? h + 3 : url;
	path = h + strcspn(h, "/");
	end = *h == '[' ? memchr(h, ']', (size_t)(path - h)) : NULL;
	end = end ? end + 1 : h + strcspn(h, ":/");
	n = (size_t)(end - h);
	snprintf(host, sizeof(host), "%.*s", (int)n, h);
	for (char *c = host; *c; c++)
		if (*c >= 'A' && *c <= 'Z')
			*c = (char)(*c - 'A' + 'a');
	if (*end == ':')
		snprintf(out, len, "%s %s:%.*s", tls ? "tls" : "plain", host,
			 (int)(path - end - 1), end + 1);
	else
		snprintf(out, len, "%s %s:%s", tls ? "tls" : "plain", host, tls ? "8883" : "1883");
}

int srup_broker_list_split(const char *text, struct srup_broker_list *out, char *why,
			   size_t why_len)
{
	static const char blanks[] = " \t";
	const char *c = text ? text : "";
	char ids[SRUP_BROKER_LIST_MAX][2 * SRUP_BROKER_URL_MAX + 16];

	memset(out, 0, sizeof(*out));
	c += strspn(c, blanks);
	if (*c == '\0') {
		snprintf(why, why_len, "empty; give one or more broker URLs separated by blanks");
		return -1;
	}
	while (*c) {
		size_t n = strcspn(c, blanks);
		const char *sep = NULL;

		for (const char *s = c; s < c + n; s++)
			if (*s == ',' || *s == ';' || *s == '|') {
				sep = s;
				break;
			}
		if (sep && n == 1) {
			snprintf(why, why_len,
				 "entry %zu is empty ('%c' alone); separate URLs with blanks only",
				 out->count + 1, *sep);
			return -1;
		}
		if (sep) {
			snprintf(why, why_len,
				 "'%c' in entry %zu: separate broker URLs with blanks only", *sep,
				 out->count + 1);
			return -1;
		}
		if (out->count == SRUP_BROKER_LIST_MAX) {
			snprintf(why, why_len, "more than %d broker URLs", SRUP_BROKER_LIST_MAX);
			return -1;
		}
		if (n >= SRUP_BROKER_URL_MAX) {
			snprintf(why, why_len, "entry %zu is too long: %zu bytes, at most %d fit",
				 out->count + 1, n, SRUP_BROKER_URL_MAX - 1);
			return -1;
		}
		memcpy(out->url[out->count], c, n);
		out->url[out->count][n] = '\0';
		broker_identity(out->url[out->count], ids[out->count], sizeof(ids[0]));
		for (size_t i = 0; i < out->count; i++)
			if (strcmp(ids[i], ids[out->count]) == 0) {
				snprintf(why, why_len, "entries %zu and %zu name the same broker (%s)",
					 i + 1, out->count + 1, out->url[out->count]);
				return -1;
			}
		out->count++;
		c += n;
		c += strspn(c, blanks);
	}
	return 0;
}
