/* The unbounded channel's queue: blocks of 31 slots in a linked list, the
 * shape of crossbeam-channel's list flavour, with two changes: no
 * operation waits for another thread's half-finished step, and neither a
 * send nor a receive does a read-modify-write beyond its position CAS
 * (crossbeam does one more on each side).
 *
 * Positions. head and tail (chan.c's words) count slots: position << 1,
 * with bit 0 of tail meaning closed and bit 0 of head that the tail is in
 * a later block (TAIL_AHEAD: as crossbeam's head mark, it spares a
 * receiver reading the tail's cache line, which the senders write).
 * Position lap * 32 + offset is slot offset of the lap-th block for
 * offset < 31; offset 31 is no slot but a step in between: the tail is
 * there while the sender of slot 30 links the next block, the head while
 * whoever took slot 30 moves it into that block. Positions only grow: the
 * queue is empty when head and tail are at the same position.
 *
 * A send: CAS tail from its position to the next (seq_cst); the slot is
 * then the sender's. The sender that takes slot 30 has allocated the next
 * block before its CAS (or taken the spare), so that a failed allocation
 * reserves nothing (WEFT_ENOMEM); after the CAS it stores block->next,
 * tail_block, and moves the tail from offset 31 to the next block's 0 with
 * a fetch_add, which keeps a concurrent close's mark. Senders that find
 * the tail at offset 31 poll a few times and then say WEFT_EAGAIN (chan.c
 * parks a blocking one; the linker wakes it). The sender writes the value,
 * stores WRITTEN in the slot's sender word (release), loads the receiver
 * word, and stores SENT: its last touch of the block.
 *
 * A receive: CAS head from its position to the next (seq_cst) if tail is
 * beyond it, and the slot is the receiver's. If WRITTEN is set (acquire)
 * it copies the value out and stores READ in the receiver word (release),
 * its last touch of the slot. If not, the sender is between its CAS and
 * its store. crossbeam waits here without bound, also in try_recv
 * (crossbeam#997, rust-lang/rust#112723); we poll briefly (longer,
 * yielding, for a blocking receive), then give the slot up: set GAVE_UP,
 * fence, and load the sender word again. The sender's store-then-load and
 * the receiver's are Dekker's pair: at least one sees the other's store.
 * The sender orders its pair with a compiler barrier only, and the rare
 * receiver that gives up makes it a real one with membarrier(2)
 * (MEMBARRIER_CMD_PRIVATE_EXPEDITED: a barrier on every running thread of
 * the process; one that is not running passed one when it stopped), as
 * liburcu and folly's asymmetric fences do; without membarrier both use
 * seq_cst fences. Then:
 *   - the sender saw no GAVE_UP: the receiver sees WRITTEN, sets TAKEN,
 *     and takes the value;
 *   - the receiver saw no WRITTEN: the sender sees GAVE_UP, sets RESENT,
 *     and sends its value again, at the tail; the receiver goes on to the
 *     next position;
 *   - both saw the other: each sets its bit (TAKEN, RESENT) with a
 *     fetch_or, and the first has the value.
 * A receiver that gave up ends by setting RDONE, its last touch. The value
 * of a resent send was not sent yet (the call has not returned), so
 * per-sender FIFO holds, and a close that overtakes the second attempt
 * makes that send report WEFT_ECLOSED, as a send concurrent with a close
 * may.
 *
 * The head into the next block. Whoever takes slot 30 moves the head on:
 * the receiver, if WRITTEN was set (the linker stores block->next before
 * writing slot 30, so it is visible); or, if the receiver skipped slot 30,
 * its sender, which learns it as it sets RESENT and knows the next block
 * itself. So the head never waits for a link either. Meanwhile receivers
 * see the head at offset 31 and say WEFT_EAGAIN. head_block is stored
 * (release) before the head word (seq_cst), as tail_block before the tail
 * word: a thread that reads a position word (acquire) and then the block
 * pointer gets that position's block or, if the position has moved on, a
 * CAS that fails.
 *
 * Freeing. A block is done when each of its slots is SENT, and READ or
 * RDONE: each side's last access. A receiver may free the channel as soon
 * as it has a value, before its sender has stored SENT, so the last
 * release (weft__list_free) waits for SENT in every written slot. Whoever moves the head past a
 * block frees it if it is done and no other is listed; otherwise it lists the block, under
 * retire_lock, and frees every listed block that is done. A block that waits for a preempted reader
 * or writer stays listed and goes at a later move or at weft__list_free. So memory returns to the
 * allocator as the queue drains (glibc keeps it in the process until
 * malloc_trim). A freed block becomes the spare if there is none, so a channel that stays
 * short allocates nothing.
 *
 * The uncontended reserve, commit and take are inline in chan_list.h, for
 * chan.c; this file has the rest of each: lost races, the block's last
 * slot, the step between blocks, a half-written slot, and the blocks. */
