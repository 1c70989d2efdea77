// The smallest useful image: one static binary, nothing else.
#include <stdio.h>

int main(void) {
  puts("hello from rules_shiko");
  return 0;
}
