// A backend's rise/fall state (controlplane/health/health_state.*): the rules one by one, then
// every sequence of up to 12 outcomes for rise and fall of 1..4 against the rules as stated.
#include "controlplane/health/health_state.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using tandem::health::Health;
using tandem::health::HealthState;

TEST(HealthState, StartsUnknownWhichCountsAsUp) {
  const HealthState s(2, 3, 1000);
  EXPECT_EQ(s.health(), Health::kUnknown);
  EXPECT_TRUE(s.up());
  EXPECT_EQ(s.checks(), 0u);
  EXPECT_EQ(s.failures(), 0u);
  EXPECT_EQ(s.last_change_ms(), 1000u);
  EXPECT_FALSE(s.last_check_ms());
  EXPECT_EQ(s.last_error(), "");
}

TEST(HealthState, TheFirstSuccessConfirmsAnUnknownBackendWithoutAChange) {
  HealthState s(2, 3, 0);
  EXPECT_FALSE(s.record(true, {}, 10, 3)) << "unknown already counted as up";
  EXPECT_EQ(s.health(), Health::kUp);
  EXPECT_EQ(s.last_change_ms(), 10u) << "the state did change, from unknown to up";
  EXPECT_EQ(s.last_check_ms(), 10u);
  EXPECT_EQ(s.last_duration_ms(), 3u);
}

TEST(HealthState, FailuresFromTheStartCountTowardFall) {
  HealthState s(2, 3, 0);
  EXPECT_FALSE(s.record(false, "connection refused", 10, 0));
  EXPECT_FALSE(s.record(false, "connection refused", 20, 0));
  EXPECT_EQ(s.health(), Health::kUnknown);
  EXPECT_TRUE(s.up());
  EXPECT_TRUE(s.record(false, "timeout after 5 ms while connecting", 30, 5));
  EXPECT_EQ(s.health(), Health::kDown);
  EXPECT_FALSE(s.up());
  EXPECT_EQ(s.consecutive_fail(), 3u);
  EXPECT_EQ(s.last_error(), "timeout after 5 ms while connecting");
  EXPECT_EQ(s.last_change_ms(), 30u);
}

TEST(HealthState, UpGoesDownOnlyAfterFallFailuresInARow) {
  HealthState s(2, 3, 0);
  s.record(true, {}, 1, 0);
  EXPECT_FALSE(s.record(false, "a", 2, 0));
  EXPECT_FALSE(s.record(false, "b", 3, 0));
  EXPECT_FALSE(s.record(true, {}, 4, 0)) << "a success resets the failure run";
  EXPECT_EQ(s.consecutive_fail(), 0u);
  EXPECT_FALSE(s.record(false, "c", 5, 0));
  EXPECT_FALSE(s.record(false, "d", 6, 0));
  EXPECT_EQ(s.health(), Health::kUp);
  EXPECT_TRUE(s.record(false, "e", 7, 0));
  EXPECT_EQ(s.health(), Health::kDown);
  EXPECT_FALSE(s.record(false, "f", 8, 0)) << "already down";
  EXPECT_EQ(s.last_change_ms(), 7u);
}

TEST(HealthState, DownComesBackOnlyAfterRiseSuccessesInARow) {
  HealthState s(3, 1, 0);
  EXPECT_TRUE(s.record(false, "connection refused", 1, 0));
  EXPECT_FALSE(s.record(true, {}, 2, 0));
  EXPECT_FALSE(s.record(true, {}, 3, 0));
  EXPECT_FALSE(s.record(false, "status 503, expected 200", 4, 0)) << "a failure resets the success run";
  EXPECT_FALSE(s.record(true, {}, 5, 0));
  EXPECT_FALSE(s.record(true, {}, 6, 0));
  EXPECT_EQ(s.health(), Health::kDown);
  EXPECT_TRUE(s.record(true, {}, 7, 0));
  EXPECT_EQ(s.health(), Health::kUp);
  EXPECT_EQ(s.consecutive_ok(), 3u);
  EXPECT_EQ(s.last_change_ms(), 7u);
  EXPECT_EQ(s.last_error(), "status 503, expected 200") << "kept after the recovery";
}