#include "chan_list.h"

#include <errno.h>
#include <stdalign.h>
#include <linux/membarrier.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "alloc.h"
#include "backoff.h"
#include "panic.h"
#include "weft/error.h"
#include "weft/select.h"

/* The header's names, short. */
enum {
    BLOCK_SLOTS = WEFT__LIST_SLOTS,
    LAP = WEFT__LIST_LAP,
    LAST = WEFT__LIST_LAST,
    BETWEEN = WEFT__LIST_BETWEEN,
    WRITTEN = WEFT__LIST_WRITTEN,
    SENT = WEFT__LIST_SENT,
    READ = WEFT__LIST_READ,
    GAVE_UP = WEFT__LIST_GAVE_UP,
    TAKEN = WEFT__LIST_TAKEN,
    RESENT = WEFT__LIST_RESENT,
    RDONE = WEFT__LIST_RDONE,
    /* How long an attempt polls a half-finished step before it says
     * WEFT_EAGAIN or moves past it: a running thread finishes in well under
     * this (a copy and a store). */
    TRY_POLLS = 64,
    /* A blocking receive's patience with a slot being written: the
     * snooze's polls, then a few yields, before it gives the slot up. */
    PATIENT_STEPS = WEFT__SNOOZE_POLLS + 8,
};
#define STEP WEFT__LIST_STEP
#define TAIL_AHEAD WEFT__LIST_TAIL_AHEAD

typedef weft__list_slot slot;

void (*weft__list_reserved_hook)(void);

bool weft__list_asymmetric;

static long membarrier(int command) { return syscall(__NR_membarrier, command, 0, 0); }

static void register_membarrier(void) {
    weft__list_asymmetric = membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

/* A receiver's half of the Dekker pair with a sender's commit: a full
 * barrier here and, when senders order theirs by a compiler barrier only,
 * on every thread of the process that is running now (a thread that is
 * not running passed one when it stopped). A forked child is not
 * registered: it registers again. */
static void heavy_fence(void) {
    atomic_thread_fence(memory_order_seq_cst);
    if (!weft__list_asymmetric) return;
    if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
    if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0 &&
        membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0)
        return;
    weft__panic("membarrier failed after it had been registered");
}

static inline uint64_t position(uint64_t word) { return word >> 1; }

static inline unsigned offset_of(uint64_t word) { return weft__list_offset(word); }

static inline slot *slot_at(const weft__list *list, weft__list_block *block, unsigned offset) {
    return weft__list_slot_at(list, block, offset);
}

static inline void *slot_value(slot *s) { return weft__list_slot_value(s); }

/* A block as new: no next, no slot touched. */
static void reset_block(const weft__list *list, weft__list_block *block) {
    atomic_store_explicit(&block->next, NULL, memory_order_relaxed);
    block->retired_next = NULL;
    for (unsigned i = 0; i < BLOCK_SLOTS; i++) {
        atomic_store_explicit(&slot_at(list, block, i)->sender, 0, memory_order_relaxed);
        atomic_store_explicit(&slot_at(list, block, i)->receiver, 0, memory_order_relaxed);
    }
}

/* The spare, or a new block; NULL when memory runs out. Published to
 * other threads by the release stores that link it. */
static weft__list_block *take_block(weft__list *list) {
    weft__list_block *block = NULL;
    if (atomic_load_explicit(&list->spare, memory_order_relaxed))
        block = atomic_exchange_explicit(&list->spare, NULL, memory_order_acquire);
    if (block) return block;
    block = weft__malloc(list->block_size);
    if (block) reset_block(list, block);
    return block;
}

