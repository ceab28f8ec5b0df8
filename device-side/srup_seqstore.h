/* The sequence store: per peer, the last sequence ID sent to it and the last
 * one accepted from it (JOIN-FLOW.md sections 3 and 4).
 *
 * pySRUP shares one counter per pair of peers, so the next outgoing ID is
 * max(last sent, last accepted) + 1, and an incoming ID is fresh only if it
 * is greater than the last accepted from that sender.
 *
 * Outgoing IDs are handed out from a persisted reservation: when the next
 * ID toward a peer exceeds its reserved bound, the bound is raised to that ID
 * + SRUP_SEQSTORE_SEND_RESERVATION - 1 and persisted before the ID is
 * returned; IDs within the bound persist nothing. A restart continues above
 * the bound (every ID up to it may have been used), so no ID is ever sent
 * twice; the IDs skipped are harmless gaps (peers only need them to rise).
 * Accepted IDs are persisted before srup_seqstore_accept returns, or staged
 * in memory and persisted together by one srup_seqstore_commit (group
 * commit: a receiver that drains several messages at once checks each
 * against the staged values, commits once, and only then acts on them).
 *
 * On disk, "<dir>/sequences" holds two slots of the same size (a multiple
 * of 4096 bytes), each a complete copy of the store with a generation
 * number and a SHA-256. A persist writes the whole store into the slot that
 * does not hold the newest generation, with the next generation, in place
 * (pwrite), and makes it durable with one fdatasync: no rename, no
 * directory fsync. A crash during that write can damage only the slot being
 * written; the other one still holds the last completed persist. Loading
 * takes the valid slot with the higher generation; if neither is valid it
 * fails naming the file and what is wrong with each slot, never a silent
 * reset (a reset would reopen replays). Limit: damage to the newest slot
 * after its write completed (the medium failing) cannot be told from a
 * torn write and falls back to the previous persist (logged).
 *
 * The file is created, grown (more peers than a slot holds: slots sized
 * for twice as many) and rewritten after a failed slot write (the kernel
 * may drop pages whose write failed and report that once) as a new file:
 * "<dir>/sequences.tmp" written, fsync'd, renamed over "<dir>/sequences",
 * directory fsync'd. Its slots then hold generations 1 and 2.
 *
 * One process owns a state directory: the store holds an flock on
 * "<dir>/sequences.lock" for its lifetime.
 *
 * Format 3, one slot (integers unsigned, little-endian):
 *   offset 0   "srup-sequences 3" (16 bytes)
 *          16  u64 slot size in bytes (half the file)
 *          24  u64 generation (at least 1; the two slots differ)
 *          32  u64 number of peers
 *          40  per peer, peers strictly increasing: u64 peer, u64 reserved
 *              bound of IDs sent, u64 last accepted
 *              zero bytes up to the last 32
 *   size - 32  SHA-256 of every byte of the slot before it
 *
 * Formats 1 and 2 are the text files of earlier releases, read strictly
 * (an error names file and line) and migrated: rewritten as format 3
 * before srup_seqstore_new returns. Lines, peers strictly increasing, each
 * number 16 lowercase hex digits:
 *   srup-sequences 2
 *   <peer> <reserved bound of IDs sent> <last_accepted>
 *   ...
 *   end <number of peer lines, decimal> <sha256 of every byte above, hex>
 * Format 1 ("srup-sequences 1") has the last ID sent in the middle column,
 * taken as the reserved bound (exactly the IDs that were used). Any other
 * header is refused.
 *
 * Not thread-safe: one owner thread. */
#ifndef SRUP_SEQSTORE_H
#define SRUP_SEQSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SRUP_SEQSTORE_FILE "sequences"
#define SRUP_SEQSTORE_TMP_FILE "sequences.tmp"
#define SRUP_SEQSTORE_LOCK_FILE "sequences.lock"
/* How many outgoing IDs one persist reserves per peer. */
#define SRUP_SEQSTORE_SEND_RESERVATION 256u
/* Default bound on the number of peers kept. Senders need a known key
 * before they reach the store, so this is defence in depth. */
#define SRUP_SEQSTORE_DEFAULT_MAX_PEERS 100000u

