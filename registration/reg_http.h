/* HTTPS requests to the key service (REGISTRATION.md 1) with libcurl:
 * https only, no redirects, peer and host verified against a CA file (or
 * the system store), TLS 1.2 or later, a deadline per request, and the
 * body read into a buffer of at most REG_BODY_MAX bytes. */
#ifndef REG_HTTP_H
#define REG_HTTP_H

#include <stddef.h>

#include "reg_answer.h"

enum reg_http_outcome {
	REG_HTTP_ANSWERED,    /* status and body are set */
	REG_HTTP_TIMEOUT,     /* no answer within the deadline */
	REG_HTTP_UNREACHABLE, /* name, connection or TLS failure */
	REG_HTTP_TOO_LONG,    /* the body passed REG_BODY_MAX */
	REG_HTTP_FAILED,      /* anything else (out of memory, ...) */
};

struct reg_http {
	const char *base;    /* https://HOST[:PORT], no trailing '/' */
	const char *ca_file; /* NULL: the system store */
	long timeout_seconds;
};

struct reg_reply {
	long status;
	char body[REG_BODY_MAX + 1]; /* '\0' after len bytes, for messages */
	size_t len;
	char error[320];             /* what failed, for the outcomes but ANSWERED */
};

int reg_http_init(void);
void reg_http_cleanup(void);

/* GET (json NULL) or POST json to BASE/KeyEx/register/<route>. */
enum reg_http_outcome reg_http_call(const struct reg_http *h, const char *route, const char *json,
				    struct reg_reply *reply);

/* The first line of a plain-text error body, printable characters only,
 * for messages. */
void reg_reply_line(const struct reg_reply *reply, char *out, size_t out_len);

#endif
