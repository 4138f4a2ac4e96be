#!/usr/bin/env bash
# Collect a short dm_control walker-walk set and train the reference AIME world model on it
# at a small config (a few tenths of a second a step on one CPU core).
#
#   pip install -e '.[dmc]'        # dm_control + MuJoCo; rendering is headless (MUJOCO_GL=egl,
#                                  # or MUJOCO_GL=osmesa where there is no GPU driver)
#   bash examples/train_walker.sh  # STEPS=500 OUT=runs/mywalker bash examples/train_walker.sh
#
# Writes $OUT/walker.npz, $OUT/small.toml and the run directory $OUT/train/:
#   log.jsonl          one JSON object per step: every loss and sub-term, step, time
#   checkpoint.pt      the whole training state (run this script again to continue it)
#   figures/step_XXXXXX.png   frames, reconstructions, attention map and slot masks
set -euo pipefail

OUT=${OUT:-runs/walker}
STEPS=${STEPS:-200}
EPISODES=${EPISODES:-8}
AIMESPEC=${AIMESPEC:-aimespec}
mkdir -p "$OUT"

# 1. Data: pixel episodes [N, T, 3, 32, 32] uint8 and actions [N, T, 6] float32.
if [ ! -f "$OUT/walker.npz" ]; then
    "$AIMESPEC" collect --env walker-walk --episodes "$EPISODES" --length 16 --size 32 --seed 0 \
        --policy scripted --out "$OUT/walker.npz"
fi

# 2. A small config: the seed's structure at small widths. input_dim matches --size 32,
#    action_dim the task's action_spec (walker: 6; humanoid would need action_dim = 21).
cat > "$OUT/small.toml" <<'TOML'
input_dim = 32
action_dim = 6
sequence_length = 8
batch_size = 4
max_components = 5
latent_dim = 8
hidden_dim = 32
attention_dim = 16
attention_resolution = 7
num_semantic_slots = 3
num_latent_perceiver = 8
num_latent_channels_perceiver = 32
num_codebook_perceiver = 32
perceiver_code_dim = 16
temporal_downsample = 4
slot_mlp_hidden = 16
prior_alpha_samples = 4
tokenizer_width = 8
perceiver_heads = 2
vae_channels = [8, 16]
prior_hidden = 32
disc_channels = [8, 16]
TOML

# 3. Train (a second run of this script resumes: the step count, data order and noise go on).
RESUME=()
if [ -f "$OUT/train/checkpoint.pt" ]; then
    RESUME=(--resume)
fi
"$AIMESPEC" train --data "$OUT/walker.npz" --config "$OUT/small.toml" --steps "$STEPS" --out "$OUT/train" \
    --figure-every 50 --checkpoint-every 50 "${RESUME[@]}"

# The last logged losses, read back from the JSON-lines log.
tail -n 1 "$OUT/train/log.jsonl" | python3 -c \
    'import json, sys; r = json.loads(sys.stdin.read()); print({k: round(r[k], 4) for k in ("step", "elbo", "perceiver", "predictive", "adversarial")})'

# Two processes on one machine (each takes half of every batch; gradients averaged before RGB):
#   torchrun --nproc_per_node=2 -m aimespec.cli train --data "$OUT/walker.npz" --config "$OUT/small.toml" \
#       --steps "$STEPS" --out "$OUT/train-ddp" --deterministic
