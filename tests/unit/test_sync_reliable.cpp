// The sync reliability layer (controlplane/sync/reliable.*): the two windows alone, then two
// endpoints over a perfect link, a silent peer (backpressure, giving up), replays, and a seeded
// lossy link (loss, duplication, delay that reorders) carrying 100 000 records, with each side
// restarting mid-stream.
#include "controlplane/sync/reliable.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <numeric>
#include <optional>
#include <queue>
#include <random>

namespace {

using namespace tandem::sync;

const std::vector<std::uint8_t> kKey(32, 0x3c);

// The simulations' seed: fixed, or TANDEM_SYNC_SEED to explore (and reproduce) others.
std::uint64_t seed(std::uint64_t fixed) {
  const char* s = std::getenv("TANDEM_SYNC_SEED");
  return s ? std::strtoull(s, nullptr, 10) : fixed;
}

EndpointConfig config(std::uint8_t unit, std::uint64_t epoch) {
  EndpointConfig c;
  c.unit_id = unit;
  c.key = kKey;
  c.epoch = epoch;
  return c;
}

// Record number n (>= 1) as a connection: its client address says which one it is.
Record numbered(std::uint32_t n) {
  ConnRecord c;
  c.proto = 6;
  c.state = tandem::conntrack::TcpState::kEstablished;
  c.client_addr = n;
  c.vip_addr = 0x0a000001;
  c.client_port = static_cast<std::uint16_t>(n);
  c.vip_port = 443;
  c.backend_addr = 0x0a010001 + n % 7;
  c.local_addr = n;
  c.backend_port = 443;
  c.local_port = static_cast<std::uint16_t>(n);
  return c;
}
std::uint32_t number(const Record& r) { return std::get<ConnRecord>(r).client_addr; }

Message message(std::uint64_t sequence) {
  Message m;
  m.header.sequence = sequence;
  m.records = {numbered(static_cast<std::uint32_t>(sequence))};
  return m;
}

TEST(SendWindow, AcksReleaseCumulatively) {
  SendWindow w(4);
  EXPECT_EQ(w.next_sequence(), 1u);
  EXPECT_EQ(w.oldest(), 1u);
  for (int i = 0; i < 4; ++i) w.push();
  EXPECT_TRUE(w.full());
  EXPECT_EQ(w.ack(0), 0u);
  EXPECT_EQ(w.ack(2), 2u);
  EXPECT_EQ(w.oldest(), 3u);
  EXPECT_EQ(w.in_flight(), 2u);
  EXPECT_EQ(w.ack(2), 0u) << "an old ack again releases nothing";
  EXPECT_EQ(w.ack(1), 0u);
  w.push();
  w.push();
  EXPECT_TRUE(w.full());
  EXPECT_EQ(w.at(6).sequence, 6u);
  w.release(w.at(4));  // given up in the middle: oldest stays at 3
  EXPECT_EQ(w.oldest(), 3u);
  EXPECT_EQ(w.ack(3), 1u);
  EXPECT_EQ(w.oldest(), 5u) << "past the released 4";
  EXPECT_EQ(w.ack(1000), 2u) << "an ack beyond what was sent is clamped";
  EXPECT_EQ(w.oldest(), 7u);
  EXPECT_EQ(w.in_flight(), 0u);
}

TEST(ReceiveWindow, DeliversInOrderWithoutDuplicates) {
  ReceiveWindow w(4);
  Message m = message(2);
  EXPECT_EQ(w.accept(m), ReceiveWindow::Accept::kStored);
  EXPECT_EQ(w.next(), nullptr) << "1 is missing";
  m = message(2);
  EXPECT_EQ(w.accept(m), ReceiveWindow::Accept::kDuplicate);
  m = message(5);
  EXPECT_EQ(w.accept(m), ReceiveWindow::Accept::kBeyondWindow) << "1..4 fit a window of 4";
  m = message(4);
  EXPECT_EQ(w.accept(m), ReceiveWindow::Accept::kStored);
  m = message(1);
  EXPECT_EQ(w.accept(m), ReceiveWindow::Accept::kStored);
  const Message* got = w.next();
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->header.sequence, 1u);
  got = w.next();
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->header.sequence, 2u);
  EXPECT_EQ(w.next(), nullptr);
  EXPECT_EQ(w.last_in_order(), 2u);
  m = message(1);
  EXPECT_EQ(w.accept(m), ReceiveWindow::Accept::kDuplicate) << "delivered already";
  // The sender gave up on 3: the hole is skipped, 4 delivered, and the floor holds.
  w.skip_below(5);
  got = w.next();
  ASSERT_NE(got, nullptr);
  EXPECT_EQ(got->header.sequence, 4u);
  EXPECT_EQ(w.next(), nullptr);
  EXPECT_EQ(w.skipped(), 1u);
  EXPECT_EQ(w.next_expected(), 5u);
  // A far jump (more than the window) is skipped at once.
  w.skip_below(1'000'000);
  EXPECT_EQ(w.next(), nullptr);
  EXPECT_EQ(w.next_expected(), 1'000'000u);
  EXPECT_EQ(w.skipped(), 1u + (1'000'000 - 5));
  w.reset(7);
  m = message(7);
  EXPECT_EQ(w.accept(m), ReceiveWindow::Accept::kStored);
  ASSERT_NE(w.next(), nullptr);
}

