// Config sync's pure parts: which unit's services are newer (version vectors), what a change,
// an announcement, a push and an operator's "mine win" do to them, and a pushed text put back
// together from its chunks through the real codec and reliable endpoints.
#include "controlplane/sync/config_version.hpp"

#include <gtest/gtest.h>

#include <string>

#include "controlplane/sync/reliable.hpp"

using namespace tandem::sync;

namespace {

// What one unit sends: its version as a config record.
ConfigRecord announce(const ConfigVersions& u) { return as_sent(u.mine()); }

// Two units exchanging announcements.
void exchange(ConfigVersions& a, ConfigVersions& b) {
  const ConfigRecord ra = announce(a), rb = announce(b);
  a.peer_announced(rb);
  b.peer_announced(ra);
}

}  // namespace

TEST(ConfigVersion, CompareByVersionVector) {
  const ConfigVersion base{.digest = 1, .own = 2, .peer = 3};
  EXPECT_EQ(compare(base, {.digest = 1, .own = 9, .peer = 9}), ConfigRelation::kSame) << "equal digests";
  EXPECT_EQ(compare(base, {.digest = 2, .own = 1, .peer = 3}), ConfigRelation::kNewer);
  EXPECT_EQ(compare(base, {.digest = 2, .own = 2, .peer = 4}), ConfigRelation::kOlder);
  EXPECT_EQ(compare(base, {.digest = 2, .own = 1, .peer = 4}), ConfigRelation::kConflict) << "each has one the other lacks";
  EXPECT_EQ(compare(base, {.digest = 2, .own = 2, .peer = 3}), ConfigRelation::kConflict) << "same counters, other text";
  EXPECT_EQ(as_received(as_sent(base)), (ConfigVersion{.digest = 1, .own = 3, .peer = 2})) << "the peer counts the other way";
}

TEST(ConfigVersion, AChangeOnOneUnitMakesItNewerAndThePushMakesThemSame) {
  ConfigVersions a, b;
  a.services_changed(100);
  b.services_changed(100);  // both start with the same file
  exchange(a, b);
  EXPECT_EQ(a.relation(), ConfigRelation::kSame);
  EXPECT_EQ(b.relation(), ConfigRelation::kSame);

  ASSERT_TRUE(a.services_changed(200));  // tandemctl backend add on A
  exchange(a, b);
  EXPECT_EQ(a.relation(), ConfigRelation::kNewer);
  EXPECT_EQ(b.relation(), ConfigRelation::kOlder);

  const ConfigRecord push = as_sent(a.mine(), 7);
  ASSERT_TRUE(b.should_apply(push));
  b.adopting(push);
  ASSERT_TRUE(b.services_changed(200));  // the push applied: not a change made on B
  EXPECT_EQ(b.mine(), as_received(push));
  exchange(a, b);
  EXPECT_EQ(a.relation(), ConfigRelation::kSame);
  EXPECT_EQ(b.relation(), ConfigRelation::kSame);
  EXPECT_FALSE(a.should_apply(as_sent(b.mine(), 8))) << "nothing newer to take back";

  // Then B changes: B is newer, A takes it.
  ASSERT_TRUE(b.services_changed(300));
  exchange(a, b);
  EXPECT_EQ(b.relation(), ConfigRelation::kNewer);
  EXPECT_TRUE(a.should_apply(as_sent(b.mine(), 9)));
}

