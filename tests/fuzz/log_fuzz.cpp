// libFuzzer target: opens a log directory built from the fuzzer's bytes,
// reads, scans and verifies it, appends to it and reopens it.
//
// Input format: a sequence of at most 8 files, each
//
//   +------+------------------------------------------------------------+
//   | size | field                                                      |
//   +------+------------------------------------------------------------+
//   | 1    | kind: bit 0   0 = `<base>.store`, 1 = `<base>.index`       |
//   |      |       bit 1   1 = prefix the content with a valid header   |
//   |      |               for the base (see below)                     |
//   |      |       bit 2-3 base mode (see below)                        |
//   |      |       bit 4-7 ignored                                      |
//   | 1    | k, the segment number                                      |
//   | 0/8  | base mode 2 only: the base offset, u64 little-endian       |
//   | 2    | L, content length, u16 little-endian                       |
//   | L    | content (clamped to what remains of the input)             |
//   +------+------------------------------------------------------------+
//
//   base mode 0: base = k * 4      (segments of 4 records line up)
//             1: base = k          (gaps, overlaps, unaligned bases)
//             2: base = the u64 that follows k (any base; what the seeds
//                of make_corpus.cpp use for real logs)
//             3: base = 2^64 - 1 - k (the end of the offset space)
//
//   header flag, .store: the file is the 16-byte store header for the base
//     ("LGSYNC", version 1, flags 0, u64 LE base) followed by the content,
//     so that inputs reach frame parsing at once.
//   header flag, .index: the file is a 48-byte index header for the base
//     ("LGSIDX", version 1, flags 0, u64 LE base, checkpoint, its CRC32C,
//     12 zero bytes) whose checkpoint (store bytes, records: two u64 LE) is
//     the first 16 bytes of the content, zero-padded, and its CRC computed,
//     followed by the rest of the content (the entries).
//
// The file is `%020llu.store` / `%020llu.index` of the base; a later file of
// the same name replaces an earlier one. Decoding stops at the 8th file or
// at a file whose kind/k/base/length bytes are cut short. (The decoder is
// tests/fuzz/fuzz_input.hpp.)
//
// What is checked, on a fresh directory per input (one directory per
// process under $TMPDIR or /tmp, emptied before every input):
//  - opening may throw logsync::Error or std::invalid_argument; any other
//    exception traps;
//  - LowestOffset() <= NextOffset(); every offset in between Reads (its
//    record carrying that offset) or throws CorruptionError;
//  - Scan from LowestOffset() yields exactly the records Read returned, in
//    order, and ends (with CorruptionError) exactly at the first offset Read
//    rejected;
//  - if Verify() reports no problem, every Read succeeded and it counted
//    every record;
//  - three Appends get consecutive offsets from NextOffset() and read back
//    (only when the log has run out of offsets may Append throw, and only
//    StateError);
//  - after Close, the log reopens (no exception) with NextOffset() at least
//    what it was after the appends, the appended records and every record
//    that read before read back the same, and a Verify that was clean stays
//    clean.
// Every failed check prints what failed and calls __builtin_trap().
//
// Syncs (fdatasync, fsync, msync) are replaced by no-ops through the
// library's system-call seam (detail::Sys()) to keep an execution fast on a
// disk-backed /tmp: durability is not what this target tests. Set
// LOGSYNC_FUZZ_REAL_SYNC=1 to keep the real calls. LOGSYNC_FUZZ_VERBOSE=1
// prints what each input led to (to see what a seed exercises).

#include "fuzz_input.hpp"

#include <logsync/logsync.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <system_error>
#include <typeinfo>
#include <vector>

