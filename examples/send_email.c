/* Fire off several tasks at once and wait for all of them: three "send
 * email" goroutines joined by a WaitGroup. It is Go's
 *
 *     var wg sync.WaitGroup
 *     for i, address := range addresses {
 *         wg.Add(1)
 *         go func() {
 *             defer wg.Done()
 *             receipts[i] = sendEmail(address)
 *         }()
 *     }
 *     wg.Wait()
 *     for _, receipt := range receipts {
 *         fmt.Println(receipt)
 *     }
 *
 * Each goroutine writes only its own slot of receipts, so they need no
 * lock; weft_wg_wait returning makes every slot visible to main, which
 * then prints them in the order of the addresses, whatever order the
 * goroutines ran in. Prints "sent to <address>" for each of the three
 * addresses, then "3 emails sent". */
#include <stdio.h>
#include <weft.h>

enum { EMAILS = 3 };

typedef struct {
    const char *address;
    weft_wg *sent;     /* borrowed: main's WaitGroup, which outlives the goroutine */
    char receipt[128]; /* written by the goroutine, read by main after the wait */
} email;

/* Stands in for talking to a mail server. */
static void send_email(const char *address, char *receipt, size_t size) {
    snprintf(receipt, size, "sent to %s", address);
}

static void send_one(void *arg) {
    email *message = arg;
    send_email(message->address, message->receipt, sizeof message->receipt);
    weft_wg_done(message->sent); /* Go's defer wg.Done(): last thing the goroutine does */
}

int main(void) {
    static const char *const addresses[EMAILS] = {"ada@example.com", "grace@example.com",
                                                  "linus@example.com"};
    weft_wg sent = WEFT_WG_INIT;
    email emails[EMAILS] = {{0}};

    for (int i = 0; i < EMAILS; i++) {
        emails[i].address = addresses[i];
        emails[i].sent = &sent;
        weft_wg_add(&sent, 1); /* before weft_go, so wait cannot miss this goroutine */
        int err = weft_go(send_one, &emails[i]);
        if (err != WEFT_OK) {
            weft_wg_done(&sent); /* it never ran: undo its add */
            fprintf(stderr, "weft_go: %s\n", weft_strerror(err));
            break;
        }
    }
    weft_wg_wait(&sent); /* even after a failure: the started ones use emails[] */

    int failed = 0;
    for (int i = 0; i < EMAILS; i++) {
        if (emails[i].receipt[0]) {
            printf("%s\n", emails[i].receipt);
        } else { /* its goroutine never ran */
            printf("not sent to %s\n", addresses[i]);
            failed = 1;
        }
    }
    if (failed) return 1;
    printf("%d emails sent\n", EMAILS);
    return 0;
}