/* A block nobody uses any more: the spare if there is none, else freed. */
static void give_block(weft__list *list, weft__list_block *block) {
    if (atomic_load_explicit(&list->spare, memory_order_relaxed)) {
        weft__free(block);
        return;
    }
    reset_block(list, block);
    weft__list_block *none = NULL;
    if (!atomic_compare_exchange_strong_explicit(&list->spare, &none, block, memory_order_release,
                                                 memory_order_relaxed))
        weft__free(block);
}

weft__list *weft__list_new(size_t elem_size) {
    static pthread_once_t registered = PTHREAD_ONCE_INIT;
    pthread_once(&registered, register_membarrier);
    size_t value_size = (elem_size + 7) & ~(size_t)7;
    if (value_size < elem_size ||
        value_size > (SIZE_MAX - sizeof(weft__list_block)) / BLOCK_SLOTS - sizeof(slot)) {
        errno = EINVAL;
        return NULL;
    }
    weft__list *list = weft__aligned_alloc(alignof(weft__list), sizeof *list);
    if (!list) goto no_memory;
    *list = (weft__list){
        .elem_size = elem_size,
        .slot_size = sizeof(slot) + value_size,
        .block_size = sizeof(weft__list_block) + BLOCK_SLOTS * (sizeof(slot) + value_size),
    };
    weft__list_block *first = take_block(list);
    if (!first) goto no_block;
    atomic_init(&list->tail_block, first);
    atomic_init(&list->head_block, first);
    atomic_init(&list->spare, NULL);
    atomic_init(&list->retired_count, 0);
    pthread_mutex_init(&list->retire_lock, NULL);
    return list;

no_block:
    weft__free(list);
no_memory:
    errno = ENOMEM;
    return NULL;
}

/* Wait out senders whose value a receiver may have taken but who have not
 * stored SENT, their last touch of block: the receiver may have released
 * the channel at once. Between the two stores only a preempted sender
 * stays long. */
static void free_block(const weft__list *list, weft__list_block *block) {
    for (unsigned i = 0; i < BLOCK_SLOTS; i++) {
        _Atomic uint32_t *sender = &slot_at(list, block, i)->sender;
        while (atomic_load_explicit(sender, memory_order_acquire) == WRITTEN) sched_yield();
    }
    weft__free(block);
}

void weft__list_free(weft__list *list) {
    if (!list) return;
    weft__list_block *block = atomic_load(&list->head_block);
    while (block) {
        weft__list_block *next = atomic_load(&block->next);
        free_block(list, block);
        block = next;
    }
    for (block = list->retired; block;) {
        weft__list_block *next = block->retired_next;
        free_block(list, block);
        block = next;
    }
    weft__free(atomic_load(&list->spare));
    pthread_mutex_destroy(&list->retire_lock);
    weft__free(list);
}

int weft__list_reserve_slow(weft__list *list, atomic_uint_fast64_t *tail,
                            weft__list_ticket *ticket) {
    weft__backoff backoff = {0};
    unsigned polls = 0;
    weft__list_block *linked = NULL; /* allocated for slot LAST, not yet linked */
    int result;
    uint64_t word = atomic_load_explicit(tail, memory_order_acquire);
    for (;;) {
        if (word & WEFT__LIST_CLOSED) {
            result = WEFT_ECLOSED;
            break;
        }
        unsigned offset = offset_of(word);
        if (offset == BETWEEN) { /* another sender is linking the next block */
            if (++polls > TRY_POLLS) {
                result = WEFT_EAGAIN;
                break;
            }
            weft__cpu_relax();
            word = atomic_load_explicit(tail, memory_order_acquire);
            continue;
        }
        if (offset == LAST && !linked && !(linked = take_block(list))) {
            result = WEFT_ENOMEM;
            break;
        }
        weft__list_block *block = atomic_load_explicit(&list->tail_block, memory_order_acquire);
        if (atomic_compare_exchange_weak_explicit(tail, &word, word + STEP, memory_order_seq_cst,
                                                  memory_order_acquire)) {
            *ticket = (weft__list_ticket){.block = block, .offset = offset};
            if (offset == LAST) {
                atomic_store_explicit(&block->next, linked, memory_order_release);
                atomic_store_explicit(&list->tail_block, linked, memory_order_release);
                atomic_fetch_add_explicit(tail, STEP, memory_order_seq_cst);
                ticket->linked = linked;
                linked = NULL;
            }
            result = 0;
            break;
        }
        weft__backoff_lost_race(&backoff);
    }
    if (linked) give_block(list, linked);
    return result;
}

