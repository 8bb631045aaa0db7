/* The queue of an unbounded channel: a linked list of blocks of slots
 * (lib/chan_list.c explains the state machine). chan.c owns the channel:
 * its wait queues, its wake-ups and its head and tail words, which it
 * passes in; this file owns the blocks.
 *
 * A send is three steps, so that chan.c can look for a parked receiver
 * between writing the value and publishing it: reserve a slot, copy the
 * value into it (weft__list_value), commit. A receive is one call. The
 * common case of each is inline here; the rest is in chan_list.c. */
#ifndef WEFT_LIB_CHAN_LIST_H
#define WEFT_LIB_CHAN_LIST_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct weft__list_block weft__list_block;

/* Four cache lines, by who writes them: senders and receivers read the
 * first on every operation and the second or third; a line written once
 * per block by the one side would otherwise cost the other side a miss,
 * and the spare's exchanges would contend with every reader. */
typedef struct {
    /* Set by weft__list_new, read-only after. */
    size_t elem_size;
    size_t slot_size;  /* a slot's two state words and its value, 8-byte aligned */
    size_t block_size; /* the block header and its slots */
    /* The blocks the tail and the head are in: written once per block, by
     * the sender that links the next block (tail) and by whoever moves the
     * head into it, before the position word that makes it current. */
    alignas(64) _Atomic(weft__list_block *) tail_block;
    alignas(64) _Atomic(weft__list_block *) head_block;
    /* One drained block kept for the next link, so that a channel whose
     * length stays small allocates nothing; taken and given by exchange. */
    alignas(64) _Atomic(weft__list_block *) spare;
    pthread_mutex_t retire_lock;
    weft__list_block *retired; /* under retire_lock: left by the head, not yet all read */
    atomic_long retired_count; /* their number: written under retire_lock, read without */
} weft__list;

/* A slot reserved by weft__list_reserve, for weft__list_value and
 * weft__list_commit. */
typedef struct {
    weft__list_block *block;
    unsigned offset;
    weft__list_block *linked; /* the block this send linked after block, or NULL */
} weft__list_ticket;

/* The position words are chan.c's head and tail: position << 1, and on
 * the tail bit 0 (WEFT__LIST_CLOSED) means closed. Both start at 0. */
#define WEFT__LIST_CLOSED ((uint64_t)1)

/* A queue with its first block, or NULL with errno ENOMEM, or EINVAL when
 * a block of elem_size values would not fit in a size_t. */
weft__list *weft__list_new(size_t elem_size);

/* Free the queue, its blocks and the values still in them. No operation
 * may be under way. */
void weft__list_free(weft__list *list);

/* ---- the operations: fast paths inline (chan.c), the rest in chan_list.c */

enum {
    WEFT__LIST_SLOTS = 31,                  /* values per block */
    WEFT__LIST_LAP = 32,                    /* positions per block */
    WEFT__LIST_LAST = WEFT__LIST_SLOTS - 1, /* the slot whose sender links the next block */
    WEFT__LIST_BETWEEN = WEFT__LIST_SLOTS,  /* the offset of the step between two blocks */
};
/* A slot's sender word (written by its sender only) and receiver word. */
enum { WEFT__LIST_WRITTEN = 1, WEFT__LIST_SENT = 2 };
enum {
    WEFT__LIST_READ = 1,    /* taken at once: the receiver's last access */
    WEFT__LIST_GAVE_UP = 2, /* the receiver stopped waiting for WRITTEN */
    WEFT__LIST_TAKEN = 4,   /* ...then found it, and won the value */
    WEFT__LIST_RESENT = 8,  /* ...and the sender won: it sends again */
    WEFT__LIST_RDONE = 16,  /* a receiver that gave up has let go of the slot */
};
#define WEFT__LIST_STEP ((uint64_t)2) /* one position */
/* Bit 0 of head: the tail is in a later block, so every slot left in the
 * head's block is reserved and a receiver need not read the tail. */
#define WEFT__LIST_TAIL_AHEAD ((uint64_t)1)

