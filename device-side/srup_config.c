/* The INI configuration of srup-observerd and srup-device.
 *
 * inih does the INI syntax; this file owns everything around it so that
 * every error reads "FILE:LINE: [section] key: what is wrong":
 * - the file is read whole (bounded) and fed to inih line by line through
 *   ini_parse_stream, so the line number of each handler call is known
 *   (inih's own is only returned at the end) and over-long lines, which
 *   inih would split silently, are caught;
 * - section headers are checked as the reader hands them over, because
 *   inih never calls the handler for a section without keys;
 * - the first error (lowest line) wins; inih's syntax errors are
 *   reported with the text of the line;
 * - the main file and then its drop-ins are parsed one after the other
 *   into the same struct; where each key was last set (file and line) is
 *   kept in it, so that the checks made once all files are read name the
 *   file that set the value, not the main file.
 *
 * Sections and keys are one table: a key is one line in it. */
#include "srup_config.h"
#include "srup_broker_list.h"
#include "srup_detail.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ini.h>
#include <pthread.h>

#include "srup_hex.h"

#define CONFIG_FILE_MAX (64u * 1024u)

#define DEFAULT_WINDOW_SECONDS 120u
#define DEFAULT_MAX_ATTEMPTS 3u
#define DEFAULT_MAX_PENDING 1000u
#define DEFAULT_CONTROL_SOCKET "/run/srup-observer/control"
#define DEFAULT_AUDIT_MAX_BYTES (10u * 1024u * 1024u)
#define DEFAULT_AUDIT_KEEP 5u
#define DEFAULT_METRICS_INTERVAL_SECONDS 15u
#define DEFAULT_UPDATE_MAX_BYTES (64u * 1024u * 1024u)
#define DEFAULT_UPDATE_CONNECT_TIMEOUT 10u
#define DEFAULT_UPDATE_TIMEOUT 300u
#define DEFAULT_UPDATE_MAX_REDIRECTS 5u
#define DEFAULT_HOOK_TIMEOUT 120u
#define DEFAULT_GROUPS_MAX 8u

/* ---- The table of sections and keys ------------------------------------ */

enum config_section {
	SEC_IDENTITY,
	SEC_SERVER,
	SEC_MQTT,
	SEC_OBSERVATION,
	SEC_STATE,
	SEC_CONTROL,
	SEC_AUDIT,
	SEC_METRICS,
	SEC_IDENTIFICATION,
	SEC_UPDATE,
	SEC_HOOKS,
	SEC_ACTIONS, /* keys are action IDs (config_table_key) */
	SEC_DATA,    /* keys are data IDs */
	SEC_GROUPS,
	SEC_JOIN,
	SEC__BASE /* then one section per channel of the registry, in its order */
};

static const char *const base_section_names[SEC__BASE] = {
	[SEC_IDENTITY] = "identity", [SEC_SERVER] = "server", [SEC_MQTT] = "mqtt",
	[SEC_OBSERVATION] = "observation", [SEC_STATE] = "state",
	[SEC_CONTROL] = "control", [SEC_AUDIT] = "audit", [SEC_METRICS] = "metrics",
	[SEC_IDENTIFICATION] = "identification",
	[SEC_UPDATE] = "update", [SEC_HOOKS] = "hooks", [SEC_ACTIONS] = "actions",
	[SEC_DATA] = "data", [SEC_GROUPS] = "groups", [SEC_JOIN] = "join",
};

enum key_type {
	KEY_ID,      /* uint64_t, 1..16 hex digits */
	KEY_PATH,    /* char[size], non-empty */
	KEY_BROKER,  /* char[size], an MQTT broker URL */
	KEY_UINT,    /* unsigned, min..max */
	KEY_BOOL,    /* bool */
	KEY_CHANNELS, /* cfg->channels: registry names, blanks between, each once */
	KEY_TEXT,    /* char[size], non-empty, any characters */
	KEY_COMMAND, /* char[size], a <command> (srup_config_split_command) */
	KEY_CHOICE,  /* unsigned: the index of the value in unit, "a|b|..." */
};

struct key_spec {
	enum config_section section;
	const char *name;
	enum key_type type;
	size_t offset;       /* in struct srup_config */
	size_t size;         /* KEY_PATH, KEY_BROKER: buffer size */
	unsigned min, max;   /* KEY_UINT */
	const char *unit;    /* KEY_UINT: "seconds", ...; text keys: what the value is */
	bool required;       /* in its section, whenever the section is allowed */
};

#define CFG_FIELD(f) offsetof(struct srup_config, f), sizeof(((struct srup_config *)0)->f)

/* Each key is also classified for reload (applied, or restart-only) in
 * srup_config_reload.c; its unit test fails for a key that is not. */
static const struct key_spec base_keys[] = {
	{SEC_IDENTITY, "id", KEY_ID, CFG_FIELD(identity_id), 0, 0, NULL, true},
	{SEC_IDENTITY, "private_key", KEY_PATH, CFG_FIELD(identity_private_key), 0, 0, "a path",
	 true},
	{SEC_SERVER, "id", KEY_ID, CFG_FIELD(server_id), 0, 0, NULL, true},
	{SEC_SERVER, "public_key", KEY_PATH, CFG_FIELD(server_public_key), 0, 0, "a path", true},
	{SEC_MQTT, "broker", KEY_BROKER, CFG_FIELD(mqtt_broker), 0, 0, "one or more broker URLs",
	 true},
	{SEC_MQTT, "ca_file", KEY_PATH, CFG_FIELD(mqtt_ca_file), 0, 0, "a path", false},
	{SEC_MQTT, "cert_file", KEY_PATH, CFG_FIELD(mqtt_cert_file), 0, 0, "a path", false},
	{SEC_MQTT, "key_file", KEY_PATH, CFG_FIELD(mqtt_key_file), 0, 0, "a path", false},
	{SEC_OBSERVATION, "channel", KEY_CHANNELS, CFG_FIELD(channels), 0, 0, NULL, true},
	{SEC_OBSERVATION, "window_seconds", KEY_UINT, CFG_FIELD(window_seconds), 1, 86400,
	 "seconds", false},
	{SEC_OBSERVATION, "max_attempts", KEY_UINT, CFG_FIELD(max_attempts), 1, 100, "attempts",
	 false},
	{SEC_OBSERVATION, "max_pending", KEY_UINT, CFG_FIELD(max_pending), 1, 100000,
	 "observations", false},
	{SEC_STATE, "dir", KEY_PATH, CFG_FIELD(state_dir), 0, 0, "a directory path", true},
	/* srup-observerd's operator interfaces */
	{SEC_CONTROL, "socket", KEY_PATH, CFG_FIELD(control_socket), 0, 0, "a socket path", false},
	{SEC_AUDIT, "file", KEY_PATH, CFG_FIELD(audit_file), 0, 0, "a file path", false},
	{SEC_AUDIT, "max_bytes", KEY_UINT, CFG_FIELD(audit_max_bytes), 4096, 1073741824u, "bytes",
	 false},
	{SEC_AUDIT, "keep", KEY_UINT, CFG_FIELD(audit_keep), 0, 100, "files", false},
	{SEC_AUDIT, "fsync", KEY_BOOL, CFG_FIELD(audit_fsync), 0, 0, NULL, false},
	{SEC_AUDIT, "journal", KEY_BOOL, CFG_FIELD(audit_journal), 0, 0, NULL, false},
	{SEC_METRICS, "file", KEY_PATH, CFG_FIELD(metrics_file), 0, 0, "a file path", false},
	{SEC_METRICS, "interval_seconds", KEY_UINT, CFG_FIELD(metrics_interval_seconds), 1, 3600,
	 "seconds", false},
	{SEC_SERVER, "join", KEY_CHOICE, CFG_FIELD(server_join), 0, 0, "off|auto", false},
	{SEC_IDENTIFICATION, "text", KEY_TEXT, CFG_FIELD(identification), 0, 0,
	 "identification text", false},
	{SEC_UPDATE, "ca_file", KEY_PATH, CFG_FIELD(update.ca_file), 0, 0, "a path", false},
	{SEC_UPDATE, "max_bytes", KEY_UINT, CFG_FIELD(update.max_bytes), 1, 4000000000u, "bytes",
	 false},
	{SEC_UPDATE, "connect_timeout_seconds", KEY_UINT, CFG_FIELD(update.connect_timeout_seconds),
	 1, 600, "seconds", false},
	{SEC_UPDATE, "timeout_seconds", KEY_UINT, CFG_FIELD(update.timeout_seconds), 1, 86400,
	 "seconds", false},
	{SEC_UPDATE, "max_redirects", KEY_UINT, CFG_FIELD(update.max_redirects), 0, 20,
	 "redirects", false},
	{SEC_UPDATE, "activate", KEY_COMMAND, CFG_FIELD(update.activate), 0, 0, "a command",
	 false},
	{SEC_HOOKS, "timeout_seconds", KEY_UINT, CFG_FIELD(hook_timeout_seconds), 1, 86400,
	 "seconds", false},
	{SEC_GROUPS, "max", KEY_UINT, CFG_FIELD(groups_max), 0, 64, "groups", false},
	{SEC_JOIN, "command", KEY_CHOICE, CFG_FIELD(join_command), 0, 0, "accept|refuse", false},
};

