/* Channels: a lock-free ring for buffered channels, a locked hand-off for
 * unbuffered ones, and wait queues of parked threads for both.
 *
 * Buffered channels (cap > 0) keep values in a bounded MPMC ring of cap
 * slots, each stamped with the position it expects next (Vyukov's bounded
 * queue, in the form crossbeam-channel's array flavour uses). A position is
 * lap | index: index < cap, and lap advances by one_lap each time an index
 * wraps. head is the next position to receive, tail the next to send; the
 * bit mark_bit of tail (between index and lap) means closed.
 *   - A slot with stamp == tail is free for the sender at tail: the sender
 *     advances tail by CAS, writes the value, then stores stamp = tail + 1
 *     (release) to publish it.
 *   - A slot with stamp == head + 1 holds the value for the receiver at
 *     head: it advances head by CAS, copies the value out, then stores
 *     stamp = head + one_lap (release), freeing the slot for the next lap.
 * Stamps are stored minus their slot's index, so that a zeroed allocation
 * is a correctly initialised ring and a large channel costs no page faults
 * until it is used.
 *
 * Waking without losing wake-ups, and without a lock when nobody sleeps:
 * a thread about to park pushes a waiter on senders or receivers under
 * channel->lock, sets senders_waiting / receivers_waiting (seq_cst), and
 * only then re-checks whether it could proceed (ring_ready, seq_cst loads
 * of head and tail). A sender advances tail with a seq_cst CAS and
 * then loads receivers_waiting (seq_cst); a receiver does the same with
 * head and senders_waiting. In the single total order of seq_cst
 * operations either the flag store comes first, and the partner sees the
 * flag and wakes a waiter, or the CAS comes first, and the re-check sees
 * the new position and does not park. Readiness is judged on head and
 * tail, not on stamps: a receiver that sees tail advanced but the stamp
 * not yet published waits for that one writer to finish (snooze), which
 * takes nanoseconds unless the writer is preempted.
 *
 * A woken waiter of a buffered channel is not handed a value; it is told
 * to retry (WEFT__RETRY) and races fast-path threads for it. Whoever wins
 * consumed the value or the room, so nothing is lost by losing.
 *
 * Before parking, a blocked ring operation polls only its own side: the
 * stamp of the slot at its own position (ring_may_be_ready). Reading the
 * partner's head or tail on every poll would pull that line away from the
 * partner, whose next CAS needs it back; at capacity 1 that halved the
 * hand-off rate. The exact full/empty check (which reads both) is made
 * once by a try form, and again when registering.
 *
 * Unbuffered channels (cap == 0) do everything under channel->lock, as Go
 * does: a sender that finds a parked receiver claims it (a CAS on the
 * receiver's parker, which may also be a select waiting on other channels),
 * copies its value straight into the receiver's buffer and unparks it;
 * otherwise it parks with its value in its waiter until a receiver copies
 * it out. The copy happens after the lock is released: the claim makes the
 * claimer the only thread that may touch the waiter until it unparks it.
 * A single operation's waiter, and its value when it fits in 8 bytes, live
 * in the thread's parker, on the cache line of its claim and wake-up
 * words, so a partner completes it by touching one line of ours.
 * handoff_waiters counts the waiters ever queued: it is the channel's
 * version for select (a partner appearing is what makes a case ready).
 *
 * Unbounded channels keep their values in chan_list.c's list of blocks,
 * with head and tail as its position words (bit 0 of tail means closed,
 * so mark_bit is 1 and close, is_closed and the version work unchanged).
 * Their cap reads WEFT_UNBOUNDED and their slots point at one stand-in
 * slot whose stamp no position matches, so the ring fast paths fall
 * through to operate, which hands them to the list. Receivers park as on
 * a ring; a sender parks only in the moment another sender links a new
 * block. Wake-ups follow the ring's rules: a sender reads
 * receivers_waiting after its tail CAS and before its commit (the store
 * that lets a receiver free the channel), claiming a receiver before and
 * waking it after; whoever moves the head or the tail into a new block
 * wakes every waiter of that side, since each may now proceed.
 *
 * Close sets the mark bit under the lock and claims every queued waiter:
 * buffered waiters retry (and find the close), unbuffered ones are told
 * WEFT_ECLOSED directly. A sender never succeeds after the mark is set: the
 * ring sender's CAS compares the whole tail, mark included, and no waiter
 * is queued on a channel already closed (handoff and register check the
 * mark under the lock), so no receiver claims a sender after the close.
 *
 * Lifetimes (DESIGN.md, "Lifetimes"): a thread that sees an operation
 * complete may free the channel at once, though the operation's call has
 * not returned and holds no reference. So each call's last access to the
 * channel comes before the store that makes its effect visible:
 *   - a ring operation reads the partner flag before its stamp store, and
 *     if a partner is parked, claims it under the lock first, stores the
 *     stamp after unlocking, and wakes the claimed waiter through its
 *     parker (parkers are never freed; the waiter's owner cannot return
 *     before that wake-up) (publish);
 *   - a woken unbuffered waiter does not look at the channel again (the
 *     element size is read before parking), and a claimer unlinks every
 *     waiter of a select that has several cases on the claimed channel,
 *     so the select need not go back there (claim_partner);
 *   - close sets the mark as its last store, but still unlocks after it:
 *     the last release of a closed channel takes and drops the lock
 *     before destroying it, which waits that unlock out.
 *
 * Poll fds (weft_chan_pollfd; chan_pollfd.c, chan_poll.h): an armed
 * poll observer counts as a waiter of its direction without being queued:
 * the flags are recomputed as "queue non-empty or observer armed"
 * (someone_waits), so a partner takes publish_and_wake, which raises it;
 * an unbuffered waiter joining a queue raises the other direction's. A
 * try form that says WEFT_EAGAIN re-arms it (try_once). A channel with
 * no poll fd runs exactly the code it ran before.
 *
 * Locks: channel->lock guards both wait queues and the unbuffered
 * hand-off. It is never held while another channel's lock is taken, nor
 * while parking. */
