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
#      steps as fill QUALITY_S (60) seconds at the plain path's measured speed, plain and with the
#      fastest variant's settings, both at once on the GPU: the same steps and tokens, so the losses
#      compare;
#   6. the step's profile (bench/profile_step.py) with the fastest variant's backends;
#   7. the closing table (bench/gpu_summary.py, also OUT/summary.json).
# BUNDLE=FILE.tar.gz also packs OUT into one archive after each step (the lent GPU machine returns
# at most 8 files). WINNER=liger|float8|best takes that variant as the fastest, measured or not (on the
# CPU, where no backend runs, it is how the smoke test reaches steps 5 and 6). A smoke test of the
# script itself on the CPU, in a few minutes:
#   PYTHON=.venv/bin/python DEVICE=cpu SHAPE=tiny BATCH=4 SMOKE=1 BUDGET_S=1800 QUALITY_S=10 WINNER=liger \
#     TTQ_ARGS="--set model.n_layer=2 --set model.n_embd=64 --set model.n_head=2 --set model.n_ctx=64 ..." \
#     bench/gpu.sh SHARDS /tmp/gpu-smoke
set -uo pipefail
cd "$(dirname "$0")/.."
shards="${1:?usage: bench/gpu.sh SHARDS [OUT]}"
out="${2:-runs/gpu}"
ttq_args="${TTQ_ARGS:---optimizer muon --lr 2e-3 --dropout 0 --warmup 200 --schedule linear}"
device="${DEVICE:-cuda}"
shape="${SHAPE:-gpt1}"
batch="${BATCH:-32}"
nanogpt="${NANOGPT:-.gpu/nanogpt}"
site="${GPU_SITE:-.gpu/site}"
quality_s="${QUALITY_S:-60}"
compile=--compile steps=(--steps 20 --warmup 6) slow=1
if [[ "${SMOKE:-0}" == 1 ]]; then  # the CPU smoke test: no compiling, 3 steps, 4x the time limits
    compile="" steps=(--steps 3 --warmup 1) slow=4
fi
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

bundle() { [[ -z "${BUNDLE:-}" ]] || tar czf "$BUNDLE" --exclude='./ttq_*' --exclude="./${BUNDLE##*/}" -C "$out" .; }
limit_for() {  # limit_for SECONDS: the step's limit within what is left of BUDGET_S, 0 to skip it
    local left=$((deadline - SECONDS)) want=$(($1 * slow))
    if ((left < 30)); then echo 0; elif ((want > left)); then echo "$left"; else echo "$want"; fi
}
run() {  # run NAME SECONDS CMD...: log to OUT/NAME.log, stop it after SECONDS, keep going if it fails
    local name="$1" limit; limit=$(limit_for "$2"); shift 2
    if ((limit == 0)); then echo "!! $name skipped: $((deadline - SECONDS)) s of BUDGET_S left"; return; fi
    echo "== $name (limit ${limit} s, $((deadline - SECONDS)) s left): $*"
    timeout --kill-after=10 "$limit" "$@" > >(tee "$out/$name.log") 2>&1 || echo "!! $name failed (exit $?)"
    bundle
}
throughput() {  # throughput NAME SECONDS ARGS...: GPT-1 shape, bf16, batch 32 (BATCH), compiled, no dropout
    local name="$1" limit="$2"; shift 2
    run "throughput_$name" "$limit" $python bench/train_throughput.py --shape "$shape" --batch "$batch" --dtype bfloat16 \
        --device "$device" $compile --pad-vocab 64 --dropout 0 "${steps[@]}" "$@" \
        --save "$out/throughput_$name.json"
}
quality() {  # quality SETTINGS...: genpt's loop, plain and with SETTINGS, at once, for the steps that fill
    # QUALITY_S at the plain path's measured speed. The two share the GPU (each takes about twice as long,
    # both compile at once): the same steps, data and seeds, so their held-out losses compare.
    local name limit; limit=$(limit_for $((2 * quality_s + 100)))
    if ((limit == 0)); then echo "!! quality skipped: $((deadline - SECONDS)) s of BUDGET_S left"; return; fi
    echo "== quality (limit ${limit} s, $((deadline - SECONDS)) s left): plain, and with $*"
    rm -rf "$out"/ttq_*
    for name in plain winner; do
        # shellcheck disable=SC2046,SC2086  # TTQ_ARGS and the settings are lists of options
        timeout --kill-after=10 "$limit" $python bench/time_to_quality.py --shards "$shards" --seconds "$quality_s" \
            --tokens-per-s "$tps" --set "train.device=$device" $ttq_args $([[ $name == winner ]] && echo "$@") \
            -o "$out/ttq_$name" > "$out/quality_$name.log" 2>&1 || echo "!! quality $name failed (exit $?)" &
    done
    wait
    for name in plain winner; do
        echo "-- quality $name:" && tail -n 3 "$out/quality_$name.log"
        cp "$out/ttq_$name/metrics.jsonl" "$out/quality_${name}_metrics.jsonl" 2>/dev/null
        cp "$out/ttq_$name/time_to_quality.json" "$out/quality_$name.json" 2>/dev/null
    done
    rm -rf "$out"/ttq_*  # the checkpoints are large; the metrics are kept
    bundle
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
    # shellcheck disable=SC2086  # the settings are a list
    quality $winner_settings
else
    echo "-- no held-out-loss check: no backend beat the plain path"
fi

# shellcheck disable=SC2086  # the flags are a list
run profile_step 90 $python bench/profile_step.py --device "$device" --shape "$shape" --batch "$batch" $compile \
    --pad-vocab 64 --dropout 0 $winner_flags --save "$out/profile_step.json"
$python bench/gpu_summary.py "$out" | tee "$out/summary.txt"
bundle
echo "done in $SECONDS s"
