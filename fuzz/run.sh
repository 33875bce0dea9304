#!/usr/bin/env bash
# Runs every fuzz target for a bounded time (default 60 s each) from its
# seed corpus, then replays every crasher kept under artifacts/ (none
# expected). Needs the nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
# Usage: fuzz/run.sh [seconds per target]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
for target in expr_compile_eval trigger_request node_protocol page_token; do
  mkdir -p "fuzz/corpus/$target"
  echo "== $target ($seconds s)"
  cargo +nightly fuzz run -O "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 2>&1 \
    | grep -E "^(#[0-9]+ +DONE|Done|stat::number_of_executed_units|stat::peak_rss_mb|==.*ERROR|SUMMARY)" || true
done
