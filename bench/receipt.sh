#!/usr/bin/env bash
# The receipt benchmark of issue 14, in one run (README "Benchmark"):
#   1. wharf SOAP receipt on PostgreSQL (worker off) at 1/8/32 senders, driven by wrk with
#      bench/receipt.lua (a unique messageSeqId per request, 10-SKU Magento 1 messages);
#   2. pgbench's single-row INSERT at the same client counts on the same server, and the ratios;
#   3. SQLite: receipt at 32 senders against a bare single-row INSERT+COMMIT loop on the same file;
#   4. freshness (examples/freshness.rs) on SQLite, PostgreSQL and PostgreSQL --split;
#   5. sustained: receipt at half the measured maximum with the worker in the same process: the
#      oldest queued request's age, nothing lost, the server's peak RSS.
# It installs nothing. It needs wrk (Debian: wrk), pgbench and psql (Debian: postgresql-contrib,
# whose postgresql-15 ships pgbench, and postgresql-client), curl, and cargo unless --no-build.
#
#   bench/receipt.sh                      # build, then everything (about 4½ minutes)
#   bench/receipt.sh --secs 5 --skip sustained,freshness
#   bench/receipt.sh --wharf /tmp/wharf-before   # another build of wharf, same benchmark
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$REPO/target}
LUA=$REPO/bench/receipt.lua

WHARF=""
PG_ADMIN=postgres://postgres:postgres@127.0.0.1:5432/postgres
SECS=20
WARMUP_SECS=3
SENDERS=(1 8 32)
SQLITE_SENDERS=32
SUSTAINED_SECS=60
SUSTAINED_CONNS=16
SUSTAINED_RATE=""
FRESHNESS_MESSAGES=200
PGBENCH_MODE=simple
SKIP=","
BUILD=1
KEEP=0

USER_NAME=bench
PASSWORD="receipt bench password"
SOAP_PATH=/api/v2_soap/index/