enum srup_seq_err {
	SRUP_SEQ_OK = 0,
	SRUP_SEQ_E_NOMEM,
	SRUP_SEQ_E_ARG,
	SRUP_SEQ_E_IO,         /* creating, reading or writing a file failed (errno in detail) */
	SRUP_SEQ_E_CORRUPT,    /* the sequence file does not parse (file and line in detail) */
	SRUP_SEQ_E_LOCKED,     /* another process holds the state directory */
	SRUP_SEQ_E_FULL,       /* a new peer would exceed max_peers */
	SRUP_SEQ_E_EXHAUSTED,  /* the counter for this peer is at UINT64_MAX */
	SRUP_SEQ_E_REPLAY,     /* sequence ID not greater than the last accepted */
	SRUP_SEQ_E__COUNT
};

const char *srup_seqstore_strerror(enum srup_seq_err err);

struct srup_seqstore;

/* Open (creating dir with mode 0700 if missing) and load the store.
 * max_peers 0 means SRUP_SEQSTORE_DEFAULT_MAX_PEERS (at most 2^26). On failure, detail
 * names the file and what was wrong. */
enum srup_seq_err srup_seqstore_new(const char *dir, size_t max_peers, struct srup_seqstore **out,
				    char *detail, size_t detail_len);
/* Releases the lock. NULL is allowed. */
void srup_seqstore_free(struct srup_seqstore *store);

/* 0 for a peer never seen. After a restart, last sent is the reserved
 * bound read from the file (the highest ID that may have been sent). */
uint64_t srup_seqstore_last_sent(const struct srup_seqstore *store, uint64_t peer);
/* The persisted bound: no ID above it has been sent to peer. */
uint64_t srup_seqstore_sent_reserved(const struct srup_seqstore *store, uint64_t peer);
uint64_t srup_seqstore_last_accepted(const struct srup_seqstore *store, uint64_t peer);
size_t srup_seqstore_count(const struct srup_seqstore *store);

/* True if seq may be accepted from peer (seq > last accepted). */
bool srup_seqstore_is_fresh(const struct srup_seqstore *store, uint64_t peer, uint64_t seq);

/* Take the next outgoing sequence ID for peer (max(last sent, last
 * accepted) + 1) and record it as last sent. Persists (a new reservation)
 * only when the ID is above the reserved bound. On failure nothing
 * changes, in memory or on disk. */
enum srup_seq_err srup_seqstore_next(struct srup_seqstore *store, uint64_t peer, uint64_t *out,
				     char *detail, size_t detail_len);

/* Record seq as the last accepted from peer and persist (with anything
 * staged). SRUP_SEQ_E_REPLAY if it is not fresh. On failure nothing
 * changes, and anything staged is undone as by a failed commit. */
enum srup_seq_err srup_seqstore_accept(struct srup_seqstore *store, uint64_t peer, uint64_t seq,
				       char *detail, size_t detail_len);

/* Record seq as the last accepted from peer in memory only: freshness
 * checks see it at once; it is on disk only after srup_seqstore_commit
 * (or any other successful persist) returns. Nothing may act on the
 * message before then. SRUP_SEQ_E_REPLAY if it is not fresh,
 * SRUP_SEQ_E_FULL at the peer bound; on failure nothing changes. */
enum srup_seq_err srup_seqstore_stage_accept(struct srup_seqstore *store, uint64_t peer,
					     uint64_t seq, char *detail, size_t detail_len);

/* Persist every staged accept with one write. On failure every staged
 * accept is undone in memory (their messages must be dropped) and the file
 * keeps its previous content. With nothing staged, does nothing. */
enum srup_seq_err srup_seqstore_commit(struct srup_seqstore *store, char *detail,
				       size_t detail_len);

/* As srup_seqstore_commit, but the slot is only written (pwrite), not
 * fdatasync'd: it survives the process being killed, not a power loss,
 * until srup_seqstore_sync (or any later persist, which syncs). For a
 * receiver whose messages are each kept in a durable record of their own
 * until the IDs are synced (srup_node.h). Until then every write goes to
 * the same slot, so the other one keeps the last durable persist. */
enum srup_seq_err srup_seqstore_commit_unsynced(struct srup_seqstore *store, char *detail,
						size_t detail_len);
/* True while a commit_unsynced is not yet on disk. */
bool srup_seqstore_unsynced(const struct srup_seqstore *store);
/* Make an unsynced commit durable (one fdatasync; nothing if none). If the
 * fdatasync fails the file is rewritten as a new one (its pages may be
 * gone); on failure the store stays unsynced. */
enum srup_seq_err srup_seqstore_sync(struct srup_seqstore *store, char *detail,
				     size_t detail_len);

/* Accepts staged and not yet persisted. */
size_t srup_seqstore_staged(const struct srup_seqstore *store);

#endif
