#include "controlplane/sync/reliable.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>
#include <utility>

namespace tandem::sync {

// --- SendWindow ---

SendWindow::SendWindow(std::size_t capacity, std::uint64_t first_sequence)
    : entries_(std::max<std::size_t>(capacity, 1)), base_(first_sequence), next_(first_sequence) {}

SendWindow::Entry& SendWindow::push() {
  Entry& e = at(next_);
  e.sequence = next_++;
  e.bytes.clear();
  e.sent_ms = 0;
  e.transmissions = 0;
  e.live = true;
  e.sacked = e.hole = false;
  return e;
}

std::size_t SendWindow::ack(std::uint64_t ack, std::uint64_t sack, std::uint64_t reorder_ms) {
  std::size_t released = 0;
  const std::uint64_t last = std::min(ack, next_ - 1);  // never more than was sent
  for (std::uint64_t s = base_; s <= last && s < next_; ++s) {
    Entry& e = at(s);
    if (e.live) {
      e.live = false;
      ++released;
    }
  }
  advance();
  if (sack != 0) {
    // The held ones are sacked; the latest of their transmissions dates the evidence.
    std::uint64_t latest = 0;
    bool any = false;
    for (int i = 0; i < 64; ++i) {
      if (!(sack >> i & 1)) continue;
      const std::uint64_t s = ack + 2 + static_cast<std::uint64_t>(i);
      if (s < base_ || s >= next_) continue;
      Entry& e = at(s);
      if (!e.live || e.transmissions == 0) continue;
      e.sacked = true;
      latest = any ? std::max(latest, e.sent_ms) : e.sent_ms;
      any = true;
    }
    const int highest = 63 - __builtin_clzll(sack);
    for (std::uint64_t s = std::max(base_, ack + 1); any && s < next_ && s < ack + 2 + static_cast<std::uint64_t>(highest); ++s) {
      Entry& e = at(s);
      if (e.live && !e.sacked && e.transmissions > 0 && e.sent_ms + reorder_ms <= latest) e.hole = true;
    }
  }
  return released;
}

void SendWindow::forget_sacks() {
  for (Entry& e : entries_) e.sacked = e.hole = false;
}

void SendWindow::release(Entry& e) {
  e.live = false;
  advance();
}

void SendWindow::advance() {
  while (base_ < next_ && !at(base_).live) ++base_;
}

// --- ReceiveWindow ---

ReceiveWindow::ReceiveWindow(std::size_t capacity) : slots_(std::max<std::size_t>(capacity, 1)) {}

void ReceiveWindow::reset(std::uint64_t next) {
  for (Slot& s : slots_) s.filled = false;
  next_ = floor_ = quiet_ = next;
}

ReceiveWindow::Accept ReceiveWindow::accept(Message& m) {
  const std::uint64_t seq = m.header.sequence;
  if (seq < next_) return Accept::kDuplicate;
  if (seq - next_ >= slots_.size()) return Accept::kBeyondWindow;
  Slot& s = slots_[seq % slots_.size()];
  if (s.filled) return Accept::kDuplicate;  // within the window a slot holds only `seq`
  std::swap(s.message, m);
  s.sequence = seq;
  s.filled = true;
  return Accept::kStored;
}

std::uint64_t ReceiveWindow::sack() const {
  std::uint64_t bits = 0;
  const std::size_t n = std::min<std::size_t>(64, slots_.size());
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint64_t seq = next_ + 1 + i;
    const Slot& s = slots_[seq % slots_.size()];
    if (s.filled && s.sequence == seq) bits |= std::uint64_t{1} << i;
  }
  return bits;
}

void ReceiveWindow::skip_below(std::uint64_t oldest, bool counted) {
  floor_ = std::max(floor_, oldest);
  if (!counted) quiet_ = std::max(quiet_, oldest);
}

const Message* ReceiveWindow::next() {
  for (;;) {
    Slot& s = slots_[next_ % slots_.size()];
    if (s.filled && s.sequence == next_) {
      s.filled = false;
      ++next_;
      return &s.message;
    }
    if (next_ >= floor_) return nullptr;
    // A hole the sender gave up on: jump to the next buffered message below the floor, or to it.
    std::uint64_t target = floor_;
    for (const Slot& t : slots_)
      if (t.filled && t.sequence > next_ && t.sequence < target) target = t.sequence;
    skipped_ += target - std::clamp(quiet_, next_, target);
    next_ = target;
  }
}

// --- Endpoint ---

