/* The README's example: a producer goroutine sends ints over a buffered
 * channel and closes it; main receives until the close. Prints 1 to 5. */
#include <stdio.h>
#include <weft.h>

static void produce(void *arg) {
    weft_chan *numbers = arg;
    for (int i = 1; i <= 5; i++) weft_chan_send(numbers, &i); /* copies the int in */
    weft_chan_close(numbers);
}

int main(void) {
    weft_chan *numbers = weft_chan_make(sizeof(int), 16); /* buffered: 16 ints */
    if (!numbers || weft_go(produce, numbers) != WEFT_OK) return 1;
    int n;
    while (weft_chan_recv(numbers, &n) == WEFT_OK) printf("%d\n", n); /* WEFT_ECLOSED ends it */
    weft_chan_release(numbers);
    return 0;
}