namespace {

namespace fs = std::filesystem;
using logsync::Record;
using LogT = logsync::Log<>;

// One line on stderr: "log_fuzz: ", `prefix`, then the formatted message.
void VPrint(const char* prefix, const char* fmt, va_list ap) {
  std::fprintf(stderr, "log_fuzz: %s", prefix);
  std::vfprintf(stderr, fmt, ap);
  std::fprintf(stderr, "\n");
}

[[noreturn]] __attribute__((format(printf, 1, 2))) void Fail(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  VPrint("check failed: ", fmt, ap);
  va_end(ap);
  std::fflush(stderr);
  __builtin_trap();
}

// Traps on whatever exception is in flight (call from a catch block).
[[noreturn]] void FailOnException(const char* during) {
  try {
    throw;
  } catch (const std::exception& e) {
    Fail("%s threw %s: %s", during, typeid(e).name(), e.what());
  } catch (...) {
    Fail("%s threw a non-std exception", during);
  }
}

logsync::Config FuzzConfig() {
  logsync::Config c;
  c.segment.max_store_bytes = 4096;
  c.segment.max_index_bytes = 64 * logsync::kIndexEntryBytes;
  return c;
}

fs::path g_dir;
const bool g_verbose = std::getenv("LOGSYNC_FUZZ_VERBOSE") != nullptr;

__attribute__((format(printf, 1, 2))) void Note(const char* fmt, ...) {
  if (!g_verbose) return;
  va_list ap;
  va_start(ap, fmt);
  VPrint("", fmt, ap);
  va_end(ap);
}

void RemoveDir() {
  std::error_code ec;
  if (!g_dir.empty()) fs::remove_all(g_dir, ec);
}

const fs::path& Dir() {
  if (g_dir.empty()) {
    if (!std::getenv("LOGSYNC_FUZZ_REAL_SYNC")) {
      auto& sys = logsync::detail::Sys();
      sys.fdatasync = [](int) { return 0; };
      sys.fsync = [](int) { return 0; };
      sys.msync = [](void*, size_t, int) { return 0; };
    }
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/logsync-fuzz-XXXXXX";
    if (!::mkdtemp(templ.data())) {
      std::perror("log_fuzz: mkdtemp");
      std::abort();
    }
    g_dir = templ;
    std::atexit(RemoveDir);
  }
  return g_dir;
}

// Empties the directory and writes the decoded files into it.
void Populate(const fs::path& dir, const std::vector<logsync::fuzz::FuzzFile>& files) {
  std::error_code ec;
  std::vector<fs::path> old;
  for (const auto& e : fs::directory_iterator(dir, ec)) old.push_back(e.path());
  if (ec) Fail("listing %s: %s", dir.c_str(), ec.message().c_str());
  for (const auto& p : old) {
    fs::remove_all(p, ec);
    if (ec) Fail("removing %s: %s", p.c_str(), ec.message().c_str());
  }
  for (const auto& f : files) {
    const fs::path p = dir / f.Name();
    const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) Fail("creating %s: %s", p.c_str(), std::strerror(errno));
    std::size_t done = 0;
    while (done < f.bytes.size()) {
      const ssize_t n = ::write(fd, f.bytes.data() + done, f.bytes.size() - done);
      if (n <= 0) Fail("writing %s: %s", p.c_str(), std::strerror(errno));
      done += static_cast<std::size_t>(n);
    }
    ::close(fd);
  }
}

