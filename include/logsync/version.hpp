#pragma once
/// logsync's version, and the language standard it needs.
///
/// LOGSYNC_VERSION is a number, MAJOR * 10000 + MINOR * 100 + PATCH (0.1.0 is
/// 100; MINOR and PATCH stay below 100), for `#if LOGSYNC_VERSION >= 200`;
/// LOGSYNC_VERSION_STRING is "0.1.0".
/// The three numbers below are the project's only record of its version:
/// meson.build and CMakeLists.txt read them from here.

#if defined(_MSVC_LANG)
#define LOGSYNC_DETAIL_CPLUSPLUS _MSVC_LANG
#else
#define LOGSYNC_DETAIL_CPLUSPLUS __cplusplus
#endif
#if LOGSYNC_DETAIL_CPLUSPLUS < 202002L
#error "logsync needs C++20 or later (compile with -std=c++20 or newer)"
#endif

#define LOGSYNC_VERSION_MAJOR 0
#define LOGSYNC_VERSION_MINOR 1
#define LOGSYNC_VERSION_PATCH 0

#define LOGSYNC_VERSION \
  (LOGSYNC_VERSION_MAJOR * 10000 + LOGSYNC_VERSION_MINOR * 100 + LOGSYNC_VERSION_PATCH)

#define LOGSYNC_DETAIL_STR(x) #x
#define LOGSYNC_DETAIL_XSTR(x) LOGSYNC_DETAIL_STR(x)
#define LOGSYNC_VERSION_STRING                                              \
  LOGSYNC_DETAIL_XSTR(LOGSYNC_VERSION_MAJOR) "." LOGSYNC_DETAIL_XSTR(       \
      LOGSYNC_VERSION_MINOR) "." LOGSYNC_DETAIL_XSTR(LOGSYNC_VERSION_PATCH)
