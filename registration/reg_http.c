/* HTTPS to the key service (reg_http.h). */
#include "reg_http.h"

#include <stdio.h>
#include <string.h>

#include <curl/curl.h>

int reg_http_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void reg_http_cleanup(void)
{
	curl_global_cleanup();
}

struct sink {
	struct reg_reply *reply;
	int too_long;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *user)
{
	struct sink *s = user;
	size_t n = size * nmemb;

	/* Refused before it is stored: the buffer never grows past the cap. */
	if (n > REG_BODY_MAX - s->reply->len) {
		s->too_long = 1;
		return 0;
	}
	memcpy(s->reply->body + s->reply->len, data, n);
	s->reply->len += n;
	s->reply->body[s->reply->len] = '\0';
	return n;
}

enum reg_http_outcome reg_http_call(const struct reg_http *h, const char *route, const char *json,
				    struct reg_reply *reply)
{
	char url[1024];
	struct sink sink = {.reply = reply};
	struct curl_slist *headers = NULL;
	CURL *curl;
	CURLcode rc;
	enum reg_http_outcome outcome;

	reply->status = 0;
	reply->len = 0;
	reply->body[0] = '\0';
	reply->error[0] = '\0';
	if ((size_t)snprintf(url, sizeof(url), "%s/KeyEx/register/%s", h->base, route) >=
	    sizeof(url)) {
		snprintf(reply->error, sizeof(reply->error), "the URL is too long");
		return REG_HTTP_FAILED;
	}
	curl = curl_easy_init();
	if (!curl) {
		snprintf(reply->error, sizeof(reply->error), "cannot start libcurl");
		return REG_HTTP_FAILED;
	}
	curl_easy_setopt(curl, CURLOPT_URL, url);
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
	curl_easy_setopt(curl, CURLOPT_SSLVERSION, (long)CURL_SSLVERSION_TLSv1_2);
	if (h->ca_file)
		curl_easy_setopt(curl, CURLOPT_CAINFO, h->ca_file);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, h->timeout_seconds);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "srup-register");
	if (json) {
		headers = curl_slist_append(headers, "Content-Type: application/json");
		if (!headers) {
			curl_easy_cleanup(curl);
			snprintf(reply->error, sizeof(reply->error), "out of memory");
			return REG_HTTP_FAILED;
		}
		curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
		curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json);
	}
	rc = curl_easy_perform(curl);
	if (rc == CURLE_OK) {
		curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
		outcome = REG_HTTP_ANSWERED;
	} else if (sink.too_long) {
		snprintf(reply->error, sizeof(reply->error),
			 "the answer to %s is longer than %u bytes", route, REG_BODY_MAX);
		outcome = REG_HTTP_TOO_LONG;
	} else if (rc == CURLE_OPERATION_TIMEDOUT) {
		snprintf(reply->error, sizeof(reply->error),
			 "no answer to %s within %ld s", route, h->timeout_seconds);
		outcome = REG_HTTP_TIMEOUT;
	} else if (rc == CURLE_OUT_OF_MEMORY) {
		snprintf(reply->error, sizeof(reply->error), "out of memory");
		outcome = REG_HTTP_FAILED;
	} else {
		snprintf(reply->error, sizeof(reply->error), "%.160s: %s", url, curl_easy_strerror(rc));
		outcome = REG_HTTP_UNREACHABLE;
	}
	curl_slist_free_all(headers);
	curl_easy_cleanup(curl);
	return outcome;
}

void reg_reply_line(const struct reg_reply *reply, char *out, size_t out_len)
{
	size_t n = 0;

	for (size_t i = 0; i < reply->len && n + 1 < out_len; i++) {
		unsigned char c = (unsigned char)reply->body[i];

		if (c == '\n' || c == '\r')
			break;
		out[n++] = (c >= 0x20 && c < 0x7f) ? (char)c : '?';
	}
	out[n] = '\0';
	if (n == 0)
		snprintf(out, out_len, "(no text)");
}
