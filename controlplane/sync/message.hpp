// The state-sync message: what one unit sends its peer over the sync link (UDP) to replicate
// its connection table. The wire format is docs/sync-protocol.md (version 1); this is its codec,
// pure (no socket, no clock: ages are computed by the caller from its own clock):
//   - Batch appends records to one message up to a byte budget (the UDP payload the link
//     carries without fragmenting), and finish() writes the header and the HMAC-SHA256 trailer;
//   - stamp() rewrites the fields that change when a message is retransmitted (flags, oldest,
//     ack) and its MAC, without touching the records;
//   - Decoder authenticates a message first, then validates every field, and counts every
//     refusal by reason; it never reads outside the span it is given.
// Sequencing, acks and retransmission live one level up, in reliable.hpp.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "dataplane/conntrack/conn_table.hpp"
#include "dataplane/conntrack/forward_mode.hpp"
#include "dataplane/conntrack/tcp_state.hpp"

namespace tandem::sync {

inline constexpr std::uint8_t kSyncVersion = 2;
inline constexpr std::size_t kHeaderBytes = 64;
inline constexpr std::size_t kMacBytes = 32;  // HMAC-SHA256
inline constexpr std::size_t kConnRecordBytes = 48;
inline constexpr std::size_t kDeleteRecordBytes = 16;
inline constexpr std::size_t kResyncRecordBytes = 16;
inline constexpr std::size_t kConfigRecordBytes = 32;
inline constexpr std::size_t kConfigChunkBytes = 48;
inline constexpr std::size_t kConfigChunkData = 32;                 // text bytes per chunk record
inline constexpr std::uint32_t kMaxConfigText = 16u << 20;          // a pushed configuration's size
// A UDP payload that fits a 1500-byte MTU with IPv4/UDP headers and room to spare (VXLAN, etc.):
// 27 connection records.
inline constexpr std::size_t kDefaultBudget = 1400;
inline constexpr std::size_t kMinBudget = kHeaderBytes + kConnRecordBytes + kMacBytes;
inline constexpr std::size_t kMaxMessageBytes = 65507;  // the largest UDP payload over IPv4
inline constexpr std::size_t kMinKeyBytes = 16;

// Header flags.
inline constexpr std::uint8_t kFlagAckNow = 0x01;  // the sender asks for an ack without delay

enum class MessageKind : std::uint8_t {
  kData = 1,           // live deltas: create, update, delete records (at least one)
  kAck = 2,            // no records, no sequence of its own: carries the cumulative ack only
  kResyncRequest = 3,  // one resync record: "send me your whole table"
  kResyncChunk = 4,    // create records of a bulk resync (at least one)
  kResyncEnd = 5,      // one resync record: the bulk resync is complete, with its entry count
  kConfig = 6,         // one config record: the sender's config version
  kConfigPush = 7,     // the sender's services: a config record (at the start), then text chunks
};
const char* to_string(MessageKind k);
// Every kind but kAck takes a sequence number and is delivered reliably, in order.
constexpr bool is_sequenced(MessageKind k) { return k != MessageKind::kAck; }

enum class RecordType : std::uint8_t {
  kCreate = 1,  // a new connection (in a resync chunk: an existing one)
  kUpdate = 2,  // a change: TCP state, NAT binding, backend
  kDelete = 3,  // the connection ended (closed, expired, flushed)
  kResync = 4,
  kConfig = 5,
  kConfigChunk = 6,
};

// A connection as replicated: both keys (which carry the service identity, vip/port/proto, and
// the backend's address and port: never a unit-local stats id), forwarding mode, TCP state,
// whether it was adopted mid-flow, and its times as ages relative to the moment the record was
// written, since the two units' clocks are unrelated. Packet and byte counters are not carried:
// they are the unit's own observations (per-unit, monotonic metrics) and not needed to forward.
struct ConnRecord {
  RecordType type = RecordType::kCreate;  // kCreate or kUpdate
  std::uint8_t proto = 6;                 // 6 (TCP) or 17 (UDP)
  conntrack::ForwardMode mode = conntrack::ForwardMode::kNat;
  conntrack::TcpState state = conntrack::TcpState::kNone;  // kNone for UDP
  bool mid_flow = false;
  std::uint32_t client_addr = 0;  // host byte order, like ConnEntry
  std::uint32_t vip_addr = 0;
  std::uint16_t client_port = 0;
  std::uint16_t vip_port = 0;
  std::uint32_t backend_addr = 0;
  std::uint32_t local_addr = 0;
  std::uint16_t backend_port = 0;
  std::uint16_t local_port = 0;
  std::uint64_t created_age_ms = 0;  // now - created
  std::uint32_t idle_ms = 0;         // now - last seen (saturates); <= created_age_ms

