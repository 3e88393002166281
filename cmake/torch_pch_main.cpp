int main() { return 0; }  // anchor for the executables precompiled header