#include <errno.h>
#include <stdalign.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "alloc.h"
#include "backoff.h"
#include "chan_internal.h"
#include "chan_list.h"
#include "chan_poll.h"
#include "engine.h"
#include "panic.h"

#define CACHE_LINE 64

typedef struct {
    atomic_uint_fast64_t stamp; /* expected position minus the slot's index */
    /* elem_size bytes of value follow, 8-byte aligned */
} slot;

struct weft_chan {
    /* Set by make, read-only after; then the two flags, read by every fast
     * path and written only under lock when a queue empties or fills. */
    size_t elem_size;
    size_t cap;
    size_t slot_size;
    uint64_t mark_bit;    /* tail bit: closed */
    uint64_t one_lap;     /* position increment of one full lap */
    unsigned char *slots; /* cap slots of slot_size bytes; NULL when cap == 0 */
    weft__list *list;     /* unbounded channels' blocks (chan_list.c); NULL for others */
    atomic_long references;
    bool receive_only; /* a context's done channel: only weft__chan_close_owned closes it */
    atomic_int senders_waiting;   /* senders queue non-empty (buffered only) */
    atomic_int receivers_waiting; /* receivers queue non-empty (buffered only) */

    alignas(CACHE_LINE) atomic_uint_fast64_t tail; /* senders' CAS target; mark_bit: closed */
    alignas(CACHE_LINE) atomic_uint_fast64_t head; /* receivers' CAS target */

    alignas(CACHE_LINE) pthread_mutex_t lock;
    weft__waitq senders;                  /* parked senders (unbuffered: with their values) */
    weft__waitq receivers;                /* parked receivers */
    atomic_uint_fast64_t handoff_waiters; /* unbuffered: waiters ever queued (the version) */
    void *block; /* what make allocated: the channel, and small slots after it */

    /* weft_chan_pollfd's fds (chan_poll.h), or NULL; set once, under lock. */
    weft__chan_poll *poll;
};

static inline slot *slot_at(const weft_chan *channel, uint64_t index) {
    return (slot *)(channel->slots + index * channel->slot_size);
}

static inline void *slot_value(slot *s) { return (unsigned char *)s + sizeof(slot); }

/* Copies of the common element sizes compile to one or two moves. */
static inline void copy_value(void *to, const void *from, size_t size) {
    switch (size) {
    case 0: break;
    case 4: memcpy(to, from, 4); break;
    case 8: memcpy(to, from, 8); break;
    case 16: memcpy(to, from, 16); break;
    default: memcpy(to, from, size); break;
    }
}

static bool is_closed(const weft_chan *channel) {
    return (atomic_load(&channel->tail) & channel->mark_bit) != 0;
}

/* Receive-only channels belong to a context (ctx.c); a send or a close
 * from outside would wake its waiters as if it had ended (and a blocked
 * weft_mutex_lock_ctx, say, would return 0 without the mutex). Go's
 * Done() is a receive-only channel and the compiler refuses both. */
static void refuse_send(const weft_chan *channel) {
    if (channel->receive_only) weft__panic("send on a context's done channel");
}

void weft__chan_set_receive_only(weft_chan *channel) { channel->receive_only = true; }

/* Queue a waiter on an unbuffered channel. A partner appearing makes the
 * other direction ready, so it advances the channel's version; the counter
 * shares the lock's cache line, which the pusher holds anyway. */
static inline void push_handoff_waiter(weft_chan *channel, weft__waitq *queue,
                                       weft__waiter *waiter) {
    weft__waitq_push(queue, waiter);
    atomic_fetch_add(&channel->handoff_waiters, 1);
    if (channel->poll)
        weft__chan_poll_raise(channel->poll, queue == &channel->senders ? WEFT_RECV : WEFT_SEND);
}

uint64_t weft__chan_version(const weft_chan *channel) {
    return atomic_load(&channel->tail) + atomic_load(&channel->head) +
           atomic_load(&channel->handoff_waiters);
}

/* A ring allocated apart is faulted in here, at make, as Go's make zeroes
 * its buffer: left to the first lap, every page fault lands on a sender,
 * mid-stream, while its receivers catch up and poll the very slot it is
 * writing, and capacity-N spsc ran anywhere from 8 to 55 M msg/s. Huge
 * pages, which cut the faults to a few, made it worse: the kernel may
 * compact memory to find one, a stall of up to 30 ms here, in whichever
 * thread touches the page first. So the pages are ordinary ones, written
 * in one pass by the kernel (MADV_POPULATE_WRITE, Linux 5.14) or, where
 * that is refused, by touching a byte of each. */
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

static void fault_in(void *memory, size_t size) {
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t start = ((uintptr_t)memory + page - 1) & ~(page - 1);
    uintptr_t end = ((uintptr_t)memory + size) & ~(page - 1);
    if (end <= start || madvise((void *)start, end - start, MADV_POPULATE_WRITE) == 0) return;
    for (uintptr_t at = start; at < end; at += page) *(volatile unsigned char *)at = 0;
}

/* The channel lock guards a few pointer moves. glibc's adaptive mutex
 * spins briefly before sleeping: a waiter for a held lock would otherwise
 * pay a futex round trip (several microseconds on a virtual machine) for
 * a critical section of tens of nanoseconds. Copying an initialized value
 * costs less than a mutex attribute's init, set and destroy. */
static const pthread_mutex_t adaptive_lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;

/* Slots up to this size live in the channel's own block: one malloc small
 * enough for glibc's per-thread cache, instead of two allocations, one of
 * them aligned (posix_memalign bypasses that cache and splits chunks). Go's
 * ChanCreation benchmark is mostly this. Bigger rings get their own
 * calloc (see fault_in). */
enum { INLINE_SLOTS_MAX = 512 };

static bool slots_inline(size_t cap, size_t slot_size) {
    return cap > 0 && cap * slot_size <= INLINE_SLOTS_MAX;
}

