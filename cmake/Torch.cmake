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

# Caffe2's mkl.cmake sets caffe2::mkl's link directories to ${MKL_ROOT}/lib/intel64... even when MKL_ROOT
# is empty (pytorch/pytorch#73008): /lib/intel64 etc. then land in every binary's RUNPATH. Keep only
# folders that exist.
if(TARGET caffe2::mkl)
  get_target_property(_mkl_dirs caffe2::mkl INTERFACE_LINK_DIRECTORIES)
  if(_mkl_dirs)
    set(_keep "")
    foreach(_d IN LISTS _mkl_dirs)
      if(IS_DIRECTORY "${_d}" AND NOT _d MATCHES "^/lib/(intel64|intel64_win|win-x64)$")
        list(APPEND _keep "${_d}")
      endif()
    endforeach()
    set_property(TARGET caffe2::mkl PROPERTY INTERFACE_LINK_DIRECTORIES "${_keep}")
  endif()
endif()

# A CUDA build of the PyPI wheel ships its CUDA libraries beside it, in site-packages/nvidia/*/lib
# (torch >= 2.11: nvidia/cu13/lib, nccl/lib, cudnn/lib, ...; older: nvidia/cuda_runtime/lib, ...), and
# libtorch_cuda.so finds them through its own RPATH ($ORIGIN/../../nvidia/...). A CUDA toolkit on the
# machine must not shadow them: Caffe2's CMake links the toolkit's libcudart and puts the toolkit's lib
# folder into the link -rpath, where ld then resolves libtorch_cuda.so's libnccl.so.2 to the toolkit's
# older copy and the link fails with undefined nccl* symbols (torch 2.15 with CUDA 13.0's nccl). So, for
# a wheel: the wheel's folders come first in -rpath-link, and torch::cudart is the wheel's libcudart
# (so that the toolkit's folder never enters the RUNPATH and the binary loads the cudart torch was
# built with). An official libtorch download (no nvidia/ folder beside it) is left as it is.
get_filename_component(_torch_lib_dir "${TORCH_LIBRARY}" DIRECTORY)
get_filename_component(_wheel_nvidia "${_torch_lib_dir}/../../nvidia" ABSOLUTE)
set(QWEN_TORCH_WHEEL_LIB_DIRS "")
if(IS_DIRECTORY "${_wheel_nvidia}")
  file(GLOB _nv_lib_dirs LIST_DIRECTORIES true "${_wheel_nvidia}/*/lib")
  foreach(_d IN LISTS _nv_lib_dirs)
    if(IS_DIRECTORY "${_d}")
      list(APPEND QWEN_TORCH_WHEEL_LIB_DIRS "${_d}")
    endif()
  endforeach()
  file(GLOB _wheel_cudart "${_wheel_nvidia}/*/lib/libcudart.so.[0-9]*")
  list(FILTER _wheel_cudart EXCLUDE REGEX "\\.so\\.[0-9]+\\.[0-9]")  # the SONAME file, not x.y.z copies
  if(TARGET torch::cudart AND _wheel_cudart)
    list(GET _wheel_cudart 0 _wheel_cudart)
    set_property(TARGET torch::cudart PROPERTY INTERFACE_LINK_LIBRARIES "${_wheel_cudart}")
    list(TRANSFORM TORCH_LIBRARIES REPLACE ".*/libcudart\\.so$" "${_wheel_cudart}")
    message(STATUS "CUDA runtime from the torch wheel: ${_wheel_cudart}")
  endif()
  if(QWEN_TORCH_WHEEL_LIB_DIRS)
    list(JOIN QWEN_TORCH_WHEEL_LIB_DIRS ":" _rpl)
    set(QWEN_TORCH_LINK_OPTIONS "LINKER:-rpath-link,${_torch_lib_dir}:${_rpl}")
  endif()
endif()

# Precompiled <torch/torch.h>: one for libraries (-fPIC) and one for executables (-fPIE); GCC
# rejects a header precompiled with the other setting.
add_library(qwen_torch_pch STATIC "${PROJECT_SOURCE_DIR}/cmake/torch_pch.cpp")
target_link_libraries(qwen_torch_pch PUBLIC ${TORCH_LIBRARIES})
if(QWEN_TORCH_LINK_OPTIONS)
  target_link_options(qwen_torch_pch INTERFACE "${QWEN_TORCH_LINK_OPTIONS}")
endif()
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