#define BASE_KEY_COUNT (sizeof(base_keys) / sizeof(base_keys[0]))
_Static_assert(SEC__BASE + RADIO_CHANNELS_MAX <= SRUP_CONFIG_SECTIONS_MAX,
	       "SRUP_CONFIG_SECTIONS_MAX too small");

/* The whole table: the rows above, then each channel's section and keys
 * as its driver declares them (radio.h), so that a channel brings its own
 * section. Built once. */
static struct {
	struct key_spec keys[SRUP_CONFIG_KEYS_MAX];
	size_t n_keys;
	const char *section_names[SRUP_CONFIG_SECTIONS_MAX];
	int n_sections;
	bool overflow; /* a driver's keys did not fit: every load fails */
} key_table;
static pthread_once_t table_once = PTHREAD_ONCE_INIT;

static void table_build(void)
{
	_Static_assert(BASE_KEY_COUNT <= SRUP_CONFIG_KEYS_MAX, "SRUP_CONFIG_KEYS_MAX too small");
	memcpy(key_table.keys, base_keys, sizeof(base_keys));
	key_table.n_keys = BASE_KEY_COUNT;
	for (int sec = 0; sec < SEC__BASE; sec++)
		key_table.section_names[sec] = base_section_names[sec];
	key_table.n_sections = SEC__BASE;
	for (size_t i = 0; radio_channel_drivers[i]; i++) {
		const struct radio_channel_driver *drv = radio_channel_drivers[i];

		key_table.section_names[key_table.n_sections] = drv->name;
		for (const struct radio_config_key *k = drv->keys; k && k->name; k++) {
			static const enum key_type types[] = {
				[RADIO_CONFIG_TEXT] = KEY_PATH,
				[RADIO_CONFIG_UINT] = KEY_UINT,
				[RADIO_CONFIG_BOOL] = KEY_BOOL,
			};

			if (key_table.n_keys == SRUP_CONFIG_KEYS_MAX) {
				key_table.overflow = true;
				break;
			}
			key_table.keys[key_table.n_keys++] = (struct key_spec){
				.section = (enum config_section)key_table.n_sections,
				.name = k->name,
				.type = types[k->type],
				.offset = offsetof(struct srup_config, radio) + k->offset,
				.size = k->size,
				.min = k->min,
				.max = k->max,
				.unit = k->unit,
			};
		}
		key_table.n_sections++;
	}
}

static const struct key_spec *config_keys(void)
{
	pthread_once(&table_once, table_build);
	return key_table.keys;
}

static size_t config_key_count(void)
{
	pthread_once(&table_once, table_build);
	return key_table.n_keys;
}

static int section_count(void)
{
	pthread_once(&table_once, table_build);
	return key_table.n_sections;
}

static const char *section_name(int s)
{
	return s >= 0 && s < section_count() ? key_table.section_names[s] : "?";
}

#define keys (config_keys())
#define KEY_COUNT (config_key_count())
#define SEC__COUNT (section_count())

/* ---- Parse state ------------------------------------------------------- */

struct config_parse {
	const char *file;              /* being read: the main file or a drop-in */
	unsigned file_index;           /* in cfg->files */
	unsigned main_last_line;       /* lines of the main file */
	enum srup_config_kind kind;
	struct srup_config *cfg;
	/* The reader's position in the file text. */
	const char *text;
	size_t text_len, pos;
	unsigned lineno;               /* line last handed to inih */
	const char *line;              /* its raw text (not NUL-terminated) */
	size_t line_len;
	bool key_since_header;         /* inih treats an indented line as a continuation then */
	char section[64];              /* of the last header, for over-long lines */
	/* Where each section and key was seen in the file being read (0 =
	 * not seen); cfg->*_origin keep the last place over all files. */
	unsigned section_line[SRUP_CONFIG_SECTIONS_MAX];
	unsigned key_line[SRUP_CONFIG_KEYS_MAX];
	/* The first error. */
	unsigned err_line;
	char *err;
	size_t err_len;
	bool failed;
	/* Set while checking what is left to fill in: each further problem
	 * is appended as a line of its own instead of being dropped. */
	bool collect;
};

static bool section_observer_only(enum config_section s)
{
	return s == SEC_OBSERVATION || s == SEC_CONTROL || s == SEC_AUDIT || s == SEC_METRICS;
}

static bool section_allowed(const struct config_parse *p, enum config_section s)
{
	return !section_observer_only(s) || p->kind == SRUP_CONFIG_OBSERVER;
}

static int section_lookup(const char *name)
{
	for (int s = 0; s < SEC__COUNT; s++)
		if (strcmp(name, section_name(s)) == 0)
			return s;
	return -1;
}

/* Records the first error: "FILE:LINE: [section] key: message" (the
 * section and key parts are left out when there is none). */
__attribute__((format(printf, 6, 0))) static void
config_verror(struct config_parse *p, const char *file, unsigned line, const char *section,
	      const char *key, const char *fmt, va_list ap)
{
	char msg[384];
	size_t used = 0;
	int n;

	if (p->failed && !p->collect)
		return;
	if (!p->failed)
		p->err_line = line;
	else if (p->err && p->err_len)
		used = strlen(p->err);
	p->failed = true;
	if (!p->err || !p->err_len || used + 1 >= p->err_len)
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	n = snprintf(NULL, 0, "%s%s:%u: %s%s%s%s%s%s%s", used ? "\n" : "", file, line,
		     section ? "[" : "", section ? section : "", section ? "]" : "",
		     section && key ? " " : "", key ? key : "", section || key ? ": " : "", msg);
	/* The first error is kept even if cut; a further one only whole, so
	 * that every line still names the file. */
	if (used && (n < 0 || (size_t)n >= p->err_len - used))
		return;
	snprintf(p->err + used, p->err_len - used, "%s%s:%u: %s%s%s%s%s%s%s", used ? "\n" : "",
		 file, line, section ? "[" : "", section ? section : "", section ? "]" : "",
		 section && key ? " " : "", key ? key : "", section || key ? ": " : "", msg);
}

