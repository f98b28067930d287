// logsync: look at, check, copy and recover a log directory from the shell.
//
// Every subcommand but `recover` uses logsync::LogReader: it takes no lock
// and writes nothing into the log, so it works on a log another process is
// writing, and a mistyped path is an error, never a new log. Records are
// shown as their payload bytes (the codec's bytes: for logsync::Record, the
// value). Exit status: 0 done (and, for verify, healthy), 1 problems found
// or the operation failed (one line on stderr), 2 a usage error.

#include <logsync/logsync.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <optional>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fs = std::filesystem;
using Reader = logsync::LogReader<>;

constexpr std::string_view kUsage = R"(usage: logsync <command> [options]

Commands (all but recover only read: they take no lock and work beside a
writer in another process):
  stat DIR            segments, records, offsets and bytes of the log
  dump DIR            records, from an offset, as text, hex or JSON lines
  tail DIR            the newest records; with -f, follow the writer
  verify DIR          check every frame and index entry; exit 0 if healthy
  snapshot DIR DEST   copy the log as it is now into a new directory (or a
                      stream file), whole records only
  restore SRC DEST    write the log directory DEST from a snapshot stream
                      file (or a snapshot directory)
  recover DIR         open the log for writing, run its crash recovery, and
                      report what it cut (the only command that writes)

logsync <command> --help shows a command's options.
Exit status: 0 done (verify: healthy), 1 problems found or failed, 2 usage.
)";

struct Command {
  std::string_view name, usage;
};

constexpr Command kCommands[] = {
    {"stat", R"(usage: logsync stat DIR [--json]
Shows the log's segments (first offset, records, bytes, sealed or not) and
its totals. --json: one JSON object instead of the table.
)"},
    {"dump", R"(usage: logsync dump DIR [--from OFFSET] [--count N] [--format text|hex|json]
Prints records in offset order, from OFFSET (default: the oldest), at most N
(default: all). Formats, one record each:
  text  OFFSET, a tab, the payload with \, tab, newline, CR and bytes outside
        printable ASCII written as \\, \t, \n, \r, \xHH (the default)
  hex   "offset OFFSET length LENGTH", then 16 bytes per line in hex and ASCII
  json  {"offset":OFFSET,"length":LENGTH,"payload":"..."}: each payload byte
        is the code point U+0000-U+00FF of its value, JSON-escaped
)"},
    {"tail", R"(usage: logsync tail DIR [-n N] [-f] [--format text|hex|json]
Prints the newest N records (default 10), formatted as dump does. With -f,
then follows the writer: prints each record as it is appended, across rolls,
until interrupted (or the log is reset or removed: exit status 1).
)"},
    {"verify", R"(usage: logsync verify DIR [--quiet]
Reads every record of every segment, checks each frame (offset, length,
CRC32C) and index entry, and lists every problem (file, byte, what). Nothing
is repaired. Bytes after the newest record that are not zero (a write under
way, or a torn one a crash left, which recovery cuts) are reported, not
counted as a problem. Exit status 0: healthy; 1: problems.
--quiet: print nothing, only the exit status.
)"},
    {"snapshot", R"(usage: logsync snapshot DIR DEST
       logsync snapshot DIR --stream FILE
Copies the log as this command sees it (every whole record) into DEST, a new
log directory (absent or empty; written beside, then renamed into place, so
a failure leaves nothing), fsynced. Works while a writer appends. With
--stream, writes the snapshot stream instead (the stores' bytes back to back,
the form Log::Reader() produces) to FILE, or to stdout for "-".
)"},
    {"restore", R"(usage: logsync restore SRC DEST
Writes the log directory DEST (absent or empty) from SRC: a snapshot stream
file ("-" for stdin), or a log directory (such as one `snapshot` or
Log::Snapshot wrote). Every frame is checked; on failure nothing is left.
)"},
    {"recover", R"(usage: logsync recover DIR [--segment-bytes N] [--index-bytes N]
Opens the log for writing (refused while another process has it open), which
runs the recovery every open runs: torn and garbage bytes after the newest
whole record are cut, indexes rebuilt, segments left by an interrupted seal
removed. Reports what it checked and cut, then closes the log.
--segment-bytes, --index-bytes: the writer's Config.segment.max_store_bytes
and max_index_bytes, if it does not use the defaults.
)"},
};

struct Usage : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Arguments of one subcommand: positionals and --options, parsed as asked.
class Args {
 public:
  Args(std::string_view command, std::vector<std::string> args) : command_(command), args_(std::move(args)) {}

  bool Flag(std::string_view name) {
    for (std::size_t i = 0; i < args_.size(); ++i)
      if (args_[i] == name) {
        args_.erase(args_.begin() + static_cast<long>(i));
        return true;
      }
    return false;
  }

