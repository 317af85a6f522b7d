"""The polc command line: one thin click function per command; errors to stderr; exit 0/1/2."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import click

from policy_lang import diagnostics as dg
from policy_lang import interp
from policy_lang.ast import Span
from policy_lang.data import DataError, Dataset, load_dataset
from policy_lang.diagnostics import PolicyError, SourceCache
from policy_lang.pipeline import (
    Built,
    SettingError,
    build,
    data_vocabulary,
    iter_pol_files,
    parse_date_option,
    parse_settings,
    write_atomic,
)

EXIT_FINDINGS, EXIT_USAGE = 1, 2


def _die(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"polc: error: {message}", err=True)
    sys.exit(code)


def _print_diags(diags: tuple[dg.Diagnostic, ...] | list[dg.Diagnostic], sources: SourceCache) -> None:
    for d in diags:
        click.echo(dg.render(d, sources), err=True)


def _build_or_exit(path: str, sources: SourceCache) -> Built:
    try:
        built = build(path, sources)
    except PolicyError as exc:
        _print_diags(exc.diagnostics, sources)
        n = sum(1 for d in exc.diagnostics if d.severity == "error")
        _die(f"{path}: {n} error{'s' if n != 1 else ''}", EXIT_FINDINGS)
    return built


def _load_data(built: Built, persons: str, claims: str, encoding: str) -> Dataset:
    try:
        return load_dataset(persons, claims, data_vocabulary(built.graph), encoding)
    except DataError as exc:
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="polc")
def main() -> None:
    """polc: policy-as-code for Chinese medical-insurance benefit rules."""


# ---- check ------------------------------------------------------------------------------------------------------
@main.command("check")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--against", "floors", type=click.Path(exists=True, dir_okay=False),
              help="A policy of requirements (compliance floors) the files must meet.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def check_cmd(files: tuple[str, ...], floors: str | None, fmt: str) -> None:
    """Check policy files (and directories of them); report every problem with its location."""
    from policy_lang.requirements import check_against
    from policy_lang.testing import unspecified_needs

    sources = SourceCache()
    found: list[dg.Diagnostic] = []
    floor_built = None
    if floors:
        try:
            floor_built = build(floors, sources)
        except PolicyError as exc:
            found.extend(exc.diagnostics)
    paths = list(iter_pol_files(files))
    if not paths:
        _die("no .pol files found")
    for path in paths:
        if not path.exists():
            found.append(dg.error("no such file", Span(str(path), 1, 1, 1, 1)))
            continue
        try:
            built = build(path, sources)
        except PolicyError as exc:
            found.extend(exc.diagnostics)
            continue
        found.extend(built.checked.warnings)
        found.extend(unspecified_needs(built))
        if floor_built is not None:
            found.extend(check_against(floor_built, built))
    errors = sum(1 for d in found if d.severity == "error")
    if fmt == "json":
        click.echo(dg.to_json(found))
    else:
        _print_diags(found, sources)
        warnings = len(found) - errors
        click.echo(f"{len(paths)} file{'s' if len(paths) != 1 else ''} checked: {errors} error"
                   f"{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}", err=True)
    sys.exit(EXIT_FINDINGS if errors else 0)


# ---- eval -------------------------------------------------------------------------------------------------------
ENGINES = ("vector", "interp")


def evaluate(built: Built, data: Dataset, options: interp.Options, engine: str = ENGINES[0]) -> interp.Result:
    if engine == "vector":
        from policy_lang import vector

        return vector.run(built.graph, data, options)
    return interp.run(built.graph, data, options)


@main.command("eval")
@click.argument("policy", type=click.Path(exists=True, dir_okay=False))
@click.option("--persons", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--claims", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--as-of", "as_of", help="Pay every claim under the rules in force on this date (YYYY-MM-DD).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Value for a parameter.")
@click.option("--format", "fmt", type=click.Choice(["json", "csv", "table"]), default="json", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write here (atomically) instead of stdout.")
@click.option("--engine", type=click.Choice(ENGINES), default=ENGINES[0], show_default=True)
@click.option("--encoding", default="utf-8", show_default=True, help="Encoding of the data files.")
def eval_cmd(policy: str, persons: str, claims: str, as_of: str | None, sets: tuple[str, ...], fmt: str,
             out: str | None, engine: str, encoding: str) -> None:
    """Pay the claims of PERSONS/CLAIMS under POLICY, to the fen."""
    from policy_lang import report_eval

    sources = SourceCache()
    built = _build_or_exit(policy, sources)
    options = _options(built, as_of, sets)
    data = _load_data(built, persons, claims, encoding)
    result = _run_or_exit(lambda: evaluate(built, data, options, engine))
    render: dict[str, Callable[[interp.Result], str]] = {
        "json": report_eval.to_json, "csv": report_eval.to_csv, "table": report_eval.to_table}
    text = render[fmt](result)
    if out:
        write_atomic(out, text)
    else:
        click.echo(text, nl=False)


def _options(built: Built, as_of: str | None, sets: tuple[str, ...]) -> interp.Options:
    try:
        return interp.Options(parse_date_option(as_of), parse_settings(built.checked, sets))
    except SettingError as exc:
        _die(str(exc))


def _run_or_exit(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except interp.EvalError as exc:
        _die(str(exc))


# ---- explain ----------------------------------------------------------------------------------------------------
@main.command("explain")
@click.argument("policy", type=click.Path(exists=True, dir_okay=False))
@click.option("--persons", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--claims", required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--person", "person_id", required=True, help="The person whose claims to explain.")
@click.option("--as-of", "as_of")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE")
@click.option("--encoding", default="utf-8", show_default=True)
def explain_cmd(policy: str, persons: str, claims: str, person_id: str, as_of: str | None,
                sets: tuple[str, ...], encoding: str) -> None:
    """Explain, claim by claim and layer by layer, how one person was paid, with citations."""
    from policy_lang.explain import explain

    sources = SourceCache()
    built = _build_or_exit(policy, sources)
    options = _options(built, as_of, sets)
    data = _load_data(built, persons, claims, encoding)
    if person_id not in {p.person_id for p in data.persons}:
        _die(f"no person `{person_id}` in {persons}")
    only = Dataset(tuple(p for p in data.persons if p.person_id == person_id),
                   tuple(c for c in data.claims if c.person_id == person_id))
    result = _run_or_exit(lambda: interp.run(built.graph, only, options, trace_person=person_id))
    click.echo(explain(built.graph, only, result, options))


# ---- test -------------------------------------------------------------------------------------------------------
@main.command("test")
@click.argument("paths", nargs=-1, type=click.Path(exists=True))
@click.option("--engine", "engines", multiple=True, type=click.Choice(ENGINES),
              help="Engines to run (default: both, which must agree).")
@click.option("-v", "--verbose", is_flag=True, help="List every test, not only failures.")
def test_cmd(paths: tuple[str, ...], engines: tuple[str, ...], verbose: bool) -> None:
    """Run the tests written inside policy files; print `N passed, N failed`."""
    from policy_lang.testing import run_tests

    chosen = engines or ENGINES
    runners = [(e, _engine_fn(e)) for e in chosen]
    sources = SourceCache()
    passed = failed = 0
    for path in iter_pol_files(paths or ("policies",)):
        try:
            built = build(path, sources)
        except PolicyError as exc:
            _print_diags(exc.diagnostics, sources)
            failed += 1
            continue
        for outcome in run_tests(built, runners):
            where = f"{outcome.span.path}:{outcome.span.line}"
            if outcome.passed:
                passed += 1
                if verbose:
                    click.echo(f"PASS {where} {outcome.title}")
            else:
                failed += 1
                click.echo(f"FAIL {where} {outcome.title}")
                for f in outcome.failures:
                    click.echo(f"    {f}")
    click.echo(f"{passed} passed, {failed} failed")
    sys.exit(EXIT_FINDINGS if failed else 0)


def _engine_fn(engine: str) -> Callable[[Built, Dataset, interp.Options], interp.Result]:
    return lambda built, data, options: evaluate(built, data, options, engine)


# ---- graph ------------------------------------------------------------------------------------------------------
@main.command("graph")
@click.argument("policy", type=click.Path(exists=True, dir_okay=False))
@click.option("--as-of", "as_of", help="Show only the epoch in force on this date.")
@click.option("--format", "fmt", type=click.Choice(["json", "dot"]), default="json", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False))
def graph_cmd(policy: str, as_of: str | None, fmt: str, out: str | None) -> None:
    """Print the evaluation graph the evaluators run (JSON, or Graphviz dot)."""
    from policy_lang import graph_out

    sources = SourceCache()
    built = _build_or_exit(policy, sources)
    try:
        day = parse_date_option(as_of)
    except SettingError as exc:
        _die(str(exc))
    text = graph_out.to_dot(built.graph, day) if fmt == "dot" else graph_out.to_json(built.graph, day)
    if out:
        write_atomic(out, text)
    else:
        click.echo(text, nl=False)


# ---- fmt --------------------------------------------------------------------------------------------------------
@main.command("fmt")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--check", "check_only", is_flag=True, help="Change nothing; exit 1 if a file is not formatted.")
def fmt_cmd(files: tuple[str, ...], check_only: bool) -> None:
    """Rewrite policy files in the canonical layout (comments kept; formatting twice changes nothing).

    Every file is read and formatted first; if any has an error, every error is printed and no file is
    written (exit 1). Only then are the changed files written, each atomically."""
    from policy_lang.fmt import format_source
    from policy_lang.load import read_source

    sources = SourceCache()
    errors: list[dg.Diagnostic] = []
    failed = 0  # files with an error
    changed: list[tuple[Path, str]] = []
    seen: set[Path] = set()
    for path in iter_pol_files(files):
        key = path.resolve()
        if key in seen:  # named twice (or through a directory and by name): format it once
            continue
        seen.add(key)
        try:
            text = read_source(path, str(path))  # a regular UTF-8 file of bounded size, as check reads it
            sources.add(str(path), text)
            formatted = format_source(text, str(path))
        except PolicyError as exc:
            errors.extend(exc.diagnostics)
            failed += 1
            continue
        if formatted != text:
            changed.append((path, formatted))
    if failed:
        _print_diags(errors, sources)
        if not check_only:
            click.echo(f"polc: {failed} file{'s' if failed != 1 else ''} with errors: no file written", err=True)
        sys.exit(EXIT_FINDINGS)
    for path, formatted in changed:
        if check_only:
            click.echo(f"would reformat {path}", err=True)
        else:
            write_atomic(path, formatted)
            click.echo(f"reformatted {path}", err=True)
    if check_only and changed:
        sys.exit(EXIT_FINDINGS)


# ---- diff -------------------------------------------------------------------------------------------------------
@main.command("diff")
@click.argument("old", type=click.Path(exists=True, dir_okay=False))
@click.argument("new", type=click.Path(exists=True, dir_okay=False))
@click.option("--old-as-of", "old_as_of", help="Resolve OLD at this date (default: its document's effective date).")
@click.option("--new-as-of", "new_as_of", help="Resolve NEW at this date (default: its document's effective date).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write here (atomically) instead of stdout.")
@click.option("--population", type=click.Path(exists=True, file_okay=False),
              help="Behavioural diff on this population directory: fund impact and its attribution.")
@click.option("--synthetic", type=int, metavar="N", help="Behavioural diff on N generated persons instead.")
@click.option("--profile", "profile_name", help="Population profile for --synthetic (default: by NEW's schemes).")
@click.option("--seed", type=int, default=1, show_default=True, help="Seed of the --synthetic population.")
@click.option("--year", type=int, help="The calendar year simulated (default: NEW's first full year).")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Value for an unspecified parameter.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Processes for the behavioural diff (one population chunk each).")
def diff_cmd(old: str, new: str, old_as_of: str | None, new_as_of: str | None, fmt: str, out: str | None,
             population: str | None, synthetic: int | None, profile_name: str | None, seed: int, year: int | None,
             sets: tuple[str, ...], workers: int) -> None:
    """List what changed between two policy versions, value by value, with both citations; with a
    population, also what it costs each fund and how much of it each change explains."""
    from policy_lang import diff

    try:
        old_day, new_day = parse_date_option(old_as_of), parse_date_option(new_as_of)
    except SettingError as exc:
        _die(str(exc))
    sources = SourceCache()
    old_built, new_built = _build_or_exit(old, sources), _build_or_exit(new, sources)
    result = diff.structural_diff(old_built.checked, new_built.checked, old_day, new_day)
    behaviour = None
    if population is not None or synthetic is not None:
        from simulator import job as jobs

        built = {old: old_built, new: new_built}
        request = jobs.Request(new, old, population, synthetic, profile_name, seed, year, "vector", workers, None,
                               1, sets, ())
        try:
            job = jobs.prepare(request, lambda path: built.get(path) or _build_or_exit(path, sources))
            behaviour = _diff_behaviour(result, job)
        except (jobs.JobError, interp.EvalError) as exc:
            _die(str(exc))
    elif profile_name or year or sets:
        _die("--profile, --year and --set need --population DIR or --synthetic N")
    render: dict[str, Callable[..., str]] = {"text": diff.to_text, "json": diff.to_json, "html": diff.to_html}
    text = render[fmt](result, behaviour)
    if out:
        write_atomic(out, text)
    else:
        click.echo(text, nl=False)


def _diff_behaviour(result: Any, job: Any) -> Any:
    from policy_lang import diff_impact

    total = diff_impact.variant_count(result) * (_block_total(job) or 1)
    if not sys.stderr.isatty() or total <= 1:
        return diff_impact.measure(result, job)
    with click.progressbar(length=total, label="simulating variants", file=sys.stderr) as bar:
        return diff_impact.measure(result, job, bar.update)


def _block_total(job: Any) -> int | None:
    from simulator.run import Plan, block_total

    return block_total(Plan(job.policy.graph, None, job.source, job.year))


# ---- population -------------------------------------------------------------------------------------------------
@main.group("population")
def population_group() -> None:
    """Synthetic populations: generate one from a profile; describe one against a profile's targets."""


