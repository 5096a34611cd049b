"""Command line for people without a hub.

python -m composer METHOD --input DIR:WEIGHT [--input DIR:WEIGHT ...] --out DIR
                   [--rank N|auto] [--energy E] [--density D] [--seed S]
                   [--majority-sign total|frequency] [--dtype fp16|bf16|fp32] [--device auto|cpu|cuda]
                   [--threads N]
python -m composer expr "0.7*DIR_A + 0.5*DIR_B - 0.3*DIR_C" --out DIR [options as above]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from composer.compose import compose
from composer.errors import CompositionError
from composer.expression import parse_expression
from composer.io import load_lora
from composer.registry import ALIASES, METHODS

EXIT_REFUSED = 2


def _rank(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"rank must be an integer or 'auto', got {text!r}") from None


def _input(text: str) -> tuple[str, float]:
    """DIR:WEIGHT, split at the last colon so folders may contain colons; a bare DIR weighs 1."""
    folder, sep, weight = text.rpartition(":")
    if sep:
        try:
            return folder, float(weight)
        except ValueError:
            pass
    return text, 1.0


def build_parser() -> argparse.ArgumentParser:
    methods = sorted([*METHODS, *ALIASES])
    parser = argparse.ArgumentParser(
        prog="python -m composer",
        description="Compose PEFT LoRA adapters into a new adapter.",
        epilog="methods: " + ", ".join(f"{name} ({METHODS[name].summary})" for name in sorted(METHODS)),
    )
    parser.add_argument("method", choices=methods, help="merge method")
    parser.add_argument("expression", nargs="?", help='for "expr": e.g. "0.7*DIR_A + 0.5*DIR_B - 0.3*DIR_C"')
    parser.add_argument("--input", action="append", type=_input, default=[], metavar="DIR:WEIGHT")
    parser.add_argument("--out", required=True, metavar="DIR", help="output adapter folder")
    parser.add_argument("--rank", type=_rank, default=None, help="output rank, or 'auto' (keep --energy)")
    parser.add_argument("--energy", type=float, default=0.99, help="energy kept by --rank auto (default 0.99)")
    parser.add_argument("--density", type=float, default=None, help="fraction kept (ties, dare_*, magnitude_prune)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the element-wise methods (default 0)")
    parser.add_argument("--majority-sign", choices=["total", "frequency"], default="total")
    parser.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default=None, help="default: the inputs'")
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for the math (default: COMPOSER_THREADS, else 1; 0 = torch's default of one per core)",
    )
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    expression: str | None = args.expression
    if args.method == "expr":
        if expression is None or args.input:
            parser.error('expr takes one expression argument and no --input, e.g. expr "0.7*A - 0.3*B"')
    elif expression is not None or not args.input:
        parser.error(f"{args.method} takes --input DIR:WEIGHT (at least once) and no expression")
    try:
        # Only expr gets here with an expression (checked above); the other methods take --input.
        pairs = parse_expression(expression) if expression is not None else args.input
        inputs = [(load_lora(folder), weight) for folder, weight in pairs]
        result = compose(
            inputs,
            method=args.method,
            rank=args.rank,
            density=args.density,
            seed=args.seed,
            majority_sign_method=args.majority_sign,
            energy=args.energy,
            dtype=args.dtype,
            device=args.device,
            expression=args.expression,
            threads=args.threads,
            out=args.out,  # written module by module as they are composed
        )
    except CompositionError as error:
        print(f"error [{error.code}]: {error}", file=sys.stderr)
        return EXIT_REFUSED
    if not args.quiet:
        s = result.summary
        print(
            f"wrote {args.out}: {s['modules']} modules, rank {s['rank_min']}-{s['rank_max']}, "
            f"relative error mean {s['relative_error_mean']:.3g} max {s['relative_error_max']:.3g}, "
            f"{s['truncated_modules']} truncated"
        )
    return 0
