"""Parser benchmark: how long the ai-worker's defensive parser takes to refuse hostile model
output, by input size up to the bound it accepts (``MAX_OUTPUT_CHARS``, 20,000 characters).

The parser runs on the worker's event loop, so its time is time no other message is handled.
For each hostile input (unbalanced ``{``, deep nesting, a long unterminated string, an
unclosed Markdown fence, ...) and each size it prints the time of one ``parse_insight`` call,
and as the baseline, measured in the same run, ``json.loads`` of a valid insight document of
the same size. The ``x2`` column is the time at the largest size over the time at half of it:
about 2 for a linear parser, about 4 for a quadratic one.

Usage: ``uv run --frozen python -m bench.parser [--sizes 1250,2500,5000,10000,20000]
[--parser FILE]`` (``make bench-parser``). ``--parser`` times another version of
``parser.py``, for example the one before a change::

    git show HEAD:services/ai-worker/src/ai_worker/parser.py > /tmp/parser_before.py
    uv run --frozen python -m bench.parser --parser /tmp/parser_before.py

Prints milliseconds per call (the best of three timings of at least 0.2 s each; a single
call when one takes over a second).
"""

import argparse
import functools
import importlib.util
import json
import timeit
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from ai_worker import parser as current_parser

HOSTILE: dict[str, Callable[[int], str]] = {
    "unbalanced {": lambda n: "{" * n,
    'open keys {"': lambda n: '{"' * (n // 2),
    'broken objects {"a":x': lambda n: '{"a":x' * (n // 6),
    "braces then closers": lambda n: "{" * (n // 2) + "}" * (n // 2),
    "nested [": lambda n: '{"a": ' + "[" * (n - 6),
    "nested {": lambda n: '{"a": ' * (n // 6),
    "unterminated string": lambda n: '{"a": "' + "{" * (n - 7),
    "unclosed fence": lambda n: "```" + "a" * (n - 3),
}
"""Inputs the parser must refuse, each built at ``n`` characters (or a few less)."""


def valid_document(n: int) -> str:
    """A valid insight document of about ``n`` characters: the baseline's input."""
    head = {"intent": "card_arrival", "summary": "The customer's new card has not arrived."}
    size = len(json.dumps({**head, "suggested_reply": ""}))
    return json.dumps({**head, "suggested_reply": "x" * max(n - size, 0)})


def load_parser(path: Path | None) -> ModuleType:
    """The ai-worker's parser module, or the one in the file ``path``."""
    if path is None:
        return current_parser
    spec = importlib.util.spec_from_file_location("parser_under_test", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--parser: cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def per_call_s(call: Callable[[], object]) -> float:
    """Seconds per call: the best of three timings of at least 0.2 s, or one call if a call
    takes over a second."""
    timer = timeit.Timer(call)
    number, total = timer.autorange()
    if total / number > 1:
        return total / number
    return min([total, *timer.repeat(repeat=2, number=number)]) / number


def refusing(module: ModuleType, text: str) -> Callable[[], None]:
    def call() -> None:
        try:
            module.parse_insight(text)
        except module.InsightParseError:
            return
        raise AssertionError("the parser accepted a hostile input")

    return call


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes",
        default="1250,2500,5000,10000,20000",
        help="comma-separated input sizes in characters (default: doublings up to 20000)",
    )
    parser.add_argument("--parser", type=Path, help="time this parser.py instead of the worker's")
    args = parser.parse_args(argv)
    sizes = sorted(int(s) for s in args.sizes.split(","))
    module = load_parser(args.parser)
    if sizes[-1] > module.MAX_OUTPUT_CHARS:
        raise SystemExit(f"--sizes: {sizes[-1]} is over the bound, {module.MAX_OUTPUT_CHARS}")

    print(f"parser: {args.parser or module.__file__}")
    print(f"milliseconds per call, by input size in characters; x2 = t({sizes[-1]}) / t(half)")
    header = "".join(f"{n:>11,}" for n in sizes)
    print(f"{'input':<30}{header}{'x2':>7}{'/ baseline':>12}")
    baseline = [per_call_s(functools.partial(json.loads, valid_document(n))) for n in sizes]
    rows = [("json.loads, valid (baseline)", baseline)]
    for name, build in HOSTILE.items():
        rows.append((name, [per_call_s(refusing(module, build(n))) for n in sizes]))
    half = sizes.index(sizes[-1] // 2) if sizes[-1] // 2 in sizes else None
    for name, times in rows:
        cells = "".join(f"{t * 1000:>11.3f}" for t in times)
        growth = f"{times[-1] / times[half]:>7.1f}" if half is not None else f"{'-':>7}"
        print(f"{name:<30}{cells}{growth}{times[-1] / baseline[-1]:>11.0f}x")


if __name__ == "__main__":
    main()
