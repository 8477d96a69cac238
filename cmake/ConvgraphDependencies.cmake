# Required and optional dependencies of convgraph. Every optional component prints one status
# line saying whether it is built in and why.

find_package(fmt REQUIRED)
find_package(nlohmann_json 3.10 REQUIRED)
find_package(OpenMP REQUIRED COMPONENTS CXX)

# BLAS: OpenBLAS, through its CMake package where it ships one, else by header and library.
find_package(OpenBLAS CONFIG QUIET)
if(OpenBLAS_FOUND AND OpenBLAS_INCLUDE_DIRS AND OpenBLAS_LIBRARIES)
  set(CONVGRAPH_BLAS_INCLUDE ${OpenBLAS_INCLUDE_DIRS})
  set(CONVGRAPH_BLAS_LIBRARY ${OpenBLAS_LIBRARIES})
else()
  find_path(CONVGRAPH_BLAS_INCLUDE cblas.h
            PATH_SUFFIXES openblas openblas-openmp openblas-pthread
                          x86_64-linux-gnu/openblas-openmp x86_64-linux-gnu/openblas-pthread
                          x86_64-linux-gnu)
  find_library(CONVGRAPH_BLAS_LIBRARY NAMES openblas openblaso openblasp)
endif()
if(NOT CONVGRAPH_BLAS_INCLUDE OR NOT CONVGRAPH_BLAS_LIBRARY)
  message(FATAL_ERROR "convgraph needs OpenBLAS (cblas.h and libopenblas); "
                      "on Debian: apt-get install libopenblas-openmp-dev")
endif()
add_library(convgraph_blas INTERFACE)
target_include_directories(convgraph_blas SYSTEM INTERFACE ${CONVGRAPH_BLAS_INCLUDE})
target_link_libraries(convgraph_blas INTERFACE ${CONVGRAPH_BLAS_LIBRARY})
message(STATUS "convgraph: BLAS: ${CONVGRAPH_BLAS_LIBRARY}")

# Resolves one AUTO/ON/OFF component. FOUND says whether its dependency was found, WHY says what
# is missing when it was not.
function(convgraph_resolve_component name found why)
  set(mode ${CONVGRAPH_WITH_${name}})
  if(mode STREQUAL "OFF")
    set(have OFF)
    set(line "off (CONVGRAPH_WITH_${name}=OFF)")
  elseif(found)
    set(have ON)
    set(line "on")
  elseif(mode STREQUAL "ON")
    message(FATAL_ERROR "convgraph: CONVGRAPH_WITH_${name}=ON but ${why}")
  else()
    set(have OFF)
    set(line "off (${why})")
  endif()
  message(STATUS "convgraph: ${name}: ${line}")
  set(CONVGRAPH_HAVE_${name} ${have} PARENT_SCOPE)
  if(have)
    set(CONVGRAPH_HAVE_${name}_01 1 PARENT_SCOPE)
  else()
    set(CONVGRAPH_HAVE_${name}_01 0 PARENT_SCOPE)
  endif()
endfunction()

# CUDA toolkit.
set(cuda_found OFF)
set(cuda_why "no CUDA toolkit found")
if(NOT CONVGRAPH_WITH_CUDA STREQUAL "OFF")
  find_package(CUDAToolkit QUIET)
  include(CheckLanguage)
  check_language(CUDA)
  if(CUDAToolkit_FOUND AND CMAKE_CUDA_COMPILER)
    set(cuda_found ON)
    set(cuda_why "")
  elseif(CUDAToolkit_FOUND)
    set(cuda_why "the CUDA toolkit has no usable nvcc")
  endif()
endif()
convgraph_resolve_component(CUDA ${cuda_found} "${cuda_why}")
if(CONVGRAPH_HAVE_CUDA)
  if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
    set(CMAKE_CUDA_ARCHITECTURES 90)
  endif()
  enable_language(CUDA)
  # CMake releases older than nvcc 13 do not know its C++20 dialect flag: teach them.
  if(NOT CMAKE_CUDA20_STANDARD_COMPILE_OPTION)
    set(CMAKE_CUDA20_STANDARD_COMPILE_OPTION "-std=c++20")
    set(CMAKE_CUDA20_EXTENSION_COMPILE_OPTION "-std=c++20")
  endif()
  set(CMAKE_CUDA_STANDARD 20)
  set(CMAKE_CUDA_STANDARD_REQUIRED ON)
  set(CMAKE_CUDA_EXTENSIONS OFF)
endif()

