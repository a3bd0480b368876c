// Read-copy-update between the control thread and the workers, on DPDK's QSBR flavour.
//
// The control thread builds a new immutable object, publishes its pointer, waits until every
// worker has passed a quiescent state (the top of its loop), then frees the old one. Workers
// only load a pointer (acquire) per burst: no lock, no reference count.
#pragma once

#include <atomic>
#include <memory>

struct rte_rcu_qsbr;

namespace tandem::dpdk {

class QsbrDomain {
 public:
  explicit QsbrDomain(unsigned workers);
  ~QsbrDomain();
  QsbrDomain(const QsbrDomain&) = delete;
  QsbrDomain& operator=(const QsbrDomain&) = delete;

  void online(unsigned worker);
  void quiescent(unsigned worker);
  void offline(unsigned worker);
  // Returns once every online worker has reported a quiescent state after the call began.
  void synchronize();

 private:
  rte_rcu_qsbr* qsbr_ = nullptr;
};

// One RCU-published object. get() on workers; publish() on the control thread only.
template <typename T>
class RcuPointer {
 public:
  RcuPointer() = default;
  RcuPointer(const RcuPointer&) = delete;
  RcuPointer& operator=(const RcuPointer&) = delete;
  ~RcuPointer() { delete ptr_.load(); }

  const T* get() const { return ptr_.load(std::memory_order_acquire); }

  // The first publish installs without waiting; later ones wait for a grace period before
  // freeing the previous object.
  void publish(std::unique_ptr<const T> next, QsbrDomain& domain) {
    const T* old = ptr_.exchange(next.release(), std::memory_order_acq_rel);
    if (!old) return;
    domain.synchronize();
    delete old;
  }

 private:
  std::atomic<const T*> ptr_{nullptr};
};

}  // namespace tandem::dpdk
