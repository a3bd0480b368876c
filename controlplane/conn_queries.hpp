// Connection queries run inside the workers (dataplane/conntrack/conn_query.hpp), for the ctl
// commands and the health checks' reset policy: one query per worker, posted, waited for.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "dataplane/conntrack/conn_query.hpp"

namespace tandem {

struct Runtime;

struct QueryResult {
  std::vector<std::unique_ptr<conntrack::ConnQuery>> per_worker;
  bool timed_out = false;
};

// Runs one query per worker, each inside its worker, and waits for all of them (5 s at most; a
// query a stuck worker may still touch is left to it, never freed).
QueryResult run_query(Runtime& rt, conntrack::ConnQueryOp op, const conntrack::ConnFilter& filter, std::size_t limit);

}  // namespace tandem
