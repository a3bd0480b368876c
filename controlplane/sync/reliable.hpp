// Reliable, ordered delivery of sync messages over a lossy datagram link, pure: no socket, no
// clock (every call takes `now`, milliseconds of any monotonic origin), no thread. The rules are
// docs/sync-protocol.md#reliability:
//   - every message but an ack-only one takes the next sequence number of the sender's epoch;
//   - SendWindow keeps each sent message until it is acked, retransmits it after a timeout that
//     doubles up to a ceiling, and gives it up after a capped number of transmissions (the peer
//     learns from the `oldest` header field that it will never come, and resyncs);
//   - a selective ack (64 sequences after the cumulative ack) spares the messages the receiver
//     holds ahead of a gap from retransmission; a message still missing when one sent
//     reorder_ms after it has arrived is taken as lost and retransmitted at once (like TCP's
//     RACK), without waiting for its timeout;
//   - ReceiveWindow delivers in sequence order, buffers messages that arrive ahead of a gap (up
//     to its capacity), refuses duplicates, and skips sequences the sender gave up on;
//   - the cumulative ack (the highest sequence delivered in order, with the epoch it belongs
//     to) rides in every outgoing message; with nothing to send, an ack-only message goes after
//     a short delay (at once when the peer asked, or after a duplicate);
//   - when the send window is full, nothing more is taken: the caller is told (backpressure).
// Endpoint ties both windows to the codec (message.hpp): it is one unit's side of the link.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

#include "controlplane/sync/message.hpp"

namespace tandem::sync {

// Messages sent and not yet acked, by sequence, in a ring of fixed capacity.
class SendWindow {
 public:
  struct Entry {
    std::uint64_t sequence = 0;
    std::vector<std::uint8_t> bytes;  // the encoded message
    std::uint64_t sent_ms = 0;        // last transmission
    std::uint32_t transmissions = 0;  // 0: not sent yet
    bool live = false;                // false: acked or given up
    bool sacked = false;              // the receiver holds it: never retransmitted
    bool hole = false;                // lost by the selective ack's evidence: retransmit now
  };

  explicit SendWindow(std::size_t capacity, std::uint64_t first_sequence = 1);

  std::size_t capacity() const { return entries_.size(); }
  std::size_t in_flight() const { return static_cast<std::size_t>(next_ - base_); }
  bool full() const { return in_flight() == capacity(); }
  std::uint64_t next_sequence() const { return next_; }
  // The oldest sequence still held (next_sequence() when none): the header's `oldest`.
  std::uint64_t oldest() const { return base_; }

  // A new entry under next_sequence(), its bytes empty for the caller to fill. Not when full().
  Entry& push();
  // Releases every sequence <= `ack`; returns how many were released. `sack` bit i: ack + 2 + i
  // is held by the receiver (marked sacked). A sent entry still missing, sent at least
  // `reorder_ms` before the last-sent of the held ones, is marked a hole (lost).
  std::size_t ack(std::uint64_t ack, std::uint64_t sack = 0, std::uint64_t reorder_ms = 0);
  // The receiver restarted: what it held is gone, so nothing is sacked any more.
  void forget_sacks();
  // Releases one entry (given up) and advances oldest() past released entries.
  void release(Entry& e);

  // Entries from oldest to newest (live or not: test `live`).
  Entry& at(std::uint64_t sequence) { return entries_[sequence % entries_.size()]; }
  const Entry& at(std::uint64_t sequence) const { return entries_[sequence % entries_.size()]; }

 private:
  void advance();

  std::vector<Entry> entries_;
  std::uint64_t base_;
  std::uint64_t next_;
};

// Messages received, delivered in sequence order.
class ReceiveWindow {
 public:
  enum class Accept : std::uint8_t {
    kStored,        // buffered; delivered by next() once everything before it was
    kDuplicate,     // delivered or buffered already: refused (still acked)
    kBeyondWindow,  // too far ahead of the next expected: dropped (the sender retransmits)
  };

