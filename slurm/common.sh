# shellcheck shell=bash
# Shell helpers shared by slurm/train.sbatch, slurm/train_srun.sbatch and slurm/chain.sh.
# Sourced, not run. Everything here prints to stdout/stderr, which sbatch sends to
# the job's log; each helper that gives up names what is wrong and exits with a
# sysexits code a test (or a person reading sacct) can tell apart:
#   64 usage   66 config missing   65 bad checkpoint   69 flanforge not found   75 output dir locked

FF_EX_USAGE=64
FF_EX_DATAERR=65
FF_EX_NOINPUT=66
FF_EX_UNAVAILABLE=69
FF_EX_LOCKED=75

# Run directory names, as flanforge.launcher.training.rundir.RunDir spells them
# (tests/launcher/training/test_rundir.py checks that the two agree).
FF_CHECKPOINTS=checkpoints
FF_LATEST=latest
FF_TRAINER_STATE=trainer.json
FF_PREEMPTED=PREEMPTED
FF_LOCK=.lock

ff_log() { echo "[flanforge-slurm $(date '+%F %T')] $*"; }

ff_die() {  # ff_die CODE MESSAGE: one clear line in the job log, then exit CODE
    local code=$1
    shift
    echo "[flanforge-slurm $(date '+%F %T')] ERROR: $*" >&2
    exit "$code"
}

