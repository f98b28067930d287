#define BOOST_TEST_MODULE idempotence_test
#include <boost/test/unit_test.hpp>

// Idempotent appends in the replicated log's state machine on its own (no
// engine): producer entries go in through LogMachine::ApplyIdempotent as
// the engine's apply callback hands them over; snapshots are taken and
// restored through the FSM's callbacks.

#include <logsync/raft/state_machine.hpp>

#include "support/machine.hpp"
#include "support/temp_dir.hpp"

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

using namespace logsync::detail;  // the state machine, its entries and its producer table
using logsync::Config;
using logsync::test::Restore;
using logsync::test::Snapshot;
using logsync::test::TempDir;
using logsync::test::Values;

namespace {

// A committed entry: a record entry, or a producer entry with a stamp.
struct Entry {
  std::uint64_t index;
  std::optional<ProducerStamp> stamp;
  std::vector<std::string> records;
};

Outcome ApplyEntry(LogMachine<>& m, const Entry& e) {
  std::vector<std::span<const std::byte>> parts;
  for (const auto& r : e.records) parts.push_back(std::as_bytes(std::span(r)));
  if (e.stamp) return m.ApplyIdempotent(e.index, *e.stamp, parts);
  return Outcome{Admission::kNew, m.Apply(e.index, parts), parts.size()};
}

// 120 entries: 5 producers appending singles and batches, some retried
// (the same sequence again), some out of order (a sequence in a gap below
// the last, never appended), record entries between.
std::vector<Entry> Workload() {
  std::vector<Entry> entries;
  std::uint64_t index = 0, time = 1'000'000;
  std::vector<std::uint64_t> seq(6, 0);
  for (int i = 0; i < 120; ++i) {
    Entry e{++index, std::nullopt, {}};
    time += 7;
    const std::uint64_t p = static_cast<std::uint64_t>(i % 5) + 1;
    if (i % 9 == 4) {
      e.records = {"plain-" + std::to_string(i)};
    } else {
      const bool late = i % 17 == 16;        // out of order now and then
      if (i % 6 != 5 && !late) seq[p] += 2;   // a retry every sixth; odd gaps
      const std::uint64_t s = late ? seq[p] - 1 : seq[p];
      e.stamp = ProducerStamp{p, s, time};
      const std::size_t count = p % 2 == 0 ? 3 : 1;
      for (std::size_t k = 0; k < count; ++k)
        e.records.push_back("p" + std::to_string(p) + "-s" + std::to_string(s) + "-" + std::to_string(k));
    }
    entries.push_back(std::move(e));
  }
  return entries;
}

Entry Single(std::uint64_t index, std::uint64_t producer, std::uint64_t seq, std::uint64_t time, std::string v) {
  return Entry{index, ProducerStamp{producer, seq, time}, {std::move(v)}};
}

}  // namespace

BOOST_AUTO_TEST_CASE(a_retried_sequence_gets_the_original_offsets_and_appends_nothing) {
  TempDir dir;
  LogMachine<> m(dir.path(), Config{});
  BOOST_TEST(ApplyEntry(m, Entry{1, std::nullopt, {"old"}}).first == 0U);
  const Entry batch{2, ProducerStamp{42, 7, 1000}, {"a", "b", "c"}};
  const Outcome first = ApplyEntry(m, batch);
  BOOST_TEST((first.admission == Admission::kNew));
  BOOST_TEST(first.first == 1U);
  // The same append again, as a later entry (a client's retry after an
  // unknown outcome): the original offsets, nothing appended.
  Entry retry = batch;
  retry.index = 3;
  retry.stamp->time_ms = 2000;
  const Outcome again = ApplyEntry(m, retry);
  BOOST_TEST((again.admission == Admission::kDuplicate));
  BOOST_TEST(again.first == 1U);
  BOOST_TEST(again.count == 3U);
  BOOST_TEST(m.NextOffset() == 4U);
  // Below the last sequence: refused; the last again with another count:
  // refused; a gap above: appended.
  BOOST_TEST((ApplyEntry(m, Single(4, 42, 6, 2000, "late")).admission == Admission::kOutOfOrder));
  BOOST_TEST((ApplyEntry(m, Single(5, 42, 7, 2000, "one")).admission == Admission::kMismatch));
  BOOST_TEST(m.NextOffset() == 4U);
  const Outcome gap = ApplyEntry(m, Single(6, 42, 9, 2000, "d"));
  BOOST_TEST((gap.admission == Admission::kNew));
  BOOST_TEST(gap.first == 4U);
  // Another producer's sequences are its own.
  BOOST_TEST((ApplyEntry(m, Single(7, 43, 7, 2000, "e")).admission == Admission::kNew));
  BOOST_TEST((Values(m) == std::vector<std::string>{"old", "a", "b", "c", "d", "e"}));
  // The apply callback's result carries the outcome to the leader.
  const Outcome back = OutcomeOf(
      static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(OutcomeResult(again))));
  BOOST_TEST((back.admission == Admission::kDuplicate));
  BOOST_TEST(back.first == 1U);
}

