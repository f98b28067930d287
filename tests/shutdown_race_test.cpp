#define BOOST_TEST_MODULE shutdown_race_test
#include <boost/test/unit_test.hpp>

#include <logsync/logsync.hpp>

#include "support/config.hpp"
#include "support/temp_dir.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

// Close, Remove and Reset called while other threads read the log in every
// way it can be read (Read, View, ViewBatch, Scan, Reader, WaitFor) and
// append to it (Append, AppendBatch), round after round, with segments
// small enough that appends roll them meanwhile. Calls that overlap the
// shutdown either succeed, with the right data, or throw StateError (after
// a Reset, OffsetOutOfRange too); calls that start after Close or Remove
// returned throw StateError; calls that overlap nothing succeed. A round
// that does not finish within kDeadline (a deadlock) fails the test and
// ends the process, since its threads cannot be joined.

using logsync::Config;
using logsync::Log;
using logsync::Record;
using logsync::test::TempDir;

namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kDeadline = std::chrono::seconds(30);

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr int kDefaultRounds = 30;  // keeps a sanitizer run well under a minute
#else
constexpr int kDefaultRounds = 200;
#endif

// LOGSYNC_SHUTDOWN_ROUNDS overrides the number of rounds per test case.
int Rounds() {
  if (const char* env = std::getenv("LOGSYNC_SHUTDOWN_ROUNDS"); env != nullptr && std::atoi(env) > 0)
    return std::atoi(env);
  return kDefaultRounds;
}

Config SmallSegments() { return logsync::test::SmallSegments(4 * 1024); }  // a roll every ~40 records

// Records written before the threads start, at known offsets: the value
// names its generation (how many Resets came before it) and its offset.
std::string Prefilled(int gen, std::uint64_t offset) {
  std::string v = "p" + std::to_string(gen) + "-o" + std::to_string(offset) + "-";
  v.append(static_cast<std::size_t>(offset % 50), 'x');
  return v;
}

// Records appended during the race: the value names its writer and the
// writer's sequence number; the writer notes the offset each one got.
std::string Appended(int writer, std::uint64_t seq) {
  std::string v = "a" + std::to_string(writer) + "-s" + std::to_string(seq) + "-";
  v.append(static_cast<std::size_t>((static_cast<std::uint64_t>(writer) * 31 + seq) % 120),
           static_cast<char>('a' + writer));
  return v;
}

std::string_view AsView(std::span<const std::byte> p) { return {reinterpret_cast<const char*>(p.data()), p.size()}; }

enum class Shutdown { kClose, kRemove, kReset };

const char* Name(Shutdown s) {
  switch (s) {
    case Shutdown::kClose: return "Close";
    case Shutdown::kRemove: return "Remove";
    case Shutdown::kReset: return "Reset";
  }
  return "?";
}

constexpr std::uint64_t kNotAppended = ~0ULL;
constexpr int kUnknownGen = -1;

// What one writer appended: for each sequence number, the offset it got
// (kNotAppended if the call threw) and the generation it went into (when
// no Reset overlapped the call).
struct Writes {
  std::vector<std::uint64_t> offsets;
  std::vector<int> gens;
};

// An appended record a reader saw: checked against the writer's notes once
// the round is over. Generations [lo, hi] were current during the read.
struct Seen {
  std::uint64_t offset;
  int writer;
  std::uint64_t seq;
  int lo, hi;
};

// Counts Shutdown calls begun and ended; a call of another thread that
// reads (begun, ended) before and `begun` after knows whether it
// overlapped one.
struct Bracket {
  std::uint64_t begun, ended;
};

// The threads of a round, watched: waits with deadlines, and a failure
// report that ends the process when a wait runs out.
class Watch {
 public:
  explicit Watch(std::string round) : round_(std::move(round)) {}

  // Runs `fn` on a thread of its own, recording an unexpected exception as
  // an error.
  template <class F>
  void Spawn(std::string name, F fn) {
    std::size_t id;
    {
      std::lock_guard lock(mu_);
      id = done_.size();
      names_.push_back(name);
      done_.push_back(false);
    }
    threads_.emplace_back([this, id, name = std::move(name), fn = std::move(fn)]() mutable {
      try {
        fn();
      } catch (const std::exception& e) {
        Error(name + ": unexpected exception: " + e.what());
      } catch (...) {
        Error(name + ": unexpected non-standard exception");
      }
      std::lock_guard lock(mu_);
      done_[id] = true;
      cv_.notify_all();
    });
  }

