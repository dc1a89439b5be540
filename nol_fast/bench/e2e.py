"""``nol-fast benchmark e2e``: the whole FNO training step against neuraloperator.

Users judge a training library by one number, the time of a whole training step of their
model next to what they use today. Every candidate here trains the same FNO (neuraloperator's,
converted with :meth:`FNO.from_neuralop` for nol_fast, so the weights are equal) on the same
batches with the same loss (MSE) and optimizer settings (AdamW, lr 1e-3, weight decay 1e-4, no
gradient clipping):

* ``neuraloperator loop``: neuraloperator's FNO with torch's AdamW in a minimal loop, fused for
  the real parameters and foreach for the complex ones (fused takes no complex tensors), the
  strongest baseline;
* ``neuraloperator Trainer``: neuraloperator's own ``Trainer`` with the same optimizer;
* ``nol_fast fp32``: nol_fast's :class:`~nol_fast.training.Trainer` with
  ``mixed_precision=False``;
* ``nol_fast default``: the Trainer with its default precision policy (bfloat16 on CPUs with
  native bf16, see :mod:`nol_fast.training.precision`).

``variants`` adds the Trainer's fast paths (:mod:`nol_fast.training.fast_paths`), each in fp32
and in the default precision: ``compile`` (``nol_fast compile fp32``, ...: ``compile='default'``)
and, on CUDA, ``graphs`` (``nol_fast cuda graphs ...``: ``cuda_graphs=True``) and
``compile+graphs`` (both). Compilation and capture happen in the untimed first round.

The candidates run in interleaved rounds (:mod:`nol_fast.bench.timing`), one epoch of a few
steps each per round, and the table gives the median ms per step, the ratio to each baseline,
and the peak memory of an epoch (bytes allocated by torch, from the profiler). Speed is never
bought with wrong answers: from the same initial weights every candidate also trains
:data:`GUARD_STEPS` steps, and its training loss must agree with the fp32 baseline's within
:data:`GUARD_TOLERANCE` (looser for reduced precision). ``benchmarks/bench_e2e.py`` times the
same candidates with pytest-benchmark; :func:`to_json` keeps results for tracking.

On the CPU every candidate runs on the allocator of nol_fast's Trainer, set up before any of
them (:func:`~nol_fast.bench.timing.trainer_allocator`): it spares the baselines' steps their
page faults too, so run alone a neuraloperator step is slower than the table says.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import platform
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import nn
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from nol_fast import __version__
from nol_fast.bench.timing import describe_threads, interleaved_medians, trainer_allocator
from nol_fast.models import FNO
from nol_fast.training import Trainer, TrainingConfig

LR, WEIGHT_DECAY = 1e-3, 1e-4
STEPS_PER_EPOCH = 4
GUARD_STEPS = 20
# Relative difference of the loss after GUARD_STEPS steps from the fp32 baseline's, by the
# dtype a candidate computes in (bfloat16 keeps 8 significant bits).
GUARD_TOLERANCE = {torch.float32: 1e-3, torch.bfloat16: 5e-2, torch.float16: 5e-2}

NEURALOP_LOOP = "neuraloperator loop"
NEURALOP_TRAINER = "neuraloperator Trainer"
OURS_FP32 = "nol_fast fp32"
OURS_DEFAULT = "nol_fast default"
BASELINES = (NEURALOP_LOOP, NEURALOP_TRAINER)
#: variant: (name prefix, TrainingConfig fields); ``eager`` is OURS_FP32 and OURS_DEFAULT
VARIANTS = {
    "eager": ("nol_fast", {}),
    "compile": ("nol_fast compile", {"compile": "default"}),
    "graphs": ("nol_fast cuda graphs", {"cuda_graphs": True}),
    "compile+graphs": ("nol_fast compile+graphs", {"compile": "default", "cuda_graphs": True}),
}
CUDA_ONLY = ("graphs", "compile+graphs")


@dataclass(frozen=True)
class Setup:
    """A benchmark problem: the FNO's size and one batch."""

    n_modes: tuple[int, ...]
    width: int
    n_layers: int
    batch: int
    grid: tuple[int, ...]

    def describe(self) -> str:
        return (f"FNO modes {'x'.join(map(str, self.n_modes))}, width {self.width}, "
                f"{self.n_layers} layers, batch {self.batch}, grid {'x'.join(map(str, self.grid))}")


SETUPS: dict[str, Setup] = {
    "a": Setup((16, 16), 32, 4, 8, (64, 64)),
    "b": Setup((12, 12), 64, 4, 16, (32, 32)),
    "c": Setup((16,), 64, 4, 32, (1024,)),
    # Not a benchmark of record: a quick run of the harness (benchmarks/gpu_check.sh on a
    # CPU, where a, b and c take minutes a step) and CPU comparisons of the fast paths.
    "s": Setup((8, 8), 16, 2, 4, (32, 32)),
}


