#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine (with slurmdbd accounting), for CI
# and for trying SubnetScope's SLURM path on a workstation. See docs/slurm.md.
#
#   scripts/slurm.sh install   apt-get install the packages if any is missing
#   scripts/slurm.sh start     install if needed, write configs, start every daemon, wait until usable
#   scripts/slurm.sh status    exit 0 if the cluster is usable, else say what is down
#   scripts/slurm.sh stop      stop the daemons this script started (pid files in the state folder)
#   scripts/slurm.sh smoke     run one job to COMPLETED and cancel another, as sacct reports them
#
# Environment: SUBNETSCOPE_SLURM_DIR (state folder, default /tmp/subnetscope-slurm),
# SUBNETSCOPE_SLURM_DB_PORT (private MariaDB port on 127.0.0.1, default 16819),
# SUBNETSCOPE_SLURM_CLUSTER (cluster name, default subnetscope),
# SUBNETSCOPE_SLURM_FORCE=1 (replace an /etc/slurm/slurm.conf this script did not write).
# Every command is idempotent. install/start/stop need root; they re-run themselves with sudo.
set -euo pipefail

STATE=$(realpath -m "${SUBNETSCOPE_SLURM_DIR:-/tmp/subnetscope-slurm}")
DB_PORT=${SUBNETSCOPE_SLURM_DB_PORT:-16819}
CLUSTER=${SUBNETSCOPE_SLURM_CLUSTER:-subnetscope}
PARTITION=debug
ETC=/etc/slurm
MARKER="# Managed by SubnetScope scripts/slurm.sh"
PACKAGES=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
MUNGE_SOCKET=/run/munge/munge.socket.2   # libmunge's default: every client finds it
DB_SOCKET=$STATE/mysql/run/mysqld.sock
NODE=$(hostname -s)

say() { echo "slurm.sh: $*"; }
die() { echo "slurm.sh: error: $*" >&2; exit 1; }

need_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  command -v sudo >/dev/null || die "'$1' needs root and sudo is not installed"
  exec sudo --preserve-env=SUBNETSCOPE_SLURM_DIR,SUBNETSCOPE_SLURM_DB_PORT,SUBNETSCOPE_SLURM_CLUSTER,SUBNETSCOPE_SLURM_FORCE \
    "$(readlink -f "$0")" "$@"
}

# ---------------------------------------------------------------- processes

# pid_alive PIDFILE NAME: the pid in PIDFILE is alive and its command is NAME (guards against pid reuse)
pid_alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}

# stop_pid PIDFILE NAME: TERM, wait up to 20 s, then KILL
stop_pid() {
  local pidfile=$1 name=$2 pid i
  if ! pid_alive "$pidfile" "$name"; then rm -f "$pidfile"; return 0; fi
  pid=$(cat "$pidfile")
  kill -TERM "$pid" 2>/dev/null || true
  for i in $(seq 100); do
    [ -d "/proc/$pid" ] || break
    sleep 0.2
  done
  if [ -d "/proc/$pid" ]; then
    say "$name ($pid) ignored SIGTERM for 20 s, killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
  say "stopped $name ($pid)"
}

