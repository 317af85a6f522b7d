"""A simulation job: what the user asked for -> the run(s) -> one document (JSON-ready) for table and report."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

from policy_lang.interp import Options
from policy_lang.pipeline import Built
from simulator import summary
from simulator.run import Outcome, Plan, Source, Stored, Synthetic, all_targets, simulate

Doc = dict[str, Any]


@attrs.frozen
class Job:
    policy: Built
    policy_path: str
    baseline: Built | None
    baseline_path: str | None
    source: Source
    year: int
    engine: str = "vector"
    workers: int = 1
    scheduler: str | None = None
    replicates: int = 1
    targets: tuple[Built, ...] = ()
    settings: tuple[tuple[str, int], ...] = ()  # values for parameters the policy leaves unspecified
    assumptions: tuple[tuple[str, str, str], ...] = ()  # (parameter, value as written, why) shown in output
    sets: tuple[str, ...] = ()  # the --set options as given, for the reproduce command


def run_job(job: Job, progress: Callable[[int], None] | None = None) -> Doc:
    """Run the job (K replicate seeds for a synthetic population) and return the document."""
    seeds = _replicate_sources(job.source, job.replicates)
    docs = [_one(job, source, progress) for source in seeds]
    doc = docs[0]
    if len(docs) > 1:
        doc["replicates"] = {"seeds": [s.seed for s in seeds if isinstance(s, Synthetic)],
                             "intervals_95": summary.replicate_intervals(docs)}
    return doc


def _replicate_sources(source: Source, k: int) -> list[Source]:
    if isinstance(source, Synthetic) and k > 1:
        return [attrs.evolve(source, seed=source.seed + i) for i in range(k)]
    return [source]


def _one(job: Job, source: Source, progress: Callable[[int], None] | None) -> Doc:
    plan = Plan(job.policy.graph, job.baseline.graph if job.baseline else None, source, job.year, job.engine,
                job.workers, job.scheduler, Options(settings=dict(job.settings)))
    outcome = simulate(plan, progress)
    return document(job, source, outcome)


def document(job: Job, source: Source, outcome: Outcome) -> Doc:
    graphs = [job.policy.graph, *(job.baseline.graph for _ in [1] if job.baseline), *(t.graph for t in job.targets)]
    targets = all_targets(graphs)
    doc: Doc = {
        "meta": {"policy": _policy_meta(job.policy, job.policy_path),
                 "baseline": _policy_meta(job.baseline, job.baseline_path) if job.baseline else None},
        "population": _population(source, job.year, outcome),
        "policy": summary.figures(outcome.stats, targets),
    }
    if outcome.baseline is not None and outcome.comparison is not None:
        doc["baseline"] = summary.figures(outcome.baseline, targets)
        doc["changes"] = summary.changes(doc["policy"], doc["baseline"])
        doc["winners_losers"] = summary.movers(outcome.comparison)
    doc["assumptions"] = [{"parameter": name, "value": value, "source": why} for name, value, why in job.assumptions]
    doc["reproduce"] = reproduce_command(job, source)
    return doc


def _policy_meta(built: Built | None, path: str | None) -> Doc:
    assert built is not None and path is not None
    graph = built.graph
    docs = []
    for period in built.checked.periods[-1:]:
        for d in period.resolved.documents:
            docs.append({"policy": d.name, "document": d.document, "title": d.title,
                         "dated": d.dated.isoformat() if d.dated else None,
                         "effective": d.effective.isoformat() if d.effective else None,
                         "until": d.until.isoformat() if d.until else None})
    chain = built.checked.chain
    main = chain[-1].policy
    return {"id": graph.policy, "title": graph.title, "path": path, "document": main.document,
            "effective": main.effective.isoformat() if main.effective else None,
            "until": main.until.isoformat() if main.until else None, "chain": [d.policy.name for d in chain],
            "documents": docs,
            "layers": [{"id": layer.id, "title": layer.title, "fund": layer.fund} for layer in graph.layers]}


def _population(source: Source, year: int, outcome: Outcome) -> Doc:
    base: Doc = {"year": year, "persons": outcome.stats.persons, "claims": outcome.stats.claims,
                 "claimants": outcome.stats.claimants}
    if isinstance(source, Synthetic):
        return {"source": "synthetic", "profile": source.profile, "size": source.size, "seed": source.seed,
                **base}
    return {"source": "stored", "directory": str(source.directory), **base}


def reproduce_command(job: Job, source: Source) -> str:
    parts = ["polc", "simulate", job.policy_path]
    if job.baseline_path:
        parts += ["--baseline", job.baseline_path]
    if isinstance(source, Synthetic):
        parts += ["--synthetic", str(source.size), "--profile", source.profile, "--seed", str(source.seed)]
    elif isinstance(source, Stored):
        parts += ["--population", str(source.directory)]
        parts += ["--encoding", source.encoding] if source.encoding != "utf-8" else []
    parts += ["--year", str(job.year)]
    if job.replicates > 1:
        parts += ["--replicates", str(job.replicates)]
    parts += [f"--set {shlex.quote(s)}" for s in job.sets]
    return " ".join(parts)


def stored(path: str) -> Stored:
    return Stored(Path(path))


class JobError(ValueError):
    """A job that cannot run as asked; the message is for the user."""


@attrs.frozen
class Request:
    """What the user asked for on the command line."""

    policy: str
    baseline: str | None
    population: str | None
    synthetic: int | None
    profile: str | None
    seed: int
    year: int | None
    engine: str
    workers: int
    scheduler: str | None
    replicates: int
    sets: tuple[str, ...]
    targets: tuple[str, ...]
    encoding: str = "utf-8"  # of a --population's CSV and JSON Lines files


def prepare(request: Request, build: Callable[[str], Built]) -> Job:
    """Build the policies and decide profile, year, targets and parameter values (raises JobError)."""
    from simulator.run import default_profile, default_year

    if (request.population is None) == (request.synthetic is None):
        raise JobError("give exactly one of --population DIR and --synthetic N")
    if request.synthetic is not None and request.synthetic < 1:
        raise JobError("--synthetic needs a positive number of persons")
    if request.replicates < 1 or (request.replicates > 1 and request.synthetic is None):
        raise JobError("--replicates K needs K ≥ 1 and a --synthetic population (replicates vary the seed)")
    policy = build(request.policy)
    baseline = build(request.baseline) if request.baseline else None
    main = policy.checked.chain[-1].policy
    year = request.year or default_year(main.effective)
    profile = request.profile or default_profile(policy.graph.schemes)
    source = _source(request, profile)
    targets = tuple(build(str(t)) for t in (request.targets or _target_files(request.policy)))
    from simulator.run import population_profile

    settings, assumptions = _parameters(policy, baseline, population_profile(source), request.sets)
    return Job(policy, request.policy, baseline, request.baseline, source, year, request.engine, request.workers,
               request.scheduler, request.replicates, targets, settings, assumptions, request.sets)


def _source(request: Request, profile: str) -> Source:
    if request.population is not None:
        from simulator.loaders import PopulationFilesError, population_files

        path = Path(request.population)
        try:
            population_files(path)
        except PopulationFilesError as exc:
            raise JobError(f"{exc}: a population directory holds persons and claims as Parquet, CSV or JSON Lines "
                           "(or make one with `polc population generate`)") from None
        return Stored(path, request.encoding)
    from simulator.profile import ProfileError, available_profiles, load_profile

    try:
        load_profile(profile)
    except (ProfileError, OSError) as exc:
        raise JobError(f"{exc}; profiles: {', '.join(available_profiles())}") from None
    assert request.synthetic is not None
    return Synthetic(profile, request.synthetic, request.seed)


def _target_files(policy_path: str) -> list[Path]:
    """Policies in the policy's root that declare population targets (the 2025 payout targets of 002)."""
    from policy_lang.load import find_root

    root = find_root(Path(policy_path))
    found = []
    for path in sorted(root.rglob("*.pol")):
        text = path.read_text("utf-8", errors="replace")
        if "\ntarget " in text or "\n  target " in text:
            found.append(path)
    return found


