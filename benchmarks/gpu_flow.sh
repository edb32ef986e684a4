#!/usr/bin/env bash
# The GPU checks of the PWC-Net stage, as one command on a GPU node with the project installed:
#   bash benchmarks/gpu_flow.sh [SRC] [OUT]
# 1. pairs/s at 112x112 per batch size and dtype (fp32, fp16, bf16) with ptlflow's per-pair call as
#    the reference, and peak GPU memory; 2. a real build of SRC (default: the GRID test clips) with
#    PWC-Net in fp16 on the GPU, whose summary says which stage waited for the other.
# Weights: the bench takes ptlflow's 'things' checkpoint when cached, else a seeded random one; the
# build always takes the seeded random one (speed does not depend on the values).
set -euo pipefail
src=${1:-"$(dirname "$0")/../../shared/data/grid"}
out=${2:-"${OUT:-/tmp}/gpu-flow"}
mkdir -p "$out"
ckpt="$out/pwcnet-random.ckpt"
python -c "from flowprep.flow.pwcnet import save_random_pwcnet_checkpoint as s; s('$ckpt', seed=0)"
flowprep bench flow --device cuda --batch-sizes 64,256,1024 --dtypes fp32,fp16,bf16 --seconds 3 --rounds 3 \
    --json > "$out/bench-flow.json"
rm -rf "$out/shards"
flowprep build --src "$src" --out "$out/shards" --flow pwcnet --flow-ckpt "$ckpt" --device cuda \
    --flow-precision fp16 --no-progress --json > "$out/build.json"
python -c "import json,sys; r=json.load(open(sys.argv[1])); print('stage balance:', r['stage_balance'])" "$out/build.json"
