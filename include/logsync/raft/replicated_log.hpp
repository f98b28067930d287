#pragma once
/// ReplicatedLog: one node of a log replicated by canonical/raft (Debian
/// `libraft-dev`, with `libuv1-dev`; link with -lraft -luv). Not included by
/// logsync.hpp.
///
/// The node owns a raft instance (raft_uv storage in `<dir>/raft`, TCP
/// transport) driven by its own libuv loop thread, and a local Log in
/// `<dir>/log` that committed entries are applied to (see
/// state_machine.hpp). Every raft call happens on the loop thread; the
/// public methods, callable from any thread, hand work over through a queue
/// and wait for its result.
///
/// Guarantee: an Append that returned was committed by a majority of the
/// voters (each of which fsynced it into its raft log) and applied on this
/// node; it survives the loss of any minority of nodes.

extern "C" {
#include <raft.h>
#include <raft/uv.h>
#include <uv.h>
}

#include <logsync/codec.hpp>
#include <logsync/config.hpp>
#include <logsync/error.hpp>
#include <logsync/detail/wait.hpp>
#include <logsync/raft/fetch.hpp>
#include <logsync/raft/membership.hpp>
#include <logsync/raft/node_config.hpp>
#include <logsync/raft/pending_append.hpp>
#include <logsync/raft/state_machine.hpp>
#include <logsync/record.hpp>
#include <logsync/stats.hpp>
#include <logsync/sync.hpp>

#include <csignal>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace logsync {

/// One node of a replicated log of records R (codec C); the local log uses
/// sync policy S (the raft log is fsynced by raft itself).
template <class R = Record, class C = DefaultCodec<R>, class S = sync::None>
class ReplicatedLog {
  static_assert(Codec<C, R>, "logsync::ReplicatedLog<R, C, S>: C is not a codec for R");

 public:
  /// Starts the node (and its loop thread); throws ReplicationError or
  /// IoError if raft cannot start.
  explicit ReplicatedLog(NodeConfig config, C codec = C{})
      : config_(std::move(config)), codec_(std::move(codec)) {
    std::signal(SIGPIPE, SIG_IGN);  // a peer closing a connection must not kill the node
    std::filesystem::create_directories(config_.dir / "raft");
    machine_ = std::make_unique<detail::LogMachine<S>>(
        config_.dir / "log", config_.log,
        detail::ProducerLimits{config_.max_producers, config_.producer_expiry_ms});
    if (config_.fetch_snapshots)
      machine_->FetchFrom(config_.id, config_.client_address,
                          [log = config_.log](const auto& a, const auto& d) { return detail::FetchLog(a, d, log); });
    Check(uv_loop_init(&loop_), "uv_loop_init");
    loop_.data = this;
    uv_async_init(&loop_, &async_, &ReplicatedLog::OnAsync);
    async_.data = this;
    uv_timer_init(&loop_, &timer_);
    timer_.data = this;
    Check(raft_uv_tcp_init(&transport_, &loop_), "raft_uv_tcp_init");
    Check(raft_uv_init(&io_, &loop_, (config_.dir / "raft").c_str(), &transport_), "raft_uv_init");
    Check(raft_init(&raft_, &io_, machine_->Fsm(&raft_), config_.id, config_.address.c_str()), "raft_init");
    raft_.data = this;
    raft_set_election_timeout(&raft_, config_.election_timeout_ms);
    raft_set_heartbeat_timeout(&raft_, config_.heartbeat_timeout_ms);
    raft_set_pre_vote(&raft_, config_.pre_vote);
    raft_set_snapshot_threshold(&raft_, config_.snapshot_threshold);
    raft_set_snapshot_trailing(&raft_, config_.snapshot_trailing);
    bool member = false;
    for (const auto& p : config_.bootstrap) member |= p.id == config_.id;
    if (member) {
      raft_configuration conf;
      raft_configuration_init(&conf);
      for (const auto& p : config_.bootstrap) raft_configuration_add(&conf, p.id, p.address.c_str(), RAFT_VOTER);
      const int rv = raft_bootstrap(&raft_, &conf);
      raft_configuration_close(&conf);
      if (rv != 0 && rv != RAFT_CANTBOOTSTRAP) Fail("raft_bootstrap", rv);
    }
    Check(raft_start(&raft_), "raft_start");
    uv_timer_start(&timer_, &ReplicatedLog::OnTimer, 0, 10);
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
  }