weft_chan *weft_chan_make(size_t elem_size, size_t cap) {
    size_t value_size = (elem_size + 7) & ~(size_t)7;
    if (value_size < elem_size || value_size > SIZE_MAX - sizeof(slot)) goto invalid;
    size_t slot_size = sizeof(slot) + value_size;
    if (cap > SIZE_MAX / slot_size || cap > (UINT64_MAX >> 2)) goto invalid;
    size_t slots_size = cap * slot_size;
    bool inline_slots = slots_inline(cap, slot_size);

    /* Aligned by hand: the cache-line members need it, and malloc is fast. */
    size_t block_size = sizeof(weft_chan) + (inline_slots ? slots_size : 0) + CACHE_LINE - 1;
    void *block = weft__malloc(block_size);
    if (!block) goto no_memory;
    weft_chan *channel =
        (weft_chan *)(((uintptr_t)block + CACHE_LINE - 1) & ~(uintptr_t)(CACHE_LINE - 1));
    memset(channel, 0, sizeof *channel + (inline_slots ? slots_size : 0));
    channel->block = block;
    channel->elem_size = elem_size;
    channel->cap = cap;
    channel->slot_size = slot_size;
    uint64_t mark_bit = 1;
    while (mark_bit < (uint64_t)cap + 1) mark_bit <<= 1;
    channel->mark_bit = mark_bit;
    channel->one_lap = mark_bit << 1;
    if (inline_slots) {
        channel->slots = (unsigned char *)(channel + 1);
    } else if (cap > 0) {
        channel->slots = weft__calloc(cap, slot_size);
        if (!channel->slots) goto no_slots;
        fault_in(channel->slots, slots_size);
    }
    channel->lock = adaptive_lock;
    atomic_init(&channel->references, 1);
    return channel;

no_slots:
    weft__free(block);
no_memory:
    errno = ENOMEM;
    return NULL;
invalid:
    errno = EINVAL;
    return NULL;
}

/* The slots, when make allocated them apart from the channel. */
static void *separate_slots(const weft_chan *channel) {
    return slots_inline(channel->cap, channel->slot_size) ? NULL : channel->slots;
}

void weft_chan_retain(weft_chan *channel) {
    if (channel) atomic_fetch_add_explicit(&channel->references, 1, memory_order_relaxed);
}

void weft_chan_release(weft_chan *channel) {
    if (!channel) return;
    long before = atomic_fetch_sub_explicit(&channel->references, 1, memory_order_acq_rel);
    if (before > 1) return;
    if (before < 1) weft__panic("weft_chan_release of a channel with no references");
    /* A close sets the mark, which others may see and act on (receive
     * WEFT_ECLOSED, release), while it still holds the lock: wait for it
     * to let go before the lock's memory goes. No other call touches a
     * channel after its effect is visible. */
    if (is_closed(channel)) {
        pthread_mutex_lock(&channel->lock);
        pthread_mutex_unlock(&channel->lock);
    }
    pthread_mutex_destroy(&channel->lock);
    weft__chan_poll_free(channel->poll);
    if (channel->list)
        weft__list_free(channel->list);
    else
        weft__free(separate_slots(channel));
    weft__free(channel->block);
}

size_t weft_chan_cap(const weft_chan *channel) { return channel ? channel->cap : 0; }

size_t weft_chan_elem_size(const weft_chan *channel) { return channel ? channel->elem_size : 0; }

size_t weft_chan_len(const weft_chan *channel) {
    if (channel && channel->list) return weft__list_len(&channel->head, &channel->tail);
    if (!channel || channel->cap == 0) return 0;
    for (;;) {
        uint64_t tail = atomic_load(&channel->tail) & ~channel->mark_bit;
        uint64_t head = atomic_load(&channel->head);
        if ((atomic_load(&channel->tail) & ~channel->mark_bit) != tail) continue;
        uint64_t head_index = head & (channel->mark_bit - 1);
        uint64_t tail_index = tail & (channel->mark_bit - 1);
        if (head_index < tail_index) return tail_index - head_index;
        if (head_index > tail_index) return channel->cap - head_index + tail_index;
        return tail == head ? 0 : channel->cap;
    }
}

/* The position after pos: the next index, or index 0 of the next lap. */
static inline uint64_t next_position(const weft_chan *channel, uint64_t pos) {
    uint64_t index = pos & (channel->mark_bit - 1);
    if (index + 1 < channel->cap) return pos + 1;
    return (pos & ~(channel->one_lap - 1)) + channel->one_lap;
}

/* ---- wait queues -------------------------------------------------------- */

static inline weft__waitq *queue_for(weft_chan *channel, int dir) {
    return dir == WEFT_SEND ? &channel->senders : &channel->receivers;
}

static inline atomic_int *flag_for(weft_chan *channel, int dir) {
    return dir == WEFT_SEND ? &channel->senders_waiting : &channel->receivers_waiting;
}

/* Under channel->lock: what the flag of dir should say: a waiter is
 * queued, or a poll fd's observer is armed (chan_poll.h). */
static inline bool someone_waits(weft_chan *channel, int dir) {
    return !weft__waitq_empty(queue_for(channel, dir)) || weft__chan_poll_armed(channel->poll, dir);
}

/* Under channel->lock: claim the oldest open waiter of queue for a
 * partner (self's own waiters skipped), unlinking it. A select that has
 * several cases on this channel (waiter->shares_channel) has its other
 * waiters here too: unlink them now, while the lock is held, because once
 * the claimed operation completes its channel may be freed, and the
 * select must not come back to withdraw them (select.c skips the chosen
 * case's channel). Returns the claimed waiter or NULL. */
static weft__waiter *claim_partner(weft_chan *channel, weft__waitq *queue,
                                   const weft__parker *self) {
    weft__waiter *waiter = weft__waitq_claim(queue, self);
    if (waiter && waiter->shares_channel) {
        weft__waitq_remove_parker(&channel->senders, waiter->parker);
        weft__waitq_remove_parker(&channel->receivers, waiter->parker);
    }
    return waiter;
}

