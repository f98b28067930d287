// The embedded stores a C++ user might pick instead of logsync, on the
// workloads of append_bench and read_bench, measured on the same filesystem
// (a scratch directory under TMPDIR, removed afterwards):
//   W1  BM_<Peer>_W1Append100        append LOGSYNC_BENCH_RECORDS 100-byte
//                                    records, no sync
//   W1c BM_<Peer>_W1cAppend100CommitEach  W1 with a commit per record (LMDB,
//                                    SQLite: no record waits in process memory)
//   W2  BM_<Peer>_W2Append4096       append a tenth as many 4096-byte records
//   W3a BM_<Peer>_W3aAppendSync      durable append of one 100-byte record
//                                    (a sync on every record)
//   W3b BM_<Peer>_W3bAppendBatchSync durable batch of 100 records of 100 bytes
//                                    (one sync per batch)
//   W4  BM_<Peer>_W4ReadRandom       random point reads by key, 1 and 2 threads
//   W5  BM_<Peer>_W5Scan             a full sequential scan (iterator)
// W4 and W5 share one store per peer, filled once per process (outside the
// timed loops) with LOGSYNC_BENCH_READ_RECORDS (else LOGSYNC_BENCH_RECORDS) records of 100 bytes (default
// 1,000,000), brought to a steady state (RocksDB/LevelDB: flushed and
// compacted; SQLite: WAL checkpointed) and read through once (verified,
// warm cache) before the first timed read.
//
// Peers, each compiled only if meson found its library (LOGSYNC_HAVE_*), all
// with their default options except what is listed here:
//   RocksDB  keys are big-endian uint64 (8 bytes, so bytewise order is offset
//            order), WAL on. WriteOptions.sync = false for W1/W2, true for W3;
//            W3b is one WriteBatch per batch.
//   LevelDB  the same as RocksDB.
//   LMDB     one named database with MDB_INTEGERKEY (native uint64 keys), every
//            put with MDB_APPEND, map size 64 GiB (a reservation of address
//            space: the file grows only as pages are written).
//            W1/W2: env flags MDB_NOSYNC | MDB_NOMETASYNC and a transaction
//            committed every 1000 records (LMDB has no cheaper unsynced
//            single-record commit; the last partial transaction is committed
//            after the timed loop).
//            W3a: one transaction per record, default durability (no
//            MDB_NOSYNC). W3b: one transaction per batch of 100.
//            Reads: one read-only transaction per thread, mdb_txn_renew /
//            mdb_txn_reset around every read and every scan.
//   SQLite   journal_mode=WAL, table log(offset INTEGER PRIMARY KEY, value
//            BLOB), prepared statements, connections opened with
//            SQLITE_OPEN_NOMUTEX (one connection per thread).
//            W1/W2: synchronous=OFF and a transaction every 1000 rows (the last
//            partial transaction is committed after the timed loop).
//            W3a: synchronous=FULL and one autocommit INSERT per record.
//            W3b: synchronous=FULL and one BEGIN..COMMIT per batch of 100.
// Values are slices of a fixed pseudo-random pool (incompressible, different
// from one record to the next). Reads copy the value into a std::string, as
// logsync's Read and Scan hand out records that own their bytes.
// items_per_second is records/s; bytes_per_second counts payload (value) bytes.
// Every error of a peer's API aborts the program with a message on stderr.
//
// Quick mode (what `meson test --benchmark` runs): --benchmark_min_time=0.05
// with LOGSYNC_BENCH_RECORDS=200000. Full mode: --benchmark_min_time=2
// --benchmark_repetitions=5 --benchmark_report_aggregates_only=true (and
// LOGSYNC_BENCH_RECORDS unset: 1,000,000 records).

#include <benchmark/benchmark.h>

#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <system_error>

