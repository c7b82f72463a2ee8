#!/usr/bin/env bash
# GPU check of the sharding engines: the tiny section of presets/oasst-sft.yaml trains under
# torchrun on every visible GPU with DeepSpeed ZeRO-3 (seed 001's JSON) and with FSDP2, each
# in bf16 and fp16. Prints PASS or FAIL per run (with the log's tail on failure) and exits 1
# when any run fails, 2 when the machine can't run the check at all.
#
# On a GPU machine, from a checkout of the repository:
#   make install-dev && .venv/bin/pip install -e '.[deepspeed]'
#   bash scripts/gpu_check.sh
#
# Environment: PYTHON (default .venv/bin/python, else python3), NPROC (processes; default
# every GPU), OUT (run directories and logs; default runs/gpu_check), RUN_TIMEOUT (seconds a
# run may take before it counts as hung; default 900).
set -uo pipefail  # no -e: a failing run is reported, and the next one still runs

cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 2
if [[ -z ${PYTHON:-} ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
OUT=${OUT:-runs/gpu_check}
RUN_TIMEOUT=${RUN_TIMEOUT:-900}
DS_JSON=examples/deepspeed/zero3_config_sft.json

if [[ -z ${NPROC:-} ]]; then
    NPROC=$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())') || exit 2
fi
if (( NPROC < 1 )); then
    echo "gpu_check: no GPU visible to torch (torch.cuda.device_count() is 0)" >&2
    exit 2
fi
if ! "$PYTHON" -c 'import deepspeed' 2>/dev/null; then
    echo "gpu_check: deepspeed is not installed for $PYTHON; pip install -e '.[deepspeed]'" >&2
    exit 2
fi
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader
fi
"$PYTHON" -c 'import deepspeed, torch, transformers; print(f"torch {torch.__version__}, '\
'transformers {transformers.__version__}, deepspeed {deepspeed.__version__}")'
echo "gpu_check: $NPROC process(es), runs and logs in $OUT"
mkdir -p "$OUT"

# Two micro-batches of 2 per process and step: gradient accumulation is exercised, and the
# global batch divides on any number of GPUs. The tiny section saves at step 6 and
# evaluates every 4 steps, so checkpointing and evaluation run sharded too.
MICRO=2
GLOBAL=$(( MICRO * NPROC * 2 ))
failures=0

check() {  # check NAME CHECKPOINT_GLOB [--set KEY=VALUE ...]
    local name=$1 engine_files=$2 log="$OUT/$1.log" run_dir="$OUT/$1"
    shift 2
    local -a command=(timeout "$RUN_TIMEOUT" "$PYTHON" -m torch.distributed.run --standalone
                      --nproc_per_node "$NPROC" -m lmforge train presets/oasst-sft.yaml defaults tiny --overwrite
                      --set "run.output_dir=$run_dir" --set "train.micro_batch_size=$MICRO"
                      --set "train.global_batch_size=$GLOBAL" "$@")
    echo "${command[*]}" > "$log"
    local problem="" status=0
    PYTHONUNBUFFERED=1 "${command[@]}" >> "$log" 2>&1 || status=$?
    if (( status == 124 )); then
        problem="no end after ${RUN_TIMEOUT}s"
    elif (( status )); then
        problem="exit code $status"
    elif [[ ! -f $run_dir/model/config.json ]]; then
        problem="no model in $run_dir/model"
    elif ! compgen -G "$run_dir/checkpoint-*/$engine_files" >/dev/null; then
        # a run that silently ignored the engine would pass everything else
        problem="no $engine_files in $run_dir/checkpoint-*: the engine did not write the checkpoint"
    fi
    if [[ -z $problem ]]; then
        echo "PASS $name"
    else
        echo "FAIL $name ($problem; log: $log)"
        # the one-line user errors and exceptions first: torchrun's summary fills the tail
        grep -E '^(\[rank[0-9]+\]: )?(lmforge: error|[A-Za-z_.]*(Error|Exception)\b)' "$log" | sort -u | head -n 5 |
            sed 's/^/    /'
        tail -n 40 "$log" | sed 's/^/    /'
        failures=$(( failures + 1 ))
    fi
}

for precision in bf16 fp16; do
    # DeepSpeed writes its engine state under global_step<N>/, FSDP2 its full optimizer state
    # as optimizer.bin (plain runs write optimizer.pt)
    check "zero3-$precision" "global_step*" --set "train.precision=$precision" --set "train.deepspeed=$DS_JSON"
    check "fsdp2-$precision" "optimizer.bin" --set "train.precision=$precision" --set "train.fsdp={}"
done

if (( failures )); then
    echo "gpu_check: $failures of 4 runs failed"
    exit 1
fi
echo "gpu_check: all 4 runs passed"
