/* Surviving fork(): weft's own threads (pooled workers, the timer thread)
 * do not exist in a child process, and a lock one of them held at the
 * fork would stay held there forever. pthread_atfork handlers, installed
 * once on first use of a thread-owning module, take the module-wide locks
 * before the fork (so the child inherits them in a known state), release
 * them afterwards in the parent, and in the child release them and forget
 * the threads: pools start empty (new goroutines start new threads) and
 * the timer thread is started again if timers are pending.
 *
 * What no handler can repair: a channel, context or sync object that
 * another thread was using at the moment of the fork (its lock may be
 * held, its waiters gone). A child may use objects it makes itself, and
 * objects no other thread touched across the fork. */
#ifndef WEFT_LIB_FORK_H
#define WEFT_LIB_FORK_H

/* Install the handlers (once; cheap after the first call). */
void weft__fork_watch(void);

/* Each module's part, called by the handlers in this order: prepare takes
 * the timer lock (after any fire in progress has returned), then the
 * pools, then (in the parker's own handlers, which the parker registers
 * first: weft__parker_fork_watch in parker.h) the parker recycling lock;
 * parent and child undo it in reverse. In the child, the deadlock
 * registry forgets its sleepers after the parkers are renewed and before
 * the pools hand back their lost threads' parkers. */
void weft__pool_fork_prepare(void);
void weft__pool_fork_parent(void);
void weft__pool_fork_child(void);
void weft__timer_fork_prepare(void);
void weft__timer_fork_parent(void);
void weft__timer_fork_child(void);

#endif