Endpoint::Endpoint(EndpointConfig config)
    : config_(std::move(config)),
      decoder_(config_.unit_id, config_.key),
      batch_(config_.budget),
      send_(config_.send_window),
      recv_(config_.receive_window) {
  if (config_.unit_id == 0) throw std::invalid_argument("sync: unit id 0");
  if (config_.key.size() < kMinKeyBytes) throw std::invalid_argument("sync: key shorter than 16 bytes");
  if (config_.epoch == 0) throw std::invalid_argument("sync: epoch 0");
  if (config_.send_window == 0 || config_.receive_window == 0) throw std::invalid_argument("sync: empty window");
  if (config_.max_transmissions == 0) throw std::invalid_argument("sync: max_transmissions 0");
  ack_buffer_.reserve(kHeaderBytes + kMacBytes);
}

bool Endpoint::seal() {
  if (batch_.empty()) return true;
  if (send_.full()) return false;
  SendWindow::Entry& e = send_.push();
  Header h;
  h.unit_id = config_.unit_id;
  h.epoch = config_.epoch;
  h.sequence = e.sequence;
  h.oldest = send_.oldest();
  h.ack_epoch = ack_epoch();
  h.ack = h.ack_epoch ? recv_.last_in_order() : 0;
  h.sack = h.ack_epoch ? recv_.sack() : 0;
  batch_.finish(h, config_.key, e.bytes, /*sign=*/false);  // transmit() stamps and signs it
  stats_.records_sent += batch_.records();
  batch_.reset(batch_.kind());
  return true;
}

AddStatus Endpoint::add(MessageKind kind, const Record& r, std::uint64_t now) {
  if ((kind != MessageKind::kData && kind != MessageKind::kResyncChunk && kind != MessageKind::kConfigPush) ||
      !encodable(kind, r)) {
    ++stats_.invalid;
    return AddStatus::kInvalid;
  }
  // A push's config record opens a message of its own.
  const bool opens = std::holds_alternative<ConfigRecord>(r);
  if (!batch_.empty() && (batch_.kind() != kind || opens || !batch_.fits(wire_size(r))) && !seal()) {
    ++stats_.backpressure;
    return AddStatus::kWindowFull;
  }
  if (batch_.empty()) {
    batch_.reset(kind);
    batch_started_ = now;
  }
  batch_.add(r);
  last_record_sequence_ = send_.next_sequence();  // the open batch's, sealed now or later
  if (!batch_.fits(wire_size(r))) seal();  // full: no need to wait for the flush timer
  return AddStatus::kQueued;
}

AddStatus Endpoint::send_control(MessageKind kind, const Record& r, std::uint64_t now) {
  if (kind == MessageKind::kData || kind == MessageKind::kResyncChunk || kind == MessageKind::kAck ||
      !encodable(kind, r)) {
    ++stats_.invalid;
    return AddStatus::kInvalid;
  }
  if (!seal()) {
    ++stats_.backpressure;
    return AddStatus::kWindowFull;
  }
  batch_.reset(kind);
  batch_started_ = now;
  batch_.add(r);
  seal();  // when the window is full, it waits in the batch and goes first when there is room
  return AddStatus::kQueued;
}

bool Endpoint::flush() { return seal(); }

std::uint64_t Endpoint::retransmit_after(const SendWindow::Entry& e) const {
  const std::uint32_t shift = std::min<std::uint32_t>(e.transmissions - 1, 16);
  const std::uint64_t rto = std::uint64_t{config_.retransmit_ms} << shift;
  return e.sent_ms + std::min<std::uint64_t>(rto, std::max(config_.max_retransmit_ms, config_.retransmit_ms));
}

void Endpoint::transmit(SendWindow::Entry& e, std::uint8_t flags, std::uint64_t now,
                        std::vector<std::span<const std::uint8_t>>& out) {
  const std::uint64_t ae = ack_epoch();
  stamp(e.bytes, flags, send_.oldest(), ae, ae ? recv_.last_in_order() : 0, ae ? recv_.sack() : 0, config_.key);
  e.sent_ms = now;
  ++e.transmissions;
  e.hole = false;
  out.emplace_back(e.bytes);
  ack_pending_ = ack_now_ = false;
}