  bool operator==(const ConnRecord&) const = default;
};

// The record of `e` at `now_ms` (the table's clock): a connection entry, or anything with its
// fields (conntrack::ConnDelta, a change as the fast path logged it).
template <typename Entry>
ConnRecord conn_record(const Entry& e, std::uint64_t now_ms, RecordType type = RecordType::kCreate) {
  ConnRecord c;
  c.type = type;
  c.proto = e.proto;
  c.mode = e.mode;
  c.state = e.state;
  c.mid_flow = (e.flags & conntrack::kConnMidFlow) != 0;
  c.client_addr = e.client_addr;
  c.vip_addr = e.vip_addr;
  c.client_port = e.client_port;
  c.vip_port = e.vip_port;
  c.backend_addr = e.backend_addr;
  c.local_addr = e.local_addr;
  c.backend_port = e.backend_port;
  c.local_port = e.local_port;
  c.created_age_ms = now_ms > e.created_ms ? now_ms - e.created_ms : 0;
  const std::uint64_t idle = now_ms > e.last_seen_ms ? now_ms - e.last_seen_ms : 0;
  c.idle_ms = static_cast<std::uint32_t>(std::min({idle, c.created_age_ms, std::uint64_t{0xffffffffu}}));
  return c;
}

struct DeleteRecord {  // the original key: client -> VIP
  std::uint8_t proto = 6;
  std::uint32_t client_addr = 0;
  std::uint32_t vip_addr = 0;
  std::uint16_t client_port = 0;
  std::uint16_t vip_port = 0;

  bool operator==(const DeleteRecord&) const = default;
};

struct ResyncRecord {
  std::uint32_t resync_id = 0;  // chosen by the requester, != 0; the end names the same id
  std::uint64_t entries = 0;    // request: 0; end: connection records streamed

  bool operator==(const ResyncRecord&) const = default;
};

// The version of the sender's services (sync/config_version.hpp): their digest, and how many
// changes made on each unit they include, counted from the sender's side.
struct ConfigRecord {
  std::uint32_t push_id = 0;    // in a config push: names the push (!= 0); in a config message: 0
  std::uint64_t digest = 0;     // of the services as text (FNV-1a)
  std::uint64_t own = 0;        // changes made on the sender
  std::uint64_t peer = 0;       // changes made on the receiver, as the sender has them

  bool operator==(const ConfigRecord&) const = default;
};

// A piece of a pushed configuration's text (the services as TOML), in order.
struct ConfigChunk {
  std::uint32_t push_id = 0;  // != 0, the config record's
  std::uint32_t offset = 0;   // of data in the text
  std::uint32_t total = 0;    // the text's size, <= kMaxConfigText
  std::uint16_t length = 0;   // 1..kConfigChunkData bytes of data (0 only for an empty text)
  std::array<char, kConfigChunkData> data{};  // zero after length (a record stays trivially copyable)

  std::string_view text() const { return {data.data(), length}; }
  bool operator==(const ConfigChunk&) const = default;
};

using Record = std::variant<ConnRecord, DeleteRecord, ResyncRecord, ConfigRecord, ConfigChunk>;
std::size_t wire_size(const Record& r);
// True when a message of `kind` may carry `r` and a decoder would accept its fields (it is
// written and read back through the decoder's own checks). A record that is not would make the
// peer refuse its whole message.
bool encodable(MessageKind kind, const Record& r);
// The chunk records that carry `text` in push `push_id`.
std::vector<ConfigChunk> config_chunks(std::uint32_t push_id, std::string_view text);

struct Header {
  std::uint8_t unit_id = 0;  // the sender, 1..255
  MessageKind kind = MessageKind::kData;
  std::uint8_t flags = 0;          // kFlagAckNow
  std::uint64_t epoch = 0;         // random per start of the sender, != 0
  std::uint64_t sequence = 0;      // of this message (sequenced kinds: >= 1); kAck: the last sent
  std::uint64_t oldest = 0;        // the oldest sequence the sender still retransmits (<= sequence;
                                   // kAck: <= sequence + 1): the receiver never waits for less
  std::uint64_t ack_epoch = 0;     // the receiver's epoch the ack refers to; 0: nothing received
  std::uint64_t ack = 0;           // the highest sequence of ack_epoch received in order
  std::uint64_t sack = 0;          // selective ack: bit i set = ack + 2 + i received (buffered)

  bool operator==(const Header&) const = default;
};

struct Message {
  Header header;
  std::vector<Record> records;

  bool operator==(const Message&) const = default;
};

// One message being filled. Records are appended while they fit the budget; finish() writes
// the message. Reusable: reset() starts the next one and keeps the buffer.
class Batch {
 public:
  explicit Batch(std::size_t budget = kDefaultBudget);