TEST(HealthState, FlappingShorterThanRiseAndFallChangesNothing) {
  HealthState up(2, 2, 0), down(2, 2, 0);
  up.record(true, {}, 0, 0);
  down.record(false, "x", 0, 0);
  down.record(false, "x", 0, 0);
  ASSERT_EQ(down.health(), Health::kDown);
  for (std::uint64_t t = 1; t <= 200; ++t) {
    const bool ok = t % 2 == 0;
    EXPECT_FALSE(up.record(ok, "x", t, 0)) << t;
    EXPECT_FALSE(down.record(ok, "x", t, 0)) << t;
  }
  EXPECT_EQ(up.health(), Health::kUp);
  EXPECT_EQ(down.health(), Health::kDown);
  EXPECT_EQ(up.checks(), 201u);
  EXPECT_EQ(up.failures(), 100u);
}

TEST(HealthState, RiseAndFallOfZeroAreTakenAsOne) {
  HealthState s(0, 0, 0);
  EXPECT_EQ(s.rise(), 1u);
  EXPECT_EQ(s.fall(), 1u);
  EXPECT_TRUE(s.record(false, "x", 1, 0));
  EXPECT_TRUE(s.record(true, {}, 2, 0));
}

// The rules as the header states them, evaluated on the whole history rather than step by
// step: down once the last `fall` outcomes were failures, until the last `rise` were successes;
// otherwise up once anything succeeded, else unknown.
Health expected_health(const std::vector<bool>& outcomes, std::uint32_t rise, std::uint32_t fall) {
  const auto run_of = [&](std::size_t end, bool ok) {  // outcomes[..end] ending in a run of `ok`
    std::size_t n = 0;
    while (n < end && outcomes[end - 1 - n] == ok) ++n;
    return n;
  };
  bool down = false;
  bool any_success = false;
  for (std::size_t i = 1; i <= outcomes.size(); ++i) {
    any_success = any_success || outcomes[i - 1];
    if (!down && run_of(i, false) >= fall) down = true;
    else if (down && run_of(i, true) >= rise) down = false;
  }
  if (down) return Health::kDown;
  return any_success ? Health::kUp : Health::kUnknown;
}

TEST(HealthState, EverySequenceUpToTwelveChecksFollowsTheRules) {
  constexpr std::size_t kLength = 12;
  for (std::uint32_t rise = 1; rise <= 4; ++rise) {
    for (std::uint32_t fall = 1; fall <= 4; ++fall) {
      for (std::uint32_t bits = 0; bits < (1u << kLength); ++bits) {
        HealthState s(rise, fall, 0);
        std::vector<bool> outcomes;
        std::uint64_t failures = 0;
        for (std::size_t i = 0; i < kLength; ++i) {
          const bool ok = (bits >> i) & 1u;
          outcomes.push_back(ok);
          failures += ok ? 0 : 1;
          const bool was_up = s.up();
          const bool changed = s.record(ok, ok ? "" : "fail " + std::to_string(i), i + 1, 0);
          const Health want = expected_health(outcomes, rise, fall);
          ASSERT_EQ(s.health(), want) << "rise " << rise << " fall " << fall << " bits " << bits << " step " << i;
          ASSERT_EQ(changed, was_up != (want != Health::kDown));
          std::uint32_t run = 0;
          while (run <= i && outcomes[i - run] == ok) ++run;
          ASSERT_EQ(ok ? s.consecutive_ok() : s.consecutive_fail(), run);
          ASSERT_EQ(ok ? s.consecutive_fail() : s.consecutive_ok(), 0u);
          ASSERT_EQ(s.checks(), i + 1);
          ASSERT_EQ(s.failures(), failures);
        }
      }
    }
  }
}

}  // namespace