void Endpoint::poll(std::uint64_t now, std::vector<std::span<const std::uint8_t>>& out) {
  const std::size_t first = out.size();
  if (!batch_.empty() && now >= batch_started_ + config_.flush_ms) seal();
  for (std::uint64_t s = send_.oldest(); s < send_.next_sequence(); ++s) {
    SendWindow::Entry& e = send_.at(s);
    if (!e.live) continue;
    if (e.transmissions == 0) {
      transmit(e, config_.ack_now_always ? kFlagAckNow : 0, now, out);
      ++stats_.messages_sent;
    } else if (e.sacked) {
      continue;  // the peer holds it; the cumulative ack will follow when the holes are filled
    } else if (now >= retransmit_after(e)) {
      if (e.transmissions >= config_.max_transmissions) {
        ++stats_.gave_up;
        send_.release(e);  // the peer skips it when it sees the new oldest
        continue;
      }
      transmit(e, kFlagAckNow, now, out);
      ++stats_.retransmits;
    } else if (e.hole) {
      transmit(e, kFlagAckNow, now, out);
      ++stats_.retransmits;
      ++stats_.fast_retransmits;
    }
  }
  if (out.size() == first && ack_pending_ && (ack_now_ || now >= ack_pending_since_ + config_.ack_delay_ms)) {
    Header h;
    h.unit_id = config_.unit_id;
    h.kind = MessageKind::kAck;
    h.epoch = config_.epoch;
    h.sequence = send_.next_sequence() - 1;
    h.oldest = send_.oldest();
    h.ack_epoch = ack_epoch();
    h.ack = h.ack_epoch ? recv_.last_in_order() : 0;
    h.sack = h.ack_epoch ? recv_.sack() : 0;
    Batch ack(kMinBudget);
    ack.reset(MessageKind::kAck);
    ack_buffer_.clear();
    ack.finish(h, config_.key, ack_buffer_);
    out.emplace_back(ack_buffer_);
    ++stats_.acks_sent;
    ack_pending_ = ack_now_ = false;
  }
}

std::uint64_t Endpoint::next_wakeup(std::uint64_t now) const {
  std::uint64_t t = std::numeric_limits<std::uint64_t>::max();
  if (!batch_.empty()) t = std::min(t, batch_started_ + config_.flush_ms);
  if (ack_pending_) t = std::min(t, ack_now_ ? now : ack_pending_since_ + config_.ack_delay_ms);
  for (std::uint64_t s = send_.oldest(); s < send_.next_sequence(); ++s) {
    const SendWindow::Entry& e = send_.at(s);
    if (!e.live || e.sacked) continue;
    t = std::min(t, e.transmissions == 0 ? now : retransmit_after(e));
    if (e.hole) t = now;
  }
  return std::max(t, now);
}

ReceiveResult Endpoint::receive(std::span<const std::uint8_t> datagram, std::uint64_t now) {
  ReceiveResult res;
  Decoder::Info info;
  if (!decoder_.decode(datagram, scratch_, &res.error, &info)) return res;
  res.accepted = true;
  ++stats_.received;
  const Header& h = scratch_.header;
  if (info.new_epoch) {
    // The peer (re)started: its sequence space starts over at the oldest it still holds.
    if (decoder_.accepted() > 1) {
      res.peer_restarted = true;
      ++stats_.peer_restarts;
      send_.forget_sacks();  // its previous life held them; the new one must get them again
    }
    peer_knows_us_ = false;
    recv_.reset(h.oldest);
  }
  // Until the peer acks our epoch, and in the first message that does, its `oldest` may have
  // moved on acks of a previous life of ours: skips up to it are not gaps of this life.
  const bool knew_us = peer_knows_us_;
  if (h.ack_epoch == config_.epoch) {
    peer_knows_us_ = true;
    send_.ack(h.ack, h.sack, config_.reorder_ms);
  }
  recv_.skip_below(h.oldest, knew_us);
  if (!is_sequenced(h.kind)) return res;

  // accept() swaps the message away: keep what is needed of its header.
  const bool ack_now = (h.flags & kFlagAckNow) != 0;
  const std::uint64_t sequence = h.sequence;
  switch (recv_.accept(scratch_)) {
    case ReceiveWindow::Accept::kStored:
      if (sequence != recv_.next_expected() && !recv_.holds(sequence - 1)) {
        ++stats_.out_of_order;
        ack_now_ = true;  // a gap: tell the sender at once (the selective ack shows the hole)
      }
      break;
    case ReceiveWindow::Accept::kDuplicate:
      res.duplicate = true;
      decoder_.count(SyncError::kReplayed);
      ack_now_ = true;  // our ack was probably lost
      break;
    case ReceiveWindow::Accept::kBeyondWindow:
      ++stats_.beyond_window;
      return res;
  }
  if (!ack_pending_) ack_pending_since_ = now;
  ack_pending_ = true;
  ack_now_ = ack_now_ || ack_now;
  return res;
}

const Message* Endpoint::next_delivery() {
  const Message* m = recv_.next();
  if (m) ++stats_.delivered;
  return m;
}

}  // namespace tandem::sync