BOOST_AUTO_TEST_CASE(producer_entries_encode_and_decode) {
  const std::vector<std::string> records{"x", "yy", ""};
  auto size = [&](std::size_t i) { return records[i].size(); };
  auto encode = [&](std::size_t i, std::span<std::byte> out) { std::memcpy(out.data(), records[i].data(), out.size()); };
  const ProducerStamp stamp{9, 11, 123456};
  raft_buffer p = EncodeEntry(records.size(), size, encode, &stamp);
  raft_buffer r = EncodeEntry(records.size(), size, encode);
  const std::span<const std::byte> pe(static_cast<const std::byte*>(p.base), p.len), re(static_cast<const std::byte*>(r.base), r.len);
  BOOST_TEST(p.len % 8 == 0U);
  BOOST_TEST(IsProducerEntry(pe));
  BOOST_TEST(!IsProducerEntry(re));
  std::vector<std::span<const std::byte>> parts;
  ProducerStamp got;
  BOOST_REQUIRE(DecodeProducerEntry(pe, got, parts));
  BOOST_TEST(got.producer == 9U);
  BOOST_TEST(got.sequence == 11U);
  BOOST_TEST(got.time_ms == 123456U);
  BOOST_REQUIRE(parts.size() == 3U);
  BOOST_TEST(std::string(reinterpret_cast<const char*>(parts[1].data()), parts[1].size()) == "yy");
  // A record entry (the format from before producer entries) decodes as before.
  BOOST_REQUIRE(DecodeEntry(re, parts));
  BOOST_TEST(parts.size() == 3U);
  raft_free(p.base);
  raft_free(r.base);
}

BOOST_AUTO_TEST_CASE(a_replay_from_entry_one_rebuilds_the_same_table) {
  const auto entries = Workload();
  TempDir a, b;
  std::vector<Outcome> outcomes;
  std::pair<std::vector<ProducerState>, std::uint64_t> table;
  std::vector<std::string> values;
  std::size_t duplicates = 0, refused = 0;
  {
    LogMachine<> m(a.path(), Config{});
    for (const auto& e : entries) {
      outcomes.push_back(ApplyEntry(m, e));
      duplicates += outcomes.back().admission == Admission::kDuplicate;
      refused += outcomes.back().admission == Admission::kOutOfOrder;
    }
    table = m.Producers();
    values = Values(m);
  }
  BOOST_TEST(duplicates > 5U);
  BOOST_TEST(refused > 2U);
  BOOST_TEST(table.first.size() == 5U);
  // A restart on the same local log (which holds every record: the replay
  // appends nothing), and a node starting empty: the same decisions, the
  // same table, the same log.
  for (const auto* dir : {&a, &b}) {
    LogMachine<> m(dir->path(), Config{});
    for (std::size_t i = 0; i < entries.size(); ++i) {
      const Outcome o = ApplyEntry(m, entries[i]);
      BOOST_TEST((o.admission == outcomes[i].admission), "entry " << entries[i].index);
      BOOST_TEST(o.first == outcomes[i].first, "entry " << entries[i].index);
    }
    BOOST_TEST((m.Producers() == table));
    BOOST_TEST((Values(m) == values));
  }
}

