# Run by the "install: consumer project" test (see CMakeLists.txt here) as cmake -P. Every step
# that fails stops the test with the step's command line and its whole output.
cmake_minimum_required(VERSION 3.25...4.4)

set(prefix ${WORK_DIR}/prefix)
set(consumer_build ${WORK_DIR}/consumer-build)
if(NOT CONFIG)
  set(CONFIG Release)
endif()

function(run_step name)
  execute_process(COMMAND ${ARGN}
                  RESULT_VARIABLE result
                  OUTPUT_VARIABLE output
                  ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    # One line per installed file would bury the error.
    string(REGEX REPLACE "-- (Installing|Up-to-date): [^\n]*\n" "" output "${output}")
    list(JOIN ARGN " " command)
    message(FATAL_ERROR "install test: ${name} failed (${result})\n"
                        "command: ${command}\n${output}")
  endif()
  message(STATUS "install test: ${name}: ok")
  set(step_output "${output}" PARENT_SCOPE)
endfunction()

# A fresh prefix and consumer build every time, so that nothing stale can make the test pass.
file(REMOVE_RECURSE ${prefix} ${consumer_build})

run_step("cmake --install"
         ${CMAKE_COMMAND} --install ${CONVGRAPH_BUILD_DIR} --prefix ${prefix} --config ${CONFIG})

set(configure_args
    -S ${CONSUMER_SOURCE_DIR} -B ${consumer_build} -G ${GENERATOR}
    -D CMAKE_PREFIX_PATH=${prefix}
    -D CMAKE_BUILD_TYPE=${CONFIG}
    -D CMAKE_CXX_COMPILER=${CXX_COMPILER})
if(MAKE_PROGRAM)
  list(APPEND configure_args -D CMAKE_MAKE_PROGRAM=${MAKE_PROGRAM})
endif()
if(CXX_COMPILER_LAUNCHER)
  list(APPEND configure_args -D CMAKE_CXX_COMPILER_LAUNCHER=${CXX_COMPILER_LAUNCHER})
endif()
run_step("configure the consumer" ${CMAKE_COMMAND} ${configure_args})
run_step("build the consumer" ${CMAKE_COMMAND} --build ${consumer_build} --config ${CONFIG})

# Single-config generators put the program in the build folder, multi-config ones in CONFIG/.
set(program ${consumer_build}/convgraph_consumer)
if(NOT EXISTS ${program})
  set(program ${consumer_build}/${CONFIG}/convgraph_consumer)
endif()
run_step("run the consumer" ${program})
message(STATUS "install test: the consumer printed:\n${step_output}")