/* An error at a line of the file being read. */
__attribute__((format(printf, 5, 6))) static void
config_error(struct config_parse *p, unsigned line, const char *section, const char *key,
	     const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_verror(p, p->file, line, section, key, fmt, ap);
	va_end(ap);
}

/* An error at the place a value was set, in whichever file that was (the
 * main file's last line when none set it). */
__attribute__((format(printf, 5, 6))) static void
config_error_at(struct config_parse *p, struct srup_config_origin at, const char *section,
		const char *key, const char *fmt, ...)
{
	const struct srup_config *cfg = p->cfg;
	va_list ap;

	va_start(ap, fmt);
	if (at.line && at.file < cfg->n_files)
		config_verror(p, cfg->files[at.file], at.line, section, key, fmt, ap);
	else
		config_verror(p, cfg->path, p->main_last_line ? p->main_last_line : 1, section,
			      key, fmt, ap);
	va_end(ap);
}

static const char *known_keys(enum config_section s, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t k = 0; k < KEY_COUNT; k++) {
		if (keys[k].section != s)
			continue;
		int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", keys[k].name);
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	return buf;
}

static const char *known_sections(const struct config_parse *p, char *buf, size_t len)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int s = 0; s < SEC__COUNT; s++) {
		if (!section_allowed(p, (enum config_section)s))
			continue;
		int n = snprintf(buf + used, len - used, "%s%s", used ? ", " : "", section_name(s));
		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	return buf;
}

/* ---- Values -------------------------------------------------------------- */

/* Decimal digits only: no sign, no spaces, no 0x. */
static int parse_uint(const char *text, unsigned long long *out)
{
	unsigned long long v = 0;

	if (!*text)
		return -1;
	for (const char *c = text; *c; c++) {
		if (*c < '0' || *c > '9')
			return -1;
		if (v > (ULLONG_MAX - (unsigned)(*c - '0')) / 10)
			v = ULLONG_MAX; /* saturate: out of any range */
		else
			v = v * 10 + (unsigned)(*c - '0');
	}
	*out = v;
	return 0;
}

static int parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = {"true", "yes", "1"};
	static const char *const no[] = {"false", "no", "0"};

	for (size_t i = 0; i < 3; i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -1;
}

/* Whether url is SCHEME://HOST[:PORT][/...]: a known scheme, a host
 * ("[v6]" bracketed), and a port, when there is a ':', of digits only in
 * 1..65535 (Paho would otherwise fail at connect, naming no file). Returns
 * NULL, or what is wrong. */
static const char *broker_url_problem(const char *url, char *why, size_t len)
{
	static const char *const schemes[] = {"mqtt://", "mqtts://", "tcp://"};
	const char *host = NULL, *after, *port;
	unsigned long long num = 0;
	char digits[16], show[32];
	size_t n = 0;

	for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
		n = strlen(schemes[i]);
		if (strncmp(url, schemes[i], n) == 0) {
			host = url + n;
			break;
		}
	}
	if (!host || *host == '\0' || *host == ':' || *host == '/')
		return "not a broker URL";
	if (*host == '[') {
		after = strchr(host, ']');
		if (!after || after == host + 1)
			return "not a broker URL (an IPv6 address goes in [ ])";
		after++;
	} else {
		after = host + strcspn(host, ":/");
	}
	if (*after != ':')
		return *after == '\0' || *after == '/' ? NULL : "not a broker URL";
	port = after + 1;
	n = strcspn(port, "/");
	snprintf(show, sizeof(show), "%.*s", (int)(n < 20 ? n : 20), port);
	if (n == 0) {
		snprintf(why, len, "the port after ':' is empty (1..65535)");
		return why;
	}
	if (strspn(port, "0123456789") < n) {
		snprintf(why, len, "port '%s' is not a number (digits only, 1..65535)",
			 detail_shown(show, digits, sizeof(digits)));
		return why;
	}
	if (n > 5 || (parse_uint(show, &num) == 0 && (num < 1 || num > 65535))) {
		snprintf(why, len, "port %s is out of range (1..65535)",
			 detail_shown(show, digits, sizeof(digits)));
		return why;
	}
	return NULL;
}

static int set_text(struct config_parse *p, const struct key_spec *k, const char *value)
{
	const char *what = k->unit;
	const char *sec = section_name(k->section);
	char *dst = (char *)p->cfg + k->offset;
	size_t n = strlen(value);

	if (n == 0) {
		config_error(p, p->lineno, sec, k->name, "empty; %s is required", what);
		return -1;
	}
	if (n >= k->size) {
		config_error(p, p->lineno, sec, k->name, "too long: %zu bytes, at most %zu fit",
			     n, k->size - 1);
		return -1;
	}
	memcpy(dst, value, n + 1);
	return 0;
}

int srup_config_split_command(const char *line, char *buf, size_t len, char *argv[], size_t max)
{
	size_t used = 0, n = 0;
	const char *c = line;

	if (!line || !buf || !argv || max < 2)
		return -1;
	for (;;) {
		while (*c == ' ' || *c == '\t')
			c++;
		if (*c == '\0')
			break;
		size_t w = strcspn(c, " \t");
		if (n + 1 >= max || used + w + 1 > len)
			return -1;
		memcpy(buf + used, c, w);
		buf[used + w] = '\0';
		argv[n++] = buf + used;
		used += w + 1;
		c += w;
	}
	argv[n] = NULL;
	return n ? (int)n : -1;
}

/* A <command>: words, the first an absolute path. Whether the program
 * exists is checked when it runs (it may be installed later). */
static int check_command(struct config_parse *p, const char *sec, const char *key,
			 const char *value)
{
	char buf[512], show[96];
	char *argv[SRUP_CONFIG_COMMAND_WORDS + 1];

	if (srup_config_split_command(value, buf, sizeof(buf), argv, SRUP_CONFIG_COMMAND_WORDS + 1) < 0) {
		config_error(p, p->lineno, sec, key,
			     "'%s' is not a command (1 to %u words separated by blanks)",
			     detail_shown(value, show, sizeof(show)), SRUP_CONFIG_COMMAND_WORDS);
		return -1;
	}
	if (argv[0][0] != '/') {
		config_error(p, p->lineno, sec, key,
			     "'%s': the program must be an absolute path (no shell runs it)",
			     detail_shown(argv[0], show, sizeof(show)));
		return -1;
	}
	return 0;
}

static int set_choice(struct config_parse *p, const struct key_spec *k, const char *value)
{
	const char *c = k->unit;
	char show[96];
	unsigned index = 0;

	for (;;) {
		size_t n = strcspn(c, "|");

		if (strlen(value) == n && strncmp(c, value, n) == 0) {
			*(unsigned *)((char *)p->cfg + k->offset) = index;
			return 0;
		}
		if (c[n] == '\0')
			break;
		c += n + 1;
		index++;
	}
	config_error(p, p->lineno, section_name(k->section), k->name, "'%s' is not one of %s",
		     detail_shown(value, show, sizeof(show)), k->unit);
	return -1;
}

