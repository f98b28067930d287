#!/usr/bin/env python3
"""Compiles every C++ snippet of the README, so that the README cannot show
code that does not build.

    readme_snippets.py README.md --cxx c++ --include DIR [--raft]

Each ```cpp block becomes a translation unit of its own: its #include lines
at the top, its top-level struct definitions at namespace scope, the rest in
a function body. The names the prose assumes (a directory `dir`, a `log` and
its `first` offset where the block does not declare them, `use`, `send`,
an `Event` type) come from a small prelude. Blocks about replication need
--raft (libraft's headers). Compiled with -std=c++20 -Wall -Wextra -Werror,
syntax only. Exit status 1 if any block fails, with the compiler's output.
"""

import argparse
import re
import subprocess
import sys
import tempfile

PRELUDE = """#include <logsync/logsync.hpp>
{raft}
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <vector>

namespace readme {{
[[maybe_unused]] inline const std::filesystem::path dir = "/tmp/readme-snippet";
template <class... T>
void use(const T&...) {{}}
inline void send(const std::byte*, std::size_t) {{}}
struct Event {{
  std::uint64_t offset = 0;
  std::string name;
}};
"""


def blocks(text):
    out, cur, start = [], None, 0
    for n, line in enumerate(text.splitlines(), 1):
        if cur is None and line.strip() == "```cpp":
            cur, start = [], n + 1
        elif cur is not None and line.strip() == "```":
            out.append((start, cur))
            cur = None
        elif cur is not None:
            cur.append(line)
    return out


def unit(lines, raft):
    includes, scope, body = [], [], []
    in_struct = False
    for line in lines:
        if line.startswith("#include"):
            includes.append(line)
        elif in_struct or line.startswith("struct "):
            scope.append(line)
            in_struct = "};" not in line
        else:
            body.append(line)
    code = "\n".join(lines)
    context = []
    if not re.search(r"\b(Log<[^;]*>|ReplicatedLog<[^;]*>)\s+log\b", code) and re.search(r"\blog\.", code):
        context.append("logsync::Log<> log(dir);")
    if re.search(r"\bfirst\b", code) and not re.search(r"\bstd::uint64_t first\b", code):
        context.append("std::uint64_t first = 0;")
    return ("\n".join(includes) + "\n" + PRELUDE.format(raft="#include <logsync/raft/replicated_log.hpp>" if raft else "") +
            "\n".join(scope) + "\n\n[[maybe_unused]] void Snippet() {\n" + "\n".join(context + body) + "\n}\n}  // namespace readme\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("readme")
    ap.add_argument("--cxx", required=True)
    ap.add_argument("--include", required=True)
    ap.add_argument("--raft", action="store_true")
    args = ap.parse_args()
    failed = checked = skipped = 0
    for start, lines in blocks(open(args.readme).read()):
        raft = any("ReplicatedLog" in l or "NodeConfig" in l for l in lines)
        if raft and not args.raft:
            print(f"README.md:{start}: skipped (replication, no libraft headers)")
            skipped += 1
            continue
        with tempfile.NamedTemporaryFile("w", suffix=".cpp") as f:
            f.write(unit(lines, raft))
            f.flush()
            cmd = [args.cxx, "-std=c++20", "-Wall", "-Wextra", "-Wno-unused-variable", "-Wno-unused-but-set-variable", "-Werror", "-fsyntax-only",
                   "-I", args.include, f.name]
            r = subprocess.run(cmd, capture_output=True, text=True)
        checked += 1
        if r.returncode != 0:
            failed += 1
            print(f"README.md:{start}: does not compile:\n{r.stderr}")
        else:
            print(f"README.md:{start}: ok")
    print(f"{checked} snippets compiled, {failed} failed, {skipped} skipped")
    return 1 if failed or checked == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
