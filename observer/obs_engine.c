/* The observation engine: OBSERVATION-CHANNEL.md section 2 as a pure state
 * machine (no I/O, no clock, no logging).
 *
 * Data structures, chosen so that 1,000+ pending observations stay cheap:
 * - a hash table (open addressing, linear probing, backward-shift deletion)
 *   from joining device ID to its pending observation: O(1) lookup for
 *   every request and frame;
 * - a binary min-heap of the same observations ordered by (deadline,
 *   arrival): obs_engine_next_deadline is O(1) and ending one observation
 *   is O(log n), so the caller may keep one timer at the next deadline.
 *
 * Every input first applies the deadlines due at its "now", exactly as
 * obs_engine_tick would: a frame arriving after its observation's deadline
 * (before the caller's timer fired) is not compared, and a request after a
 * deadline finds that observation expired (0x6E/0x6F by its own rule), not
 * superseded.
 *
 * Requests and frames reserve every event slot and every allocation they
 * may need before changing anything, so "no memory" leaves the engine as it
 * was. */
#include "obs_engine.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#define OBS_STATUS_VALID 0x60
#define OBS_STATUS_INVALID 0x6E
#define OBS_STATUS_FAIL 0x6F

#define OBS_TABLE_MIN_SLOTS 16u

/* A wrong value seen, kept only to tell a repeated value from a new one. */
struct obs_wrong_value {
	size_t len;
	uint8_t bytes[];
};

struct obs_pending {
	uint64_t device_id;
	uint64_t started_ms;
	uint64_t deadline_ms;
	uint64_t arrival;   /* orders equal deadlines: earlier request first */
	size_t heap_index;
	size_t value_len;
	uint8_t value[OBS_VALUE_MAX]; /* the secret */
	size_t token_len;
	uint8_t token[OBS_TOKEN_MAX];
	struct obs_wrong_value **wrong; /* distinct wrong values seen */
	unsigned n_wrong, wrong_cap;
	unsigned max_attempts; /* as configured when it started */
};

struct obs_engine {
	struct obs_engine_config cfg;
	/* Hash table by device ID; n_slots is a power of two, at most half
	 * full. */
	struct obs_pending **slots;
	size_t n_slots;
	size_t count;
	/* Min-heap by (deadline, arrival). */
	struct obs_pending **heap;
	size_t heap_cap;
	uint64_t next_arrival;
};

const char *obs_outcome_name(enum obs_outcome outcome)
{
	switch (outcome) {
	case OBS_OUTCOME_VALID: return "valid";
	case OBS_OUTCOME_INVALID: return "invalid";
	case OBS_OUTCOME_EXPIRED_INVALID: return "expired-invalid";
	case OBS_OUTCOME_EXPIRED: return "expired";
	case OBS_OUTCOME_SUPERSEDED: return "superseded";
	case OBS_OUTCOME_OVERFLOW: return "overflow";
	case OBS_OUTCOME_RADIO_LOST: return "radio-lost";
	case OBS_OUTCOME_SHUTDOWN: return "shutdown";
	case OBS_OUTCOME_CANCELLED: return "cancelled";
	}
	return "unknown";
}

/* ---- Events ------------------------------------------------------------ */

void obs_events_clear(struct obs_events *evs)
{
	if (!evs)
		return;
	if (evs->ev && evs->len)
		OPENSSL_cleanse(evs->ev, evs->len * sizeof(*evs->ev));
	evs->len = 0;
}

void obs_events_free(struct obs_events *evs)
{
	if (!evs)
		return;
	obs_events_clear(evs);
	free(evs->ev);
	evs->ev = NULL;
	evs->cap = 0;
}

/* Room for `more` events after the current ones. The old array is wiped
 * before it is freed: it holds tokens. */
