"""The one module that talks to Ray. Everything else hands it plain functions and data.

Ray's API moves between versions; keeping every call here means one file to mend. The build asks
for four things: run a function somewhere (with resources and retries), keep a model alive in an
actor, wait for results, and say what the cluster has.

Two things about how Ray starts its processes are settled here too. Ray's workers put the driver's
working directory first on their import path: a folder named ``flowprep`` there (a clone's root)
would be imported as an empty namespace package in place of an editable install (whose import hook
runs after the path search), so the workers also get the folder that holds this package on their path:
Python takes a regular package found anywhere on the path over a namespace folder found earlier. And the embedded cluster listens on loopback only:
Ray turns 127.0.0.1 into the host's address and its servers bind every interface unless
RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 is set in the driver and every process it starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import FlowprepError
from .stages import StageSpec


def _stamp_node(result: Any) -> Any:
    """Mark results with the node that produced them (for the per-node summary)."""
    node = _node_label()
    for item in result if isinstance(result, list) else [result]:
        if hasattr(item, "node") and not getattr(item, "node"):
            item.node = node
    return result


def _node_label() -> str:
    """The node this runs on: its address, which a person recognises, and the start of its Ray node
    id, which tells apart nodes sharing one address."""
    import ray

    return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()[:8]}"


def _call(fn: Callable, *args: Any) -> Any:
    return _stamp_node(fn(*args))


def _call_counted(fn: Callable, *args: Any) -> tuple[Any, int]:
    """``fn(*args)`` and its frame count (0 for a result without frames), returned as two objects so
    the driver can count progress without fetching the pixels."""
    result = _stamp_node(fn(*args))
    return result, int(getattr(result, "num_frames", 0) or 0)


def _labelled(fn: Callable, *args: Any) -> tuple[str, Any]:
    return _node_label(), fn(*args)


class _StageActor:
    """A long-lived worker holding a stage that keeps state between calls (a flow model on a GPU)."""

    def __init__(self, cls: type, *init_args: Any):
        self.stage = cls(*init_args)

    def call(self, *args: Any) -> Any:
        return _stamp_node(self.stage(*args))

    def describe(self) -> Any:
        return self.stage.describe()


# Ray's switch between a one-machine cluster on loopback and a networked one (its name is historical).
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
# The folder holding this package: on every worker's import path.
PACKAGE_PARENT = str(Path(__file__).resolve().parents[2])


def _job_config():
    """Workers import this package from where the driver did, whatever folders the driver's working
    directory holds (Ray puts that directory and the script's folder on each worker's path too)."""
    from ray.job_config import JobConfig

    return JobConfig(_py_driver_sys_path=[PACKAGE_PARENT])


class _DropTokenNotice(logging.Filter):
    """Ray announces on every new local cluster that it turned token authentication on; the embedded
    cluster keeps it on, and the notice is noise in a build's output."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


