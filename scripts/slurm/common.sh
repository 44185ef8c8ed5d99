# Shared by the suites' sbatch scripts (sourced, never run):
#   source "${PRIMAL_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}/scripts/slurm/common.sh"
# which is why those scripts are submitted from the repository root (or with PRIMAL_ROOT set to it).
#
#   slurm_prepare                 cd to the repository, create runs/slurm, choose PYTHON, headless matplotlib
#   slurm_procs_per_node          training processes per node: NPROC_PER_NODE, else the node's GPUs, else 1
#   slurm_workers_per_proc [N]    data-loader workers per process: CPUs of the task / processes (N when unknown)
#   slurm_suite_uses_ddp SUITE    true when SUITE's Python code calls core.engine.init_distributed
#   slurm_master_addr             first host of the job's node list: where the c10d rendezvous lives
#   slurm_requeueable CMD...      run CMD; on SIGUSR1 (sent before the time limit by --signal=B:USR1@SECONDS) stop it
#                                 with SIGTERM, let it checkpoint, and put the job back in the queue
#   slurm_torchrun_node MOD ...   torchrun on this node, one process per GPU (--standalone), requeueable
#   slurm_torchrun_nodes MOD ...  srun one torchrun per node, c10d rendezvous on the first node, requeueable
#   slurm_sweep_count FILE        number of runs in a sweep file
#   slurm_sweep_args FILE [I]     SWEEP_ARGS = flags of run I (default: the array index), SWEEP_NAME = <file stem>-I
#   slurm_sweep_tasks FILE CMD... srun every task of the job; task k runs CMD + the runs k, k+T, k+2T, ... of FILE
#
# A sweep file holds one run per line: the flags that run adds to the command (shell quoting allowed); blank lines
# and lines starting with # are skipped, and the first run has index 0.
set -euo pipefail
SLURM_COMMON=$(realpath "${BASH_SOURCE[0]}")

slurm_prepare() {
    cd "${PRIMAL_ROOT:-${SLURM_SUBMIT_DIR:-$PWD}}"
    mkdir -p runs/slurm
    if [ -z "${PYTHON:-}" ]; then
        if [ -x .venv/bin/python ]; then PYTHON=$PWD/.venv/bin/python; else PYTHON=python; fi
    fi
    export PYTHON MPLBACKEND=${MPLBACKEND:-Agg}
    # SLURM >= 22.05: job steps no longer inherit --cpus-per-task from the batch allocation
    [ -n "${SLURM_CPUS_PER_TASK:-}" ] && export SRUN_CPUS_PER_TASK=$SLURM_CPUS_PER_TASK
    echo "job ${SLURM_JOB_ID:-none}${SLURM_ARRAY_TASK_ID:+ index $SLURM_ARRAY_TASK_ID} on" \
         "${SLURM_JOB_NODELIST:-$(hostname)}, python $PYTHON"
}

slurm_procs_per_node() {
    if [ -n "${NPROC_PER_NODE:-}" ]; then
        echo "$NPROC_PER_NODE"
    elif [ "${SLURM_GPUS_ON_NODE:-0}" -gt 0 ] 2>/dev/null; then
        echo "$SLURM_GPUS_ON_NODE"
    else
        echo 1
    fi
}

slurm_workers_per_proc() {
    local workers=$(( ${SLURM_CPUS_PER_TASK:-${1:-2}} / $(slurm_procs_per_node) ))
    echo $(( workers > 0 ? workers : 0 ))
}

slurm_suite_uses_ddp() {
    grep -rqs --include='*.py' 'init_distributed(' "$1"
}

slurm_master_addr() {
    if [ -n "${SLURM_JOB_NODELIST:-}" ]; then
        scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n 1
    else
        echo 127.0.0.1
    fi
}

slurm_requeueable() {
    "$@" &
    SLURM_CHILD=$!
    trap 'echo "time limit near: stopping the run (SIGTERM) so that it checkpoints, then requeueing ${SLURM_JOB_ID:-}"
          kill -TERM "$SLURM_CHILD" 2>/dev/null; wait "$SLURM_CHILD"
          [ -n "${SLURM_JOB_ID:-}" ] && scontrol requeue "$SLURM_JOB_ID"' USR1
    local status=0
    wait "$SLURM_CHILD" || status=$?
    return "$status"
}

slurm_torchrun_node() {
    local module=$1
    shift
    slurm_requeueable "$PYTHON" -m torch.distributed.run --standalone --nnodes 1 \
        --nproc_per_node "$(slurm_procs_per_node)" -m "$module" "$@"
}

slurm_torchrun_nodes() {
    local module=$1 nodes=${SLURM_NNODES:-1}
    shift
    slurm_requeueable srun --kill-on-bad-exit=1 --nodes "$nodes" --ntasks "$nodes" --ntasks-per-node 1 \
        "$PYTHON" -m torch.distributed.run --nnodes "$nodes" --nproc_per_node "$(slurm_procs_per_node)" \
        --rdzv_id "${SLURM_JOB_ID:-0}" --rdzv_backend c10d --rdzv_endpoint "$(slurm_master_addr):${MASTER_PORT:-29500}" \
        -m "$module" "$@"
}

slurm_sweep_runs() {  # the run lines of a sweep file, one per line
    [ -f "$1" ] || { echo "sweep file $1 not found: expected a text file with one run (its flags) per line" >&2; exit 2; }
    grep -Ev '^[[:space:]]*(#|$)' "$1" || true
}

slurm_sweep_count() {
    slurm_sweep_runs "$1" | wc -l
}

slurm_sweep_args() {
    local file=$1 index=${2:-${SLURM_ARRAY_TASK_ID:-0}} runs
    mapfile -t runs < <(slurm_sweep_runs "$file")
    if [ "$index" -ge "${#runs[@]}" ]; then
        echo "run $index asked for, but $file holds ${#runs[@]} runs: submit with --array=0-$(( ${#runs[@]} - 1 ))" >&2
        exit 2
    fi
    mapfile -d '' -t SWEEP_ARGS < <("$PYTHON" -c 'import shlex, sys; print(*shlex.split(sys.argv[1]), sep="\0", end="")' \
        "${runs[$index]}")
    SWEEP_NAME="$(basename "${file%.*}")-$index"
    echo "run $index of $file: ${runs[$index]}"
}

slurm_sweep_worker() {  # inside one srun task: the runs of this task, one after another
    local file=$1 count index
    shift
    count=$(slurm_sweep_count "$file")
    for (( index = ${SLURM_PROCID:-0}; index < count; index += ${SLURM_NTASKS:-1} )); do
        slurm_sweep_args "$file" "$index"
        "$@" "${SWEEP_ARGS[@]}"
    done
}

slurm_sweep_tasks() {
    local file=$1
    shift
    [ "$(slurm_sweep_count "$file")" -gt 0 ] || { echo "sweep file $file holds no runs" >&2; exit 2; }
    slurm_requeueable srun --kill-on-bad-exit=1 \
        bash -c 'source "$0"; slurm_sweep_worker "$@"' "$SLURM_COMMON" "$file" "$@"
}