# ff_parse_args CONFIG OUTPUT_DIR [key=value ...]: sets FF_CONFIG, FF_OUTPUT_DIR, FF_OVERRIDES.
ff_parse_args() {
    if (($# < 2)); then
        ff_die "$FF_EX_USAGE" "usage: sbatch [sbatch options] $FF_SCRIPT_NAME CONFIG OUTPUT_DIR [key=value ...]"
    fi
    FF_CONFIG=$1
    FF_OUTPUT_DIR=$2
    shift 2
    FF_OVERRIDES=("$@")
    local kv
    for kv in "${FF_OVERRIDES[@]}"; do
        [[ $kv == *=* ]] || ff_die "$FF_EX_USAGE" "override '$kv' is not key=value"
        [[ $kv == output_dir=* ]] && ff_die "$FF_EX_USAGE" "give the output dir as the second argument, not as '$kv'"
    done
    # Relative paths are the submit directory's (sbatch starts the job there); make
    # them absolute so every node and every requeue sees the same files.
    [[ $FF_CONFIG == /* ]] || FF_CONFIG=$PWD/$FF_CONFIG
    [[ $FF_OUTPUT_DIR == /* ]] || FF_OUTPUT_DIR=$PWD/$FF_OUTPUT_DIR
}

ff_has_override() {  # ff_has_override KEY: did the user pass KEY=... ?
    local kv
    for kv in "${FF_OVERRIDES[@]}"; do
        [[ $kv == "$1="* ]] && return 0
    done
    return 1
}

ff_check_config() {
    [[ -f $FF_CONFIG ]] ||
        ff_die "$FF_EX_NOINPUT" "config not found: $FF_CONFIG (relative paths are taken from the directory sbatch was run in)"
    [[ -r $FF_CONFIG ]] || ff_die "$FF_EX_NOINPUT" "config not readable: $FF_CONFIG"
}

# ff_find_flanforge: FF_BIN = $FLANFORGE (a path) or `flanforge` on PATH.
ff_find_flanforge() {
    FF_BIN=${FLANFORGE:-flanforge}
    command -v "$FF_BIN" >/dev/null ||
        ff_die "$FF_EX_UNAVAILABLE" "'$FF_BIN' not found: activate the environment flanforge is installed in before sbatch, or set FLANFORGE=/path/to/bin/flanforge"
    FF_BIN=$(command -v "$FF_BIN")
}

# ff_lock: hold <output_dir>/.lock for the life of this shell, so two jobs never
# write one run. The lock goes with the shell (requeue, cancel, node crash).
ff_lock() {
    mkdir -p "$FF_OUTPUT_DIR" || ff_die "$FF_EX_NOINPUT" "cannot create output dir $FF_OUTPUT_DIR"
    local lock=$FF_OUTPUT_DIR/$FF_LOCK
    # Append mode: opening must not wipe the holder's name before we know we own it.
    exec 9>>"$lock" || ff_die "$FF_EX_NOINPUT" "cannot open $lock"
    if ! flock -n 9; then
        ff_die "$FF_EX_LOCKED" "output dir $FF_OUTPUT_DIR is locked by another run ($(head -n 1 "$lock" 2>/dev/null || echo '?')); wait for it, scancel it, or use another output dir"
    fi
    echo "job ${SLURM_JOB_ID:-none} on $(hostname -s) pid $$ since $(date '+%F %T')" >"$lock"
}

# ff_check_checkpoint: what the script can check cheaply about checkpoints/latest
# (the program validates the checkpoint itself too). A fresh output dir passes.
ff_check_checkpoint() {
    local root=$FF_OUTPUT_DIR/$FF_CHECKPOINTS
    local latest=$root/$FF_LATEST tag
    [[ -e $latest || -L $latest ]] || return 0
    [[ -f $latest ]] || ff_die "$FF_EX_DATAERR" "$latest is not a regular file; cannot resume. Fix it or start a new output dir"
    tag=$(head -c 256 "$latest" | tr -d '[:space:]')
    if [[ -z $tag ]]; then
        ff_die "$FF_EX_DATAERR" "$latest is empty; cannot resume. Write an existing tag into it (ls $root) or start a new output dir"
    fi
    if [[ ! $tag =~ ^[A-Za-z0-9._-]+$ ]] || (($(wc -l <"$latest") > 1)); then
        ff_die "$FF_EX_DATAERR" "$latest is corrupt (it should hold one checkpoint tag); cannot resume. Write an existing tag into it (ls $root) or start a new output dir"
    fi
    if [[ ! -s $root/$tag/$FF_TRAINER_STATE ]]; then
        ff_die "$FF_EX_DATAERR" "$latest names checkpoint '$tag', but $root/$tag is missing or incomplete (no $FF_TRAINER_STATE); cannot resume. Write an older complete tag into it or start a new output dir"
    fi
    ff_log "resuming from checkpoint $tag"
}

# ff_master_addr: the first host of the job's node list (where rank 0 runs); where
# that name does not resolve (several slurmd on one machine, as slurm/cluster.sh
# can run), the address Slurm itself reaches the node at.
ff_master_addr() {
    local host addr
    host=$(scontrol show hostnames "${SLURM_JOB_NODELIST:-}" 2>/dev/null | head -n 1)
    host=${host:-$(hostname -s)}
    if ! getent hosts "$host" >/dev/null 2>&1; then
        addr=$(scontrol show node -o "$host" 2>/dev/null | sed -n 's/.* NodeAddr=\([^ ]*\).*/\1/p')
        host=${addr:-$host}
    fi
    echo "$host"
}

# ff_master_port: derived from the job id, so every node (and every requeue of the
# job) computes the same one; 10000-29999, below Linux's ephemeral ports. Same
# formula as flanforge.launcher.ranks.slurm_nodes.slurm_job_port.
ff_master_port() {
    echo $((10000 + ${SLURM_JOB_ID:-0} % 20000))
}

# ff_trap_early: a signal that comes before the step starts (the USR1 ahead of the
# time limit, a TERM from scancel) must not kill the shell silently; ff_run_step
# then gives up with a message instead of starting.
ff_trap_early() {
    FF_PENDING_SIGNAL=""
    trap 'FF_PENDING_SIGNAL=USR1' USR1
    trap 'FF_PENDING_SIGNAL=TERM' TERM
}

# ff_prepare_output: lock the output dir, check what can be resumed, clear the
# marker a previous (preempted) attempt left.
ff_prepare_output() {
    ff_lock
    ff_check_checkpoint
    rm -f "$FF_OUTPUT_DIR/$FF_PREEMPTED"
}

ff_header() {
    ff_log "job ${SLURM_JOB_ID:-none} ($FF_SCRIPT_NAME) restart ${SLURM_RESTART_COUNT:-0} on ${SLURM_JOB_NODELIST:-$(hostname -s)} (${SLURM_JOB_NUM_NODES:-1} node(s))"
    ff_log "config $FF_CONFIG; output dir $FF_OUTPUT_DIR; overrides: ${FF_OVERRIDES[*]:-none}"
}

# ff_run_step CMD...: run CMD (an srun) in the background, forward USR1/TERM
# to it (srun passes them on to its tasks), and wait until it has really exited.
# Sets FF_STEP_RC, FF_SIGNALLED (the last signal forwarded) and FF_GOT_TERM.
ff_run_step() {
    FF_SIGNALLED=""
    FF_GOT_TERM=0
    case ${FF_PENDING_SIGNAL:-} in
        # Requeueing here could loop for ever without progress when --time is
        # shorter than the --signal lead time.
        USR1) ff_die 1 "SIGUSR1 came before training started: the job's time limit is shorter than the --signal lead time (or it was preempted at once); raise --time and resubmit" ;;
        TERM) ff_die 143 "SIGTERM came before training started (cancelled?); not starting" ;;
    esac
    # 9>&-: the step must not inherit the lock's descriptor (it would keep the lock
    # alive after this shell is gone).
    "$@" 9>&- &
    FF_STEP_PID=$!
    trap '_ff_forward USR1' USR1
    trap '_ff_forward TERM' TERM
    local rc
    while :; do
        wait "$FF_STEP_PID"
        rc=$?
        # wait returns >128 when a trapped signal interrupts it; the step goes on.
        if ((rc > 128)) && kill -0 "$FF_STEP_PID" 2>/dev/null; then
            continue
        fi
        break
    done
    trap - USR1 TERM
    FF_STEP_RC=$rc
}

_ff_forward() {
    FF_SIGNALLED=$1
    [[ $1 == TERM ]] && FF_GOT_TERM=1
    ff_log "got SIG$1: forwarding it to the training step (checkpoint, then stop)"
    kill -s "$1" "$FF_STEP_PID" 2>/dev/null || true
}

# ff_finish: requeue the job if training stopped early on USR1 (the time-limit
# warning, or a preemption asked for with `scancel --signal=USR1`), else exit with
# the step's status. SIGTERM means scancel or the time limit itself: the run
# checkpoints but the job is not requeued. FLANFORGE_REQUEUE=0 (slurm/chain.sh)
# leaves the rest of the run to the next job of the chain.
ff_finish() {
    local marker=$FF_OUTPUT_DIR/$FF_PREEMPTED
    if [[ -e $marker ]]; then
        if ((FF_GOT_TERM)); then
            ff_log "training stopped on SIGTERM (scancel or the time limit) and checkpointed; not requeueing: submit the same command again to resume"
            exit 0
        fi
        if [[ ${FLANFORGE_REQUEUE:-1} == 0 ]]; then
            ff_log "training stopped early (status $FF_STEP_RC) and checkpointed; requeue disabled, the next job of the chain resumes it"
            exit 0
        fi
        ff_log "training stopped early (status $FF_STEP_RC) and checkpointed; requeueing job $SLURM_JOB_ID"
        # Release the lock first: the requeued job may start on this node at once.
        exec 9>&-
        if scontrol requeue "$SLURM_JOB_ID"; then
            # slurmctld now ends this shell; nothing after this line is guaranteed to run.
            exit 0
        fi
        ff_die 1 "scontrol requeue $SLURM_JOB_ID failed (job cancelled or past its time limit?); resubmit the same command to resume"
    fi
    if ((FF_STEP_RC == 0)); then
        ff_log "training finished"
        _ff_cancel_rest_of_chain
    elif [[ -n $FF_SIGNALLED ]]; then
        ff_log "training exited with status $FF_STEP_RC after SIG$FF_SIGNALLED without writing $marker; not requeueing"
    else
        ff_log "training failed with status $FF_STEP_RC"
    fi
    exit "$FF_STEP_RC"
}

# A finished run leaves nothing for the later jobs of a chain (slurm/chain.sh writes
# their ids to <output_dir>/.slurm-chain): cancel the ones still pending.
_ff_cancel_rest_of_chain() {
    local chain=$FF_OUTPUT_DIR/.slurm-chain id pending=()
    [[ -f $chain ]] || return 0
    while read -r id; do
        [[ -n $id && $id != "${SLURM_JOB_ID:-}" ]] || continue
        if [[ $(squeue -h -j "$id" -o %T 2>/dev/null) == PENDING ]]; then
            pending+=("$id")
        fi
    done <"$chain"
    if ((${#pending[@]})); then
        ff_log "run complete: cancelling the rest of the chain: ${pending[*]}"
        scancel "${pending[@]}" || true
    fi
}
