# Runs the `qwen-image` CLI once and checks its exit code and output.
#   -DEXE=path -DARGS="a^^b^^c" [-DSTDIN=file] -DRC=expected exit code
#   [-DOUT_FILE=file whose content stdout must equal] [-DERR_HAS=text stderr must contain]
string(REPLACE "^^" ";" ARGS "${ARGS}")
if(DEFINED STDIN)
  set(_in INPUT_FILE ${STDIN})
endif()
execute_process(COMMAND ${EXE} ${ARGS} ${_in} RESULT_VARIABLE rc OUTPUT_VARIABLE out
                ERROR_VARIABLE err)
if(NOT rc STREQUAL RC)
  message(FATAL_ERROR "exit code ${rc}, expected ${RC}\nstdout: ${out}\nstderr: ${err}")
endif()
if(DEFINED OUT_FILE)
  file(READ ${OUT_FILE} expected)
  if(NOT out STREQUAL expected)
    message(FATAL_ERROR "stdout differs\n--- got:\n${out}\n--- expected:\n${expected}")
  endif()
endif()
if(DEFINED ERR_HAS)
  string(FIND "${err}" "${ERR_HAS}" pos)
  if(pos EQUAL -1)
    message(FATAL_ERROR "stderr lacks \"${ERR_HAS}\":\n${err}")
  endif()
endif()
