// The state-sync message codec (controlplane/sync/message.*): the documented layout byte for
// byte, round trips of every record type and message kind, the batch budget, every refusal
// counted by reason, stale epochs, and a seeded fuzz run of mutated, truncated, extended and
// random messages (signed and unsigned).
#include "controlplane/sync/message.hpp"
#include "controlplane/sync/config_version.hpp"
#include "controlplane/hmac.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstdio>
#include <random>
#include <string>

namespace {

using namespace tandem::sync;
using tandem::conntrack::ForwardMode;
using tandem::conntrack::TcpState;

const std::vector<std::uint8_t> kKey(32, 0x5a);
const std::vector<std::uint8_t> kOtherKey(32, 0xa5);
constexpr std::uint64_t kEpoch = 0x1122334455667788ull;

std::size_t idx(SyncError e) { return static_cast<std::size_t>(e); }

ConnRecord sample_conn(std::uint32_t n = 1) {
  ConnRecord c;
  c.type = RecordType::kCreate;
  c.proto = 6;
  c.mode = ForwardMode::kFullNat;
  c.state = TcpState::kEstablished;
  c.mid_flow = true;
  c.client_addr = 0xc0a80001 + n;  // 192.168.0.1 + n
  c.vip_addr = 0x0a000001;         // 10.0.0.1
  c.client_port = 40000;
  c.vip_port = 80;
  c.backend_addr = 0x0a010015;     // 10.1.0.21
  c.local_addr = 0x0a0100fe;       // 10.1.0.254
  c.backend_port = 8080;
  c.local_port = 1029;
  c.created_age_ms = 0x0102030405ull;
  c.idle_ms = 1500;
  return c;
}

DeleteRecord sample_delete() { return {17, 0xc0a80009, 0x0a000002, 5353, 53}; }

Header sample_header(MessageKind kind = MessageKind::kData, std::uint64_t sequence = 7) {
  Header h;
  h.unit_id = 2;
  h.kind = kind;
  h.epoch = kEpoch;
  h.sequence = sequence;
  h.oldest = is_sequenced(kind) ? 3 : sequence + 1;
  h.ack_epoch = 0x99;
  h.ack = 41;
  h.sack = 0x8000000000000005ull;
  return h;
}

std::vector<std::uint8_t> bytes(const Message& m, const std::vector<std::uint8_t>& key = kKey) {
  std::vector<std::uint8_t> out;
  EXPECT_TRUE(encode(m, key, out));
  return out;
}

// Recomputes the MAC after a test altered a signed field: what a peer with the key could send.
void resign(std::vector<std::uint8_t>& m, const std::vector<std::uint8_t>& key = kKey) {
  if (m.size() < kMacBytes) return;
  unsigned len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), m.data(), m.size() - kMacBytes,
       m.data() + m.size() - kMacBytes, &len);
}

SyncError refusal(Decoder& d, const std::vector<std::uint8_t>& m) {
  SyncError e = SyncError::kCount;
  Message out;
  EXPECT_FALSE(d.decode(m, out, &e));
  return e;
}

std::vector<Message> every_kind() {
  ConnRecord update = sample_conn(2);
  update.type = RecordType::kUpdate;
  update.state = TcpState::kFinWait;
  ConnRecord udp = sample_conn(3);
  udp.proto = 17;
  udp.state = TcpState::kNone;
  udp.mode = ForwardMode::kDsr;
  udp.mid_flow = false;
  return {
      {sample_header(MessageKind::kData), {sample_conn(), update, sample_delete(), udp}},
      {sample_header(MessageKind::kAck), {}},
      {sample_header(MessageKind::kResyncRequest), {ResyncRecord{77, 0}}},
      {sample_header(MessageKind::kResyncChunk), {sample_conn(4), udp}},
      {sample_header(MessageKind::kResyncEnd), {ResyncRecord{77, 123456}}},
      {sample_header(MessageKind::kConfig), {ConfigRecord{.digest = 0xabcdef, .own = 3, .peer = 2}}},
      {sample_header(MessageKind::kConfigPush),
       {ConfigRecord{.push_id = 9, .digest = config_digest_of("[[service]]"), .own = 4, .peer = 2},
        config_chunks(9, "[[service]]").at(0)}},
      {sample_header(MessageKind::kConfigPush), {config_chunks(9, std::string(40, 'x')).at(1)}},
  };
}

