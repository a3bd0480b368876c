#include "dataplane/sync_link.hpp"

#include <stdexcept>
#include <string>

#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_ring.h>

namespace tandem::dpdk {

static_assert(sizeof(sync::ConnRecord) % 4 == 0 && sizeof(conntrack::ConnDelta) % 4 == 0,
              "ring elements are a multiple of 4 bytes");

SyncLink::SyncLink(unsigned workers, unsigned ring_size, std::uint64_t refresh_ms, bool sync_mode,
                   std::uint32_t hold_timeout_ms)
    : refresh_ms_(refresh_ms), sync_mode_(sync_mode), hold_timeout_ms_(hold_timeout_ms) {
  const int socket = static_cast<int>(rte_socket_id());
  lanes_.resize(workers);
  for (unsigned w = 0; w < workers; ++w) {
    Lane& l = lanes_[w];
    l.counters = std::make_unique<WorkerSyncCounters>();
    l.acked = std::make_unique<std::atomic<std::uint64_t>>(0);
    const std::string out = "sync_out_" + std::to_string(w), in = "sync_in_" + std::to_string(w);
    l.out = rte_ring_create_elem(out.c_str(), sizeof(conntrack::ConnDelta), ring_size, socket,
                                 RING_F_SP_ENQ | RING_F_SC_DEQ);
    l.in = rte_ring_create_elem(in.c_str(), sizeof(sync::ConnRecord), ring_size, socket,
                                RING_F_SP_ENQ | RING_F_SC_DEQ);
    if (!l.out || !l.in) {
      for (Lane& x : lanes_) {
        rte_ring_free(x.out);
        rte_ring_free(x.in);
      }
      throw std::runtime_error("cannot create the state-sync rings of worker " + std::to_string(w) + ": " +
                               rte_strerror(rte_errno));
    }
  }
}

SyncLink::~SyncLink() {
  for (Lane& l : lanes_) {
    rte_ring_free(l.out);
    rte_ring_free(l.in);
  }
}

unsigned SyncLink::emit(unsigned w, const conntrack::ConnDelta* d, unsigned n) {
  Lane& l = lanes_[w];
  const unsigned sent = rte_ring_sp_enqueue_burst_elem(l.out, d, sizeof(conntrack::ConnDelta), n, nullptr);
  l.counters->deltas.add(sent);
  if (sent != n) l.counters->ring_dropped.add(n - sent);
  return sent;
}

unsigned SyncLink::room(unsigned w) const { return rte_ring_free_count(lanes_[w].out); }

unsigned SyncLink::take_records(unsigned w, sync::ConnRecord* out, unsigned max) {
  return rte_ring_sc_dequeue_burst_elem(lanes_[w].in, out, sizeof(sync::ConnRecord), max, nullptr);
}

unsigned SyncLink::take_deltas(unsigned w, conntrack::ConnDelta* out, unsigned max) {
  return rte_ring_sc_dequeue_burst_elem(lanes_[w].out, out, sizeof(conntrack::ConnDelta), max, nullptr);
}

bool SyncLink::deliver(unsigned w, const sync::ConnRecord& r) {
  return rte_ring_sp_enqueue_elem(lanes_[w].in, const_cast<sync::ConnRecord*>(&r), sizeof(sync::ConnRecord)) == 0;
}

}  // namespace tandem::dpdk
