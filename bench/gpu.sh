#!/usr/bin/env bash
# The GPU benchmarks in one command, on a machine with one H100/H200 and what such a machine already
# has (PyTorch, transformers, Triton): nothing is installed and no registry is reached.
#
#   bench/gpu.sh SHARDS [OUT]
#
# SHARDS: a prepared 16,384-id Gutenberg shards folder (`genpt tokenizer train` + `genpt prepare
# --strip-gutenberg`, books held out in val) for the time-to-quality run. OUT (default runs/gpu)
# receives the JSON and logs. Takes about 6 minutes: the matmul ceiling, GPT-1-shape training
# throughput (genpt compiled and Hugging Face eager, bf16, batch 32 x 512), then genpt's own loop
# for 100 s of training against the anchor's validation-loss curve.
set -uo pipefail
cd "$(dirname "$0")/.."
shards="${1:?usage: bench/gpu.sh SHARDS [OUT]}"
out="${2:-runs/gpu}"
mkdir -p "$out"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
python=python3

nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv | tee "$out/gpu.txt"
$python -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" \
    | tee -a "$out/gpu.txt"

run() {  # run NAME CMD...: log to OUT/NAME.log, keep going if it fails
    local name="$1"; shift
    echo "== $name: $*"
    "$@" > >(tee "$out/$name.log") 2>&1 || echo "!! $name failed (exit $?)"
}

run throughput_genpt $python bench/train_throughput.py --shape gpt1 --batch 32 --dtype bfloat16 --device cuda \
    --compile --impls genpt --steps 30 --warmup 8 --save "$out/throughput_genpt.json"
run throughput_genpt_padded $python bench/train_throughput.py --shape gpt1 --batch 32 --vocab 40512 \
    --dtype bfloat16 --device cuda --compile --impls genpt --steps 20 --warmup 6 --save "$out/throughput_genpt_padded.json"
run throughput_hf $python bench/train_throughput.py --shape gpt1 --batch 32 --dtype bfloat16 --device cuda \
    --impls hf --steps 20 --warmup 5 --save "$out/throughput_hf.json"

# Fill the time budget: the step count comes from the measured throughput (16k vocabulary: a little faster).
tps=$($python -c "import json,sys; print(json.load(open(sys.argv[1]))['results']['genpt']['tokens_per_s'])" \
    "$out/throughput_genpt.json" 2>/dev/null || echo 550000)
echo "genpt GPT-1-shape throughput: $tps tok/s"
rm -rf "$out/ttq"
run time_to_quality $python bench/time_to_quality.py --shards "$shards" --seconds 100 --tokens-per-s "$tps" -o "$out/ttq"
cp "$out/ttq/metrics.jsonl" "$out/ttq_metrics.jsonl" 2>/dev/null
cp "$out/ttq/time_to_quality.json" "$out/ttq_summary.json" 2>/dev/null
rm -rf "$out/ttq"  # the checkpoint is large; the metrics are kept