usage() {
  cat <<EOF
usage: bench/receipt.sh [options]

  --wharf PATH            benchmark this wharf binary (default: build target/release/wharf);
                          the examples it needs (freshness, bare_commit) are still built here
  --no-build              build nothing: use target/release/{wharf,examples/*} as they are
  --postgres-url URL      admin URL of the PostgreSQL server; a database wharf_bench_<random>
                          is created there and dropped at the end
                          (default $PG_ADMIN)
  --secs N                seconds of each receipt and pgbench level (default $SECS)
  --warmup-secs N         receipt before each measured series, not counted (default $WARMUP_SECS)
  --senders LIST          PostgreSQL concurrency levels, comma-separated (default 1,8,32)
  --sqlite-senders N      SQLite receipt concurrency (default $SQLITE_SENDERS)
  --pgbench-mode MODE     pgbench -M: simple, extended or prepared (default $PGBENCH_MODE)
  --freshness-messages N  updates of each freshness run (default $FRESHNESS_MESSAGES)
  --sustained-secs N      length of the sustained run (default $SUSTAINED_SECS)
  --sustained-conns N     wrk connections of the sustained run (default $SUSTAINED_CONNS)
  --sustained-rate R      msg/s of the sustained run (default: half the highest PostgreSQL
                          receipt rate measured in this run)
  --skip LIST             stages to leave out, comma-separated: postgres, sqlite, freshness,
                          sustained
  --keep                  keep the temporary directory (logs, SQLite file) and databases
  -h, --help              this text
EOF
}

log() { printf '%s\n' "$*" >&2; }
die() {
  log "receipt.sh: $*"
  exit 1
}

# ---------------------------------------------------------------------------------------------
# Options

parse_args() {
  while (($#)); do
    case $1 in
      --wharf) WHARF=$2; shift ;;
      --no-build) BUILD=0 ;;
      --postgres-url) PG_ADMIN=$2; shift ;;
      --secs) SECS=$2; shift ;;
      --warmup-secs) WARMUP_SECS=$2; shift ;;
      --senders) IFS=, read -r -a SENDERS <<<"$2"; shift ;;
      --sqlite-senders) SQLITE_SENDERS=$2; shift ;;
      --pgbench-mode) PGBENCH_MODE=$2; shift ;;
      --freshness-messages) FRESHNESS_MESSAGES=$2; shift ;;
      --sustained-secs) SUSTAINED_SECS=$2; shift ;;
      --sustained-conns) SUSTAINED_CONNS=$2; shift ;;
      --sustained-rate) SUSTAINED_RATE=$2; shift ;;
      --skip) SKIP=",$2,"; shift ;;
      --keep) KEEP=1 ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; die "unknown option $1" ;;
    esac
    shift
  done
  local s
  for s in ${SKIP//,/ }; do
    case $s in
      postgres | sqlite | freshness | sustained) ;;
      *) die "--skip: unknown stage $s (postgres, sqlite, freshness, sustained)" ;;
    esac
  done
  if wanted sustained && ! wanted postgres && [[ -z $SUSTAINED_RATE ]]; then
    die "the sustained run's rate is half the postgres stage's maximum: keep that stage or pass --sustained-rate"
  fi
}

wanted() { [[ $SKIP != *",$1,"* ]]; }

# ---------------------------------------------------------------------------------------------
# What it needs, said before anything starts

check_tools() {
  local missing=()
  if wanted postgres || wanted sqlite || wanted sustained; then
    command -v wrk >/dev/null || missing+=("wrk (Debian: apt-get install wrk)")
  fi
  if wanted postgres && ! pgbench --version >/dev/null 2>&1; then
    missing+=("pgbench (Debian: apt-get install postgresql-contrib; pgbench for PostgreSQL 15 is in postgresql-15)")
  fi
  command -v psql >/dev/null || missing+=("psql (Debian: apt-get install postgresql-client)")
  command -v curl >/dev/null || missing+=("curl (Debian: apt-get install curl)")
  if ((BUILD)); then
    command -v cargo >/dev/null || missing+=("cargo (or pass --no-build with a built target/)")
  fi
  if ((${#missing[@]})); then
    log "receipt.sh: missing, install them first (this script installs nothing):"
    printf '  %s\n' "${missing[@]}" >&2
    exit 2
  fi
  if ! psql "$PG_ADMIN" -Atqc 'SELECT 1' >/dev/null 2>"$TMP/psql.err"; then
    log "receipt.sh: cannot reach PostgreSQL at $(redact "$PG_ADMIN") (--postgres-url):"
    sed 's/^/  /' "$TMP/psql.err" >&2
    exit 2
  fi
}

build() {
  if ((BUILD)); then
    log "== building (release)"
    if [[ -z $WHARF ]]; then
      (cd "$REPO" && cargo build --release --bin wharf --example freshness --example bare_commit) >&2
    else
      (cd "$REPO" && cargo build --release --example freshness --example bare_commit) >&2
    fi
  fi
  WHARF=${WHARF:-$TARGET/release/wharf}
  WHARF=$(realpath "$WHARF")
  FRESHNESS=$TARGET/release/examples/freshness
  BARE_COMMIT=$TARGET/release/examples/bare_commit
  local f
  for f in "$WHARF" "$FRESHNESS" "$BARE_COMMIT"; do
    [[ -x $f ]] || die "$f is missing (build it, or drop --no-build)"
  done
}

# ---------------------------------------------------------------------------------------------
# Everything started is stopped on exit

TMP=""
PIDS=()
DATABASES=()
RESULTS=()

cleanup() {
  local rc=$? pid db
  trap - EXIT
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    wait "$pid" 2>/dev/null || true
  done
  for db in ${DATABASES[@]+"${DATABASES[@]}"}; do
    if ((KEEP)); then
      log "kept database $db"
    else
      psql "$PG_ADMIN" -Atqc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 ||
        log "receipt.sh: could not drop database $db; drop it by hand"
    fi
  done
  if [[ -n $TMP ]]; then
    if ((KEEP)); then
      log "kept $TMP"
    else
      rm -rf "$TMP"
    fi
  fi
  if ((rc != 0)) && ((${#RESULTS[@]})); then
    log "receipt.sh: stopped early (exit $rc); measured so far:"
    print_summary >&2
  fi
  exit "$rc"
}

# Forgets a process that has been stopped.
forget() {
  local keep=() pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    [[ $pid == "$1" ]] || keep+=("$pid")
  done
  PIDS=(${keep[@]+"${keep[@]}"})
}

stop() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  forget "$1"
}

# ---------------------------------------------------------------------------------------------
# Databases and wharf

redact() { sed -E 's#(://[^:/@]*):[^@/]*@#\1:***@#' <<<"$1"; }

# A new PostgreSQL database on the server of PG_ADMIN, dropped on exit; sets PG_URL to its URL.
new_pg_database() {
  local name base query
  name="wharf_bench_$(tr -dc 'a-z0-9' </dev/urandom | head -c 10 || true)"
  psql "$PG_ADMIN" -Atqc "CREATE DATABASE $name" >/dev/null
  DATABASES+=("$name")
  base=${PG_ADMIN%%\?*}
  query=${PG_ADMIN#"$base"}
  [[ ${base#*://} == */* ]] || base="$base/"
  PG_URL="${base%/*}/$name$query"
}