  void Error(std::string what) {
    std::lock_guard lock(mu_);
    if (errors_.size() < 20) errors_.push_back(round_ + ": " + std::move(what));
    ++error_count_;
  }

  // One thread more has made the progress `Await` waits for.
  void Arrive() {
    std::lock_guard lock(mu_);
    ++arrived_;
    cv_.notify_all();
  }

  // Until `n` arrivals in all.
  void AwaitArrivals(std::size_t n, Clock::time_point deadline, const std::string& what) {
    Await([&] { return arrived_ >= n; }, deadline, what);
  }

  // Until thread `id` has returned.
  void AwaitThread(std::size_t id, Clock::time_point deadline, const std::string& what) {
    Await([&] { return done_[id]; }, deadline, what);
  }

  // Until every thread has returned; then joins them.
  void AwaitAll(Clock::time_point deadline, const std::string& what) {
    Await([&] { return std::all_of(done_.begin(), done_.end(), [](bool d) { return d; }); }, deadline, what);
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

  // The errors recorded (threads joined): a failed round ends the test case.
  void Report() {
    for (const auto& e : errors_) BOOST_ERROR(e);
    BOOST_REQUIRE_MESSAGE(error_count_ == 0, round_ << ": " << error_count_ << " errors");
  }

  bool Done(std::size_t id) {
    std::lock_guard lock(mu_);
    return done_[id];
  }

 private:
  template <class P>
  void Await(P pred, Clock::time_point deadline, const std::string& what) {
    std::unique_lock lock(mu_);
    if (cv_.wait_until(lock, deadline, pred)) return;
    // Deadlocked (or starved beyond any reason): the threads still running
    // cannot be joined, so report and leave.
    std::string running;
    for (std::size_t i = 0; i < done_.size(); ++i)
      if (!done_[i]) running += (running.empty() ? "" : ", ") + names_[i];
    const std::string msg = round_ + ": " + what + " (no progress within " +
                            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kDeadline).count()) +
                            " s; still running: " + running + ")";
    for (const auto& e : errors_) std::cerr << "error before it: " << e << "\n";
    BOOST_ERROR(msg);
    std::cout.flush();
    std::cerr << "FATAL: " << msg << std::endl;
    std::_Exit(1);
  }

  std::string round_;
  std::vector<std::string> names_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<bool> done_;
  std::size_t arrived_ = 0;
  std::vector<std::string> errors_;
  std::size_t error_count_ = 0;
};

// One round: a log with prefilled records, reader and appender threads
// racing `kind`, and the checks afterwards.
class RaceRound {
 public:
  static constexpr int kWriters = 2;  // Append, AppendBatch
  static constexpr int kMainWriter = kWriters;
  static constexpr int kReaders = 7;  // Read (two), View, ViewBatch, Scan, Reader, WaitFor
  static constexpr std::uint64_t kPrefill = 64;
  static constexpr std::size_t kMaxSeen = 20000;  // per reader thread
  static constexpr int kWarmup = 4;               // calls each thread makes before the shutdown

  RaceRound(Shutdown kind, int round, const std::filesystem::path& dir)
      : kind_(kind), dir_(dir), watch_(std::string(Name(kind)) + " round " + std::to_string(round)) {
    log_ = std::make_unique<Log<>>(dir_, SmallSegments());
    for (std::uint64_t o = 0; o < kPrefill; ++o) BOOST_REQUIRE(log_->Append(Record{0, Prefilled(0, o)}) == o);
    writes_.resize(kWriters + 1);
  }