/* [actions] and [data]: the key is the ID the server sends. */
static int set_table_key(struct config_parse *p, enum config_section s, const char *name,
			 const char *value)
{
	const char *sec = section_name(s);
	bool actions = s == SEC_ACTIONS;
	struct srup_config_hook *table = actions ? p->cfg->actions : p->cfg->data;
	size_t *count = actions ? &p->cfg->n_actions : &p->cfg->n_data;
	struct srup_config_hook entry = {0};
	unsigned long long num = 0;
	char show[96];

	if (actions) {
		if (parse_uint(name, &num) < 0 || num > 255) {
			config_error(p, p->lineno, sec, name,
				     "'%s' is not an action ID (a whole number 0..255)",
				     detail_shown(name, show, sizeof(show)));
			return -1;
		}
		entry.action_id = (unsigned)num;
	} else {
		size_t n = strlen(name);

		if (n > SRUP_CONFIG_DATA_ID_MAX ||
		    strspn(name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") != n) {
			config_error(p, p->lineno, sec, name,
				     "not a data ID (1 to %u characters of A-Z a-z 0-9 . _ -)",
				     SRUP_CONFIG_DATA_ID_MAX);
			return -1;
		}
		memcpy(entry.id, name, n + 1);
	}
	struct srup_config_hook *slot = NULL;

	for (size_t i = 0; i < *count; i++) {
		if (actions ? table[i].action_id == entry.action_id : strcmp(table[i].id, name) == 0) {
			slot = &table[i];
			break;
		}
	}
	/* Once per file; a later drop-in replaces the entry. */
	if (slot && slot->origin.file == p->file_index) {
		config_error(p, p->lineno, sec, name, "set twice (first at line %u)",
			     slot->origin.line);
		return -1;
	}
	if (!slot && *count == SRUP_CONFIG_HOOKS_MAX) {
		config_error(p, p->lineno, sec, name, "more than %u entries", SRUP_CONFIG_HOOKS_MAX);
		return -1;
	}
	if (check_command(p, sec, name, value) < 0)
		return -1;
	if (strlen(value) >= sizeof(entry.command)) {
		config_error(p, p->lineno, sec, name, "too long: at most %zu bytes",
			     sizeof(entry.command) - 1);
		return -1;
	}
	snprintf(entry.command, sizeof(entry.command), "%s", value);
	entry.origin = (struct srup_config_origin){p->file_index, p->lineno};
	if (slot)
		*slot = entry;
	else
		table[(*count)++] = entry;
	return 0;
}

/* [observation] channel: one or more registry names separated by blanks,
 * each at most once. */
static int set_channels(struct config_parse *p, const struct key_spec *k, const char *value)
{
	const char *sec = section_name(k->section), *c = value;
	struct srup_config *cfg = p->cfg;
	char names[64], show[96], word[64];

	cfg->n_channels = 0;
	for (;;) {
		const struct radio_channel_driver *drv;
		size_t n;

		while (*c == ' ' || *c == '\t')
			c++;
		if (*c == '\0')
			break;
		n = strcspn(c, " \t");
		snprintf(word, sizeof(word), "%.*s", (int)(n < 60 ? n : 60), c);
		drv = n < 60 ? radio_channel_find(word) : NULL;
		if (!drv) {
			config_error(p, p->lineno, sec, k->name, "'%s' is not a channel (%s)",
				     detail_shown(word, show, sizeof(show)),
				     radio_channel_names(names, sizeof(names)));
			return -1;
		}
		for (size_t i = 0; i < cfg->n_channels; i++) {
			if (cfg->channels[i] == drv) {
				config_error(p, p->lineno, sec, k->name,
					     "'%s' is listed twice (each channel at most once)",
					     drv->name);
				return -1;
			}
		}
		cfg->channels[cfg->n_channels++] = drv; /* fits: each once, registry <= max */
		c += n;
	}
	if (cfg->n_channels == 0) {
		config_error(p, p->lineno, sec, k->name,
			     "empty; name one or more channels (%s), blanks between",
			     radio_channel_names(names, sizeof(names)));
		return -1;
	}
	return 0;
}

static int set_value(struct config_parse *p, const struct key_spec *k, const char *value)
{
	const char *sec = section_name(k->section);
	void *dst = (char *)p->cfg + k->offset;
	char show[96];
	unsigned long long num;

	switch (k->type) {
	case KEY_ID:
		if (srup_hex_parse_id(value, dst) == 0)
			return 0;
		if (!*value)
			config_error(p, p->lineno, sec, k->name,
				     "empty; expected a SRUP ID (1 to 16 hex digits)");
		else if (value[0] == '0' && (value[1] == 'x' || value[1] == 'X'))
			config_error(p, p->lineno, sec, k->name,
				     "'%s' is not a SRUP ID: write the hex digits without 0x",
				     detail_shown(value, show, sizeof(show)));
		else if (strlen(value) > 16 && strspn(value, "0123456789abcdefABCDEF") == strlen(value))
			config_error(p, p->lineno, sec, k->name,
				     "'%s' has %zu hex digits; a SRUP ID has at most 16",
				     detail_shown(value, show, sizeof(show)), strlen(value));
		else
			config_error(p, p->lineno, sec, k->name,
				     "'%s' is not a SRUP ID (1 to 16 hex digits)",
				     detail_shown(value, show, sizeof(show)));
		return -1;
	case KEY_PATH:
		return set_text(p, k, value);
	case KEY_BROKER:
		if (set_text(p, k, value) < 0)
			return -1;
	{
		struct srup_broker_list list;
		char why[160];
		const char *problem;

		if (srup_broker_list_split(value, &list, why, sizeof(why)) < 0) {
			config_error(p, p->lineno, sec, k->name, "'%s': %s",
				     detail_shown(value, show, sizeof(show)), why);
			return -1;
		}
		for (size_t i = 0; i < list.count; i++) {
			char entry[40] = "";

			if (list.count > 1)
				snprintf(entry, sizeof(entry), "entry %zu ", i + 1);
			problem = broker_url_problem(list.url[i], why, sizeof(why));
			if (!problem && srup_broker_url_is_tls(list.url[i]) !=
						srup_broker_url_is_tls(list.url[0])) {
				config_error(p, p->lineno, sec, k->name,
					     "%s'%s' mixes TLS and plain brokers; list only mqtts:// "
					     "or only tcp:// and mqtt:// URLs",
					     entry, detail_shown(list.url[i], show, sizeof(show)));
				return -1;
			}
			if (!problem)
				continue;
			if (problem != why)
				config_error(p, p->lineno, sec, k->name,
					     "%s'%s' is %s (mqtt://HOST:PORT, mqtts://HOST:PORT or tcp://HOST:PORT)",
					     entry, detail_shown(list.url[i], show, sizeof(show)), problem);
			else
				config_error(p, p->lineno, sec, k->name, "%s'%s': %s", entry,
					     detail_shown(list.url[i], show, sizeof(show)), problem);
			return -1;
		}
		return 0;
	}
	case KEY_UINT:
		if (parse_uint(value, &num) < 0) {
			config_error(p, p->lineno, sec, k->name,
				     "'%s' is not a whole number of %s (%u..%u)",
				     detail_shown(value, show, sizeof(show)), k->unit, k->min, k->max);
			return -1;
		}
		if (num < k->min || num > k->max) {
			config_error(p, p->lineno, sec, k->name, "'%s' is out of range (%u..%u %s)",
				     detail_shown(value, show, sizeof(show)), k->min, k->max, k->unit);
			return -1;
		}
		*(unsigned *)dst = (unsigned)num;
		return 0;
	case KEY_BOOL:
		if (parse_bool(value, dst) == 0)
			return 0;
		config_error(p, p->lineno, sec, k->name,
			     "'%s' is not a boolean (true/false, yes/no, 1/0)",
			     detail_shown(value, show, sizeof(show)));
		return -1;
	case KEY_CHANNELS:
		return set_channels(p, k, value);
	case KEY_TEXT:
		return set_text(p, k, value);
	case KEY_COMMAND:
		if (check_command(p, sec, k->name, value) < 0)
			return -1;
		return set_text(p, k, value);
	case KEY_CHOICE:
		return set_choice(p, k, value);
	}
	return -1;
}

/* ---- inih callbacks -------------------------------------------------------- */

/* A section header as the reader passes it: "[name]" after optional
 * blanks, then nothing but blanks or a comment. */
static void check_section_header(struct config_parse *p, const char *line, size_t len)
{
	const char *end = line + len, *c = line, *name, *close;
	char sec[64], list[128];
	size_t name_len;
	int s;

	while (c < end && isspace((unsigned char)*c))
		c++;
	if (c == end || *c != '[')
		return;
	/* inih reads an indented line after a key as a continuation of that
	 * key's value, whatever it holds; the handler reports it. */
	if (c > line && p->key_since_header)
		return;
	name = c + 1;
	close = memchr(name, ']', (size_t)(end - name));
	if (!close)
		return; /* inih reports the missing ']' */
	p->key_since_header = false;
	name_len = (size_t)(close - name);
	snprintf(sec, sizeof(sec), "%.*s", (int)(name_len < 60 ? name_len : 60), name);
	memcpy(p->section, sec, sizeof(p->section));
	for (c = close + 1; c < end && isspace((unsigned char)*c); c++)
		;
	if (c < end && *c != ';' && *c != '#') {
		config_error(p, p->lineno, sec, NULL, "unexpected text after the section header");
		return;
	}
	s = name_len < 60 ? section_lookup(sec) : -1;
	if (s < 0) {
		config_error(p, p->lineno, sec, NULL, "unknown section (known: %s)",
			     known_sections(p, list, sizeof(list)));
		return;
	}
	if (!section_allowed(p, (enum config_section)s)) {
		config_error(p, p->lineno, sec, NULL,
			     "unknown section in a device configuration (only the observer has it)");
		return;
	}
	if (p->section_line[s]) {
		config_error(p, p->lineno, sec, NULL, "section appears twice (first at line %u)",
			     p->section_line[s]);
		return;
	}
	p->section_line[s] = p->lineno;
	p->cfg->section_origin[s] = (struct srup_config_origin){p->file_index, p->lineno};
}

/* ini_reader: hands inih one line per call, so that inih's line count and
 * ours agree. */
static char *config_reader(char *str, int num, void *stream)
{
	struct config_parse *p = stream;
	const char *start, *nl;
	size_t len, avail;

	if (p->pos >= p->text_len || num < 2)
		return NULL;
	start = p->text + p->pos;
	avail = p->text_len - p->pos;
	nl = memchr(start, '\n', avail);
	len = nl ? (size_t)(nl - start) : avail;
	p->pos += nl ? len + 1 : len;
	p->lineno++;
	p->line = start;
	p->line_len = len;

	if (len + 2 > (size_t)num) {
		/* inih would cut the line and read its tail as a line of its own. */
		const char *eq = memchr(start, '=', len);
		char key[64];

		if (eq) {
			const char *k = start, *ke = eq;

			while (k < ke && isspace((unsigned char)*k))
				k++;
			while (ke > k && isspace((unsigned char)ke[-1]))
				ke--;
			snprintf(key, sizeof(key), "%.*s", (int)((size_t)(ke - k) < 60 ? ke - k : 60), k);
		}
		config_error(p, p->lineno, p->section[0] ? p->section : NULL, eq ? key : NULL,
			     "line is %zu characters long; at most %d are allowed", len, num - 2);
		memcpy(str, "\n", 2);
		return str;
	}
	check_section_header(p, start, len);
	memcpy(str, start, len);
	str[len] = '\n';
	str[len + 1] = '\0';
	return str;
}

static int config_handler(void *user, const char *section, const char *name, const char *value)
{
	struct config_parse *p = user;
	bool continuation = p->key_since_header && p->line_len &&
			    isspace((unsigned char)p->line[0]);
	char list[160];
	int s;

	p->key_since_header = true;
	if (!*section) {
		config_error(p, p->lineno, NULL, name, "key outside any [section]");
		return 0;
	}
	if (continuation) {
		config_error(p, p->lineno, section, name,
			     "indented line would continue the value of %s; start keys at the beginning of the line",
			     name);
		return 0;
	}
	s = section_lookup(section);
	if (s < 0 || !section_allowed(p, (enum config_section)s)) {
		/* The header was reported already; this keeps that error. */
		config_error(p, p->lineno, section, name, "in an unknown section");
		return 0;
	}
	if (!*name) {
		config_error(p, p->lineno, section, NULL, "a line with '=' but no key name");
		return 0;
	}
	if (s == SEC_ACTIONS || s == SEC_DATA)
		return set_table_key(p, (enum config_section)s, name, value) == 0;
	for (size_t k = 0; k < KEY_COUNT; k++) {
		if (keys[k].section != (enum config_section)s || strcmp(keys[k].name, name) != 0)
			continue;
		if (p->key_line[k]) {
			config_error(p, p->lineno, section, name, "set twice (first at line %u)",
				     p->key_line[k]);
			return 0;
		}
		p->key_line[k] = p->lineno;
		p->cfg->key_origin[k] = (struct srup_config_origin){p->file_index, p->lineno};
		return set_value(p, &keys[k], value) == 0;
	}
	config_error(p, p->lineno, section, name, "unknown key (known in [%s]: %s)", section,
		     known_keys((enum config_section)s, list, sizeof(list)));
	return 0;
}

/* ---- Loading --------------------------------------------------------------- */

static void config_defaults(struct srup_config *cfg, enum srup_config_kind kind)
{
	if (kind == SRUP_CONFIG_OBSERVER) {
		cfg->window_seconds = DEFAULT_WINDOW_SECONDS;
		cfg->max_attempts = DEFAULT_MAX_ATTEMPTS;
		cfg->max_pending = DEFAULT_MAX_PENDING;
		snprintf(cfg->control_socket, sizeof(cfg->control_socket), "%s",
			 DEFAULT_CONTROL_SOCKET);
		cfg->audit_max_bytes = DEFAULT_AUDIT_MAX_BYTES;
		cfg->audit_keep = DEFAULT_AUDIT_KEEP;
		cfg->audit_fsync = true;
		cfg->audit_journal = true;
		cfg->metrics_interval_seconds = DEFAULT_METRICS_INTERVAL_SECONDS;
	}
	for (size_t i = 0; radio_channel_drivers[i]; i++)
		if (radio_channel_drivers[i]->defaults)
			radio_channel_drivers[i]->defaults(&cfg->radio);
	cfg->update.max_bytes = DEFAULT_UPDATE_MAX_BYTES;
	cfg->update.connect_timeout_seconds = DEFAULT_UPDATE_CONNECT_TIMEOUT;
	cfg->update.timeout_seconds = DEFAULT_UPDATE_TIMEOUT;
	cfg->update.max_redirects = DEFAULT_UPDATE_MAX_REDIRECTS;
	cfg->hook_timeout_seconds = DEFAULT_HOOK_TIMEOUT;
	cfg->groups_max = DEFAULT_GROUPS_MAX;
}

/* Reads the whole file (at most CONFIG_FILE_MAX bytes). */
static int config_read_file(struct config_parse *p, char **text, size_t *len)
{
	struct stat st;
	char *buf = NULL;
	size_t used = 0;
	int fd;

	/* O_NONBLOCK: a FIFO among the drop-ins must not hang the open; it is
	 * refused by the regular-file check below. */
	fd = open(p->file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0) {
		snprintf(p->err, p->err_len, "%s: cannot read: %s", p->file, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) < 0) {
		snprintf(p->err, p->err_len, "%s: cannot read: %s", p->file, strerror(errno));
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		snprintf(p->err, p->err_len, "%s: cannot read: %s", p->file,
			 S_ISDIR(st.st_mode) ? "is a directory" : "not a regular file");
		close(fd);
		return -1;
	}
	buf = malloc(CONFIG_FILE_MAX + 1);
	if (!buf) {
		snprintf(p->err, p->err_len, "%s: cannot read: out of memory", p->file);
		close(fd);
		return -1;
	}
	for (;;) {
		ssize_t n = read(fd, buf + used, CONFIG_FILE_MAX + 1 - used);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			snprintf(p->err, p->err_len, "%s: cannot read: %s", p->file,
				 strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		used += (size_t)n;
		if (used > CONFIG_FILE_MAX) {
			snprintf(p->err, p->err_len, "%s: larger than %u bytes; not a configuration file",
				 p->file, CONFIG_FILE_MAX);
			goto fail;
		}
	}
	close(fd);
	buf[used] = '\0';
	*text = buf;
	*len = used;
	return 0;
fail:
	free(buf);
	close(fd);
	return -1;
}

/* The section whose header last preceded line `line`, for syntax errors. */
static const char *section_before(const struct config_parse *p, unsigned line, char *buf,
				  size_t len)
{
	unsigned best = 0;
	int best_s = -1;

	for (int s = 0; s < SEC__COUNT; s++)
		if (p->section_line[s] && p->section_line[s] < line && p->section_line[s] > best) {
			best = p->section_line[s];
			best_s = s;
		}
	if (best_s < 0)
		return NULL;
	snprintf(buf, len, "%s", section_name(best_s));
	return buf;
}

static void report_syntax_error(struct config_parse *p, unsigned line)
{
	const char *c = p->text, *end = p->text + p->text_len, *nl;
	char text[96], sec[32], shown_text[96];
	const char *section = section_before(p, line, sec, sizeof(sec));
	size_t len;

	for (unsigned l = 1; l < line && c < end; l++) {
		nl = memchr(c, '\n', (size_t)(end - c));
		c = nl ? nl + 1 : end;
	}
	nl = memchr(c, '\n', (size_t)(end - c));
	len = nl ? (size_t)(nl - c) : (size_t)(end - c);
	while (len && isspace((unsigned char)c[len - 1]))
		len--;
	while (len && isspace((unsigned char)*c)) {
		c++;
		len--;
	}
	snprintf(text, sizeof(text), "%.*s", (int)(len < 90 ? len : 90), c);
	detail_shown(text, shown_text, sizeof(shown_text));
	if (text[0] == '[')
		config_error(p, line, NULL, NULL, "'%s': section header without ']'", shown_text);
	else
		config_error(p, line, section, NULL,
			     "'%s': not a 'key = value' line, a [section] header or a comment",
			     shown_text);
}

/* Where key `name` of section s was last set ({0, 0}: nowhere). */
static struct srup_config_origin key_origin_of(const struct config_parse *p,
					       enum config_section s, const char *name)
{
	for (size_t k = 0; k < KEY_COUNT; k++)
		if (keys[k].section == s && strcmp(keys[k].name, name) == 0)
			return p->cfg->key_origin[k];
	return (struct srup_config_origin){0, 0};
}

/* The host of a broker URL that broker_url_problem accepted ("[v6]" kept whole). */
static void broker_host(const char *url, char *out, size_t len)
{
	const char *h = strstr(url, "://"), *end;

	if (!h) {
		snprintf(out, len, "%s", "");
		return;
	}
	h += 3;
	end = *h == '[' ? strchr(h, ']') : NULL;
	end = end ? end + 1 : h + strcspn(h, ":/");
	snprintf(out, len, "%.*s", (int)(end - h), h);
}

/* Names reserved for documentation (RFC 2606, RFC 6761): an example
 * configuration's placeholder, never a real broker. */
static bool host_is_placeholder(const char *host)
{
	static const char *const reserved[] = {"example.com", "example.net", "example.org",
					       "invalid"};
	size_t n = strlen(host);

	for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
		size_t r = strlen(reserved[i]);

		if (n == r && strcasecmp(host, reserved[i]) == 0)
			return true;
		if (n > r && host[n - r - 1] == '.' && strcasecmp(host + n - r, reserved[i]) == 0)
			return true;
	}
	return false;
}

/* A file the TLS session needs, checked as whoever runs the check (the
 * unit runs --check-config as the service user). */
static void check_tls_file(struct config_parse *p, const char *name, const char *path)
{
	char show[96];

	if (!path[0] || access(path, R_OK) == 0)
		return;
	config_error_at(p, key_origin_of(p, SEC_MQTT, name), "mqtt", name,
			"cannot read '%s': %s (the broker URL is mqtts://)",
			detail_shown(path, show, sizeof(show)), strerror(errno));
}

/* A key file of [identity] or [server]: whether it parses as a key is
 * checked when it is loaded (srup_identity_load); that it can be read at
 * all is checked here, with everything else left to fill in. */
static void check_key_file(struct config_parse *p, enum config_section s, const char *name,
			   const char *path)
{
	char show[96];

	if (!path[0] || access(path, R_OK) == 0)
		return;
	config_error_at(p, key_origin_of(p, s, name), section_name(s), name,
			"cannot read '%s': %s", detail_shown(path, show, sizeof(show)), strerror(errno));
}

/* What complete files can still get wrong: values left as the example
 * has them and files that cannot be read. Every such problem is reported,
 * one line each, so an operator sees all that is left to fill in. */
static void config_check_usable(struct config_parse *p)
{
	const struct srup_config *cfg = p->cfg;
	const char *node = p->kind == SRUP_CONFIG_OBSERVER ? "observer" : "device";
	struct srup_broker_list brokers;
	char host[128], why[160];

	p->collect = true;
	if (cfg->identity_id == 0)
		config_error_at(p, key_origin_of(p, SEC_IDENTITY, "id"), "identity", "id",
				"0 is no node's ID; set this %s's ID (srup-keygen prints it)", node);
	if (cfg->server_id == 0)
		config_error_at(p, key_origin_of(p, SEC_SERVER, "id"), "server", "id",
				"0 is no node's ID; set the ID of the C2 server this %s serves",
				node);
	check_key_file(p, SEC_IDENTITY, "private_key", cfg->identity_private_key);
	check_key_file(p, SEC_SERVER, "public_key", cfg->server_public_key);
	if (srup_broker_list_split(cfg->mqtt_broker, &brokers, why, sizeof(why)) < 0)
		brokers.count = 0; /* reported when the key was read */
	for (size_t i = 0; i < brokers.count; i++) {
		broker_host(brokers.url[i], host, sizeof(host));
		if (host_is_placeholder(host))
			config_error_at(p, key_origin_of(p, SEC_MQTT, "broker"), "mqtt", "broker",
					"'%s' is a placeholder host name; set the site's broker",
					host);
	}
	if (brokers.count && srup_broker_url_is_tls(brokers.url[0])) {
		if (!cfg->mqtt_ca_file[0])
			config_error_at(p, key_origin_of(p, SEC_MQTT, "broker"), "mqtt", "ca_file",
					"missing; broker %s uses TLS and needs a CA file",
					cfg->mqtt_broker);
		check_tls_file(p, "ca_file", cfg->mqtt_ca_file);
		check_tls_file(p, "cert_file", cfg->mqtt_cert_file);
		check_tls_file(p, "key_file", cfg->mqtt_key_file);
	}
	p->collect = false;
}

/* Required keys (set in any of the files), and what the chosen channel
 * needs. */
static void config_check_complete(struct config_parse *p)
{
	struct srup_config *cfg = p->cfg;

	for (size_t k = 0; k < KEY_COUNT && !p->failed; k++) {
		enum config_section s = keys[k].section;

		if (!keys[k].required || !section_allowed(p, s) || cfg->key_origin[k].line)
			continue;
		if (cfg->section_origin[s].line)
			config_error_at(p, cfg->section_origin[s], section_name(s), keys[k].name,
					"missing (required)");
		else if (cfg->n_files > 1)
			config_error_at(p, cfg->section_origin[s], section_name(s), keys[k].name,
					"missing (required; none of the %zu files read has a [%s] section)",
					cfg->n_files, section_name(s));
		else
			config_error_at(p, cfg->section_origin[s], section_name(s), keys[k].name,
					"missing (required; the file has no [%s] section)",
					section_name(s));
	}
	if (p->failed)
		return;

	/* Each listed channel's required key; all of them are reported. */
	for (size_t i = 0; p->kind == SRUP_CONFIG_OBSERVER && i < cfg->n_channels; i++) {
		const struct radio_channel_driver *drv = cfg->channels[i];
		struct srup_config_origin channel = key_origin_of(p, SEC_OBSERVATION, "channel");
		char where[SRUP_CONFIG_PATH_MAX + 16], list[64];
		int s = section_lookup(drv->name);

		if (!drv->required_key || drv->configured(&cfg->radio) || s < 0)
			continue;
		if (channel.file == 0)
			snprintf(where, sizeof(where), "line %u", channel.line);
		else
			snprintf(where, sizeof(where), "%s:%u", cfg->files[channel.file],
				 channel.line);
		p->collect = true;
		if (cfg->n_channels == 1)
			config_error_at(p, cfg->section_origin[s].line ? cfg->section_origin[s] : channel,
					drv->name, drv->required_key,
					"missing; channel = %s (%s) needs it", drv->name, where);
		else
			config_error_at(p, cfg->section_origin[s].line ? cfg->section_origin[s] : channel,
					drv->name, drv->required_key,
					"missing; channel = %s (%s) lists %s, which needs it",
					srup_config_channel_list(cfg, " ", list, sizeof(list)), where,
					drv->name);
		p->collect = false;
	}
	if (p->failed)
		return;

	config_check_usable(p);
}

/* One file: read whole, then fed to inih line by line. Stops at its
 * first error (p->failed). */
static void config_parse_file(struct config_parse *p, const char *file)
{
	char *text = NULL;
	size_t len = 0;
	int r;

	p->file = file;
	p->pos = 0;
	p->lineno = 0;
	p->line = NULL;
	p->line_len = 0;
	p->key_since_header = false;
	p->section[0] = '\0';
	memset(p->section_line, 0, sizeof(p->section_line));
	memset(p->key_line, 0, sizeof(p->key_line));
	if (config_read_file(p, &text, &len) < 0) {
		p->failed = true;
		return;
	}
	if (file != p->cfg->files[p->file_index])
		snprintf(p->cfg->files[p->file_index], sizeof(p->cfg->files[0]), "%s", file);
	p->cfg->n_files = p->file_index + 1;
	p->text = text;
	p->text_len = len;
	/* A UTF-8 byte order mark is not part of the first line. */
	if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0)
		p->pos = 3;
	{
		const char *nul = memchr(text, '\0', len);

		if (nul) {
			unsigned line = 1;

			for (const char *c = text; c < nul; c++)
				line += *c == '\n';
			config_error(p, line, NULL, NULL, "contains a NUL byte; not a text file");
			goto out;
		}
	}

	r = ini_parse_stream(config_reader, p, config_handler, p);
	if (r < 0 && !p->failed) {
		snprintf(p->err, p->err_len, "%s: cannot parse: out of memory", p->file);
		p->failed = true;
		goto out;
	}
	/* inih's error line is the first line it found wrong, its own syntax
	 * errors included; ours are the same or earlier when we have one. */
	if (r > 0 && (!p->failed || (unsigned)r < p->err_line)) {
		p->failed = false;
		report_syntax_error(p, (unsigned)r);
	}
out:
	if (p->file_index == 0)
		p->main_last_line = p->lineno;
	free(text);
	p->text = NULL;
	p->text_len = 0;
}