  std::optional<std::string> Option(std::string_view name) {
    for (std::size_t i = 0; i < args_.size(); ++i)
      if (args_[i] == name) {
        if (i + 1 >= args_.size()) throw Usage(std::string(name) + " needs a value");
        std::string v = args_[i + 1];
        args_.erase(args_.begin() + static_cast<long>(i), args_.begin() + static_cast<long>(i) + 2);
        return v;
      }
    return std::nullopt;
  }

  std::optional<std::uint64_t> Number(std::string_view name) {
    const auto v = Option(name);
    if (!v) return std::nullopt;
    std::uint64_t n = 0;
    const auto [p, ec] = std::from_chars(v->data(), v->data() + v->size(), n);
    if (ec != std::errc{} || p != v->data() + v->size() || v->empty())
      throw Usage(std::string(name) + ": not a number: '" + *v + "'");
    return n;
  }

  // The positionals, exactly `n` of them, once every option was taken.
  std::vector<std::string> Positionals(std::size_t n, const char* names) {
    for (const auto& a : args_)
      if (a.size() > 1 && a[0] == '-') throw Usage("unknown option " + a);
    if (args_.size() != n) throw Usage(std::string("expects ") + names);
    return args_;
  }

 private:
  std::string_view command_;
  std::vector<std::string> args_;
};

// ---- record formats -----------------------------------------------------------

enum class Format { kText, kHex, kJson };

Format ParseFormat(const std::optional<std::string>& f) {
  if (!f || *f == "text") return Format::kText;
  if (*f == "hex") return Format::kHex;
  if (*f == "json") return Format::kJson;
  throw Usage("--format: expected text, hex or json, not '" + *f + "'");
}

void PrintRecord(std::ostream& out, Format format, std::uint64_t offset, std::span<const std::byte> bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  auto hex2 = [&](unsigned char c) {
    out << kHex[c >> 4] << kHex[c & 15];
  };
  switch (format) {
    case Format::kText:
      out << offset << '\t';
      for (std::byte b : bytes) {
        const auto c = static_cast<unsigned char>(b);
        if (c == '\\') out << "\\\\";
        else if (c == '\t') out << "\\t";
        else if (c == '\n') out << "\\n";
        else if (c == '\r') out << "\\r";
        else if (c >= 0x20 && c < 0x7f) out << static_cast<char>(c);
        else out << "\\x", hex2(c);
      }
      out << '\n';
      break;
    case Format::kHex:
      out << "offset " << offset << " length " << bytes.size() << '\n';
      for (std::size_t at = 0; at < bytes.size(); at += 16) {
        char pos[24];
        std::snprintf(pos, sizeof pos, "%08zx ", at);
        out << pos;
        std::string ascii;
        for (std::size_t j = at; j < at + 16; ++j) {
          if (j < bytes.size()) {
            const auto c = static_cast<unsigned char>(bytes[j]);
            out << ' ', hex2(c);
            ascii += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '.';
          } else {
            out << "   ";
          }
        }
        out << "  |" << ascii << "|\n";
      }
      break;
    case Format::kJson:
      out << "{\"offset\":" << offset << ",\"length\":" << bytes.size() << ",\"payload\":\"";
      for (std::byte b : bytes) {
        const auto c = static_cast<unsigned char>(b);
        if (c == '"') out << "\\\"";
        else if (c == '\\') out << "\\\\";
        else if (c >= 0x20 && c < 0x7f) out << static_cast<char>(c);
        else out << "\\u00", hex2(c);
      }
      out << "\"}\n";
      break;
  }
}

std::string JsonString(std::string_view s) {
  std::string out = "\"";
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '"' || c == '\\') out += '\\', out += ch;
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += ch;
  }
  return out + "\"";
}

// ---- subcommands ---------------------------------------------------------------

