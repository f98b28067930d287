// Each public header is compiled alone in its own translation unit (see
// tests/meson.build); linking them together also proves the headers define
// nothing that would break the one-definition rule across units.
#include <logsync/logsync.hpp>

int main() { return logsync::kFrameHeaderBytes == 16 ? 0 : 1; }