# wait_for SECONDS WHAT COMMAND...: poll COMMAND every 0.25 s until it succeeds
wait_for() {
  local secs=$1 what=$2 deadline
  shift 2
  deadline=$(($(date +%s) + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.25
  done
}

show_log() {
  [ -f "$1" ] || return 0
  echo "---- last lines of $1 ----" >&2
  tail -n 25 "$1" >&2
}

# ---------------------------------------------------------------- checks

munge_ok() { munge -n -S "$MUNGE_SOCKET" 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }
mariadb_ok() { mariadb-admin --no-defaults --socket="$DB_SOCKET" --connect-timeout=2 ping >/dev/null 2>&1; }
# slurmdbd answers and our cluster is registered (ControlHost appears once slurmctld has registered)
dbd_ok() { sacctmgr -n -P show cluster format=cluster 2>/dev/null | grep -x "$CLUSTER" >/dev/null; }
ctld_registered() { [ -n "$(sacctmgr -n -P show cluster "$CLUSTER" format=controlhost 2>/dev/null)" ]; }
sacct_ok() { timeout 20 sacct -n -X -S now-1minutes -o JobID >/dev/null 2>&1; }
ctld_ok() { timeout 10 scontrol ping 2>/dev/null | grep 'is UP' >/dev/null; }
node_state() { timeout 10 sinfo -h -N -n "$NODE" -o %T 2>/dev/null | awk 'NR == 1'; }
USABLE='^(idle|mixed|allocated|completing)$'   # a busy node is still a working cluster

# status_report: print one line per component; return 0 when the cluster is usable
status_report() {
  local bad=0 state d
  # Our daemons' processes (slurmctld notices a dead slurmd only after SlurmdTimeout)
  for d in slurmdbd slurmctld slurmd; do
    pid_alive "$STATE/run/$d.pid" "$d" || { echo "down: $d (no live process for $STATE/run/$d.pid)"; bad=1; }
  done
  munge_ok || { echo "down: munged (no answer on $MUNGE_SOCKET)"; bad=1; }
  mariadb_ok || { echo "down: mariadb (no answer on $DB_SOCKET)"; bad=1; }
  if ! dbd_ok; then echo "down: slurmdbd (sacctmgr cannot list cluster $CLUSTER)"; bad=1
  elif ! ctld_registered; then echo "down: slurmctld is not registered with slurmdbd"; bad=1; fi
  sacct_ok || { echo "down: sacct does not answer"; bad=1; }
  if ! ctld_ok; then echo "down: slurmctld (scontrol ping)"; bad=1
  else
    state=$(node_state)
    [[ "$state" =~ $USABLE ]] \
      || { echo "down: node $NODE is '${state:-unknown}' (slurmd)"; bad=1; }
  fi
  return $bad
}

summary() {
  echo "slurm: cluster $CLUSTER up; node $NODE $(node_state) in partition $PARTITION;" \
    "accounting via slurmdbd + MariaDB 127.0.0.1:$DB_PORT; state in $STATE"
}

# ---------------------------------------------------------------- install

missing_packages() {
  local p
  for p in "${PACKAGES[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || echo "$p"
  done
}

cmd_install() {
  local missing
  missing=$(missing_packages)
  [ -n "$missing" ] || return 0
  need_root install
  # shellcheck disable=SC2086
  say "installing:" $missing
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d 101: keep the packages' init scripts from starting daemons with their default configs
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1; fi
  local rc=0
  # shellcheck disable=SC2086
  { apt-get install -y -q --no-install-recommends $missing \
      || { apt-get update -q && apt-get install -y -q --no-install-recommends $missing; }; } || rc=$?
  [ "$created_policy" = 0 ] || rm -f "$policy"
  [ "$rc" = 0 ] || die "apt-get install failed"
}

# ---------------------------------------------------------------- configs

write_if_changed() {   # write_if_changed PATH MODE < content; returns 0 when the file changed
  local tmp changed=1
  tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$1" ] && cmp -s "$tmp" "$1"; then changed=1; else changed=0; fi
  install -m "$2" "$tmp" "$1"
  rm -f "$tmp"
  return $changed
}

slurm_conf() {
  # Node topology and memory exactly as slurmd detects them, so the node never drains on a mismatch.
  local hw
  hw=$(slurmd -C | sed -n -E '1s/^NodeName=[^ ]+ //p')
  cat <<EOF
$MARKER (state folder $STATE). Regenerated on every start.
ClusterName=$CLUSTER
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=300
MailProg=/bin/true
StateSaveLocation=$STATE/slurmctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=30
NodeName=$NODE NodeAddr=127.0.0.1 $hw State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF
}

slurmdbd_conf() {
  cat <<EOF
$MARKER (state folder $STATE). Regenerated on every start.
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$(cat "$STATE/db.password")
StorageLoc=slurm_acct_db
EOF
}

mariadb_conf() {
  cat <<EOF
[mariadbd]
datadir=$STATE/mysql/data
socket=$DB_SOCKET
pid-file=$STATE/mysql/run/mysqld.pid
log-error=$STATE/log/mariadb.log
bind-address=127.0.0.1
port=$DB_PORT
skip-name-resolve
skip-log-bin
innodb_buffer_pool_size=512M
innodb_log_file_size=64M
innodb_lock_wait_timeout=900
max_connections=100
EOF
}

# configs_current: /etc/slurm holds what this script would write now (slurmdbd.conf: root only)
configs_current() {
  [ -f "$ETC/slurm.conf" ] && cmp -s <(slurm_conf 2>/dev/null) "$ETC/slurm.conf" || return 1
  [ "$(id -u)" -ne 0 ] || { [ -s "$STATE/db.password" ] && cmp -s <(slurmdbd_conf 2>/dev/null) "$ETC/slurmdbd.conf"; }
}

check_etc_ownership() {
  local f
  for f in "$ETC/slurm.conf" "$ETC/slurmdbd.conf"; do
    [ -f "$f" ] || continue
    case "$(head -n1 "$f")" in "$MARKER"*) continue ;; esac
    [ "${SUBNETSCOPE_SLURM_FORCE:-0}" = 1 ] \
      || die "$f exists and was not written by this script; set SUBNETSCOPE_SLURM_FORCE=1 to replace it (a .bak copy is kept)"
    cp -a "$f" "$f.bak"
    say "saved the existing $f as $f.bak"
  done
}

# ---------------------------------------------------------------- daemons

start_munge() {
  munge_ok && return 0   # a system munged (or ours) already answers: use it
  [ -f /etc/munge/munge.key ] || { runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key; say "created /etc/munge/munge.key"; }
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 "$STATE/munge"
  runuser -u munge -- munged --socket="$MUNGE_SOCKET" --pid-file="$STATE/munge/munged.pid" \
    --log-file="$STATE/munge/munged.log" --seed-file="$STATE/munge/munged.seed" 9>&-
  wait_for 15 munge munge_ok || { show_log "$STATE/munge/munged.log"; die "munged did not start"; }
  say "started munged ($(cat "$STATE/munge/munged.pid"))"
}

start_mariadb() {
  local cnf=$STATE/mysql/my.cnf
  mariadb_conf | write_if_changed "$cnf" 0644 || true
  install -d -o mysql -g mysql -m 0755 "$STATE/mysql/run"
  if [ ! -d "$STATE/mysql/data/mysql" ]; then
    say "initializing the MariaDB data directory"
    rm -rf "$STATE/mysql/data"
    mariadb-install-db --defaults-file="$cnf" --user=mysql --auth-root-authentication-method=socket \
      --skip-test-db >"$STATE/log/mariadb-install.log" 2>&1 \
      || { show_log "$STATE/log/mariadb-install.log"; die "mariadb-install-db failed"; }
  fi
  if ! pid_alive "$STATE/mysql/run/mysqld.pid" mariadbd; then
    # log-error's folder must be writable by mysql
    touch "$STATE/log/mariadb.log"; chown mysql:mysql "$STATE/log/mariadb.log"
    setsid nohup mariadbd --defaults-file="$cnf" --user=mysql >/dev/null 2>&1 9>&- &
    wait_for 60 mariadb mariadb_ok || { show_log "$STATE/log/mariadb.log"; die "MariaDB did not start"; }
    say "started mariadbd ($(cat "$STATE/mysql/run/mysqld.pid")) on 127.0.0.1:$DB_PORT"
  fi
  # The accounting database and its user (password kept in the state folder); cheap, so every start.
  if [ ! -s "$STATE/db.password" ]; then
    (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/db.password")
  fi
  local pw
  pw=$(cat "$STATE/db.password")
  mariadb --no-defaults --socket="$DB_SOCKET" -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pw';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pw';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pw';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
EOF
}

start_slurmdbd() {
  if ! pid_alive "$STATE/run/slurmdbd.pid" slurmdbd; then
    slurmdbd >>"$STATE/log/slurmdbd.stderr" 2>&1 9>&- \
      || { show_log "$STATE/log/slurmdbd.log"; die "slurmdbd did not start"; }
    # First start creates the schema (a few seconds); sacctmgr answers once it listens.
    wait_for 90 slurmdbd sacctmgr -n -P show cluster \
      || { show_log "$STATE/log/slurmdbd.log"; die "slurmdbd does not answer"; }
    say "started slurmdbd ($(cat "$STATE/run/slurmdbd.pid"))"
  fi
  # Register the cluster before slurmctld connects (slurmctld would add it too, but then its
  # first registration races the jobs it records).
  if ! dbd_ok; then
    sacctmgr -i add cluster "$CLUSTER" >/dev/null
    say "registered cluster $CLUSTER in accounting"
  fi
}

start_slurmctld() {
  pid_alive "$STATE/run/slurmctld.pid" slurmctld && return 0
  slurmctld >>"$STATE/log/slurmctld.stderr" 2>&1 9>&- \
    || { show_log "$STATE/log/slurmctld.log"; die "slurmctld did not start"; }
  wait_for 30 slurmctld ctld_ok || { show_log "$STATE/log/slurmctld.log"; die "slurmctld does not answer"; }
  say "started slurmctld ($(cat "$STATE/run/slurmctld.pid"))"
}

start_slurmd() {
  pid_alive "$STATE/run/slurmd.pid" slurmd && return 0
  slurmd >>"$STATE/log/slurmd.stderr" 2>&1 9>&- \
    || { show_log "$STATE/log/slurmd.log"; die "slurmd did not start"; }
  wait_for 10 "slurmd pid" pid_alive "$STATE/run/slurmd.pid" slurmd \
    || { show_log "$STATE/log/slurmd.log"; die "slurmd exited"; }
  say "started slurmd ($(cat "$STATE/run/slurmd.pid"))"
}

stop_slurm_daemons() {
  stop_pid "$STATE/run/slurmd.pid" slurmd
  stop_pid "$STATE/run/slurmctld.pid" slurmctld
  stop_pid "$STATE/run/slurmdbd.pid" slurmdbd
}

# wait_node_up: until the node is idle (or busy); resume it once if an earlier run left it down/drained
wait_node_up() {
  local start resumed=0 state
  start=$(date +%s)
  while :; do
    state=$(node_state)
    [[ "$state" =~ $USABLE ]] && return 0
    if [ "$resumed" = 0 ] && [[ "$state" =~ (down|drain|fail) ]] && [ $(($(date +%s) - start)) -ge 5 ]; then
      say "node $NODE is '$state': resuming it"
      scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true
      resumed=1
    fi
    if [ $(($(date +%s) - start)) -ge 60 ]; then
      show_log "$STATE/log/slurmd.log"; show_log "$STATE/log/slurmctld.log"
      die "node $NODE is '${state:-unknown}', not idle"
    fi
    sleep 0.25
  done
}

# lock: serialize start/stop (e.g. parallel test workers all calling start). Daemons are
# started with 9>&- so they do not inherit (and hold) the lock.
lock() {
  exec 9>"$STATE/.lock"
  flock -w 300 9 || die "another slurm.sh holds $STATE/.lock"
}

cmd_start() {
  local t0 changed=0
  t0=$(now)
  # Fast path: everything already up.
  if configs_current && status_report >/dev/null 2>&1; then
    summary; return 0
  fi
  need_root start
  install -d -m 0755 "$STATE"
  lock
  if configs_current && status_report >/dev/null 2>&1; then summary; return 0; fi   # a concurrent start won
  cmd_install
  check_etc_ownership
  install -d -m 0755 "$STATE/run" "$STATE/log" "$STATE/mysql" "$STATE/slurmd" "$ETC"
  install -d -m 0700 "$STATE/slurmctld"

  start_munge
  start_mariadb

  slurm_conf | write_if_changed "$ETC/slurm.conf" 0644 && changed=1
  slurmdbd_conf | write_if_changed "$ETC/slurmdbd.conf" 0600 && changed=1
  cp "$ETC/slurm.conf" "$STATE/slurm.conf"   # a copy next to the logs, for reference
  if [ "$changed" = 1 ] && { pid_alive "$STATE/run/slurmctld.pid" slurmctld || pid_alive "$STATE/run/slurmdbd.pid" slurmdbd; }; then
    say "configuration changed: restarting the slurm daemons"
    stop_slurm_daemons
  fi

  start_slurmdbd
  start_slurmctld
  start_slurmd

  wait_node_up
  wait_for 60 "registration" ctld_registered \
    || { show_log "$STATE/log/slurmctld.log"; die "slurmctld did not register with slurmdbd"; }
  wait_for 30 sacct sacct_ok || die "sacct does not answer"
  status_report >/dev/null || { status_report || true; die "cluster is not usable"; }
  say "ready in $(since "$t0") s"
  summary
}

cmd_status() {
  if status_report; then summary; return 0; fi
  return 1
}

cmd_stop() {
  local any=0 f
  for f in slurmd slurmctld slurmdbd; do [ -f "$STATE/run/$f.pid" ] && any=1; done
  [ -f "$STATE/mysql/run/mysqld.pid" ] && any=1
  [ -f "$STATE/munge/munged.pid" ] && any=1
  if [ "$any" = 0 ]; then say "nothing to stop (no pid files in $STATE)"; return 0; fi
  need_root stop
  lock
  stop_slurm_daemons
  stop_pid "$STATE/mysql/run/mysqld.pid" mariadbd
  stop_pid "$STATE/munge/munged.pid" munged
}

# sacct_state JOBID: the job's state as accounting reports it ("" when not recorded yet)
sacct_state() { sacct -n -X -P -j "$1" -o State 2>/dev/null | awk 'NR == 1 {print $1}'; }

# wait_state JOBID PATTERN SECONDS: poll sacct until the state matches PATTERN (regex)
wait_state() {
  local deadline state
  deadline=$(($(date +%s) + $3))
  while :; do
    state=$(sacct_state "$1")
    [[ "$state" =~ ^($2)$ ]] && return 0
    [ "$(date +%s)" -lt "$deadline" ] || { echo "job $1 is '${state:-not in sacct}', wanted $2" >&2; return 1; }
    sleep 0.25
  done
}

now() { date +%s.%N; }
since() { printf '%.1f' "$(awk -v a="$1" -v b="$(now)" 'BEGIN{print b-a}')"; }

cmd_smoke() {
  cmd_status >/dev/null || { cmd_status || true; die "cluster is not up: run scripts/slurm.sh start"; }
  local tmp t0 id out
  tmp=$(mktemp -d)
  SMOKE_TMP=$tmp
  trap 'rm -rf "$SMOKE_TMP"' EXIT
  t0=$(now)
  id=$(sbatch --parsable -p "$PARTITION" -J smoke-ok -o "$tmp/%j.out" -D "$tmp" --wrap 'hostname; sleep 1')
  id=${id%%;*}
  wait_state "$id" COMPLETED 120 || { scontrol show job "$id" || true; die "job $id did not complete"; }
  out=$(cat "$tmp/$id.out" 2>/dev/null || true)
  echo "smoke: job $id COMPLETED in $(since "$t0") s (submit -> sacct), output: ${out:-<none>}"

  t0=$(now)
  id=$(sbatch --parsable -p "$PARTITION" -J smoke-cancel -o /dev/null -D "$tmp" --wrap 'sleep 60')
  id=${id%%;*}
  wait_state "$id" RUNNING 60 || die "job $id did not start"
  echo "smoke: job $id RUNNING after $(since "$t0") s"
  t0=$(now)
  scancel "$id"
  wait_state "$id" CANCELLED 60 || die "job $id is not CANCELLED in sacct"
  echo "smoke: job $id CANCELLED in sacct $(since "$t0") s after scancel"
  echo "smoke: ok"
}

case "${1:-}" in
  install) cmd_install; say "packages installed: ${PACKAGES[*]}" ;;
  start) cmd_start ;;
  status) cmd_status ;;
  stop) cmd_stop ;;
  smoke) cmd_smoke ;;
  *) echo "usage: $0 {install|start|status|stop|smoke}" >&2; exit 2 ;;
esac
