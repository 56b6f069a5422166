#!/usr/bin/env bash
# A single-node Slurm cluster on localhost from Debian's packages (slurmctld, slurmd, munge), for the
# executor tests and for trying winnow's Slurm executor on one machine. Run as root:
#
#   apt-get install -y slurmctld slurmd slurm-client munge
#   bash .ci/slurm_localhost.sh [STATE_DIR]      # prints the SLURM_CONF line to export
#
# No cgroups (containers rarely allow them): proctrack/linuxproc and task/none. The node is named
# `localhost` and slurmd is started with -N localhost, so the machine's hostname need not resolve.
# DependencyParameters=kill_invalid_depend cancels a job whose dependency failed instead of leaving it
# pending forever. Idempotent: a second call restarts the daemons with a fresh configuration.
set -euo pipefail
STATE=${1:-/var/tmp/winnow-slurm}
CONF=$STATE/slurm.conf
mkdir -p "$STATE"/{ctld,d,log}

CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat >"$CONF" <<EOF
ClusterName=winnow-local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DependencyParameters=kill_invalid_depend
ReturnToService=2
MinJobAge=600
KillWait=5
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/d
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

pkill -x slurmd || true
pkill -x slurmctld || true
if ! pgrep -x munged >/dev/null; then
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none; chown munge:munge /etc/munge/munge.key; chmod 400 /etc/munge/munge.key; }
  runuser -u munge -- /usr/sbin/munged
fi
sleep 0.5
export SLURM_CONF=$CONF
slurmctld -c -f "$CONF"   # -c: clear saved state (jobs of an earlier bring-up)
slurmd -N localhost -f "$CONF"

for _ in $(seq 60); do
  if sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^idle'; then
    echo "export SLURM_CONF=$CONF"
    exit 0
  fi
  sleep 0.5
done
echo "slurm did not come up; logs in $STATE/log" >&2
sinfo -N -l >&2 || true
tail -n 20 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
exit 1