TEST(Endpoint, RefusesBadConfig) {
  EXPECT_THROW(Endpoint(config(0, 1)), std::invalid_argument);
  EXPECT_THROW(Endpoint(config(1, 0)), std::invalid_argument);
  EndpointConfig c = config(1, 1);
  c.key.resize(15);
  EXPECT_THROW(Endpoint{c}, std::invalid_argument);
}

using Datagrams = std::vector<std::span<const std::uint8_t>>;

std::vector<std::vector<std::uint8_t>> poll(Endpoint& e, std::uint64_t now) {
  Datagrams out;
  e.poll(now, out);
  std::vector<std::vector<std::uint8_t>> copies;
  for (auto d : out) copies.emplace_back(d.begin(), d.end());
  return copies;
}

std::vector<std::uint32_t> drain(Endpoint& e) {
  std::vector<std::uint32_t> got;
  while (const Message* m = e.next_delivery())
    for (const Record& r : m->records)
      if (std::holds_alternative<ConnRecord>(r)) got.push_back(number(r));
  return got;
}

TEST(Endpoint, BatchesFlushWhenFullOrAfterTheInterval) {
  Endpoint a(config(1, 11)), b(config(2, 22));
  for (std::uint32_t n = 1; n <= 30; ++n) ASSERT_EQ(a.add(MessageKind::kData, numbered(n), 100), AddStatus::kQueued);
  EXPECT_EQ(a.in_flight(), 1u) << "27 records filled a batch, sealed at once";
  auto out = poll(a, 100);
  ASSERT_EQ(out.size(), 1u) << "the open batch waits for flush_ms";
  EXPECT_LE(out[0].size(), kDefaultBudget);
  EXPECT_EQ(a.next_wakeup(100), 101u);
  auto later = poll(a, 101);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(a.stats().messages_sent, 2u);
  EXPECT_EQ(a.stats().records_sent, 30u);
  for (const auto& d : out) EXPECT_TRUE(b.receive(d, 102).accepted);
  for (const auto& d : later) EXPECT_TRUE(b.receive(d, 102).accepted);
  std::vector<std::uint32_t> want(30);
  std::iota(want.begin(), want.end(), 1u);
  EXPECT_EQ(drain(b), want);
  // Nothing to send: an ack-only message after ack_delay_ms, which releases a's window.
  EXPECT_TRUE(poll(b, 103).empty());
  auto acks = poll(b, 104);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_EQ(acks[0].size(), kHeaderBytes + kMacBytes);
  EXPECT_TRUE(a.receive(acks[0], 105).accepted);
  EXPECT_EQ(a.in_flight(), 0u);
  EXPECT_EQ(a.acked(), 2u);
  EXPECT_EQ(b.stats().acks_sent, 1u);
  EXPECT_TRUE(poll(a, 200).empty()) << "nothing to retransmit, nothing to ack";
  EXPECT_EQ(a.next_wakeup(200), UINT64_MAX);
}

