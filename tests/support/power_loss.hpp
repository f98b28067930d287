#pragma once
// Power-loss simulation on logsync's system-call seam (detail::Sys()).
//
// The scheme is "copy at every crash point": PowerLoss follows the calls
// the library makes on files under one directory and keeps, for every file,
// the bytes a power loss could not take away:
//
//  - fdatasync / fsync of a file: its current content becomes durable;
//  - msync of a mapped range: those bytes of the file become durable (the
//    file is found through /proc/self/maps);
//  - fsync of the directory: the set of names in it becomes durable (files
//    created since then are lost on a crash, files removed since then come
//    back with their durable content).
//
// Records reach a store by a copy into its shared mapping, which no call
// announces: the model reads a file's current bytes (the page cache, where
// those copies are) when it is synced, and at every crash point.
//
// Before every call that changes or syncs a file (write, allocate, truncate,
// fsync, fdatasync, msync, unlink) it records a crash image: what the directory
// would hold if the power failed right then. Three images per point:
//
//  - Durable:  only the durable bytes (every write since the last sync lost);
//  - Torn:     the durable bytes plus the first t bytes of the write about to
//              happen (a write torn at an arbitrary byte);
//  - Shuffled: the durable bytes plus a random half of the sectors written
//              since the last sync, applied in no particular order
//              (writeback reorders: a later sector, or an index page, may
//              reach the disk before an earlier store sector). Sectors are
//              64 bytes here, small because the test files are small.
//
// Each image also records what the workload had been told at that moment
// (see Image::acked), so a test can replay every image and check recovery.
//
// Calls may come from several threads (a log seals rolled segments in the
// background): each hooked call, with its crash point, runs under one lock,
// so the model sees them in some order, as a disk would.

#include <logsync/detail/file.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <vector>

namespace logsync::test {

class PowerLoss {
 public:
  enum class Kind { kDurable, kTorn, kShuffled };

  struct Image {
    Kind kind;
    std::uint64_t call;                        // the crash point: number of the call about to run
    std::string call_name;
    std::uint64_t acked;                       // workload state when the image was taken
    std::uint64_t appended;
    std::map<std::string, std::string> files;  // name -> bytes
  };

  explicit PowerLoss(std::filesystem::path dir, std::uint32_t seed = 1)
      : dir_(std::filesystem::absolute(std::move(dir))), saved_(detail::Sys()), rng_(seed) {
    Current() = this;
    // The directory's current files are durable as they are.
    for (const auto& e : std::filesystem::directory_iterator(dir_))
      if (e.is_regular_file()) {
        const std::string name = e.path().filename().string();
        names_.insert(name);
        bytes_[name] = ReadCurrent(name);
      }
    auto& s = detail::Sys();
    s.open = [](const char* p, int f, mode_t m) {
      std::lock_guard lock(Current()->mu_);
      const int fd = Current()->saved_.open(p, f, m);
      if (fd >= 0) Current()->fds_[fd] = std::filesystem::absolute(p);
      return fd;
    };
    s.pwrite = [](int fd, const void* b, size_t n, off_t o) -> ssize_t {
      std::lock_guard lock(Current()->mu_);
      auto* h = Current();
      if (auto name = h->Name(fd)) h->CrashPoint("write " + *name, &*name, b, n, o);
      return h->saved_.pwrite(fd, b, n, o);
    };
    s.fallocate = [](int fd, off_t o, off_t n) -> int {
      std::lock_guard lock(Current()->mu_);
      auto* h = Current();
      if (auto name = h->Name(fd)) h->CrashPoint("allocate " + *name);
      return h->saved_.fallocate(fd, o, n);
    };
    s.ftruncate = [](int fd, off_t len) -> int {
      std::lock_guard lock(Current()->mu_);
      auto* h = Current();
      if (auto name = h->Name(fd)) h->CrashPoint("truncate " + *name);
      return h->saved_.ftruncate(fd, len);
    };
    s.fdatasync = [](int fd) -> int {
      std::lock_guard lock(Current()->mu_);
      return Current()->Sync(fd, "fdatasync", Current()->saved_.fdatasync);
    };
    s.fsync = [](int fd) -> int {
      std::lock_guard lock(Current()->mu_);
      return Current()->Sync(fd, "fsync", Current()->saved_.fsync);
    };
    s.msync = [](void* a, size_t n, int f) -> int {
      std::lock_guard lock(Current()->mu_);
      auto* h = Current();
      const auto where = h->MappedFile(a);
      if (where) h->CrashPoint("msync " + where->first);
      const int rc = h->saved_.msync(a, n, f);
      if (rc == 0 && where) {
        std::string& d = h->bytes_[where->first];
        const std::string cur = h->ReadCurrent(where->first);
        const std::uint64_t from = where->second, to = std::min<std::uint64_t>(from + n, cur.size());
        if (d.size() < to) d.resize(to, '\0');
        if (to > from) d.replace(from, to - from, cur, from, to - from);
      }
      return rc;
    };
    s.unlink = [](const char* p) -> int {
      std::lock_guard lock(Current()->mu_);
      auto* h = Current();
      const auto abs = std::filesystem::absolute(p);
      if (abs.parent_path() == h->dir_) h->CrashPoint("unlink " + abs.filename().string());
      return h->saved_.unlink(p);
    };
  }
  PowerLoss(const PowerLoss&) = delete;
  PowerLoss& operator=(const PowerLoss&) = delete;
  ~PowerLoss() {
    detail::Sys() = saved_;
    Current() = nullptr;
  }