# Runs the wharf binary on database $1 from the temporary directory (so no wharf.toml is read).
wharf_cmd() {
  local url=$1
  shift
  (cd "$TMP" && DATABASE_URL=$url WHARF_LISTEN=127.0.0.1:0 RUST_LOG=warn,wharf=info NO_COLOR=1 \
    "$WHARF" "$@")
}

# Migrates database $1 and adds the warehouse user.
setup_database() {
  wharf_cmd "$1" migrate >"$TMP/migrate.log" 2>&1 || {
    cat "$TMP/migrate.log" >&2
    die "wharf migrate failed"
  }
  printf '%s' "$PASSWORD" |
    wharf_cmd "$1" users add "$USER_NAME" --role warehouse --password-stdin >/dev/null
}

# Starts `wharf serve` on database $1 with its worker on ($2 = true) or off, logging to $TMP/$3.log;
# sets SERVER_PID and SERVER_BASE (http://127.0.0.1:PORT, the port chosen by the system).
start_serve() {
  local url=$1 worker=$2 log=$TMP/$3.log addr=""
  : >"$log" # before the background shell opens it, for the loop below to read
  (cd "$TMP" && DATABASE_URL=$url WHARF_LISTEN=127.0.0.1:0 WHARF_WORKER__IN_SERVE=$worker \
    RUST_LOG=warn,wharf=info NO_COLOR=1 exec "$WHARF" serve) >"$log" 2>&1 &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  local i
  for ((i = 0; i < 300; i++)); do
    addr=$(sed -n 's/.*wharf is listening.*address=\([0-9.:]*\).*/\1/p' "$log" | head -n 1)
    [[ -n $addr ]] && break
    kill -0 "$SERVER_PID" 2>/dev/null || {
      cat "$log" >&2
      die "wharf serve exited"
    }
    sleep 0.1
  done
  [[ -n $addr ]] || die "wharf serve did not listen within 30 s (log: $log)"
  SERVER_BASE=http://$addr
}

soap_post() {
  curl -sS --max-time 30 -H 'Content-Type: text/xml; charset=utf-8' \
    -H 'SOAPAction: "urn:Mage_Api_Model_Server_V2_HandlerAction"' \
    --data-binary @- "$1$SOAP_PATH"
}

# A SOAP `login` on $1 (shaped like ../shared/fixtures/soap/m1-login.xml); sets SESSION.
soap_login() {
  local answer session
  answer=$(soap_post "$1" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/"
  xmlns:ns1="urn:Magento" xmlns:xsd="http://www.w3.org/2001/XMLSchema"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xmlns:SOAP-ENC="http://schemas.xmlsoap.org/soap/encoding/"
  SOAP-ENV:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
  <SOAP-ENV:Body>
    <ns1:login>
      <username xsi:type="xsd:string">$USER_NAME</username>
      <apiKey xsi:type="xsd:string">$PASSWORD</apiKey>
    </ns1:login>
  </SOAP-ENV:Body>
</SOAP-ENV:Envelope>
EOF
  )
  session=$(grep -o '<loginReturn[^>]*>[^<]*</loginReturn>' <<<"$answer" | sed 's/<[^>]*>//g' || true)
  [[ -n $session ]] || die "SOAP login failed: $answer"
  SESSION=$session
}

# ---------------------------------------------------------------------------------------------
# Load generators

SEQ_STAGE=0