static int events_reserve(struct obs_events *evs, size_t more)
{
	struct obs_event *grown;
	size_t want, cap;

	if (more > SIZE_MAX / sizeof(*evs->ev) - evs->len)
		return -1;
	want = evs->len + more;
	if (want <= evs->cap)
		return 0;
	cap = evs->cap ? evs->cap : 8;
	while (cap < want)
		cap = cap > SIZE_MAX / 2 / sizeof(*evs->ev) ? want : cap * 2;
	grown = calloc(cap, sizeof(*grown));
	if (!grown)
		return -1;
	if (evs->len) {
		memcpy(grown, evs->ev, evs->len * sizeof(*grown));
		OPENSSL_cleanse(evs->ev, evs->len * sizeof(*grown));
	}
	free(evs->ev);
	evs->ev = grown;
	evs->cap = cap;
	return 0;
}

/* Callers reserve first; appending never fails. */
static struct obs_event *events_append(struct obs_events *evs, enum obs_event_kind kind)
{
	struct obs_event *ev = &evs->ev[evs->len++];

	memset(ev, 0, sizeof(*ev));
	ev->kind = kind;
	return ev;
}

static uint64_t elapsed_ms(uint64_t from, uint64_t now)
{
	return now > from ? now - from : 0;
}

static void emit_respond(struct obs_events *out, uint64_t device_id, const uint8_t *token,
			 size_t token_len, uint8_t status, enum obs_outcome outcome,
			 unsigned attempts, uint64_t duration_ms)
{
	struct obs_event *ev = events_append(out, OBS_EVENT_RESPOND);

	ev->status = status;
	ev->outcome = outcome;
	ev->device_id = device_id;
	if (token_len)
		memcpy(ev->token, token, token_len);
	ev->token_len = token_len;
	ev->attempts = attempts;
	ev->duration_ms = duration_ms;
	ev->channel = OBS_CHANNEL_NONE;
}

static void emit_outcome(struct obs_events *out, const struct obs_pending *p, uint8_t status,
			 enum obs_outcome outcome, uint64_t now_ms)
{
	emit_respond(out, p->device_id, p->token, p->token_len, status, outcome, p->n_wrong,
		     elapsed_ms(p->started_ms, now_ms));
}

/* ---- Pending observations ---------------------------------------------- */

static void pending_free(struct obs_pending *p)
{
	if (!p)
		return;
	for (unsigned i = 0; i < p->n_wrong; i++) {
		OPENSSL_cleanse(p->wrong[i], sizeof(*p->wrong[i]) + p->wrong[i]->len);
		free(p->wrong[i]);
	}
	free(p->wrong);
	OPENSSL_cleanse(p, sizeof(*p));
	free(p);
}

static bool values_equal(const uint8_t *a, size_t a_len, const uint8_t *b, size_t b_len)
{
	size_t n = a_len < b_len ? a_len : b_len;
	/* Always compare the common bytes, so that timing does not tell
	 * whether the lengths matched. */
	int diff = CRYPTO_memcmp(a, b, n);

	return (a_len == b_len) & (diff == 0);
}

static bool pending_seen_wrong(const struct obs_pending *p, const uint8_t *value, size_t len)
{
	for (unsigned i = 0; i < p->n_wrong; i++)
		if (values_equal(p->wrong[i]->bytes, p->wrong[i]->len, value, len))
			return true;
	return false;
}

static int pending_remember_wrong(struct obs_pending *p, const uint8_t *value, size_t len)
{
	struct obs_wrong_value *w;

	if (p->n_wrong == p->wrong_cap) {
		unsigned cap = p->wrong_cap ? p->wrong_cap * 2 : 2;
		struct obs_wrong_value **grown = realloc(p->wrong, cap * sizeof(*grown));

		if (!grown)
			return -1;
		p->wrong = grown;
		p->wrong_cap = cap;
	}
	w = malloc(sizeof(*w) + len);
	if (!w)
		return -1;
	w->len = len;
	memcpy(w->bytes, value, len);
	p->wrong[p->n_wrong++] = w;
	return 0;
}