  ReplicatedLog(const ReplicatedLog&) = delete;
  ReplicatedLog& operator=(const ReplicatedLog&) = delete;
  ~ReplicatedLog() { Close(); }

  /// Appends a record through raft; returns its offset once a majority
  /// committed it and this node applied it. Throws NotLeader on a follower,
  /// ReplicationError if the outcome is unknown (leadership lost).
  std::uint64_t Append(const R& record) { return AppendBatch(std::span(&record, 1)); }

  /// Appends records as one raft entry at contiguous offsets; returns the
  /// first.
  std::uint64_t AppendBatch(std::span<const R> records) { return SubmitBatch(records).Get().first; }

  using Appended = logsync::Appended;

  /// Appends records as one idempotent append of `producer` (not 0)
  /// numbered `sequence` (each append of a producer numbered above the
  /// last; gaps are allowed). A retry (one of the producer's last
  /// detail::kProducerWindow sequences again, while the cluster remembers
  /// the producer: NodeConfig::max_producers, producer_expiry_ms) appends
  /// nothing and returns the first offset the original got. Throws
  /// OutOfOrderSequence for a sequence below the last not remembered (or a
  /// remembered one with another record count), otherwise as AppendBatch.
  Appended AppendIdempotent(std::uint64_t producer, std::uint64_t sequence, std::span<const R> records) {
    return SubmitIdempotent(producer, sequence, records).Get();
  }

  /// AppendBatch without waiting: entries go to raft in the order of the
  /// calls; the outcome comes through the PendingAppend. Appends of one
  /// `chain` (optional) are not applied past one of them that failed.
  PendingAppend SubmitBatch(std::span<const R> records, std::shared_ptr<AppendChain> chain = {}) {
    return PendingAppend(Submit(Encode(records, nullptr), std::move(chain)), config_.id, 0, 0);
  }

  /// AppendIdempotent without waiting, as SubmitBatch.
  PendingAppend SubmitIdempotent(std::uint64_t producer, std::uint64_t sequence, std::span<const R> records,
                                 std::shared_ptr<AppendChain> chain = {}) {
    if (producer == 0 || records.empty())
      throw std::invalid_argument("logsync: an idempotent append needs a producer other than 0 and a record");
    const detail::ProducerStamp stamp{producer, sequence, detail::EntryTimeNow()};
    return PendingAppend(Submit(Encode(records, &stamp), std::move(chain)), config_.id, producer, sequence);
  }

  /// The record at `offset` in this node's log (OffsetOutOfRange if it has
  /// not applied it).
  R Read(std::uint64_t offset) const {
    return machine_->WithLog([&](const auto& log) { return Decode(log.Read(offset)); });
  }

  /// Up to `max` records from `from`, in offset order, from this node's log.
  std::vector<R> Scan(std::uint64_t from, std::size_t max = ~std::size_t{0}) const {
    return machine_->WithLog([&](const auto& log) {
      std::vector<R> out;
      if (from >= log.NextOffset() || max == 0) return out;
      for (const auto& a : log.Scan(from)) {
        out.push_back(Decode(a));
        if (out.size() == max) break;
      }
      return out;
    });
  }

  /// The offset the next record applied here will get.
  std::uint64_t NextOffset() const { return machine_->NextOffset(); }

  /// The local log's Reader() stream: what a FETCH serves (fetch.hpp).
  ByteReader LocalReader() const { return machine_->WithLog([](const auto& log) { return log.Reader(); }); }

  /// How many snapshots installed by the leader replaced the local log.
  std::uint64_t SnapshotsRestored() const noexcept { return machine_->SnapshotsRestored(); }

  /// The local log's Stats() (a restore swaps the log: its counters start over).
  LogStats Stats() const { return machine_->WithLog([](const auto& log) { return log.Stats(); }); }