  explicit ReceiveWindow(std::size_t capacity);

  // Forget everything and expect `next` (a new epoch of the peer, whose oldest is `next`).
  void reset(std::uint64_t next);
  // Takes `m` (swapped with a buffered slot's message: `m` gets back some old content).
  Accept accept(Message& m);
  // The sender will never send anything below `oldest` again: next() skips what is missing,
  // counted in skipped() unless `counted` is false (the sender did not know us yet: what it
  // released was acked by a previous life of ours, and this one resyncs anyway).
  void skip_below(std::uint64_t oldest, bool counted = true);
  // The next message in order, or null. Valid until the next accept() or reset().
  const Message* next();

  std::uint64_t next_expected() const { return next_; }
  std::uint64_t last_in_order() const { return next_ - 1; }  // the cumulative ack
  std::uint64_t sack() const;  // bit i: next_expected() + 1 + i is buffered
  bool holds(std::uint64_t sequence) const {
    const Slot& s = slots_[sequence % slots_.size()];
    return s.filled && s.sequence == sequence;
  }
  std::uint64_t skipped() const { return skipped_; }
  std::size_t capacity() const { return slots_.size(); }

 private:
  struct Slot {
    bool filled = false;
    std::uint64_t sequence = 0;
    Message message;
  };
  std::vector<Slot> slots_;
  std::uint64_t next_ = 1;
  std::uint64_t floor_ = 1;  // the sender's oldest: nothing below will come
  std::uint64_t quiet_ = 1;  // skips below this are not counted
  std::uint64_t skipped_ = 0;
};

struct EndpointConfig {
  std::uint8_t unit_id = 0;             // ours, 1..255
  std::vector<std::uint8_t> key;        // pre-shared, >= kMinKeyBytes
  std::uint64_t epoch = 0;              // random per start, != 0
  std::size_t budget = kDefaultBudget;  // UDP payload bytes per message
  std::size_t send_window = 256;        // messages in flight
  std::size_t receive_window = 256;     // messages buffered ahead of a gap
  std::uint32_t flush_ms = 1;           // an open batch is sealed after at most this
  std::uint32_t retransmit_ms = 20;     // first retransmission timeout; doubles per try ...
  std::uint32_t max_retransmit_ms = 200;  // ... up to this
  std::uint32_t max_transmissions = 12;   // then the message is given up
  std::uint32_t reorder_ms = 5;           // the link's reordering: see SendWindow::ack
  std::uint32_t ack_delay_ms = 2;       // an ack-only message when nothing carried the ack
  // Sync mode: every first transmission asks for an ack at once (flag ack now), so a sender
  // holding packets until its records are acked waits one round trip, not ack_delay_ms.
  bool ack_now_always = false;
};

struct EndpointStats {
  std::uint64_t messages_sent = 0;   // first transmissions of sequenced messages
  std::uint64_t records_sent = 0;
  std::uint64_t retransmits = 0;     // of which fast_retransmits: holes found by the selective ack
  std::uint64_t fast_retransmits = 0;
  std::uint64_t acks_sent = 0;       // ack-only messages
  std::uint64_t gave_up = 0;         // messages dropped after max_transmissions
  std::uint64_t backpressure = 0;    // records refused: the send window was full
  std::uint64_t invalid = 0;         // records refused: not encodable() (a caller's bug)
  std::uint64_t received = 0;        // authenticated, valid messages (of any kind)
  std::uint64_t delivered = 0;       // sequenced messages handed over in order
  std::uint64_t out_of_order = 0;    // stored right after a gap (each one acked at once)
  std::uint64_t beyond_window = 0;   // dropped: too far ahead
  std::uint64_t peer_restarts = 0;   // a new epoch of the peer after a first one
};

enum class AddStatus : std::uint8_t {
  kQueued,      // taken: it will be sent (and retransmitted until acked)
  kWindowFull,  // not taken: the send window is full (backpressure, counted)
  kInvalid,     // not taken: the peer would refuse it (wrong kind, field out of range), counted
};

struct ReceiveResult {
  bool accepted = false;        // authenticated and valid (even if a duplicate)
  SyncError error = SyncError::kCount;  // why not, when !accepted
  bool duplicate = false;       // a sequence already delivered or buffered (counted replayed)
  bool peer_restarted = false;  // a new epoch after an earlier one: the peer lost its state
};

// One unit's side of the sync link.
class Endpoint {
 public:
  explicit Endpoint(EndpointConfig config);  // throws std::invalid_argument on a bad config