# wrk against $1 with $2 connections for $3 seconds; further arguments are NAME=VALUE for
# receipt.lua (RATE, ACKED_FILE). Sets RESULT to receipt.lua's `result …` line. Every call sends
# messageSeqIds of its own.
run_wrk() {
  local base=$1 conns=$2 secs=$3 threads out
  shift 3
  threads=$((conns < 2 ? conns : 2))
  SEQ_STAGE=$((SEQ_STAGE + 1))
  out=$(env WHARF_SESSION="$SESSION" SEQ_BASE=$((SEQ_STAGE * 1000000000000)) \
    WRK_THREADS=$threads "$@" \
    wrk -t "$threads" -c "$conns" -d "${secs}s" --timeout 30s -s "$LUA" "$base$SOAP_PATH") || {
    printf '%s\n' "$out" >&2
    die "wrk failed"
  }
  printf '%s\n' "$out" >>"$TMP/wrk.log"
  RESULT=$(grep '^result ' <<<"$out") || die "wrk printed no result: $out"
}

# The value of KEY=VALUE in a `result …` line.
field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }

# pgbench's single-row INSERT on $1 with $2 clients for $3 seconds; sets TPS and LATENCY (mean, ms).
run_pgbench() {
  local url=$1 clients=$2 secs=$3 threads out
  threads=$((clients < 2 ? clients : 2))
  out=$(pgbench -n -M "$PGBENCH_MODE" -c "$clients" -j "$threads" -T "$secs" \
    -f "$TMP/insert.sql" "$url" 2>&1) || {
    printf '%s\n' "$out" >&2
    die "pgbench failed"
  }
  printf '%s\n' "$out" >>"$TMP/pgbench.log"
  TPS=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out" | head -n 1)
  LATENCY=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' <<<"$out")
  [[ -n $TPS ]] || die "pgbench printed no tps: $out"
}

# ---------------------------------------------------------------------------------------------
# Numbers

calc() { awk "BEGIN { printf \"%s\", $1 }"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else printf "?" }'; }
# Whether $1 $2 $3 holds numerically, e.g. `holds 0.6 '>=' 0.5`.
holds() { awk -v a="$1" -v b="$3" "BEGIN { exit !(a $2 b) }"; }
# "ok" or "MISSED" for a target.
verdict() { if holds "$@"; then printf ok; else printf MISSED; fi; }

# "1 sender", "8 senders".
plural() { if (($1 == 1)); then printf '1 %s' "$2"; else printf '%s %ss' "$1" "$2"; fi; }

# One line of the report: what, value, and the target with its verdict (or empty).
report() {
  RESULTS+=("$(printf '%-40s %-58s %s' "$1" "$2" "${3:-}")")
  log "  $1: $2 ${3:-}"
}

print_summary() {
  printf '%-40s %-58s %s\n' "measurement" "value" "target"
  printf '%s\n' "${RESULTS[@]}"
}

# ---------------------------------------------------------------------------------------------
# Stages

declare -A PG_RATE=()

# Sends warm-up traffic (not reported).
warm_up() {
  if ((WARMUP_SECS > 0)); then
    run_wrk "$1" 8 "$WARMUP_SECS"
  fi
}

# A receipt level: report line from a result; prints the rate.
receipt_value() {
  local r=$1 bad
  bad=$(($(field "$r" non200) + $(field "$r" bad200) + $(field "$r" socket_errors) + $(field "$r" timeouts)))
  printf '%.0f msg/s  p50 %s ms  p99 %s ms  non-200 %s' "$(field "$r" rate)" "$(field "$r" p50_ms)" \
    "$(field "$r" p99_ms)" "$(field "$r" non200)"
  if ((bad > $(field "$r" non200))); then
    printf '  other failures %s' "$((bad - $(field "$r" non200)))"
  fi
}

stage_postgres() {
  log "== 1-2. PostgreSQL: wharf receipt (worker off) and pgbench single-row INSERT, ${SECS} s each"
  local c rate p99 target
  new_pg_database
  setup_database "$PG_URL"
  psql "$PG_URL" -Atqc 'CREATE TABLE bench_insert (id BIGSERIAL PRIMARY KEY, v TEXT NOT NULL)' >/dev/null
  printf "INSERT INTO bench_insert (v) VALUES ('receipt benchmark');\n" >"$TMP/insert.sql"
  start_serve "$PG_URL" false postgres
  soap_login "$SERVER_BASE"
  warm_up "$SERVER_BASE"
  for c in "${SENDERS[@]}"; do
    run_wrk "$SERVER_BASE" "$c" "$SECS"
    rate=$(field "$RESULT" rate)
    p99=$(field "$RESULT" p99_ms)
    PG_RATE[$c]=$rate
    case $c in
      1) target="p99 <= 2 ms: $(verdict "$p99" '<=' 2)" ;;
      32) target="p99 <= 20 ms: $(verdict "$p99" '<=' 20)" ;;
      *) target="" ;;
    esac
    report "postgres receipt, $(plural "$c" sender)" "$(receipt_value "$RESULT")" "$target"
    run_pgbench "$PG_URL" "$c" "$SECS"
    report "postgres pgbench INSERT, $(plural "$c" client)" "$(printf '%.0f tps  mean %s ms' "$TPS" "$LATENCY")"
    target=""
    [[ $c == 32 ]] && target=">= 0.5: $(verdict "$(ratio "$rate" "$TPS")" '>=' 0.5)"
    report "postgres receipt / pgbench, $c" "$(ratio "$rate" "$TPS")x" "$target"
  done
  stop "$SERVER_PID"
}