TEST(Endpoint, RecordsThePeerWouldRefuseAreNotTaken) {
  Endpoint a(config(1, 11));
  ConnRecord zero = std::get<ConnRecord>(numbered(1));
  zero.backend_addr = 0;
  EXPECT_EQ(a.add(MessageKind::kData, zero, 0), AddStatus::kInvalid);
  ConnRecord update = std::get<ConnRecord>(numbered(2));
  update.type = RecordType::kUpdate;
  EXPECT_EQ(a.add(MessageKind::kResyncChunk, update, 0), AddStatus::kInvalid) << "chunks carry creates";
  EXPECT_EQ(a.add(MessageKind::kData, ConfigRecord{.digest = 1}, 0), AddStatus::kInvalid);
  EXPECT_EQ(a.add(MessageKind::kAck, numbered(3), 0), AddStatus::kInvalid);
  EXPECT_EQ(a.send_control(MessageKind::kResyncRequest, ResyncRecord{1, 5}, 0), AddStatus::kInvalid);
  EXPECT_EQ(a.send_control(MessageKind::kData, numbered(4), 0), AddStatus::kInvalid);
  EXPECT_EQ(a.stats().invalid, 6u);
  EXPECT_EQ(a.add(MessageKind::kData, update, 0), AddStatus::kQueued);
  EXPECT_EQ(a.add(MessageKind::kData, DeleteRecord{6, 1, 2, 3, 4}, 0), AddStatus::kQueued);
  EXPECT_TRUE(a.flush());
  EXPECT_EQ(a.in_flight(), 1u);
}

TEST(Endpoint, ControlMessagesKeepTheirPlace) {
  Endpoint a(config(1, 11)), b(config(2, 22));
  a.add(MessageKind::kData, numbered(1), 0);
  a.send_control(MessageKind::kResyncRequest, ResyncRecord{5, 0}, 0);
  a.add(MessageKind::kResyncChunk, numbered(2), 0);
  a.send_control(MessageKind::kResyncEnd, ResyncRecord{5, 1}, 0);
  a.send_control(MessageKind::kConfig, ConfigRecord{.digest = 9}, 0);
  auto out = poll(a, 0);
  ASSERT_EQ(out.size(), 5u);
  for (auto it = out.rbegin(); it != out.rend(); ++it) b.receive(*it, 1);  // reversed
  std::vector<MessageKind> kinds;
  while (const Message* m = b.next_delivery()) kinds.push_back(m->header.kind);
  EXPECT_EQ(kinds, (std::vector<MessageKind>{MessageKind::kData, MessageKind::kResyncRequest,
                                             MessageKind::kResyncChunk, MessageKind::kResyncEnd,
                                             MessageKind::kConfig}));
  EXPECT_EQ(b.stats().out_of_order, 4u);
}

TEST(Endpoint, ReplaysAreCountedNotDeliveredButAcked) {
  Endpoint a(config(1, 11)), b(config(2, 22));
  a.add(MessageKind::kData, numbered(1), 0);
  a.flush();
  const auto first = poll(a, 0);
  ASSERT_EQ(first.size(), 1u);
  EXPECT_TRUE(b.receive(first[0], 0).accepted);
  EXPECT_EQ(drain(b).size(), 1u);
  const ReceiveResult again = b.receive(first[0], 1);
  EXPECT_TRUE(again.accepted);
  EXPECT_TRUE(again.duplicate);
  EXPECT_TRUE(drain(b).empty());
  EXPECT_EQ(b.decoder().error_count(SyncError::kReplayed), 1u);
  // The duplicate suggests our ack was lost: it goes at once, not after the delay.
  const auto ack = poll(b, 1);
  ASSERT_EQ(ack.size(), 1u);
  a.receive(ack[0], 2);
  EXPECT_EQ(a.in_flight(), 0u);
  // A forged or corrupted datagram is refused by reason and changes nothing.
  auto bad = first[0];
  bad[70] ^= 1;
  const ReceiveResult r = b.receive(bad, 3);
  EXPECT_FALSE(r.accepted);
  EXPECT_EQ(r.error, SyncError::kBadAuth);
}

