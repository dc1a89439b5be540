"""The training loop reads nothing back from the device per step.

On a GPU, reading a tensor's value on the host (``.item()``, ``float()``, ``.cpu()``...) waits
for every queued kernel, so a read per step leaves the GPU idle between steps. Every way of
reading a value into Python is counted (:func:`nol_fast.bench.syncs.counting_host_reads`)
while the Trainer trains an FNO for an epoch; the count must not grow with the number of steps.
"""

from __future__ import annotations

import pytest
import torch

from nol_fast.bench.syncs import counting_host_reads, syncs_in_epoch

CPU = torch.device("cpu")


@pytest.mark.parametrize("config", [
    {},  # the defaults: FusedAdamW, clipping, mixed precision where native
    {"skip_nonfinite": True, "gradient_accumulation_steps": 2},
    {"optimizer": "sgd", "mixed_precision": False, "gradient_clipping": 0.0},  # masked step
], ids=["defaults", "skip-accumulate", "sgd-masked"])
def test_an_epoch_reads_the_device_a_fixed_number_of_times(config):
    few, many = syncs_in_epoch(CPU, 2, **config), syncs_in_epoch(CPU, 6, **config)
    assert few == many, f"{many - few} more host reads for 4 more steps"
    # the epoch's sums (one tolist), and the DataLoader drawing its seed from the CPU generator
    assert many == 2


def test_reads_come_every_log_frequency_batches():
    at_end = syncs_in_epoch(CPU, 8, log_frequency=0)
    every_4 = syncs_in_epoch(CPU, 8, log_frequency=4)
    assert every_4 - at_end == 2  # after batches 4 and 8


def test_the_counter_sees_reads():
    with counting_host_reads() as counts:
        t = torch.ones(2)
        float(t.sum()), t.tolist(), bool(t[0]), t.cpu()
    assert counts == {"__float__": 1, "tolist": 1, "__bool__": 1, "cpu": 1}
