#!/bin/bash
# One GPU round: render the training sets, train the candidates in JOBS side by side for a fixed
# time budget each, export their changed weights into $OUT. Run from the repository root on the
# device machine (bench/miniworld/gpu_round.py says what each step does).
#   JOBS="unet:small unet:medium unet:wide"   (default; the round in benchmarks/results/gpu_round/)
#   JOBS="clip:medium clip:wide"              image towers trained anew against the locked text tower
#   JOBS="decoder:shipped"                    the decoder, continued from the shipped vae/
#   BUDGET=seconds of training per candidate (default 400)
#   DEVICE=cpu for a smoke run here (OUT=dir BUDGET=5 TRAIN_TIMEOUT=1200 JOBS=clip:medium DEVICE=cpu)
# At most 8 files come back: a wide UNet takes 2 shards + 1 JSON, a smaller one 1 + 1, an image
# tower 1 + 1, the VAE 1 + 1, and log.txt 1. The device takes at most 64 MiB of working tree: the shipped
# pipeline/unet weights (25 MB) are not needed there (clip/ and vae/ are), so move them aside
# for the call if the tree is over.
set -u
JOBS=${JOBS:-unet:small unet:medium unet:wide}
BUDGET=${BUDGET:-400}
DEVICE=${DEVICE:-cuda}
TRAIN_TIMEOUT=${TRAIN_TIMEOUT:-$((BUDGET + 75))}   # setup + budget + writing; a CPU smoke run needs more
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1
LOG=$OUT/log.txt
{ date +%T; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  python3 -c "import torch,diffusers,transformers,open_clip,numpy,PIL; print(torch.__version__, diffusers.__version__, transformers.__version__, open_clip.__version__, numpy.__version__, PIL.__version__, torch.cuda.is_available())"
} >> $LOG 2>&1
python3 -m bench.miniworld.gpu_round prepare --work /tmp/w --workers 15 >> $LOG 2>&1 || { echo prepare failed >> $LOG; exit 1; }
date +%T >> $LOG
pids=""
for job in $JOBS; do
  kind=${job%%:*}; size=${job##*:}; name=$kind-$size
  case $kind in
    unet) extra="--size $size --batch 256 --lr 8e-4" ;;
    clip) extra="--size $size --batch 512" ;;
    decoder) extra="--batch 128" ;;   # decoder:shipped (the size part is a label only)
  esac
  timeout $TRAIN_TIMEOUT python3 -m bench.miniworld.gpu_round $kind --work /tmp/w --name $name \
      $extra --time-budget $BUDGET --device $DEVICE > /tmp/w/$name.log 2>&1 &
  pids="$pids $!"
done
( while sleep 45; do
    for job in $JOBS; do
      name=${job%%:*}-${job##*:}
      echo "$(date +%T) $name $(ls /tmp/w/$name/checkpoints/*.pt 2>/dev/null | head -1) $(tail -c 200 /tmp/w/$name/checkpoints/unet_history.json 2>/dev/null | tr -d '\n ' | tail -c 70)"
    done
  done ) &
ticker=$!
for p in $pids; do wait $p; echo "train exit $?" >> $LOG; done
kill $ticker
date +%T >> $LOG
for job in $JOBS; do name=${job%%:*}-${job##*:}; echo "== $name"; grep -v "float32\|Writing model\|No pretrained" /tmp/w/$name.log | tail -c 1500; done >> $LOG 2>&1
python3 -m bench.miniworld.gpu_round export --work /tmp/w --out $OUT >> $LOG 2>&1
date +%T >> $LOG
ls -la $OUT >> $LOG
cat $LOG