#if LOGSYNC_HAVE_ROCKSDB
#include <rocksdb/db.h>
#include <rocksdb/iterator.h>
#include <rocksdb/options.h>
#include <rocksdb/write_batch.h>
#endif
#if LOGSYNC_HAVE_LEVELDB
#include <leveldb/db.h>
#include <leveldb/iterator.h>
#include <leveldb/options.h>
#include <leveldb/write_batch.h>
#endif
#if LOGSYNC_HAVE_LMDB
#include <lmdb.h>
#endif
#if LOGSYNC_HAVE_SQLITE3
#include <sqlite3.h>
#endif

#if !(LOGSYNC_HAVE_ROCKSDB || LOGSYNC_HAVE_LEVELDB || LOGSYNC_HAVE_LMDB || LOGSYNC_HAVE_SQLITE3)
#error "peer_bench needs at least one of LOGSYNC_HAVE_ROCKSDB, _LEVELDB, _LMDB, _SQLITE3"
#endif

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kSmall = 100;        // W1, W3, W4, W5 record size
constexpr std::size_t kLarge = 4096;       // W2 record size
constexpr std::size_t kBatch = 100;        // W3b records per batch
constexpr std::uint64_t kTxnRecords = 1000;  // LMDB/SQLite W1/W2: records per transaction

[[noreturn]] void Die(std::string_view peer, std::string_view op, std::string_view detail) {
  std::fprintf(stderr, "peer_bench: %.*s: %.*s failed: %.*s\n", static_cast<int>(peer.size()), peer.data(),
               static_cast<int>(op.size()), op.data(), static_cast<int>(detail.size()), detail.data());
  std::abort();
}

/// A positive count from environment variable `name`, else `fallback`.
std::uint64_t EnvCount(const char* name, std::uint64_t fallback) {
  const char* env = std::getenv(name);
  if (env == nullptr || *env == '\0') return fallback;
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(env, &end, 10);
  if (errno != 0 || *end != '\0' || v == 0)
    Die("setup", std::string("parsing ") + name, std::string("not a positive integer: '") + env + "'");
  return static_cast<std::uint64_t>(v);
}

/// Records W1 appends (W2 a tenth): LOGSYNC_BENCH_RECORDS, default 1,000,000.
std::uint64_t AppendRecords() {
  static const std::uint64_t n = EnvCount("LOGSYNC_BENCH_RECORDS", 1000000);
  return n;
}

/// Records in the store W4 and W5 read: LOGSYNC_BENCH_READ_RECORDS, else
/// as many as W1 appends.
std::uint64_t ReadRecords() {
  static const std::uint64_t n = EnvCount("LOGSYNC_BENCH_READ_RECORDS", AppendRecords());
  return n;
}

/// The value of record `i` of `size` bytes: a slice of a fixed pseudo-random
/// pool, so that values are incompressible and consecutive records differ.
std::string_view Value(std::uint64_t i, std::size_t size) {
  constexpr std::size_t kPoolBytes = std::size_t{1} << 20;
  static const std::string pool = [] {
    std::string p(kPoolBytes + kLarge, '\0');
    std::mt19937_64 rng(0x6c6f6773796e63);  // fixed seed
    for (char& c : p) c = static_cast<char>(rng() & 0xff);
    return p;
  }();
  return {pool.data() + (i * size) % kPoolBytes, size};
}

/// A directory under TMPDIR, emptied on creation and removed on destruction
/// (the same scheme as logsync::bench::ScratchDir, kept local so that this
/// program does not depend on the logsync headers).
class Scratch {
 public:
  explicit Scratch(const std::string& name)
      : path_(fs::temp_directory_path() / ("logsync-bench-peer-" + name + "-" + std::to_string(::getpid()))) {
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~Scratch() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

/// kNone: W1/W2 (no sync; LMDB and SQLite commit every kTxnRecords records).
/// kNoneCommitEach: W1c, no sync, but LMDB and SQLite commit every record,
///   so that, as with a logsync Append, a record is in the kernel (and
///   survives the process being killed) when the call returns.
/// kEach: W3 (every record, or every batch, is durable when the call returns).
enum class Sync { kNone, kNoneCommitEach, kEach };

/// Big-endian uint64 key for the LSM stores: bytewise order = offset order.
struct BeKey {
  char b[8];
  explicit BeKey(std::uint64_t v) {
    for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (56 - 8 * i)) & 0xff);
  }
};

