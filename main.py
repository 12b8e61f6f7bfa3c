"""archsweep command line.

python main.py run SPEC [-o key=value ...] [--resume]   run (or resume) a sweep
python main.py validate SPEC [--json]        check a spec, show its space and sampled models
python main.py ui                            the MLflow UI on 127.0.0.1 over the default store
python main.py show [EXPERIMENT]             the Pareto table of a finished sweep, from MLflow
python main.py export RUN_ID --out DIR       a trial's logged model, arch.yaml and weights
python main.py import-timm FILE --out DIR [--heads N]   a timm ViT/DeiT/Mixer checkpoint as arch.yaml and weights
python main.py blocks                        every registered block, one line each
python main.py cost [NAME ...] [--timing]    parameters and GMACs of the papers' models
python main.py bench {scaling,conv,funnel,trial,search} [--quick]   measurements for BENCHMARKS.md
python main.py cluster {up,down,status}      a Ray cluster on this machine (loopback, token auth)
python main.py record SPEC --out TABLE        train every architecture of a finite space into a table

Exit codes: 0 done, 1 the sweep ran but no trial completed, 2 bad input, 3 partial (some
trials failed, the others completed), 4 the tracking store failed or the sweep's Ray runtime
stopped, 130 interrupted (4 and 130: run again to resume), 70 an internal error (a bug:
ARCHSWEEP_DEBUG=1 shows its traceback).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table
from rich.text import Text

from blocks import build, describe, summary
from blocks.builder import did_you_mean
from blocks.cost import count_layer_params, count_params, measure
from blocks.presets import PRESETS, PUBLISHED

# How a user starts this: installed (setup.py makes this file archsweep/cli.py), the archsweep command.
COMMAND = "archsweep" if __name__.startswith("archsweep") else "python main.py"


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
    columns = ["preset", "params", "layer params", "published", "GMACs", "published GMACs", "source"]
    if args.timing:
        columns += [f"latency ms ({device}, b=1)", f"train-step MiB (b={args.batch_size})"]
    title = f"model cost, torch {torch.__version__}, {torch.get_num_threads()} threads"
    rows = []
    for name in args.names or PRESETS:
        arch = PRESETS[name]()
        meta = build(arch, device="meta")
        cost = measure(arch, device=device, batch_size=args.batch_size, timing=args.timing)
        total, layer = count_params(meta)[0], count_layer_params(meta)
        row = [name, f"{total:,}", f"{layer:,}", *_published(name, total, layer, cost["gmacs"])]
        if args.timing:
            row += [f"{cost['latency_ms']:.2f}", f"{cost['peak_mem_mb']:.0f}"]
        rows.append([*row, summary(arch)])
    print_table(console, title, [*columns, "layout"], rows, markdown=args.markdown)
    notes = {name: PUBLISHED[name].note for name in args.names or PRESETS if name in PUBLISHED and PUBLISHED[name].note}
    for name, note in notes.items():  # what each "(explained)" difference is
        print(f"{name}: {note}")
    return 0


def _published(name: str, total: int, layer: int, gmacs: float) -> list[str]:
    """The source's count beside the measured one, under the source's convention (``=``
    when they agree, else the difference), the GMACs both ways, and the source."""
    p = PUBLISHED.get(name)
    if p is None:
        return ["", f"{gmacs:.3f}", "", ""]
    measured = layer if p.layer else total
    agrees = "=" if measured == p.params else f"{measured - p.params:+,}"
    if p.note and measured - p.params == p.difference:
        agrees += " (explained below)"
    convention = " (layer)" if p.layer else ""
    published_gmacs = "" if p.gmacs is None else f"{p.gmacs:g}"
    return [f"{p.params:,}{convention} {agrees}", f"{gmacs:.3f}", published_gmacs, p.source]


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


def _load(args: argparse.Namespace):
    """The spec (a file or a bundled space's name: ``quickstart``), or None after printing
    every problem (one line each) to stderr."""
    from api import SpecError, load

    overrides = list(args.override or [])
    if getattr(args, "workers", None) is not None:
        if any(o.split("=", 1)[0].strip() == "backend.max_concurrent" for o in overrides):
            print("error: --workers and -o backend.max_concurrent set the same thing; give one", file=sys.stderr)
            return None
        overrides.append(f"backend.max_concurrent={args.workers}")
    try:
        validating = args.command == "validate"
        spec = load(args.spec, overrides, smoke=args.smoke, check_data=not validating)
        for warning in spec.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        return spec
    except SpecError as err:
        for issue in err.issues:
            print(issue, file=sys.stderr)
        print(f"{len(err.issues)} problem(s); nothing was run.", file=sys.stderr)
        return None


def cmd_run(args: argparse.Namespace, console: Console) -> int:
    spec = _load(args)
    if spec is None:
        return 2
    from api import StoreFailed, SweepInterrupted, SweepRefused, execute
    from search.results.view import LiveView, front_table, tally

    view = LiveView(spec.objectives, console)

    def started(sweep) -> None:
        where = f"Ray ({spec.backend.address})" if spec.backend.kind == "ray" else str(sweep.device)
        console.print(f"sweep {spec.name}: {sweep.remaining()} of {spec.search.trials} trials to run on {where}")

    try:
        sweep, front = execute(
            spec, device=args.device, resume=args.resume, on_change=view.update, on_start=started, running=view
        )
    except SweepRefused as refused:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    except SweepInterrupted:
        console.print("interrupted; run the same command again to resume")
        return 130
    except StoreFailed as failed:
        for line in failed.errors:
            print(f"error: {line}", file=sys.stderr)
        if failed.hint:
            print(failed.hint, file=sys.stderr)
        return 4
    rows = sweep.front_rows()[0]
    if spec.ablation is not None:
        from search.results.view import ablation_table

        shown = list(dict.fromkeys([*(o.metric for o in spec.objectives), "params", "gmacs"]))
        console.print(ablation_table(sweep.ablation_rows, shown, f"ablation {spec.name} (all metrics: ablation.csv)"))
    else:
        console.print(front_table(front, spec.objectives, f"Pareto front of {spec.name} ({len(rows)} feasible trials)"))
    for line in tally(sweep.trial_rows()):
        console.print(Text(line), soft_wrap=True)
    if sweep.stopped:  # short of search.trials: the space is exhausted, or the sampler only redraws
        console.print(Text(f"stopped early: {sweep.stopped}"), soft_wrap=True)
    where = spec.tracking_uri or sweep.store
    ui = f"{COMMAND} ui" + ("" if spec.tracking_uri or spec.store == "out" else f" --store {spec.store}")
    console.print(f"results: MLflow experiment {spec.experiment!r} in {where}; open it with: {ui}")
    for problem in sweep.model_errors:
        console.print(f"warning: model not logged, {problem}")
    failed = sweep.failed()
    if failed and rows:
        console.print(f"partial: {failed} trial(s) failed; their reasons are in MLflow (tag archsweep.reason)")
    return 1 if not rows else 3 if failed else 0


def cmd_ablate(args: argparse.Namespace, console: Console) -> int:
    from api import SpecError, load

    try:
        has_ablation = load(args.spec, args.override or [], smoke=args.smoke).ablation is not None
    except SpecError:
        has_ablation = True  # cmd_run reports the problems
    if not has_ablation:
        print(f"error: {args.spec} has no ablation section; use {COMMAND} run", file=sys.stderr)
        return 2
    return cmd_run(args, console)


def cmd_validate(args: argparse.Namespace, console: Console) -> int:
    spec = _load(args)
    if spec is None:
        return 2
    import json

    from api import validate

    report = validate(spec, samples=args.samples, seed=args.seed)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, default=str, allow_nan=False))
        return 2 if report.refused else 0
    console.print(f"{spec.file}: valid. {len(report.dimensions)} dimensions, {report.size:g} points.")
    print_table(
        console,
        "search dimensions",
        ["key", "dimension"],
        [[k, v] for k, v in report.dimensions.items()],
        markdown=False,
    )
    samples = report.samples
    papers = any("published" in r for r in samples)  # a reproduction: the papers' counts beside ours
    rows = [
        [
            r["summary"],
            f"{r.get('params', 0):,}",
            *([f"{r.get('layer_params', 0):,}", _published_cell(r.get("published"))] if papers else []),
            f"{r.get('gmacs', 0):.4f}",
            "; ".join(r["refused"]) or "-",
        ]
        for r in samples
    ]
    title = "ablation arms" if spec.ablation is not None else "sampled architectures"
    columns = ["architecture", "params", *(["layer params", "published"] if papers else []), "GMACs", "refused"]
    print_table(console, title, columns, rows, markdown=False)
    for r in samples:  # what each explained difference is
        if r.get("published", {}).get("note"):
            console.print(f"{r['summary'].split(':')[0]}: {r['published']['note']}", highlight=False)
    breaking = sum(1 for r in samples if r["refused"])
    if breaking:
        console.print(f"{breaking} of these {len(samples)} would be recorded infeasible, without training")
    if at_run := report.constraints_checked_when_trials_run:
        console.print(f"checked when each trial runs (measured on its device): {', '.join(at_run)}")
    if report.continues is not None:
        _print_continuation(console, spec, report.continues)
    return 2 if report.refused else 0


def _print_continuation(console: Console, spec, continuing: dict) -> None:
    if continuing["refused"]:
        console.print(f"run would refuse it: {continuing['refused']}", highlight=False, markup=False)
        return
    kept, outside = continuing["kept"], continuing["outside"]
    lines = [f"continues sweep {spec.name} in {spec.store}, amended:", *(f"  {c}" for c in continuing["changes"])]
    lines.append(f"earlier trials: {len(kept)} kept in the amended space, {len(outside)} outside it")
    lines += [f"  t{n:02d} outside: {why}" for n, why in sorted(outside.items())]
    console.print("\n".join(lines), highlight=False, markup=False)


def _published_cell(published: dict | None) -> str:
    """``905,547 (layer) = ViX Table 3``, or the difference where they differ."""
    if not published:
        return ""
    d = published["difference"]
    agrees = "=" if d == 0 else f"{d:+,}" + (" (explained below)" if published["note"] else "")
    return f"{published['params']:,} ({published['convention']}) {agrees} {published['source']}"


def cmd_ui(args: argparse.Namespace, console: Console) -> int:
    from runs import store as stores
    from runs.server import port_taken, serve_ui

    store = Path(args.store)
    if not (store / "mlflow.db").exists():
        print(f"error: no sweep store at {store}/mlflow.db; run a sweep first (make run)", file=sys.stderr)
        return 2
    if port_taken(args.port):
        print(f"error: port {args.port} on 127.0.0.1 is in use; choose another with --port N", file=sys.stderr)
        return 2
    with stores.reading(store) as db:  # a read-only store: a copy, rewritten if the store moved
        code = serve_ui(db, args.port, lambda url: console.print(f"MLflow UI on {url} (Ctrl-C to stop)"))
    if code:
        print(f"error: the MLflow UI server stopped with exit code {code}", file=sys.stderr)
    return code


def cmd_show(args: argparse.Namespace, console: Console) -> int:
    from search.results import review
    from search.results.view import front_table

    try:
        with review.opened(args.store, args.uri) as uri:
            experiment = review.pick_experiment(uri, args.experiment)
            sweep, objectives, rows = review.front(uri, experiment)
    except review.ReviewError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    title = f"Pareto front of {sweep} ({len(rows)} trials; experiment {experiment!r})"
    if not console.is_terminal:  # piped or captured: whole lines, not 80 columns
        console = Console(width=max(console.width, 200))
    console.print(front_table(rows, objectives, title, run_ids=True))
    console.print(f"take one away with: {COMMAND} export RUN_ID --out DIR")
    return 0


def cmd_export(args: argparse.Namespace, console: Console) -> int:
    from search.results import review

    try:
        with review.opened(args.store, args.uri) as uri:
            out = review.export(uri, args.run_id, Path(args.out))
    except review.ReviewError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    console.print(f"exported to {out}: the MLflow model, arch.yaml, weights.pt, probe.pt (inputs and their logits)")
    console.print(f"  mlflow.pytorch.load_model({str(out)!r})")
    console.print(
        f"  or: blocks.build(blocks.from_dict(yaml.safe_load(open('{out}/arch.yaml'))))"
        f".load_state_dict(torch.load('{out}/weights.pt'))",
        soft_wrap=True,
    )
    return 0


def cmd_import_timm(args: argparse.Namespace, console: Console) -> int:
    import shutil
    import tempfile

    import yaml

    from blocks.timm_import import CheckpointError, import_timm, load_checkpoint
    from runs.trial import model_files, model_record
    from search.spec.arch import from_arch

    out = Path(args.out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"error: {out} exists and is not an empty folder; choose another --out", file=sys.stderr)
        return 2
    try:
        arch, model = import_timm(load_checkpoint(args.file), heads=args.heads, image_size=args.image_size)
    except CheckpointError as err:
        for problem in err.problems:
            print(problem, file=sys.stderr)
        print(f"{len(err.problems)} problem(s) in {args.file}; nothing was written.", file=sys.stderr)
        return 2
    # probe.pt as export writes it: inputs (normalised as timm's model takes them) and their logits.
    x = torch.randn(2, arch.in_channels, *arch.image_size, generator=torch.Generator().manual_seed(0))
    files = model_files(model_record(arch, model, x))
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}-") as staging:
        folder = Path(staging) / "model"
        folder.mkdir()
        for name, content in files.items():
            (folder / name).write_bytes(content)
        # The same model as a spec's model section: `extends: model.yaml` starts a sweep or an ablation from it.
        header = f"# {summary(arch)}, imported from {Path(args.file).name}; add data: and search: or ablation:\n"
        (folder / "model.yaml").write_text(header + yaml.safe_dump({"model": from_arch(arch)}, sort_keys=False))
        if out.exists():
            out.rmdir()
        shutil.move(str(folder), out)  # complete or not there at all
    done = f"imported {summary(arch)} to {out}: arch.yaml, model.yaml (for extends:), weights.pt, probe.pt"
    console.print(Text(done), soft_wrap=True)  # Text: the summary's brackets are not markup
    console.print(
        f"  blocks.build(blocks.from_dict(yaml.safe_load(open('{out}/arch.yaml'))))"
        f".load_state_dict(torch.load('{out}/weights.pt'))",
        soft_wrap=True,
    )
    return 0


def cmd_record(args: argparse.Namespace, console: Console) -> int:
    from search.sweep.record import add_proxies, record
    from search.tables.table import TableError

    spec = _load(args)
    if spec is None:
        return 2

    def progress(done: int, total: int, line: str) -> None:
        console.print(Text(f"[{done}/{total}] {line}"), soft_wrap=True)

    try:
        if args.proxies_only:
            table = add_proxies(spec, Path(args.out), on_row=progress)
            console.print(f"scored {len(table.rows)} rows with {', '.join(spec.search.proxies)} in {args.out}")
            return 0
        table = record(
            spec,
            Path(args.out),
            seeds=tuple(args.seeds),
            repeat_every=args.repeat_every,
            workers=args.workers,
            on_row=progress,
        )
    except TableError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    console.print(f"recorded {len(table.rows)} rows in {table.meta['wall_s']:.0f} s to {args.out}")
    return 0


def cmd_cluster(args: argparse.Namespace, console: Console) -> int:
    from search.sweep.ray import cluster

    address = f"{cluster.HEAD_NODE}:{args.port}"
    if args.action == "up":
        cluster.cluster_up(workers=args.workers, cpus=args.cpus, port=args.port)
        console.print(f"Ray cluster at {address}: a head and {args.workers} worker node(s), token authentication on")
        console.print(f"run a sweep on it: {COMMAND} run SPEC -o backend.kind=ray -o backend.address={address}")
        console.print("(a cluster's workers log to a tracking server: also set -o tracking.uri=http://127.0.0.1:PORT)")
    elif args.action == "down":  # that cluster only: not a sweep's private runtime beside it
        stopped = cluster.cluster_down(address)
        said = f"stopped the Ray cluster at {address} ({stopped} processes)" if stopped else f"no cluster at {address}"
        console.print(said)
    else:
        console.print(cluster.cluster_status(address))
    return 0


def cmd_bench(args: argparse.Namespace, console: Console) -> int:
    import importlib

    from bench.common import Env, pick_device
    from bench.common import print_table as bench_table

    device = pick_device(args.device)
    console = console if console.is_terminal else Console(width=160)
    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out) / args.name
    env = Env.current(device, args.repeats)
    console.print(f"bench {args.name}: {env.line()}; writing {out}/")
    import bench

    module = importlib.import_module(f"{bench.__name__}.{args.name}")  # bench, or archsweep.bench installed
    rows = module.run(out, device=device, repeats=args.repeats, cap_s=args.cap, quick=args.quick, console=console)
    bench_table(console, f"bench {args.name}", rows, env)
    return 0


def port(text: str) -> int:
    """A TCP port for argparse: 1-65535, refused in one line otherwise."""
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None
    if not 1 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"{number} is not a port number (1-65535)")
    return number


def parser() -> argparse.ArgumentParser:
    prog = COMMAND.removeprefix("python ")
    p = argparse.ArgumentParser(prog=prog, description="archsweep: architecture search for vision models")
    sub = p.add_subparsers(dest="command", required=True)
    for command in ("run", "ablate"):
        helptext = (
            "run a sweep or ablation (running it again resumes it)" if command == "run" else "run an ablation study"
        )
        run = sub.add_parser(command, help=helptext)
        run.add_argument("spec", help="the YAML spec, e.g. spaces/quickstart.yaml, or a bundled space: quickstart")
        run.add_argument("-o", "--override", action="append", metavar="KEY=VALUE", help="e.g. -o search.trials=50")
        run.add_argument("--device", help="cpu or cuda (default: cuda when available)")
        run.add_argument("--smoke", action="store_true", help="apply the spec's smoke overrides (tiny, synthetic)")
        run.add_argument(
            "--resume", action="store_true", help="continue a stopped sweep (an error when there is none to continue)"
        )
        run.add_argument(
            "--workers", type=int, metavar="N", help="trials at once, each in a process (= backend.max_concurrent)"
        )
    val = sub.add_parser("validate", help="check a spec without training; show its space and sampled models")
    val.add_argument("spec")
    val.add_argument("-o", "--override", action="append", metavar="KEY=VALUE")
    val.add_argument("--samples", type=int, default=5, help="how many architectures to sample")
    val.add_argument("--seed", type=int, default=0)
    val.add_argument("--json", action="store_true", help="machine-readable output")
    val.add_argument("--smoke", action="store_true", help="apply the spec's smoke overrides")
    bench = sub.add_parser("bench", help="measure scaling, conv, funnel or trial overhead (BENCHMARKS.md)")
    bench.add_argument("name", choices=["scaling", "conv", "funnel", "trial", "search", "amend"])
    bench.add_argument("--quick", action="store_true", help="tiny sizes: checks that the bench runs, measures nothing")
    bench.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    bench.add_argument("--repeats", type=int, default=5, help="timed repeats per configuration (median reported)")
    bench.add_argument("--cap", type=float, default=60.0, help="seconds per configuration before it is a DNF")
    bench.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    bench.add_argument("--out", default="out/bench", help="folder for CSV and PNG")
    cluster = sub.add_parser("cluster", help="a Ray cluster on this machine: head and workers on loopback addresses")
    cluster.add_argument("action", choices=["up", "down", "status"])
    cluster.add_argument("--workers", type=int, default=1, help="worker nodes besides the head")
    cluster.add_argument("--cpus", type=int, default=1, help="CPUs each node offers")
    cluster.add_argument("--port", type=port, default=6390, help="the head's port")
    ui = sub.add_parser("ui", help="serve the MLflow UI on 127.0.0.1 over the sweep store")
    ui.add_argument("--store", default="out", help="the store directory (tracking.dir of the spec)")
    ui.add_argument("--port", type=port, default=5000)
    show = sub.add_parser("show", help="the Pareto table of a finished sweep, read from MLflow")
    show.add_argument("experiment", nargs="?", help="the MLflow experiment (default: the store's only one)")
    export = sub.add_parser("export", help="a trial's logged model, its arch.yaml and weights, into a folder")
    export.add_argument("run_id", help="the trial's MLflow run id (main.py show lists the front's)")
    export.add_argument("--out", required=True, help="a new or empty folder")
    for command in (show, export):
        command.add_argument("--store", default="out", help="the store directory (tracking.dir of the spec)")
        command.add_argument("--uri", help="an MLflow tracking server instead of the store")
    timm = sub.add_parser("import-timm", help="a timm ViT, DeiT or MLP-Mixer checkpoint as arch.yaml and weights")
    timm.add_argument("file", help="a .pth/.pt state dict (or one under 'model' or 'state_dict'), read weights-only")
    timm.add_argument("--out", required=True, help="a new or empty folder")
    timm.add_argument("--heads", type=int, help="attention heads (not in a state dict; default: width / 64)")
    timm.add_argument(
        "--image-size", type=int, nargs=2, metavar=("H", "W"), help="for a grid that is not square (default: square)"
    )
    rec = sub.add_parser("record", help="train every architecture of a finite space into a table (replay, bench)")
    rec.add_argument("spec", help="a spec whose model and train sections hold no float ranges")
    rec.add_argument("--out", required=True, help="the table file (.jsonl.gz); OUT.partial keeps an interrupted run")
    rec.add_argument("-o", "--override", action="append", metavar="KEY=VALUE")
    rec.add_argument("--workers", type=int, default=1, help="architectures trained at once, each in a process")
    rec.add_argument("--seeds", type=int, nargs="+", default=[0], help="the first trains all; the others a subset")
    rec.add_argument("--repeat-every", type=int, default=0, metavar="N", help="every N-th architecture again per seed")
    rec.add_argument(
        "--proxies-only", action="store_true", help="add search.proxies' zero-cost proxies to TABLE's rows, no training"
    )
    rec.set_defaults(smoke=False)
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
    commands = {
        "run": cmd_run,
        "ablate": cmd_ablate,
        "validate": cmd_validate,
        "ui": cmd_ui,
        "blocks": cmd_blocks,
        "cost": cmd_cost,
        "bench": cmd_bench,
        "cluster": cmd_cluster,
        "show": cmd_show,
        "export": cmd_export,
        "import-timm": cmd_import_timm,
        "record": cmd_record,
    }
    try:
        return commands[args.command](args, Console())
    except Exception as err:  # a store (or a file) that fails outside a sweep: show, export, ui, validate
        from runs.tracking import failure_line, store_failure

        cause = store_failure(err)
        if cause is None:
            raise
        print(f"error: {failure_line(cause)}", file=sys.stderr)
        return 4


def cli() -> int:
    """``main`` as a command: whatever happens, one line on stderr, never a traceback
    (``ARCHSWEEP_DEBUG=1`` shows it: what to attach to a bug report)."""
    import os

    try:
        return main()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `| head` stopped reading: no complaint when stdout is flushed at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as err:
        if os.environ.get("ARCHSWEEP_DEBUG"):
            raise
        first = (str(err).strip().splitlines() or [""])[0][:300]
        print(
            f"error: {type(err).__name__}: {first} (an internal error in archsweep: run again with"
            " ARCHSWEEP_DEBUG=1 for its traceback, and report it)",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(cli())