static int compare_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The drop-ins of the main file: path.d/\*.conf, hidden files skipped, in
 * byte order. A missing directory means none; any other failure to list
 * it is an error naming it. Returns their number, or -1. */
static int config_list_dropins(struct config_parse *p, const char *path,
			       char names[][SRUP_CONFIG_PATH_MAX], size_t max)
{
	char dir_path[SRUP_CONFIG_PATH_MAX];
	char *sorted[SRUP_CONFIG_FILES_MAX];
	char found[SRUP_CONFIG_FILES_MAX][SRUP_CONFIG_PATH_MAX];
	struct dirent *e;
	size_t n = 0;
	DIR *dir;

	if ((size_t)snprintf(dir_path, sizeof(dir_path), "%s.d", path) >= sizeof(dir_path)) {
		snprintf(p->err, p->err_len, "%s.d: path too long", path);
		return -1;
	}
	dir = opendir(dir_path);
	if (!dir) {
		if (errno == ENOENT)
			return 0;
		snprintf(p->err, p->err_len, "%s: cannot read the drop-in directory: %s", dir_path,
			 strerror(errno));
		return -1;
	}
	for (errno = 0; (e = readdir(dir)) != NULL; errno = 0) {
		size_t len = strlen(e->d_name);

		if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".conf") != 0)
			continue;
		if (n == max || n == SRUP_CONFIG_FILES_MAX) {
			snprintf(p->err, p->err_len, "%s: more than %zu drop-ins", dir_path, max);
			closedir(dir);
			return -1;
		}
		if ((size_t)snprintf(found[n], sizeof(found[n]), "%s/%s", dir_path, e->d_name) >=
		    sizeof(found[n])) {
			snprintf(p->err, p->err_len, "%s/%s: path too long (at most %zu bytes)",
				 dir_path, e->d_name, sizeof(found[n]) - 1);
			closedir(dir);
			return -1;
		}
		sorted[n] = found[n];
		n++;
	}
	if (errno) {
		snprintf(p->err, p->err_len, "%s: cannot read the drop-in directory: %s", dir_path,
			 strerror(errno));
		closedir(dir);
		return -1;
	}
	closedir(dir);
	/* Byte order of the whole path is that of the names: one directory. */
	qsort(sorted, n, sizeof(sorted[0]), compare_names);
	for (size_t i = 0; i < n; i++)
		memcpy(names[i], sorted[i], sizeof(names[i]));
	return (int)n;
}