// ---------------------------------------------------------------------------
// RocksDB and LevelDB: one adapter over the API RocksDB kept from LevelDB.
// Api names the library's types and what differs between the two: closing,
// a WriteBatch::Put that returns a Status or nothing, and settling.
#if LOGSYNC_HAVE_ROCKSDB || LOGSYNC_HAVE_LEVELDB
template <class Api>
class Lsm {
  using Slice = typename Api::Slice;

 public:
  static constexpr const char* kName = Api::kName;

  Lsm(const fs::path& dir, Sync sync) {
    typename Api::Options options;
    options.create_if_missing = true;
    options.error_if_exists = true;
    typename Api::DB* db = nullptr;
    Ok(Api::DB::Open(options, (dir / "db").string(), &db), "DB::Open");
    db_.reset(db);
    write_options_.sync = sync == Sync::kEach;  // the WAL is on by default in both
  }
  ~Lsm() { Ok(Api::Close(*db_), "DB::Close"); }
  Lsm(const Lsm&) = delete;
  Lsm& operator=(const Lsm&) = delete;

  void Append(std::uint64_t offset, std::string_view value) {
    const BeKey key(offset);
    Ok(db_->Put(write_options_, Slice(key.b, sizeof key.b), Slice(value.data(), value.size())), "DB::Put");
  }
  void AppendBatch(std::uint64_t first, std::size_t n, std::size_t size) {
    batch_.Clear();
    for (std::uint64_t o = first; o < first + n; ++o) {
      const BeKey key(o);
      const std::string_view value = Value(o, size);
      Ok(Api::BatchPut(batch_, Slice(key.b, sizeof key.b), Slice(value.data(), value.size())), "WriteBatch::Put");
    }
    Ok(db_->Write(write_options_, &batch_), "DB::Write");
  }
  void Commit() {}
  void Settle() { Ok(Api::Settle(*db_), "Settle"); }

  class Reader {
   public:
    explicit Reader(Lsm& store) : db_(store.db_.get()) {}
    void Get(std::uint64_t offset, std::string& out) {
      const BeKey key(offset);
      Ok(db_->Get(typename Api::ReadOptions(), Slice(key.b, sizeof key.b), &out), "DB::Get");
    }
    template <class F>
    void Scan(F&& f) {
      std::unique_ptr<typename Api::Iterator> it(db_->NewIterator(typename Api::ReadOptions()));
      for (it->SeekToFirst(); it->Valid(); it->Next()) f(std::string_view(it->value().data(), it->value().size()));
      Ok(it->status(), "Iterator");
    }

   private:
    typename Api::DB* db_;
  };

 private:
  static void Ok(const typename Api::Status& s, const char* op) {
    if (!s.ok()) Die(kName, op, s.ToString());
  }
  std::unique_ptr<typename Api::DB> db_;
  typename Api::WriteOptions write_options_;
  typename Api::WriteBatch batch_;
};
#endif

#if LOGSYNC_HAVE_ROCKSDB
struct RocksDbApi {
  static constexpr const char* kName = "RocksDB";
  using DB = rocksdb::DB;
  using Options = rocksdb::Options;
  using WriteOptions = rocksdb::WriteOptions;
  using ReadOptions = rocksdb::ReadOptions;
  using WriteBatch = rocksdb::WriteBatch;
  using Iterator = rocksdb::Iterator;
  using Slice = rocksdb::Slice;
  using Status = rocksdb::Status;
  static Status Close(DB& db) { return db.Close(); }
  static Status BatchPut(WriteBatch& b, const Slice& k, const Slice& v) { return b.Put(k, v); }
  static Status Settle(DB& db) {
    const Status s = db.Flush(rocksdb::FlushOptions());
    return s.ok() ? db.CompactRange(rocksdb::CompactRangeOptions(), nullptr, nullptr) : s;
  }
};
using RocksDB = Lsm<RocksDbApi>;
#endif