/* A ring operation's last step when a partner is parked (the flag was
 * seen after the position CAS): claim the oldest waiter of dir under the
 * lock, drop the lock, publish the slot (the stamp store), and only then
 * wake the waiter. The stamp store is what lets a partner see the
 * operation complete and perhaps free the channel, so it must be this
 * call's last access to the channel; the unpark touches only the
 * waiter's parker, which is never freed, and the waiter itself, whose
 * owner cannot return before that unpark. */
__attribute__((noinline)) static void
publish_and_wake(weft_chan *channel, atomic_uint_fast64_t *stamp, uint64_t value, int dir) {
    weft__waitq *queue = queue_for(channel, dir);
    pthread_mutex_lock(&channel->lock);
    weft__waiter *waiter = claim_partner(channel, queue, NULL);
    if (channel->poll) weft__chan_poll_raise(channel->poll, dir);
    atomic_store(flag_for(channel, dir), someone_waits(channel, dir));
    pthread_mutex_unlock(&channel->lock);
    weft__parker *parker = waiter ? waiter->parker : NULL;
    if (waiter) waiter->result = WEFT__RETRY;
    atomic_store_explicit(stamp, value, memory_order_release);
    if (parker) weft__parker_unpark(parker);
}

/* Publish a ring slot (its stamp := value) after the position CAS, and
 * wake a parked partner of direction dir if the flag says there is one.
 * The flag is read before the stamp store, not after: the store may be
 * the moment a partner sees this operation complete and frees the
 * channel. The seq_cst CAS before the load still pairs with the flag's
 * store (see the top). */
static inline void publish(weft_chan *channel, atomic_uint_fast64_t *stamp, uint64_t value,
                           int dir) {
    if (atomic_load(flag_for(channel, dir)))
        publish_and_wake(channel, stamp, value, dir);
    else
        atomic_store_explicit(stamp, value, memory_order_release);
}

/* Whether the ring has room (send) or a value (receive), or is closed.
 * seq_cst loads: they pair with the fast paths' CAS (see the top). */
static bool ring_ready(weft_chan *channel, int dir) {
    uint64_t tail = atomic_load(&channel->tail);
    if (tail & channel->mark_bit) return true;
    uint64_t head = atomic_load(&channel->head);
    return dir == WEFT_SEND ? head + channel->one_lap != tail : head != tail;
}

/* What a spinning thread polls: whether the slot at its own side's
 * position has changed from "full" (send) or "empty" (receive). It reads
 * only that slot and our own position, never the other side's cache line,
 * so that polling does not slow the partner it waits for. A close is not
 * seen here; the spin is short, and registering checks for it. */
static inline bool ring_may_be_ready(weft_chan *channel, int dir) {
    atomic_uint_fast64_t *own = dir == WEFT_SEND ? &channel->tail : &channel->head;
    uint64_t pos = atomic_load_explicit(own, memory_order_relaxed) & ~channel->mark_bit;
    uint64_t index = pos & (channel->mark_bit - 1);
    uint64_t stamp =
        atomic_load_explicit(&slot_at(channel, index)->stamp, memory_order_relaxed) + index;
    return dir == WEFT_SEND ? stamp + channel->one_lap != pos + 1 : stamp != pos;
}

bool weft__chan_may_be_ready(weft_chan *channel, int dir, uint64_t *seen) {
    if (channel->list) return weft__list_ready(&channel->head, &channel->tail, dir);
    if (channel->cap > 0) return ring_may_be_ready(channel, dir);
    uint64_t version = weft__chan_version(channel);
    if (version == *seen) return false;
    *seen = version;
    return true;
}

/* Under channel->lock: publish waiter for dir; see weft__chan_register. */
static bool register_locked(weft_chan *channel, int dir, weft__waiter *waiter) {
    weft__waitq *queue = queue_for(channel, dir);
    if (weft__parker_claimed(waiter->parker) != WEFT__UNCLAIMED) {
        /* A case of this wait has completed already: the unpark is on
         * its way, and a waiter pushed now would only stay behind. */
        return false;
    }
    if (is_closed(channel)) {
        /* Nobody would ever claim it but a partner that must not: an
         * unbuffered receiver claiming a sender queued after the close
         * would take a value from a closed channel. */
        return true;
    }
    if (channel->cap > 0) {
        weft__waitq_push(queue, waiter);
        atomic_store(flag_for(channel, dir), 1);
        if (channel->list) return weft__list_ready(&channel->head, &channel->tail, dir);
        return ring_ready(channel, dir);
    }
    push_handoff_waiter(channel, queue, waiter);
    weft__waitq *partners = dir == WEFT_SEND ? &channel->receivers : &channel->senders;
    return weft__waitq_has_partner(partners, waiter->parker);
}

bool weft__chan_register(weft_chan *channel, int dir, weft__waiter *waiter) {
    if (dir == WEFT_SEND) refuse_send(channel);
    pthread_mutex_lock(&channel->lock);
    bool ready = register_locked(channel, dir, waiter);
    pthread_mutex_unlock(&channel->lock);
    return ready;
}

bool weft__chan_register_cases(weft_chan *channel, const weft_case *cases, weft__waiter *waiters,
                               size_t n) {
    for (size_t i = 0; i < n; i++)
        if (cases[i].ch == channel && cases[i].dir == WEFT_SEND) refuse_send(channel);
    bool ready = false;
    pthread_mutex_lock(&channel->lock);
    for (size_t i = 0; i < n; i++)
        if (cases[i].ch == channel && register_locked(channel, cases[i].dir, &waiters[i]))
            ready = true;
    pthread_mutex_unlock(&channel->lock);
    return ready;
}