  void reset(MessageKind kind);
  MessageKind kind() const { return kind_; }
  // False (nothing appended) when the record would exceed the budget or the record count limit.
  // The kind/record combination is not checked here; the decoder refuses a wrong one.
  bool add(const Record& r);
  bool fits(std::size_t record_bytes) const;
  std::size_t records() const { return count_; }
  bool empty() const { return count_ == 0; }
  std::size_t bytes() const { return kHeaderBytes + body_.size() + kMacBytes; }
  std::size_t budget() const { return budget_; }

  // Appends the whole message (header from `h`, whose kind is replaced by the batch's, records,
  // HMAC-SHA256 with `key`) to `out`.
  // `sign` false: the MAC is left zero, for a message stamp()ed before it is sent (the
  // reliable endpoint does, with fresh ack fields: computing it here too would be wasted).
  void finish(const Header& h, std::span<const std::uint8_t> key, std::vector<std::uint8_t>& out,
              bool sign = true) const;

 private:
  std::size_t budget_;
  MessageKind kind_ = MessageKind::kData;
  std::size_t count_ = 0;
  std::vector<std::uint8_t> body_;
};

// Encodes one message whole (tests, control messages): Batch::add of each record, then finish.
// False when the records do not fit kMaxMessageBytes.
bool encode(const Message& m, std::span<const std::uint8_t> key, std::vector<std::uint8_t>& out);

// Rewrites flags, oldest, ack_epoch, ack and sack of an encoded message (one that finish()
// wrote) and recomputes its MAC: what a (re)transmission changes.
void stamp(std::span<std::uint8_t> message, std::uint8_t flags, std::uint64_t oldest,
           std::uint64_t ack_epoch, std::uint64_t ack, std::uint64_t sack,
           std::span<const std::uint8_t> key);

#define TANDEM_SYNC_ERRORS(X)                                                              \
  X(kTooShort, "too_short")       /* shorter than a header and a MAC */                    \
  X(kBadMagic, "bad_magic")                                                                \
  X(kBadVersion, "bad_version")                                                            \
  X(kBadLength, "bad_length")     /* over the maximum, or records disagree with the size */ \
  X(kBadAuth, "bad_auth")         /* HMAC mismatch: wrong key or altered */                \
  X(kBadField, "bad_field")       /* a kind, type, enum, flag, reserved byte out of range */ \
  X(kOwnUnit, "own_unit")         /* our own unit id: a loop or a misconfigured peer */    \
  X(kStaleEpoch, "stale_epoch")   /* an epoch of the peer that a newer one replaced */     \
  X(kReplayed, "replayed")        /* a sequence already delivered (still acked) */

#define TANDEM_ENUM_ITEM(id, name) id,
enum class SyncError : std::uint8_t { TANDEM_SYNC_ERRORS(TANDEM_ENUM_ITEM) kCount };
#undef TANDEM_ENUM_ITEM
inline constexpr std::size_t kSyncErrorCount = static_cast<std::size_t>(SyncError::kCount);
const char* to_string(SyncError e);

// Checks messages from the peer. Keeps the peer's current epoch: a message of another epoch is
// the peer restarted, accepted (DecodeInfo::new_epoch), and the previous epoch joins the last
// kRetiredEpochs refused from then on (stale_epoch). Which sequences were already delivered is
// the receive window's business (reliable.hpp), which counts its duplicates here (count()).
class Decoder {
 public:
  Decoder(std::uint8_t my_unit_id, std::span<const std::uint8_t> key);

  struct Info {
    bool new_epoch = false;  // the first message of this epoch of the peer
  };

  // True and `out` filled (its record vector reused), or false with `error` set and counted.
  // `out` is unspecified after a refusal.
  bool decode(std::span<const std::uint8_t> message, Message& out, SyncError* error = nullptr,
              Info* info = nullptr);

  void count(SyncError e) { ++errors_[static_cast<std::size_t>(e)]; }
  const std::array<std::uint64_t, kSyncErrorCount>& errors() const { return errors_; }
  std::uint64_t error_count(SyncError e) const { return errors_[static_cast<std::size_t>(e)]; }
  std::uint64_t accepted() const { return accepted_; }
  bool has_peer_epoch() const { return has_epoch_; }
  std::uint64_t peer_epoch() const { return epoch_; }

  static constexpr std::size_t kRetiredEpochs = 16;

 private:
  bool fail(SyncError e, SyncError* out);

  std::uint8_t my_unit_id_;
  std::vector<std::uint8_t> key_;
  bool has_epoch_ = false;
  std::uint64_t epoch_ = 0;
  std::array<std::uint64_t, kRetiredEpochs> retired_{};
  std::size_t n_retired_ = 0;
  std::array<std::uint64_t, kSyncErrorCount> errors_{};
  std::uint64_t accepted_ = 0;
};

}  // namespace tandem::sync