/* ---- Hash table by device ID -------------------------------------------- */

static size_t id_hash(uint64_t id)
{
	/* splitmix64 finaliser: device IDs may be sequential. */
	id ^= id >> 30;
	id *= 0xbf58476d1ce4e5b9ULL;
	id ^= id >> 27;
	id *= 0x94d049bb133111ebULL;
	id ^= id >> 31;
	return (size_t)id;
}

static size_t table_find_slot(const struct obs_engine *e, uint64_t device_id)
{
	size_t mask = e->n_slots - 1;
	size_t i = id_hash(device_id) & mask;

	while (e->slots[i] && e->slots[i]->device_id != device_id)
		i = (i + 1) & mask;
	return i;
}

static struct obs_pending *table_lookup(const struct obs_engine *e, uint64_t device_id)
{
	return e->slots[table_find_slot(e, device_id)];
}

/* Room for `want` entries at most half full. Nothing changes on failure. */
static int table_reserve(struct obs_engine *e, size_t want)
{
	struct obs_pending **old = e->slots, **grown;
	size_t old_n = e->n_slots, n = e->n_slots;

	if (want <= n / 2)
		return 0;
	while (want > n / 2) {
		if (n > SIZE_MAX / 2 / sizeof(*grown))
			return -1;
		n *= 2;
	}
	grown = calloc(n, sizeof(*grown));
	if (!grown)
		return -1;
	e->slots = grown;
	e->n_slots = n;
	for (size_t i = 0; i < old_n; i++)
		if (old[i])
			e->slots[table_find_slot(e, old[i]->device_id)] = old[i];
	free(old);
	return 0;
}

static void table_insert(struct obs_engine *e, struct obs_pending *p)
{
	e->slots[table_find_slot(e, p->device_id)] = p;
}

static void table_remove(struct obs_engine *e, uint64_t device_id)
{
	size_t mask = e->n_slots - 1;
	size_t hole = table_find_slot(e, device_id), j = hole;

	if (!e->slots[hole])
		return;
	e->slots[hole] = NULL;
	/* Backward shift: pull later entries of the probe run into the hole
	 * when their home slot does not lie between the hole and them. */
	for (;;) {
		size_t home;

		j = (j + 1) & mask;
		if (!e->slots[j])
			break;
		home = id_hash(e->slots[j]->device_id) & mask;
		if (((j - home) & mask) >= ((j - hole) & mask)) {
			e->slots[hole] = e->slots[j];
			e->slots[j] = NULL;
			hole = j;
		}
	}
}

/* ---- Min-heap by deadline ------------------------------------------------ */

static bool heap_before(const struct obs_pending *a, const struct obs_pending *b)
{
	if (a->deadline_ms != b->deadline_ms)
		return a->deadline_ms < b->deadline_ms;
	return a->arrival < b->arrival;
}

static void heap_set(struct obs_engine *e, size_t i, struct obs_pending *p)
{
	e->heap[i] = p;
	p->heap_index = i;
}

static void heap_sift_up(struct obs_engine *e, size_t i)
{
	struct obs_pending *p = e->heap[i];

	while (i > 0) {
		size_t parent = (i - 1) / 2;

		if (!heap_before(p, e->heap[parent]))
			break;
		heap_set(e, i, e->heap[parent]);
		i = parent;
	}
	heap_set(e, i, p);
}

static void heap_sift_down(struct obs_engine *e, size_t i)
{
	struct obs_pending *p = e->heap[i];
	size_t n = e->count;

	for (;;) {
		size_t child = 2 * i + 1;

		if (child >= n)
			break;
		if (child + 1 < n && heap_before(e->heap[child + 1], e->heap[child]))
			child++;
		if (!heap_before(e->heap[child], p))
			break;
		heap_set(e, i, e->heap[child]);
		i = child;
	}
	heap_set(e, i, p);
}

