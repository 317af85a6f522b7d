"""The whole front end in one call: path -> CheckedPolicy and Graph, and the outputs' shared helpers."""

from __future__ import annotations

import datetime
import os
import tempfile
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from pathlib import Path

import attrs

from policy_lang.check import CheckedPolicy, check
from policy_lang.compile import compile_policy, param_kinds
from policy_lang.data import DataVocabulary, format_money
from policy_lang.diagnostics import SourceCache
from policy_lang.graph import Graph
from policy_lang.load import load_program
from policy_lang.resolve import MAX_MAGNITUDE


@attrs.frozen
class Built:
    checked: CheckedPolicy
    graph: Graph


def build(path: str | Path, sources: SourceCache | None = None) -> Built:
    """Load, check and compile a policy file; raises PolicyError with every diagnostic."""
    program = load_program(path, sources)
    checked = check(program)
    return Built(checked, compile_policy(checked))


def data_vocabulary(graph: Graph) -> DataVocabulary:
    return DataVocabulary(frozenset(graph.identities), dict(graph.diseases), graph.columns)


class SettingError(ValueError):
    pass


def parse_settings(checked: CheckedPolicy, items: tuple[str, ...]) -> dict[str, int]:
    """`--set name=value` -> graph units (fen for money, ppm for rates, counts as is)."""
    kinds = param_kinds(checked)
    out: dict[str, int] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name, text = name.strip(), text.strip()
        if not sep or not name:
            raise SettingError(f"--set takes NAME=VALUE, not `{item}`")
        kind = kinds.get(name)
        if kind is None:
            raise SettingError(f"unknown parameter `{name}`; the policy's parameters: {', '.join(sorted(kinds))}")
        out[name] = _setting_value(name, kind, text)
    return out


def _setting_value(name: str, kind: str, text: str) -> int:
    try:
        if kind == "rate":
            number = Decimal(text.rstrip("%"))
            value = number * 10_000
        elif kind == "count":
            value = Decimal(text)
        else:
            value = Decimal(text.replace(",", "").removesuffix("元")) * 100
    except InvalidOperation:
        raise SettingError(f"--set {name}: `{text}` is not a number") from None
    if value != value.to_integral_value() or value < 0 or value > MAX_MAGNITUDE:
        raise SettingError(f"--set {name}: `{text}` is not a valid {kind}")
    return int(value)


def parse_date_option(text: str | None) -> datetime.date | None:
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise SettingError(f"`{text}` is not a date (YYYY-MM-DD)") from None


def money(fen: int) -> str:
    return format_money(fen)


def layer_amounts(layers: tuple[str, ...], values: tuple[int, ...]) -> dict[str, str]:
    return {layer: money(v) for layer, v in zip(layers, values, strict=True)}


@attrs.define
class AtomicWriter:
    """Write to a temporary file beside the target and rename it into place only on success."""

    path: Path

    def write(self, text: str) -> None:
        if self.path.exists() and not self.path.is_file():
            # /dev/null, a FIFO or a terminal: nothing to replace; renaming over it would break the device
            with open(self.path, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs are shared like any other file
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: str | Path, text: str) -> None:
    AtomicWriter(Path(path)).write(text)


def iter_pol_files(paths: tuple[str, ...]) -> Iterator[Path]:
    """Files named, and .pol files under directories named, in a stable order."""
    for p in paths:
        path = Path(p)
        if path.is_dir():
            yield from sorted(path.rglob("*.pol"))
        else:
            yield path


def settings_summary(settings: Mapping[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(settings.items()))
