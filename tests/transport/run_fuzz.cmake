# Builds the validation fuzzer with clang (libFuzzer + ASan + UBSan) and runs it for SECONDS.
file(MAKE_DIRECTORY ${OUT}/corpus)
execute_process(
  COMMAND ${CLANGXX} -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined
          -fno-sanitize-recover=undefined -I${SRC}/shared/include
          ${SRC}/tests/transport/fuzz_validation.cpp ${SRC}/shared/src/protocol.cpp
          ${SRC}/shared/src/pixels.cpp -o ${OUT}/fuzz_validation
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cannot build the fuzzer (needs clang and libclang-rt-14-dev)")
endif()
execute_process(COMMAND ${OUT}/fuzz_validation -max_total_time=${SECONDS} -rss_limit_mb=2048
                        -timeout=10 ${OUT}/corpus
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "the fuzzer found a crash (exit ${rc}); see the output above")
endif()