BOOST_AUTO_TEST_CASE(the_table_survives_a_snapshot_and_its_restore) {
  const auto entries = Workload();
  TempDir a, b, c;
  LogMachine<> m(a.path(), Config{});
  for (const auto& e : entries) ApplyEntry(m, e);
  const raft_buffer snap = Snapshot(m);
  BOOST_TEST(std::memcmp(snap.base, "LGSNAP03", 8) == 0);
  // Into an empty node (the log replaced), and into a node that holds the
  // log already (the log kept): both get the table.
  LogMachine<> empty(b.path(), Config{});
  raft_buffer copy{raft_malloc(snap.len), snap.len};
  std::memcpy(copy.base, snap.base, snap.len);
  BOOST_REQUIRE(Restore(empty, snap) == 0);
  BOOST_TEST((empty.Producers() == m.Producers()));
  BOOST_TEST((Values(empty) == Values(m)));
  LogMachine<> holding(c.path(), Config{});
  for (const auto& e : entries) ApplyEntry(holding, e);
  BOOST_REQUIRE(Restore(holding, copy) == 0);
  BOOST_TEST((holding.Producers() == m.Producers()));
  // A retry of a producer's last append after the restore is a duplicate,
  // with the offsets it got before the snapshot.
  const ProducerState last = *m.Producer(2);
  Entry retry{entries.size() + 1, ProducerStamp{2, last.sequence, 2'000'000}, {}};
  for (std::uint64_t k = 0; k < last.count; ++k) retry.records.push_back("again");
  const std::uint64_t next = empty.NextOffset();
  const Outcome o = ApplyEntry(empty, retry);
  BOOST_TEST((o.admission == Admission::kDuplicate));
  BOOST_TEST(o.first == last.first);
  BOOST_TEST(empty.NextOffset() == next);
}

BOOST_AUTO_TEST_CASE(old_snapshots_are_read_without_a_table) {
  TempDir a, b;
  LogMachine<> m(a.path(), Config{});
  ApplyEntry(m, Entry{1, std::nullopt, {"r0", "r1"}});
  ApplyEntry(m, Single(2, 5, 1, 1000, "p"));
  raft_buffer snap = Snapshot(m);
  // LGSNAP02: the same without the producer table (after the 4-byte count
  // of client addresses, none here).
  const std::size_t table = 12 + ProducerTable::kStateBytes;
  auto* bytes = static_cast<std::byte*>(snap.base);
  std::memcpy(bytes, "LGSNAP02", 8);
  std::memmove(bytes + 28, bytes + 28 + table, snap.len - 28 - table);
  snap.len -= table;
  LogMachine<> old(b.path(), Config{});
  BOOST_REQUIRE(Restore(old, snap) == 0);
  BOOST_TEST((Values(old) == std::vector<std::string>{"r0", "r1", "p"}));
  BOOST_TEST(old.Producers().first.empty());
  // Entries after it apply: record entries and producer entries.
  BOOST_TEST(ApplyEntry(old, Entry{3, std::nullopt, {"r3"}}).first == 3U);
  BOOST_TEST(ApplyEntry(old, Single(4, 5, 2, 1000, "q")).first == 4U);
}

BOOST_AUTO_TEST_CASE(the_least_recently_used_producer_is_forgotten_past_the_bound) {
  TempDir dir;
  LogMachine<> m(dir.path(), Config{}, ProducerLimits{3, 3'600'000});
  std::uint64_t index = 0;
  for (std::uint64_t p = 1; p <= 3; ++p) ApplyEntry(m, Single(++index, p, 1, 1000, "p" + std::to_string(p)));
  ApplyEntry(m, Single(++index, 1, 2, 1000, "p1-again"));  // 1 used last now: 2 is the least recently used
  ApplyEntry(m, Single(++index, 4, 1, 1000, "p4"));
  BOOST_TEST(m.Producers().first.size() == 3U);
  BOOST_TEST(!m.Producer(2).has_value());
  BOOST_TEST(m.Producer(1).has_value());
  // A retry of the forgotten producer is no longer recognised; one of a
  // remembered producer is.
  BOOST_TEST((ApplyEntry(m, Single(++index, 2, 1, 1000, "p2")).admission == Admission::kNew));
  BOOST_TEST((ApplyEntry(m, Single(++index, 4, 1, 1000, "p4")).admission == Admission::kDuplicate));
}

