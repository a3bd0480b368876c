#include "dataplane/huge_page_memory.hpp"

#include <sys/mman.h>

#include <cstdint>
#include <new>

namespace tandem {
namespace {

std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }

}  // namespace

void* HugePageMemory::do_allocate(std::size_t bytes, std::size_t alignment) {
  if (alignment > kHugePage) throw std::bad_alloc();
  const std::size_t len = round_up(bytes == 0 ? 1 : bytes, kHugePage);
  // Map one huge page more than needed and trim, so the mapping starts on a 2 MiB boundary
  // (THP only backs aligned 2 MiB ranges).
  void* raw = mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const auto start = reinterpret_cast<std::uintptr_t>(raw);
  const std::uintptr_t aligned = round_up(start, kHugePage);
  if (aligned != start) munmap(raw, aligned - start);
  const std::uintptr_t end = start + len + kHugePage;
  if (end != aligned + len) munmap(reinterpret_cast<void*>(aligned + len), end - (aligned + len));
  void* p = reinterpret_cast<void*>(aligned);
  madvise(p, len, MADV_HUGEPAGE);  // advice: failure (THP disabled) only costs the speed-up
  return p;
}

void HugePageMemory::do_deallocate(void* p, std::size_t bytes, std::size_t /*alignment*/) {
  munmap(p, round_up(bytes == 0 ? 1 : bytes, kHugePage));
}

HugePageMemory& huge_page_memory() {
  static HugePageMemory instance;
  return instance;
}

}  // namespace tandem
