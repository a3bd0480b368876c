#include "controlplane/conn_queries.hpp"

#include <chrono>
#include <thread>

#include <spdlog/spdlog.h>

#include "controlplane/runtime.hpp"

namespace tandem {
namespace {

constexpr auto kQueryTimeout = std::chrono::seconds(5);

}  // namespace

QueryResult run_query(Runtime& rt, conntrack::ConnQueryOp op, const conntrack::ConnFilter& filter, std::size_t limit) {
  QueryResult r;
  for (auto& w : rt.workers) {
    auto q = std::make_unique<conntrack::ConnQuery>();
    q->op = op;
    q->filter = filter;
    q->limit = limit;
    if (op == conntrack::ConnQueryOp::kList) q->rows.reserve(limit);
    // One query per worker at a time: another client's may still run.
    const auto deadline = std::chrono::steady_clock::now() + kQueryTimeout;
    while (!w->post_conn_query(q.get())) {
      if (std::chrono::steady_clock::now() > deadline) {
        r.timed_out = true;
        q->done.store(true);  // never posted: nothing to wait for
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    r.per_worker.push_back(std::move(q));
  }
  const auto deadline = std::chrono::steady_clock::now() + kQueryTimeout;
  for (std::size_t i = 0; i < r.per_worker.size(); ++i) {
    auto& q = r.per_worker[i];
    while (!q->done.load(std::memory_order_acquire)) {
      if (std::chrono::steady_clock::now() > deadline) {
        r.timed_out = true;
        if (rt.workers[i]->cancel_conn_query(q.get())) break;
        // Mid-slice on a worker that does not come back: it may still write to the query.
        spdlog::error("worker {} did not finish a connection query; leaving it to the worker", i);
        (void)q.release();
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
  }
  std::erase(r.per_worker, nullptr);
  return r;
}

}  // namespace tandem
