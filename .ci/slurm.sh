#!/usr/bin/env bash
# A single-node SLURM cluster on this machine, for tests/test_slurm.py (`builder run --cluster
# slurm` through real dask-jobqueue jobs): installs Debian's slurm-wlm and munge, writes a
# minimal slurm.conf (no cgroups, no accounting), starts munged, slurmctld and slurmd, and
# waits until `sinfo` shows the node idle.
#
#   sudo bash .ci/slurm.sh      # idempotent: a running cluster is left as it is
#
# Exits non-zero with one line saying why when it cannot (not root, no apt-get, the packages
# cannot be installed, a daemon does not start). Needs root (Debian/Ubuntu, apt-get).
set -euo pipefail

STATE=${GAIT_SLURM_STATE:-/var/spool/gait-slurm}  # state, spool and logs of the daemons
CONF=/etc/slurm/slurm.conf
MARK="# written by gait-builder .ci/slurm.sh"
WAIT_S=${GAIT_SLURM_WAIT_S:-60}

fail() {
    echo "slurm.sh: $*" >&2
    exit 1
}

node_state() { sinfo -h -N -o %t 2>/dev/null | head -n 1; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq "$((seconds * 4))"); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.25
    done
    fail "$what did not come up within ${seconds}s (logs: $STATE/log)"
}

# A cluster that already answers with an idle or busy node: nothing to do.
if command -v sinfo >/dev/null && timeout 10 sinfo -h >/dev/null 2>&1; then
    case "$(node_state)" in idle* | mix* | alloc*)
        echo "slurm.sh: SLURM already running ($(sinfo -h -N -o '%N %t %c CPUs'))"
        exit 0
        ;;
    esac
fi

[[ $(id -u) == 0 ]] || fail "needs root to install and start SLURM (run it with sudo)"

# --- install ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sinfo >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || fail "apt-get not found: install slurm-wlm and munge by hand"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null 2>&1 || fail "apt-get update failed (no package registry?)"
    apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge \
        >"${TMPDIR:-/tmp}/gait-slurm-apt.log" 2>&1 \
        || fail "apt-get install slurm-wlm munge failed (see ${TMPDIR:-/tmp}/gait-slurm-apt.log)"
fi

# --- munge: the daemons' and clients' authentication --------------------------------------------
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    [[ -s /etc/munge/munge.key ]] || mungekey --create --keyfile=/etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
    install -d -o munge -g munge -m 755 /run/munge
    install -d -o munge -g munge -m 700 /var/lib/munge /var/log/munge
    runuser -u munge -- /usr/sbin/munged || fail "munged did not start (/var/log/munge/munged.log)"
    wait_for 20 munged bash -c 'munge -n | unmunge'
fi

# --- slurm.conf: one node (this machine), one partition ---------------------------------------
host=$(hostname -s)
cpus=$(nproc)
memory_mb=$(awk '/MemTotal/ { print int($2 / 1024 * 0.9) }' /proc/meminfo)
if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
    fail "$CONF exists and was not written by this script; not replacing it"
fi
install -d -m 755 /etc/slurm "$STATE" "$STATE/ctld" "$STATE/d" "$STATE/log"
cat >"$CONF.new" <<EOF
$MARK
ClusterName=gait-ci
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
SlurmdTimeout=60
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$memory_mb State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
mv "$CONF.new" "$CONF"

# --- daemons -----------------------------------------------------------------------------------
if ! timeout 10 scontrol ping 2>/dev/null | grep -q "is UP"; then
    slurmctld || fail "slurmctld did not start ($STATE/log/slurmctld.log)"
    wait_for "$WAIT_S" slurmctld bash -c 'scontrol ping | grep -q "is UP"'
fi
if ! { [[ -s $STATE/slurmd.pid ]] && kill -0 "$(cat "$STATE/slurmd.pid")" 2>/dev/null; }; then
    slurmd || fail "slurmd did not start ($STATE/log/slurmd.log)"
fi
node_ready() { case "$(node_state)" in idle* | mix* | alloc*) return 0 ;; *) return 1 ;; esac }
for _ in $(seq "$((WAIT_S * 4))"); do
    node_ready && break
    case "$(node_state)" in down* | drain* | fail*)  # e.g. left down by an earlier run
        scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    sleep 0.25
done
node_ready || fail "node $host is '$(node_state)', not idle, after ${WAIT_S}s ($STATE/log)"
echo "slurm.sh: SLURM running ($(sinfo -h -N -o '%N %t %c CPUs %m MB'))"
