// C++ under the cross toolchain: libstdc++'s headers (builtin include directories) and its
// static library (linked after the objects). Prints one line through iostream.
#include <iostream>
#include <string>

int main() {
  std::string who = "rules_shiko";
  std::cout << "hello from " << who << " in C++" << std::endl;
  return 0;
}