BOOST_AUTO_TEST_CASE(a_producer_expires_by_entry_time_not_by_any_clock) {
  TempDir dir;
  LogMachine<> m(dir.path(), Config{}, ProducerLimits{100, 1000});
  ApplyEntry(m, Single(1, 1, 1, 10'000, "a"));
  ApplyEntry(m, Single(2, 2, 1, 10'500, "b"));
  BOOST_TEST(m.Producers().first.size() == 2U);
  // 1000 ms after producer 1's append: not yet more than the expiry.
  ApplyEntry(m, Single(3, 3, 1, 11'000, "c"));
  BOOST_TEST(m.Producer(1).has_value());
  ApplyEntry(m, Single(4, 3, 2, 11'001, "c2"));
  BOOST_TEST(!m.Producer(1).has_value());
  BOOST_TEST(m.Producer(2).has_value());
  // An entry from a leader whose clock is behind does not turn the table's
  // clock back: producer 2 still expires on time.
  ApplyEntry(m, Single(5, 3, 3, 5'000, "c3"));
  BOOST_TEST(m.Producers().second == 11'001U);
  BOOST_TEST(m.Producer(3)->time_ms == 11'001U);
  ApplyEntry(m, Single(6, 4, 1, 11'501, "d"));
  BOOST_TEST(!m.Producer(2).has_value());
  // The expired producer's retry is appended again (documented).
  BOOST_TEST((ApplyEntry(m, Single(7, 1, 1, 11'501, "a")).admission == Admission::kNew));
}

BOOST_AUTO_TEST_CASE(a_table_that_does_not_parse_is_refused_and_leaves_the_table_as_it_was) {
  ProducerTable t;
  ProducerState ignored;
  t.Check(ProducerStamp{1, 1, 50}, 1, ignored);
  t.Remember(ProducerStamp{1, 1, 50}, 0, 1);
  t.Remember(ProducerStamp{2, 4, 50}, 1, 2);
  std::vector<std::byte> bytes(t.EncodedSize());
  t.Encode(bytes.data());
  ProducerTable back;
  BOOST_TEST(back.Decode(bytes).value_or(0) == bytes.size());
  BOOST_TEST((back.States() == t.States()));
  BOOST_TEST(back.NowMs() == 50U);
  // Cut short, or the same producer twice: refused, the table unchanged.
  BOOST_TEST(!back.Decode(std::span(bytes).first(bytes.size() - 1)).has_value());
  std::memcpy(bytes.data() + 12 + ProducerTable::kStateBytes, bytes.data() + 12, 8);
  BOOST_TEST(!back.Decode(bytes).has_value());
  BOOST_TEST((back.States() == t.States()));
}

// A pipelining producer's retry of any of its last kProducerWindow appends
// is a duplicate with its own offsets, also after the table went through
// its snapshot form; older ones are out of order.
BOOST_AUTO_TEST_CASE(the_table_remembers_a_window_of_appends_per_producer) {
  ProducerTable t;
  ProducerState s;
  const std::uint64_t n = kProducerWindow + 8;
  for (std::uint64_t seq = 1; seq <= n; ++seq) {
    BOOST_TEST((t.Check(ProducerStamp{5, seq, 10}, 1, s) == Admission::kNew));
    t.Remember(ProducerStamp{5, seq, 10}, 100 + seq, 1);
    t.Check(ProducerStamp{6, seq, 10}, 2, s);
    t.Remember(ProducerStamp{6, seq, 10}, 1000 + seq, 2);  // another producer in between
  }
  auto check = [&](ProducerTable& table) {
    for (std::uint64_t seq = n - kProducerWindow + 1; seq <= n; ++seq) {
      BOOST_TEST((table.Check(ProducerStamp{5, seq, 10}, 1, s) == Admission::kDuplicate), "seq " << seq);
      BOOST_TEST(s.first == 100 + seq);
      BOOST_TEST((table.Check(ProducerStamp{5, seq, 10}, 2, s) == Admission::kMismatch));
    }
    BOOST_TEST((table.Check(ProducerStamp{5, n - kProducerWindow, 10}, 1, s) == Admission::kOutOfOrder));
    BOOST_TEST(s.sequence == n);
  };
  check(t);
  std::vector<std::byte> bytes(t.EncodedSize());
  t.Encode(bytes.data());
  ProducerTable back;
  BOOST_TEST(back.Decode(bytes).value_or(0) == bytes.size());
  BOOST_TEST((back.States() == t.States()));
  check(back);
  BOOST_TEST(!back.Decode(std::span(bytes).first(bytes.size() - 1)).has_value());
}
