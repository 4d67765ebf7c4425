#!/usr/bin/env bash
# Issue 18's GPU measurement in one command, on a machine with one H100/H200 and what such a machine
# already has (PyTorch with its Triton, transformers): nothing is installed and no registry is reached.
# liger-kernel and torchao come in GPU_SITE (a folder made by `pip install --no-deps --target`), nanoGPT's
# model.py in NANOGPT (a checkout); bench/README.md says how to prepare both and the shards.
#
#   bench/gpu.sh SHARDS [OUT]
#
# SHARDS: a prepared 16,384-id Gutenberg shards folder (books held out in val) for the held-out-loss
# check. OUT (default runs/gpu) receives the JSON and logs. Each step runs under a time limit, so that
# one that hangs cannot eat the rest, and all of them under BUDGET_S (default 480 s): a step that would
# start with less than 30 s left is skipped. In order, most telling first:
#   1. throughput at GPT-1's shape (compiled, bf16, batch 32 x 512, vocabulary padded to a multiple of
#      64, no dropout), with the matmul ceiling of the same run: genpt's plain path and nanoGPT's model;
#   2. genpt with train.kernels=liger (liger's fused linear + cross-entropy and LayerNorm);
#   3. genpt with train.float8 (torchao's float8 block linears);
#   4. genpt with the backends that each beat the plain path by more than 1%, together (when two did);
#   5. held-out loss: genpt's own loop (TTQ_ARGS, the Muon recipe of docs/performance.md) for as many
#      steps as fill QUALITY_S (60) seconds at the plain path's measured speed, once plain and once
#      with the fastest variant's settings: the same steps and tokens, so the losses compare;
#   6. the step's profile (bench/profile_step.py) with the fastest variant's backends;
#   7. the closing table (bench/gpu_summary.py, also OUT/summary.json).
# BUNDLE=FILE.tar.gz also packs OUT into one archive after each step (the lent GPU machine returns
# at most 8 files). WINNER=liger|float8|best takes that variant as the fastest, measured or not (on the
# CPU, where no backend runs, it is how the smoke test reaches steps 5 and 6). A smoke test of the
# script itself on the CPU, in a few minutes:
#   PYTHON=.venv/bin/python DEVICE=cpu SHAPE=tiny BUDGET_S=900 QUALITY_S=10 WINNER=liger \
#     TTQ_ARGS="--set model.n_layer=2 --set model.n_embd=64 --set model.n_head=2 --set model.n_ctx=64 ..." \
#     bench/gpu.sh SHARDS /tmp/gpu-smoke
set -uo pipefail
cd "$(dirname "$0")/.."
shards="${1:?usage: bench/gpu.sh SHARDS [OUT]}"
out="${2:-runs/gpu}"
ttq_args="${TTQ_ARGS:---optimizer muon --lr 2e-3 --dropout 0 --warmup 200 --schedule linear}"
device="${DEVICE:-cuda}"
shape="${SHAPE:-gpt1}"
nanogpt="${NANOGPT:-.gpu/nanogpt}"
site="${GPU_SITE:-.gpu/site}"
quality_s="${QUALITY_S:-60}"
deadline=$((SECONDS + ${BUDGET_S:-480}))
mkdir -p "$out"
export PYTHONPATH="$PWD/src:$PWD/$site${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv 2>/dev/null || echo "no GPU"
  $python -c "
from importlib.metadata import version, PackageNotFoundError
import torch
def v(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return 'missing'
print('torch', torch.__version__, '| ' + ' | '.join(f'{n} {v(n)}' for n in
      ('transformers', 'triton', 'pytorch-triton', 'liger-kernel', 'torchao')))"
  echo "nanoGPT: $nanogpt ($(test -f "$nanogpt/model.py" && sha256sum "$nanogpt/model.py" | cut -c1-12 || echo missing))"
} | tee "$out/gpu.txt"

run() {  # run NAME SECONDS CMD...: log to OUT/NAME.log, stop it after SECONDS, keep going if it fails
    local name="$1" limit="$2" left=$((deadline - SECONDS)); shift 2
    if ((left < 30)); then echo "!! $name skipped: ${left} s of BUDGET_S left"; return; fi
    ((limit > left)) && limit=$left
    echo "== $name (limit ${limit} s, $((deadline - SECONDS)) s left): $*"
    timeout --kill-after=10 "$limit" "$@" > >(tee "$out/$name.log") 2>&1 || echo "!! $name failed (exit $?)"
    [[ -z "${BUNDLE:-}" ]] || tar czf "$BUNDLE" --exclude=./ttq -C "$out" .
}
throughput() {  # throughput NAME SECONDS ARGS...: GPT-1 shape, bf16, batch 32, compiled, no dropout
    local name="$1" limit="$2"; shift 2
    run "throughput_$name" "$limit" $python bench/train_throughput.py --shape "$shape" --batch 32 --dtype bfloat16 \
        --device "$device" --compile --pad-vocab 64 --dropout 0 --steps 20 --warmup 6 "$@" \
        --save "$out/throughput_$name.json"
}
quality() {  # quality NAME SETTINGS...: genpt's loop for the steps that fill QUALITY_S at the plain speed
    local name="$1"; shift
    rm -rf "$out/ttq"
    # shellcheck disable=SC2086  # TTQ_ARGS is a list of options
    run "quality_$name" $((quality_s + 90)) $python bench/time_to_quality.py --shards "$shards" --seconds "$quality_s" \
        --tokens-per-s "$tps" --set "train.device=$device" $ttq_args "$@" -o "$out/ttq"
    cp "$out/ttq/metrics.jsonl" "$out/quality_${name}_metrics.jsonl" 2>/dev/null
    cp "$out/ttq/time_to_quality.json" "$out/quality_$name.json" 2>/dev/null
    rm -rf "$out/ttq"  # the checkpoint is large; the metrics are kept
}

throughput plain 150 --impls genpt,nanogpt --nanogpt "$nanogpt"
throughput liger 90 --impls genpt --kernels liger
throughput float8 90 --impls genpt --float8
combined=$($python bench/gpu_summary.py "$out" --combination)
if [[ -n "$combined" ]]; then
    # shellcheck disable=SC2086  # the flags are a list
    throughput best 90 --impls genpt $combined
else
    echo "-- no combined run: fewer than two backends beat the plain path by more than 1%"
fi

tps=$($python -c "import json,sys; print(json.load(open(sys.argv[1]))['results']['genpt']['tokens_per_s'])" \
      "$out/throughput_plain.json" 2>/dev/null || echo 520000)
winner_settings=$($python bench/gpu_summary.py "$out" --winner settings ${WINNER:+--force "$WINNER"})
winner_flags=$($python bench/gpu_summary.py "$out" --winner bench ${WINNER:+--force "$WINNER"})
echo "-- plain path: $tps tok/s; fastest variant: ${winner_settings:-the plain path}"
if [[ -n "$winner_settings" ]]; then
    quality plain
    # shellcheck disable=SC2086  # the settings are a list
    quality winner $winner_settings
else
    echo "-- no held-out-loss check: no backend beat the plain path"
fi

# shellcheck disable=SC2086  # the flags are a list
run profile_step 90 $python bench/profile_step.py --device "$device" --shape "$shape" --batch 32 --compile \
    --pad-vocab 64 --dropout 0 $winner_flags --save "$out/profile_step.json"
$python bench/gpu_summary.py "$out" | tee "$out/summary.txt"
[[ -z "${BUNDLE:-}" ]] || tar czf "$BUNDLE" --exclude=./ttq -C "$out" .
echo "done in $SECONDS s"