int srup_config_load(const char *path, enum srup_config_kind kind, struct srup_config *cfg,
		     char *err, size_t err_len)
{
	char fallback[8];
	struct config_parse p = {
		.file = path ? path : "(null)",
		.kind = kind,
		.cfg = cfg,
		.err = err && err_len ? err : fallback,
		.err_len = err && err_len ? err_len : sizeof(fallback),
	};
	int n_dropins;

	p.err[0] = '\0';
	if (!path || !cfg || (kind != SRUP_CONFIG_OBSERVER && kind != SRUP_CONFIG_DEVICE)) {
		snprintf(p.err, p.err_len, "%s: invalid arguments", p.file);
		return -1;
	}
	memset(cfg, 0, sizeof(*cfg));
	if (config_key_count() && key_table.overflow) {
		snprintf(p.err, p.err_len, "%s: cannot parse: the channels' keys do not fit "
			 "SRUP_CONFIG_KEYS_MAX (%u)", path, SRUP_CONFIG_KEYS_MAX);
		return -1;
	}
	if (strlen(path) >= sizeof(cfg->path)) {
		snprintf(p.err, p.err_len, "%s: path too long (at most %zu bytes)", path,
			 sizeof(cfg->path) - 1);
		return -1;
	}
	snprintf(cfg->path, sizeof(cfg->path), "%s", path);
	config_defaults(cfg, kind);

	config_parse_file(&p, path);
	if (p.failed)
		goto out;
	n_dropins = config_list_dropins(&p, path, cfg->files + 1, SRUP_CONFIG_FILES_MAX - 1);
	if (n_dropins < 0) {
		p.failed = true;
		goto out;
	}
	for (int i = 0; i < n_dropins && !p.failed; i++) {
		p.file_index = (unsigned)i + 1;
		config_parse_file(&p, cfg->files[i + 1]);
	}
	if (!p.failed)
		config_check_complete(&p);
out:
	cfg->radio.ble.observer_id = cfg->identity_id;
	return p.failed ? -1 : 0;
}

