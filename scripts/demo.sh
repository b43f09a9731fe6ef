#!/usr/bin/env bash
# The main job (`make demo`): MovieLens 100K from download to recommendations, every step a real command.
# Offline, with no $RECSYS_MIRROR, the download's own retries and error come first; then one note says the
# demo carries on, and the same chain runs on synthetic data shaped like ml-100k (planted structure, titles,
# genres) so the whole chain still shows.
set -euo pipefail
RECSYS=${RECSYS:-.venv/bin/recsys}

if $RECSYS download ml-100k; then
    DS=ml-100k
else
    DS=synth-ml-100k
    echo "note: ml-100k could not be downloaded (offline? set RECSYS_MIRROR to a folder holding ml-100k.zip);" \
         "the demo carries on with SYNTHETIC data shaped like ml-100k: recsys generate $DS --preset ml-100k" >&2
    $RECSYS generate "$DS" --preset ml-100k --force --format table
fi
echo "demo dataset: $DS" >&2

$RECSYS preprocess "$DS" --format table
$RECSYS train svd --dataset "$DS" --split random --force --format table
$RECSYS evaluate "svd-$DS-random" --format table
$RECSYS train ials --dataset "$DS" --split user --force --format table
$RECSYS evaluate "ials-$DS-user" --relevance any --format table
$RECSYS train item-knn --dataset "$DS" --force --format table
# A/B: two runs on the same split, compared on its held-out users (simulated clicks, Welch's t-test)
$RECSYS train ials --dataset "$DS" --split random --force --format table
$RECSYS abtest "svd-$DS-random" "ials-$DS-random" --no-segments --format table
$RECSYS recommend "svd-$DS-random" --user 1 -n 10 --format table
$RECSYS recommend "ials-$DS-user" --user 1 -n 3 --format json
$RECSYS recommend "ials-$DS-user" --ratings 183:5,185:5,200:5,218:5,219:5 -n 5 --format table
$RECSYS similar "item-knn-$DS" --item 1 -n 5 --format table
$RECSYS runs --format table
