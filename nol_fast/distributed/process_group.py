"""Who this process is in a distributed run, and the process group it joins.

torchrun sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT`` for
every worker. :func:`resolve_settings` takes the values given as arguments, fills the others
from that environment (or from a process group that is already initialised), and refuses values
that disagree, naming each disagreement. :func:`resolve_device` gives each process the GPU of
its **local** rank. :func:`join_process_group` initialises the group when needed and says
whether it did, so that the creator alone destroys it (:func:`leave_process_group`).
:func:`main_process_first` lets global rank 0 run a block (data generation) before the others.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import torch
import torch.distributed as dist

from nol_fast.checks import as_int, as_real

logger = logging.getLogger(__name__)

#: Backends accepted by name; ``'nccl'`` needs CUDA devices.
BACKENDS = ("nccl", "gloo", "mpi", "ucc", "xccl")
#: Environment variables of torchrun that the settings are read from.
ENV_NAMES = {"world_size": "WORLD_SIZE", "rank": "RANK", "local_rank": "LOCAL_RANK"}
#: Process groups this process has created through torchrun's store (see _restart_store).
_groups_joined = 0


@dataclass(frozen=True)
class ProcessGroupSettings:
    """The identity of this process in the run and how its process group is made."""

    world_size: int
    rank: int
    local_rank: int
    backend: str
    init_method: str


def resolve_settings(
    world_size: int | None = None,
    rank: int | None = None,
    local_rank: int | None = None,
    backend: str | None = None,
    init_method: str | None = None,
    env: Mapping[str, str] | None = None,
) -> ProcessGroupSettings:
    """Complete and check the settings of this process.

    Each of ``world_size``, ``rank`` and ``local_rank`` that is not given is read from the
    torchrun environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``); where a value is given *and*
    set in the environment, or a process group is already initialised, they must agree.
    ``backend`` defaults to ``'nccl'`` when CUDA is available and ``'gloo'`` otherwise, and
    ``init_method`` to ``'env://'`` (which reads ``MASTER_ADDR`` and ``MASTER_PORT``).

    Raises
    ------
    ValueError
        Listing every disagreement, or naming a missing or out-of-range value.

    Examples
    --------
    >>> env = {"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1", "MASTER_ADDR": "localhost",
    ...        "MASTER_PORT": "29500"}
    >>> resolve_settings(backend="gloo", env=env).rank
    1
    >>> resolve_settings(world_size=4, backend="gloo", env=env)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: the distributed settings disagree: world_size=4 (argument) but WORLD_SIZE=2 ...
    """
    env = os.environ if env is None else env
    given = {"world_size": world_size, "rank": rank, "local_rank": local_rank}
    values: dict[str, int | None] = {}
    disagreements = []
    for name, value in given.items():
        if value is not None:
            value = as_int(value, name, minimum=0)
        env_name = ENV_NAMES[name]
        from_env = _env_int(env, env_name)
        if value is not None and from_env is not None and value != from_env:
            disagreements.append(
                f"{name}={value} (argument) but {env_name}={from_env} (torchrun environment)"
            )
        values[name] = value if value is not None else from_env
    if dist.is_available() and dist.is_initialized():
        for name, actual in (("world_size", dist.get_world_size()), ("rank", dist.get_rank())):
            if values[name] is not None and values[name] != actual:
                disagreements.append(
                    f"{name}={values[name]} but the initialised process group has {name} "
                    f"{actual}"
                )
            values[name] = actual
        actual_backend = str(dist.get_backend())
        if backend is not None and backend not in actual_backend.split(":"):
            disagreements.append(
                f"backend={backend!r} but the initialised process group uses {actual_backend!r}"
            )
        backend = backend or actual_backend
    if disagreements:
        raise ValueError("the distributed settings disagree: " + "; ".join(disagreements))

    if values["world_size"] is None or values["rank"] is None:
        missing = [n for n in ("world_size", "rank") if values[n] is None]
        raise ValueError(
            f"{' and '.join(missing)} not given and not in the environment: launch with "
            f"torchrun (which sets WORLD_SIZE, RANK and LOCAL_RANK) or pass world_size and "
            f"rank with an init_method such as 'tcp://host:port'"
        )
    size = as_int(values["world_size"], "world_size", minimum=1)
    this_rank = values["rank"]
    if this_rank >= size:
        raise ValueError(f"rank must be in [0, world_size={size}), got {this_rank}")
    if values["local_rank"] is None:
        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        values["local_rank"] = this_rank % gpus if gpus else 0
    if values["local_rank"] > this_rank:
        raise ValueError(
            f"local_rank must not exceed rank, got local_rank={values['local_rank']} and "
            f"rank={this_rank}"
        )
    backend = _check_backend(backend)
    init_method = init_method or "env://"
    if init_method == "env://" and not (dist.is_available() and dist.is_initialized()):
        missing_env = [name for name in ("MASTER_ADDR", "MASTER_PORT") if name not in env]
        if missing_env:
            raise ValueError(
                f"init_method 'env://' reads {' and '.join(missing_env)} from the environment, "
                f"which {'is' if len(missing_env) == 1 else 'are'} not set: launch with torchrun "
                f"or pass init_method='tcp://host:port'"
            )
    return ProcessGroupSettings(size, this_rank, values["local_rank"], backend, init_method)


def resolve_device(device: torch.device | str | None, local_rank: int) -> torch.device:
    """The training device of the process with ``local_rank``.

    Without ``device``: ``cuda:<local_rank>`` when CUDA is available (``cuda:0`` where each
    process sees a single GPU, as with one ``CUDA_VISIBLE_DEVICES`` per process), else the
    CPU. A CUDA ``device`` without an index gets that index; one with another index is an
    error, since every process would otherwise not train on its own GPU.

    Examples
    --------
    >>> resolve_device("cpu", local_rank=3)
    device(type='cpu')
    """
    requested = torch.device(device) if device is not None else None
    if requested is None and not torch.cuda.is_available():
        return torch.device("cpu")
    if requested is not None and requested.type != "cuda":
        return requested
    if not torch.cuda.is_available():
        raise ValueError(f"device {str(requested)!r} was requested but CUDA is not available")
    count = torch.cuda.device_count()
    if local_rank < count:
        own = torch.device("cuda", local_rank)
    elif count == 1:
        own = torch.device("cuda", 0)
    else:
        raise ValueError(
            f"local_rank {local_rank} has no GPU of its own: this process sees {count} GPUs; "
            f"launch at most {count} processes per node"
        )
    if requested is not None and requested.index is not None and requested != own:
        raise ValueError(
            f"device {str(requested)!r} disagrees with local_rank {local_rank}, whose GPU is "
            f"{str(own)!r}; pass device='cuda' (or nothing) to train on the local rank's GPU"
        )
    return own


def join_process_group(
    settings: ProcessGroupSettings,
    device: torch.device,
    timeout: float | datetime.timedelta | None = None,
) -> bool:
    """Initialise the default process group from ``settings`` unless one exists.

    ``timeout`` (seconds) bounds every collective, so a rank that died cannot hang the others
    forever. Returns True when this call created the group: its creator destroys it.
    """
    if dist.is_initialized():
        return False
    kwargs = {}
    if timeout is not None:
        if not isinstance(timeout, datetime.timedelta):
            timeout = datetime.timedelta(seconds=as_real(timeout, "timeout", minimum=0))
        kwargs["timeout"] = timeout
    if settings.backend == "nccl" and device.type == "cuda":
        kwargs["device_id"] = device  # binds the communicator to this rank's GPU eagerly
    store = _restart_store(settings, kwargs.get("timeout"))
    if store is None:
        kwargs["init_method"] = settings.init_method
    else:
        kwargs["store"] = store
    dist.init_process_group(
        backend=settings.backend, world_size=settings.world_size, rank=settings.rank, **kwargs,
    )
    logger.debug("joined the process group as rank %d of %d (%s)", settings.rank,
                 settings.world_size, settings.backend)
    return True


def _restart_store(
    settings: ProcessGroupSettings, timeout: datetime.timedelta | None
) -> dist.Store | None:
    """The key-value store of a torchrun attempt, or None to let ``init_method`` make one.

    torchrun's workers share its agent's store (``TORCHELASTIC_USE_AGENT_STORE``), which
    outlives a restart (``--max-restarts``) with the keys of the failed attempt in it: a
    restarted rank could read a dead rank's address from them and fail to connect. Each
    attempt therefore works under its own key prefix (``TORCHELASTIC_RESTART_COUNT``), and so
    does each process group an attempt creates after destroying the previous one (every rank
    creates them in the same order).
    """
    global _groups_joined
    env = os.environ
    if settings.init_method != "env://" or env.get("TORCHELASTIC_USE_AGENT_STORE") != "True":
        return None
    store = dist.TCPStore(
        env["MASTER_ADDR"], int(env["MASTER_PORT"]), settings.world_size, is_master=False,
        timeout=timeout or datetime.timedelta(minutes=5),
    )
    _groups_joined += 1
    attempt = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    return dist.PrefixStore(f"nol_fast/attempt_{attempt}/group_{_groups_joined}", store)


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """Run the block on global rank 0 first, then on the other ranks (a collective).

    For work whose result the others can reuse, such as generating and caching a data set.
    """
    if dist.get_rank() != 0:
        dist.barrier()
    try:
        yield
    finally:
        if dist.get_rank() == 0:
            dist.barrier()


def leave_process_group() -> None:
    """Destroy the default process group if it is initialised (idempotent)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def _check_backend(backend: str | None) -> str:
    if backend is None:
        return "nccl" if torch.cuda.is_available() else "gloo"
    names = [part.split(":")[-1] for part in backend.split(",")]
    unknown = [name for name in names if name not in BACKENDS]
    if unknown:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    unavailable = [name for name in names if not dist.is_backend_available(name)]
    if unavailable:
        available = [name for name in BACKENDS if dist.is_backend_available(name)]
        raise ValueError(
            f"backend {backend!r} is not available in this torch build; available: "
            f"{', '.join(available)}"
        )
    if "nccl" in names and not torch.cuda.is_available():
        raise ValueError("backend 'nccl' needs CUDA GPUs; use backend='gloo' on the CPU")
    return backend
