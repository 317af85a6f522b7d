"""Fuzzing polc: bad input never crashes it (issue "Robustness and security").

Four sources of input go through `polc check`, `polc fmt`, `polc eval` (and `polc test`, `polc graph`,
`polc explain`) with click's CliRunner and catch_exceptions=False, so a Python exception fails the test
with its traceback, and through the library (`pipeline.build`, `fmt.format_source`):

- random bytes;
- random sequences of the language's tokens: every keyword in English and Chinese, read from the
  grammar's terminals, and punctuation, plus names, numbers with units, dates and strings;
- mutations of every bundled policy (delete, duplicate or swap lines; delete, insert or swap tokens;
  flip a character; truncate; a huge number; `<script>`; NUL bytes; invalid UTF-8; a line from
  another policy; an import of a hostile path). They get past the parser into every later pass, so
  they have the largest share;
- mutations of the example data files, evaluated under a bundled policy.

Every command must exit 0, 1 (policy findings) or 2 (bad usage or data), print no traceback, and
print a diagnostic (`path:line:col: error:` or `polc: error:`) when it fails; a library call returns
or raises PolicyError with at least one error; text that `format_source` returns parses again; no
case runs longer than CASE_SECONDS. `bench/fuzz_long.py` runs the same cases at length.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import re
import shutil
import signal
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, Protocol, TypeVar

import attrs
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policy_lang.cli import main
from policy_lang.diagnostics import PolicyError
from policy_lang.parse import _parser, parse
from policy_lang.pipeline import build

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
POLICIES = ROOT / "policies"
EXAMPLES = ROOT / "examples"
POLICY_FILES: tuple[str, ...] = tuple(sorted(p.relative_to(POLICIES).as_posix() for p in POLICIES.rglob("*.pol")))
SOURCES: dict[str, bytes] = {rel: (POLICIES / rel).read_bytes() for rel in POLICY_FILES}
DATA_FILES = ("persons.csv", "claims.csv")
CASE_SECONDS = 60  # one command on one input; the slowest bundled policy builds in well under a second

# Per-strategy case counts for CI (together about a minute on the 2-core CI machine).
EXAMPLES_MUTATIONS = 750
EXAMPLES_TOKENS = 1000
EXAMPLES_BYTES = 500
EXAMPLES_DATA = 80

_DIAGNOSTIC = re.compile(r"^(?:.+:\d+:\d+: error: |polc: error: )", re.M)


def format_source() -> Callable[[str, str], str] | None:
    """policy_lang.fmt.format_source, or None while that module does not exist."""
    try:
        from policy_lang.fmt import format_source as fmt
    except ImportError:
        return None
    return fmt


# ---- where random choices come from ---------------------------------------------------------------------
class Chooser(Protocol):
    """Hypothesis draws (tests: shrinkable) or a random.Random (bench/fuzz_long.py)."""

    def integer(self, low: int, high: int) -> int: ...

    def binary(self, max_size: int) -> bytes: ...


@attrs.frozen
class RandomChooser:
    rng: Any  # random.Random

    def integer(self, low: int, high: int) -> int:
        return int(self.rng.randint(low, high))

    def binary(self, max_size: int) -> bytes:
        return bytes(self.rng.randbytes(self.rng.randint(0, max_size)))


@attrs.frozen
class DrawChooser:
    data: st.DataObject

    def integer(self, low: int, high: int) -> int:
        return self.data.draw(st.integers(low, high))

    def binary(self, max_size: int) -> bytes:
        return self.data.draw(st.binary(max_size=max_size))


def pick(ch: Chooser, items: Sequence[T]) -> T:
    return items[ch.integer(0, len(items) - 1)]


def chance(ch: Chooser, percent: int) -> bool:
    return ch.integer(0, 99) < percent


# ---- the language's tokens ---------------------------------------------------------------------------------
_LITERALS = (
    # names: layers, funds, identities, fields, parameters, diseases, Chinese identifiers
    "basic", "critical_illness", "assistance", "chronic_outpatient", "basic_fund", "tekun", "dibao",
    "near_dibao", "orphan", "premium", "bed_day_rate", "kind", "inpatient", "outpatient", "level",
    "referred", "in_province", "emergency", "scheme", "resident", "employee", "retired", "age",
    "total_cost", "eligible_cost", "tcm_cost", "bed_days", "uremia", "hemophilia", "shenyang_40",
    "admission", "liaoning_resident_base", "p1", "c1", "x", "_", "住院", "低保对象", "营口", "险种", "病种",
    # numbers with units, rates, dates
    "0", "1", "3", "200", "12000", "12,000元", "1.2万元", "0.5", "0.01", "0.001", "75%", "62.5%", "100%",
    "150%", "0.00001%", "99999999999999999999999", "2023-01-01", "2024-08-31", "2019年10月1日",
    "2023-02-30", "0000-00-00", "9999-12-31", "2023年13月40日",
    # strings
    '""', '"营政办发〔2022〕23号"', '"第十一条(一)1"', '"assumed: x"', "“中文引号”", '"a\\"b"',
    '"dibao@2023-03-01"', '"../liaoning/resident-base.pol"', '"/etc/passwd"',
    # comparisons, products, a comment, stray characters
    ">=", "<=", "!=", "==", ">", "<", "≥", "≤", "≠", "×", "*", "# 注释 comment\n", "@", "\\", '"', "'", "`",
)


def vocabulary() -> tuple[str, ...]:
    """Every spelling of every keyword and punctuation terminal of the grammar, and literal samples."""
    words: list[str] = []
    for term in _parser().terminals:
        pattern = term.pattern
        if pattern.type == "str":
            words.append(pattern.value)
            continue
        m = re.fullmatch(r"\(\?:(.*?)\)(?:\(\?!\\w\))?", pattern.value)
        if m is None:
            continue
        for alt in m.group(1).split("|"):
            text = alt.replace("\\s+", " ")
            if not re.search(r"[\\\[\](){}?*+^$.]", text):  # a literal spelling, not a regex
                words.append(text)
    return tuple(dict.fromkeys([*words, *_LITERALS]))


VOCAB = vocabulary()
_SEPARATORS = (" ", " ", " ", "\n", "", "\t", " ; ")
_HEADERS = (
    "",
    'policy fuzz "t" effective 2023-01-01 source "assumed: x" {\n',
    'import "../liaoning/resident-base.pol"\npolicy fuzz amends liaoning_resident_base effective 2023-01-01 {\n',
    'policy fuzz {\n  layer basic "b" fund basic_fund {\n',
    'policy fuzz {\n  test "t" {\n',
    '政策 模糊 "标题" 生效 2023-01-01 来源 "assumed: x" {\n',
)


# ---- cases ------------------------------------------------------------------------------------------------
@attrs.frozen
class Case:
    """Files to write (paths under the workspace), the file to run on, and how."""

    strategy: str
    files: dict[str, bytes]
    entry: str
    command: str  # a polc command (check | fmt | eval | test | graph | explain) or build | format (library)

    def describe(self, limit: int = 4000) -> str:
        shown = "\n".join(f"--- {path} ({len(data)} bytes)\n{data[:limit]!r}" for path, data in self.files.items())
        return f"{self.strategy}: {self.command} {self.entry}\n{shown}"


COMMANDS = ("check", "fmt", "eval", "build", "format", "test", "graph", "explain")
FUZZ_FILE = "policies/yingkou/_fuzz.pol"  # beside a real policy, so `import "../liaoning/…"` resolves


def gen_bytes(ch: Chooser) -> Case:
    data = ch.binary(600)
    if chance(ch, 30):
        data = b"policy fuzz {\n" + data + b"\n}\n"
    return Case("bytes", {FUZZ_FILE: data}, FUZZ_FILE, pick(ch, COMMANDS))


def gen_tokens(ch: Chooser) -> Case:
    parts = [pick(ch, _HEADERS)]
    for _ in range(ch.integer(0, 60)):
        parts.append(pick(ch, VOCAB))
        parts.append(pick(ch, _SEPARATORS))
    parts.append("\n}" * ch.integer(0, 3))
    return Case("tokens", {FUZZ_FILE: "".join(parts).encode()}, FUZZ_FILE, pick(ch, COMMANDS))


# Mutators work on text decoded with surrogateescape, so invalid bytes survive later mutations.
Mutator = Callable[[Chooser, str], str]
_TOKEN = re.compile(r'"(?:[^"\\\n]|\\.)*"|“[^”\n]*”|[\w.,%-]+|\S')
_FLIPS = ('"', "“", "{", "}", "(", ")", "#", "\n", ";", ",", "%", "=", "a", "中", " ", "\t", "\r", "\ufeff",
          "\u200b", "\u3000", "０", "\\", "\x7f")
_HUGE = ("9" * 400, "1" + "0" * 4000, "9" * 30 + "%", "0." + "0" * 300 + "1", "99999999999999999999.99万元",
         "1" * 40 + "," + "0" * 3, "9999999999-12-31", "2023-99-99", "1" + "0" * 30 + "元")
_SCRIPTS = ("<script>alert(1)</script>", '"<script>alert(1)</script>"', "</pre><img src=x onerror=alert(1)>",
            "{{ 7*7 }}", "${jndi:ldap://x}", "'; DROP TABLE claims; --", "__import__('os').system('true')")
_BAD_UTF8 = (b"\xff", b"\xfe\xff", b"\xc3", b"\xe4\xb8", b"\xed\xa0\x80", b"\x80", b"\xf4\x90\x80\x80")


def _at(ch: Chooser, text: str) -> int:
    return ch.integer(0, len(text))


def _insert(ch: Chooser, text: str, piece: str) -> str:
    p = _at(ch, text)
    return text[:p] + piece + text[p:]


def _lines(text: str) -> list[str]:
    return text.split("\n")


def delete_line(ch: Chooser, text: str) -> str:
    lines = _lines(text)
    del lines[ch.integer(0, len(lines) - 1)]
    return "\n".join(lines)


def duplicate_line(ch: Chooser, text: str) -> str:
    lines = _lines(text)
    i = ch.integer(0, len(lines) - 1)
    lines.insert(ch.integer(0, len(lines)), lines[i])
    return "\n".join(lines)


def swap_lines(ch: Chooser, text: str) -> str:
    lines = _lines(text)
    i, j = ch.integer(0, len(lines) - 1), ch.integer(0, len(lines) - 1)
    lines[i], lines[j] = lines[j], lines[i]
    return "\n".join(lines)


def delete_token(ch: Chooser, text: str) -> str:
    toks = list(_TOKEN.finditer(text))
    if not toks:
        return text
    m = pick(ch, toks)
    return text[: m.start()] + text[m.end():]


def insert_token(ch: Chooser, text: str) -> str:
    toks = list(_TOKEN.finditer(text))
    p = pick(ch, toks).start() if toks and chance(ch, 80) else _at(ch, text)
    return text[:p] + pick(ch, VOCAB) + pick(ch, (" ", " ", "", "\n")) + text[p:]


def swap_words(ch: Chooser, text: str) -> str:
    toks = list(_TOKEN.finditer(text))
    if len(toks) < 2:
        return text
    a, b = sorted((pick(ch, toks), pick(ch, toks)), key=lambda m: m.start())
    if a.end() > b.start():
        return text
    return text[: a.start()] + b.group() + text[a.end(): b.start()] + a.group() + text[b.end():]


def flip_char(ch: Chooser, text: str) -> str:
    if not text:
        return text
    p = ch.integer(0, len(text) - 1)
    if chance(ch, 70):
        c = pick(ch, _FLIPS)
    else:
        cp = ch.integer(1, 0x10FFFF - 0x800)
        c = chr(cp + 0x800 if cp >= 0xD800 else cp)  # no lone surrogates
    return text[:p] + c + text[p + 1:]


def truncate(ch: Chooser, text: str) -> str:
    return text[: _at(ch, text)]


def huge_number(ch: Chooser, text: str) -> str:
    big = pick(ch, _HUGE)
    numbers = list(re.finditer(r"\d[\d,.]*", text))
    if numbers and chance(ch, 70):
        m = pick(ch, numbers)
        return text[: m.start()] + big + text[m.end():]
    return _insert(ch, text, f" {big} ")


def inject_script(ch: Chooser, text: str) -> str:
    strings = list(re.finditer(r'"[^"\n]*"', text))
    if strings and chance(ch, 50):  # inside a title, citation, disease name or test field
        m = pick(ch, strings)
        return text[: m.start() + 1] + pick(ch, _SCRIPTS).replace('"', "'") + text[m.start() + 1:]
    return _insert(ch, text, pick(ch, _SCRIPTS))


def nul_bytes(ch: Chooser, text: str) -> str:
    return _insert(ch, text, "\x00" * ch.integer(1, 3))


def invalid_utf8(ch: Chooser, text: str) -> str:
    return _insert(ch, text, pick(ch, _BAD_UTF8).decode("utf-8", "surrogateescape"))


def crossover(ch: Chooser, text: str) -> str:
    """A line of another bundled policy, at a line boundary."""
    other = _lines(SOURCES[pick(ch, POLICY_FILES)].decode("utf-8"))
    lines = _lines(text)
    lines.insert(ch.integer(0, len(lines)), pick(ch, other))
    return "\n".join(lines)


# Import targets that must each end in a diagnostic: escapes, devices, a FIFO, a symlink loop and a
# symlink out of the root (the last three are made by Workspace), odd and overlong paths, real files.
_IMPORT_TARGETS = ("a\x00b.pol", "../../../../../../etc/passwd", "/etc/passwd", "/dev/zero", "../_loop.pol",
                   "../_fifo.pol", "../_outside.pol", "../_dir.pol", ".", "", "..", "C:\\x.pol", "\\\\server\\x.pol",
                   "~/.ssh/id_rsa", "a" * 300 + ".pol", "%s%n{0}", "../liaoning", "../polc.toml", "base.pol",
                   "../jining/base.pol", "../liaoning/floors-2021.pol", "../liaoning/resident-base.pol",
                   "../yingkou/major-illness-2023.pol")


def hostile_import(ch: Chooser, text: str) -> str:
    target = pick(ch, _IMPORT_TARGETS)
    imports = list(re.finditer(r'(?m)^\s*(?:import|导入)\s+("[^"\n]*")', text))
    if imports and chance(ch, 60):
        m = pick(ch, imports)
        return text[: m.start(1)] + f'"{target}"' + text[m.end(1):]
    return f'import "{target}"\n' + text


MUTATORS: tuple[Mutator, ...] = (delete_line, duplicate_line, swap_lines, delete_token, insert_token, swap_words,
                                 flip_char, truncate, huge_number, inject_script, nul_bytes, invalid_utf8,
                                 crossover, hostile_import)


def mutate(ch: Chooser, data: bytes) -> bytes:
    text = data.decode("utf-8", "surrogateescape")
    for _ in range(ch.integer(1, 3)):
        text = pick(ch, MUTATORS)(ch, text)
    return text.encode("utf-8", "surrogateescape")


def _importers() -> dict[str, tuple[str, ...]]:
    out: dict[str, list[str]] = {rel: [] for rel in POLICY_FILES}
    for rel in POLICY_FILES:
        for target in re.findall(r'^\s*(?:import|导入)\s+"([^"]+)"', SOURCES[rel].decode("utf-8"), re.M):
            imported = posixpath.normpath(posixpath.join(posixpath.dirname(rel), target))
            if imported in out:
                out[imported].append(rel)
    return {k: tuple(v) for k, v in out.items()}


IMPORTERS = _importers()


def gen_mutation(ch: Chooser) -> Case:
    rel = pick(ch, POLICY_FILES)
    command = pick(ch, COMMANDS)
    entry = rel
    if IMPORTERS[rel] and command not in ("fmt", "format", "test") and chance(ch, 30):
        entry = pick(ch, IMPORTERS[rel])  # a mutated base, seen through the policy that amends it
    return Case("mutation", {f"policies/{rel}": mutate(ch, SOURCES[rel])}, f"policies/{entry}", command)


_DATA_POLICIES = ("yingkou/major-illness-2023.pol", "liaoning/resident-base.pol", "shenyang/poverty-2019.pol",
                  "jining/benefits-2021.pol", "liaoning/provincial-direct-2019.pol")


def gen_data(ch: Chooser) -> Case:
    name = pick(ch, DATA_FILES)
    data = mutate(ch, (EXAMPLES / name).read_bytes())
    return Case("data", {f"data/{name}": data}, f"policies/{pick(ch, _DATA_POLICIES)}", "eval")


STRATEGIES: dict[str, Callable[[Chooser], Case]] = {
    "mutation": gen_mutation, "tokens": gen_tokens, "bytes": gen_bytes, "data": gen_data}


# ---- running a case ------------------------------------------------------------------------------------------
class Hang(BaseException):
    """A case ran longer than CASE_SECONDS (a BaseException, so no `except Exception` can swallow it)."""


@contextlib.contextmanager
def time_limit(seconds: float, what: Callable[[], str]) -> Iterator[None]:
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise Hang(f"no result after {seconds} s (a hang?): {what()}")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


class Workspace:
    """A copy of policies/ (with its polc.toml) and of the example data; cases overwrite and restore files."""

    def __init__(self, root: Path):
        self.root = root
        shutil.copytree(POLICIES, root / "policies", dirs_exist_ok=True)
        special = root / "policies"  # targets of hostile imports (see _IMPORT_TARGETS)
        for name, make in (("_loop.pol", lambda p: os.symlink(p.name, p)), ("_fifo.pol", os.mkfifo),
                           ("_outside.pol", lambda p: os.symlink("/etc/passwd", p)), ("_dir.pol", os.mkdir)):
            if not (special / name).exists() and not (special / name).is_symlink():
                with contextlib.suppress(OSError, AttributeError):
                    make(special / name)
        (root / "data").mkdir(exist_ok=True)
        for name in DATA_FILES:
            shutil.copy(EXAMPLES / name, root / "data" / name)

    @contextlib.contextmanager
    def holding(self, files: dict[str, bytes], entry: str) -> Iterator[None]:
        saved = {rel: (self.root / rel).read_bytes() if (self.root / rel).exists() else None
                 for rel in {*files, entry}}
        try:
            for rel, data in files.items():
                (self.root / rel).write_bytes(data)
            yield
        finally:
            for rel, old in saved.items():
                if old is None:
                    (self.root / rel).unlink(missing_ok=True)
                else:
                    (self.root / rel).write_bytes(old)


def run_case(ws: Workspace, case: Case) -> None:
    """Run one case; raise AssertionError (or Hang) saying what went wrong."""
    with ws.holding(case.files, case.entry), time_limit(CASE_SECONDS, case.describe):
        path = ws.root / case.entry
        command = case.command
        if command == "build":
            _library_build(path, case)
        elif command == "format":
            _library_format(path.read_bytes(), case)
        else:
            data = ["--persons", str(ws.root / "data/persons.csv"), "--claims", str(ws.root / "data/claims.csv")]
            args = {"check": ["check"], "fmt": ["fmt"], "eval": ["eval", *data], "test": ["test"],
                    "graph": ["graph"], "explain": ["explain", "--person", "p1", *data]}[command]
            _cli([*args, str(path)], case)


def _cli(args: list[str], case: Case) -> None:
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    out = result.output
    assert result.exit_code in (0, 1, 2), f"exit {result.exit_code}\n{out[-3000:]}\n{case.describe()}"
    assert "Traceback" not in out, f"a traceback:\n{out[-3000:]}\n{case.describe()}"
    failed = _DIAGNOSTIC.search(out)
    if args[0] == "test":  # a failing in-file test is reported as `FAIL path:line title`, then `N passed, N failed`
        failed = failed or re.search(r"^FAIL ", out, re.M)
        assert re.search(r"^\d+ passed, \d+ failed$", out, re.M), f"no closing line:\n{out[-3000:]}"
    if result.exit_code != 0:
        assert failed, f"exit {result.exit_code} without a diagnostic:\n{out[-3000:]}\n{case.describe()}"


def _library_build(path: Path, case: Case) -> None:
    try:
        build(path)
    except PolicyError as exc:
        assert any(d.severity == "error" and d.message for d in exc.diagnostics), case.describe()


def _library_format(data: bytes, case: Case) -> None:
    fmt = format_source()
    if fmt is None:
        return
    text = data.decode("utf-8", "replace")
    try:
        out = fmt(text, "<fuzz>")
    except PolicyError as exc:
        assert any(d.severity == "error" and d.message for d in exc.diagnostics), case.describe()
        return
    try:
        parse(out, "<fuzz>")
    except PolicyError as exc:
        raise AssertionError(f"format_source produced text that does not parse: {exc.diagnostics[0]}\n"
                             f"{out[:3000]}\n{case.describe()}") from None


# ---- the tests ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Workspace:
    return Workspace(tmp_path_factory.mktemp("fuzz"))


def _settings(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


def test_vocabulary_covers_the_grammar() -> None:
    assert {"policy", "政策", "per claim", "每次", "by identity", "按身份", "{", "}", "(", ";"} <= set(VOCAB)
    assert len(VOCAB) > 200


@_settings(EXAMPLES_MUTATIONS)
@given(data=st.data())
def test_mutated_policies(workspace: Workspace, data: st.DataObject) -> None:
    run_case(workspace, gen_mutation(DrawChooser(data)))


@_settings(EXAMPLES_TOKENS)
@given(data=st.data())
def test_token_sequences(workspace: Workspace, data: st.DataObject) -> None:
    run_case(workspace, gen_tokens(DrawChooser(data)))


@_settings(EXAMPLES_BYTES)
@given(data=st.data())
def test_random_bytes(workspace: Workspace, data: st.DataObject) -> None:
    run_case(workspace, gen_bytes(DrawChooser(data)))


@_settings(EXAMPLES_DATA)
@given(data=st.data())
def test_mutated_data(workspace: Workspace, data: st.DataObject) -> None:
    run_case(workspace, gen_data(DrawChooser(data)))


def test_fmt_of_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    # found by fuzzing: cli.py read the file with Path.read_text, so this raised UnicodeDecodeError
    path = tmp_path / "bad.pol"
    path.write_bytes(b"policy p { }\n# \xff\n")
    result = CliRunner().invoke(main, ["fmt", str(path)], catch_exceptions=False)
    assert result.exit_code == 1
    assert "bad.pol:2:3: error: the file is not UTF-8 text" in result.output
