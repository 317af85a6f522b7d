"""Replay: a population, chunk by chunk, through a policy (and a baseline) -> merged Stats and Comparison.

Chunks are fixed blocks of persons (independent of the number of workers), evaluated in any order and
merged in block order with exact integer sums, so every engine and worker count gives the same output.
"""

from __future__ import annotations

import datetime
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from policy_lang import interp
from policy_lang.columns import Columns
from policy_lang.data import DataVocabulary
from policy_lang.graph import Graph, TargetNode
from simulator import compare, metrics
from simulator.engines import evaluate

Progress = Callable[[int], None]
CHUNK_CLAIMS = 100_000  # claims per chunk of a stored population at most (an evaluation's memory grows with them)


@attrs.frozen
class Synthetic:
    profile: str
    size: int
    seed: int


@attrs.frozen
class Stored:
    directory: Path  # persons.{parquet,csv,jsonl} and claims.{parquet,csv,jsonl}
    encoding: str = "utf-8"  # of CSV and JSON Lines files


Source = Synthetic | Stored


@attrs.frozen
class Plan:
    policy: Graph
    baseline: Graph | None
    source: Source
    year: int
    engine: str = "vector"  # vector | interp | dask
    workers: int = 1
    scheduler: str | None = None  # dask scheduler address; None: a local cluster
    options: interp.Options = interp.Options()


@attrs.define
class Outcome:
    stats: metrics.Stats
    baseline: metrics.Stats | None
    comparison: compare.Comparison | None


@attrs.frozen
class _Task:
    """What a worker needs to produce one chunk and evaluate it."""

    plan: Plan
    block: int
    columns: Columns | None = None  # stored populations are read by the parent


def simulate(plan: Plan, progress: Progress | None = None) -> Outcome:
    tasks = _tasks(plan)
    results = _dispatch(plan, tasks, progress)
    return _merge(results)


def block_total(plan: Plan) -> int | None:
    """How many chunks a run has (None when a stored population is read as it goes)."""
    if isinstance(plan.source, Synthetic):
        from simulator.population import block_count

        return block_count(plan.source.size)
    return None


def _tasks(plan: Plan) -> Iterator[_Task]:
    if isinstance(plan.source, Synthetic):
        from simulator.population import block_count

        for block in range(block_count(plan.source.size)):
            yield _Task(plan, block)
        return
    from simulator import loaders

    chunks = loaders.iter_columns(plan.source.directory, _vocabulary(plan), plan.source.encoding, notify=_notice,
                                  chunk_claims=CHUNK_CLAIMS)
    for block, cols in enumerate(chunks):
        yield _Task(plan, block, cols)


def _vocabulary(plan: Plan) -> DataVocabulary:
    """What the data may name: the policy's identities, diseases and columns, and the baseline's too."""
    from policy_lang.pipeline import data_vocabulary

    vocabs = [data_vocabulary(g) for g in (plan.baseline, plan.policy) if g is not None]
    diseases = {name: name for name in population_diseases(plan.source)}
    return DataVocabulary(frozenset().union(*(v.identities for v in vocabs)),
                          diseases | {token: id_ for v in vocabs for token, id_ in v.diseases.items()},
                          tuple({c.name: c for v in vocabs for c in v.columns}.values()))


def population_profile(source: Source) -> str | None:
    """The profile a stored population was generated from, as its Parquet metadata records it."""
    if not isinstance(source, Stored):
        return source.profile
    try:
        from simulator.parquet_io import read_metadata

        profile = read_metadata(source.directory).get("profile")
    except Exception:
        return None
    return str(profile) if profile else None


def population_diseases(source: Source) -> tuple[str, ...]:
    """Disease names a generated population's profile uses: valid data even where a policy lists none of them."""
    name = population_profile(source)
    if name is None:
        return ()
    from simulator.profile import ProfileError, load_profile

    try:
        return load_profile(name).disease_names
    except (ProfileError, OSError):
        return ()


def _notice(message: str) -> None:
    print(f"polc: {message}", file=sys.stderr)


ChunkResult = tuple[metrics.Stats, metrics.Stats | None, compare.Comparison | None]


def run_task(task: _Task) -> ChunkResult:
    """Produce (or take) one chunk and evaluate it under the policy and the baseline."""
    plan = task.plan
    cols = task.columns if task.columns is not None else _generate(plan, task.block)
    return evaluate_chunk(plan, cols)


