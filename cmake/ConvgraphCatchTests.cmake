# convgraph_catch_tests(TARGET NAME): registers every Catch2 test case of the test executable
# TARGET with CTest, discovered after each build of TARGET, named and labelled by tag
# ("NAME: <case>" label cpu, "NAME (slow): <case>" label slow, "NAME (cuda): <case>" label cuda).
# A tag group that has no case registers nothing, silently (see ConvgraphCatchAddTests.cmake).
set(CONVGRAPH_CATCH_ADD_TESTS_SCRIPT ${CMAKE_CURRENT_LIST_DIR}/ConvgraphCatchAddTests.cmake)

function(convgraph_catch_tests target name)
  set(major 2)
  if(Catch2_VERSION VERSION_GREATER_EQUAL 3)
    set(major 3)
  endif()
  set(ctest_file ${CMAKE_CURRENT_BINARY_DIR}/${target}_tests.cmake)
  set(include_file ${CMAKE_CURRENT_BINARY_DIR}/${target}_include.cmake)
  add_custom_command(
    TARGET ${target} POST_BUILD
    BYPRODUCTS ${ctest_file}
    COMMAND ${CMAKE_COMMAND}
            -D "TEST_EXECUTABLE=$<TARGET_FILE:${target}>"
            -D "WORKING_DIR=${CMAKE_CURRENT_BINARY_DIR}"
            -D "CTEST_FILE=${ctest_file}"
            -D "CATCH_MAJOR=${major}"
            -D "NAME=${name}"
            -P ${CONVGRAPH_CATCH_ADD_TESTS_SCRIPT}
    VERBATIM)
  file(WRITE ${include_file}
       "if(EXISTS \"${ctest_file}\")\n"
       "  include(\"${ctest_file}\")\n"
       "else()\n"
       "  add_test(${target}_NOT_BUILT ${target}_NOT_BUILT)\n"
       "endif()\n")
  set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${include_file})
endfunction()