  /// Waits until this node has applied offsets below `next`.
  bool WaitForNext(std::uint64_t next, std::chrono::milliseconds timeout) const {
    return machine_->WaitForNext(next, timeout);
  }

  /// The leader this node knows of (id 0 if none), with the client address
  /// it announced (empty until the announcement has reached this node).
  Peer Leader() {
    return Run<Peer>([this](auto done) { done->set_value(CurrentLeader()); });
  }

  /// Waits until this node knows a leader other than `not_id`; returns it
  /// (id 0 on timeout).
  Peer WaitForLeader(std::chrono::milliseconds timeout, std::uint64_t not_id = 0) {
    std::unique_lock lock(leader_mu_);
    detail::WaitUntilReady(leader_cv_, lock, timeout, [&] { return leader_.id != 0 && leader_.id != not_id; });
    return leader_.id != not_id ? leader_ : Peer{};
  }

  /// This node's id.
  std::uint64_t Id() const noexcept { return config_.id; }

  /// Adds a node (as a spare, then promotes it to voter once it has caught
  /// up). Call on the leader; the new node runs with an empty bootstrap.
  void Join(std::uint64_t id, const std::string& address) {
    Run<void>([this, id, address](auto done) {
      auto* req = new ChangeRequest{{}, {}, done, this, id, address};
      req->add.data = req;
      req->assign.data = req;
      if (const int rv = raft_add(&raft_, &req->add, id, req->address.c_str(), &ReplicatedLog::OnAdded); rv != 0) {
        delete req;
        done->set_exception(ErrorFor(rv, "add"));
      }
    });
  }

  /// Removes a node from the cluster. Call on the leader. Refuses
  /// (ReplicationError, RAFT_BADROLE) to remove the last voter: the cluster
  /// could never elect a leader again.
  void Leave(std::uint64_t id) {
    Run<void>([this, id](auto done) {
      if (raft_state(&raft_) == RAFT_LEADER && detail::IsLastVoter(raft_.configuration, id)) {
        done->set_exception(std::make_exception_ptr(ReplicationError(
            "remove: node " + std::to_string(id) + " is the last voter; without it the cluster has no leader",
            RAFT_BADROLE)));
        return;
      }
      auto* req = new ChangeRequest{{}, {}, done, this, id, {}};
      req->add.data = req;
      if (const int rv = raft_remove(&raft_, &req->add, id, &ReplicatedLog::OnChanged); rv != 0) {
        delete req;
        done->set_exception(ErrorFor(rv, "remove"));
      }
    });
  }

  /// Hands leadership to another voter (raft picks it); returns when the
  /// transfer finished or timed out. Call on the leader.
  void TransferLeadership() {
    Run<void>([this](auto done) {
      auto* req = new TransferRequest{{}, done};
      req->transfer.data = req;
      if (const int rv = raft_transfer(&raft_, &req->transfer, 0, &ReplicatedLog::OnTransferred); rv != 0) {
        delete req;
        done->set_exception(ErrorFor(rv, "transfer"));
      }
    });
  }

  /// Stops raft and the loop thread and closes the local log. Requests in
  /// flight fail; later calls throw StateError.
  void Close() {
    {
      std::lock_guard lock(queue_mu_);
      if (closing_) {
        if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
        return;
      }
      closing_ = true;
      queue_.push_back([this] { raft_close(&raft_, &ReplicatedLog::OnRaftClosed); });
      uv_async_send(&async_);
    }
    if (thread_.joinable()) thread_.join();
    raft_uv_close(&io_);
    raft_uv_tcp_close(&transport_);
    uv_loop_close(&loop_);
    machine_->Close();
  }

 private:
  struct ApplyRequest {
    struct raft_apply req;
    std::shared_ptr<std::promise<std::uint64_t>> done;
    ReplicatedLog* self;
    std::shared_ptr<AppendChain> chain;
  };
  struct ChangeRequest {
    struct raft_change add, assign;
    std::shared_ptr<std::promise<void>> done;
    ReplicatedLog* self;
    std::uint64_t id;
    std::string address;
  };
  struct TransferRequest {
    struct raft_transfer transfer;
    std::shared_ptr<std::promise<void>> done;
  };

