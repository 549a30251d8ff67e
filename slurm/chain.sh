#!/bin/bash
# Submit one run as a chain of K jobs, each starting after the previous one ends
# (--dependency=afterany), for clusters where jobs cannot requeue themselves. Each
# job resumes from OUTPUT_DIR/checkpoints/latest; a job that finishes the run
# cancels the rest of the chain.
#
#   slurm/chain.sh K CONFIG OUTPUT_DIR [key=value ...] [-- sbatch options ...]
#
#   slurm/chain.sh 5 configs/flan_t5_base.yaml /scratch/runs/t5 -- --nodes=4 --gpus-per-node=8 --time=4:00:00
#
# FLANFORGE_SBATCH_SCRIPT picks the script (default slurm/train.sbatch next to this file).
set -euo pipefail
here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=slurm/common.sh
source "$here/common.sh"
FF_SCRIPT_NAME=slurm/chain.sh

usage="usage: slurm/chain.sh K CONFIG OUTPUT_DIR [key=value ...] [-- sbatch options ...]"
(($# >= 3)) || ff_die "$FF_EX_USAGE" "$usage"
count=$1
shift
[[ $count =~ ^[1-9][0-9]*$ ]] || ff_die "$FF_EX_USAGE" "K must be a positive number of jobs, got '$count'. $usage"
job_args=()
while (($#)) && [[ $1 != -- ]]; do
    job_args+=("$1")
    shift
done
(($#)) && shift  # the --
sbatch_args=("$@")
((${#job_args[@]} >= 2)) || ff_die "$FF_EX_USAGE" "$usage"
script=${FLANFORGE_SBATCH_SCRIPT:-$here/train.sbatch}

config=${job_args[0]}
output_dir=${job_args[1]}
[[ -f $config ]] || ff_die "$FF_EX_NOINPUT" "config not found: $config"
mkdir -p "$output_dir"
chain_file=$output_dir/.slurm-chain
: >"$chain_file"

prev=""
for ((i = 1; i <= count; i++)); do
    dep=()
    [[ -n $prev ]] && dep=("--dependency=afterany:$prev")
    id=$(sbatch --parsable --export=ALL,FLANFORGE_REQUEUE=0 "${dep[@]}" "${sbatch_args[@]}" \
        "$script" "${job_args[@]}")
    id=${id%%;*}
    echo "$id" >>"$chain_file"
    echo "submitted job $id ($i/$count)${prev:+ after $prev}"
    prev=$id
done