void weft__chan_unregister(weft_chan *channel, int dir, weft__waiter *waiter) {
    weft__waitq *queue = queue_for(channel, dir);
    pthread_mutex_lock(&channel->lock);
    weft__waitq_remove(queue, waiter);
    if (channel->cap > 0) atomic_store(flag_for(channel, dir), someone_waits(channel, dir));
    pthread_mutex_unlock(&channel->lock);
}

/* ---- buffered: the ring ------------------------------------------------- */

static int ring_send(weft_chan *channel, const void *elem) {
    weft__backoff backoff = {0};
    uint64_t tail = atomic_load_explicit(&channel->tail, memory_order_relaxed);
    for (;;) {
        if (tail & channel->mark_bit) {
            /* tail was read relaxed: an acquire re-read makes the close
             * happen before this answer, as before a receive reporting it. */
            (void)atomic_load_explicit(&channel->tail, memory_order_acquire);
            return WEFT_ECLOSED;
        }
        uint64_t index = tail & (channel->mark_bit - 1);
        slot *s = slot_at(channel, index);
        uint64_t stamp = atomic_load_explicit(&s->stamp, memory_order_acquire) + index;
        if (stamp == tail) {
            uint64_t next = next_position(channel, tail);
            if (atomic_compare_exchange_weak_explicit(&channel->tail, &tail, next,
                                                      memory_order_seq_cst, memory_order_relaxed)) {
                copy_value(slot_value(s), elem, channel->elem_size);
                publish(channel, &s->stamp, tail + 1 - index, WEFT_RECV);
                return 0;
            }
            weft__backoff_lost_race(&backoff);
        } else if (stamp + channel->one_lap == tail + 1) {
            /* The slot still holds last lap's value: full, unless a receiver
             * has taken it and not yet freed the slot. */
            uint64_t head = atomic_load(&channel->head);
            if (head + channel->one_lap == tail) return WEFT_EAGAIN;
            weft__backoff_snooze(&backoff);
            tail = atomic_load_explicit(&channel->tail, memory_order_relaxed);
        } else {
            /* Another sender moved tail past us; catch up. */
            weft__backoff_lost_race(&backoff);
            tail = atomic_load_explicit(&channel->tail, memory_order_relaxed);
        }
    }
}

static int ring_recv(weft_chan *channel, void *elem) {
    weft__backoff backoff = {0};
    uint64_t head = atomic_load_explicit(&channel->head, memory_order_relaxed);
    for (;;) {
        uint64_t index = head & (channel->mark_bit - 1);
        slot *s = slot_at(channel, index);
        uint64_t stamp = atomic_load_explicit(&s->stamp, memory_order_acquire) + index;
        if (stamp == head + 1) {
            uint64_t next = next_position(channel, head);
            if (atomic_compare_exchange_weak_explicit(&channel->head, &head, next,
                                                      memory_order_seq_cst, memory_order_relaxed)) {
                if (elem) copy_value(elem, slot_value(s), channel->elem_size);
                publish(channel, &s->stamp, head + channel->one_lap - index, WEFT_SEND);
                return 0;
            }
            weft__backoff_lost_race(&backoff);
        } else if (stamp == head) {
            /* Nothing published here: empty, unless a sender has claimed the
             * slot and is still writing it. */
            uint64_t tail = atomic_load(&channel->tail);
            if ((tail & ~channel->mark_bit) == head)
                return (tail & channel->mark_bit) ? WEFT_ECLOSED : WEFT_EAGAIN;
            weft__backoff_snooze(&backoff);
            head = atomic_load_explicit(&channel->head, memory_order_relaxed);
        } else {
            weft__backoff_lost_race(&backoff);
            head = atomic_load_explicit(&channel->head, memory_order_relaxed);
        }
    }
}

/* ---- unbuffered: hand-off under the lock -------------------------------- */

/* Whether a deadline means "do not block": at or before now. */
static bool passed(weft_time deadline) {
    return deadline <= 0 || (deadline != WEFT_FOREVER && weft_now() >= deadline);
}

/* Finish a hand-off with a partner we claimed (our direction is dir): copy
 * the value across, outside the lock, then wake the partner. */
static void complete_partner(weft_chan *channel, weft__waiter *partner, int dir, void *elem) {
    if (dir == WEFT_SEND) {
        if (partner->elem) copy_value(partner->elem, elem, channel->elem_size);
    } else if (elem) {
        copy_value(elem, partner->elem, channel->elem_size);
    }
    partner->result = 0;
    weft__parker_unpark(partner->parker);
}

/* The try forms first look, without the lock, for a queued partner: with
 * none queued at that instant and the channel open when looked at next
 * (so open at that instant too), "would block" was true then, and
 * threads that poll an idle channel (non-blocking select) do not fight
 * over its lock. A close seen instead is final. */
static int handoff_send(weft_chan *channel, const void *elem, const weft__parker *self) {
    refuse_send(channel);
    if (weft__waitq_maybe_empty(&channel->receivers))
        return is_closed(channel) ? WEFT_ECLOSED : WEFT_EAGAIN;
    pthread_mutex_lock(&channel->lock);
    if (is_closed(channel)) {
        pthread_mutex_unlock(&channel->lock);
        return WEFT_ECLOSED;
    }
    weft__waiter *receiver = claim_partner(channel, &channel->receivers, self);
    pthread_mutex_unlock(&channel->lock);
    if (!receiver) return WEFT_EAGAIN;
    complete_partner(channel, receiver, WEFT_SEND, (void *)elem);
    return 0;
}

static int handoff_recv(weft_chan *channel, void *elem, const weft__parker *self) {
    if (weft__waitq_maybe_empty(&channel->senders))
        return is_closed(channel) ? WEFT_ECLOSED : WEFT_EAGAIN;
    pthread_mutex_lock(&channel->lock);
    weft__waiter *sender = claim_partner(channel, &channel->senders, self);
    bool closed = is_closed(channel);
    pthread_mutex_unlock(&channel->lock);
    if (!sender) return closed ? WEFT_ECLOSED : WEFT_EAGAIN;
    complete_partner(channel, sender, WEFT_RECV, elem);
    return 0;
}