  void Run() {
    const std::string what = Name(kind_);
    seen_.resize(kReaders);
    Spawn("Append", [this] { Appender(0, false); });
    Spawn("AppendBatch", [this] { Appender(1, true); });
    Spawn("Read", [this] { Reads(seen_[0]); });
    Spawn("View", [this] { Views(seen_[1]); });
    Spawn("ViewBatch", [this] { ViewBatches(seen_[2]); });
    Spawn("Scan", [this] { Scans(seen_[3]); });
    Spawn("Reader", [this] { ByteReaders(seen_[4]); });
    Spawn("WaitFor", [this] { Tails(seen_[5]); });
    Spawn("Read", [this] { Reads(seen_[6]); });  // a second one: more readers than cores
    const std::size_t threads = spawned_;

    watch_.AwaitArrivals(threads, Clock::now() + kDeadline, "threads made no progress before " + what);

    const std::size_t closer = spawned_++;
    std::uint64_t high_before = 0;
    watch_.Spawn(what, [this, &high_before] {
      high_before = log_->NextOffset() + 8;  // appends racing the Reset add a few
      begun_.fetch_add(1);
      switch (kind_) {
        case Shutdown::kClose: log_->Close(); break;
        case Shutdown::kRemove: log_->Remove(); break;
        case Shutdown::kReset: log_->Reset(); break;
      }
      ended_.fetch_add(1);
    });
    watch_.AwaitThread(closer, Clock::now() + kDeadline, what + " deadlocked with readers");
    const std::uint64_t high_before_reset = high_before;

    if (kind_ == Shutdown::kReset) {
      // Usable at once: an append reads back. Then as many records as the
      // log held before, for a tailer still waiting for an offset of then.
      const std::uint64_t seq = writes_[kMainWriter].offsets.size();
      const std::uint64_t o = log_->Append(Record{0, Appended(kMainWriter, seq)});
      writes_[kMainWriter].offsets.push_back(o);
      writes_[kMainWriter].gens.push_back(1);
      BOOST_TEST(log_->Read(o).value == Appended(kMainWriter, seq));
      std::vector<Record> batch;
      for (std::uint64_t i = 0; i < high_before_reset; ++i)
        batch.push_back(Record{0, Appended(kMainWriter, seq + 1 + i)});
      const std::uint64_t first = log_->AppendBatch(batch);
      for (std::uint64_t i = 0; i < batch.size(); ++i) {
        writes_[kMainWriter].offsets.push_back(first + i);
        writes_[kMainWriter].gens.push_back(1);
      }
      // Every thread's calls succeed again before they are stopped.
      watch_.AwaitArrivals(2 * threads, Clock::now() + kDeadline, "threads made no progress after Reset");
      stop_ = true;
      // A tailer may wait for the next offset: appends until all are out.
      const auto deadline = Clock::now() + kDeadline;
      while (!AllReturned(threads) && Clock::now() < deadline) {
        const std::uint64_t s = writes_[kMainWriter].offsets.size();
        writes_[kMainWriter].offsets.push_back(log_->Append(Record{0, Appended(kMainWriter, s)}));
        writes_[kMainWriter].gens.push_back(1);
        std::unique_lock lock(stop_mu_);
        stop_cv_.wait_for(lock, std::chrono::milliseconds(1));
      }
    }
    watch_.AwaitAll(Clock::now() + kDeadline, "threads did not return after " + what);
    CheckSeen();
    switch (kind_) {
      case Shutdown::kClose: AfterClose(); break;
      case Shutdown::kRemove: AfterRemove(); break;
      case Shutdown::kReset: AfterReset(); break;
    }
    watch_.Report();
  }

 private:
  enum class Outcome { kOk, kSkipped, kStateError, kOutOfRange };

  template <class F>
  void Spawn(std::string name, F fn) {
    ++spawned_;
    watch_.Spawn(std::move(name), std::move(fn));
  }

  bool AllReturned(std::size_t threads) {
    for (std::size_t i = 0; i < threads; ++i)
      if (!watch_.Done(i)) return false;
    return true;
  }

  Bracket Before() const {
    const std::uint64_t ended = ended_.load();
    return {begun_.load(), ended};
  }

  // Generations current at some time during a call bracketed by `b` and a
  // load of begun_ after it returned (`after`).
  std::pair<int, int> Gens(Bracket b, std::uint64_t after) const {
    if (kind_ != Shutdown::kReset) return {0, 0};
    return {static_cast<int>(b.ended), static_cast<int>(after)};
  }

