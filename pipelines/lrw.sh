#!/usr/bin/env bash
# Build LRW shards on an existing Ray cluster (every node must see /data and /shards at the same paths).
#   RAY_ADDRESS=http://HEAD:8265 bash pipelines/lrw.sh /data/lipread_mp4 /shards/lrw /weights/pwcnet-things.ckpt
# Resources: one CPU per crop task (decode + dlib + crop), one GPU per PWC-Net actor (one actor per GPU).
set -euo pipefail
SRC=${1:?source folder (lipread_mp4)}
OUT=${2:?output folder on a shared filesystem}
CKPT=${3:-things}
ray job submit --working-dir "$(dirname "$0")" -- \
  flowprep build --src "$SRC" --out "$OUT" --flow pwcnet --flow-ckpt "$CKPT" --ray-address auto --no-progress
