/* hello: the smallest program built against an installed weft.
 *
 * test/install/check.sh compiles it with `pkg-config --cflags --libs weft`
 * (shared), `pkg-config --static --cflags --libs weft` (static) and through
 * the CMake package (weft::weft, weft::weft_static): the installed headers
 * and library are the same version, and a buffered channel carries one
 * value, is closed, and then reports closed to both ends. */
#include <stdio.h>
#include <string.h>

#include <weft.h>

static int fail(const char *what, int err) {
    fprintf(stderr, "hello: %s: %s\n", what, weft_strerror(err));
    return 1;
}

int main(void) {
    if (strcmp(weft_version(), WEFT_VERSION_STRING) != 0) {
        fprintf(stderr, "hello: headers are weft %s, the library is %s\n", WEFT_VERSION_STRING,
                weft_version());
        return 1;
    }
    weft_chan *chan = weft_chan_make(sizeof(int), 4);
    if (!chan) return fail("weft_chan_make", WEFT_ENOMEM);

    int sent = 42, received = 0, err;
    if ((err = weft_chan_send(chan, &sent)) != WEFT_OK) return fail("send", err);
    if (weft_chan_len(chan) != 1) return fail("len after send", WEFT_EINVAL);
    if ((err = weft_chan_recv(chan, &received)) != WEFT_OK) return fail("recv", err);
    if (received != sent) return fail("received a different value", WEFT_EINVAL);
    if ((err = weft_chan_close(chan)) != WEFT_OK) return fail("close", err);
    if ((err = weft_chan_recv(chan, &received)) != WEFT_ECLOSED)
        return fail("recv after close", err);
    if ((err = weft_chan_send(chan, &sent)) != WEFT_ECLOSED) return fail("send after close", err);
    weft_chan_release(chan);

    puts("OK");
    return 0;
}