#if LOGSYNC_HAVE_LEVELDB
struct LevelDbApi {
  static constexpr const char* kName = "LevelDB";
  using DB = leveldb::DB;
  using Options = leveldb::Options;
  using WriteOptions = leveldb::WriteOptions;
  using ReadOptions = leveldb::ReadOptions;
  using WriteBatch = leveldb::WriteBatch;
  using Iterator = leveldb::Iterator;
  using Slice = leveldb::Slice;
  using Status = leveldb::Status;
  static Status Close(DB&) { return Status(); }  // deleting the DB closes it
  static Status BatchPut(WriteBatch& b, const Slice& k, const Slice& v) {
    b.Put(k, v);
    return Status();
  }
  // CompactRange over everything also writes the memtable out first.
  static Status Settle(DB& db) {
    db.CompactRange(nullptr, nullptr);
    return Status();
  }
};
using LevelDB = Lsm<LevelDbApi>;
#endif

// ---------------------------------------------------------------------------
// LMDB
#if LOGSYNC_HAVE_LMDB
static_assert(sizeof(std::size_t) == sizeof(std::uint64_t), "MDB_INTEGERKEY keys are size_t: needs a 64-bit size_t");

class Lmdb {
 public:
  static constexpr const char* kName = "LMDB";
  static constexpr std::size_t kMapSize = std::size_t{64} << 30;

  Lmdb(const fs::path& dir, Sync sync) : sync_(sync) {
    Ok(mdb_env_create(&env_), "mdb_env_create");
    Ok(mdb_env_set_mapsize(env_, kMapSize), "mdb_env_set_mapsize");
    Ok(mdb_env_set_maxdbs(env_, 1), "mdb_env_set_maxdbs");
    // W1/W2: no sync at commit. W3: default durability (a sync at every commit).
    const unsigned flags = sync != Sync::kEach ? MDB_NOSYNC | MDB_NOMETASYNC : 0;
    Ok(mdb_env_open(env_, dir.c_str(), flags, 0644), "mdb_env_open");
    MDB_txn* txn = nullptr;
    Ok(mdb_txn_begin(env_, nullptr, 0, &txn), "mdb_txn_begin");
    Ok(mdb_dbi_open(txn, "log", MDB_CREATE | MDB_INTEGERKEY, &dbi_), "mdb_dbi_open");
    Ok(mdb_txn_commit(txn), "mdb_txn_commit");
  }
  ~Lmdb() {
    Commit();
    mdb_env_close(env_);
  }
  Lmdb(const Lmdb&) = delete;
  Lmdb& operator=(const Lmdb&) = delete;

  /// kEach: one transaction per record. kNone: a transaction every kTxnRecords.
  void Append(std::uint64_t offset, std::string_view value) {
    if (txn_ == nullptr) Ok(mdb_txn_begin(env_, nullptr, 0, &txn_), "mdb_txn_begin");
    Put(offset, value);
    if (sync_ != Sync::kNone || ++pending_ == kTxnRecords) Commit();
  }
  /// One transaction per batch.
  void AppendBatch(std::uint64_t first, std::size_t n, std::size_t size) {
    Ok(mdb_txn_begin(env_, nullptr, 0, &txn_), "mdb_txn_begin");
    for (std::uint64_t o = first; o < first + n; ++o) Put(o, Value(o, size));
    Commit();
  }
  /// Commits the open transaction, if any.
  void Commit() {
    if (txn_ == nullptr) return;
    const int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;
    pending_ = 0;
    Ok(rc, "mdb_txn_commit");
  }
  void Settle() {
    Commit();
    Ok(mdb_env_sync(env_, 1), "mdb_env_sync");
  }