TEST(ConfigVersion, ConcurrentChangesConflictAndAreNeverApplied) {
  ConfigVersions a, b;
  a.services_changed(100);
  b.services_changed(100);
  exchange(a, b);
  a.services_changed(200);
  b.services_changed(300);
  exchange(a, b);
  EXPECT_EQ(a.relation(), ConfigRelation::kConflict);
  EXPECT_EQ(b.relation(), ConfigRelation::kConflict);
  EXPECT_FALSE(a.should_apply(as_sent(b.mine(), 1)));
  EXPECT_FALSE(b.should_apply(as_sent(a.mine(), 1)));

  // The operator picks A's: A becomes newer than everything B has, B takes it.
  ASSERT_TRUE(a.take_precedence());
  exchange(a, b);
  EXPECT_EQ(a.relation(), ConfigRelation::kNewer);
  EXPECT_TRUE(b.should_apply(as_sent(a.mine(), 2)));

  // Or the operator makes them equal by hand: same digest, counters merge, in sync.
  ConfigVersions c, d;
  c.services_changed(100);
  d.services_changed(100);
  exchange(c, d);
  c.services_changed(200);
  d.services_changed(300);
  exchange(c, d);
  d.services_changed(200);
  exchange(c, d);
  EXPECT_EQ(c.relation(), ConfigRelation::kSame);
  EXPECT_EQ(d.relation(), ConfigRelation::kSame);
  EXPECT_EQ(as_received(as_sent(c.mine())), d.mine()) << "both merged to the same counters";
}

TEST(ConfigVersion, TheServicesAUnitStartsWithAreNotAChange) {
  ConfigVersions a;
  EXPECT_TRUE(a.services_changed(100));
  EXPECT_EQ(a.mine(), (ConfigVersion{.digest = 100, .own = 0, .peer = 0}));
  EXPECT_TRUE(a.services_changed(200));
  EXPECT_EQ(a.mine().own, 1u);
  EXPECT_FALSE(a.services_changed(200)) << "the same services: no change";
}

TEST(ConfigVersion, TwoFreshUnitsWithDifferentFilesConflict) {
  ConfigVersions a, b;
  a.services_changed(100);
  b.services_changed(200);
  exchange(a, b);
  EXPECT_EQ(a.relation(), ConfigRelation::kConflict) << "neither is known to be newer: never guess";
  EXPECT_FALSE(ConfigVersions{}.take_precedence()) << "nothing known of the peer";
}

TEST(ConfigVersion, ARestartedUnitTakesTheOthersChangesAndItsOwnNextChangeIsNewer) {
  ConfigVersions a, b;
  a.services_changed(100);
  b.services_changed(100);
  exchange(a, b);
  a.services_changed(200);
  b.adopting(as_sent(a.mine(), 1));
  b.services_changed(200);
  b.services_changed(300);  // B changes twice: A takes both
  a.adopting(as_sent(b.mine(), 2));
  a.services_changed(300);
  exchange(a, b);
  ASSERT_EQ(a.relation(), ConfigRelation::kSame);

  // B restarts from its (stale) file: no counters. A's version covers everything: A is newer.
  ConfigVersions b2;
  b2.services_changed(100);
  a.peer_restarted();
  exchange(a, b2);
  EXPECT_EQ(a.relation(), ConfigRelation::kNewer);
  EXPECT_TRUE(b2.should_apply(as_sent(a.mine(), 3)));

  // Had B2 changed something itself first, its change counts above the ones A knows of B:
  // concurrent with A's, a conflict, not an older version silently replaced.
  ConfigVersions b3;
  b3.services_changed(100);
  exchange(a, b3);
  b3.services_changed(400);
  exchange(a, b3);
  EXPECT_EQ(b3.relation(), ConfigRelation::kConflict);
}

TEST(ConfigVersion, AFailedAdoptionIsNotTakenForTheNextChange) {
  ConfigVersions b;
  b.services_changed(100);
  b.adopting(ConfigRecord{.push_id = 1, .digest = 200, .own = 5, .peer = 0});
  b.adoption_failed();
  ASSERT_TRUE(b.services_changed(300));
  EXPECT_EQ(b.mine().own, 1u) << "a change of B's own (the services it started with are none)";
}

