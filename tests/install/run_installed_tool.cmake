# Run by the "install: the installed convgraph tool starts" test (see CMakeLists.txt here) as
# cmake -P: installs the build into a fresh prefix, moves the prefix elsewhere (so that only a run
# path relative to the tool can find the installed library) and runs `convgraph --version` and
# `convgraph info` from it, with LD_LIBRARY_PATH unset.
cmake_minimum_required(VERSION 3.25...4.4)

set(prefix ${WORK_DIR}/tool-prefix)
set(moved ${WORK_DIR}/tool-prefix-moved)
if(NOT CONFIG)
  set(CONFIG Release)
endif()
file(REMOVE_RECURSE ${prefix} ${moved})

function(run_step name)
  execute_process(COMMAND ${ARGN}
                  RESULT_VARIABLE result
                  OUTPUT_VARIABLE output
                  ERROR_VARIABLE output)
  if(NOT result EQUAL 0)
    string(REGEX REPLACE "-- (Installing|Up-to-date|Set runtime path of): [^\n]*\n" "" output
                         "${output}")
    list(JOIN ARGN " " command)
    message(FATAL_ERROR "install test: ${name} failed (${result})\n"
                        "command: ${command}\n${output}")
  endif()
  message(STATUS "install test: ${name}: ok")
  set(step_output "${output}" PARENT_SCOPE)
endfunction()

run_step("cmake --install"
         ${CMAKE_COMMAND} --install ${CONVGRAPH_BUILD_DIR} --prefix ${prefix} --config ${CONFIG})
file(RENAME ${prefix} ${moved})

set(tool ${moved}/${BINDIR}/convgraph)
if(NOT EXISTS ${tool})
  message(FATAL_ERROR "install test: the install put no convgraph tool at ${BINDIR}/convgraph")
endif()
run_step("convgraph --version" ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH ${tool} --version)
if(NOT step_output MATCHES "^convgraph ${VERSION}")
  message(FATAL_ERROR "install test: `convgraph --version` printed\n${step_output}\n"
                      "expected it to begin with 'convgraph ${VERSION}'")
endif()
message(STATUS "install test: `convgraph --version` printed:\n${step_output}")
run_step("convgraph info" ${CMAKE_COMMAND} -E env --unset=LD_LIBRARY_PATH ${tool} info)
file(REMOVE_RECURSE ${moved})