  class Reader {
   public:
    explicit Reader(Lmdb& store) : dbi_(store.dbi_) {
      Ok(mdb_txn_begin(store.env_, nullptr, MDB_RDONLY, &txn_), "mdb_txn_begin(MDB_RDONLY)");
      mdb_txn_reset(txn_);
    }
    ~Reader() { mdb_txn_abort(txn_); }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    void Get(std::uint64_t offset, std::string& out) {
      Ok(mdb_txn_renew(txn_), "mdb_txn_renew");
      std::size_t k = offset;
      MDB_val key{sizeof k, &k};
      MDB_val val{0, nullptr};
      Ok(mdb_get(txn_, dbi_, &key, &val), "mdb_get");
      out.assign(static_cast<const char*>(val.mv_data), val.mv_size);
      mdb_txn_reset(txn_);
    }
    template <class F>
    void Scan(F&& f) {
      Ok(mdb_txn_renew(txn_), "mdb_txn_renew");
      MDB_cursor* cursor = nullptr;
      Ok(mdb_cursor_open(txn_, dbi_, &cursor), "mdb_cursor_open");
      MDB_val key{0, nullptr};
      MDB_val val{0, nullptr};
      int rc = mdb_cursor_get(cursor, &key, &val, MDB_FIRST);
      while (rc == 0) {
        f(std::string_view(static_cast<const char*>(val.mv_data), val.mv_size));
        rc = mdb_cursor_get(cursor, &key, &val, MDB_NEXT);
      }
      if (rc != MDB_NOTFOUND) Ok(rc, "mdb_cursor_get");
      mdb_cursor_close(cursor);
      mdb_txn_reset(txn_);
    }

   private:
    MDB_dbi dbi_;
    MDB_txn* txn_ = nullptr;
  };

 private:
  static void Ok(int rc, const char* op) {
    if (rc != 0) Die(kName, op, mdb_strerror(rc));
  }
  void Put(std::uint64_t offset, std::string_view value) {
    std::size_t k = offset;
    MDB_val key{sizeof k, &k};
    MDB_val val{value.size(), const_cast<char*>(value.data())};  // LMDB only reads it
    Ok(mdb_put(txn_, dbi_, &key, &val, MDB_APPEND), "mdb_put(MDB_APPEND)");
  }

  Sync sync_;
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
  MDB_txn* txn_ = nullptr;
  std::uint64_t pending_ = 0;
};
#endif

// ---------------------------------------------------------------------------
// SQLite
#if LOGSYNC_HAVE_SQLITE3
class Sqlite {
 public:
  static constexpr const char* kName = "SQLite";

  Sqlite(const fs::path& dir, Sync sync) : path_(dir / "log.db"), sync_(sync) {
    db_ = Open(path_, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE);
    std::string mode;
    Exec(db_, "PRAGMA journal_mode=WAL", &mode);
    if (mode != "wal") Die(kName, "PRAGMA journal_mode=WAL", "journal mode is '" + mode + "'");
    Exec(db_, sync != Sync::kEach ? "PRAGMA synchronous=OFF" : "PRAGMA synchronous=FULL");
    Exec(db_, "CREATE TABLE log(offset INTEGER PRIMARY KEY, value BLOB)");
    insert_ = Prepare(db_, "INSERT INTO log(offset, value) VALUES(?1, ?2)");
    begin_ = Prepare(db_, "BEGIN");
    commit_ = Prepare(db_, "COMMIT");
  }
  ~Sqlite() {
    Commit();
    sqlite3_finalize(insert_);
    sqlite3_finalize(begin_);
    sqlite3_finalize(commit_);
    Close(db_);
  }
  Sqlite(const Sqlite&) = delete;
  Sqlite& operator=(const Sqlite&) = delete;

  /// kEach: one autocommit INSERT per record. kNone: a transaction every kTxnRecords rows.
  void Append(std::uint64_t offset, std::string_view value) {
    if (sync_ == Sync::kNone && !in_txn_) Begin();
    Insert(offset, value);
    if (in_txn_ && ++pending_ == kTxnRecords) Commit();
  }
  /// One transaction per batch.
  void AppendBatch(std::uint64_t first, std::size_t n, std::size_t size) {
    Begin();
    for (std::uint64_t o = first; o < first + n; ++o) Insert(o, Value(o, size));
    Commit();
  }
  /// Commits the open transaction, if any.
  void Commit() {
    if (!in_txn_) return;
    Step(db_, commit_, SQLITE_DONE, "COMMIT");
    in_txn_ = false;
    pending_ = 0;
  }
  void Settle() {
    Commit();
    Exec(db_, "PRAGMA wal_checkpoint(TRUNCATE)");
  }