static int heap_reserve(struct obs_engine *e, size_t want)
{
	struct obs_pending **grown;
	size_t cap = e->heap_cap ? e->heap_cap : OBS_TABLE_MIN_SLOTS;

	if (want <= e->heap_cap)
		return 0;
	while (cap < want) {
		if (cap > SIZE_MAX / 2 / sizeof(*grown))
			return -1;
		cap *= 2;
	}
	grown = realloc(e->heap, cap * sizeof(*grown));
	if (!grown)
		return -1;
	e->heap = grown;
	e->heap_cap = cap;
	return 0;
}

/* Number of observations whose deadline is <= now: visits only those and
 * their children. */
static size_t heap_count_due(const struct obs_engine *e, size_t i, uint64_t now_ms)
{
	if (i >= e->count || e->heap[i]->deadline_ms > now_ms)
		return 0;
	return 1 + heap_count_due(e, 2 * i + 1, now_ms) + heap_count_due(e, 2 * i + 2, now_ms);
}

/* ---- Adding and retiring observations ------------------------------------ */

/* Capacity for one more was reserved. */
static void engine_add(struct obs_engine *e, struct obs_pending *p)
{
	p->arrival = e->next_arrival++;
	table_insert(e, p);
	e->heap[e->count] = p;
	p->heap_index = e->count;
	e->count++;
	heap_sift_up(e, p->heap_index);
}

/* Removes p from the table and the heap, wipes and frees it. */
static void engine_retire(struct obs_engine *e, struct obs_pending *p)
{
	size_t i = p->heap_index;

	table_remove(e, p->device_id);
	e->count--;
	if (i != e->count) {
		/* The last entry fills the gap and moves whichever way it must. */
		struct obs_pending *moved = e->heap[e->count];

		heap_set(e, i, moved);
		heap_sift_down(e, i);
		heap_sift_up(e, moved->heap_index);
	}
	e->heap[e->count] = NULL;
	pending_free(p);
}

static void emit_listen_stop_if_idle(struct obs_engine *e, struct obs_events *out)
{
	if (e->count == 0)
		events_append(out, OBS_EVENT_LISTEN_STOP);
}

/* Ends every observation whose deadline is <= now: 0x6E if a wrong value
 * was seen, else 0x6F. Each ending needs two event slots (its RESPOND and
 * possibly LISTEN_STOP); if the list cannot grow, the rest stay due and a
 * later call ends them. */
static void engine_expire(struct obs_engine *e, uint64_t now_ms, struct obs_events *out)
{
	while (e->count && e->heap[0]->deadline_ms <= now_ms) {
		struct obs_pending *p = e->heap[0];

		if (events_reserve(out, 2) < 0)
			return;
		if (p->n_wrong)
			emit_outcome(out, p, OBS_STATUS_INVALID, OBS_OUTCOME_EXPIRED_INVALID, now_ms);
		else
			emit_outcome(out, p, OBS_STATUS_FAIL, OBS_OUTCOME_EXPIRED, now_ms);
		engine_retire(e, p);
		emit_listen_stop_if_idle(e, out);
	}
}

/* ---- The engine ---------------------------------------------------------- */

struct obs_engine *obs_engine_new(const struct obs_engine_config *cfg)
{
	struct obs_engine *e;

	if (!cfg || cfg->window_seconds == 0 || cfg->max_attempts == 0 || cfg->max_pending == 0)
		return NULL;
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->cfg = *cfg;
	e->n_slots = OBS_TABLE_MIN_SLOTS;
	e->slots = calloc(e->n_slots, sizeof(*e->slots));
	if (!e->slots) {
		free(e);
		return NULL;
	}
	return e;
}

int obs_engine_set_config(struct obs_engine *e, const struct obs_engine_config *cfg)
{
	if (!e || !cfg || cfg->window_seconds == 0 || cfg->max_attempts == 0 ||
	    cfg->max_pending == 0)
		return -1;
	/* Pending observations keep the deadline and the attempts they
	 * started with; a lower max_pending only refuses new ones. */
	e->cfg = *cfg;
	return 0;
}