  /// What the workload has been told so far: every record below `acked` was
  /// acknowledged as durable; `appended` records were handed to the log.
  void SetProgress(std::uint64_t acked, std::uint64_t appended) {
    std::lock_guard lock(mu_);
    acked_ = acked;
    appended_ = appended;
  }

  /// A crash point of the workload's choosing (records copied into a
  /// mapping make no call the model sees).
  void CrashHere(const std::string& what) {
    std::lock_guard lock(mu_);
    CrashPoint(what);
  }

  std::vector<Image> Images() const {
    std::lock_guard lock(mu_);
    return images_;
  }
  std::uint64_t Calls() const {
    std::lock_guard lock(mu_);
    return calls_;
  }

  /// Writes an image's files into `to` (which must exist and be empty).
  static void Materialize(const Image& img, const std::filesystem::path& to) {
    for (const auto& [name, bytes] : img.files) {
      std::ofstream out(to / name, std::ios::binary | std::ios::trunc);
      out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
  }

 private:
  static constexpr std::size_t kSector = 64;

  static PowerLoss*& Current() {
    static PowerLoss* current = nullptr;
    return current;
  }

  // The name of a file in dir_ behind `fd`, if it is one (nullopt for the
  // directory itself and for files elsewhere).
  std::optional<std::string> Name(int fd) const {
    auto it = fds_.find(fd);
    if (it == fds_.end() || it->second.parent_path() != dir_) return std::nullopt;
    return it->second.filename().string();
  }

  // The file of dir_ mapped at `addr`, and the file offset of addr.
  std::optional<std::pair<std::string, std::uint64_t>> MappedFile(const void* addr) const {
    std::ifstream maps("/proc/self/maps");
    std::string line;
    const auto a = reinterpret_cast<std::uintptr_t>(addr);
    while (std::getline(maps, line)) {
      std::istringstream in(line);
      std::string range, perms, offset, dev, inode, path;
      in >> range >> perms >> offset >> dev >> inode;
      std::getline(in >> std::ws, path);
      const auto dash = range.find('-');
      const std::uintptr_t lo = std::stoull(range.substr(0, dash), nullptr, 16);
      const std::uintptr_t hi = std::stoull(range.substr(dash + 1), nullptr, 16);
      if (a < lo || a >= hi) continue;
      const std::filesystem::path p(path);
      if (p.parent_path() != dir_) return std::nullopt;
      return std::make_pair(p.filename().string(), std::stoull(offset, nullptr, 16) + (a - lo));
    }
    return std::nullopt;
  }

  int Sync(int fd, const char* what, int (*real)(int)) {
    auto it = fds_.find(fd);
    const bool is_dir = it != fds_.end() && it->second == dir_;
    const auto name = Name(fd);
    if (is_dir || name) CrashPoint(std::string(what) + " " + (is_dir ? "." : *name));
    const int rc = real(fd);
    if (rc != 0) return rc;
    if (is_dir) {
      names_.clear();
      for (const auto& e : std::filesystem::directory_iterator(dir_))
        if (e.is_regular_file()) names_.insert(e.path().filename().string());
      for (auto b = bytes_.begin(); b != bytes_.end();) b = names_.count(b->first) ? std::next(b) : bytes_.erase(b);
    } else if (name) {
      bytes_[*name] = ReadCurrent(*name);
    }
    return rc;
  }

  std::string ReadCurrent(const std::string& name) const {
    std::ifstream in(dir_ / name, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), {}};
  }

  // The durable bytes of a file (none if it was never synced).
  std::string DurableBytes(const std::string& name) const {
    auto it = bytes_.find(name);
    return it == bytes_.end() ? std::string() : it->second;
  }

  void CrashPoint(const std::string& call, const std::string* write_name = nullptr, const void* buf = nullptr,
                  std::size_t len = 0, off_t off = 0) {
    ++calls_;
    Image durable{Kind::kDurable, calls_, call, acked_, appended_, {}};
    for (const auto& name : names_) durable.files[name] = DurableBytes(name);
    if (write_name && durable.files.count(*write_name) && len > 0) {
      Image torn = durable;
      torn.kind = Kind::kTorn;
      std::string& f = torn.files[*write_name];
      const std::size_t t = std::uniform_int_distribution<std::size_t>(1, len)(rng_);
      const auto o = static_cast<std::size_t>(off);
      if (f.size() < o + t) f.resize(o + t, '\0');
      std::memcpy(f.data() + o, buf, t);
      images_.push_back(std::move(torn));
    }
    Image shuffled = durable;
    shuffled.kind = Kind::kShuffled;
    for (auto& [name, bytes] : shuffled.files) {
      const std::string cur = ReadCurrent(name);
      for (std::size_t s = 0; s < cur.size(); s += kSector) {
        const std::size_t n = std::min<std::size_t>(kSector, cur.size() - s);
        if (bytes.size() >= s + n && bytes.compare(s, n, cur, s, n) == 0) continue;
        if (rng_() % 2 == 0) continue;
        if (bytes.size() < s + n) bytes.resize(s + n, '\0');
        bytes.replace(s, n, cur, s, n);
      }
    }
    images_.push_back(std::move(durable));
    images_.push_back(std::move(shuffled));
  }

  mutable std::recursive_mutex mu_;  // the model's state and each hooked call
  std::filesystem::path dir_;
  detail::SysCalls saved_;
  std::mt19937 rng_;
  std::map<int, std::filesystem::path> fds_;
  std::set<std::string> names_;              // names a crash keeps (as of the last directory sync)
  std::map<std::string, std::string> bytes_;  // the bytes a crash keeps of each file
  std::uint64_t acked_ = 0, appended_ = 0, calls_ = 0;
  std::vector<Image> images_;
};

}  // namespace logsync::test
