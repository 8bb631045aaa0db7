/* The unbounded channel's queue: blocks of 31 slots in a linked list, the
 * shape of crossbeam-channel's list flavour, with two changes: no
 * operation waits for another thread's half-finished step, and a receive
 * adds no read-modify-write of its own.
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
 * parks a blocking one; the linker wakes it). The sender writes the value
 * and publishes it by setting WRITTEN in the slot's state (release) with
 * an atomic add, which also tells it whether a receiver gave up on the
 * slot. (Each bit is set once, by one thread, so an add is an or; x86 has
 * it as one lock xadd, where this fetch_or would be a load and a CAS.)
 *
 * A receive: CAS head from its position to the next (seq_cst) if tail is
 * beyond it, and the slot is the receiver's. If WRITTEN is set (acquire)
 * it copies the value out and stores READ (release), the last touch of a
 * slot. If not, the sender is between its CAS and its add. crossbeam
 * waits here without bound, also in try_recv (crossbeam#997,
 * rust-lang/rust#112723); we poll briefly (longer, yielding, for a
 * blocking receive), then set SKIPPED with an add. If that finds
 * WRITTEN, the value arrived meanwhile and is taken. If not, the receiver
 * has given the slot up and goes on to the next position; the sender's
 * add then finds SKIPPED, and it sends the value again, at the tail.
 * Exactly one of the two adds sees the other's bit, so the value is
 * received once or sent again, never both. The value was not sent yet
 * (the call has not returned), so per-sender FIFO holds, and a close that
 * overtakes the second attempt makes that send report WEFT_ECLOSED, as a
 * send concurrent with a close may.
 *
 * The head into the next block. Whoever takes slot 30 moves the head on:
 * the receiver, if WRITTEN was set (the linker stores block->next before
 * writing slot 30, so it is visible); or, if the receiver skipped slot 30,
 * its sender, which learns it from its add and knows the next block
 * itself. So the head never waits for a link either. Meanwhile receivers
 * see the head at offset 31 and say WEFT_EAGAIN. head_block is stored
 * (release) before the head word (seq_cst), as tail_block before the tail
 * word: a thread that reads a position word (acquire) and then the block
 * pointer gets that position's block or, if the position has moved on, a
 * CAS that fails.
 *
 * Freeing. A block is done when each of its slots is READ, or SKIPPED and
 * WRITTEN: READ is a receiver's last access, the adds are each side's
 * last access to a skipped slot. Whoever moves the head past a block
 * frees it if it is done and no other is listed; otherwise it lists the
 * block, under retire_lock, and frees every listed block that is done. A
 * block that waits for a preempted reader or writer stays listed and goes
 * at a later move or at weft__list_free. So memory returns to the
 * allocator as the queue drains (glibc keeps it in the process until
 * malloc_trim), and receives do no read-modify-write beyond the head CAS
 * (a crossbeam receive also does a fetch_or, for its freeing protocol). A
 * freed block becomes the spare if there is none, so a channel that stays
 * short allocates nothing.
 *
 * The uncontended reserve, commit and take are inline in chan_list.h, for
 * chan.c; this file has the rest of each: lost races, the block's last
 * slot, the step between blocks, a half-written slot, and the blocks. */
#include "chan_list.h"

#include <errno.h>
#include <string.h>

#include "alloc.h"
#include "backoff.h"
#include "weft/error.h"
#include "weft/select.h"

/* The header's names, short. */
enum {
    BLOCK_SLOTS = WEFT__LIST_SLOTS,
    LAP = WEFT__LIST_LAP,
    LAST = WEFT__LIST_LAST,
    BETWEEN = WEFT__LIST_BETWEEN,
    WRITTEN = WEFT__LIST_WRITTEN,
    READ = WEFT__LIST_READ,
    SKIPPED = WEFT__LIST_SKIPPED,
    /* How long an attempt polls a half-finished step before it says
     * WEFT_EAGAIN or moves past it: a running thread finishes in well under
     * this (a copy and a store). */
    TRY_POLLS = 64,
};
#define STEP WEFT__LIST_STEP
#define TAIL_AHEAD WEFT__LIST_TAIL_AHEAD

typedef weft__list_slot slot;

void (*weft__list_reserved_hook)(void);

static inline uint64_t position(uint64_t word) { return word >> 1; }

static inline unsigned offset_of(uint64_t word) { return weft__list_offset(word); }

static inline slot *slot_at(const weft__list *list, weft__list_block *block, unsigned offset) {
    return weft__list_slot_at(list, block, offset);
}

static inline void *slot_value(slot *s) { return weft__list_slot_value(s); }

/* After a lost CAS on a position: pause, more each time, and after a few
 * losses yield the CPU, which with more threads than cores is likely held
 * by one of the others. */
static void lost_race(weft__backoff *backoff) {
    if (backoff->step < WEFT__CAS_SPIN_LIMIT) {
        weft__backoff_spin(backoff);
    } else {
        backoff->step++;
        sched_yield();
    }
}

/* A block as new: no next, no slot touched. */
static void reset_block(const weft__list *list, weft__list_block *block) {
    atomic_store_explicit(&block->next, NULL, memory_order_relaxed);
    block->retired_next = NULL;
    for (unsigned i = 0; i < BLOCK_SLOTS; i++)
        atomic_store_explicit(&slot_at(list, block, i)->state, 0, memory_order_relaxed);
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
    size_t value_size = (elem_size + 7) & ~(size_t)7;
    if (value_size < elem_size ||
        value_size > (SIZE_MAX - sizeof(weft__list_block)) / BLOCK_SLOTS - sizeof(slot)) {
        errno = EINVAL;
        return NULL;
    }
    weft__list *list = weft__malloc(sizeof *list);
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

void weft__list_free(weft__list *list) {
    if (!list) return;
    weft__list_block *block = atomic_load(&list->head_block);
    while (block) {
        weft__list_block *next = atomic_load(&block->next);
        weft__free(block);
        block = next;
    }
    for (block = list->retired; block;) {
        weft__list_block *next = block->retired_next;
        weft__free(block);
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
        lost_race(&backoff);
    }
    if (linked) give_block(list, linked);
    return result;
}

/* Whether every slot of block has had its last access. */
static bool block_done(const weft__list *list, weft__list_block *block) {
    for (unsigned i = 0; i < BLOCK_SLOTS; i++) {
        uint64_t state =
            atomic_load_explicit(&slot_at(list, block, i)->state, memory_order_acquire);
        if (!(state & READ) && (state & (WRITTEN | SKIPPED)) != (WRITTEN | SKIPPED)) return false;
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

bool weft__list_commit_skipped(weft__list *list, atomic_uint_fast64_t *head,
                               const weft__list_ticket *ticket, bool *moved_head) {
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
    uint64_t state = atomic_load_explicit(&s->state, memory_order_acquire);
    weft__backoff backoff = {0};
    while (!(state & WRITTEN)) {
        if (patient ? weft__backoff_done(&backoff) : backoff.step >= TRY_POLLS) {
            state = atomic_fetch_add_explicit(&s->state, SKIPPED, memory_order_acq_rel);
            if (!(state & WRITTEN)) return WEFT_EAGAIN;
            break;
        }
        weft__backoff_snooze(&backoff);
        state = atomic_load_explicit(&s->state, memory_order_acquire);
    }
    if (elem) weft__list_copy(elem, slot_value(s), list->elem_size);
    weft__list_block *next =
        offset == LAST ? atomic_load_explicit(&block->next, memory_order_acquire) : NULL;
    atomic_store_explicit(&s->state, state | READ, memory_order_release);
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
            lost_race(&backoff);
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