/* Whether every slot of block has had its last access. */
static bool block_done(const weft__list *list, weft__list_block *block) {
    for (unsigned i = 0; i < BLOCK_SLOTS; i++) {
        slot *s = slot_at(list, block, i);
        if (!(atomic_load_explicit(&s->sender, memory_order_acquire) & SENT) ||
            !(atomic_load_explicit(&s->receiver, memory_order_acquire) & (READ | RDONE)))
            return false;
    }
    return true;
}

/* List block, which the head has left, and free every retired block that
 * is done. Usually none is listed and the block is done: then no lock. A
 * block listed meanwhile by another retire is scanned by that one. */
static void retire(weft__list *list, weft__list_block *block) {
    if (atomic_load_explicit(&list->retired_count, memory_order_relaxed) == 0 &&
        block_done(list, block)) {
        give_block(list, block);
        return;
    }
    weft__list_block *done = NULL;
    pthread_mutex_lock(&list->retire_lock);
    block->retired_next = list->retired;
    list->retired = block;
    long listed = 0;
    for (weft__list_block **link = &list->retired; *link;) {
        weft__list_block *retired = *link;
        if (block_done(list, retired)) {
            *link = retired->retired_next;
            retired->retired_next = done;
            done = retired;
        } else {
            link = &retired->retired_next;
            listed++;
        }
    }
    atomic_store_explicit(&list->retired_count, listed, memory_order_relaxed);
    pthread_mutex_unlock(&list->retire_lock);
    while (done) {
        weft__list_block *next = done->retired_next;
        give_block(list, done);
        done = next;
    }
}

/* The head is at offset BETWEEN of block's lap, and we took slot LAST:
 * move it to the first slot of next. If next has a next, the tail has
 * reserved next's last slot, so it is in a later block. */
static void move_head(weft__list *list, atomic_uint_fast64_t *head, weft__list_block *block,
                      weft__list_block *next) {
    atomic_store_explicit(&list->head_block, next, memory_order_release);
    uint64_t word = atomic_load_explicit(head, memory_order_relaxed); /* only we move it now */
    uint64_t ahead = atomic_load_explicit(&next->next, memory_order_relaxed) ? TAIL_AHEAD : 0;
    atomic_store_explicit(head, ((position(word) + 1) << 1) | ahead, memory_order_seq_cst);
    retire(list, block);
}

/* The commit found GAVE_UP: whichever of us and the receiver sets its bit
 * (RESENT, TAKEN) first has the value. */
bool weft__list_commit_contended(weft__list *list, atomic_uint_fast64_t *head,
                                 const weft__list_ticket *ticket, bool *moved_head) {
    slot *s = slot_at(list, ticket->block, ticket->offset);
    uint32_t before = atomic_fetch_or_explicit(&s->receiver, RESENT, memory_order_acq_rel);
    atomic_store_explicit(&s->sender, WRITTEN | SENT, memory_order_release);
    if (before & TAKEN) return true;
    /* The receiver of slot LAST moved past it without the next block. */
    if (ticket->offset == LAST) {
        move_head(list, head, ticket->block, ticket->linked);
        *moved_head = true;
    }
    return false;
}

/* We hold the slot at offset of block: take its value, or give it up if
 * its sender does not finish in time. Returns 0 or WEFT_EAGAIN (given up). */