typedef struct {
    _Atomic uint32_t sender;   /* WRITTEN, then SENT: the sender's last access */
    _Atomic uint32_t receiver; /* READ, or GAVE_UP and the rest */
    /* elem_size bytes of value follow, 8-byte aligned */
} weft__list_slot;

struct weft__list_block {
    _Atomic(weft__list_block *) next; /* set by the linker before it writes slot LAST */
    weft__list_block *retired_next;   /* under retire_lock */
    /* WEFT__LIST_SLOTS slots follow */
};

static inline unsigned weft__list_offset(uint64_t word) {
    return (unsigned)((word >> 1) % WEFT__LIST_LAP);
}

static inline weft__list_slot *weft__list_slot_at(const weft__list *list, weft__list_block *block,
                                                  unsigned offset) {
    return (weft__list_slot *)((unsigned char *)(block + 1) + offset * list->slot_size);
}

static inline void *weft__list_slot_value(weft__list_slot *slot) {
    return (unsigned char *)slot + sizeof *slot;
}

/* Whether a sender may order its store of WRITTEN before its load of the
 * receiver word with a compiler barrier only, because a receiver that
 * gives up forces the barrier on every running thread (membarrier(2)). */
extern bool weft__list_asymmetric;

/* The common element size compiles to a move, not a call of memcpy. */
static inline void weft__list_copy(void *to, const void *from, size_t size) {
    if (size == 8)
        memcpy(to, from, 8);
    else
        memcpy(to, from, size);
}

int weft__list_reserve_slow(weft__list *list, atomic_uint_fast64_t *tail,
                            weft__list_ticket *ticket);
bool weft__list_commit_contended(weft__list *list, atomic_uint_fast64_t *head,
                                 const weft__list_ticket *ticket, bool *moved_head);
int weft__list_take_claimed(weft__list *list, atomic_uint_fast64_t *head,
                            const atomic_uint_fast64_t *tail, weft__list_block *block,
                            unsigned offset, void *elem, bool patient, bool *moved_head);
int weft__list_take_slow(weft__list *list, atomic_uint_fast64_t *head,
                         const atomic_uint_fast64_t *tail, void *elem, bool patient,
                         bool *moved_head);

/* Reserve the slot at the tail. Returns 0 (ticket filled: write the value,
 * then commit), WEFT_ECLOSED, WEFT_ENOMEM (the send needed a new block and
 * none could be allocated: nothing was reserved), or WEFT_EAGAIN: another
 * sender is linking the next block and did not finish within a few polls.
 * Never waits longer. A ticket with linked set has made room for senders
 * that were told WEFT_EAGAIN. Inline: a slot before the block's last, won
 * at the first CAS. */
static inline int weft__list_reserve(weft__list *list, atomic_uint_fast64_t *tail,
                                     weft__list_ticket *ticket) {
    uint64_t word = atomic_load_explicit(tail, memory_order_acquire);
    unsigned offset = weft__list_offset(word);
    if (!(word & WEFT__LIST_CLOSED) && offset < WEFT__LIST_LAST) {
        weft__list_block *block = atomic_load_explicit(&list->tail_block, memory_order_acquire);
        if (atomic_compare_exchange_strong_explicit(tail, &word, word + WEFT__LIST_STEP,
                                                    memory_order_seq_cst, memory_order_relaxed)) {
            *ticket = (weft__list_ticket){.block = block, .offset = offset};
            return 0;
        }
    }
    return weft__list_reserve_slow(list, tail, ticket);
}

/* Where the reserved slot's value goes. */
static inline void *weft__list_value(const weft__list *list, const weft__list_ticket *ticket) {
    return weft__list_slot_value(weft__list_slot_at(list, ticket->block, ticket->offset));
}

/* Publish the reserved slot (WRITTEN, with release order). Returns true:
 * delivered, and the caller may no longer touch the channel (a receiver
 * may take the value and free it). Returns false: a receiver gave up
 * waiting for this slot and moved past it; the value is not queued and
 * the send must reserve again. Then *moved_head may be set: the head moved
 * into the next block, which may have made values available to parked
 * receivers. */
