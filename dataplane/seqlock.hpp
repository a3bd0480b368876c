// One writer publishes a small trivially copyable value; readers on other threads copy it
// without ever waiting or writing shared memory. A reader that raced with the writer gets
// nothing and tries again later (the worker's next loop), so neither side blocks.
#pragma once

#include <atomic>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace tandem::dpdk {

template <typename T>
class Seqlocked {
  static_assert(std::is_trivially_copyable_v<T>);

 public:
  // Writer side (one thread). Each write makes a new, even generation.
  void write(const T& v) {
    const std::uint32_t s = seq_.load(std::memory_order_relaxed);
    seq_.store(s + 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);
    std::memcpy(&value_, &v, sizeof(T));
    seq_.store(s + 2, std::memory_order_release);
  }

  // The generation of the last complete write (0: never written). One relaxed load: cheap
  // enough to test on every loop iteration.
  std::uint32_t generation() const { return seq_.load(std::memory_order_relaxed) & ~1u; }

  // Copies the value into `out` and returns its generation, or 0 when a write was under way.
  std::uint32_t read(T& out) const {
    const std::uint32_t s1 = seq_.load(std::memory_order_acquire);
    if ((s1 & 1) != 0 || s1 == 0) return 0;
    std::memcpy(&out, &value_, sizeof(T));
    std::atomic_thread_fence(std::memory_order_acquire);
    return seq_.load(std::memory_order_relaxed) == s1 ? s1 : 0;
  }

 private:
  std::atomic<std::uint32_t> seq_{0};
  T value_{};
};

}  // namespace tandem::dpdk
