// Memory for large, long-lived tables (the connection table): anonymous mappings aligned to
// 2 MiB and advised MADV_HUGEPAGE, so the kernel backs them with transparent huge pages where it
// can. A lookup in a table of tens of MiB is a random access; on 4 KiB pages each one also
// misses the TLB (a few thousand entries cover a few MiB) and pays a page walk on top of the
// cache miss. Works without hugetlbfs or DPDK hugepages (labs run with --no-huge); where THP is
// off ("never") the memory is ordinary pages and nothing else changes.
#pragma once

#include <cstddef>
#include <memory_resource>

namespace tandem {

class HugePageMemory final : public std::pmr::memory_resource {
 public:
  static constexpr std::size_t kHugePage = std::size_t{2} << 20;

 private:
  void* do_allocate(std::size_t bytes, std::size_t alignment) override;
  void do_deallocate(void* p, std::size_t bytes, std::size_t alignment) override;
  bool do_is_equal(const std::pmr::memory_resource& other) const noexcept override { return this == &other; }
};

// The process-wide instance (stateless: every allocation is its own mapping).
HugePageMemory& huge_page_memory();

}  // namespace tandem
