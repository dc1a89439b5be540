#!/usr/bin/env bash
# Train on one node with one process per GPU (or NPROC CPU processes with gloo):
#   bash examples/torchrun_single_node.sh [NPROC]
# The strategy is the config's parallelism section (docs/distributed.md). A SIGTERM makes every
# process save runs/distributed/checkpoints/last.pt and exit; running this script again resumes
# from it (--auto-resume), and --max-restarts restarts the processes after a failure, which
# also resume from it.
set -euo pipefail
NPROC=${1:-$(python -c "import torch; print(max(torch.cuda.device_count(), 2))")}
if ! python -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
    # CPU processes: share the cores between them rather than oversubscribe them
    export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 ))}
fi
exec torchrun --standalone --nproc_per_node "$NPROC" --max-restarts 3 \
    -m nol_fast train --config "$(dirname "$0")/distributed.yaml" \
    --out runs/distributed --auto-resume