TEST(Endpoint, BackpressureThenGivingUpOnASilentPeer) {
  EndpointConfig ca = config(1, 11);
  ca.send_window = 4;
  ca.max_transmissions = 3;
  Endpoint a(ca), b(config(2, 22));
  std::uint32_t n = 1;
  while (a.add(MessageKind::kData, numbered(n), 0) == AddStatus::kQueued) ++n;
  EXPECT_TRUE(a.window_full());
  EXPECT_EQ(n - 1, 5u * 27) << "4 sealed batches in the window and one full open batch";
  EXPECT_EQ(a.stats().backpressure, 1u);
  EXPECT_EQ(a.add(MessageKind::kData, numbered(n), 0), AddStatus::kWindowFull);
  EXPECT_EQ(a.send_control(MessageKind::kConfig, ConfigRecord{.digest = 1}, 0), AddStatus::kWindowFull);
  EXPECT_EQ(a.stats().backpressure, 3u);
  // Nobody answers: 3 transmissions (0, 20, 60 ms), then each message is given up at 140 ms,
  // which frees the window for the open batch (sent at 141 ms, given up at 281 ms).
  for (std::uint64_t t = 0; t < 300; ++t) poll(a, t);
  EXPECT_EQ(a.stats().messages_sent, 5u);
  EXPECT_EQ(a.stats().retransmits, 10u);
  EXPECT_EQ(a.stats().gave_up, 5u);
  EXPECT_EQ(a.in_flight(), 0u);
  // The peer comes back: it hears a's next message, whose oldest says 1..5 will never come.
  ASSERT_EQ(a.add(MessageKind::kData, numbered(1000), 300), AddStatus::kQueued);
  a.flush();
  for (const auto& d : poll(a, 300)) b.receive(d, 300);
  EXPECT_EQ(drain(b), std::vector<std::uint32_t>{1000});
  EXPECT_EQ(b.skipped(), 0u) << "a first contact starts at the sender's oldest: nothing skipped";
  for (const auto& d : poll(b, 302)) a.receive(d, 302);
  EXPECT_EQ(a.in_flight(), 0u);
  EXPECT_FALSE(b.peer_knows_us());
  a.add(MessageKind::kData, numbered(1500), 310);
  a.flush();
  for (const auto& d : poll(a, 310)) b.receive(d, 310);
  EXPECT_EQ(drain(b), std::vector<std::uint32_t>{1500});
  EXPECT_TRUE(b.peer_knows_us()) << "a acked b's epoch: steady state";
  for (const auto& d : poll(b, 312)) a.receive(d, 312);
  // Two more messages are lost whatever a does: now b has a gap, and knows it.
  for (std::uint32_t k = 0; k < 27; ++k) a.add(MessageKind::kData, numbered(2000 + k), 400);
  a.add(MessageKind::kData, numbered(3000), 400);
  a.flush();
  for (std::uint64_t t = 400; t <= 600; ++t) poll(a, t);
  EXPECT_EQ(a.stats().gave_up, 7u);
  a.add(MessageKind::kData, numbered(4000), 700);
  a.flush();
  for (const auto& d : poll(a, 700)) b.receive(d, 700);
  EXPECT_EQ(drain(b), std::vector<std::uint32_t>{4000});
  EXPECT_EQ(b.skipped(), 2u) << "... and b knows it must resync";
}

// A datagram link with loss, duplication and random delay (which reorders), seeded.
class Link {
 public:
  Link(std::uint64_t seed, double loss, double duplicate, std::uint64_t max_delay)
      : rng_(seed), loss_(loss), duplicate_(duplicate), max_delay_(max_delay) {}

  void send(std::span<const std::uint8_t> d, std::uint64_t now) {
    ++sent_;
    if (chance(loss_)) {
      ++lost_;
      return;
    }
    const int copies = chance(duplicate_) ? 2 : 1;
    for (int i = 0; i < copies; ++i)
      queue_.push({now + rng_() % (max_delay_ + 1), order_++, {d.begin(), d.end()}});
  }
  // Hands every datagram due at `now` to `to`.
  void deliver(std::uint64_t now, Endpoint& to) {
    while (!queue_.empty() && queue_.top().at <= now) {
      to.receive(queue_.top().bytes, now);
      queue_.pop();
    }
  }
  bool empty() const { return queue_.empty(); }
  std::uint64_t sent() const { return sent_; }
  std::uint64_t lost() const { return lost_; }

 private:
  struct InFlight {
    std::uint64_t at;
    std::uint64_t order;
    std::vector<std::uint8_t> bytes;
    bool operator>(const InFlight& o) const { return at != o.at ? at > o.at : order > o.order; }
  };
  bool chance(double p) { return std::uniform_real_distribution<double>(0, 1)(rng_) < p; }