int srup_config_load_values(const char *origin, enum srup_config_kind kind,
			    const struct srup_config_value *values, size_t n,
			    struct srup_config *cfg, char *err, size_t err_len)
{
	char fallback[8];
	struct config_parse p = {
		.file = origin ? origin : "(settings)",
		.kind = kind,
		.cfg = cfg,
		.err = err && err_len ? err : fallback,
		.err_len = err && err_len ? err_len : sizeof(fallback),
	};

	p.err[0] = '\0';
	if (!cfg || (!values && n) || (kind != SRUP_CONFIG_OBSERVER && kind != SRUP_CONFIG_DEVICE)) {
		snprintf(p.err, p.err_len, "%s: invalid arguments", p.file);
		return -1;
	}
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->path, sizeof(cfg->path), "%s", p.file);
	snprintf(cfg->files[0], sizeof(cfg->files[0]), "%s", p.file);
	cfg->n_files = 1;
	config_defaults(cfg, kind);
	/* Each value is a "line" of its own: errors name its index + 1. */
	for (size_t i = 0; i < n && !p.failed; i++) {
		int s = section_lookup(values[i].section);

		p.lineno = (unsigned)i + 1;
		if (s >= 0 && !cfg->section_origin[s].line)
			cfg->section_origin[s] = (struct srup_config_origin){0, p.lineno};
		config_handler(&p, values[i].section, values[i].key, values[i].value);
	}
	if (!p.failed)
		config_check_complete(&p);
	cfg->radio.ble.observer_id = cfg->identity_id;
	return p.failed ? -1 : 0;
}

