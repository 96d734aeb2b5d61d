#!/usr/bin/env bash
# The local stack without Docker: PostgreSQL (wal_level=logical), ClickHouse
# (native protocol) and a single-node Apache Kafka 4.x broker in KRaft mode.
#
#   scripts/stack.sh up [SERVICE…]      install what is missing, start what is stopped, wait until each answers
#   scripts/stack.sh down [SERVICE…]    stop services (state is kept)
#   scripts/stack.sh status             one line per service; exit 1 when one is down
#   scripts/stack.sh reset              stop and delete all state under the stack folder
#
# SERVICE is postgres, clickhouse or kafka; none means all three.
# All state lives under $LR_STACK_DIR (default: .stack/ in the project); ports
# and the Kafka jar folder can be moved with LR_STACK_*_PORT and
# LR_STACK_KAFKA_LIBS, which tests use to run private instances they may kill.
# The settings it started are written to $LR_STACK_DIR/env, a file a shell can source.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
stack=${LR_STACK_DIR:-$root/.stack}
mkdir -p "$stack"
stack=$(cd "$stack" && pwd)

PG_PORT=${LR_STACK_PG_PORT:-54329}
CH_PORT=${LR_STACK_CH_PORT:-19000}
CH_HTTP_PORT=${LR_STACK_CH_HTTP_PORT:-18123}
KAFKA_PORT=${LR_STACK_KAFKA_PORT:-19092}
KAFKA_CONTROLLER_PORT=${LR_STACK_KAFKA_CONTROLLER_PORT:-19093}
KAFKA_VERSION=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$root/scripts/kafka/pom.xml")
KAFKA_HEAP=${LR_STACK_KAFKA_HEAP:-1g}

say() { printf 'stack: %s\n' "$*"; }
die() { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- installs

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >"$stack/apt.log" 2>&1 || die "apt-get update failed (see $stack/apt.log)"
    apt_updated=1
  fi
  say "installing $*"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >>"$stack/apt.log" 2>&1 \
    || die "apt-get install $* failed (see $stack/apt.log)"
}

pg_bindir() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/postgres" ] && { echo "$d"; return 0; }
  done
  return 1
}