def _parameters(policy: Built, baseline: Built | None, profile: str | None,
                sets: tuple[str, ...]) -> tuple[tuple[tuple[str, int], ...], tuple[tuple[str, str, str], ...]]:
    """--set values, and the profile's assumed values for parameters a policy leaves unspecified."""
    from policy_lang.pipeline import SettingError, parse_settings

    builts = [b for b in (policy, baseline) if b is not None]
    given = {s.partition("=")[0].strip() for s in sets}
    assumed: list[tuple[str, str, str]] = []
    if profile is not None:
        from simulator.profile import load_profile

        open_params = {name for b in builts for e in b.graph.epochs for name, v in e.params if v is None}
        for name, (value, why) in load_profile(profile).parameters.items():
            if name in open_params and name not in given:
                assumed.append((name, value, f"assumed by profile {profile}: {why}"))
    settings: dict[str, int] = {}
    items = [*sets, *(f"{n}={v}" for n, v, _ in assumed)]
    for item in items:
        name = item.partition("=")[0].strip()
        owners = [b for b in builts if name in {n for e in b.graph.epochs for n, _ in e.params}]
        if not owners:
            raise JobError(f"--set {item}: no policy here has a parameter `{name}`")
        try:
            settings |= parse_settings(owners[0].checked, (item,))
        except SettingError as exc:
            raise JobError(str(exc)) from None
    shown = [(n, s.partition("=")[2], "given with --set") for s in sets for n in [s.partition("=")[0].strip()]]
    return tuple(sorted(settings.items())), (*shown, *assumed)