/* ---- what select and the blocking paths use ----------------------------- */

static int list_attempt(weft_chan *channel, int dir, void *elem, bool patient);

int weft__chan_try(weft_chan *channel, int dir, void *elem, const weft__parker *self) {
    if (channel->list) return list_attempt(channel, dir, elem, false);
    if (channel->cap > 0)
        return dir == WEFT_SEND ? ring_send(channel, elem) : ring_recv(channel, elem);
    return dir == WEFT_SEND ? handoff_send(channel, elem, self) : handoff_recv(channel, elem, self);
}

/* Claim every open waiter of queue and chain it onto *wake (through
 * waiter->next, which is ours once claimed) with the given result. */
static void claim_all(weft__waitq *queue, int result, weft__waiter **wake) {
    weft__waiter *waiter;
    while ((waiter = weft__waitq_claim(queue, NULL)) != NULL) {
        waiter->result = result;
        waiter->next = *wake;
        *wake = waiter;
    }
}

int weft_chan_close(weft_chan *channel) {
    if (channel && channel->receive_only) weft__panic("close of a context's done channel");
    return weft__chan_close_owned(channel);
}

int weft__chan_close_owned(weft_chan *channel) {
    if (!channel) return WEFT_EINVAL;
    weft__waiter *wake = NULL;
    pthread_mutex_lock(&channel->lock);
    if (is_closed(channel)) { /* only a close sets the mark, under the lock */
        pthread_mutex_unlock(&channel->lock);
        return WEFT_ECLOSED;
    }
    int result = channel->cap > 0 ? WEFT__RETRY : WEFT_ECLOSED;
    claim_all(&channel->receivers, result, &wake);
    claim_all(&channel->senders, result, &wake);
    atomic_store(&channel->senders_waiting, 0);
    atomic_store(&channel->receivers_waiting, 0);
    if (channel->poll) weft__chan_poll_close(channel->poll);
    /* The mark makes the close visible without the lock (a receiver that
     * sees it may release the channel at once), so it is the last store;
     * the unlock that follows is waited out by the last release (see
     * weft_chan_release), and the wake-ups touch only parkers. */
    atomic_fetch_or(&channel->tail, channel->mark_bit);
    pthread_mutex_unlock(&channel->lock);
    while (wake) {
        weft__waiter *next = wake->next;
        weft__parker_unpark(wake->parker);
        wake = next;
    }
    return 0;
}

/* ---- poll fds: chan_pollfd.c's view of the channel (chan_poll.h) -------- */

void weft__chan_lock(weft_chan *channel) { pthread_mutex_lock(&channel->lock); }
void weft__chan_unlock(weft_chan *channel) { pthread_mutex_unlock(&channel->lock); }
weft__chan_poll **weft__chan_poll_slot(weft_chan *channel) { return &channel->poll; }
bool weft__chan_refuses_send(const weft_chan *channel) { return channel->receive_only; }

/* As register_locked for a waiter that never takes a value: the flag's
 * seq_cst store before ring_ready's loads, so a partner either sees the
 * flag (and raises the fd) or is seen here. */
bool weft__chan_watch_locked(weft_chan *channel, int dir) {
    if (is_closed(channel)) return true;
    if (channel->list) {
        atomic_store(flag_for(channel, dir), 1);
        return weft__list_ready(&channel->head, &channel->tail, dir);
    }
    if (channel->cap > 0) {
        atomic_store(flag_for(channel, dir), 1);
        return ring_ready(channel, dir);
    }
    return weft__waitq_has_partner(dir == WEFT_SEND ? &channel->receivers : &channel->senders,
                                   NULL);
}

/* A try form's one attempt; an WEFT_EAGAIN re-arms a poll fd of dir. */
static int try_once(weft_chan *channel, int dir, void *elem) {
    int result = weft__chan_try(channel, dir, elem, NULL);
    if (result == WEFT_EAGAIN && __atomic_load_n(&channel->poll, __ATOMIC_ACQUIRE))
        weft__chan_poll_rearm(channel, dir);
    return result;
}

/* ---- unbounded: the list (chan_list.c) ---------------------------------- */

/* An unbounded channel's stand-in ring: one slot whose stamp no position
 * word matches (that would take 2^63 operations), so that the ring fast
 * paths, which test nothing else, fall through to operate and the list. */
static slot never_ready_slot = {UINT64_MAX};

weft_chan *weft_chan_make_unbounded(size_t elem_size) {
    weft__list *list = weft__list_new(elem_size);
    if (!list) return NULL;
    weft_chan *channel = weft_chan_make(elem_size, 0);
    if (!channel) {
        int error = errno;
        weft__list_free(list);
        errno = error;
        return NULL;
    }
    /* mark_bit is 1, as the list's closed bit (WEFT__LIST_CLOSED). */
    channel->list = list;
    channel->cap = WEFT_UNBOUNDED;
    channel->slots = (unsigned char *)&never_ready_slot;
    return channel;
}

/* The flag for dir was seen set: claim its oldest waiter to retry, and
 * return its parker, to unpark once the value is published. */
static weft__parker *claim_to_retry(weft_chan *channel, int dir) {
    weft__waitq *queue = queue_for(channel, dir);
    pthread_mutex_lock(&channel->lock);
    weft__waiter *waiter = claim_partner(channel, queue, NULL);
    if (channel->poll) weft__chan_poll_raise(channel->poll, dir);
    atomic_store(flag_for(channel, dir), someone_waits(channel, dir));
    pthread_mutex_unlock(&channel->lock);
    if (!waiter) return NULL;
    waiter->result = WEFT__RETRY;
    return waiter->parker;
}

/* A position moved into a new block, which may let every waiter of dir
 * proceed (a sender: the tail is linked; receivers: the head reached
 * values they were told to wait for): wake them all to retry. */