install_missing() { # the services about to start
  local pkgs=() wanted=" $* "
  pg_bindir >/dev/null || pkgs+=(postgresql)
  command -v clickhouse-server >/dev/null || pkgs+=(clickhouse-server)
  command -v clickhouse-client >/dev/null || pkgs+=(clickhouse-client)
  command -v java >/dev/null || pkgs+=(default-jre-headless)
  command -v mvn >/dev/null || pkgs+=(maven)
  if [ ${#pkgs[@]} -gt 0 ]; then apt_install "${pkgs[@]}"; fi
  # Debian's package starts its own cluster on 5432 on some systems; ours is separate and untouched.
  if [[ "$wanted" == *" kafka "* ]] && [ ! -f "$KLIBS/.complete-$KAFKA_VERSION" ]; then
    say "fetching Apache Kafka $KAFKA_VERSION (org.apache.kafka:kafka_2.13) and its dependencies with Maven"
    rm -rf "$KLIBS"
    mkdir -p "$KLIBS" "$K"
    (cd "$root/scripts/kafka" && mvn -q -B dependency:copy-dependencies -DincludeScope=runtime \
        -DoutputDirectory="$KLIBS" >"$K/maven.log" 2>&1) \
      || die "kafka: Maven could not fetch the broker (see $K/maven.log)"
    touch "$KLIBS/.complete-$KAFKA_VERSION"
  fi
}

# ---------------------------------------------------------------- helpers

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # name seconds command...
  local name=$1 secs=$2; shift 2
  local i
  for ((i = 0; i < secs * 4; i++)); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.25
  done
  return 1
}

pid_alive() { [ -f "$1" ] && kill -0 "$(head -1 "$1")" 2>/dev/null; }

# ---------------------------------------------------------------- postgres

PGDIR=$stack/postgres
PGDATA=$PGDIR/data
pg_run() { runuser -u postgres -- "$@"; }

# The server runs as the user 'postgres', which may not be able to enter the
# project folder (a clone under /root, say). Then its files live under
# /var/tmp, named after the stack folder, and .stack/postgres links there.
pg_dir() {
  mkdir -p "$stack"
  if [ -L "$stack/postgres" ] || { [ ! -e "$stack/postgres" ] && ! runuser -u postgres -- test -x "$stack"; }; then
    local alt; alt=/var/tmp/launchready-pg-$(printf '%s' "$stack" | md5sum | cut -c1-12)
    mkdir -p "$alt"
    [ -L "$stack/postgres" ] || ln -s "$alt" "$stack/postgres"
    PGDIR=$alt
  else
    mkdir -p "$PGDIR"
  fi
  PGDATA=$PGDIR/data
  chown postgres:postgres "$PGDIR"
  runuser -u postgres -- test -x "$PGDIR" || die "postgres: the user 'postgres' cannot enter $PGDIR"
}

pg_ready() { "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

pg_up() {
  local bin; bin=$(pg_bindir) || die "postgres: no server binaries under /usr/lib/postgresql"
  pg_dir
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    say "postgres: initdb in $PGDATA"
    pg_run "$bin/initdb" -D "$PGDATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$PGDIR/initdb.log" 2>&1 \
      || die "postgres: initdb failed (see $PGDIR/initdb.log)"
    cat >>"$PGDATA/postgresql.conf" <<EOF
# launchready local stack
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGDIR'
wal_level = logical
max_replication_slots = 20
max_wal_senders = 20
max_connections = 200
wal_sender_timeout = 60s
fsync = on
synchronous_commit = on
shared_buffers = 256MB
max_wal_size = 2GB
EOF
    echo "host replication all 127.0.0.1/32 trust" >>"$PGDATA/pg_hba.conf"
  fi
  if ! pg_ready; then
    say "postgres: starting on 127.0.0.1:$PG_PORT"
    pg_run "$bin/pg_ctl" -D "$PGDATA" -l "$PGDIR/postgres.log" -w -t 60 start >/dev/null \
      || die "postgres did not start (see $PGDIR/postgres.log)"
  fi
  wait_for postgres 60 pg_ready || die "postgres did not answer on 127.0.0.1:$PG_PORT (see $PGDIR/postgres.log)"
  local psql="$bin/psql -h 127.0.0.1 -p $PG_PORT -U postgres -v ON_ERROR_STOP=1 -qAt"
  [ "$($psql -c 'show wal_level')" = logical ] || die "postgres: wal_level is not logical in $PGDATA/postgresql.conf"
  for db in launchready app; do
    if [ "$($psql -c "select 1 from pg_database where datname='$db'")" != 1 ]; then
      $psql -c "create database $db" >/dev/null || die "postgres: could not create database $db"
    fi
  done
}

pg_down() {
  local bin; bin=$(pg_bindir) || return 0
  [ -e "$stack/postgres" ] || return 0
  PGDATA=$(readlink -f "$stack/postgres")/data
  if [ -f "$PGDATA/postmaster.pid" ]; then
    pg_run "$bin/pg_ctl" -D "$PGDATA" -m fast -w -t 60 stop >/dev/null 2>&1 || true
  fi
}

# ---------------------------------------------------------------- clickhouse

CH=$stack/clickhouse

ch_ready() { clickhouse-client --host 127.0.0.1 --port "$CH_PORT" --query 'SELECT 1' 2>/dev/null | grep -q 1; }

ch_up() {
  mkdir -p "$CH/data" "$CH/tmp" "$CH/log" "$CH/user_files" "$CH/format_schemas"
  cat >"$CH/config.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <logger>
    <level>warning</level>
    <log>$CH/log/clickhouse-server.log</log>
    <errorlog>$CH/log/clickhouse-server.err.log</errorlog>
    <size>100M</size>
    <count>3</count>
  </logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>$CH_PORT</tcp_port>
  <http_port>$CH_HTTP_PORT</http_port>
  <max_connections>256</max_connections>
  <keep_alive_timeout>3</keep_alive_timeout>
  <max_concurrent_queries>100</max_concurrent_queries>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <mark_cache_size>268435456</mark_cache_size>
  <path>$CH/data/</path>
  <tmp_path>$CH/tmp/</tmp_path>
  <user_files_path>$CH/user_files/</user_files_path>
  <format_schema_path>$CH/format_schemas/</format_schema_path>
  <users_config>$CH/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mlock_executable>false</mlock_executable>
</yandex>
EOF
  cat >"$CH/users.xml" <<EOF
<?xml version="1.0"?>
<yandex>
  <profiles>
    <default>
      <max_memory_usage>4000000000</max_memory_usage>
      <load_balancing>random</load_balancing>
    </default>
  </profiles>
  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile>
      <quota>default</quota>
    </default>
  </users>
  <quotas>
    <default>
      <interval><duration>3600</duration><queries>0</queries><errors>0</errors><result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time></interval>
    </default>
  </quotas>
</yandex>
EOF
  if ! ch_ready; then
    if pid_alive "$CH/pid"; then
      say "clickhouse: process $(cat "$CH/pid") is up but not answering yet"
    else
      say "clickhouse: starting on 127.0.0.1:$CH_PORT (native)"
      # The server itself is the background job (not a subshell around it):
      # the pid file then names the server, and no subshell holds the
      # caller's output open.
      (cd "$CH" || exit 1; setsid clickhouse-server --config-file="$CH/config.xml" >"$CH/log/stdout.log" 2>&1 </dev/null &
        echo $! >"$CH/pid")
    fi
  fi
  wait_for clickhouse 90 ch_ready || die "clickhouse did not answer on 127.0.0.1:$CH_PORT (see $CH/log/)"
}

ch_down() {
  if pid_alive "$CH/pid"; then
    local pid; pid=$(cat "$CH/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 120); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$CH/pid"
}

# ---------------------------------------------------------------- kafka

K=$stack/kafka
KLIBS=${LR_STACK_KAFKA_LIBS:-$K/libs}

kafka_ready() {
  # A broker that answers ApiVersions on the client port is up; the Go tests and
  # `launchready migrate` check the rest (metadata, topic creation).
  port_open "$KAFKA_PORT" && grep -q "Kafka Server started" "$K/logs/server.log" 2>/dev/null
}

KAFKA_JAVA=(java -Xms256m -Xmx"$KAFKA_HEAP" -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$K/log4j2.properties" -Dkafka.logs.dir="$K/logs" -cp "$KLIBS/*")
kafka_java() { "${KAFKA_JAVA[@]}" "$@"; }

kafka_up() {
  mkdir -p "$K/data" "$K/logs"
  cat >"$K/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$K/data
num.partitions=3
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=10
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
log.retention.hours=168
log.cleaner.backoff.ms=5000
min.insync.replicas=1
EOF
  cat >"$K/log4j2.properties" <<EOF
status = warn
appender.file.type = RollingFile
appender.file.name = file
appender.file.fileName = $K/logs/server.log
appender.file.filePattern = $K/logs/server.log.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 3
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.org.name = org.apache.kafka
logger.org.level = WARN
EOF
  if [ ! -f "$K/data/meta.properties" ]; then
    say "kafka: formatting KRaft storage in $K/data"
    local id; id=$(kafka_java kafka.tools.StorageTool random-uuid 2>>"$K/logs/format.log" | tail -1)
    kafka_java kafka.tools.StorageTool format -t "$id" -c "$K/server.properties" >>"$K/logs/format.log" 2>&1 \
      || die "kafka: formatting storage failed (see $K/logs/format.log)"
  fi
  if ! kafka_ready; then
    if pid_alive "$K/pid"; then
      say "kafka: process $(cat "$K/pid") is up but not answering yet"
    else
      say "kafka: starting Apache Kafka $KAFKA_VERSION (KRaft) on 127.0.0.1:$KAFKA_PORT"
      : >"$K/logs/server.log"
      (setsid "${KAFKA_JAVA[@]}" kafka.Kafka "$K/server.properties" >"$K/logs/stdout.log" 2>&1 </dev/null &
        echo $! >"$K/pid")
    fi
  fi
  wait_for kafka 120 kafka_ready || die "kafka did not answer on 127.0.0.1:$KAFKA_PORT (see $K/logs/server.log and $K/logs/stdout.log)"
}

kafka_down() {
  if pid_alive "$K/pid"; then
    local pid; pid=$(cat "$K/pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 160); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$K/pid"
}

# ---------------------------------------------------------------- commands

write_env() {
  cat >"$stack/env" <<EOF
# Written by scripts/stack.sh: the services of the local stack.
export LR_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
export LR_POSTGRES_URL=postgres://postgres@127.0.0.1:$PG_PORT/app?sslmode=disable
export LR_STATE_POSTGRES_URL=postgres://postgres@127.0.0.1:$PG_PORT/launchready?sslmode=disable
export LR_CLICKHOUSE_ADDR=127.0.0.1:$CH_PORT
EOF
}

status() {
  local bad=0
  if pg_ready 2>/dev/null; then say "postgres   up    127.0.0.1:$PG_PORT      log $stack/postgres/postgres.log"
  else say "postgres   DOWN  127.0.0.1:$PG_PORT      log $stack/postgres/postgres.log"; bad=1; fi
  if ch_ready; then say "clickhouse up    127.0.0.1:$CH_PORT      log $CH/log/"
  else say "clickhouse DOWN  127.0.0.1:$CH_PORT      log $CH/log/"; bad=1; fi
  if kafka_ready && pid_alive "$K/pid"; then say "kafka      up    127.0.0.1:$KAFKA_PORT      log $K/logs/server.log"
  else say "kafka      DOWN  127.0.0.1:$KAFKA_PORT      log $K/logs/server.log"; bad=1; fi
  return $bad
}

services() { # the named services, or all three
  local s
  if [ $# -eq 0 ]; then echo postgres clickhouse kafka; return; fi
  for s in "$@"; do
    case "$s" in postgres|clickhouse|kafka) echo "$s" ;; *) die "unknown service $s (postgres, clickhouse, kafka)" ;; esac
  done
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
  up)
    [ "$(id -u)" = 0 ] || die "run as root: it installs packages and runs postgres as its own user"
    install_missing $(services "$@")
    for s in $(services "$@"); do
      case "$s" in postgres) pg_up ;; clickhouse) ch_up ;; kafka) kafka_up ;; esac
    done
    write_env
    if [ $# -eq 0 ]; then
      say "all services up; settings in $stack/env"
      status
    fi
    ;;
  down)
    for s in $(services "$@"); do
      case "$s" in postgres) pg_down ;; clickhouse) ch_down ;; kafka) kafka_down ;; esac
    done
    say "stopped $(services "$@" | tr '\n' ' ')"
    ;;
  status) status ;;
  reset)
    kafka_down; ch_down; pg_down
    if [ -L "$stack/postgres" ]; then rm -rf "$(readlink "$stack/postgres")"; fi
    rm -rf "$stack"
    say "removed $stack"
    ;;
  *) echo "usage: $0 up|down|status|reset" >&2; exit 2 ;;
esac
