# Run after a Catch2 test executable is built (see ConvgraphCatchTests.cmake) as cmake -P: lists
# its test cases once per group and writes a CTest file registering each one.
#
# Inputs: TEST_EXECUTABLE, WORKING_DIR, CTEST_FILE, CATCH_MAJOR (2 or 3) and NAME, the folder's
# name that begins every test's name. The groups, by tag:
#   [cuda] cases       -> "NAME (cuda): <case>", label cuda (exit code 77: skipped, no GPU)
#   [slow] cases       -> "NAME (slow): <case>", label slow
#   every other case   -> "NAME: <case>",        label cpu
# A test whose output carries skip_test's marker is listed as skipped, in every group.
# (The prefixes are built here: a value passed with -D loses its trailing space.)
#
# Unlike Catch2's own catch_discover_tests, a group that matches no test case is not a warning: an
# executable without [cuda] or [slow] cases is normal, and the group then registers nothing.
cmake_minimum_required(VERSION 3.25...4.4)

if(NOT EXISTS "${TEST_EXECUTABLE}")
  message(FATAL_ERROR "test discovery: '${TEST_EXECUTABLE}' does not exist")
endif()

set(script "")
# Appends COMMAND(ARGS...) to the script, each argument bracket-quoted.
function(add_command command)
  set(line "${command}(")
  foreach(arg IN LISTS ARGN)
    string(REPLACE "@CONVGRAPH_SEMICOLON@" ";" arg "${arg}")
    string(APPEND line " [==[${arg}]==]")
  endforeach()
  string(APPEND line ")\n")
  set(script "${script}${line}" PARENT_SCOPE)
endfunction()

if(CATCH_MAJOR EQUAL 3)
  set(list_args --list-tests --verbosity quiet)
else()
  set(list_args --list-test-names-only)
endif()

# A test that calls convgraph::testing::skip_test prints this (kSkipMarker, test_util.hpp): CTest
# then lists it as skipped whatever it returns.
set(skip_regex "SKIPPED \\(whole test\\): ")
set(SPEC_cpu "~[slow]~[cuda]")
set(PREFIX_cpu "${NAME}: ")
set(PROPERTIES_cpu LABELS cpu SKIP_REGULAR_EXPRESSION "${skip_regex}")
set(SPEC_slow "[slow]~[cuda]")
set(PREFIX_slow "${NAME} (slow): ")
set(PROPERTIES_slow LABELS slow SKIP_REGULAR_EXPRESSION "${skip_regex}")
set(SPEC_cuda "[cuda]")
set(PREFIX_cuda "${NAME} (cuda): ")
set(PROPERTIES_cuda LABELS cuda SKIP_RETURN_CODE 77 SKIP_REGULAR_EXPRESSION "${skip_regex}")

foreach(group cpu slow cuda)
  execute_process(COMMAND "${TEST_EXECUTABLE}" "${SPEC_${group}}" ${list_args}
                  OUTPUT_VARIABLE output
                  ERROR_VARIABLE errors
                  RESULT_VARIABLE result
                  WORKING_DIRECTORY "${WORKING_DIR}")
  # Catch2 2.x exits with the number of test cases listed (modulo 256), 3.x with 0; anything not a
  # number is a crash.
  if(NOT result MATCHES "^[0-9]+$" OR (CATCH_MAJOR EQUAL 3 AND NOT result EQUAL 0))
    message(FATAL_ERROR "test discovery: listing the tests of '${TEST_EXECUTABLE}' "
                        "(${SPEC_${group}}) failed: ${result}\n${output}${errors}")
  endif()
  # A ';' in a test's name would split it into two list items (and the registered name would
  # then match no test): it travels as a placeholder until add_command writes the name.
  string(REPLACE ";" "@CONVGRAPH_SEMICOLON@" output "${output}")
  string(REPLACE "\n" ";" lines "${output}")
  foreach(test IN LISTS lines)
    if(test STREQUAL "")
      continue()
    endif()
    # Characters a Catch test spec would read as syntax are escaped in the name it is run by.
    set(spec_name "${test}")
    foreach(char , [ ])
      string(REPLACE "${char}" "\\${char}" spec_name "${spec_name}")
    endforeach()
    set(name "${PREFIX_${group}}${test}")
    # A name that matches no test case must fail, not pass having run nothing (Catch2 3 fails
    # then by default; 2 needs --warn NoTests).
    if(CATCH_MAJOR EQUAL 3)
      add_command(add_test "${name}" "${TEST_EXECUTABLE}" "${spec_name}")
    else()
      add_command(add_test "${name}" "${TEST_EXECUTABLE}" "${spec_name}" --warn NoTests)
    endif()
    add_command(set_tests_properties "${name}" PROPERTIES WORKING_DIRECTORY "${WORKING_DIR}"
                ${PROPERTIES_${group}})
  endforeach()
endforeach()

file(WRITE "${CTEST_FILE}" "${script}")