static void wake_all_to_retry(weft_chan *channel, int dir) {
    if (!atomic_load(flag_for(channel, dir))) return;
    weft__waitq *queue = queue_for(channel, dir);
    weft__waiter *wake = NULL, *waiter;
    pthread_mutex_lock(&channel->lock);
    while ((waiter = claim_partner(channel, queue, NULL)) != NULL) {
        waiter->result = WEFT__RETRY;
        waiter->next = wake;
        wake = waiter;
    }
    if (channel->poll) weft__chan_poll_raise(channel->poll, dir);
    atomic_store(flag_for(channel, dir), someone_waits(channel, dir));
    pthread_mutex_unlock(&channel->lock);
    for (; wake; wake = waiter) {
        waiter = wake->next;
        weft__parker_unpark(wake->parker);
    }
}

/* A send on the list: reserve, write, and publish, waking a parked
 * receiver as publish does for a ring (its flag read before the commit,
 * which may let a receiver free the channel). A commit that finds its
 * slot given up sends again. */
static int list_send(weft_chan *channel, const void *elem) {
    weft__list *list = channel->list;
    for (;;) {
        weft__list_ticket ticket;
        int result = weft__list_reserve(list, &channel->tail, &ticket);
        if (result != 0) return result;
        if (ticket.linked) wake_all_to_retry(channel, WEFT_SEND);
        if (__builtin_expect(weft__list_reserved_hook != NULL, 0)) weft__list_reserved_hook();
        copy_value(weft__list_value(list, &ticket), elem, channel->elem_size);
        weft__parker *parker = NULL;
        if (atomic_load(&channel->receivers_waiting)) parker = claim_to_retry(channel, WEFT_RECV);
        bool moved_head = false;
        bool delivered = weft__list_commit(list, &channel->head, &ticket, &moved_head);
        if (parker) weft__parker_unpark(parker);
        if (delivered) return 0;
        if (moved_head) wake_all_to_retry(channel, WEFT_RECV);
    }
}

/* One attempt on the list; patient: wait a little longer for a sender
 * that is writing the value at the head (never for a try form). */
static int list_attempt(weft_chan *channel, int dir, void *elem, bool patient) {
    if (dir == WEFT_SEND) return list_send(channel, elem);
    bool moved_head = false;
    int result =
        weft__list_take(channel->list, &channel->head, &channel->tail, elem, patient, &moved_head);
    if (moved_head) wake_all_to_retry(channel, WEFT_RECV);
    return result;
}

/* ---- public operations -------------------------------------------------- */

/* An unbuffered send or receive, as Go's: under one hold of the lock,
 * either complete with a parked partner or queue our own waiter; then park
 * until a partner (or a close) completes us. Nobody else can claim our
 * parker before the waiter is queued, so no self-claim is needed first. */
static int handoff(weft_chan *channel, int dir, void *elem, weft_time deadline) {
    if (dir == WEFT_SEND) refuse_send(channel);
    if (passed(deadline)) return try_once(channel, dir, elem);
    weft__parker *self = weft__parker_self();
    if (!self) { /* no parker: the engine blocks by polling */
        weft_case only = {channel, dir, elem, 0};
        int result =
            weft__engine_wait(&only, 1, NULL, deadline, weft__chan_kinds,
                              dir == WEFT_SEND ? "weft_chan_send" : "weft_chan_recv", channel);
        return result < 0 ? result : only.err;
    }
    weft__waitq *partners = dir == WEFT_SEND ? &channel->receivers : &channel->senders;
    /* Read now: once a partner has completed us, it may free the channel
     * before we wake, so nothing after the park may touch it. */
    size_t elem_size = channel->elem_size;
    /* The waiter embedded in our parker, with the value inline when it
     * fits: a partner then touches one cache line of ours. */
    bool inline_value = elem_size <= sizeof self->value;
    weft__parker_arm(self);
    weft__waiter *waiter = &self->waiter;
    *waiter = (weft__waiter){.parker = self, .elem = elem};
    if (inline_value && elem) {
        waiter->elem = &self->value;
        if (dir == WEFT_SEND) copy_value(&self->value, elem, elem_size);
    }

    pthread_mutex_lock(&channel->lock);
    bool closed = is_closed(channel);
    weft__waiter *partner =
        dir == WEFT_SEND && closed ? NULL : claim_partner(channel, partners, self);
    if (!partner && !closed) push_handoff_waiter(channel, queue_for(channel, dir), waiter);
    pthread_mutex_unlock(&channel->lock);

    if (partner) {
        complete_partner(channel, partner, dir, elem);
        return 0;
    }
    if (closed) return WEFT_ECLOSED;
    weft__wait_begin(self, dir == WEFT_SEND ? "weft_chan_send" : "weft_chan_recv", channel, 0, 0);
    if (weft__parker_park(self, deadline) == WEFT_ETIMEDOUT) {
        if (weft__parker_claim(self, WEFT__CLAIM_SELF)) {
            weft__chan_unregister(channel, dir, waiter);
            weft__wait_end(self);
            return WEFT_ETIMEDOUT;
        }
        weft__parker_park(self, WEFT_FOREVER); /* a partner beat the deadline */
    }
    weft__wait_end(self);
    if (dir == WEFT_RECV && waiter->result == 0 && inline_value && elem)
        copy_value(elem, &self->value, elem_size);
    return waiter->result;
}

/* A ring operation that did not succeed at once: a try form makes one
 * exact attempt; a blocking one polls its slot (see ring_may_be_ready)
 * for as long as the thread's patience lasts (parker.h), unregistered so
 * that a running partner keeps its fast path, then parks. */