  // --- sending ---
  // Appends a record to the open batch of `kind` (kData, kResyncChunk or kConfigPush), sealing
  // the batch (it takes a sequence number) when it is full or of another kind, or before a
  // push's config record.
  AddStatus add(MessageKind kind, const Record& r, std::uint64_t now);
  // A message of its own (kResyncRequest, kResyncEnd, kConfig), after everything added before.
  AddStatus send_control(MessageKind kind, const Record& r, std::uint64_t now);
  // Seals the open batch now instead of after flush_ms (e.g. sync mode). False: window full.
  bool flush();

  // Appends to `out` every datagram due at `now`: sealed batches (after flush_ms), first
  // transmissions, retransmissions, or an ack-only message. The spans stay valid until the
  // next non-const call.
  void poll(std::uint64_t now, std::vector<std::span<const std::uint8_t>>& out);
  // When poll() next has something to do (now or later); UINT64_MAX: nothing pending.
  std::uint64_t next_wakeup(std::uint64_t now) const;

  // --- receiving ---
  ReceiveResult receive(std::span<const std::uint8_t> datagram, std::uint64_t now);
  // The next message in order, or null; valid until the next receive().
  const Message* next_delivery();

  // --- state ---
  std::size_t in_flight() const { return send_.in_flight(); }
  std::uint64_t next_sequence() const { return send_.next_sequence(); }
  // The sequence the last record add()ed goes (or went) under: its batch may have been sealed
  // by that add already (it was full).
  std::uint64_t last_record_sequence() const { return last_record_sequence_; }
  bool window_full() const { return send_.full(); }
  std::uint64_t epoch() const { return config_.epoch; }
  std::uint64_t peer_epoch() const { return decoder_.peer_epoch(); }
  // Sequences the peer gave up on before we received them: our copy of its state has a gap.
  // (Not counted while the peer has not acked our epoch yet: we are joining, and resync.)
  std::uint64_t skipped() const { return recv_.skipped(); }
  bool peer_knows_us() const { return peer_knows_us_; }
  std::uint64_t acked() const { return send_.oldest() - 1; }  // everything below was acked or given up
  const EndpointStats& stats() const { return stats_; }
  const Decoder& decoder() const { return decoder_; }

 private:
  bool seal();
  void transmit(SendWindow::Entry& e, std::uint8_t flags, std::uint64_t now,
                std::vector<std::span<const std::uint8_t>>& out);
  std::uint64_t ack_epoch() const { return decoder_.has_peer_epoch() ? decoder_.peer_epoch() : 0; }
  std::uint64_t retransmit_after(const SendWindow::Entry& e) const;

  EndpointConfig config_;
  Decoder decoder_;
  Batch batch_;
  std::uint64_t batch_started_ = 0;
  std::uint64_t last_record_sequence_ = 0;
  SendWindow send_;
  ReceiveWindow recv_;
  Message scratch_;
  std::vector<std::uint8_t> ack_buffer_;
  bool peer_knows_us_ = false;  // the peer's last message acked our epoch
  bool ack_pending_ = false;  // something was received that no outgoing message acked yet
  bool ack_now_ = false;
  std::uint64_t ack_pending_since_ = 0;
  EndpointStats stats_;
};

}  // namespace tandem::sync
