/* primes: a C guest (Guest.from_c / examples/guest_path.py primes).
 *
 * Prints the primes below 50 on the PL011 and returns how many there were;
 * the runtime reports main's return value with hypercall 0 and powers off. */
#include <armvcpu_guest.h>

static char digits[4];

static void print_number(unsigned n) {
    int i = 0;
    do {
        digits[i++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    char out[5];
    int j = 0;
    while (i > 0) out[j++] = digits[--i];
    out[j] = '\0';
    armvcpu_puts(out);
}

int main(void) {
    unsigned count = 0;
    armvcpu_puts("primes below 50:");
    for (unsigned n = 2; n < 50; n++) {
        unsigned d = 2;
        while (d * d <= n && n % d != 0) d++;
        if (d * d > n) {
            armvcpu_puts(" ");
            print_number(n);
            count++;
        }
    }
    armvcpu_puts("\n");
    return (int)count;
}
