#include "controlplane/sync/message.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cstring>
#include <limits>

#include "controlplane/hmac.hpp"
#include "dataplane/net/byteorder.hpp"

namespace tandem::sync {
namespace {

constexpr std::uint8_t kMagic[4] = {'T', 'D', 'S', 'Y'};
constexpr std::uint8_t kConnFlagMidFlow = 0x01;

bool zero(const std::uint8_t* p, std::size_t n) {
  return std::all_of(p, p + n, [](std::uint8_t b) { return b == 0; });
}

// Header layout (docs/sync-protocol.md), network byte order:
//   0 magic "TDSY"  4 version  5 unit id  6 kind  7 flags
//   8 epoch (8)  16 sequence (8)  24 oldest (8)  32 ack epoch (8)  40 ack (8)  48 sack (8)
//   56 record count (2)  58 reserved 0 (6)  64 records ...  then HMAC-SHA256 (32) over all before it.
void write_header(std::uint8_t* p, const Header& h, std::size_t count) {
  std::memcpy(p, kMagic, 4);
  p[4] = kSyncVersion;
  p[5] = h.unit_id;
  p[6] = static_cast<std::uint8_t>(h.kind);
  p[7] = h.flags;
  net::store_be64(p + 8, h.epoch);
  net::store_be64(p + 16, h.sequence);
  net::store_be64(p + 24, h.oldest);
  net::store_be64(p + 32, h.ack_epoch);
  net::store_be64(p + 40, h.ack);
  net::store_be64(p + 48, h.sack);
  net::store_be16(p + 56, static_cast<std::uint16_t>(count));
  std::memset(p + 58, 0, 6);
}

std::size_t record_bytes(std::uint8_t type) {
  switch (static_cast<RecordType>(type)) {
    case RecordType::kCreate:
    case RecordType::kUpdate: return kConnRecordBytes;
    case RecordType::kDelete: return kDeleteRecordBytes;
    case RecordType::kResync: return kResyncRecordBytes;
    case RecordType::kConfig: return kConfigRecordBytes;
    case RecordType::kConfigChunk: return kConfigChunkBytes;
  }
  return 0;
}

// Record layouts: docs/sync-protocol.md#records.
void write_record(std::uint8_t* p, const Record& r) {
  if (const auto* c = std::get_if<ConnRecord>(&r)) {
    p[0] = static_cast<std::uint8_t>(c->type);
    p[1] = c->proto;
    p[2] = static_cast<std::uint8_t>(c->mode);
    p[3] = static_cast<std::uint8_t>(c->state);
    p[4] = c->mid_flow ? kConnFlagMidFlow : 0;
    net::store_be32(p + 8, c->client_addr);
    net::store_be32(p + 12, c->vip_addr);
    net::store_be16(p + 16, c->client_port);
    net::store_be16(p + 18, c->vip_port);
    net::store_be32(p + 20, c->backend_addr);
    net::store_be32(p + 24, c->local_addr);
    net::store_be16(p + 28, c->backend_port);
    net::store_be16(p + 30, c->local_port);
    net::store_be64(p + 32, c->created_age_ms);
    net::store_be32(p + 40, c->idle_ms);
  } else if (const auto* d = std::get_if<DeleteRecord>(&r)) {
    p[0] = static_cast<std::uint8_t>(RecordType::kDelete);
    p[1] = d->proto;
    net::store_be32(p + 4, d->client_addr);
    net::store_be32(p + 8, d->vip_addr);
    net::store_be16(p + 12, d->client_port);
    net::store_be16(p + 14, d->vip_port);
  } else if (const auto* s = std::get_if<ResyncRecord>(&r)) {
    p[0] = static_cast<std::uint8_t>(RecordType::kResync);
    net::store_be32(p + 4, s->resync_id);
    net::store_be64(p + 8, s->entries);
  } else if (const auto* g = std::get_if<ConfigRecord>(&r)) {
    p[0] = static_cast<std::uint8_t>(RecordType::kConfig);
    net::store_be32(p + 4, g->push_id);
    net::store_be64(p + 8, g->digest);
    net::store_be64(p + 16, g->own);
    net::store_be64(p + 24, g->peer);
  } else if (const auto* k = std::get_if<ConfigChunk>(&r)) {
    p[0] = static_cast<std::uint8_t>(RecordType::kConfigChunk);
    const std::size_t n = std::min<std::size_t>(k->length, kConfigChunkData);
    net::store_be16(p + 2, static_cast<std::uint16_t>(n));
    net::store_be32(p + 4, k->push_id);
    net::store_be32(p + 8, k->offset);
    net::store_be32(p + 12, k->total);
    std::memcpy(p + 16, k->data.data(), n);
  }
}

bool valid_proto(std::uint8_t proto) {
  return proto == net::ipv4::kProtoTcp || proto == net::ipv4::kProtoUdp;
}

// Parses one record of `size` bytes starting with a known type; false: a field out of range.
bool read_record(const std::uint8_t* p, Record& out) {
  switch (static_cast<RecordType>(p[0])) {
    case RecordType::kCreate:
    case RecordType::kUpdate: {
      ConnRecord c;
      c.type = static_cast<RecordType>(p[0]);
      c.proto = p[1];
      if (!valid_proto(c.proto)) return false;
      if (p[2] > static_cast<std::uint8_t>(conntrack::ForwardMode::kTunnel)) return false;
      c.mode = static_cast<conntrack::ForwardMode>(p[2]);
      if (p[3] >= conntrack::kTcpStateCount) return false;
      c.state = static_cast<conntrack::TcpState>(p[3]);
      if (c.proto == net::ipv4::kProtoUdp && c.state != conntrack::TcpState::kNone) return false;
      if ((p[4] & ~kConnFlagMidFlow) != 0 || !zero(p + 5, 3) || !zero(p + 44, 4)) return false;
      c.mid_flow = (p[4] & kConnFlagMidFlow) != 0;
      c.client_addr = net::load_be32(p + 8);
      c.vip_addr = net::load_be32(p + 12);
      c.client_port = net::load_be16(p + 16);
      c.vip_port = net::load_be16(p + 18);
      c.backend_addr = net::load_be32(p + 20);
      c.local_addr = net::load_be32(p + 24);
      c.backend_port = net::load_be16(p + 28);
      c.local_port = net::load_be16(p + 30);
      c.created_age_ms = net::load_be64(p + 32);
      c.idle_ms = net::load_be32(p + 40);
      if (c.client_addr == 0 || c.vip_addr == 0 || c.backend_addr == 0 || c.local_addr == 0) return false;
      if (c.idle_ms > c.created_age_ms) return false;
      out = c;
      return true;
    }
    case RecordType::kDelete: {
      DeleteRecord d;
      d.proto = p[1];
      if (!valid_proto(d.proto) || !zero(p + 2, 2)) return false;
      d.client_addr = net::load_be32(p + 4);
      d.vip_addr = net::load_be32(p + 8);
      d.client_port = net::load_be16(p + 12);
      d.vip_port = net::load_be16(p + 14);
      if (d.client_addr == 0 || d.vip_addr == 0) return false;
      out = d;
      return true;
    }
    case RecordType::kResync: {
      if (!zero(p + 1, 3)) return false;
      ResyncRecord s{net::load_be32(p + 4), net::load_be64(p + 8)};
      if (s.resync_id == 0) return false;
      out = s;
      return true;
    }
    case RecordType::kConfig: {
      if (!zero(p + 1, 3)) return false;
      out = ConfigRecord{net::load_be32(p + 4), net::load_be64(p + 8), net::load_be64(p + 16), net::load_be64(p + 24)};
      return true;
    }
    case RecordType::kConfigChunk: {
      ConfigChunk k;
      const std::size_t n = net::load_be16(p + 2);
      k.push_id = net::load_be32(p + 4);
      k.offset = net::load_be32(p + 8);
      k.total = net::load_be32(p + 12);
      if (p[1] != 0 || n > kConfigChunkData || !zero(p + 16 + n, kConfigChunkData - n)) return false;
      if (k.push_id == 0 || k.total > kMaxConfigText || k.offset > k.total || n > k.total - k.offset) return false;
      if (n == 0 && k.total != 0) return false;
      k.length = static_cast<std::uint16_t>(n);
      std::memcpy(k.data.data(), p + 16, n);
      out = k;
      return true;
    }
  }
  return false;
}

// Which records a kind carries (docs/sync-protocol.md#kinds).
bool records_fit_kind(MessageKind kind, const std::vector<Record>& records) {
  const auto all = [&](auto pred) { return std::all_of(records.begin(), records.end(), pred); };
  switch (kind) {
    case MessageKind::kData:
      return !records.empty() && all([](const Record& r) {
        return std::holds_alternative<ConnRecord>(r) || std::holds_alternative<DeleteRecord>(r);
      });
    case MessageKind::kAck: return records.empty();
    case MessageKind::kResyncRequest:
      return records.size() == 1 && std::holds_alternative<ResyncRecord>(records[0]) &&
             std::get<ResyncRecord>(records[0]).entries == 0;
    case MessageKind::kResyncChunk:
      return !records.empty() && all([](const Record& r) {
        const auto* c = std::get_if<ConnRecord>(&r);
        return c && c->type == RecordType::kCreate;
      });
    case MessageKind::kResyncEnd:
      return records.size() == 1 && std::holds_alternative<ResyncRecord>(records[0]);
    case MessageKind::kConfig:
      return records.size() == 1 && std::holds_alternative<ConfigRecord>(records[0]) &&
             std::get<ConfigRecord>(records[0]).push_id == 0;
    case MessageKind::kConfigPush: {
      // A config record (the push's version) may open the message; chunks of its push follow.
      if (records.empty()) return false;
      const auto* head = std::get_if<ConfigRecord>(&records[0]);
      if (head && head->push_id == 0) return false;
      return std::all_of(records.begin() + (head ? 1 : 0), records.end(), [](const Record& r) {
        return std::holds_alternative<ConfigChunk>(r);
      });
    }
  }
  return false;
}

}  // namespace

const char* to_string(MessageKind k) {
  switch (k) {
    case MessageKind::kData: return "data";
    case MessageKind::kAck: return "ack";
    case MessageKind::kResyncRequest: return "resync_request";
    case MessageKind::kResyncChunk: return "resync_chunk";
    case MessageKind::kResyncEnd: return "resync_end";
    case MessageKind::kConfig: return "config";
    case MessageKind::kConfigPush: return "config_push";
  }
  return "?";
}

const char* to_string(SyncError e) {
#define TANDEM_NAME_ITEM(id, name) \
  case SyncError::id:              \
    return name;
  switch (e) {
    TANDEM_SYNC_ERRORS(TANDEM_NAME_ITEM)
    case SyncError::kCount: break;
  }
#undef TANDEM_NAME_ITEM
  return "?";
}

std::size_t wire_size(const Record& r) {
  switch (r.index()) {
    case 0: return kConnRecordBytes;
    case 1: return kDeleteRecordBytes;
    case 2: return kResyncRecordBytes;
    case 3: return kConfigRecordBytes;
    default: return kConfigChunkBytes;
  }
}

std::vector<ConfigChunk> config_chunks(std::uint32_t push_id, std::string_view text) {
  std::vector<ConfigChunk> out;
  const auto total = static_cast<std::uint32_t>(text.size());
  std::size_t at = 0;
  do {
    const std::size_t n = std::min(kConfigChunkData, text.size() - at);
    ConfigChunk c{push_id, static_cast<std::uint32_t>(at), total, static_cast<std::uint16_t>(n), {}};
    std::memcpy(c.data.data(), text.data() + at, n);
    out.push_back(c);
    at += n;
  } while (at < text.size());
  return out;
}

bool encodable(MessageKind kind, const Record& r) {
  std::uint8_t buf[kConfigChunkBytes] = {};  // the largest record
  write_record(buf, r);
  Record back;
  if (!read_record(buf, back)) return false;
  return records_fit_kind(kind, std::vector<Record>{back});
}

Batch::Batch(std::size_t budget)
    : budget_(std::clamp(budget, kMinBudget, kMaxMessageBytes)) {
  body_.reserve(budget_);
}

void Batch::reset(MessageKind kind) {
  kind_ = kind;
  count_ = 0;
  body_.clear();
}

bool Batch::fits(std::size_t record_bytes) const {
  return count_ < std::numeric_limits<std::uint16_t>::max() && bytes() + record_bytes <= budget_;
}

bool Batch::add(const Record& r) {
  const std::size_t n = wire_size(r);
  if (!fits(n)) return false;
  const std::size_t at = body_.size();
  body_.resize(at + n, 0);
  write_record(body_.data() + at, r);
  ++count_;
  return true;
}

void Batch::finish(const Header& h, std::span<const std::uint8_t> key, std::vector<std::uint8_t>& out,
                   bool sign) const {
  const std::size_t start = out.size();
  out.resize(start + bytes());
  std::uint8_t* p = out.data() + start;
  Header hh = h;
  hh.kind = kind_;
  write_header(p, hh, count_);
  if (!body_.empty()) std::memcpy(p + kHeaderBytes, body_.data(), body_.size());
  const std::size_t signed_bytes = kHeaderBytes + body_.size();
  if (sign) hmac_sha256(key, {p, signed_bytes}, p + signed_bytes);
  else std::memset(p + signed_bytes, 0, kMacBytes);
}

bool encode(const Message& m, std::span<const std::uint8_t> key, std::vector<std::uint8_t>& out) {
  Batch b(kMaxMessageBytes);
  b.reset(m.header.kind);
  for (const Record& r : m.records)
    if (!b.add(r)) return false;
  b.finish(m.header, key, out);
  return true;
}

void stamp(std::span<std::uint8_t> m, std::uint8_t flags, std::uint64_t oldest, std::uint64_t ack_epoch,
           std::uint64_t ack, std::uint64_t sack, std::span<const std::uint8_t> key) {
  if (m.size() < kHeaderBytes + kMacBytes) return;
  std::uint8_t* p = m.data();
  p[7] = flags;
  net::store_be64(p + 24, oldest);
  net::store_be64(p + 32, ack_epoch);
  net::store_be64(p + 40, ack);
  net::store_be64(p + 48, sack);
  const std::size_t signed_bytes = m.size() - kMacBytes;
  hmac_sha256(key, {p, signed_bytes}, p + signed_bytes);
}

Decoder::Decoder(std::uint8_t my_unit_id, std::span<const std::uint8_t> key)
    : my_unit_id_(my_unit_id), key_(key.begin(), key.end()) {}

bool Decoder::fail(SyncError e, SyncError* out) {
  count(e);
  if (out) *out = e;
  return false;
}

bool Decoder::decode(std::span<const std::uint8_t> m, Message& out, SyncError* error, Info* info) {
  if (info) *info = {};
  if (m.size() < kHeaderBytes + kMacBytes) return fail(SyncError::kTooShort, error);
  const std::uint8_t* p = m.data();
  if (std::memcmp(p, kMagic, 4) != 0) return fail(SyncError::kBadMagic, error);
  if (p[4] != kSyncVersion) return fail(SyncError::kBadVersion, error);
  if (m.size() > kMaxMessageBytes) return fail(SyncError::kBadLength, error);
  // Authenticate before believing any other field.
  const std::size_t signed_bytes = m.size() - kMacBytes;
  std::uint8_t mac[kMacBytes];
  hmac_sha256(key_, m.first(signed_bytes), mac);
  if (CRYPTO_memcmp(mac, p + signed_bytes, kMacBytes) != 0) return fail(SyncError::kBadAuth, error);

  Header& h = out.header;
  h.unit_id = p[5];
  h.flags = p[7];
  h.epoch = net::load_be64(p + 8);
  h.sequence = net::load_be64(p + 16);
  h.oldest = net::load_be64(p + 24);
  h.ack_epoch = net::load_be64(p + 32);
  h.ack = net::load_be64(p + 40);
  h.sack = net::load_be64(p + 48);
  if (p[6] < static_cast<std::uint8_t>(MessageKind::kData) || p[6] > static_cast<std::uint8_t>(MessageKind::kConfigPush))
    return fail(SyncError::kBadField, error);
  h.kind = static_cast<MessageKind>(p[6]);
  if ((h.flags & ~kFlagAckNow) != 0 || !zero(p + 58, 6) || h.unit_id == 0 || h.epoch == 0)
    return fail(SyncError::kBadField, error);
  if (h.ack_epoch == 0 && (h.ack != 0 || h.sack != 0)) return fail(SyncError::kBadField, error);
  if (is_sequenced(h.kind)) {
    if (h.sequence == 0 || h.oldest == 0 || h.oldest > h.sequence) return fail(SyncError::kBadField, error);
  } else if (h.oldest == 0 || h.oldest - 1 > h.sequence) {
    return fail(SyncError::kBadField, error);
  }
  if (h.unit_id == my_unit_id_) return fail(SyncError::kOwnUnit, error);

  // Records: each starts with its type, which gives its size; together they fill the body.
  const std::size_t count = net::load_be16(p + 56);
  const std::uint8_t* r = p + kHeaderBytes;
  const std::uint8_t* const end = p + signed_bytes;
  out.records.clear();
  for (std::size_t i = 0; i < count; ++i) {
    if (r == end) return fail(SyncError::kBadLength, error);
    const std::size_t n = record_bytes(r[0]);
    if (n == 0) return fail(SyncError::kBadField, error);
    if (static_cast<std::size_t>(end - r) < n) return fail(SyncError::kBadLength, error);
    Record rec;
    if (!read_record(r, rec)) return fail(SyncError::kBadField, error);
    out.records.push_back(rec);
    r += n;
  }
  if (r != end) return fail(SyncError::kBadLength, error);
  if (!records_fit_kind(h.kind, out.records)) return fail(SyncError::kBadField, error);

  // Epochs: another one than the current is the peer restarted, unless it is one it left.
  if (std::find(retired_.begin(), retired_.begin() + static_cast<std::ptrdiff_t>(n_retired_), h.epoch) !=
      retired_.begin() + static_cast<std::ptrdiff_t>(n_retired_))
    return fail(SyncError::kStaleEpoch, error);
  if (!has_epoch_ || epoch_ != h.epoch) {
    if (has_epoch_) {
      if (n_retired_ == kRetiredEpochs) {
        std::move(retired_.begin() + 1, retired_.end(), retired_.begin());
        --n_retired_;
      }
      retired_[n_retired_++] = epoch_;
    }
    has_epoch_ = true;
    epoch_ = h.epoch;
    if (info) info->new_epoch = true;
  }
  ++accepted_;
  return true;
}

}  // namespace tandem::sync