def _profile_or_exit(name: str) -> Any:
    from simulator.profile import ProfileError, load_profile

    try:
        return load_profile(name)
    except ProfileError as exc:
        _die(str(exc))


@population_group.command("generate")
@click.option("--size", required=True, type=click.IntRange(min=1), help="Number of persons.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Random seed: the same seed, size, profile and year give the same population.")
@click.option("--profile", "profile_name", required=True,
              help="A bundled profile (see `polc population profiles`) or a profile .toml file.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Directory for persons.parquet and claims.parquet (written atomically).")
@click.option("--year", default=2023, show_default=True, type=click.IntRange(1900, 2100),
              help="Calendar year of the claims and identity grants.")
def population_generate_cmd(size: int, seed: int, profile_name: str, out: str, year: int) -> None:
    """Generate a synthetic population (persons and claims, DESIGN.md §4) as Parquet files."""
    import time
    from pathlib import Path

    from simulator.parquet_io import write_population
    from simulator.population import generate_chunks

    profile = _profile_or_exit(profile_name)
    if Path(out).exists() and not Path(out).is_dir():
        _die(f"--out {out}: exists and is not a directory")
    start, totals = time.perf_counter(), [0, 0]

    def counted(chunks: Any) -> Any:
        for chunk in chunks:
            totals[0] += chunk.persons.n
            totals[1] += chunk.claims.m
            yield chunk

    metadata = {"profile": profile.name, "size": size, "seed": seed, "year": year}
    try:
        write_population(counted(generate_chunks(profile, size, seed, year)), out, metadata)
    except OSError as exc:
        _die(f"cannot write the population to {out}: {exc.strerror or exc}")
    click.echo(f"wrote {totals[0]:,} persons and {totals[1]:,} claims ({profile.name}, seed {seed}, {year}) "
               f"to {out} in {time.perf_counter() - start:.1f} s", err=True)