stage_sqlite() {
  log "== 3. SQLite: wharf receipt at $SQLITE_SENDERS senders, then a bare INSERT+COMMIT loop on the same file"
  local dir=$TMP/sqlite url rate bare base_rate
  mkdir -p "$dir"
  url=sqlite://$dir/wharf.db
  setup_database "$url"
  start_serve "$url" false sqlite
  soap_login "$SERVER_BASE"
  warm_up "$SERVER_BASE"
  run_wrk "$SERVER_BASE" "$SQLITE_SENDERS" "$SECS"
  rate=$(field "$RESULT" rate)
  report "sqlite receipt, $SQLITE_SENDERS senders" "$(receipt_value "$RESULT")"
  stop "$SERVER_PID"
  bare=$("$BARE_COMMIT" --database-url "$url" --secs "$SECS" | grep '^result ') ||
    die "bare_commit failed"
  base_rate=$(field "$bare" rate)
  report "sqlite bare INSERT+COMMIT loop" "$(printf '%.0f rows/s' "$base_rate")"
  report "sqlite receipt / bare loop" "$(ratio "$rate" "$base_rate")x" \
    ">= 1.0: $(verdict "$(ratio "$rate" "$base_rate")" '>=' 1.0)"
}

# "1.45 ms" or "1.2 s" in milliseconds.
in_ms() {
  case $1 in
    *' ms') printf '%s' "${1% ms}" ;;
    *' s') calc "${1% s} * 1000" ;;
    *) printf '%s' "$1" ;;
  esac
}

# A freshness run with the extra arguments $2…, reported as $1.
freshness() {
  local name=$1 out p50 p99 max v=ok
  shift
  out=$(cd "$TMP" && "$FRESHNESS" --wharf "$WHARF" --messages "$FRESHNESS_MESSAGES" "$@") ||
    die "freshness $* failed"
  printf '%s\n' "$out" >>"$TMP/freshness.log"
  p50=$(sed -n 's/.* p50 \(.*\)  p99 .*/\1/p' <<<"$out")
  p99=$(sed -n 's/.* p99 \(.*\)  max .*/\1/p' <<<"$out")
  max=$(sed -n 's/.* max \(.*\)$/\1/p' <<<"$out")
  [[ -n $p50 && -n $p99 ]] || die "freshness printed no percentiles: $out"
  holds "$(in_ms "$p50")" '<=' 20 || v=MISSED
  holds "$(in_ms "$p99")" '<=' 100 || v=MISSED
  report "freshness, $name" "p50 $p50  p99 $p99  max $max" "p50 <= 20 ms, p99 <= 100 ms: $v"
}

stage_freshness() {
  log "== 4. Freshness: acknowledgement -> stock.changed in a feed long poll, $FRESHNESS_MESSAGES updates each"
  freshness "SQLite"
  freshness "PostgreSQL" --postgres-url "$PG_ADMIN"
  freshness "PostgreSQL --split" --postgres-url "$PG_ADMIN" --split
}

# The sustained run's target rate: --sustained-rate, or half the highest PostgreSQL receipt rate.
sustained_rate() {
  local max=0 c
  if [[ -n $SUSTAINED_RATE ]]; then
    RATE=$SUSTAINED_RATE
    return
  fi
  for c in "${!PG_RATE[@]}"; do
    if holds "${PG_RATE[$c]}" '>' "$max"; then
      max=${PG_RATE[$c]}
    fi
  done
  holds "$max" '>' 0 || die "the sustained run needs --sustained-rate, or the postgres stage for its maximum"
  RATE=$(calc "$max / 2")
}