  std::mt19937_64 rng_;
  double loss_, duplicate_;
  std::uint64_t max_delay_;
  std::uint64_t order_ = 0, sent_ = 0, lost_ = 0;
  std::priority_queue<InFlight, std::vector<InFlight>, std::greater<>> queue_;
};

// One direction's records: produced in number order, checked on arrival.
struct Stream {
  std::uint32_t first = 1;
  std::uint32_t count = 0;
  std::uint32_t per_ms = 0;
  std::uint32_t next_to_add = 0;  // offset from first
  std::uint32_t backpressured = 0;
  std::vector<std::uint32_t> received;

  bool produced_all() const { return next_to_add == count; }
  void produce(Endpoint& e, std::uint64_t now) {
    for (std::uint32_t k = 0; k < per_ms && !produced_all(); ++k) {
      if (e.add(MessageKind::kData, numbered(first + next_to_add), now) == AddStatus::kWindowFull) {
        ++backpressured;
        return;  // the caller keeps the record and tries again later
      }
      ++next_to_add;
    }
  }
};

struct Sim {
  std::optional<Endpoint> a, b;
  Link ab, ba;
  Stream to_b, to_a;
  std::uint64_t now = 0;

  Sim(std::uint64_t seed, EndpointConfig ca, EndpointConfig cb)
      : a(std::in_place, std::move(ca)), b(std::in_place, std::move(cb)),
        ab(seed, 0.05, 0.02, 4), ba(seed + 1, 0.05, 0.02, 4) {}

  void tick() {
    to_b.produce(*a, now);
    to_a.produce(*b, now);
    Datagrams out;
    a->poll(now, out);
    for (auto d : out) ab.send(d, now);
    out.clear();
    b->poll(now, out);
    for (auto d : out) ba.send(d, now);
    ab.deliver(now, *b);
    for (std::uint32_t n : drain(*b)) to_b.received.push_back(n);
    ba.deliver(now, *a);
    for (std::uint32_t n : drain(*a)) to_a.received.push_back(n);
    ++now;
  }
  bool done() const {
    return to_b.produced_all() && to_a.produced_all() && a->in_flight() == 0 && b->in_flight() == 0;
  }
  void run(std::uint64_t limit_ms) {
    while (!done() && now < limit_ms) tick();
  }
};

// Records of a peer's previous life may still arrive (delayed datagrams accepted before the
// first one of the new epoch): they come first, and continue the previous life's sequence.
// Removes them and returns how many there were.
std::size_t drop_previous_life(std::vector<std::uint32_t>& got, std::uint32_t new_first, std::uint32_t previous_last) {
  std::size_t n = 0;
  while (n < got.size() && got[n] < new_first) {
    EXPECT_EQ(got[n], previous_last + 1 + n);
    ++n;
  }
  got.erase(got.begin(), got.begin() + static_cast<std::ptrdiff_t>(n));
  return n;
}

void expect_in_order_from(const std::vector<std::uint32_t>& got, std::uint32_t first, std::uint32_t last) {
  ASSERT_FALSE(got.empty());
  ASSERT_EQ(got.front(), first);
  for (std::size_t i = 1; i < got.size(); ++i)
    ASSERT_EQ(got[i], got[i - 1] + 1) << "at " << i << ": a gap, a duplicate or a reordering";
  ASSERT_EQ(got.back(), last);
}

