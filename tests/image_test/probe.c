// The program of the image_test fixture image: shows who and where it runs, and can print to
// either stream and exit with any code, so each kind of command check can pass and fail.
//   probe                      prints "probe uid=U gid=G cwd=DIR greeting=$GREETING" and
//                              "probe stderr line" on stderr, exits 0
//   probe out TEXT err TEXT exit N   the steps in order
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
  if (argc == 1) {
    char cwd[4096];
    const char *greeting = getenv("GREETING");
    if (getcwd(cwd, sizeof cwd) == NULL) strcpy(cwd, "?");
    printf("probe uid=%d gid=%d cwd=%s greeting=%s\n", (int)getuid(), (int)getgid(), cwd,
           greeting ? greeting : "(unset)");
    fprintf(stderr, "probe stderr line\n");
    return 0;
  }
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "out") == 0) {
      printf("%s\n", argv[i + 1]);
    } else if (strcmp(argv[i], "err") == 0) {
      fprintf(stderr, "%s\n", argv[i + 1]);
    } else if (strcmp(argv[i], "exit") == 0) {
      fflush(stdout);
      return atoi(argv[i + 1]);
    } else {
      fprintf(stderr, "probe: unknown step %s\n", argv[i]);
      return 64;
    }
  }
  return 0;
}