TEST(SyncMessage, LayoutIsTheDocumentedOne) {
  const Message m{sample_header(MessageKind::kData, 0x0102030405060708ull), {sample_conn(), sample_delete()}};
  const auto b = bytes(m);
  ASSERT_EQ(b.size(), kHeaderBytes + kConnRecordBytes + kDeleteRecordBytes + kMacBytes);
  const std::vector<std::uint8_t> expected = {
      // header
      'T', 'D', 'S', 'Y', 2, 2, 1, 0,                  // magic, version 2, unit, kind data, flags
      0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88,  // epoch
      1, 2, 3, 4, 5, 6, 7, 8,                          // sequence
      0, 0, 0, 0, 0, 0, 0, 3,                          // oldest
      0, 0, 0, 0, 0, 0, 0, 0x99,                       // ack epoch
      0, 0, 0, 0, 0, 0, 0, 41,                         // ack
      0x80, 0, 0, 0, 0, 0, 0, 0x05,                    // sack
      0, 2, 0, 0, 0, 0, 0, 0,                          // record count, reserved
      // create record
      1, 6, 1, 3, 1, 0, 0, 0,                          // type, proto, mode fullnat, ESTABLISHED, mid-flow
      192, 168, 0, 2, 10, 0, 0, 1,                     // client, vip
      0x9c, 0x40, 0, 80,                               // client port 40000, vip port 80
      10, 1, 0, 21, 10, 1, 0, 254,                     // backend, local
      0x1f, 0x90, 0x04, 0x05,                          // backend port 8080, local port 1029
      0, 0, 0, 0x01, 0x02, 0x03, 0x04, 0x05,           // created age
      0, 0, 0x05, 0xdc, 0, 0, 0, 0,                    // idle 1500, reserved
      // delete record
      3, 17, 0, 0, 192, 168, 0, 9, 10, 0, 0, 2, 0x14, 0xe9, 0, 53,
  };
  EXPECT_EQ(std::vector<std::uint8_t>(b.begin(), b.end() - kMacBytes), expected);
  auto signed_copy = b;
  resign(signed_copy);
  EXPECT_EQ(signed_copy, b) << "the trailer is HMAC-SHA256 over every byte before it";
}