TEST(Endpoint, LossyLinkDeliversEveryRecordOnceInOrder) {
  const auto start = std::chrono::steady_clock::now();
  EndpointConfig ca = config(1, 0xaaaa);
  ca.send_window = 64;  // small enough for the producer to hit it
  Sim sim(seed(42), ca, config(2, 0xbbbb));
  sim.to_b = {.first = 1, .count = 100'000, .per_ms = 500};
  sim.to_a = {.first = 1'000'000, .count = 10'000, .per_ms = 40};
  sim.run(60'000);
  ASSERT_TRUE(sim.done()) << "not finished after " << sim.now << " ms";
  expect_in_order_from(sim.to_b.received, 1, 100'000);
  expect_in_order_from(sim.to_a.received, 1'000'000, 1'009'999);

  const EndpointStats& sa = sim.a->stats();
  const EndpointStats& sb = sim.b->stats();
  EXPECT_EQ(sa.records_sent, 100'000u);
  EXPECT_EQ(sb.delivered, sa.messages_sent);
  EXPECT_GE(sa.messages_sent, 100'000u / 27);
  // About 5% of messages are lost, each costing at least one retransmission; a lost ack costs
  // retransmissions too, until a later cumulative ack covers them.
  EXPECT_GT(sa.retransmits, sa.messages_sent * 3 / 100);
  EXPECT_LT(sa.retransmits, sa.messages_sent * 30 / 100);
  EXPECT_EQ(sa.gave_up, 0u);
  EXPECT_EQ(sim.b->skipped(), 0u);
  EXPECT_GT(sb.out_of_order, 0u) << "the delays reorder";
  EXPECT_GT(sim.b->decoder().error_count(SyncError::kReplayed), 0u) << "duplicated datagrams, retransmissions of delivered messages";
  EXPECT_GT(sa.backpressure, 0u);
  EXPECT_EQ(sa.backpressure, sim.to_b.backpressured);
  EXPECT_EQ(sa.peer_restarts + sb.peer_restarts, 0u);
  for (SyncError e : {SyncError::kBadAuth, SyncError::kBadField, SyncError::kBadLength, SyncError::kStaleEpoch}) {
    EXPECT_EQ(sim.a->decoder().error_count(e), 0u) << to_string(e);
    EXPECT_EQ(sim.b->decoder().error_count(e), 0u) << to_string(e);
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("lossy link: %llu ms simulated, %.2f s real; a: %llu messages, %llu retransmits (%llu fast), %llu backpressure; "
              "b: %llu acks, %llu out of order, %llu duplicates; link a->b %llu/%llu lost\n",
              static_cast<unsigned long long>(sim.now), secs, static_cast<unsigned long long>(sa.messages_sent),
              static_cast<unsigned long long>(sa.retransmits), static_cast<unsigned long long>(sa.fast_retransmits),
              static_cast<unsigned long long>(sa.backpressure),
              static_cast<unsigned long long>(sb.acks_sent), static_cast<unsigned long long>(sb.out_of_order),
              static_cast<unsigned long long>(sim.b->decoder().error_count(SyncError::kReplayed)),
              static_cast<unsigned long long>(sim.ab.lost()), static_cast<unsigned long long>(sim.ab.sent()));
}

// Strictly increasing (no duplicate, no reordering), and containing every number of
// (after, last]: what a receiver's new life must get, when its previous life had up to `after`.
void expect_covers(const std::vector<std::uint32_t>& got, std::uint32_t after, std::uint32_t last) {
  ASSERT_FALSE(got.empty());
  for (std::size_t i = 1; i < got.size(); ++i) ASSERT_LT(got[i - 1], got[i]) << "at " << i;
  EXPECT_LE(got.front(), after + 1) << "a gap across the restart";
  const auto from = std::lower_bound(got.begin(), got.end(), after + 1);
  ASSERT_EQ(static_cast<std::size_t>(got.end() - from), last - after) << "a gap after the restart";
  EXPECT_EQ(got.back(), last);
}

// b restarts (a new epoch) in the middle of a's stream. Its new life starts at a's oldest
// unacked message: possibly with records its previous life had (into a fresh table: no
// duplicate effect), then everything its previous life did not have, in order, once each; a
// sees the restart, and b's old datagrams still in flight are refused as stale. (Until a
// hears of b's new life, acks of the old one may still release messages: the new life may see
// a's oldest jump over records the old life had. Not a gap of this life: not counted.)
TEST(Endpoint, ReceiverRestartsMidStream) {
  Sim sim(seed(7), config(1, 0xaaaa), config(2, 0xbbbb));
  sim.to_b = {.first = 1, .count = 40'000, .per_ms = 300};
  sim.to_a = {.first = 1'000'000, .count = 20'000, .per_ms = 30};
  while (sim.to_b.received.size() < 20'000) sim.tick();
  const std::uint32_t last_of_first_life = sim.to_b.received.back();
  expect_in_order_from(sim.to_b.received, 1, last_of_first_life);
  sim.to_b.received.clear();
  const std::uint32_t a_got_from_first_life = sim.to_a.received.empty() ? 999'999 : sim.to_a.received.back();
  sim.b.emplace(config(2, 0xb2b2));
  sim.to_a.next_to_add = 0;  // the new life streams its own records from the start
  sim.to_a.first = 2'000'000;
  sim.to_a.received.clear();
  sim.run(60'000);
  ASSERT_TRUE(sim.done());
  drop_previous_life(sim.to_a.received, 2'000'000, a_got_from_first_life);
  expect_covers(sim.to_b.received, last_of_first_life, 40'000);
  EXPECT_EQ(sim.a->stats().peer_restarts, 1u);
  expect_in_order_from(sim.to_a.received, 2'000'000, 2'019'999);
  EXPECT_EQ(sim.b->skipped(), 0u);
  EXPECT_EQ(sim.a->skipped(), 0u);
}

// a restarts: b sees a new epoch, delivers the new life's stream from its first sequence, and
// its own unacked messages are acked by a's new life.
TEST(Endpoint, SenderRestartsMidStream) {
  Sim sim(seed(9), config(1, 0xaaaa), config(2, 0xbbbb));
  sim.to_b = {.first = 1, .count = 30'000, .per_ms = 300};
  sim.to_a = {.first = 1'000'000, .count = 30'000, .per_ms = 30};
  while (sim.to_b.received.size() < 10'000) sim.tick();
  sim.a.emplace(config(1, 0xa2a2));
  sim.to_b.first = 500'000;
  sim.to_b.next_to_add = 0;
  const auto before = sim.to_a.received;
  sim.to_a.received.clear();
  const std::uint32_t b_got_from_first_life = sim.to_b.received.back();
  sim.to_b.received.clear();
  sim.run(60'000);
  ASSERT_TRUE(sim.done());
  drop_previous_life(sim.to_b.received, 500'000, b_got_from_first_life);
  expect_in_order_from(sim.to_b.received, 500'000, 529'999);
  EXPECT_EQ(sim.b->stats().peer_restarts, 1u);
  // b's stream to a goes on: a's new life starts at b's oldest unacked message.
  ASSERT_FALSE(before.empty());
  expect_covers(sim.to_a.received, before.back(), 1'029'999);
  EXPECT_EQ(sim.b->skipped(), 0u);
  EXPECT_EQ(sim.a->skipped(), 0u);
}

}  // namespace

TEST(Endpoint, TheLastRecordsSequenceEvenWhenItsAddSealedTheBatch) {
  Endpoint a(config(1, 11));
  for (std::uint32_t n = 1; n <= 26; ++n) {
    a.add(MessageKind::kData, numbered(n), 100);
    EXPECT_EQ(a.last_record_sequence(), 1u);
  }
  a.add(MessageKind::kData, numbered(27), 100);  // fills the batch: sealed under 1 at once
  EXPECT_EQ(a.last_record_sequence(), 1u);
  EXPECT_EQ(a.next_sequence(), 2u) << "what the lag tracking once wrongly used";
  a.add(MessageKind::kData, numbered(28), 100);
  EXPECT_EQ(a.last_record_sequence(), 2u);
  a.send_control(MessageKind::kConfig, ConfigRecord{.digest = 7}, 100);  // seals 2, takes 3
  a.add(MessageKind::kData, numbered(29), 100);
  EXPECT_EQ(a.last_record_sequence(), 4u);
}

TEST(Endpoint, SyncModeAsksForAnAckAtOnce) {
  EndpointConfig ca = config(1, 11);
  ca.ack_now_always = true;
  Endpoint a(ca), b(config(2, 22)), c(config(1, 12)), d(config(2, 23));
  a.add(MessageKind::kData, numbered(1), 100);
  a.flush();
  c.add(MessageKind::kData, numbered(1), 100);
  c.flush();
  for (const auto& m : poll(a, 100)) ASSERT_TRUE(b.receive(m, 100).accepted);
  for (const auto& m : poll(c, 100)) ASSERT_TRUE(d.receive(m, 100).accepted);
  drain(b);
  drain(d);
  EXPECT_EQ(poll(b, 100).size(), 1u) << "the ack goes without waiting";
  EXPECT_TRUE(poll(d, 100).empty()) << "async: after ack_delay_ms";
  EXPECT_EQ(poll(d, 102).size(), 1u);
}