  /// A connection of its own per reader (thread).
  class Reader {
   public:
    explicit Reader(Sqlite& store) : db_(Open(store.path_, SQLITE_OPEN_READWRITE)) {
      get_ = Prepare(db_, "SELECT value FROM log WHERE offset = ?1");
      scan_ = Prepare(db_, "SELECT value FROM log ORDER BY offset");
    }
    ~Reader() {
      sqlite3_finalize(get_);
      sqlite3_finalize(scan_);
      Close(db_);
    }
    Reader(const Reader&) = delete;
    Reader& operator=(const Reader&) = delete;

    void Get(std::uint64_t offset, std::string& out) {
      Ok(db_, sqlite3_bind_int64(get_, 1, static_cast<sqlite3_int64>(offset)), "sqlite3_bind_int64");
      Step(db_, get_, SQLITE_ROW, "SELECT by offset");
      out.assign(static_cast<const char*>(sqlite3_column_blob(get_, 0)),
                 static_cast<std::size_t>(sqlite3_column_bytes(get_, 0)));
      Step(db_, get_, SQLITE_DONE, "SELECT by offset (end)");
    }
    template <class F>
    void Scan(F&& f) {
      int rc;
      while ((rc = sqlite3_step(scan_)) == SQLITE_ROW)
        f(std::string_view(static_cast<const char*>(sqlite3_column_blob(scan_, 0)),
                           static_cast<std::size_t>(sqlite3_column_bytes(scan_, 0))));
      if (rc != SQLITE_DONE) Fail(db_, rc, "SELECT scan");
      Ok(db_, sqlite3_reset(scan_), "sqlite3_reset");
    }

   private:
    sqlite3* db_;
    sqlite3_stmt* get_ = nullptr;
    sqlite3_stmt* scan_ = nullptr;
  };

 private:
  [[noreturn]] static void Fail(sqlite3* db, int rc, const char* op) {
    Die(kName, op, std::string(sqlite3_errstr(rc)) + " (" + std::to_string(rc) + "): " + sqlite3_errmsg(db));
  }
  static void Ok(sqlite3* db, int rc, const char* op) {
    if (rc != SQLITE_OK) Fail(db, rc, op);
  }
  static sqlite3* Open(const fs::path& path, int flags) {
    sqlite3* db = nullptr;
    const int rc = sqlite3_open_v2(path.c_str(), &db, flags | SQLITE_OPEN_NOMUTEX, nullptr);
    if (rc != SQLITE_OK) {
      const std::string msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
      sqlite3_close(db);
      Die(kName, "sqlite3_open_v2", path.string() + ": " + msg);
    }
    return db;
  }
  static void Close(sqlite3* db) {
    const int rc = sqlite3_close(db);
    if (rc != SQLITE_OK) Fail(db, rc, "sqlite3_close");
  }
  static sqlite3_stmt* Prepare(sqlite3* db, const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    Ok(db, sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr), sql);
    return stmt;
  }
  /// Steps `stmt` expecting `want`; resets it once it is done.
  static void Step(sqlite3* db, sqlite3_stmt* stmt, int want, const char* op) {
    const int rc = sqlite3_step(stmt);
    if (rc != want) Fail(db, rc, op);
    if (rc == SQLITE_DONE) Ok(db, sqlite3_reset(stmt), "sqlite3_reset");
  }
  /// Runs `sql`; the first column of its first row, if any, goes to `first`.
  static void Exec(sqlite3* db, const char* sql, std::string* first = nullptr) {
    char* err = nullptr;
    const int rc = sqlite3_exec(
        db, sql,
        [](void* out, int columns, char** values, char**) -> int {
          auto* s = static_cast<std::string*>(out);
          if (s != nullptr && s->empty() && columns > 0 && values[0] != nullptr) *s = values[0];
          return 0;
        },
        first, &err);
    if (rc != SQLITE_OK) {
      const std::string msg = err != nullptr ? err : sqlite3_errstr(rc);
      sqlite3_free(err);
      Die(kName, sql, msg);
    }
  }
  void Begin() {
    Step(db_, begin_, SQLITE_DONE, "BEGIN");
    in_txn_ = true;
  }
  void Insert(std::uint64_t offset, std::string_view value) {
    Ok(db_, sqlite3_bind_int64(insert_, 1, static_cast<sqlite3_int64>(offset)), "sqlite3_bind_int64");
    Ok(db_, sqlite3_bind_blob(insert_, 2, value.data(), static_cast<int>(value.size()), SQLITE_STATIC),
       "sqlite3_bind_blob");
    Step(db_, insert_, SQLITE_DONE, "INSERT");
  }

  fs::path path_;
  Sync sync_;
  sqlite3* db_ = nullptr;
  sqlite3_stmt* insert_ = nullptr;
  sqlite3_stmt* begin_ = nullptr;
  sqlite3_stmt* commit_ = nullptr;
  bool in_txn_ = false;
  std::uint64_t pending_ = 0;
};
#endif