@contextlib.contextmanager
def _loopback_only() -> Iterator[None]:
    """While the embedded cluster starts: Ray keeps 127.0.0.1 as its node address and binds its servers
    (GCS, raylet, object manager, workers, agents, metrics) to it. The variable is read by Ray's Python
    at import and by each process it spawns, so it is set in the environment and in the constant an
    earlier import of Ray computed."""
    from ray._private import ray_constants

    saved_env, saved_const = os.environ.get(LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    notices = logging.getLogger("ray._private.authentication.authentication_token_setup")
    quiet = _DropTokenNotice()
    notices.addFilter(quiet)
    try:
        yield
    finally:
        notices.removeFilter(quiet)
        ray_constants.ENABLE_RAY_CLUSTER = saved_const
        if saved_env is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = saved_env


class RayExecutor:
    """Runs stages on a Ray cluster: an embedded local one by default, or the one at ``address``."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, num_gpus: int | None = None):
        self.address = address
        self.num_cpus = num_cpus
        self.num_gpus = num_gpus
        self._started_here = False
        self._remote_call = None
        self._remote_counted = None
        self._actor_cls = None

    # ---- lifecycle ----------------------------------------------------------------------
    def __enter__(self) -> "RayExecutor":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        import ray

        if ray.is_initialized():
            pass  # a caller (a test, a notebook, a Ray job) already connected: use that cluster
        elif self.address:
            try:
                ray.init(address=self.address, logging_level=logging.WARNING, log_to_driver=False,
                         job_config=_job_config())
            except (ConnectionError, ValueError, RuntimeError) as exc:
                raise FlowprepError(
                    f"cannot connect to the Ray cluster at {self.address!r}: {exc}. "
                    "Start one with `ray start --head`, or drop --ray-address for a local cluster."
                ) from None
            self._started_here = True
        else:
            cpus = self.num_cpus or os.cpu_count() or 1
            with _loopback_only():
                ray.init(
                    address="local",  # a new embedded cluster, never one `ray start` left on this machine
                    _node_ip_address="127.0.0.1",  # a one-machine cluster talks over loopback only
                    num_cpus=cpus,
                    num_gpus=self.num_gpus,
                    include_dashboard=False,
                    logging_level=logging.WARNING,
                    log_to_driver=False,
                    configure_logging=True,
                    job_config=_job_config(),
                )
            self._started_here = True
        self._remote_call = ray.remote(_call)
        self._remote_counted = ray.remote(num_returns=2)(_call_counted)
        self._actor_cls = ray.remote(_StageActor)

    def close(self) -> None:
        import ray

        if self._started_here and ray.is_initialized():
            ray.shutdown()
        self._started_here = False

    # ---- what the cluster has ----------------------------------------------------------------
    def resources(self) -> dict[str, float]:
        import ray

        res = ray.cluster_resources()
        alive = [n for n in ray.nodes() if n.get("Alive")]
        return {"CPU": float(res.get("CPU", 0)), "GPU": float(res.get("GPU", 0)), "nodes": float(len(alive))}

    def on_each_node(self, fn: Callable, *args: Any, timeout: float = 120.0) -> dict[str, Any]:
        """``fn(*args)`` once on every live node (pinned there), as {node label: result}."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        refs = [
            self._remote_call.options(
                num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(_labelled, fn, *args)
            for node in ray.nodes()
            if node.get("Alive")
        ]
        try:
            return dict(ray.get(refs, timeout=timeout))
        except ray.exceptions.GetTimeoutError:
            raise FlowprepError(f"some Ray nodes did not run a one-second check within {timeout:.0f} s") from None

    # ---- work ---------------------------------------------------------------------------
    def submit(self, spec: StageSpec, fn: Callable, *args: Any):
        """Run ``fn(*args)`` as a task; ``args`` may hold results of earlier submissions."""
        return self._remote_call.options(
            num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, max_retries=spec.max_retries, name=spec.name
        ).remote(fn, *args)

    def submit_counted(self, spec: StageSpec, fn: Callable, *args: Any) -> tuple[Any, Any]:
        """Like ``submit``, plus a second reference that holds the result's frame count: small enough to
        fetch for a progress figure while the result itself stays where it was made."""
        result, frames = self._remote_counted.options(
            num_cpus=spec.num_cpus, num_gpus=spec.num_gpus, max_retries=spec.max_retries, name=spec.name
        ).remote(fn, *args)
        return result, frames

    def start_actors(self, spec: StageSpec, cls: type, init_args: Sequence, count: int) -> list:
        """``count`` actors each holding ``cls(*init_args)``, each taking ``spec``'s resources;
        restarted when their process dies."""
        opts = dict(
            num_cpus=spec.num_cpus,
            num_gpus=spec.num_gpus,
            max_restarts=spec.max_retries,
            max_task_retries=spec.max_retries,
        )
        return [self._actor_cls.options(**opts).remote(cls, *init_args) for _ in range(count)]

    def call_actor(self, actor, *args: Any):
        return actor.call.remote(*args)

    def describe_actor(self, actor):
        return actor.describe.remote()

    def wait(self, refs: Sequence, timeout: float | None = None) -> tuple[list, list]:
        import ray

        if not refs:
            return [], []
        return ray.wait(list(refs), num_returns=1, timeout=timeout, fetch_local=False)

    def ready(self, refs: Sequence) -> list:
        """The subset of ``refs`` that is finished, without waiting."""
        import ray

        if not refs:
            return []
        done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0, fetch_local=False)
        return done

    def get(self, ref) -> Any:
        """The value of a finished submission; a FlowprepError raised remotely comes back as itself."""
        import ray
        from ray.exceptions import RayError, RayTaskError

        try:
            return ray.get(ref)
        except RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, FlowprepError):
                raise cause from None
            raise FlowprepError(f"a Ray task failed after its retries: {_first_line(exc)}") from None
        except RayError as exc:
            raise FlowprepError(f"Ray lost the work: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1][:400] if text else type(exc).__name__


# ---- Ray Train: data-parallel training (flowprep.train) -------------------------------------------
# The trainer's own DDP code runs unchanged in every worker: Ray Train starts the processes, one per
# GPU (or CPU slot), and makes the torch process group (NCCL on GPUs, gloo on CPUs) before calling it.

def run_data_parallel(fn: Callable[[Any], Any], arg: Any, *, address: str | None, workers_per_node: int,
                      use_gpu: bool | None, storage_path: str, name: str, timeout_s: float) -> Any:
    """``fn(arg)`` in ``workers_per_node`` workers on every live node, as ranks of one process group;
    returns what rank 0's ``fn`` returned (a JSON-able value, passed back through a file under
    ``storage_path``, which every node must see). ``use_gpu`` None: GPUs when the
    cluster has any. A worker that dies ends the run with a FlowprepError (no retry: the caller's
    checkpoint is where a rerun resumes)."""
    import ray
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    if workers_per_node < 1:
        raise FlowprepError("--workers-per-node must be at least 1")
    executor = RayExecutor(address=address)
    executor.start()
    try:
        have = executor.resources()
        gpu = have["GPU"] > 0 if use_gpu is None else use_gpu
        if gpu and have["GPU"] < 1:
            raise FlowprepError(f"the Ray cluster at {address or 'local'} has no GPU: use --device cpu")
        nodes = [n for n in ray.nodes() if n.get("Alive") and (not gpu or n.get("Resources", {}).get("GPU", 0) > 0)]
        workers = workers_per_node * max(1, len(nodes))
        os.makedirs(storage_path, exist_ok=True)
        result_path = os.path.join(storage_path, f"{name}.rank0.json")
        if os.path.exists(result_path):
            os.remove(result_path)
        trainer = TorchTrainer(
            _ray_train_rank, train_loop_config={"fn": fn, "arg": arg, "gpu": gpu, "result": result_path},
            torch_config=TorchConfig(backend="nccl" if gpu else "gloo", timeout_s=int(timeout_s)),
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpu),
            run_config=RunConfig(name=name, storage_path=storage_path, failure_config=FailureConfig(max_failures=0)),
        )
        try:
            trainer.fit()
        except Exception as exc:  # Ray Train wraps what a worker raised
            cause = exc
            while cause is not None and not isinstance(cause, FlowprepError):
                cause = cause.__cause__ or getattr(cause, "cause", None)
            if isinstance(cause, FlowprepError):
                raise cause from None
            raise FlowprepError(f"Ray Train stopped: {_first_line(exc)}") from None
        with open(result_path) as fh:
            return json.load(fh)
    finally:
        executor.close()


def _ray_train_rank(config: dict[str, Any]) -> None:
    """One Ray Train worker: say its rank the way torchrun does, run, and let rank 0 report."""
    import ray.train

    context = ray.train.get_context()
    local = context.get_local_rank()
    if config["gpu"]:
        import ray.train.torch

        local = ray.train.torch.get_device().index or 0  # the GPU Ray gave this worker, among those visible
    os.environ.update(RANK=str(context.get_world_rank()), WORLD_SIZE=str(context.get_world_size()),
                      LOCAL_RANK=str(local), FLOWPREP_RAY_TRAIN="1")
    value = config["fn"](config["arg"])
    if context.get_world_rank() == 0:
        tmp = f"{config['result']}.tmp"
        with open(tmp, "w") as fh:
            json.dump(value, fh)
        os.replace(tmp, config["result"])
