// Seqlocked<T> (dataplane/seqlock.hpp): generations, and a reader racing a writer never gets a
// torn value when read() says it got one.
#include "dataplane/seqlock.hpp"

#include <gtest/gtest.h>

#include <array>
#include <atomic>
#include <chrono>
#include <thread>

namespace {

using tandem::dpdk::Seqlocked;

// 64 bytes that must all be equal: a torn copy mixes two writes.
struct Block {
  std::array<std::uint8_t, 64> b{};
};

Block filled(std::uint8_t v) {
  Block x;
  x.b.fill(v);
  return x;
}

}  // namespace

TEST(Seqlock, NothingToReadBeforeTheFirstWrite) {
  Seqlocked<Block> s;
  EXPECT_EQ(s.generation(), 0u);
  Block out = filled(0x5a);
  EXPECT_EQ(s.read(out), 0u);
  EXPECT_EQ(out.b, filled(0x5a).b) << "nothing was copied";
}

TEST(Seqlock, EachWriteIsANewEvenGeneration) {
  Seqlocked<Block> s;
  std::uint32_t last = 0;
  for (int i = 1; i <= 1000; ++i) {
    s.write(filled(static_cast<std::uint8_t>(i)));
    const std::uint32_t g = s.generation();
    EXPECT_NE(g, 0u);
    EXPECT_EQ(g % 2, 0u) << i;
    EXPECT_GT(g, last) << i;
    Block out;
    EXPECT_EQ(s.read(out), g) << "read returns the generation it copied";
    EXPECT_EQ(out.b, filled(static_cast<std::uint8_t>(i)).b);
    last = g;
  }
}

TEST(Seqlock, WorksForAScalarToo) {
  Seqlocked<std::uint64_t> s;
  s.write(42);
  std::uint64_t v = 0;
  EXPECT_NE(s.read(v), 0u);
  EXPECT_EQ(v, 42u);
}

// A writer writes blocks whose 64 bytes all hold the low byte of a counter; a reader reads as
// fast as it can for about a second. Every successful read is one write's block whole, its
// generations never go back, and the reader does succeed.
TEST(Seqlock, AReaderRacingAWriterNeverGetsATornValue) {
  Seqlocked<Block> s;
  s.write(filled(0));
  std::atomic<bool> stop{false};
  std::atomic<std::uint64_t> writes{0};
  std::thread writer([&] {
    std::uint32_t i = 0;
    while (!stop.load(std::memory_order_relaxed)) {
      s.write(filled(static_cast<std::uint8_t>(++i)));
      writes.store(i, std::memory_order_relaxed);
    }
  });

  std::uint64_t ok = 0, raced = 0, torn = 0, backwards = 0;
  std::uint32_t last = 0;
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(1000);
  while (std::chrono::steady_clock::now() < end) {
    for (int k = 0; k < 1000; ++k) {
      Block out;
      const std::uint32_t g = s.read(out);
      if (g == 0) {
        ++raced;
        continue;
      }
      ++ok;
      if (g < last) ++backwards;
      last = g;
      for (const std::uint8_t b : out.b)
        if (b != out.b[0]) {
          ++torn;
          break;
        }
      // The generation says which write it was: the first is 2 (filled(0)), then 2 per write.
      if (out.b[0] != static_cast<std::uint8_t>(g / 2 - 1)) ++torn;
    }
  }
  stop = true;
  writer.join();
  EXPECT_GT(ok, 0u) << "the reader never got a value (" << raced << " raced reads)";
  EXPECT_GT(writes.load(), 0u);
  EXPECT_EQ(torn, 0u) << ok << " reads, " << raced << " raced, " << writes.load() << " writes";
  EXPECT_EQ(backwards, 0u);
  RecordProperty("reads_ok", std::to_string(ok));
  RecordProperty("reads_raced", std::to_string(raced));
}