void obs_engine_free(struct obs_engine *e)
{
	if (!e)
		return;
	for (size_t i = 0; i < e->count; i++)
		pending_free(e->heap[i]);
	free(e->heap);
	free(e->slots);
	free(e);
}

int obs_engine_request(struct obs_engine *e, uint64_t device_id, const uint8_t *value,
		       size_t value_len, const uint8_t *token, size_t token_len, uint64_t now_ms,
		       struct obs_events *out)
{
	struct obs_pending *p, *old;
	uint64_t window_ms;
	size_t due;

	if (!e || !out || !value || value_len == 0 || value_len > OBS_VALUE_MAX ||
	    token_len > OBS_TOKEN_MAX || (token_len && !token))
		return -1;

	/* Reserve everything first: expiries (RESPOND each, one LISTEN_STOP),
	 * the superseded or overflow RESPOND, LISTEN_START. */
	due = heap_count_due(e, 0, now_ms);
	if (events_reserve(out, due + 3) < 0)
		return -1;
	if (table_reserve(e, e->count + 1) < 0 || heap_reserve(e, e->count + 1) < 0)
		return -1;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -1;
	p->device_id = device_id;
	p->started_ms = now_ms;
	window_ms = (uint64_t)e->cfg.window_seconds * 1000u;
	p->deadline_ms = now_ms > UINT64_MAX - window_ms ? UINT64_MAX : now_ms + window_ms;
	p->max_attempts = e->cfg.max_attempts;
	memcpy(p->value, value, value_len);
	p->value_len = value_len;
	if (token_len)
		memcpy(p->token, token, token_len);
	p->token_len = token_len;

	engine_expire(e, now_ms, out);

	old = table_lookup(e, device_id);
	if (old) {
		/* The old one ends and the new one takes its place: the
		 * pending count does not change, so no listen event. */
		emit_outcome(out, old, OBS_STATUS_FAIL, OBS_OUTCOME_SUPERSEDED, now_ms);
		engine_retire(e, old);
		engine_add(e, p);
		return 0;
	}
	if (e->count >= e->cfg.max_pending) {
		emit_respond(out, device_id, token, token_len, OBS_STATUS_FAIL, OBS_OUTCOME_OVERFLOW,
			     0, 0);
		pending_free(p);
		return 0;
	}
	engine_add(e, p);
	if (e->count == 1)
		events_append(out, OBS_EVENT_LISTEN_START);
	return 0;
}

uint8_t obs_engine_frame(struct obs_engine *e, int channel, uint64_t device_id,
			 const uint8_t *value, size_t value_len, uint64_t now_ms,
			 struct obs_events *out)
{
	struct obs_pending *p;
	size_t due;

	if (!e || !out || !value || value_len == 0 || value_len > OBS_VALUE_MAX)
		return 0x00;
	due = heap_count_due(e, 0, now_ms);
	if (events_reserve(out, due + 2) < 0)
		return 0x00;
	engine_expire(e, now_ms, out);

	p = table_lookup(e, device_id);
	if (!p)
		return 0x00;

	if (values_equal(value, value_len, p->value, p->value_len)) {
		emit_outcome(out, p, OBS_STATUS_VALID, OBS_OUTCOME_VALID, now_ms);
		out->ev[out->len - 1].channel = channel;
		engine_retire(e, p);
		emit_listen_stop_if_idle(e, out);
		return OBS_STATUS_VALID;
	}