// ---------------------------------------------------------------------------
// The workloads, for any peer P.

void Report(benchmark::State& state, std::int64_t records, std::size_t size) {
  state.SetItemsProcessed(records);
  state.SetBytesProcessed(records * static_cast<std::int64_t>(size));
}

/// W1, W2, W3a: one record per iteration.
template <class P>
void Append(benchmark::State& state, std::size_t size, Sync sync) {
  Scratch dir(std::string(P::kName) + "-append");
  {
    P db(dir.path(), sync);
    std::uint64_t offset = 0;
    for (auto _ : state) {
      db.Append(offset, Value(offset, size));
      ++offset;
    }
    db.Commit();  // the last partial transaction of LMDB/SQLite W1/W2
  }
  Report(state, state.iterations(), size);
}

template <class P>
void W1Append100(benchmark::State& state) {
  Append<P>(state, kSmall, Sync::kNone);
}
template <class P>
void W1cAppend100CommitEach(benchmark::State& state) {
  Append<P>(state, kSmall, Sync::kNoneCommitEach);
}
template <class P>
void W2Append4096(benchmark::State& state) {
  Append<P>(state, kLarge, Sync::kNone);
}
template <class P>
void W3aAppendSync(benchmark::State& state) {
  Append<P>(state, kSmall, Sync::kEach);
}

/// W3b: one durable batch of kBatch records per iteration.
template <class P>
void W3bAppendBatchSync(benchmark::State& state) {
  Scratch dir(std::string(P::kName) + "-batch");
  {
    P db(dir.path(), Sync::kEach);
    std::uint64_t offset = 0;
    for (auto _ : state) {
      db.AppendBatch(offset, kBatch, kSmall);
      offset += kBatch;
    }
  }
  Report(state, state.iterations() * static_cast<std::int64_t>(kBatch), kSmall);
}

/// The store W4 and W5 read, filled once per process and shared by threads.
template <class P>
struct ReadStore {
  std::uint64_t records = ReadRecords();  // first: a bad LOGSYNC_BENCH_RECORDS aborts before mkdir
  Scratch dir{std::string(P::kName) + "-read"};
  P db{dir.path(), Sync::kNone};

  ReadStore() {
    for (std::uint64_t i = 0; i < records; ++i) db.Append(i, Value(i, kSmall));
    db.Settle();
    // Verify every record (this also warms the cache) and a few point reads.
    typename P::Reader reader(db);
    std::uint64_t n = 0;
    bool same = true;
    reader.Scan([&](std::string_view v) { same = same && v == Value(n++, kSmall); });
    if (n != records || !same)
      Die(P::kName, "verifying the prefilled store",
          "scan returned " + std::to_string(n) + " records of " + std::to_string(records) +
              (same ? "" : ", some with the wrong value"));
    std::string out;
    for (std::uint64_t i : {std::uint64_t{0}, records / 2, records - 1}) {
      reader.Get(i, out);
      if (out != Value(i, kSmall)) Die(P::kName, "verifying the prefilled store", "wrong value at " + std::to_string(i));
    }
  }
};

