#include <cstdio>

int main() {
  std::fprintf(stderr, "qwen-imaged: not built yet\n");
  return 2;
}
