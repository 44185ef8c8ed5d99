#!/usr/bin/env bash
# A single-node SLURM cluster on localhost (munge + slurmctld + slurmd, two fake GPUs as GRES), for tests and
# for trying the suites' sbatch scripts. Needs root and Debian's slurm-wlm + munge.
#   scripts/slurm_local.sh start [DIR]   -> prints "export SLURM_CONF=DIR/slurm.conf"
#   scripts/slurm_local.sh stop  [DIR]
set -euo pipefail
action=${1:-start}
B=${2:-/tmp/primal-slurm}

stop() {
    for pid_file in "$B/slurmd.pid" "$B/slurmctld.pid"; do
        [ -f "$pid_file" ] && kill "$(cat "$pid_file")" 2>/dev/null || true
    done
    pkill -f "slurmctld -D -f $B/slurm.conf" 2>/dev/null || true
    pkill -f "slurmd -D -f $B/slurm.conf" 2>/dev/null || true
}

if [ "$action" = stop ]; then stop; exit 0; fi
if [ "$action" != start ]; then echo "usage: $0 start|stop [DIR]" >&2; exit 2; fi
for tool in slurmctld slurmd munged sbatch; do
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || { echo "missing $tool: apt-get install slurm-wlm munge" >&2; exit 3; }
done
[ "$(id -u)" = 0 ] || { echo "the local cluster recipe runs as root" >&2; exit 3; }
stop
mkdir -p "$B/state" "$B/spool"
memory_mb=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) * 8 / 10 / 1024 ))
cat > "$B/slurm.conf" <<CONF
ClusterName=local
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$B/state
SlurmdSpoolDir=$B/spool
SlurmctldPidFile=$B/slurmctld.pid
SlurmdPidFile=$B/slurmd.pid
SlurmctldLogFile=$B/slurmctld.log
SlurmdLogFile=$B/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
ReturnToService=2
GresTypes=gpu
JobCompType=jobcomp/filetxt
JobCompLoc=$B/jobcomp.txt
JobRequeue=1
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$(nproc) RealMemory=$memory_mb Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
[ -e "$B/fakegpu0" ] || mknod "$B/fakegpu0" c 1 3
[ -e "$B/fakegpu1" ] || mknod "$B/fakegpu1" c 1 5
printf "AutoDetect=off\nNodeName=localhost Name=gpu File=%s/fakegpu[0-1]\n" "$B" > "$B/gres.conf"
mkdir -p /run/munge && chown munge:munge /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
export SLURM_CONF=$B/slurm.conf
/usr/sbin/slurmctld -D -f "$SLURM_CONF" >/dev/null 2>&1 &
/usr/sbin/slurmd -D -N localhost -f "$SLURM_CONF" >/dev/null 2>&1 &
for _ in $(seq 1 60); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
        echo "export SLURM_CONF=$SLURM_CONF"
        exit 0
    fi
    sleep 0.5
done
echo "the local cluster did not come up; see $B/slurmctld.log and $B/slurmd.log" >&2
exit 1
