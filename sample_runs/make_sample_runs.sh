#!/usr/bin/env bash
# Regenerate the recorded runs in sample_runs/ with the trainer itself: embedded SmolLM2-135M-Instruct,
# the sample data in trainer/data/, 40 steps of batch 4 x 128 tokens, seed 0. Only the recordings (.lsr)
# are kept: each run's adapter (~20 MB) and checkpoints stay in a temporary folder.
# Usage: bash sample_runs/make_sample_runs.sh [NAME ...]   (default: all runs, one after the other)
set -euo pipefail
cd "$(dirname "$0")/.."
L=.venv/bin/lorascope
DATA=trainer/data
OUT=sample_runs
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
export HF_HUB_OFFLINE=1

COMMON=(--max-steps 40 --batch-size 4 --max-length 128 --seed 0
        --weight-delta-every 5 --logit-shift-every 10 --volatility-every 1 --resources-every 10
        --checkpoint-every 0 --pub tcp://127.0.0.1:0 --control tcp://127.0.0.1:0
        --output-dir "$WORK" --no-progress)

train() {  # NAME [train options...]
    local name=$1; shift
    echo "== $name: lorascope train ${COMMON[*]} $*" >&2
    "$L" train "${COMMON[@]}" --run-id "$name" "$@"
    cp "$WORK/$name/run.lsr" "$OUT/$name.lsr"
}

plain_en_ru()       { train plain_en_ru --dataset $DATA/sample_en_ru.txt; }
chat_en_ru()        { train chat_en_ru --dataset $DATA/sample_en_ru.chat.jsonl; }
chat_en()           { train chat_en --dataset $DATA/sample_en.chat.jsonl; }
chat_en_ru_ranked() {
    "$L" rank $DATA/sample_en_ru.chat.jsonl --out "$OUT/sample_en_ru.chat.order.txt" --quiet
    train chat_en_ru_ranked --dataset $DATA/sample_en_ru.chat.jsonl --order "$OUT/sample_en_ru.chat.order.txt"
}
chat_en_ru_edit()   { train chat_en_ru_edit --dataset $DATA/sample_en_ru.chat.jsonl --edits $OUT/edit_lyon.jsonl; }

for name in "${@:-chat_en_ru plain_en_ru chat_en chat_en_ru_edit chat_en_ru_ranked}"; do
    for n in $name; do "$n"; done
done
ls -l "$OUT"/*.lsr