__attribute__((noinline)) static int operate(weft_chan *channel, int dir, void *elem,
                                             weft_time deadline) {
    if (!channel) return WEFT_EINVAL;
    if (!elem && dir == WEFT_SEND && channel->elem_size > 0) return WEFT_EINVAL;
    if (channel->cap == 0) return handoff(channel, dir, elem, deadline);
    if (passed(deadline)) return try_once(channel, dir, elem);
    weft__parker *self = weft__parker_self();
    int result;
    if (channel->list) {
        /* One patient attempt; then as a ring's, but polling positions. */
        result = list_attempt(channel, dir, elem, true);
        if (result != WEFT_EAGAIN) goto out;
    }
    for (bool first = true; self && weft__parker_wait_awake(self, first); first = false) {
        if (channel->list ? weft__list_ready(&channel->head, &channel->tail, dir)
                          : ring_may_be_ready(channel, dir)) {
            result = weft__chan_try(channel, dir, elem, NULL);
            if (result != WEFT_EAGAIN) goto out;
        }
    }
    weft_case only = {channel, dir, elem, 0};
    const char *call = dir == WEFT_SEND ? "weft_chan_send" : "weft_chan_recv";
    /* Described here, with the ring's numbers, rather than by the engine. */
    weft__wait_begin(self, call, channel, weft_chan_cap(channel), weft_chan_len(channel));
    result = weft__engine_wait(&only, 1, NULL, deadline, weft__chan_kinds, call, channel);
    weft__wait_end(self);
    if (result >= 0) result = only.err;
out:
    if (self) weft__parker_wait_done(self);
    return result;
}

/* The uncontended ring operation, small enough to inline into the public
 * entry points: one attempt, and anything unusual (a lost race, a full or
 * empty ring, a close) goes to operate. Returns 0 or SLOW. */
enum { SLOW = 1 };

__attribute__((always_inline)) static inline int fast_send(weft_chan *channel, const void *elem) {
    if (!channel || channel->cap == 0 || (!elem && channel->elem_size > 0)) return SLOW;
    uint64_t tail = atomic_load_explicit(&channel->tail, memory_order_relaxed);
    uint64_t index = tail & (channel->mark_bit - 1); /* a closed tail never matches a stamp */
    slot *s = slot_at(channel, index);
    if (atomic_load_explicit(&s->stamp, memory_order_acquire) + index != tail) return SLOW;
    if (!atomic_compare_exchange_strong_explicit(&channel->tail, &tail,
                                                 next_position(channel, tail), memory_order_seq_cst,
                                                 memory_order_relaxed))
        return SLOW;
    copy_value(slot_value(s), elem, channel->elem_size);
    publish(channel, &s->stamp, tail + 1 - index, WEFT_RECV);
    return 0;
}

__attribute__((always_inline)) static inline int fast_recv(weft_chan *channel, void *elem) {
    if (!channel || channel->cap == 0) return SLOW;
    uint64_t head = atomic_load_explicit(&channel->head, memory_order_relaxed);
    uint64_t index = head & (channel->mark_bit - 1);
    slot *s = slot_at(channel, index);
    if (atomic_load_explicit(&s->stamp, memory_order_acquire) + index != head + 1) return SLOW;
    if (!atomic_compare_exchange_strong_explicit(&channel->head, &head,
                                                 next_position(channel, head), memory_order_seq_cst,
                                                 memory_order_relaxed))
        return SLOW;
    if (elem) copy_value(elem, slot_value(s), channel->elem_size);
    publish(channel, &s->stamp, head + channel->one_lap - index, WEFT_SEND);
    return 0;
}

int weft_chan_send(weft_chan *channel, const void *elem) {
    if (fast_send(channel, elem) == 0) return 0;
    return operate(channel, WEFT_SEND, (void *)elem, WEFT_FOREVER);
}

int weft_chan_recv(weft_chan *channel, void *elem) {
    if (fast_recv(channel, elem) == 0) return 0;
    return operate(channel, WEFT_RECV, elem, WEFT_FOREVER);
}

int weft_chan_try_send(weft_chan *channel, const void *elem) {
    if (fast_send(channel, elem) == 0) return 0;
    return operate(channel, WEFT_SEND, (void *)elem, WEFT_NOWAIT);
}

int weft_chan_try_recv(weft_chan *channel, void *elem) {
    if (fast_recv(channel, elem) == 0) return 0;
    return operate(channel, WEFT_RECV, elem, WEFT_NOWAIT);
}

int weft_chan_send_until(weft_chan *channel, const void *elem, weft_time deadline) {
    if (fast_send(channel, elem) == 0) return 0;
    return operate(channel, WEFT_SEND, (void *)elem, deadline);
}

int weft_chan_recv_until(weft_chan *channel, void *elem, weft_time deadline) {
    if (fast_recv(channel, elem) == 0) return 0;
    return operate(channel, WEFT_RECV, elem, deadline);
}

/* ---- the channel as a source of the blocking engine (engine.h) -------- */

static int source_attempt(weft_case *c, const weft__parker *self) {
    if (!c->ch) return WEFT_EAGAIN; /* a nil channel: never ready */
    return weft__chan_try(c->ch, c->dir, c->elem, self);
}

/* Whether case i is the first (in array order) on its channel: the one
 * whose turn publishes every case on that channel at once. */
static bool first_case_on(const weft_case *cases, size_t i) {
    for (size_t j = 0; j < i; j++)
        if (cases[j].ch == cases[i].ch) return false;
    return true;
}

static bool source_enlist(const weft_case *cases, size_t n, size_t i, weft__waiter *waiters) {
    weft_chan *channel = cases[i].ch;
    if (!channel) return false;
    if (!waiters[i].shares_channel) return weft__chan_register(channel, cases[i].dir, &waiters[i]);
    return first_case_on(cases, i) && weft__chan_register_cases(channel, cases, waiters, n);
}

static void source_withdraw(const weft_case *c, weft__waiter *waiter) {
    if (c->ch) weft__chan_unregister(c->ch, c->dir, waiter);
}

static const void *source_object(const weft_case *c) { return c->ch; }

const weft__source weft__chan_source = {
    .attempt = source_attempt,
    .enlist = source_enlist,
    .withdraw = source_withdraw,
    .object = source_object,
};

const weft__source_kinds weft__chan_kinds = {NULL, &weft__chan_source, &weft__chan_source, NULL};
