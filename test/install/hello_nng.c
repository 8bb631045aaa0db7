/* A consumer of the optional NNG module, built by test/install/check.sh
 * against an installed weft when weft-nng is installed: three values
 * through a stream bridge over inproc://; prints OK. */
#include <stdint.h>
#include <stdio.h>
#include <weft.h>
#include <weft/nng.h>

int main(void) {
    weft_chan *to = weft_chan_make(sizeof(uint64_t), 4);
    weft_chan *from = weft_chan_make(sizeof(uint64_t), 4);
    weft_nng_opts in = {.url = "inproc://hello", .listen = true, .senders = 1};
    weft_nng_opts out = {.url = "inproc://hello"};
    weft_nng_bridge *rb = weft_nng_stream_recv(to, &in, NULL);
    weft_nng_bridge *sb = weft_nng_stream_send(from, &out, NULL);
    if (!rb || !sb) {
        printf("no bridge: %s\n", weft_nng_last_error());
        return 1;
    }
    uint64_t sum = 0, v;
    for (v = 1; v <= 3; v++) weft_chan_send(from, &v);
    weft_chan_close(from);
    while (weft_chan_recv(to, &v) == 0) sum += v;
    int rc = weft_nng_wait(rb, weft_deadline(WEFT_SEC(10)));
    weft_nng_release(sb);
    weft_nng_release(rb);
    weft_chan_release(from);
    weft_chan_release(to);
    printf(rc == 0 && sum == 6 ? "OK\n" : "sum %llu, %d\n", (unsigned long long)sum, rc);
    return 0;
}