void Exercise(const fs::path& dir, const logsync::Config& config, std::size_t input_size) {
  std::optional<LogT> log;
  try {
    log.emplace(dir, config);
  } catch (const logsync::Error& e) {
    Note("open: %s", e.what());
    return;
  } catch (const std::invalid_argument& e) {
    Note("open: %s", e.what());
    return;
  } catch (...) {
    FailOnException("Log constructor");
  }

  // Read every offset.
  const std::uint64_t lowest = log->LowestOffset(), next = log->NextOffset();
  if (lowest > next) Fail("LowestOffset %" PRIu64 " > NextOffset %" PRIu64, lowest, next);
  const std::uint64_t count = next - lowest;
  // Every record needs at least 16 bytes of index entry or frame from the
  // input, so more than that means the log invented records.
  if (count > input_size)
    Fail("log of %" PRIu64 " records (%" PRIu64 "..%" PRIu64 ") from a %zu-byte input", count, lowest, next,
         input_size);
  std::vector<std::optional<std::string>> values(count);
  std::uint64_t first_bad = count;  // index of the first offset Read rejected
  std::uint64_t good = 0;           // offsets Read returned
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t off = lowest + i;
    try {
      Record r = log->Read(off);
      if (r.offset != off) Fail("Read(%" PRIu64 ") returned a record of offset %" PRIu64, off, r.offset);
      values[i] = std::move(r.value);
      ++good;
    } catch (const logsync::CorruptionError&) {
      if (first_bad == count) first_bad = i;
    } catch (...) {
      FailOnException(("Read(" + std::to_string(off) + ")").c_str());
    }
  }

  // Scan: the same records, ending at the first that Read rejected.
  std::uint64_t scanned = 0;
  bool scan_corrupt = false;
  try {
    for (const Record& r : log->Scan(lowest)) {
      if (scanned >= count) Fail("Scan went past NextOffset %" PRIu64, next);
      if (r.offset != lowest + scanned)
        Fail("Scan yielded offset %" PRIu64 " where %" PRIu64 " was due", r.offset, lowest + scanned);
      if (!values[scanned]) Fail("Scan yielded offset %" PRIu64 ", which Read rejected", r.offset);
      if (*values[scanned] != r.value) Fail("Scan and Read disagree on the value of offset %" PRIu64, r.offset);
      ++scanned;
    }
  } catch (const logsync::CorruptionError&) {
    scan_corrupt = true;
  } catch (...) {
    FailOnException("Scan");
  }
  if (!scan_corrupt && scanned != count)
    Fail("Scan ended after %" PRIu64 " of %" PRIu64 " records without an error", scanned, count);
  if (scan_corrupt && scanned != first_bad)
    Fail("Scan stopped at offset %" PRIu64 ", Read first failed at %" PRIu64, lowest + scanned, lowest + first_bad);

  // Verify: a clean report means every Read succeeded.
  bool verified_ok = false;
  try {
    const logsync::VerifyReport report = log->Verify();
    verified_ok = report.Ok();
    if (report.Ok() && first_bad != count)
      Fail("Verify found no problem, but Read(%" PRIu64 ") threw CorruptionError", lowest + first_bad);
    if (report.Ok() && report.records != count)
      Fail("Verify found no problem but counted %" PRIu64 " of %" PRIu64 " records", report.records, count);
  } catch (...) {
    FailOnException("Verify");
  }

  Note("opened: offsets %" PRIu64 "..%" PRIu64 ", %zu segments, %" PRIu64 " read, Verify %s", lowest, next,
       log->SegmentCount(), good, verified_ok ? "clean" : "found problems");

  // Append three records at consecutive offsets.
  std::uint64_t expect = log->NextOffset();
  if (expect != next) Fail("NextOffset moved from %" PRIu64 " to %" PRIu64 " without an append", next, expect);
  std::uint64_t appended = 0;
  for (int i = 0; i < 3; ++i) {
    const std::string value = "fuzz-" + std::to_string(i);
    if (expect == std::numeric_limits<std::uint64_t>::max()) {
      // Out of offsets: Append must refuse with StateError.
      try {
        log->Append(Record{0, value});
      } catch (const logsync::StateError&) {
        break;
      } catch (...) {
        FailOnException("Append with no offsets left");
      }
      Fail("Append succeeded at NextOffset 2^64-1");
    }
    try {
      const std::uint64_t off = log->Append(Record{0, value});
      if (off != expect) Fail("Append returned %" PRIu64 ", NextOffset was %" PRIu64, off, expect);
      if (log->NextOffset() != off + 1)
        Fail("NextOffset is %" PRIu64 " after appending %" PRIu64, log->NextOffset(), off);
      const Record r = log->Read(off);
      if (r.offset != off || r.value != value)
        Fail("appended record %" PRIu64 " reads back as offset %" PRIu64 " value '%s'", off, r.offset,
             r.value.c_str());
    } catch (...) {
      FailOnException(("Append/Read of appended record " + std::to_string(expect)).c_str());
    }
    ++expect;
    ++appended;
  }
  try {
    log->Close();
  } catch (...) {
    FailOnException("Close");
  }
  log.reset();

  // Reopen: the appended records and everything that read before are there.
  try {
    LogT again(dir, config);
    if (again.NextOffset() < expect)
      Fail("reopened with NextOffset %" PRIu64 ", %" PRIu64 " before closing", again.NextOffset(), expect);
    if (again.LowestOffset() != lowest)
      Fail("reopened with LowestOffset %" PRIu64 ", %" PRIu64 " before", again.LowestOffset(), lowest);
    for (std::uint64_t i = 0; i < appended; ++i) {
      const std::uint64_t off = next + i;
      const Record r = again.Read(off);
      if (r.offset != off || r.value != "fuzz-" + std::to_string(i))
        Fail("after reopening, appended record %" PRIu64 " reads as offset %" PRIu64 " value '%s'", off, r.offset,
             r.value.c_str());
    }
    for (std::uint64_t i = 0; i < count; ++i) {
      if (!values[i]) continue;
      const Record r = again.Read(lowest + i);
      if (r.value != *values[i]) Fail("after reopening, offset %" PRIu64 " reads a different value", lowest + i);
    }
    if (verified_ok) {
      const logsync::VerifyReport report = again.Verify();
      if (!report.Ok())
        Fail("Verify was clean before the appends, after reopening it reports %s at byte %" PRIu64 " of %s",
             report.problems[0].what.c_str(), report.problems[0].position, report.problems[0].path.c_str());
      if (report.records != count + appended)
        Fail("after reopening Verify counted %" PRIu64 " records, expected %" PRIu64, report.records,
             count + appended);
    }
    again.Close();
  } catch (...) {
    FailOnException("reopening the log");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const fs::path& dir = Dir();
  const auto files = logsync::fuzz::DecodeInput(data, size);
  Populate(dir, files);
  Exercise(dir, FuzzConfig(), size);
  return 0;
}
