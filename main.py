"""archsweep command line.

python main.py blocks                 every registered block, one line each
python main.py cost [NAME ...]        parameters and GMACs of the papers' models
python main.py cost --timing NAME     ... plus latency and training-step memory
"""

from __future__ import annotations

import argparse
import sys

import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text

from blocks import build, describe, summary
from blocks.builder import did_you_mean
from blocks.cost import count_layer_params, count_params, measure
from blocks.presets import PRESETS


def cmd_blocks(args: argparse.Namespace, console: Console) -> int:
    rows = [[kind, name, line] for kind, entries in describe().items() for name, line in entries.items()]
    print_table(console, "archsweep blocks", ["kind", "name", "what it is"], rows, markdown=args.markdown)
    return 0


def cmd_cost(args: argparse.Namespace, console: Console) -> int:
    unknown = [n for n in args.names if n not in PRESETS]
    if unknown:
        for name in unknown:
            print(
                f"error: unknown preset {name!r}{did_you_mean(name, PRESETS)}; known: {', '.join(PRESETS)}",
                file=sys.stderr,
            )
        return 2
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    columns = ["preset", "params", "layer params", "GMACs"]
    if args.timing:
        columns += [f"latency ms ({device}, b=1)", f"train-step MiB (b={args.batch_size})"]
    title = f"model cost, torch {torch.__version__}, {torch.get_num_threads()} threads"
    rows = []
    for name in args.names or PRESETS:
        arch = PRESETS[name]()
        meta = build(arch, device="meta")
        cost = measure(arch, device=device, batch_size=args.batch_size, timing=args.timing)
        row = [name, f"{count_params(meta)[0]:,}", f"{count_layer_params(meta):,}", f"{cost['gmacs']:.3f}"]
        if args.timing:
            row += [f"{cost['latency_ms']:.2f}", f"{cost['peak_mem_mb']:.0f}"]
        rows.append([*row, summary(arch)])
    print_table(console, title, [*columns, "layout"], rows, markdown=args.markdown)
    return 0


def print_table(console: Console, title: str, columns: list[str], rows: list[list[str]], *, markdown: bool) -> None:
    if markdown:
        print(f"{title}\n")
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns))
        for row in rows:
            print("| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |")
        return
    table = Table(*columns, title=title)
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: brackets are not markup
    console.print(table)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py", description="archsweep: architecture search for vision models")
    sub = p.add_subparsers(dest="command", required=True)
    listing = sub.add_parser(
        "blocks", help="list every registered mixer, embedding, positional encoding, transition, head"
    )
    listing.add_argument("--markdown", action="store_true", help="print a markdown table")
    cost = sub.add_parser("cost", help="parameters, GMACs (and optionally latency, memory) of preset models")
    cost.add_argument("names", nargs="*", metavar="NAME", help=f"presets (default all): {', '.join(PRESETS)}")
    cost.add_argument("--timing", action="store_true", help="also time a forward pass and a training step")
    cost.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    cost.add_argument("--batch-size", type=int, default=32, help="batch of the measured training step")
    cost.add_argument("--markdown", action="store_true", help="print a markdown table (for BENCHMARKS.md)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    commands = {"blocks": cmd_blocks, "cost": cmd_cost}
    return commands[args.command](args, Console())


if __name__ == "__main__":
    sys.exit(main())
