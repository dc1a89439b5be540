"""The ``nol-fast`` command line: train, evaluate and inspect.

``nol-fast train`` with no arguments runs the built-in default experiment; ``--config FILE``
takes a config file in the layout of :class:`nol_fast.config.Config`.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from nol_fast import __version__, backends
from nol_fast.cli import data as data_cli
from nol_fast.training.progress import ensure_log_output


def _add_train(subparsers) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a model (default: the built-in heat-equation FNO)",
        description="Train a neural operator. Without --config, runs the built-in default: a "
        "2-D FNO on the heat-equation solution operator, generated and cached on the spot.",
    )
    parser.add_argument("--config", type=Path, help="YAML or JSON config file")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory (default: runs/<dataset>-<model>)")
    parser.add_argument("--epochs", type=int, help="override training.epochs")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, ...")
    parser.add_argument("--resume", action="store_true",
                        help="continue from <out>/checkpoints/last.pt")
    parser.add_argument("--print-config", action="store_true",
                        help="print the effective config as YAML and exit")
    parser.set_defaults(handler=_train)


def _add_evaluate(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate", help="evaluate a checkpoint on a data split",
        description="Evaluate a checkpoint written by 'nol-fast train'. The config defaults to "
        "the config.yaml of the run that wrote the checkpoint.",
    )
    parser.add_argument("checkpoint", type=Path, help="checkpoint file (.pt)")
    parser.add_argument("--config", type=Path, help="config file (default: the run's config.yaml)")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"))
    parser.add_argument("--device", default="auto")
    parser.set_defaults(handler=_evaluate)


def _add_info(subparsers) -> None:
    parser = subparsers.add_parser("info", help="versions and available devices")
    parser.set_defaults(handler=_info)


def _add_benchmark(subparsers) -> None:
    parser = subparsers.add_parser(
        "benchmark", help="time nol_fast's ops and optimizers against their anchors",
        description="Time nol_fast against its anchors in the same run and print medians in ms "
        "with speed-up ratios. 'spectral': every spectral convolution backend available here "
        "against neuraloperator (when installed) and the FFT reference. 'optim': one step of "
        "nol_fast's FusedAdamW and AdaBound (automatic and reference backends) against "
        "torch.optim.AdamW (for-loop, foreach, fused) and the adabound package (when "
        "installed), with effective bandwidth and its share of the device's copy bandwidth. "
        "'e2e': the whole FNO training step of nol_fast's Trainer (fp32 and its default "
        "precision) against neuraloperator's FNO in a minimal loop and in neuraloperator's "
        "Trainer, same weights, data, loss and optimizer, with peak memory and an accuracy "
        "guard; --variants adds the Trainer compiled and, on CUDA, in CUDA graphs.",
    )
    parser.add_argument("op", choices=("spectral", "optim", "e2e"), help="what to time")
    parser.add_argument("--repeat", type=int, default=None,
                        help="timed rounds (default: 20 for spectral; for optim 20 on fno, "
                        "5 on 10m; 5 for e2e)")
    parser.add_argument("--shapes", default="1d,2d,3d",
                        help="spectral: comma-separated shapes among 1d, 2d, 3d (default: all)")
    parser.add_argument("--sets", default="fno,10m",
                        help="optim: comma-separated parameter sets among fno (the parameters "
                        "of a 2-D FNO) and 10m (100 tensors, 10 M elements) (default: both)")
    parser.add_argument("--setups", default="a,b,c",
                        help="e2e: comma-separated setups among a (2-D, 64x64, width 32), b "
                        "(2-D, 32x32, width 64) and c (1-D, 1024, width 64) (default: all)")
    parser.add_argument("--variants", default="eager",
                        help="e2e: comma-separated fast paths of nol_fast's Trainer to time, "
                        "each in fp32 and default precision: eager (default), compile, and on "
                        "CUDA graphs and compile+graphs; 'all' for every one this device has")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE",
                        help="e2e: also write the results to FILE as JSON")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, cuda, ...")
    parser.set_defaults(handler=_benchmark)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nol-fast", description="Fast training of neural operators on PDE data."
    )
    parser.add_argument("--version", action="version", version=f"nol-fast {__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and results")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_train(subparsers)
    _add_evaluate(subparsers)
    _add_info(subparsers)
    _add_benchmark(subparsers)
    data_cli.add_parser(subparsers)
    return parser


def _load_config(path: Path | None):
    from nol_fast.cli.defaults import default_config
    from nol_fast.config import Config

    return Config.load(path) if path is not None else Config.from_dict(default_config())


def _train(args: argparse.Namespace) -> int:
    from nol_fast.cli.run import resolve_device, run_experiment

    config = _load_config(args.config)
    if args.epochs is not None:
        config.training = dataclasses.replace(config.training, epochs=args.epochs)
    if args.print_config:
        print(yaml.safe_dump(config.to_dict(), sort_keys=False), end="")
        return 0
    out = args.out or Path("runs") / (
        f"{config.data.get('dataset', 'data')}-{config.model.get('model_type', 'model')}"
    )
    result = run_experiment(config, out, resolve_device(args.device), resume=args.resume)
    print(f"final validation relative L2 error: {result.final_val_rel_l2:.4%}")
    print(f"best validation relative L2 error:  {result.best_val_rel_l2:.4%}")
    print(f"test relative L2 error (best weights): {result.test_metrics['rel_l2']:.4%}")
    print(f"time: {result.seconds:.1f} s; outputs in {result.out_dir}/ "
          f"(checkpoints/, tensorboard/, report.png)")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from nol_fast.cli.run import build_trainer, resolve_device
    from nol_fast.data import create_data_loader

    config_path = args.config or args.checkpoint.parent.parent / "config.yaml"
    if not config_path.is_file():
        raise FileNotFoundError(
            f"no config given and none found at {config_path}; pass --config FILE"
        )
    config = _load_config(config_path)
    trainer = build_trainer(config, resolve_device(args.device))
    trainer.load_checkpoint(str(args.checkpoint), load_optimizer=False)
    data = {"batch_size": config.training.batch_size, **config.data.to_dict()}
    metrics = trainer.evaluate(create_data_loader(data, split=args.split))
    print(f"{args.split}: loss={metrics['loss']:.6g} relative L2 error={metrics['rel_l2']:.4%} "
          f"({metrics['n_samples']} samples, checkpoint epoch {trainer.epoch})")
    return 0


def _info(args: argparse.Namespace) -> int:
    import platform

    import torch

    print(f"nol-fast {__version__}")
    print(f"python {platform.python_version()} on {platform.machine()}")
    print(f"torch {torch.__version__} (CUDA build: {torch.version.cuda or 'no'})")
    print(f"CUDA devices: {torch.cuda.device_count() if torch.cuda.is_available() else 0}")
    print(f"CPU threads: {torch.get_num_threads()}")
    for op, devices in backends().items():
        for device, report in devices.items():
            states = ", ".join(f"{name} ({state})" for name, state in report.items())
            print(f"{op} on {device}: {states}")
    return 0


def _benchmark(args: argparse.Namespace) -> int:
    from nol_fast.cli.run import resolve_device

    if args.repeat is not None and args.repeat < 1:
        raise ValueError(f"--repeat must be a positive int, got {args.repeat}")
    if args.op == "e2e":
        from nol_fast.bench.e2e import CUDA_ONLY, VARIANTS
        from nol_fast.bench.e2e import run as run_e2e

        device = resolve_device(args.device)
        setups = [n.strip() for n in args.setups.split(",") if n.strip()]
        variants = [n.strip() for n in args.variants.split(",") if n.strip()]
        if variants == ["all"]:
            variants = [v for v in VARIANTS if device.type == "cuda" or v not in CUDA_ONLY]
        repeat = {} if args.repeat is None else {"repeat": args.repeat}
        json_path = None if args.json is None else str(args.json)
        print(run_e2e(setups, device, json_path=json_path, variants=variants, **repeat))
        return 0
    if args.op == "spectral":
        from nol_fast.bench.spectral import run
        names = args.shapes
    else:
        from nol_fast.bench.optim import run
        names = args.sets
    # Each module's run has its own default repeat; pass one only when the user gave it.
    repeat = {} if args.repeat is None else {"repeat": args.repeat}
    print(run([n.strip() for n in names.split(",") if n.strip()], resolve_device(args.device),
              **repeat))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``nol-fast`` console script and ``python -m nol_fast``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    # Only nol_fast's own messages; other libraries keep their default (warnings and up).
    ensure_log_output(logging.WARNING if args.quiet else logging.INFO)
    try:
        return args.handler(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, KeyError, FileNotFoundError, RuntimeError) as err:
        # Bad input gets one clear line, not a traceback; NOL_FAST_DEBUG=1 shows the traceback.
        if os.environ.get("NOL_FAST_DEBUG"):
            raise
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"nol-fast {args.command}: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
