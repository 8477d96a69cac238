# Run as cmake -P with PAGE (a Markdown file), NAME (an identifier for it) and OUTPUT (a C++ file):
# writes every ```cpp block of PAGE into OUTPUT as the body of a function of its own, so that
# compiling OUTPUT checks that the page's snippets compile as written.
#
# The rules a snippet follows (docs/README of the snippets: tests/CMakeLists.txt):
#   - every snippet sees <convgraph/convgraph.hpp>, <iostream> and `using namespace convgraph;`;
#   - its #include and `using namespace` lines go to the top of the file, the other lines into
#     the body of a function, so a snippet is a sequence of statements;
#   - a block fenced ```cpp continued goes on in the function of the page's block before it (for
#     a page that shows one program in steps, with prose between them);
#   - a block meant to be read, not compiled (a fragment, pseudo-code), is fenced ```cpp-fragment.
# #line directives point compiler errors at the page's lines.
cmake_minimum_required(VERSION 3.25...4.4)

file(READ "${PAGE}" text)
set(header "")
set(bodies "")
set(in_snippet FALSE)
set(open_function FALSE)
set(line_number 0)
set(count 0)
string(LENGTH "${text}" remaining)
while(remaining GREATER 0)
  string(FIND "${text}" "\n" end)
  if(end EQUAL -1)
    set(line "${text}")
    set(text "")
  else()
    string(SUBSTRING "${text}" 0 ${end} line)
    math(EXPR next "${end} + 1")
    string(SUBSTRING "${text}" ${next} -1 text)
  endif()
  string(LENGTH "${text}" remaining)
  math(EXPR line_number "${line_number} + 1")

  if(NOT in_snippet)
    if(line MATCHES "^[ \t]*```(cpp|c\\+\\+)([ \t]+continued)?[ \t]*$")
      set(in_snippet TRUE)
      math(EXPR count "${count} + 1")
      math(EXPR first "${line_number} + 1")
      if(CMAKE_MATCH_2)
        if(NOT open_function)
          message(FATAL_ERROR "${PAGE}:${line_number}: a ```cpp continued block with no ```cpp "
                              "block before it")
        endif()
        string(APPEND bodies "#line ${first} \"${PAGE}\"\n")
      else()
        if(open_function)
          string(APPEND bodies "}\n")
        endif()
        string(APPEND bodies "\nvoid doc_snippet_${NAME}_${first}() {\n#line ${first} \"${PAGE}\"\n")
      endif()
    endif()
    continue()
  endif()
  if(line MATCHES "^[ \t]*```")
    set(in_snippet FALSE)
    set(open_function TRUE)
    continue()
  endif()
  if(line MATCHES "^[ \t]*#[ \t]*include" OR line MATCHES "^[ \t]*using namespace [A-Za-z_:]+;")
    string(APPEND header "#line ${line_number} \"${PAGE}\"\n${line}\n")
    # An empty line keeps the body's line numbers.
    string(APPEND bodies "\n")
  else()
    string(APPEND bodies "${line}\n")
  endif()
endwhile()
if(in_snippet)
  message(FATAL_ERROR "${PAGE}: the ```cpp block of line ${first} is never closed")
endif()
if(open_function)
  string(APPEND bodies "}\n")
endif()

set(content "// Generated from ${PAGE} by cmake/ConvgraphDocSnippets.cmake: ${count} snippet(s).\n")
if(count GREATER 0)
  string(APPEND content "#include <convgraph/convgraph.hpp>\n#include <iostream>\n"
                        "${header}\nusing namespace convgraph;\n${bodies}")
endif()
file(WRITE "${OUTPUT}" "${content}")