# cuDNN (only with CUDA).
set(cudnn_found OFF)
set(cudnn_why "CUDA is off")
if(CONVGRAPH_HAVE_CUDA AND NOT CONVGRAPH_WITH_CUDNN STREQUAL "OFF")
  find_path(CONVGRAPH_CUDNN_INCLUDE cudnn.h
            HINTS ${CUDAToolkit_INCLUDE_DIRS} PATH_SUFFIXES x86_64-linux-gnu)
  find_library(CONVGRAPH_CUDNN_LIBRARY cudnn
               HINTS ${CUDAToolkit_LIBRARY_DIR} ${CUDAToolkit_LIBRARY_ROOT}/lib
                     ${CUDAToolkit_LIBRARY_ROOT}/lib64)
  if(CONVGRAPH_CUDNN_INCLUDE AND CONVGRAPH_CUDNN_LIBRARY)
    set(cudnn_found ON)
  else()
    set(cudnn_why "cudnn.h or libcudnn not found")
  endif()
endif()
convgraph_resolve_component(CUDNN ${cudnn_found} "${cudnn_why}")

# oneDNN.
set(onednn_found OFF)
if(NOT CONVGRAPH_WITH_ONEDNN STREQUAL "OFF")
  find_package(dnnl CONFIG QUIET)
  if(dnnl_FOUND)
    set(onednn_found ON)
  endif()
endif()
convgraph_resolve_component(ONEDNN ${onednn_found} "oneDNN (libdnnl-dev) not found")

# LLVM: the JIT back end of the fused-kernel code generator (convgraph/codegen/llvm/), written for
# LLVM 14's ORC and pass-manager interfaces. Linked as LLVM's shared library.
set(llvm_found OFF)
set(llvm_why "LLVM development files (llvm-dev) not found")
set(CONVGRAPH_LLVM_VERSION "")
if(NOT CONVGRAPH_WITH_LLVM STREQUAL "OFF")
  # LLVM's package file probes for libffi and terminfo with check_c_source_compiles.
  enable_language(C)
  find_package(LLVM CONFIG QUIET)
  if(LLVM_FOUND AND LLVM_VERSION_MAJOR EQUAL 14)
    set(llvm_found ON)
    set(CONVGRAPH_LLVM_VERSION ${LLVM_PACKAGE_VERSION})
  elseif(LLVM_FOUND)
    set(llvm_why "LLVM ${LLVM_PACKAGE_VERSION} found, but the code generator is written for LLVM 14")
  endif()
endif()
convgraph_resolve_component(LLVM ${llvm_found} "${llvm_why}")
# Why the back end is left out, for `convgraph info`.
if(CONVGRAPH_WITH_LLVM STREQUAL "OFF")
  set(CONVGRAPH_LLVM_WHY "CONVGRAPH_WITH_LLVM=OFF")
elseif(NOT llvm_found)
  set(CONVGRAPH_LLVM_WHY "${llvm_why}")
else()
  set(CONVGRAPH_LLVM_WHY "")
endif()
if(CONVGRAPH_HAVE_LLVM)
  message(STATUS "convgraph: LLVM version: ${CONVGRAPH_LLVM_VERSION} (${LLVM_DIR})")
  if(TARGET LLVM)
    set(CONVGRAPH_LLVM_LIBRARIES LLVM)
  else()
    llvm_map_components_to_libnames(CONVGRAPH_LLVM_LIBRARIES orcjit native passes)
  endif()
  separate_arguments(CONVGRAPH_LLVM_DEFINITIONS NATIVE_COMMAND "${LLVM_DEFINITIONS}")
endif()

# Gives the sources SOURCES (the LLVM back end) LLVM's include folders and definitions.
# The folders are system ones (-isystem), so that LLVM's headers are held to their own warnings.
function(convgraph_llvm_sources)
  set(options ${CONVGRAPH_LLVM_DEFINITIONS})
  foreach(dir ${LLVM_INCLUDE_DIRS})
    list(APPEND options -isystem ${dir})
  endforeach()
  set_source_files_properties(${ARGN} PROPERTIES COMPILE_OPTIONS "${options}")
endfunction()

# Links the enabled optional components into TARGET.
function(convgraph_link_optional_components target)
  if(CONVGRAPH_HAVE_CUDA)
    target_link_libraries(${target} PRIVATE CUDA::cudart CUDA::cublas)
  endif()
  if(CONVGRAPH_HAVE_CUDNN)
    target_include_directories(${target} SYSTEM PRIVATE ${CONVGRAPH_CUDNN_INCLUDE})
    target_link_libraries(${target} PRIVATE ${CONVGRAPH_CUDNN_LIBRARY})
  endif()
  if(CONVGRAPH_HAVE_ONEDNN)
    target_link_libraries(${target} PRIVATE DNNL::dnnl)
  endif()
  if(CONVGRAPH_HAVE_LLVM)
    # LLVM's headers and definitions are given to the sources that include them only
    # (convgraph_llvm_sources), so that the rest of the library compiles as without LLVM.
    target_link_libraries(${target} PRIVATE ${CONVGRAPH_LLVM_LIBRARIES})
  endif()
endfunction()
