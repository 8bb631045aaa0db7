/* peers.c — the peer table: the condvar baseline and weft, each wrapped
 * into the four operations of struct peer. */
#include "peers.h"

#include <string.h>

#include "condvar_queue.h"
#include "weft/chan.h"

static void *condvar_make(size_t capacity) { return condvar_queue_make(capacity); }

static void condvar_release(void *channel) { condvar_queue_free(channel); }

static int condvar_send(void *channel, long value) {
    condvar_queue_send(channel, value);
    return 0;
}

static int condvar_receive(void *channel, long *value) {
    *value = condvar_queue_receive(channel);
    return 0;
}

static void *weft_make(size_t capacity) { return weft_chan_make(sizeof(long), capacity); }

static void weft_release(void *channel) { weft_chan_release(channel); }

static int weft_send(void *channel, long value) { return weft_chan_send(channel, &value); }

static int weft_receive(void *channel, long *value) { return weft_chan_recv(channel, value); }

const bench_peer peers[] = {
    {"condvar", "ring + pthread mutex + condvars; one slot and a hand-off wait at capacity 0",
     false, condvar_make, condvar_release, condvar_send, condvar_receive},
    {"weft", "weft_chan_* and weft_select", true, weft_make, weft_release, weft_send, weft_receive},
};

const size_t peer_count = sizeof peers / sizeof peers[0];

const bench_peer *peer_find(const char *name) {
    for (size_t i = 0; i < peer_count; i++)
        if (strcmp(peers[i].name, name) == 0) return &peers[i];
    return NULL;
}