  raft_buffer Encode(std::span<const R> records, const detail::ProducerStamp* stamp) const {
    return detail::EncodeEntry(
        records.size(), [&](std::size_t i) { return codec_.EncodedSize(records[i]); },
        [&](std::size_t i, std::span<std::byte> out) { codec_.Encode(records[i], out); }, stamp);
  }

  // Submits an entry (taking `buf`); the future of its apply callback's
  // result. Skipped (RAFT_CANCELED) once `chain` broke.
  std::future<std::uint64_t> Submit(raft_buffer buf, std::shared_ptr<AppendChain> chain) {
    auto done = std::make_shared<std::promise<std::uint64_t>>();
    auto result = done->get_future();
    try {
      Post([this, buf, done = std::move(done), chain = std::move(chain)]() mutable {
        auto* req = new ApplyRequest{{}, done, this, chain};
        req->req.data = req;
        const int rv = chain && chain->Broken()
                           ? RAFT_CANCELED
                           : raft_apply(&raft_, &req->req, &buf, 1, &ReplicatedLog::OnApplied);
        if (rv != 0) {
          raft_free(buf.base);
          delete req;
          if (chain) chain->Break();
          done->set_exception(rv == RAFT_CANCELED ? detail::SkippedAppend(rv) : ErrorFor(rv, "append"));
        }
      });
    } catch (...) {
      raft_free(buf.base);
      throw;
    }
    return result;
  }

  R Decode(const detail::Applied& a) const {
    R r = codec_.Decode(std::as_bytes(std::span(a.bytes)));
    detail::SetOffset(r, a.offset);
    return r;
  }

  void Check(int rv, const char* what) { if (rv != 0) Fail(what, rv); }
  [[noreturn]] void Fail(const char* what, int rv) {
    throw ReplicationError(std::string(what) + ": " + raft_strerror(rv) + " (" + raft_errmsg(&raft_) + ")", rv);
  }

  // Loop thread only.
  Peer CurrentLeader() {
    raft_id id = 0;
    const char* address = nullptr;
    raft_leader(&raft_, &id, &address);
    return Peer{id, address ? address : "", id != 0 ? machine_->ClientAddress(id) : std::string()};
  }

  // On the leader: announces this node's client address once the cluster
  // does not know it (one announcement in flight at a time).
  void Announce() {
    if (config_.client_address.empty() || announcing_ || raft_state(&raft_) != RAFT_LEADER ||
        machine_->ClientAddress(config_.id) == config_.client_address)
      return;
    raft_buffer buf;
    try {
      buf = detail::EncodeAnnounce({config_.id, config_.client_address});
    } catch (const std::bad_alloc&) {
      return;  // the next tick tries again
    }
    auto* req = new AnnounceRequest{{}, this};
    req->req.data = req;
    if (raft_apply(&raft_, &req->req, &buf, 1, &ReplicatedLog::OnAnnounced) != 0) {
      raft_free(buf.base);
      delete req;
      return;
    }
    announcing_ = true;
  }

  struct AnnounceRequest {
    struct raft_apply req;
    ReplicatedLog* self;
  };

  static void OnAnnounced(struct raft_apply* req, int, void*) {
    auto* a = static_cast<AnnounceRequest*>(req->data);
    a->self->announcing_ = false;
    delete a;
  }

  // Loop thread only.
  std::exception_ptr ErrorFor(int rv, const char* what) {
    if (rv == RAFT_NOTLEADER) return std::make_exception_ptr(NotLeader(CurrentLeader()));
    if (rv == RAFT_LEADERSHIPLOST)
      return std::make_exception_ptr(
          ReplicationError(std::string(what) + ": leadership lost before the outcome was known", rv));
    return std::make_exception_ptr(ReplicationError(std::string(what) + ": " + raft_strerror(rv), rv));
  }