static inline bool weft__list_commit(weft__list *list, atomic_uint_fast64_t *head,
                                     const weft__list_ticket *ticket, bool *moved_head) {
    weft__list_slot *slot = weft__list_slot_at(list, ticket->block, ticket->offset);
    /* Plain stores and a load: a store of WRITTEN then a load of the
     * receiver word, ordered as Dekker's pair with a receiver that gives
     * up (chan_list.c), then SENT, our last touch of the block. */
    atomic_store_explicit(&slot->sender, WEFT__LIST_WRITTEN, memory_order_release);
    if (weft__list_asymmetric)
        atomic_signal_fence(memory_order_seq_cst);
    else
        atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&slot->receiver, memory_order_relaxed) & WEFT__LIST_GAVE_UP)
        return weft__list_commit_contended(list, head, ticket, moved_head);
    atomic_store_explicit(&slot->sender, WEFT__LIST_WRITTEN | WEFT__LIST_SENT,
                          memory_order_release);
    return true;
}

/* Take the value at the head into elem (NULL: discard). Returns 0,
 * WEFT_ECLOSED (closed and drained), or WEFT_EAGAIN: empty, or the value
 * at the head is still being written (or the head is being moved into the
 * next block) by a thread that did not finish in time. patient gives that
 * thread a few microseconds, yielding the CPU, before moving past its
 * slot; otherwise a few polls. Sets *moved_head when this call moved the
 * head into the next block. Inline: a written slot before the block's
 * last, won at the first CAS. */
static inline int weft__list_take(weft__list *list, atomic_uint_fast64_t *head,
                                  const atomic_uint_fast64_t *tail, void *elem, bool patient,
                                  bool *moved_head) {
    uint64_t word = atomic_load_explicit(head, memory_order_acquire);
    unsigned offset = weft__list_offset(word);
    if (offset < WEFT__LIST_LAST) {
        uint64_t next = word + WEFT__LIST_STEP;
        if (!(word & WEFT__LIST_TAIL_AHEAD)) {
            uint64_t tail_word = atomic_load(tail);
            if ((tail_word >> 1) == (word >> 1)) /* empty, or closed and drained */
                return weft__list_take_slow(list, head, tail, elem, patient, moved_head);
            if ((tail_word >> 1) / WEFT__LIST_LAP != (word >> 1) / WEFT__LIST_LAP)
                next |= WEFT__LIST_TAIL_AHEAD;
        }
        weft__list_block *block = atomic_load_explicit(&list->head_block, memory_order_acquire);
        if (atomic_compare_exchange_strong_explicit(head, &word, next, memory_order_seq_cst,
                                                    memory_order_relaxed)) {
            weft__list_slot *slot = weft__list_slot_at(list, block, offset);
            if (!(atomic_load_explicit(&slot->sender, memory_order_acquire) & WEFT__LIST_WRITTEN))
                return weft__list_take_claimed(list, head, tail, block, offset, elem, patient,
                                               moved_head);
            if (elem) weft__list_copy(elem, weft__list_slot_value(slot), list->elem_size);
            atomic_store_explicit(&slot->receiver, WEFT__LIST_READ, memory_order_release);
            return 0;
        }
    }
    return weft__list_take_slow(list, head, tail, elem, patient, moved_head);
}

/* Whether an operation of direction dir (WEFT_SEND, WEFT_RECV) could
 * proceed now, or the channel is closed: seq_cst loads of head and tail,
 * which pair with the operations' seq_cst position updates. */
bool weft__list_ready(const atomic_uint_fast64_t *head, const atomic_uint_fast64_t *tail, int dir);

/* Values queued now, counting slots reserved and not yet written. */
size_t weft__list_len(const atomic_uint_fast64_t *head, const atomic_uint_fast64_t *tail);

/* Test hook: when set, every send on an unbounded channel calls it between
 * reserving its slot and writing the value (chan.c). */
extern void (*weft__list_reserved_hook)(void);

#endif