int Stat(Args args) {
  const bool json = args.Flag("--json");
  const auto dir = args.Positionals(1, "DIR")[0];
  Reader reader(dir);
  const auto segs = reader.Segments();
  std::uint64_t record_bytes = 0, file_bytes = 0, sealed = 0;
  for (const auto& s : segs) {
    record_bytes += s.bytes;
    file_bytes += s.store_file_bytes + s.index_file_bytes;
    sealed += s.sealed;
  }
  const std::uint64_t records = reader.NextOffset() - reader.LowestOffset();
  if (json) {
    std::cout << "{\"dir\":" << JsonString(fs::absolute(dir).string()) << ",\"records\":" << records
              << ",\"lowest_offset\":" << reader.LowestOffset() << ",\"next_offset\":" << reader.NextOffset()
              << ",\"record_bytes\":" << record_bytes << ",\"file_bytes\":" << file_bytes << ",\"segments\":[";
    for (std::size_t k = 0; k < segs.size(); ++k)
      std::cout << (k ? "," : "") << "{\"base\":" << segs[k].base << ",\"records\":" << segs[k].records
                << ",\"record_bytes\":" << segs[k].bytes << ",\"store_file_bytes\":" << segs[k].store_file_bytes
                << ",\"index_file_bytes\":" << segs[k].index_file_bytes
                << ",\"sealed\":" << (segs[k].sealed ? "true" : "false") << "}";
    std::cout << "]}\n";
    return 0;
  }
  std::cout << "log        " << fs::absolute(dir).string() << '\n';
  std::cout << "records    " << records;
  if (records > 0) std::cout << " (offsets " << reader.LowestOffset() << " to " << reader.NextOffset() - 1 << ")";
  std::cout << "; next offset " << reader.NextOffset() << '\n';
  std::cout << "segments   " << segs.size() << " (" << sealed << " sealed)\n";
  std::cout << "bytes      " << record_bytes << " of records in the stores; " << file_bytes
            << " in the files (stores and indexes, with what is allocated ahead)\n\n";
  std::printf("%-20s %12s %20s %14s %14s %14s  %s\n", "segment", "records", "first offset", "record bytes",
              "store file", "index file", "state");
  for (const auto& s : segs)
    std::printf("%-20s %12llu %20llu %14llu %14llu %14llu  %s\n", logsync::detail::SegmentStem(s.base).c_str(),
                static_cast<unsigned long long>(s.records), static_cast<unsigned long long>(s.base),
                static_cast<unsigned long long>(s.bytes), static_cast<unsigned long long>(s.store_file_bytes),
                static_cast<unsigned long long>(s.index_file_bytes), s.sealed ? "sealed" : "unsealed");
  return 0;
}

int Dump(Args args) {
  const auto from = args.Number("--from");
  const auto count = args.Number("--count");
  const Format format = ParseFormat(args.Option("--format"));
  Reader reader(args.Positionals(1, "DIR")[0]);
  std::uint64_t left = count.value_or(std::numeric_limits<std::uint64_t>::max());
  if (left == 0) return 0;
  if (from && *from >= reader.NextOffset()) return 0;
  reader.ForEachPayload(from.value_or(0), [&](const logsync::Payload& p) {
    PrintRecord(std::cout, format, p.offset, p.bytes);
    return --left > 0;
  });
  return std::cout.flush() ? 0 : 1;
}

int Tail(Args args) {
  const bool follow = args.Flag("-f") || args.Flag("--follow");
  const std::uint64_t n = args.Number("-n").value_or(10);
  const Format format = ParseFormat(args.Option("--format"));
  Reader reader(args.Positionals(1, "DIR")[0]);
  auto print = [&](const logsync::Payload& p) { PrintRecord(std::cout, format, p.offset, p.bytes); };
  const std::uint64_t next = reader.NextOffset();
  std::uint64_t at = reader.ForEachPayload(next - std::min(n, next - reader.LowestOffset()), print);
  std::cout.flush();
  while (follow && std::cout) {
    if (!reader.WaitFor(at, std::chrono::seconds(1), std::chrono::milliseconds(20))) continue;
    at = reader.ForEachPayload(at, print);
    std::cout.flush();
  }
  return std::cout ? 0 : 1;
}

int Verify(Args args) {
  const bool quiet = args.Flag("--quiet");
  Reader reader(args.Positionals(1, "DIR")[0]);
  const auto report = reader.Verify();
  if (!quiet) {
    for (const auto& p : report.problems)
      std::cout << p.path.string() << ": byte " << p.position << ": " << p.what << '\n';
    if (report.more_problems > 0) std::cout << "... and " << report.more_problems << " more problems\n";
    std::cout << (report.Ok() ? "ok: " : "DAMAGED: ") << report.segments << " segments, " << report.records
              << " records (" << report.payload_bytes << " payload bytes) hold";
    if (!report.Ok()) std::cout << "; " << report.problems.size() + report.more_problems << " problems";
    std::cout << '\n';
    if (report.tail_bytes > 0)
      std::cout << "note: " << report.tail_bytes
                << " bytes after the newest record are not zero: a write under way, or a torn one a crash left "
                   "(the writer's recovery cuts them)\n";
  }
  return report.Ok() ? 0 : 1;
}

// A restore's config: records of any size the frame format holds.
logsync::Config AnyRecordSize() {
  logsync::Config c;
  c.segment.max_store_bytes = std::uint64_t{1} << 40;
  c.segment.max_index_bytes = std::uint64_t{1} << 30;
  c.max_record_bytes = std::numeric_limits<std::uint32_t>::max();
  return c;
}