  // Runs `call` (which returns kOk or kSkipped, or throws) until told to
  // stop, and checks each outcome against what overlapped the call. `call`
  // gets the bracket and reports generations seen through `gens`. Returns
  // nothing; exits once a call that started after Close or Remove returned
  // was refused.
  template <class Call>
  void Loop(const std::string& name, Call call) {
    const bool reader = name.rfind("Append", 0) != 0;
    struct Leave {
      RaceRound* r;
      bool reader;
      ~Leave() {
        if (reader) r->ReaderLeft();
      }
    } leave{this, reader};
    int ok_before = 0, ok_after = 0;
    for (;;) {
      if (stop_.load()) return;
      const Bracket b = Before();
      int gen_lo = INT_MAX, gen_hi = INT_MIN;
      const auto note_gen = [&](int g) {
        gen_lo = std::min(gen_lo, g);
        gen_hi = std::max(gen_hi, g);
      };
      Outcome outcome;
      std::string what;
      try {
        outcome = call(b, note_gen);
      } catch (const logsync::StateError& e) {
        outcome = Outcome::kStateError;
        what = e.what();
      } catch (const logsync::OffsetOutOfRange& e) {
        outcome = Outcome::kOutOfRange;
        what = e.what();
      }
      if (reader) ReadDone();
      const std::uint64_t after = begun_.load();
      const bool overlapped = !(b.begun == b.ended && after == b.begun);
      const auto [lo, hi] = Gens(b, after);
      if (gen_lo != INT_MAX && (gen_lo < lo || gen_hi > hi))
        watch_.Error(name + " saw a record of generation " + std::to_string(gen_lo == lo ? gen_hi : gen_lo) +
                     " while generations " + std::to_string(lo) + ".." + std::to_string(hi) + " were current");
      if (outcome == Outcome::kSkipped) continue;
      if (!overlapped && b.ended > 0 && kind_ != Shutdown::kReset) {
        // Started after Close or Remove returned: refused.
        if (outcome != Outcome::kStateError) {
          watch_.Error(name + " called after " + Name(kind_) + " returned did not throw StateError");
        }
        return;
      }
      if (!overlapped && outcome != Outcome::kOk) {
        watch_.Error(name + " overlapping no shutdown failed: " + what);
        return;
      }
      if (outcome == Outcome::kOutOfRange && kind_ != Shutdown::kReset) {
        watch_.Error(name + " overlapping " + Name(kind_) + " threw OffsetOutOfRange: " + what);
        return;
      }
      if (outcome != Outcome::kOk) continue;
      // Progress: kWarmup calls before the shutdown, one after a Reset.
      if (b.begun == 0 && ++ok_before == kWarmup) watch_.Arrive();
      if (!overlapped && b.ended == 1 && ++ok_after == 1) watch_.Arrive();
    }
  }

  // Checks the value read at `offset`; notes an appended record in `seen`
  // (with its generations filled in by the caller's bracket afterwards).
  template <class NoteGen>
  void Check(const std::string& name, std::uint64_t offset, std::string_view v, NoteGen& note_gen,
             std::vector<Seen>& seen) {
    int gen = 0, writer = 0;
    unsigned long long n = 0;
    if (std::sscanf(std::string(v).c_str(), "p%d-o%llu-", &gen, &n) == 2 && v == Prefilled(gen, n)) {
      if (n != offset)
        watch_.Error(name + " of offset " + std::to_string(offset) + " got the record of offset " + std::to_string(n));
      note_gen(gen);
      return;
    }
    if (std::sscanf(std::string(v).c_str(), "a%d-s%llu-", &writer, &n) == 2 && writer >= 0 &&
        writer <= kMainWriter && v == Appended(writer, n)) {
      if (seen.size() < kMaxSeen) seen.push_back({offset, writer, n, INT_MIN, INT_MIN});
      return;
    }
    watch_.Error(name + " of offset " + std::to_string(offset) + " got a value that was never written: " +
                 std::string(v.substr(0, 80)));
  }

  // Gives the appended records seen during the last call the generations
  // that were current during it.
  void Stamp(std::vector<Seen>& seen, std::size_t from, Bracket b) {
    const auto [lo, hi] = Gens(b, begun_.load());
    for (std::size_t i = from; i < seen.size(); ++i) seen[i].lo = lo, seen[i].hi = hi;
  }

  // A random offset below `next` (per thread, no shared state).
  static std::uint64_t Pick(std::uint64_t next) {
    thread_local std::uint64_t x = 0x9E3779B97F4A7C15ULL ^ std::hash<std::thread::id>{}(std::this_thread::get_id());
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return x % next;
  }

  // Appends wait for reads between them, so that a tight loop of appends
  // does not keep the append lock from Close (the lock is not fair), and the
  // log grows about as fast as it is read.
  void PaceAppends() {
    const std::uint64_t seen = reads_.load();
    if (readers_left_.load() == 0) return;
    reads_.wait(seen);
  }

