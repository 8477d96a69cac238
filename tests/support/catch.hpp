// One include for Catch2 2 (Debian 12) and Catch2 3 (newer systems).
#pragma once

#if CONVGRAPH_CATCH_VERSION >= 3
#include <catch2/catch_all.hpp>
using Catch::Approx;
#else
#include <catch2/catch.hpp>
#endif