int Snapshot(Args args) {
  const auto stream = args.Option("--stream");
  const auto pos = args.Positionals(stream ? 1 : 2, stream ? "DIR (with --stream FILE)" : "DIR DEST");
  Reader reader(pos[0]);
  auto bytes = reader.Bytes();
  if (stream) {
    std::unique_ptr<logsync::detail::File> file;
    if (*stream != "-") {
      if (fs::exists(*stream)) throw std::runtime_error("logsync: snapshot stream " + *stream + " exists already");
      file = std::make_unique<logsync::detail::File>(*stream, O_WRONLY | O_CREAT | O_EXCL);
    }
    std::vector<std::byte> buf(1 << 20);
    std::uint64_t written = 0;
    for (std::size_t n; (n = bytes.Read(buf)) > 0; written += n) {
      if (file) {
        file->WriteAt(std::span(buf).first(n), written);
      } else if (!std::cout.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(n))) {
        throw std::runtime_error("logsync: writing the snapshot stream to stdout failed");
      }
    }
    if (file) file->FullSync();
    std::cout.flush();
    std::cerr << "snapshot stream of " << reader.NextOffset() - reader.LowestOffset() << " records, " << written
              << " bytes\n";
    return 0;
  }
  const std::uint64_t next = logsync::RestoreLog(pos[1], bytes, AnyRecordSize());
  std::cout << "snapshot of " << next - reader.LowestOffset() << " records (next offset " << next << ") in "
            << pos[1] << '\n';
  return 0;
}

int Restore(Args args) {
  const auto pos = args.Positionals(2, "SRC DEST");
  const logsync::Config c = AnyRecordSize();
  std::uint64_t next;
  if (pos[0] != "-" && fs::is_directory(pos[0])) {
    Reader reader(pos[0]);
    auto bytes = reader.Bytes();
    next = logsync::RestoreLog(pos[1], bytes, c);
  } else {
    logsync::detail::File in = pos[0] == "-" ? logsync::detail::File() : logsync::detail::File(pos[0], O_RDONLY);
    struct Source {
      const logsync::detail::File* file;
      std::uint64_t at = 0;
      std::size_t Read(std::span<std::byte> out) {
        if (file->IsOpen()) {
          const std::size_t n = file->ReadAt(out, at);
          at += n;
          return n;
        }
        std::cin.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(out.size()));
        if (std::cin.bad()) throw std::runtime_error("logsync: reading the snapshot stream from stdin failed");
        return static_cast<std::size_t>(std::cin.gcount());
      }
    } source{&in};
    next = logsync::RestoreLog(pos[1], source, c);
  }
  std::cout << "restored " << pos[1] << " (next offset " << next << ")\n";
  return 0;
}

int Recover(Args args) {
  logsync::Config c;
  c.segment.max_store_bytes = args.Number("--segment-bytes").value_or(0);
  c.segment.max_index_bytes = args.Number("--index-bytes").value_or(0);
  const auto dir = args.Positionals(1, "DIR")[0];
  const Reader before(dir);  // refuses a path that holds no log
  logsync::Log<> log(dir, c);
  const auto stats = log.Stats();
  const auto& r = stats.recovery;
  for (const auto& action : r.actions) std::cout << action << '\n';
  if (r.more_actions > 0) std::cout << "... and " << r.more_actions << " more\n";
  std::cout << "recovered " << fs::absolute(dir).string() << ": " << stats.segments << " segments, "
            << log.NextOffset() - log.LowestOffset() << " records (next offset " << log.NextOffset() << "); checked "
            << r.bytes_checked << " bytes, " << r.records_recovered << " records not vouched for by a checkpoint; cut "
            << r.bytes_cut << " bytes; " << r.indexes_rebuilt << " indexes rebuilt; " << r.segments_removed
            << " segments removed\n";
  log.Close();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  std::ios::sync_with_stdio(false);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string command = args.front();
  args.erase(args.begin());
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  const Command* found = nullptr;
  for (const auto& c : kCommands)
    if (c.name == command) found = &c;
  if (found == nullptr) {
    std::cerr << "logsync: unknown command '" << command << "' (logsync --help lists them)\n";
    return 2;
  }
  for (const auto& a : args)
    if (a == "--help" || a == "-h") {
      std::cout << found->usage;
      return 0;
    }
  try {
    Args parsed(command, std::move(args));
    if (command == "stat") return Stat(std::move(parsed));
    if (command == "dump") return Dump(std::move(parsed));
    if (command == "tail") return Tail(std::move(parsed));
    if (command == "verify") return Verify(std::move(parsed));
    if (command == "snapshot") return Snapshot(std::move(parsed));
    if (command == "restore") return Restore(std::move(parsed));
    return Recover(std::move(parsed));
  } catch (const Usage& e) {
    std::cerr << "logsync " << command << ": " << e.what() << " (logsync " << command << " --help)\n";
    return 2;
  } catch (const std::exception& e) {
    std::string what = e.what();
    if (what.rfind("logsync: ", 0) != 0) what = "logsync: " + what;
    std::cerr << what << '\n';
    return 1;
  }
}