@population_group.command("describe")
@click.argument("directory", type=click.Path())
@click.option("--profile", "profile_name",
              help="Compare with this profile (default: the profile the population was generated from).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--strict", is_flag=True, help="Exit 1 when a statistic is off its target.")
def population_describe_cmd(directory: str, profile_name: str | None, fmt: str, strict: bool) -> None:
    """Print a population's realised statistics beside the profile's targets (ok / off by its tolerances)."""
    import json

    from simulator.parquet_io import PopulationError, iter_population, read_metadata
    from simulator.population import describe, render

    try:
        recorded = read_metadata(directory).get("profile")
        name = profile_name or (str(recorded) if recorded else None)
        profile = _profile_or_exit(name) if name else None
        rows = describe(iter_population(directory), profile)
    except PopulationError as exc:
        _die(str(exc))
    except (OSError, ValueError) as exc:
        _die(f"cannot read the population in {directory}: {exc}")
    if fmt == "json":
        click.echo(json.dumps([{"key": r.key, "label": r.label, "target": r.target, "realised": r.realised,
                                "value": r.value, "status": r.status} for r in rows], ensure_ascii=False, indent=1))
    else:
        title = f"population {directory}" + (f" against profile {profile.name}" if profile else " (no profile)")
        click.echo(render(rows, title), nl=False)
    sys.exit(EXIT_FINDINGS if strict and any(r.status == "off" for r in rows) else 0)


