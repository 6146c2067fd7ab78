#include <stdio.h>
#include "greet.h"

int main(void) {
    printf("%s, %d\n", GREETING, answer());
    return 0;
}