stage_sustained() {
  sustained_rate
  log "== 5. Sustained: $SUSTAINED_SECS s of receipt at $(printf '%.0f' "$RATE") msg/s on PostgreSQL, worker in the same process"
  local sampler hwm_kb oldest samples acked rows missing queued dead drained="" i
  new_pg_database
  setup_database "$PG_URL"
  start_serve "$PG_URL" true sustained
  soap_login "$SERVER_BASE"
  # The oldest queued request's age every half second, from the /metrics gauge (loopback clients
  # may read /metrics without a token).
  (
    while kill -0 "$SERVER_PID" 2>/dev/null; do
      curl -sS --max-time 5 "$SERVER_BASE/metrics" 2>/dev/null |
        awk '$1 == "wharf_queue_oldest_queued_age_seconds" { print $2 }' || true
      sleep 0.5
    done
  ) >"$TMP/oldest.txt" &
  sampler=$!
  PIDS+=("$sampler")
  run_wrk "$SERVER_BASE" "$SUSTAINED_CONNS" "$SUSTAINED_SECS" RATE="$RATE" ACKED_FILE="$TMP/acked.txt"
  stop "$sampler"
  hwm_kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$SERVER_PID/status")
  oldest=$(sort -g "$TMP/oldest.txt" | tail -n 1)
  samples=$(wc -l <"$TMP/oldest.txt")
  # How long after the run the worker has applied everything received.
  for ((i = 0; i < 600; i++)); do
    queued=$(psql "$PG_URL" -Atqc "SELECT count(*) FROM requests WHERE state IN ('queued', 'processing')")
    if ((queued == 0)); then
      drained=$(calc "$i / 10")
      break
    fi
    sleep 0.1
  done
  acked=$(wc -l <"$TMP/acked.txt")
  rows=$(psql "$PG_URL" -Atqc 'SELECT count(*) FROM requests')
  dead=$(psql "$PG_URL" -Atqc "SELECT count(*) FROM requests WHERE state = 'dead'")
  missing=$(psql "$PG_URL" -Atq -v ON_ERROR_STOP=1 \
    -c 'CREATE TEMP TABLE acked (message_seq_id BIGINT NOT NULL)' \
    -c "\\copy acked FROM '$TMP/acked.txt'" \
    -c 'SELECT count(*) FROM acked a WHERE NOT EXISTS
          (SELECT 1 FROM requests r WHERE r.message_seq_id = a.message_seq_id)')
  stop "$SERVER_PID"
  report "sustained receipt, $SUSTAINED_CONNS connections" \
    "$(receipt_value "$RESULT") (asked $(printf '%.0f' "$RATE"))"
  report "sustained oldest queued request (max)" "$(printf '%.2f s (%s samples)' "${oldest:-0}" "$samples")" \
    "< 2 s: $(verdict "${oldest:-0}" '<' 2)"
  report "sustained acknowledged / stored" "$acked acked, $rows stored, $missing acked not stored" \
    "nothing lost: $(verdict "$missing" '==' 0)"
  if [[ -n $drained ]]; then
    drained="queue empty $drained s after the run"
  else
    drained="queue NOT empty 60 s after the run"
  fi
  report "sustained worker" "$drained, $dead dead"
  report "sustained server peak RSS (VmHWM)" "$(printf '%.1f MB' "$(calc "$hwm_kb * 1024 / 1000000")")" \
    "< 150 MB: $(verdict "$(calc "$hwm_kb * 1024")" '<' 150000000)"
}

# ---------------------------------------------------------------------------------------------

main() {
  parse_args "$@"
  TMP=$(mktemp -d -t wharf-receipt-bench.XXXXXX)
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  check_tools
  build
  log "wharf: $WHARF"
  log "PostgreSQL: $(redact "$PG_ADMIN") ($(psql "$PG_ADMIN" -Atqc 'SHOW server_version'))"
  log "load: $(uptime)"
  wanted postgres && stage_postgres
  wanted sqlite && stage_sqlite
  wanted freshness && stage_freshness
  wanted sustained && stage_sustained
  printf '\nwharf receipt benchmark, %s, %s (%s cores), load %s\n' "$(date -u +%Y-%m-%dT%H:%MZ)" \
    "$(uname -n)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
  print_summary
}

main "$@"