  void ReadDone() {
    reads_.fetch_add(1);
    reads_.notify_all();
  }

  void ReaderLeft() {
    readers_left_.fetch_sub(1);
    ReadDone();
  }

  void Appender(int writer, bool batch) {
    Writes& w = writes_[static_cast<std::size_t>(writer)];
    std::vector<Record> records;
    Loop(batch ? "AppendBatch" : "Append", [&](Bracket b, auto&) {
      PaceAppends();
      const std::uint64_t seq = w.offsets.size();
      const std::uint64_t n = batch ? 1 + seq % 7 : 1;
      records.clear();
      for (std::uint64_t i = 0; i < n; ++i) {
        records.push_back(Record{0, Appended(writer, seq + i)});
        w.offsets.push_back(kNotAppended);
        w.gens.push_back(kUnknownGen);
      }
      const std::uint64_t first = batch ? log_->AppendBatch(records) : log_->Append(records[0]);
      const std::uint64_t after = begun_.load();
      const bool overlapped = !(b.begun == b.ended && after == b.begun);
      for (std::uint64_t i = 0; i < n; ++i) {
        w.offsets[seq + i] = first + i;
        if (!overlapped) w.gens[seq + i] = kind_ == Shutdown::kReset ? static_cast<int>(b.ended) : 0;
      }
      return Outcome::kOk;
    });
  }

  void Reads(std::vector<Seen>& seen) {
    Loop("Read", [&](Bracket b, auto& note_gen) {
      const std::uint64_t next = log_->NextOffset();
      if (next == 0) return Outcome::kSkipped;
      const std::uint64_t o = Pick(next);
      const std::size_t from = seen.size();
      const Record r = log_->Read(o);
      if (r.offset != o) watch_.Error("Read of offset " + std::to_string(o) + " set offset " + std::to_string(r.offset));
      Check("Read", o, r.value, note_gen, seen);
      Stamp(seen, from, b);
      return Outcome::kOk;
    });
  }

  void Views(std::vector<Seen>& seen) {
    Loop("View", [&](Bracket b, auto& note_gen) {
      const std::uint64_t next = log_->NextOffset();
      if (next == 0) return Outcome::kSkipped;
      const std::uint64_t o = Pick(next);
      const std::size_t from = seen.size();
      // Checked inside the callback, on the mapped bytes themselves.
      log_->View(o, [&](std::span<const std::byte> p) { Check("View", o, AsView(p), note_gen, seen); });
      Stamp(seen, from, b);
      return Outcome::kOk;
    });
  }

  void ViewBatches(std::vector<Seen>& seen) {
    std::vector<std::uint64_t> offsets;
    Loop("ViewBatch", [&](Bracket b, auto& note_gen) {
      const std::uint64_t next = log_->NextOffset();
      if (next == 0) return Outcome::kSkipped;
      offsets.clear();
      for (int i = 0; i < 24; ++i) offsets.push_back(Pick(next));  // more than one prefetch round
      const std::size_t from = seen.size();
      std::size_t visited = 0;
      log_->ViewBatch(offsets, [&](std::uint64_t o, std::span<const std::byte> p) {
        if (visited < offsets.size() && o != offsets[visited])
          watch_.Error("ViewBatch visited offset " + std::to_string(o) + " out of order");
        ++visited;
        Check("ViewBatch", o, AsView(p), note_gen, seen);
      });
      if (visited != offsets.size())
        watch_.Error("ViewBatch visited " + std::to_string(visited) + " of " + std::to_string(offsets.size()) +
                     " offsets and returned");
      Stamp(seen, from, b);
      return Outcome::kOk;
    });
  }

  void Scans(std::vector<Seen>& seen) {
    Loop("Scan", [&](Bracket b, auto& note_gen) {
      const std::uint64_t next = log_->NextOffset();
      const std::uint64_t from_offset = next == 0 ? 0 : Pick(next);
      const std::size_t from = seen.size();
      std::uint64_t expected = from_offset, n = 0;
      // Iterated on while the shutdown goes on: the range keeps its segments.
      for (const Record& r : log_->Scan(from_offset)) {
        if (r.offset != expected)
          watch_.Error("Scan from " + std::to_string(from_offset) + " gave offset " + std::to_string(r.offset) +
                       " where " + std::to_string(expected) + " was due");
        expected = r.offset + 1;
        Check("Scan", r.offset, r.value, note_gen, seen);
        if (++n == 200) break;
      }
      Stamp(seen, from, b);
      return Outcome::kOk;
    });
  }