template <class P>
ReadStore<P>& Shared() {
  static ReadStore<P> store;  // thread-safe initialization: the threads of W4 wait for it
  return store;
}

/// W4: one random point read per iteration.
template <class P>
void W4ReadRandom(benchmark::State& state) {
  ReadStore<P>& store = Shared<P>();
  typename P::Reader reader(store.db);
  std::mt19937_64 rng(static_cast<std::uint64_t>(state.thread_index()) + 1);
  std::string out;
  for (auto _ : state) {
    reader.Get(rng() % store.records, out);
    if (out.size() != kSmall) Die(P::kName, "random read", "value of " + std::to_string(out.size()) + " bytes");
    benchmark::DoNotOptimize(out.data());
  }
  Report(state, state.iterations(), kSmall);
}

/// W5: one full scan of the store per iteration.
template <class P>
void W5Scan(benchmark::State& state) {
  ReadStore<P>& store = Shared<P>();
  typename P::Reader reader(store.db);
  std::string out;
  std::int64_t payload = 0;
  for (auto _ : state) {
    std::uint64_t n = 0;
    reader.Scan([&](std::string_view v) {
      out.assign(v);
      payload += static_cast<std::int64_t>(out.size());
      ++n;
    });
    if (n != store.records)
      Die(P::kName, "scan", std::to_string(n) + " records instead of " + std::to_string(store.records));
    benchmark::DoNotOptimize(out.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(store.records));
  state.SetBytesProcessed(payload);
}

enum class Workload { kW1, kW1c, kW2, kW3a, kW3b, kW4, kW5 };
constexpr Workload kWorkloads[] = {Workload::kW1,  Workload::kW1c, Workload::kW2, Workload::kW3a,
                                   Workload::kW3b, Workload::kW4,  Workload::kW5};

/// Registers BM_<Peer>_<workload> for peer P.
template <class P>
void RegisterWorkload(Workload w) {
  const auto add = [](const char* name, void (*fn)(benchmark::State&)) {
    return benchmark::RegisterBenchmark((std::string("BM_") + P::kName + "_" + name).c_str(), fn)->UseRealTime();
  };
  switch (w) {
    // W1 and W2 append a fixed count, as append_bench does for logsync.
    case Workload::kW1: add("W1Append100", &W1Append100<P>)->Iterations(static_cast<std::int64_t>(AppendRecords())); break;
    case Workload::kW1c:  // only the peers that batch W1 in process memory
      if (std::string_view(P::kName) == "LMDB" || std::string_view(P::kName) == "SQLite")
        add("W1cAppend100CommitEach", &W1cAppend100CommitEach<P>)
            ->Iterations(static_cast<std::int64_t>(AppendRecords()));
      break;
    case Workload::kW2:
      add("W2Append4096", &W2Append4096<P>)->Iterations(static_cast<std::int64_t>(AppendRecords() / 10));
      break;
    case Workload::kW3a: add("W3aAppendSync", &W3aAppendSync<P>); break;
    case Workload::kW3b: add("W3bAppendBatchSync", &W3bAppendBatchSync<P>); break;
    case Workload::kW4: add("W4ReadRandom", &W4ReadRandom<P>)->Threads(1)->Threads(2); break;
    case Workload::kW5: add("W5Scan", &W5Scan<P>); break;
  }
}

/// The peers compiled in.
constexpr void (*kPeers[])(Workload) = {
#if LOGSYNC_HAVE_ROCKSDB
    &RegisterWorkload<RocksDB>,
#endif
#if LOGSYNC_HAVE_LEVELDB
    &RegisterWorkload<LevelDB>,
#endif
#if LOGSYNC_HAVE_LMDB
    &RegisterWorkload<Lmdb>,
#endif
#if LOGSYNC_HAVE_SQLITE3
    &RegisterWorkload<Sqlite>,
#endif
};

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // Workload-major order: the peers of one workload sit together in the table.
  for (const Workload w : kWorkloads)
    for (const auto peer : kPeers) peer(w);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