def evaluate_chunk(plan: Plan, cols: Columns) -> ChunkResult:
    engine = "vector" if plan.engine == "dask" else plan.engine
    new = evaluate(plan.policy, cols, plan.options, engine)
    stats = metrics.chunk_stats(plan.policy, cols, new, plan.year)
    if plan.baseline is None:
        return stats, None, None
    old = evaluate(plan.baseline, cols, plan.options, engine)
    base = metrics.chunk_stats(plan.baseline, cols, old, plan.year)
    return stats, base, compare.compare_chunk(cols, new, old, plan.year, plan.options)


def _generate(plan: Plan, block: int) -> Columns:
    from simulator.population import generate_block
    from simulator.profile import load_profile

    source = plan.source
    assert isinstance(source, Synthetic)
    return generate_block(load_profile(source.profile), source.size, source.seed, plan.year, block)


def _dispatch(plan: Plan, tasks: Iterator[_Task], progress: Progress | None) -> list[ChunkResult]:
    if plan.engine == "dask":
        return _dispatch_dask(plan, list(tasks), progress)
    if plan.workers <= 1:
        out = []
        for task in tasks:
            out.append(run_task(task))
            if progress:
                progress(1)
        return out
    share = str(max(1, cpu_count() // plan.workers))  # the kernel's threads in each worker: the CPUs shared out
    with ProcessPoolExecutor(max_workers=plan.workers, mp_context=_context(), initializer=_worker_threads,
                             initargs=(share,)) as pool:
        out = []
        window: deque[Future[ChunkResult]] = deque()
        for task in tasks:  # at most two chunks per worker in flight: a stored population is never all in memory
            window.append(pool.submit(run_task, task))
            if len(window) >= 2 * plan.workers:
                out.append(_take(window, progress))
        while window:
            out.append(_take(window, progress))
        return out


def _worker_threads(threads: str) -> None:
    """In a worker process: how many threads the vector evaluator's kernel uses (policy_lang.kernel.threads)."""
    os.environ["POLC_THREADS"] = threads


def _take(window: deque[Future[ChunkResult]], progress: Progress | None) -> ChunkResult:
    result = window.popleft().result()
    if progress:
        progress(1)
    return result


def _context() -> Any:
    import multiprocessing

    # fork shares the parsed policies with the workers for free where it is available
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    return multiprocessing.get_context(method)


def _dispatch_dask(plan: Plan, tasks: Sequence[_Task], progress: Progress | None) -> list[ChunkResult]:
    try:
        from dask.distributed import Client, LocalCluster
    except ImportError:
        raise RuntimeError("the dask engine needs the dask extra: pip install 'polc[dask]'") from None
    cluster = None
    if plan.scheduler is None:
        cluster = LocalCluster(n_workers=max(1, plan.workers), threads_per_worker=1, processes=True,
                               dashboard_address=None)
    client = Client(plan.scheduler or cluster)
    try:
        futures = client.map(run_task, tasks, pure=False)
        out = []
        for future in futures:  # in submission order: the merge order is fixed
            out.append(future.result())
            if progress:
                progress(1)
        return out
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _merge(results: Sequence[ChunkResult]) -> Outcome:
    stats, base, comparison = results[0]
    for s, b, c in results[1:]:
        stats.merge(s)
        if base is not None and b is not None:
            base.merge(b)
        if comparison is not None and c is not None:
            comparison.merge(c)
    return Outcome(stats, base, comparison)


def default_year(policy_effective: datetime.date | None) -> int:
    """The first whole calendar year under the policy (its effective year if it starts on 1 January)."""
    if policy_effective is None:
        return datetime.date.today().year
    if (policy_effective.month, policy_effective.day) == (1, 1):
        return policy_effective.year
    return policy_effective.year + 1


def default_profile(schemes: Sequence[str]) -> str:
    """A profile whose people the policy covers: residents, provincial-direct employees, or Jining's mix."""
    kinds = set(schemes)
    if kinds == {"provincial_direct"}:
        return "liaoning-provincial-direct"
    if "employee" in kinds:
        return "jining"
    return "liaoning-resident"


def cpu_count() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def all_targets(graphs: Sequence[Graph]) -> list[TargetNode]:
    seen: dict[str, TargetNode] = {}
    for graph in graphs:
        for epoch in graph.epochs:
            for target in epoch.targets:
                seen.setdefault(target.id, target)
    return list(seen.values())