TEST(SyncMessage, ControlRecordLayouts) {
  const auto req = bytes({sample_header(MessageKind::kResyncRequest), {ResyncRecord{0x01020304, 0}}});
  const std::vector<std::uint8_t> resync = {4, 0, 0, 0, 1, 2, 3, 4, 0, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(std::vector<std::uint8_t>(req.begin() + kHeaderBytes, req.end() - kMacBytes), resync);
  const auto cfg = bytes({sample_header(MessageKind::kConfig), {ConfigRecord{.digest = 0x0a0b, .own = 3, .peer = 0x102}}});
  const std::vector<std::uint8_t> config = {5, 0, 0, 0, 0, 0, 0, 0,  0, 0, 0, 0, 0, 0, 0x0a, 0x0b,  // type, push id 0, digest
                                            0, 0, 0, 0, 0, 0, 0, 3,  0, 0, 0, 0, 0, 0, 1, 2};       // own, peer
  EXPECT_EQ(std::vector<std::uint8_t>(cfg.begin() + kHeaderBytes, cfg.end() - kMacBytes), config);
  const auto push = bytes({sample_header(MessageKind::kConfigPush), {config_chunks(0x0105, "svc").at(0)}});
  std::vector<std::uint8_t> chunk = {6, 0, 0, 3, 0, 0, 1, 5,  0, 0, 0, 0, 0, 0, 0, 3,  's', 'v', 'c'};
  chunk.resize(kConfigChunkBytes, 0);  // type, 0, length, push id, offset, total, data zero-padded
  EXPECT_EQ(std::vector<std::uint8_t>(push.begin() + kHeaderBytes, push.end() - kMacBytes), chunk);
  const auto ack = bytes({sample_header(MessageKind::kAck), {}});
  EXPECT_EQ(ack.size(), kHeaderBytes + kMacBytes);
  EXPECT_EQ(ack[6], 2);
}

TEST(SyncMessage, EveryKindRoundTrips) {
  Decoder d(1, kKey);
  for (const Message& m : every_kind()) {
    Message got;
    SyncError e = SyncError::kCount;
    ASSERT_TRUE(d.decode(bytes(m), got, &e)) << to_string(m.header.kind) << ": " << to_string(e);
    EXPECT_EQ(got, m) << to_string(m.header.kind);
  }
  EXPECT_EQ(d.accepted(), 8u);
  EXPECT_STREQ(to_string(MessageKind::kResyncChunk), "resync_chunk");
  EXPECT_STREQ(to_string(MessageKind::kConfigPush), "config_push");
}

TEST(SyncMessage, EveryModeAndStateRoundTrips) {
  Decoder d(1, kKey);
  for (std::uint8_t mode = 0; mode < 4; ++mode)
    for (std::uint8_t state = 0; state < tandem::conntrack::kTcpStateCount; ++state) {
      ConnRecord c = sample_conn(mode * 16u + state);
      c.mode = static_cast<ForwardMode>(mode);
      c.state = static_cast<TcpState>(state);
      c.mid_flow = (state & 1) != 0;
      const Message m{sample_header(), {c}};
      Message got;
      ASSERT_TRUE(d.decode(bytes(m), got));
      EXPECT_EQ(got, m);
    }
}

TEST(SyncMessage, RecordFromAConnEntry) {
  tandem::conntrack::ConnEntry e;
  e.client_addr = 1;
  e.vip_addr = 2;
  e.client_port = 3;
  e.vip_port = 4;
  e.backend_addr = 5;
  e.local_addr = 6;
  e.backend_port = 7;
  e.local_port = 8;
  e.proto = 6;
  e.mode = ForwardMode::kNat;
  e.state = TcpState::kSynRecv;
  e.flags = tandem::conntrack::kConnInUse | tandem::conntrack::kConnMidFlow | tandem::conntrack::kConnFromPeer;
  e.service = 12345;  // local ids: not carried
  e.backend = 678;
  e.created_ms = 1000;
  e.last_seen_ms = 4000;
  e.packets[0] = 99;  // counters: not carried
  const ConnRecord c = conn_record(e, 5000, RecordType::kUpdate);
  EXPECT_EQ(c.type, RecordType::kUpdate);
  EXPECT_EQ(c.created_age_ms, 4000u);
  EXPECT_EQ(c.idle_ms, 1000u);
  EXPECT_TRUE(c.mid_flow);
  EXPECT_EQ(c.client_addr, 1u);
  EXPECT_EQ(c.local_port, 8u);
  EXPECT_EQ(c.state, TcpState::kSynRecv);
  // Clocks that disagree (a time in the future) give age 0, never a wrapped one; a long idle
  // time saturates and never exceeds the age.
  EXPECT_EQ(conn_record(e, 500).created_age_ms, 0u);
  EXPECT_EQ(conn_record(e, 500).idle_ms, 0u);
  e.created_ms = 0;
  e.last_seen_ms = 0;
  const ConnRecord old = conn_record(e, 1ull << 40);
  EXPECT_EQ(old.created_age_ms, 1ull << 40);
  EXPECT_EQ(old.idle_ms, 0xffffffffu);
}

TEST(SyncMessage, BatchFillsItsBudget) {
  Batch b;  // 1400 bytes
  b.reset(MessageKind::kData);
  std::size_t n = 0;
  while (b.add(sample_conn(static_cast<std::uint32_t>(n)))) ++n;
  EXPECT_EQ(n, (kDefaultBudget - kHeaderBytes - kMacBytes) / kConnRecordBytes);
  EXPECT_EQ(n, 27u);
  EXPECT_FALSE(b.add(sample_delete())) << "8 bytes left";
  EXPECT_EQ(b.bytes(), kDefaultBudget - 8);
  std::vector<std::uint8_t> out = {0xee};  // finish() appends
  b.finish(sample_header(), kKey, out);
  EXPECT_EQ(out.size(), 1 + b.bytes());
  Decoder d(1, kKey);
  Message got;
  ASSERT_TRUE(d.decode(std::span(out).subspan(1), got));
  EXPECT_EQ(got.records.size(), 27u);
  b.reset(MessageKind::kResyncChunk);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(b.kind(), MessageKind::kResyncChunk);
  // A smaller record may fit where a bigger one does not.
  Batch small(kMinBudget + kDeleteRecordBytes);
  small.reset(MessageKind::kData);
  EXPECT_TRUE(small.add(sample_conn()));
  EXPECT_FALSE(small.add(sample_conn()));
  EXPECT_TRUE(small.add(sample_delete()));
  EXPECT_FALSE(small.add(sample_delete()));
  EXPECT_EQ(small.bytes(), small.budget());
}

TEST(SyncMessage, StampRewritesAckAndMac) {
  auto m = bytes({sample_header(), {sample_conn()}});
  stamp(m, kFlagAckNow, 5, 0x77, 1234, 0x3, kKey);
  Decoder d(1, kKey);
  Message got;
  ASSERT_TRUE(d.decode(m, got));
  EXPECT_EQ(got.header.flags, kFlagAckNow);
  EXPECT_EQ(got.header.oldest, 5u);
  EXPECT_EQ(got.header.ack_epoch, 0x77u);
  EXPECT_EQ(got.header.ack, 1234u);
  EXPECT_EQ(got.header.sack, 3u);
  EXPECT_EQ(got.records.size(), 1u);
}

TEST(SyncMessage, EveryRefusalIsCountedByReason) {
  Decoder d(1, kKey);
  const Message good_msg{sample_header(), {sample_conn(), sample_delete()}};
  const auto good = bytes(good_msg);
  std::array<std::uint64_t, kSyncErrorCount> want{};
  const auto expect = [&](const std::vector<std::uint8_t>& m, SyncError e, const char* what) {
    EXPECT_EQ(refusal(d, m), e) << what;
    ++want[idx(e)];
  };
  // Signed field edits: refused as fields, not as forgeries.
  const auto edited = [&](std::size_t at, std::uint8_t v) {
    auto m = good;
    m[at] = v;
    resign(m);
    return m;
  };
  const auto with = [&](Message m) { return bytes(m); };

  expect({}, SyncError::kTooShort, "empty");
  expect(std::vector<std::uint8_t>(good.begin(), good.begin() + kHeaderBytes + kMacBytes - 1), SyncError::kTooShort, "short");
  expect(edited(0, 'X'), SyncError::kBadMagic, "magic");
  expect(edited(4, 1), SyncError::kBadVersion, "version 1");
  expect(edited(4, 3), SyncError::kBadVersion, "version 3");
  {
    std::vector<std::uint8_t> huge(kMaxMessageBytes + 1, 0);
    std::copy(good.begin(), good.begin() + 8, huge.begin());
    expect(huge, SyncError::kBadLength, "over the maximum");
  }
  expect(edited(57, 3), SyncError::kBadLength, "count says 3, carries 2");
  expect(edited(57, 1), SyncError::kBadLength, "count says 1, carries 2");
  {
    auto m = good;
    m.insert(m.end() - kMacBytes, 0);
    resign(m);
    expect(m, SyncError::kBadLength, "a trailing byte");
    m = good;
    m.erase(m.end() - kMacBytes - 1);
    resign(m);
    expect(m, SyncError::kBadLength, "a truncated record");
  }
  {
    auto m = good;
    m[kHeaderBytes + 10] ^= 1;
    expect(m, SyncError::kBadAuth, "a record altered");
    expect(bytes(good_msg, kOtherKey), SyncError::kBadAuth, "another key");
  }
  expect(edited(6, 0), SyncError::kBadField, "kind 0");
  expect(edited(6, 8), SyncError::kBadField, "kind 8");
  expect(edited(7, 2), SyncError::kBadField, "unknown flag");
  expect(edited(61, 1), SyncError::kBadField, "reserved header byte");
  expect(edited(5, 0), SyncError::kBadField, "unit 0");
  expect(edited(kHeaderBytes, 9), SyncError::kBadField, "unknown record type");
  expect(edited(kHeaderBytes + 1, 1), SyncError::kBadField, "proto ICMP");
  expect(edited(kHeaderBytes + 2, 4), SyncError::kBadField, "mode 4");
  expect(edited(kHeaderBytes + 3, 9), SyncError::kBadField, "TCP state 9");
  expect(edited(kHeaderBytes + 4, 3), SyncError::kBadField, "conn flag");
  expect(edited(kHeaderBytes + 6, 1), SyncError::kBadField, "conn reserved");
  expect(edited(kHeaderBytes + 45, 1), SyncError::kBadField, "conn reserved at the end");
  expect(edited(kHeaderBytes + kConnRecordBytes + 2, 1), SyncError::kBadField, "delete reserved");
  {
    Message m = good_msg;
    m.header.epoch = 0;
    expect(with(m), SyncError::kBadField, "epoch 0");
    m = good_msg;
    m.header.ack_epoch = 0;
    expect(with(m), SyncError::kBadField, "an ack without its epoch");
    m.header.ack = 0;
    expect(with(m), SyncError::kBadField, "a selective ack without its epoch");
    m = good_msg;
    m.header.sequence = 0;
    m.header.oldest = 0;
    expect(with(m), SyncError::kBadField, "sequence 0");
    m = good_msg;
    m.header.oldest = m.header.sequence + 1;
    expect(with(m), SyncError::kBadField, "oldest after the sequence");
    Message a{sample_header(MessageKind::kAck), {}};
    a.header.oldest = a.header.sequence + 2;
    expect(with(a), SyncError::kBadField, "ack-only: oldest beyond the next sequence");
    a.header.oldest = 0;
    expect(with(a), SyncError::kBadField, "ack-only: oldest 0");

    ConnRecord c = sample_conn();
    c.proto = 17;  // UDP with a TCP state
    expect(with({sample_header(), {c}}), SyncError::kBadField, "UDP with a TCP state");
    c = sample_conn();
    c.backend_addr = 0;
    expect(with({sample_header(), {c}}), SyncError::kBadField, "backend 0.0.0.0");
    c = sample_conn();
    c.idle_ms = 10;
    c.created_age_ms = 9;
    expect(with({sample_header(), {c}}), SyncError::kBadField, "idle longer than the age");
    DeleteRecord del = sample_delete();
    del.client_addr = 0;
    expect(with({sample_header(), {del}}), SyncError::kBadField, "delete of client 0.0.0.0");
    expect(with({sample_header(MessageKind::kResyncEnd), {ResyncRecord{0, 1}}}), SyncError::kBadField, "resync id 0");
    auto cfg = with({sample_header(MessageKind::kConfig), {ConfigRecord{.digest = 1}}});
    cfg[kHeaderBytes + 3] = 1;
    resign(cfg);
    expect(cfg, SyncError::kBadField, "config reserved");
    // Config chunks: each field in its range, the padding zero.
    const auto chunk_msg = [&](std::size_t at, std::uint8_t v) {
      auto msg = with({sample_header(MessageKind::kConfigPush), {config_chunks(5, "abc").at(0)}});
      msg[kHeaderBytes + at] = v;
      resign(msg);
      return msg;
    };
    expect(chunk_msg(1, 1), SyncError::kBadField, "chunk reserved");
    expect(chunk_msg(3, 33), SyncError::kBadField, "chunk longer than its data field");
    expect(chunk_msg(3, 4), SyncError::kBadField, "chunk beyond the text's total");
    expect(chunk_msg(3, 0), SyncError::kBadField, "an empty chunk of a text");
    expect(chunk_msg(7, 0), SyncError::kBadField, "chunk of push 0");
    expect(chunk_msg(11, 1), SyncError::kBadField, "chunk at offset 1 of 3 with 3 bytes");
    expect(chunk_msg(12, 2), SyncError::kBadField, "a text over the maximum size");
    expect(chunk_msg(16 + 5, 'x'), SyncError::kBadField, "bytes after the chunk's length");
    expect(with({sample_header(MessageKind::kConfig), {ConfigRecord{.push_id = 3}}}), SyncError::kBadField,
           "a config message naming a push");
    expect(with({sample_header(MessageKind::kConfigPush), {ConfigRecord{.digest = 1}}}), SyncError::kBadField,
           "a push's head without a push id");
    expect(with({sample_header(MessageKind::kConfigPush), {}}), SyncError::kBadField, "an empty push");
    expect(with({sample_header(MessageKind::kConfigPush), {config_chunks(5, "a").at(0), ConfigRecord{.push_id = 5}}}),
           SyncError::kBadField, "a push's head after a chunk");
    expect(with({sample_header(MessageKind::kData), {config_chunks(5, "a").at(0)}}), SyncError::kBadField,
           "a chunk in data");

    // Records that do not belong to the kind.
    expect(with({sample_header(MessageKind::kData), {}}), SyncError::kBadField, "data without records");
    expect(with({sample_header(MessageKind::kData), {ConfigRecord{.digest = 1}}}), SyncError::kBadField, "config in data");
    expect(with({sample_header(MessageKind::kAck), {sample_delete()}}), SyncError::kBadField, "ack with a record");
    ConnRecord upd = sample_conn();
    upd.type = RecordType::kUpdate;
    expect(with({sample_header(MessageKind::kResyncChunk), {upd}}), SyncError::kBadField, "update in a chunk");
    expect(with({sample_header(MessageKind::kResyncChunk), {sample_delete()}}), SyncError::kBadField, "delete in a chunk");
    expect(with({sample_header(MessageKind::kResyncRequest), {ResyncRecord{1, 5}}}), SyncError::kBadField, "request with entries");
    expect(with({sample_header(MessageKind::kResyncEnd), {ResyncRecord{1, 5}, ResyncRecord{1, 5}}}), SyncError::kBadField, "two ends");
    expect(with({sample_header(MessageKind::kConfig), {}}), SyncError::kBadField, "config without a record");

    m = good_msg;
    m.header.unit_id = 1;
    expect(with(m), SyncError::kOwnUnit, "our own unit id");
  }
  EXPECT_EQ(d.errors(), want);
  EXPECT_EQ(d.accepted(), 0u);
  EXPECT_FALSE(d.has_peer_epoch()) << "a refused message never sets the peer's epoch";
  EXPECT_STREQ(to_string(SyncError::kBadAuth), "bad_auth");
  EXPECT_STREQ(to_string(SyncError::kStaleEpoch), "stale_epoch");
}

TEST(SyncMessage, OldEpochsAreStale) {
  Decoder d(1, kKey);
  const auto in_epoch = [](std::uint64_t epoch, std::uint64_t seq) {
    Message m{sample_header(MessageKind::kData, seq), {sample_conn()}};
    m.header.epoch = epoch;
    return bytes(m);
  };
  Message out;
  Decoder::Info info;
  ASSERT_TRUE(d.decode(in_epoch(10, 5), out, nullptr, &info));
  EXPECT_TRUE(info.new_epoch);
  ASSERT_TRUE(d.decode(in_epoch(10, 4), out, nullptr, &info)) << "duplicates are the receive window's business";
  EXPECT_FALSE(info.new_epoch);
  ASSERT_TRUE(d.decode(in_epoch(20, 3), out, nullptr, &info));  // the peer restarted
  EXPECT_TRUE(info.new_epoch);
  EXPECT_EQ(d.peer_epoch(), 20u);
  EXPECT_EQ(refusal(d, in_epoch(10, 6)), SyncError::kStaleEpoch);
  // The last 16 epochs are remembered.
  for (std::uint64_t e = 100; e < 100 + Decoder::kRetiredEpochs - 1; ++e) ASSERT_TRUE(d.decode(in_epoch(e, 3), out));
  EXPECT_EQ(refusal(d, in_epoch(10, 7)), SyncError::kStaleEpoch);
  EXPECT_EQ(refusal(d, in_epoch(20, 7)), SyncError::kStaleEpoch);
  EXPECT_EQ(d.error_count(SyncError::kStaleEpoch), 3u);
}

// Seeded and deterministic: every message is a mutation of a valid one of a random kind (bit
// flips, byte overwrites, truncation, extension, a record count changed, or random bytes), sent
// as is (must be refused: it is a forgery) or signed again with the key (a peer with the key
// and a bug: refused with a reason, or accepted, and then its decoded form encodes to the
// very same bytes). Nothing may crash or read out of bounds (run under ASan).
TEST(SyncMessage, FuzzMutatedMessages) {
  std::mt19937_64 rng(20240611);
  const auto kinds = every_kind();
  std::vector<std::vector<std::uint8_t>> seeds;
  for (const Message& m : kinds) seeds.push_back(bytes(m));
  {  // and a full batch
    Message full{sample_header(), {}};
    for (std::uint32_t i = 0; i < 27; ++i) full.records.push_back(sample_conn(i));
    seeds.push_back(bytes(full));
  }
  Decoder shared(1, kKey);  // epochs come and go: exercises the retired list too
  std::uint64_t refused = 0, accepted = 0;
  std::array<std::uint64_t, kSyncErrorCount> reasons{};
  constexpr int kRounds = 60000;
  Message out;
  for (int i = 0; i < kRounds; ++i) {
    auto m = seeds[rng() % seeds.size()];
    const auto byte = [&] { return static_cast<std::uint8_t>(rng()); };
    switch (rng() % 8) {
      case 0:
        for (int k = 0, n = 1 + static_cast<int>(rng() % 4); k < n; ++k) m[rng() % m.size()] ^= 1u << (rng() % 8);
        break;
      case 1:
        for (int k = 0, n = 1 + static_cast<int>(rng() % 4); k < n; ++k) m[rng() % m.size()] = byte();
        break;
      case 2: m.resize(rng() % m.size()); break;
      case 3:
        for (int k = 0, n = 1 + static_cast<int>(rng() % 64); k < n; ++k) m.push_back(byte());
        break;
      case 4: m[56] = byte(); m[57] = byte(); break;  // record count
      case 5: m[kHeaderBytes < m.size() ? kHeaderBytes : 0] = byte(); break;  // a record type
      case 6: {  // a header field to a boundary value
        constexpr std::size_t kAt[] = {5, 6, 7, 15, 23, 31, 39, 47, 55, 57, 63};
        constexpr std::uint8_t kValue[] = {0, 1, 2, 0xff};
        m[kAt[rng() % std::size(kAt)]] = kValue[rng() % std::size(kValue)];
        break;
      }
      default:
        m.resize(rng() % 1500);
        for (auto& b : m) b = byte();
        if (m.size() >= 5 && rng() % 2) {  // past magic and version, to reach the MAC check
          m[0] = 'T', m[1] = 'D', m[2] = 'S', m[3] = 'Y', m[4] = 1;
        }
        break;
    }
    const bool signed_again = rng() % 2 == 0;
    if (signed_again) resign(m);
    SyncError e = SyncError::kCount;
    // The decoder gets an exact-size heap copy, so ASan sees any read past its end.
    const std::vector<std::uint8_t> exact(m.begin(), m.end());
    if (shared.decode(exact, out, &e)) {
      ++accepted;
      ASSERT_TRUE(signed_again || std::find(seeds.begin(), seeds.end(), exact) != seeds.end())
          << "round " << i << ": an unsigned mutation was accepted";
      std::vector<std::uint8_t> again;
      ASSERT_TRUE(encode(out, kKey, again));
      ASSERT_EQ(again, exact) << "round " << i << ": accepted but not canonical";
    } else {
      ++refused;
      ASSERT_NE(e, SyncError::kCount);
      ++reasons[idx(e)];
    }
  }
  EXPECT_EQ(refused + accepted, static_cast<std::uint64_t>(kRounds));
  EXPECT_EQ(shared.errors(), reasons);
  // Every class of refusal is reached by the mutations.
  for (SyncError e : {SyncError::kTooShort, SyncError::kBadMagic, SyncError::kBadVersion, SyncError::kBadLength,
                      SyncError::kBadAuth, SyncError::kBadField, SyncError::kOwnUnit, SyncError::kStaleEpoch})
    EXPECT_GT(reasons[idx(e)], 0u) << to_string(e);
  EXPECT_GT(accepted, 0u);
}

}  // namespace

