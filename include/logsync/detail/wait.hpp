#pragma once
// Condition waits with timeouts of any length: std::condition_variable's
// wait_for adds the timeout to the clock's now(), which overflows (and then
// returns at once or spins) for a timeout near duration::max().

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace logsync::detail {

/// Waits on `cv` until `ready()` or `timeout` has passed since `start`;
/// returns ready(). The time is kept as double seconds and waited out in
/// waits of at most a day, which the clock adds without overflow.
template <class Rep, class Period, class Ready>
bool WaitUntilReady(std::condition_variable& cv, std::unique_lock<std::mutex>& lock,
                    std::chrono::duration<Rep, Period> timeout, Ready ready,
                    std::chrono::steady_clock::time_point start = std::chrono::steady_clock::now()) {
  using Seconds = std::chrono::duration<double>;
  const Seconds left = timeout;
  const auto spent = [&] { return Seconds(std::chrono::steady_clock::now() - start); };
  while (!ready() && spent() < left) cv.wait_for(lock, std::min<Seconds>(left - spent(), std::chrono::hours(24)), ready);
  return ready();
}

}  // namespace logsync::detail