  void Post(std::function<void()> task) {
    {
      std::lock_guard lock(queue_mu_);
      if (closing_) throw StateError("logsync: replicated log node " + std::to_string(config_.id) + " is closed");
      queue_.push_back(std::move(task));
      uv_async_send(&async_);  // under the lock: the handle is closed under it too
    }
  }

  // Runs f(shared_ptr<promise>) on the loop thread and waits for the
  // promise. Only the task and the requests it makes hold the promise, so a
  // task dropped at close breaks it instead of leaving the caller waiting.
  template <class T, class F>
  T Run(F f) {
    auto done = std::make_shared<std::promise<T>>();
    auto result = done->get_future();
    Post([f = std::move(f), done = std::move(done)]() mutable { f(std::move(done)); });
    return Wait(result);
  }

  template <class T>
  T Wait(std::future<T>& result) {
    try {
      return result.get();
    } catch (const std::future_error&) {
      throw StateError("logsync: replicated log node " + std::to_string(config_.id) + " closed during the request");
    }
  }

  static void OnAsync(uv_async_t* handle) {
    auto* self = static_cast<ReplicatedLog*>(handle->data);
    std::vector<std::function<void()>> tasks;
    {
      std::lock_guard lock(self->queue_mu_);
      tasks.swap(self->queue_);
    }
    for (auto& t : tasks) t();
  }

  static void OnTimer(uv_timer_t* handle) {
    auto* self = static_cast<ReplicatedLog*>(handle->data);
    self->Announce();
    Peer now = self->CurrentLeader();
    {
      std::lock_guard lock(self->leader_mu_);
      if (now == self->leader_) return;
      self->leader_ = std::move(now);
    }
    self->leader_cv_.notify_all();
  }

  static void OnApplied(struct raft_apply* req, int status, void* result) {
    auto* a = static_cast<ApplyRequest*>(req->data);
    if (status != 0 && a->chain) a->chain->Break();
    if (status == 0)
      a->done->set_value(static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(result)));
    else
      a->done->set_exception(a->self->ErrorFor(status, "append"));
    delete a;
  }

  static void OnAdded(struct raft_change* change, int status) {
    auto* req = static_cast<ChangeRequest*>(change->data);
    if (status != 0) {
      req->done->set_exception(req->self->ErrorFor(status, "add"));
      delete req;
      return;
    }
    if (const int rv = raft_assign(&req->self->raft_, &req->assign, req->id, RAFT_VOTER, &ReplicatedLog::OnChanged);
        rv != 0) {
      req->done->set_exception(req->self->ErrorFor(rv, "assign"));
      delete req;
    }
  }

  static void OnChanged(struct raft_change* change, int status) {
    auto* req = static_cast<ChangeRequest*>(change->data);
    if (status == 0)
      req->done->set_value();
    else
      req->done->set_exception(req->self->ErrorFor(status, "membership change"));
    delete req;
  }

  static void OnTransferred(struct raft_transfer* transfer) {
    auto* req = static_cast<TransferRequest*>(transfer->data);
    req->done->set_value();
    delete req;
  }

  static void OnRaftClosed(struct raft* r) {
    auto* self = static_cast<ReplicatedLog*>(r->data);
    std::lock_guard lock(self->queue_mu_);
    uv_close(reinterpret_cast<uv_handle_t*>(&self->timer_), nullptr);
    uv_close(reinterpret_cast<uv_handle_t*>(&self->async_), nullptr);
    // Tasks still queued never run: dropping them breaks their promises.
    self->queue_.clear();
  }

  NodeConfig config_;
  [[no_unique_address]] C codec_;
  std::unique_ptr<detail::LogMachine<S>> machine_;

  uv_loop_t loop_{};
  uv_async_t async_{};
  uv_timer_t timer_{};
  raft_uv_transport transport_{};
  raft_io io_{};
  struct raft raft_{};
  std::thread thread_;

  std::mutex queue_mu_;
  std::vector<std::function<void()>> queue_;
  bool closing_ = false;

  std::mutex leader_mu_;
  std::condition_variable leader_cv_;
  Peer leader_;
  bool announcing_ = false;  // loop thread only
};

}  // namespace logsync