// The MAC itself: RFC 4231's test cases 1 and 2, alternated, so that the kept keyed context is
// re-keyed and reused in turn (hmac.hpp).
TEST(HmacSha256, Rfc4231VectorsWithTheKeptContextReKeyed) {
  const std::vector<std::uint8_t> key1(20, 0x0b);
  const std::string data1 = "Hi There";
  const std::string key2 = "Jefe";
  const std::string data2 = "what do ya want for nothing?";
  const std::string want1 = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
  const std::string want2 = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";
  const auto hex = [](const std::uint8_t* p) {
    std::string s;
    char b[3];
    for (std::size_t i = 0; i < tandem::kHmacSha256Bytes; ++i) {
      std::snprintf(b, sizeof b, "%02x", p[i]);
      s += b;
    }
    return s;
  };
  const auto bytes = [](const std::string& s) {
    return std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
  };
  std::uint8_t out[tandem::kHmacSha256Bytes];
  for (int round = 0; round < 3; ++round) {
    tandem::hmac_sha256(key1, bytes(data1), out);
    EXPECT_EQ(hex(out), want1) << round;
    tandem::hmac_sha256(key1, bytes(data1), out);  // same key: the context only reset
    EXPECT_EQ(hex(out), want1) << round;
    tandem::hmac_sha256(bytes(key2), bytes(data2), out);
    EXPECT_EQ(hex(out), want2) << round;
  }
}