  void ByteReaders(std::vector<Seen>& seen) {
    std::vector<std::byte> stream;
    std::array<std::byte, 4093> buf{};  // odd size: reads straddle frames and stores
    Loop("Reader", [&](Bracket b, auto& note_gen) {
      auto reader = log_->Reader();
      stream.clear();
      while (stream.size() < (256U << 10)) {
        const std::size_t n = reader.Read(buf);
        if (n == 0) break;
        stream.insert(stream.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n));
      }
      const std::size_t from = seen.size();
      ParseStream(stream, note_gen, seen);
      Stamp(seen, from, b);
      return Outcome::kOk;
    });
  }

  // The Reader() stream: each store's header, then whole frames with
  // consecutive offsets (a cut-off frame only at the end of a prefix).
  template <class NoteGen>
  void ParseStream(std::span<const std::byte> s, NoteGen& note_gen, std::vector<Seen>& seen) {
    std::size_t pos = 0;
    std::optional<std::uint64_t> expected;
    while (pos < s.size()) {
      if (s.size() - pos >= logsync::kStoreHeaderBytes &&
          std::memcmp(s.data() + pos, logsync::kStoreMagic.data(), logsync::kStoreMagic.size()) == 0) {
        const std::uint64_t base = logsync::detail::LoadLE<std::uint64_t>(s.data() + pos + 8);
        if (expected && base != *expected)
          watch_.Error("Reader stream: store of base " + std::to_string(base) + " after offset " +
                       std::to_string(*expected - 1));
        expected = base;
        pos += logsync::kStoreHeaderBytes;
        continue;
      }
      if (!expected) {
        watch_.Error("Reader stream does not start with a store header");
        return;
      }
      if (s.size() - pos < logsync::kFrameHeaderBytes) return;  // cut at the prefix's end
      const auto h = logsync::detail::ReadFrameHeader(s.data() + pos);
      if (s.size() - pos - logsync::kFrameHeaderBytes < h.length) return;
      const auto frame = s.subspan(pos, logsync::kFrameHeaderBytes + h.length);
      if (const char* why = logsync::detail::CheckFrame(frame, *expected)) {
        watch_.Error("Reader stream: frame at byte " + std::to_string(pos) + " (offset " +
                     std::to_string(*expected) + "): " + why);
        return;
      }
      Check("Reader", *expected, AsView(frame.subspan(logsync::kFrameHeaderBytes)), note_gen, seen);
      ++*expected;
      pos += frame.size();
    }
  }

  void Tails(std::vector<Seen>& seen) {
    int i = 0;
    Loop("WaitFor", [&](Bracket b, auto& note_gen) {
      const std::uint64_t o = log_->NextOffset();
      // Close and Remove must wake the tailer; a Reset does not, so it
      // waits in the new generation for appends to reach the offset.
      const auto timeout = kind_ == Shutdown::kReset ? std::chrono::seconds(5) : std::chrono::seconds(3600);
      const auto spin = (++i % 2 == 0) ? std::chrono::microseconds(50) : std::chrono::microseconds(0);
      const auto start = Clock::now();
      if (!log_->WaitFor(o, timeout, spin)) {
        if (Clock::now() - start >= timeout) {
          if (stop_.load()) return Outcome::kSkipped;
          watch_.Error("WaitFor of offset " + std::to_string(o) + " timed out while records were appended");
        }
        throw logsync::StateError("WaitFor: closed");  // a closed log: false at once
      }
      const std::size_t from = seen.size();
      const Record r = log_->Read(o);
      Check("WaitFor", o, r.value, note_gen, seen);
      Stamp(seen, from, b);
      return Outcome::kOk;
    });
  }

  // Each appended record a reader saw is the one its writer got that
  // offset for, from a generation current during the read.
  void CheckSeen() {
    for (const auto& list : seen_)
      for (const Seen& s : list) {
        const Writes& w = writes_[static_cast<std::size_t>(s.writer)];
        if (s.seq >= w.offsets.size() || w.offsets[s.seq] == kNotAppended) {
          BOOST_ERROR("read a record whose append did not return: writer " << s.writer << " seq " << s.seq);
          continue;
        }
        BOOST_TEST(w.offsets[s.seq] == s.offset, "writer " << s.writer << " seq " << s.seq);
        if (w.gens[s.seq] != kUnknownGen)
          BOOST_TEST((w.gens[s.seq] >= s.lo && w.gens[s.seq] <= s.hi),
                     "record of generation " << w.gens[s.seq] << " read while " << s.lo << ".." << s.hi
                                             << " were current");
      }
  }

  // Every record in the log, in order, is one written: its offset's
  // prefilled record or the appended record that got it.
  void CheckContents(Log<>& log, int gen) {
    std::vector<Seen> seen;
    std::uint64_t expected = log.LowestOffset();
    int bad_gen = INT_MIN;
    auto note_gen = [&](int g) {
      if (g != gen) bad_gen = g;
    };
    for (const Record& r : log.Scan(0)) {
      BOOST_REQUIRE(r.offset == expected);
      ++expected;
      Check("Scan", r.offset, r.value, note_gen, seen);
    }
    BOOST_TEST(expected == log.NextOffset());
    BOOST_TEST(bad_gen == INT_MIN, "a record of generation " << bad_gen << " in generation " << gen);
    for (const Seen& s : seen) {
      const Writes& w = writes_[static_cast<std::size_t>(s.writer)];
      BOOST_REQUIRE(s.seq < w.offsets.size());
      BOOST_TEST(w.offsets[s.seq] == s.offset);
    }
    // Every append that returned in this generation is there.
    for (int writer = 0; writer <= kMainWriter; ++writer) {
      const Writes& w = writes_[static_cast<std::size_t>(writer)];
      for (std::uint64_t seq = 0; seq < w.offsets.size(); ++seq)
        if (w.offsets[seq] != kNotAppended && w.gens[seq] == gen)
          BOOST_TEST(log.Read(w.offsets[seq]).value == Appended(writer, seq));
    }
  }

  void AfterClose() {
    const std::uint64_t next = log_->NextOffset();
    log_.reset();
    Log<> again(dir_, SmallSegments());
    BOOST_TEST(again.NextOffset() == next);
    for (std::uint64_t o = 0; o < kPrefill; ++o) BOOST_TEST(again.Read(o).value == Prefilled(0, o));
    CheckContents(again, 0);
  }

  void AfterRemove() {
    log_.reset();
    // Nothing else was in the directory: it is gone with its files.
    BOOST_TEST(!std::filesystem::exists(dir_), dir_ << " is still there");
    if (std::filesystem::exists(dir_))
      for (const auto& e : std::filesystem::directory_iterator(dir_)) BOOST_ERROR("left behind: " << e.path());
  }

  void AfterReset() {
    BOOST_TEST(log_->LowestOffset() == 0U);
    BOOST_TEST(log_->NextOffset() > 0U);
    CheckContents(*log_, 1);
    const std::uint64_t o = log_->Append(Record{0, "after the round"});
    BOOST_TEST(log_->Read(o).value == "after the round");
    log_->Close();
  }

  Shutdown kind_;
  std::filesystem::path dir_;
  Watch watch_;
  std::unique_ptr<Log<>> log_;
  std::size_t spawned_ = 0;
  std::atomic<std::uint64_t> begun_{0}, ended_{0};
  std::atomic<bool> stop_{false};
  std::atomic<std::uint64_t> reads_{0};
  std::atomic<int> readers_left_{kReaders};
  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  std::vector<Writes> writes_;
  std::vector<std::vector<Seen>> seen_;
};

void Race(Shutdown kind) {
  const int rounds = Rounds();
  const auto start = Clock::now();
  for (int round = 0; round < rounds; ++round) {
    TempDir dir;
    RaceRound(kind, round, dir / "log").Run();
  }
  BOOST_TEST_MESSAGE(rounds << " rounds of " << Name(kind) << " in "
                            << std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count()
                            << " ms");
}

}  // namespace

BOOST_AUTO_TEST_CASE(close_races_readers_and_appenders, *boost::unit_test::timeout(600)) { Race(Shutdown::kClose); }

BOOST_AUTO_TEST_CASE(remove_races_readers_and_appenders, *boost::unit_test::timeout(600)) { Race(Shutdown::kRemove); }

BOOST_AUTO_TEST_CASE(reset_races_readers_and_appenders, *boost::unit_test::timeout(600)) { Race(Shutdown::kReset); }
