#!/bin/bash
# One GPU round: render the training set, train three UNet widths side by side for a fixed time
# budget, export their EMA weights into $OUT. Run from the repository root on the device machine
# (bench/miniworld/gpu_round.py says what each step does); BUDGET=seconds of training per width.
# The device takes at most 64 MiB of working tree: the shipped pipeline/unet weights (25 MB) are
# not needed there (only clip/ and vae/ are), so move them aside for the call if the tree is over.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
LOG=$OUT/log.txt
BUDGET=${BUDGET:-400}
{ date +%T; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  python3 -c "import torch,diffusers,transformers,open_clip,numpy,PIL; print(torch.__version__, diffusers.__version__, transformers.__version__, open_clip.__version__, numpy.__version__, PIL.__version__, torch.cuda.is_available())"
} >> $LOG 2>&1
python3 -m bench.miniworld.gpu_round prepare --work /tmp/w --workers 15 >> $LOG 2>&1 || { echo prepare failed >> $LOG; exit 1; }
date +%T >> $LOG
pids=""
for c in small medium wide; do
  timeout $((BUDGET + 75)) python3 -m bench.miniworld.gpu_round unet --work /tmp/w --name $c --size $c \
      --batch 256 --lr 8e-4 --time-budget $BUDGET > /tmp/w/$c.log 2>&1 &
  pids="$pids $!"
done
( while sleep 45; do
    for c in small medium wide; do
      echo "$(date +%T) $c $(tail -c 200 /tmp/w/$c/checkpoints/unet_history.json 2>/dev/null | tr -d '\n ' | tail -c 70)"
    done
  done ) &
ticker=$!
for p in $pids; do wait $p; echo "train exit $?" >> $LOG; done
kill $ticker
date +%T >> $LOG
for c in small medium wide; do echo "== $c"; grep -v "float32\|Writing model\|No pretrained" /tmp/w/$c.log | tail -c 1500; done >> $LOG 2>&1
python3 -m bench.miniworld.gpu_round export --work /tmp/w --out $OUT >> $LOG 2>&1
date +%T >> $LOG
ls -la $OUT >> $LOG
cat $LOG