TEST(ConfigAssembler, PutsAPushBackTogetherAndRefusesWhatDoesNotContinueIt) {
  const std::string text(100, 'a');
  const auto chunks = config_chunks(4, text);
  ASSERT_EQ(chunks.size(), 4u);  // 32 + 32 + 32 + 4
  ConfigAssembler as;
  const char* why = nullptr;
  EXPECT_EQ(as.add(chunks[0], &why), ConfigAssembler::Step::kError) << "no push begun";
  EXPECT_FALSE(as.begin(ConfigRecord{.push_id = 4, .digest = config_digest_of(text)}));
  for (std::size_t i = 0; i + 1 < chunks.size(); ++i) EXPECT_EQ(as.add(chunks[i], &why), ConfigAssembler::Step::kMore);
  EXPECT_EQ(as.add(chunks.back(), &why), ConfigAssembler::Step::kComplete);
  EXPECT_EQ(as.take_text(), text);

  as.begin(ConfigRecord{.push_id = 4, .digest = config_digest_of(text)});
  EXPECT_EQ(as.add(chunks[1], &why), ConfigAssembler::Step::kError);
  EXPECT_STREQ(why, "a chunk out of place");
  as.begin(ConfigRecord{.push_id = 5, .digest = config_digest_of(text)});
  EXPECT_EQ(as.add(chunks[0], &why), ConfigAssembler::Step::kError);
  EXPECT_STREQ(why, "a chunk of another push");
  as.begin(ConfigRecord{.push_id = 4, .digest = config_digest_of("other")});
  for (std::size_t i = 0; i + 1 < chunks.size(); ++i) as.add(chunks[i], &why);
  EXPECT_EQ(as.add(chunks.back(), &why), ConfigAssembler::Step::kError);
  EXPECT_STREQ(why, "the text does not match the push's digest");
  EXPECT_TRUE(as.begin(ConfigRecord{.push_id = 6, .digest = 1}) == false);
  as.add(config_chunks(6, text)[0], &why);
  EXPECT_TRUE(as.begin(ConfigRecord{.push_id = 7, .digest = 1})) << "an unfinished push abandoned";

  // An empty text (no services) is one empty chunk.
  const auto empty = config_chunks(8, "");
  ASSERT_EQ(empty.size(), 1u);
  as.begin(ConfigRecord{.push_id = 8, .digest = config_digest_of("")});
  EXPECT_EQ(as.add(empty[0], &why), ConfigAssembler::Step::kComplete);
}

// A push of a text spanning many messages, through two real endpoints with every third
// datagram lost: the text arrives whole and in order.
TEST(ConfigAssembler, APushCrossesALossyLinkWhole) {
  const std::vector<std::uint8_t> key(32, 7);
  Endpoint a(EndpointConfig{.unit_id = 1, .key = key, .epoch = 11, .budget = 400});
  Endpoint b(EndpointConfig{.unit_id = 2, .key = key, .epoch = 22, .budget = 400});
  std::string text;
  for (int i = 0; i < 200; ++i) text += "[[service]]\nname = \"svc" + std::to_string(i) + "\"\n";
  const ConfigRecord head{.push_id = 3, .digest = config_digest_of(text), .own = 1, .peer = 0};
  ASSERT_EQ(a.add(MessageKind::kConfigPush, head, 0), AddStatus::kQueued);
  for (const auto& c : config_chunks(3, text)) ASSERT_EQ(a.add(MessageKind::kConfigPush, c, 0), AddStatus::kQueued);
  a.flush();
  ConfigAssembler as;
  bool complete = false;
  std::uint64_t dropped = 0;
  std::vector<std::span<const std::uint8_t>> out;
  for (std::uint64_t now = 0; now < 5000 && !complete; now += 5) {
    out.clear();
    a.poll(now, out);
    for (const auto& d : out) {
      if (++dropped % 3 == 0) continue;
      b.receive(d, now);
    }
    while (const Message* m = b.next_delivery()) {
      ASSERT_EQ(m->header.kind, MessageKind::kConfigPush);
      for (const Record& r : m->records) {
        if (const auto* h = std::get_if<ConfigRecord>(&r)) {
          as.begin(*h);
        } else {
          const char* why = nullptr;
          const auto step = as.add(std::get<ConfigChunk>(r), &why);
          ASSERT_NE(step, ConfigAssembler::Step::kError) << why;
          complete = step == ConfigAssembler::Step::kComplete;
        }
      }
    }
    out.clear();
    b.poll(now, out);
    for (const auto& d : out) a.receive(d, now);
  }
  ASSERT_TRUE(complete);
  EXPECT_EQ(as.head(), head);
  EXPECT_EQ(as.take_text(), text);
}