	/* A value already seen (a tag left on the reader, A,B,A) is no new
	 * attempt. */
	if (pending_seen_wrong(p, value, value_len))
		return OBS_STATUS_INVALID;
	if (p->n_wrong + 1 >= p->max_attempts) {
		/* The last wrong value ends it: no need to remember it. */
		emit_respond(out, p->device_id, p->token, p->token_len, OBS_STATUS_INVALID,
			     OBS_OUTCOME_INVALID, p->n_wrong + 1, elapsed_ms(p->started_ms, now_ms));
		out->ev[out->len - 1].channel = channel;
		engine_retire(e, p);
		emit_listen_stop_if_idle(e, out);
		return OBS_STATUS_INVALID;
	}
	if (pending_remember_wrong(p, value, value_len) < 0)
		return 0x00;
	return OBS_STATUS_INVALID;
}

void obs_engine_tick(struct obs_engine *e, uint64_t now_ms, struct obs_events *out)
{
	if (!e || !out)
		return;
	events_reserve(out, heap_count_due(e, 0, now_ms) + 1);
	engine_expire(e, now_ms, out);
}

void obs_engine_fail_all(struct obs_engine *e, enum obs_outcome why, uint64_t now_ms,
			 struct obs_events *out)
{
	if (!e || !out)
		return;
	/* Deadlines already passed keep their own outcome. */
	obs_engine_tick(e, now_ms, out);
	events_reserve(out, e->count + 1);
	while (e->count) {
		struct obs_pending *p = e->heap[0];

		if (events_reserve(out, 2) < 0)
			return;
		emit_outcome(out, p, OBS_STATUS_FAIL, why, now_ms);
		engine_retire(e, p);
		emit_listen_stop_if_idle(e, out);
	}
}

int obs_engine_cancel(struct obs_engine *e, uint64_t device_id, uint64_t now_ms,
		      struct obs_events *out)
{
	struct obs_pending *p;

	if (!e || !out)
		return -1;
	if (events_reserve(out, heap_count_due(e, 0, now_ms) + 2) < 0)
		return -1;
	engine_expire(e, now_ms, out);
	p = table_lookup(e, device_id);
	if (!p)
		return 0;
	emit_outcome(out, p, OBS_STATUS_FAIL, OBS_OUTCOME_CANCELLED, now_ms);
	engine_retire(e, p);
	emit_listen_stop_if_idle(e, out);
	return 1;
}

static int info_by_deadline(const void *a, const void *b)
{
	const struct obs_pending_info *x = a, *y = b;

	if (x->deadline_ms != y->deadline_ms)
		return x->deadline_ms < y->deadline_ms ? -1 : 1;
	return x->started_ms < y->started_ms ? -1 : x->started_ms > y->started_ms;
}

size_t obs_engine_list(const struct obs_engine *e, struct obs_pending_info *out, size_t max)
{
	size_t n = 0;

	if (!e || !out)
		return 0;
	/* The heap's array is no sorted order, and the first max of it are
	 * not the earliest max: take every entry whose deadline beats the
	 * latest kept (max is small next to the count in practice). */
	for (size_t i = 0; i < e->count; i++) {
		const struct obs_pending *p = e->heap[i];
		struct obs_pending_info info = {p->device_id, p->started_ms, p->deadline_ms,
						p->n_wrong};

		if (n < max) {
			out[n++] = info;
			if (n == max)
				qsort(out, n, sizeof(*out), info_by_deadline);
			continue;
		}
		if (max == 0 || info_by_deadline(&info, &out[max - 1]) >= 0)
			continue;
		/* Insert in order, dropping the latest. */
		size_t j = max - 1;
		while (j > 0 && info_by_deadline(&info, &out[j - 1]) < 0) {
			out[j] = out[j - 1];
			j--;
		}
		out[j] = info;
	}
	if (n < max)
		qsort(out, n, sizeof(*out), info_by_deadline);
	return n;
}

uint64_t obs_engine_next_deadline(const struct obs_engine *e)
{
	return e && e->count ? e->heap[0]->deadline_ms : UINT64_MAX;
}

size_t obs_engine_pending(const struct obs_engine *e)
{
	return e ? e->count : 0;
}