const char *srup_config_where(const struct srup_config *cfg, const char *section,
			      const char *key, char *buf, size_t len)
{
	struct srup_config_origin at = {0, 0};
	int s;

	if (!buf || !len)
		return "";
	if (!cfg) {
		snprintf(buf, len, "%s", "");
		return buf;
	}
	s = section && key ? section_lookup(section) : -1;
	if (s == SEC_ACTIONS || s == SEC_DATA) {
		const struct srup_config_hook *t = s == SEC_ACTIONS ? cfg->actions : cfg->data;
		size_t n = s == SEC_ACTIONS ? cfg->n_actions : cfg->n_data;
		unsigned long long id = 0;

		for (size_t i = 0; i < n; i++)
			if (s == SEC_ACTIONS ? parse_uint(key, &id) == 0 && t[i].action_id == id
					     : strcmp(t[i].id, key) == 0)
				at = t[i].origin;
	} else if (s >= 0) {
		for (size_t k = 0; k < KEY_COUNT; k++)
			if (keys[k].section == (enum config_section)s &&
			    strcmp(keys[k].name, key) == 0)
				at = cfg->key_origin[k];
	}
	if (at.line && at.file < cfg->n_files)
		snprintf(buf, len, "%s:%u", cfg->files[at.file], at.line);
	else
		snprintf(buf, len, "%s", cfg->path);
	return buf;
}

/* ---- The listed channels ------------------------------------------------------- */

bool srup_config_lists(const struct srup_config *cfg, const struct radio_channel_driver *channel)
{
	for (size_t i = 0; cfg && i < cfg->n_channels; i++)
		if (cfg->channels[i] == channel)
			return true;
	return false;
}

const char *srup_config_channel_list(const struct srup_config *cfg, const char *sep, char *buf,
				     size_t len)
{
	size_t used = 0;

	if (!buf || !len)
		return "";
	buf[0] = '\0';
	for (size_t i = 0; cfg && i < cfg->n_channels; i++) {
		int n = snprintf(buf + used, len - used, "%s%s", i ? sep : "",
				 cfg->channels[i]->name);

		if (n < 0 || (size_t)n >= len - used)
			break;
		used += (size_t)n;
	}
	return buf;
}

/* ---- What this machine lacks for a channel ---------------------------------------- */

int srup_config_check_channels(const struct srup_config *cfg, enum srup_config_kind kind,
			       char *out, size_t out_len)
{
	char fallback[8], why[384];
	struct config_parse p = {
		.kind = kind,
		.cfg = (struct srup_config *)cfg, /* read only: for its origins */
		.err = out && out_len ? out : fallback,
		.err_len = out && out_len ? out_len : sizeof(fallback),
		.collect = true,
		.main_last_line = 1,
	};
	int problems = 0;

	p.err[0] = '\0';
	if (!cfg)
		return 0;
	for (size_t i = 0; radio_channel_drivers[i]; i++) {
		const struct radio_channel_driver *drv = radio_channel_drivers[i];
		const char *key = NULL;
		int s = section_lookup(drv->name);
		bool used;

		if (kind == SRUP_CONFIG_OBSERVER)
			used = srup_config_lists(cfg, drv);
		else /* a device's channel is chosen per join: the sections it set */
			used = s >= 0 && cfg->section_origin[s].line != 0 &&
			       drv->configured(&cfg->radio);
		if (!used || !drv->machine_problem ||
		    !drv->machine_problem(&cfg->radio, why, sizeof(why), &key))
			continue;
		if (key)
			config_error_at(&p, key_origin_of(&p, (enum config_section)s, key), drv->name,
					key, "%s; the %s channel cannot work on this machine", why,
					drv->name);
		else if (kind == SRUP_CONFIG_OBSERVER)
			config_error_at(&p, key_origin_of(&p, SEC_OBSERVATION, "channel"),
					"observation", "channel",
					"%s cannot work on this machine: %s", drv->name, why);
		else
			config_error_at(&p, cfg->section_origin[s], drv->name, NULL,
					"join --channel %s cannot work on this machine: %s",
					drv->name, why);
		problems++;
	}
	return problems;
}

/* ---- The key table, for the reload classification ------------------------ */

size_t srup_config_key_count(void)
{
	return KEY_COUNT;
}

int srup_config_key_at(size_t i, struct srup_config_key *out)
{
	if (i >= KEY_COUNT || !out)
		return -1;
	out->section = section_name(keys[i].section);
	out->name = keys[i].name;
	out->offset = keys[i].offset;
	out->size = keys[i].size; /* CFG_FIELD: the whole field */
	return 0;
}
