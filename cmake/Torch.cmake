# Locate libtorch.
#  1. CMAKE_PREFIX_PATH / Torch_DIR pointing at an official libtorch download works as usual.
#  2. Otherwise ask a Python interpreter that has the PyPI `torch` wheel for its CMake prefix:
#     ${PROJECT_SOURCE_DIR}/.venv/bin/python (made by installers/setup.sh), then python3 on PATH.
file(STRINGS "${PROJECT_SOURCE_DIR}/installers/versions.env" _qv REGEX "^TORCH_VERSION=")
string(REGEX REPLACE "^TORCH_VERSION=" "" QWEN_TORCH_VERSION "${_qv}")

# We compile no CUDA code ourselves; naming the architectures skips Caffe2's GPU-probing try_run,
# which fails with C++20 set project-wide on machines with a CUDA toolkit but no GPU.
if(NOT DEFINED TORCH_CUDA_ARCH_LIST AND NOT DEFINED ENV{TORCH_CUDA_ARCH_LIST})
  set(TORCH_CUDA_ARCH_LIST "8.0;9.0")
endif()
find_package(Torch QUIET)
if(NOT Torch_FOUND)
  set(_candidates "${PROJECT_SOURCE_DIR}/.venv/bin/python" python3 python)
  foreach(_py IN LISTS _candidates)
    execute_process(COMMAND ${_py} -c "import torch;print(torch.utils.cmake_prefix_path)"
                    OUTPUT_VARIABLE _tp OUTPUT_STRIP_TRAILING_WHITESPACE
                    RESULT_VARIABLE _rc ERROR_QUIET)
    if(_rc EQUAL 0 AND EXISTS "${_tp}")
      message(STATUS "libtorch from the torch wheel of ${_py}: ${_tp}")
      list(APPEND CMAKE_PREFIX_PATH "${_tp}")
      break()
    endif()
  endforeach()
  find_package(Torch REQUIRED)
endif()
if(NOT Torch_VERSION VERSION_EQUAL QWEN_TORCH_VERSION)
  message(WARNING "libtorch ${Torch_VERSION} found, the project pins ${QWEN_TORCH_VERSION} (installers/versions.env)")
endif()
# We never call NVRTC ourselves; drop the toolkit's copy so the binary does not pin the local CUDA toolkit.
list(FILTER TORCH_LIBRARIES EXCLUDE REGEX "nvrtc")

# Precompiled <torch/torch.h>: one for libraries (-fPIC) and one for executables (-fPIE); GCC
# rejects a header precompiled with the other setting.
add_library(qwen_torch_pch STATIC "${PROJECT_SOURCE_DIR}/cmake/torch_pch.cpp")
target_link_libraries(qwen_torch_pch PUBLIC ${TORCH_LIBRARIES})
target_compile_options(qwen_torch_pch PUBLIC ${TORCH_CXX_FLAGS})
target_precompile_headers(qwen_torch_pch PRIVATE <torch/torch.h>)
add_executable(qwen_torch_pch_exe "${PROJECT_SOURCE_DIR}/cmake/torch_pch_main.cpp")
target_link_libraries(qwen_torch_pch_exe PRIVATE qwen_torch_pch)
target_precompile_headers(qwen_torch_pch_exe PRIVATE <torch/torch.h>)

# qwen_use_torch(target): link libtorch and reuse the matching precompiled header.
function(qwen_use_torch target)
  target_link_libraries(${target} PUBLIC qwen_torch_pch)
  get_target_property(_type ${target} TYPE)
  if(_type STREQUAL "EXECUTABLE")
    target_precompile_headers(${target} REUSE_FROM qwen_torch_pch_exe)
  else()
    target_precompile_headers(${target} REUSE_FROM qwen_torch_pch)
  endif()
endfunction()