static int take_slot(weft__list *list, atomic_uint_fast64_t *head, weft__list_block *block,
                     unsigned offset, void *elem, bool patient, bool *moved_head) {
    slot *s = slot_at(list, block, offset);
    uint32_t done = READ; /* what our last store sets in the receiver word */
    weft__backoff backoff = {0};
    while (!(atomic_load_explicit(&s->sender, memory_order_acquire) & WRITTEN)) {
        if (backoff.step >= (patient ? PATIENT_STEPS : TRY_POLLS)) {
            /* Give up, unless the value arrived after all and we win it. */
            atomic_fetch_or_explicit(&s->receiver, GAVE_UP, memory_order_seq_cst);
            heavy_fence();
            bool won = false;
            if (atomic_load_explicit(&s->sender, memory_order_acquire) & WRITTEN)
                won =
                    !(atomic_fetch_or_explicit(&s->receiver, TAKEN, memory_order_acq_rel) & RESENT);
            if (!won) {
                atomic_fetch_or_explicit(&s->receiver, RDONE, memory_order_release);
                return WEFT_EAGAIN;
            }
            done = RDONE;
            break;
        }
        weft__backoff_snooze(&backoff);
    }
    if (elem) weft__list_copy(elem, slot_value(s), list->elem_size);
    weft__list_block *next =
        offset == LAST ? atomic_load_explicit(&block->next, memory_order_acquire) : NULL;
    if (done == READ)
        atomic_store_explicit(&s->receiver, READ, memory_order_release);
    else
        atomic_fetch_or_explicit(&s->receiver, RDONE, memory_order_release);
    if (offset == LAST) {
        move_head(list, head, block, next);
        *moved_head = true;
    }
    return 0;
}

int weft__list_take_claimed(weft__list *list, atomic_uint_fast64_t *head,
                            const atomic_uint_fast64_t *tail, weft__list_block *block,
                            unsigned offset, void *elem, bool patient, bool *moved_head) {
    if (take_slot(list, head, block, offset, elem, patient, moved_head) == 0) return 0;
    return weft__list_take_slow(list, head, tail, elem, patient, moved_head);
}

int weft__list_take_slow(weft__list *list, atomic_uint_fast64_t *head,
                         const atomic_uint_fast64_t *tail, void *elem, bool patient,
                         bool *moved_head) {
    weft__backoff backoff = {0};
    uint64_t word = atomic_load_explicit(head, memory_order_acquire);
    for (;;) {
        if (offset_of(word) == BETWEEN) return WEFT_EAGAIN;
        uint64_t next_word = word + STEP;
        if (!(word & TAIL_AHEAD)) {
            uint64_t tail_word = atomic_load(tail);
            if (position(tail_word) == position(word))
                return (tail_word & WEFT__LIST_CLOSED) ? WEFT_ECLOSED : WEFT_EAGAIN;
            if (position(tail_word) / LAP != position(word) / LAP) next_word |= TAIL_AHEAD;
        }
        weft__list_block *block = atomic_load_explicit(&list->head_block, memory_order_acquire);
        if (!atomic_compare_exchange_weak_explicit(head, &word, next_word, memory_order_seq_cst,
                                                   memory_order_acquire)) {
            weft__backoff_lost_race(&backoff);
            continue;
        }
        if (take_slot(list, head, block, offset_of(word), elem, patient, moved_head) == 0) return 0;
        /* Given up: the next slot may hold a value. */
        word = atomic_load_explicit(head, memory_order_acquire);
    }
}

bool weft__list_ready(const atomic_uint_fast64_t *head, const atomic_uint_fast64_t *tail, int dir) {
    uint64_t tail_word = atomic_load(tail);
    if (tail_word & WEFT__LIST_CLOSED) return true;
    if (dir == WEFT_SEND) return offset_of(tail_word) != BETWEEN;
    uint64_t head_word = atomic_load(head);
    return offset_of(head_word) != BETWEEN && position(head_word) != position(tail_word);
}

/* The number of slots before position: 31 per lap. */
static inline uint64_t slots_before(uint64_t pos) { return pos - pos / LAP; }

size_t weft__list_len(const atomic_uint_fast64_t *head, const atomic_uint_fast64_t *tail) {
    for (;;) {
        uint64_t tail_word = atomic_load(tail);
        uint64_t head_word = atomic_load(head);
        if (atomic_load(tail) != tail_word) continue;
        return (size_t)(slots_before(position(tail_word)) - slots_before(position(head_word)));
    }
}
