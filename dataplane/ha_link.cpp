#include "dataplane/ha_link.hpp"

#include <stdexcept>

#include <rte_lcore.h>
#include <rte_ring.h>

namespace tandem::dpdk {

// A few dead intervals of adverts from a peer at the smallest interval, with room to spare.
constexpr unsigned kInboxSize = 256;

HaLink::HaLink() {
  // Many producers (whichever worker received the advert), one consumer (the HA thread).
  inbox_ = rte_ring_create_elem("ha_inbox", sizeof(HaDatagram), kInboxSize, static_cast<int>(rte_socket_id()),
                                RING_F_SC_DEQ);
  if (!inbox_) throw std::runtime_error("cannot create ring ha_inbox");
}

HaLink::~HaLink() { rte_ring_free(inbox_); }

unsigned HaLink::receive(HaDatagram* out, unsigned max) {
  return rte_ring_sc_dequeue_burst_elem(inbox_, out, sizeof(HaDatagram), max, nullptr);
}

bool HaLink::deliver(const HaDatagram& d) {
  return rte_ring_mp_enqueue_elem(inbox_, const_cast<HaDatagram*>(&d), sizeof(HaDatagram)) == 0;
}

}  // namespace tandem::dpdk