@population_group.command("profiles")
def population_profiles_cmd() -> None:
    """List the bundled population profiles."""
    from simulator.profile import available_profiles

    for name in available_profiles():
        click.echo(f"{name}\t{_profile_or_exit(name).title}")


# ---- simulate ---------------------------------------------------------------------------------------------------
@main.command("simulate")
@click.argument("policy", type=click.Path(exists=True, dir_okay=False))
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False), help="Compare with this policy.")
@click.option("--population", type=click.Path(exists=True, file_okay=False), help="A population directory.")
@click.option("--synthetic", type=int, metavar="N", help="Generate N persons instead.")
@click.option("--profile", "profile_name", help="Population profile for --synthetic (default: by the policy).")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--year", type=int, help="The calendar year simulated (default: the policy's first full year).")
@click.option("--engine", type=click.Choice(["vector", "interp", "dask"]), default="vector", show_default=True)
@click.option("--workers", type=int, default=1, show_default=True, help="Processes (or dask workers).")
@click.option("--scheduler", help="Dask scheduler address (default: a local cluster).")
@click.option("--replicates", type=int, default=1, show_default=True, help="Runs with seeds S..S+K-1; 95% intervals.")
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE", help="Value for an unspecified parameter.")
@click.option("--targets", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Policies whose population targets to measure (default: those in the policy root).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the table or JSON here (atomically).")
@click.option("--report", type=click.Path(dir_okay=False), help="Write a self-contained HTML report here.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
@click.option("--encoding", default="utf-8", show_default=True,
              help="Encoding of a --population's CSV and JSON Lines files (e.g. gbk).")
def simulate_cmd(policy: str, baseline: str | None, population: str | None, synthetic: int | None,
                 profile_name: str | None, seed: int, year: int | None, engine: str, workers: int,
                 scheduler: str | None, replicates: int, sets: tuple[str, ...], targets: tuple[str, ...], fmt: str,
                 out: str | None, report: str | None, quiet: bool, encoding: str) -> None:
    """Replay a population through POLICY (and a baseline): fund impact, who gains and who loses."""
    from simulator import job as jobs
    from simulator import summary

    sources = SourceCache()
    request = jobs.Request(policy, baseline, population, synthetic, profile_name, seed, year, engine, workers,
                           scheduler, replicates, sets, targets, encoding=encoding)
    try:
        job = jobs.prepare(request, lambda path: _build_or_exit(path, sources))
        doc = _with_progress(job, quiet)
    except DataError as exc:  # bad population data: `path:line:column: error: …`, as `polc eval` reports it
        click.echo(str(exc), err=True)
        sys.exit(EXIT_USAGE)
    except jobs.JobError as exc:
        _die(str(exc))
    except interp.EvalError as exc:
        _die(str(exc))
    text = summary.to_json(doc) if fmt == "json" else summary.to_table(doc)
    if report:
        from simulator.report import render_report

        write_atomic(report, render_report(doc))
    if out:
        write_atomic(out, text)
    else:
        click.echo(text, nl=False)


def _with_progress(job: Any, quiet: bool) -> Any:
    from simulator.job import run_job
    from simulator.run import Plan, block_total

    total = block_total(Plan(job.policy.graph, None, job.source, job.year)) or 0
    show = not quiet and sys.stderr.isatty() and total > 1
    if not show:
        return run_job(job)
    with click.progressbar(length=total * job.replicates, label="simulating", file=sys.stderr) as bar:
        return run_job(job, bar.update)