NAMES = (NEURALOP_LOOP, NEURALOP_TRAINER, OURS_FP32, OURS_DEFAULT)


def neuralop_missing() -> str | None:
    """``None`` when neuraloperator is installed, else the reason the benchmark cannot run."""
    if importlib.util.find_spec("neuralop") is None:
        return "neuraloperator is not installed (pip install nol-fast[interop])"
    return None


def make_batches(setup: Setup, n_batches: int, seed: int = 0
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of a learnable operator: smooth random fields and their smoothed versions.

    Inputs are white noise low-pass filtered in Fourier space; targets apply a fixed
    ``1 / (1 + |k|^2 / 16)`` filter to them, a linear operator an FNO can learn.

    Examples
    --------
    >>> [x.shape for x, _ in make_batches(SETUPS["c"], 2)]
    [torch.Size([32, 1, 1024]), torch.Size([32, 1, 1024])]
    """
    g = torch.Generator().manual_seed(seed)
    dims = tuple(range(2, 2 + len(setup.grid)))
    freqs = torch.meshgrid(*(torch.fft.fftfreq(n) * n for n in setup.grid[:-1]),
                           torch.fft.rfftfreq(setup.grid[-1]) * setup.grid[-1], indexing="ij")
    k2 = sum(f ** 2 for f in freqs)
    smooth, target = torch.exp(-k2 / 64), 1 / (1 + k2 / 16)
    batches = []
    for _ in range(n_batches):
        noise = torch.randn(setup.batch, 1, *setup.grid, generator=g)
        spectrum = torch.fft.rfftn(noise, dim=dims) * smooth
        x = torch.fft.irfftn(spectrum, s=setup.grid, dim=dims)
        x = x / x.std()
        y = torch.fft.irfftn(spectrum * target, s=setup.grid, dim=dims) / x.std()
        batches.append((x.contiguous(), y.contiguous()))
    return batches


def neuralop_model(setup: Setup, seed: int = 0) -> nn.Module:
    """neuraloperator's default FNO of ``setup`` (one input and one output channel)."""
    from neuralop.models import FNO as NeuralopFNO

    torch.manual_seed(seed)
    return NeuralopFNO(setup.n_modes, 1, 1, setup.width, n_layers=setup.n_layers)


class Run:
    """One candidate: ``epoch()`` trains one pass over the batches of ``model``."""

    dtype = torch.float32  # the dtype the forward pass computes in

    def __init__(self, batches: list[tuple[torch.Tensor, torch.Tensor]],
                 model: nn.Module) -> None:
        self.batches = batches
        self.model = model

    def epoch(self) -> None:
        raise NotImplementedError


class NeuralopLoop(Run):
    def __init__(self, batches, model: nn.Module) -> None:
        super().__init__(batches, model)
        real = [p for p in model.parameters() if not p.is_complex()]
        complex_ = [p for p in model.parameters() if p.is_complex()]
        self.optimizers = [
            torch.optim.AdamW(real, LR, weight_decay=WEIGHT_DECAY, fused=True),
            torch.optim.AdamW(complex_, LR, weight_decay=WEIGHT_DECAY, foreach=True),
        ]

    def epoch(self) -> None:
        for x, y in self.batches:
            for opt in self.optimizers:
                opt.zero_grad(set_to_none=True)
            F.mse_loss(self.model(x), y).backward()
            for opt in self.optimizers:
                opt.step()


class _MSE:
    """MSE in the calling convention of neuraloperator's Trainer: ``loss(out, **sample)``."""

    def __call__(self, out: torch.Tensor, y: torch.Tensor, **_: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(out, y)


class _Batches(list):
    """Batch dicts with the ``dataset`` length that neuraloperator's Trainer reads."""

    @property
    def dataset(self) -> range:
        return range(sum(len(batch["y"]) for batch in self))


class NeuralopTrainer(Run):
    def __init__(self, batches, model: nn.Module) -> None:
        from neuralop.training import Trainer as NeuralopTrainerClass

        super().__init__(batches, model)
        device = next(model.parameters()).device
        self.trainer = NeuralopTrainerClass(model=model, n_epochs=1, device=str(device),
                                            verbose=False)
        # The Trainer's own epoch loop; train() would add an evaluation pass per epoch.
        self.trainer.optimizer = torch.optim.AdamW(model.parameters(), LR,
                                                   weight_decay=WEIGHT_DECAY, foreach=True)
        self.trainer.scheduler = torch.optim.lr_scheduler.LambdaLR(self.trainer.optimizer,
                                                                   lambda _: 1.0)
        self.trainer.regularizer = None
        self.loader = _Batches({"x": x, "y": y} for x, y in batches)
        self.epochs = 0

    def epoch(self) -> None:
        with warnings.catch_warnings():
            # its Trainer calls model(**sample), handing the FNO the target too
            warnings.filterwarnings("ignore", "FNO.forward.. received unexpected keyword")
            self.trainer.train_one_epoch(self.epochs, self.loader, _MSE())
        self.epochs += 1


class OursTrainer(Run):
    def __init__(self, batches, model: nn.Module, mixed_precision: bool, **fast_paths) -> None:
        config = TrainingConfig(mixed_precision=mixed_precision, gradient_clipping=0.0,
                                learning_rate=LR, weight_decay=WEIGHT_DECAY, log_frequency=0,
                                **fast_paths)
        device = next(model.parameters()).device
        self.trainer = Trainer(FNO.from_neuralop(model).to(device), batches, None,
                               config=config, device=device)
        super().__init__(batches, self.trainer.model)
        self.dtype = self.trainer.amp_dtype or torch.float32

    def epoch(self) -> None:
        logger = logging.getLogger("nol_fast.training")
        level = logger.level
        logger.setLevel(logging.WARNING)  # no per-epoch log line inside the timed rounds
        try:
            self.trainer.train(self.trainer.epoch + 1)
        finally:
            logger.setLevel(level)


def check_variants(variants: Sequence[str], device: torch.device) -> None:
    """Raise ``ValueError`` for a variant that is unknown, or that needs CUDA elsewhere."""
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown e2e variant(s) {unknown}; choose from {list(VARIANTS)}")
    needs_cuda = [v for v in variants if v in CUDA_ONLY]
    if needs_cuda and device.type != "cuda":
        raise ValueError(f"e2e variant(s) {needs_cuda} need a CUDA device, got {device}")


def candidates(setup: Setup, batches, device: torch.device, seed: int = 0,
               variants: Sequence[str] = ("eager",)) -> dict[str, Callable[[], Run]]:
    """Factories of every candidate's run on ``setup``, each from the same initial weights.

    The baselines, then nol_fast's Trainer in fp32 and default precision for each of
    ``variants`` (keys of :data:`VARIANTS`).
    """
    check_variants(variants, device)
    batches = [(x.to(device), y.to(device)) for x, y in batches]

    def model() -> nn.Module:
        return neuralop_model(setup, seed).to(device)

    factories: dict[str, Callable[[], Run]] = {
        NEURALOP_LOOP: lambda: NeuralopLoop(batches, model()),
        NEURALOP_TRAINER: lambda: NeuralopTrainer(batches, model()),
    }
    for variant in variants:
        prefix, fields = VARIANTS[variant]
        for precision, mixed in (("fp32", False), ("default", True)):
            factories[f"{prefix} {precision}"] = (
                lambda mixed=mixed, fields=fields: OursTrainer(batches, model(), mixed, **fields))
    return factories


def peak_memory_mb(fn: Callable[[], object], device: torch.device) -> float:
    """Peak of the bytes allocated by torch while ``fn`` runs, in MiB.

    CUDA keeps the peak itself; on the CPU it comes from the profiler's allocation events.
    """
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        start = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
        fn()
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - start) / 2 ** 20
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    live = peak = 0
    for event in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak / 2 ** 20


@dataclass
class Result:
    """One candidate on one setup."""

    setup: str
    candidate: str
    dtype: str
    ms_per_step: float
    peak_mb: float
    guard_loss: float
    guard_reference: float
    guard_tolerance: float
    ratios: dict[str, float] = field(default_factory=dict)

    @property
    def guard_ok(self) -> bool:
        return abs(self.guard_loss - self.guard_reference) <= (
            self.guard_tolerance * abs(self.guard_reference))


def guard_losses(factories: dict[str, Callable[[], Run]]) -> dict[str, tuple[float, torch.dtype]]:
    """``{name: (loss, dtype)}``: each candidate trains one epoch afresh, then its MSE on the
    batches it trained on is evaluated in float32."""
    out = {}
    for name, factory in factories.items():
        run = factory()
        run.epoch()
        with torch.no_grad():
            loss = sum(float(F.mse_loss(run.model(x), y)) for x, y in run.batches)
        out[name] = (loss / len(run.batches), run.dtype)
    return out


def run_setup(name: str, device: torch.device, repeat: int = 5,
              steps_per_epoch: int = STEPS_PER_EPOCH, guard_steps: int = GUARD_STEPS,
              variants: Sequence[str] = ("eager",)) -> list[Result]:
    """Time every candidate on setup ``name`` on ``device`` and check the accuracy guard."""
    reason = neuralop_missing()
    if reason is not None:
        raise RuntimeError(f"the e2e benchmark needs neuraloperator: {reason}")
    setup = SETUPS[name]
    if any("compile" in VARIANTS[v][1] for v in variants):
        # Each setup compiles afresh: its shapes stay static, and the graphs of all setups
        # do not add up to dynamo's recompile limit (past it, steps silently run eagerly).
        torch._dynamo.reset()
    trainer_allocator(device)
    timed = candidates(setup, make_batches(setup, steps_per_epoch), device, variants=variants)
    runs = {key: factory() for key, factory in timed.items()}
    medians = interleaved_medians({key: run.epoch for key, run in runs.items()}, device,
                                  repeat=repeat)
    peaks = {key: peak_memory_mb(run.epoch, device) for key, run in runs.items()}
    guard = guard_losses(candidates(setup, make_batches(setup, guard_steps, seed=1), device,
                                    variants=variants))
    reference = guard[NEURALOP_LOOP][0]
    results = []
    for key, run in runs.items():
        ms = medians[key] / steps_per_epoch
        result = Result(name, key, str(run.dtype).replace("torch.", ""), ms, peaks[key],
                        guard[key][0], reference, GUARD_TOLERANCE[guard[key][1]])
        results.append(result)
    for result in results:
        result.ratios = {base: medians[base] / medians[result.candidate] for base in BASELINES}
    return results


def format_table(results: Sequence[Result]) -> str:
    """Table of ms per step, speed-ups (baseline time / time, > 1 is faster) and peak memory."""
    header = (f"{'setup':<6}{'candidate':<34}{'dtype':<10}{'ms/step':>9}"
              f"{'vs loop':>9}{'vs Trainer':>12}{'peak MiB':>10}{'guard':>16}")
    lines = [header, "-" * len(header)]
    for r in results:
        guard = f"{(r.guard_loss / r.guard_reference - 1):+.1e} {'ok' if r.guard_ok else 'FAIL'}"
        lines.append(f"{r.setup:<6}{r.candidate:<34}{r.dtype:<10}{r.ms_per_step:>9.1f}"
                     f"{r.ratios[NEURALOP_LOOP]:>8.2f}x{r.ratios[NEURALOP_TRAINER]:>11.2f}x"
                     f"{r.peak_mb:>10.1f}{guard:>16}")
    lines.append("guard: relative difference of the loss after the guard epoch from the "
                 "neuraloperator loop's (fp32), and whether it is within tolerance")
    return "\n".join(lines)


def to_json(results: Sequence[Result], repeat: int, device: torch.device,
            variants: Sequence[str] = ("eager",)) -> str:
    """The results with what they were measured on, as JSON (one file per run, for tracking)."""
    return json.dumps({
        "benchmark": "e2e",
        "nol_fast": __version__,
        "torch": torch.__version__,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": platform.machine(),
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else platform.processor()),
        "threads": torch.get_num_threads(),
        "allocator": trainer_allocator(device),
        "repeat": repeat,
        "steps_per_epoch": STEPS_PER_EPOCH,
        "variants": list(variants),
        "results": [{**asdict(r), "guard_ok": r.guard_ok} for r in results],
    }, indent=2)


def run(setups: Sequence[str], device: torch.device, repeat: int = 5,
        json_path: str | None = None, variants: Sequence[str] = ("eager",)) -> str:
    """Benchmark ``setups`` (keys of :data:`SETUPS`) on ``device`` and return the table.

    ``variants`` (keys of :data:`VARIANTS`) choose the Trainer's fast paths to time. With
    ``json_path`` the results are also written there (:func:`to_json`).

    Examples
    --------
    >>> print(run(["c"], torch.device("cpu"), repeat=1))  # doctest: +SKIP
    """
    unknown = [s for s in setups if s not in SETUPS]
    if unknown:
        raise ValueError(f"unknown e2e setup(s) {unknown}; choose from {list(SETUPS)}")
    check_variants(variants, device)
    results = [r for name in setups for r in run_setup(name, device, repeat, variants=variants)]
    if json_path is not None:
        with open(json_path, "w") as f:
            f.write(to_json(results, repeat, device, variants))
    described = "; ".join(f"{name}: {SETUPS[name].describe()}" for name in setups)
    failed = [f"{r.setup}/{r.candidate}" for r in results if not r.guard_ok]
    footer = f"\naccuracy guard FAILED for: {', '.join(failed)}" if failed else ""
    return (f"training step on {device} ({describe_threads(device)}), median of "
            f"{repeat} interleaved rounds of {STEPS_PER_EPOCH} steps; {described}\n"
            f"{format_table(results)}{footer}")
