"""``wbray browse``: write the self-contained HTML page of a run (or of upstream result files)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from wbray.errors import WbrayError

if TYPE_CHECKING:
    import pandas as pd

#: Generation columns the page shows.
_GEN_COLUMNS = ["model", "index", "sample", "response", "status", "error"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "browse",
        help="Write a browsable HTML page: leaderboard -> domain -> query -> responses and reasons.",
        description="RUN_OR_SCORES is a wbray run (local or s3://), a prefix of runs, upstream score files "
        "or directories (an export directory's responses/ is picked up too), or 'example'. The page is one "
        "self-contained file that opens offline.",
    )
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_SCORES", help="Runs, score files or directories.")
    p.add_argument(
        "--out", help="Page to write (path or s3://); default for one run: <run>/reports/browse.html."
    )
    p.add_argument(
        "--data-dir", help="WritingBench data directory, or 'example' (default: the run's, then the usual)."
    )
    p.add_argument("--judge", help="For runs holding several judges: the judge to show.")
    p.add_argument(
        "--responses",
        nargs="+",
        default=[],
        metavar="PATH",
        help="Upstream response files or directories of them (model = file stem), for score-file inputs.",
    )
    p.add_argument("--resamples", type=int, default=1000, help="Bootstrap resamples for the ± (0: none).")
    p.add_argument("--seed", type=int, default=0, help="Bootstrap seed.")
    p.add_argument("--title", help="Page title (default: derived from the inputs).")
    p.set_defaults(func=_run)


def _read_inputs(
    inputs: list[str], judge: str | None
) -> tuple[pd.DataFrame, pd.DataFrame | None, list[str], list[Path]]:
    """(evaluations, generations or None, run roots, export directories holding responses/)."""
    import pandas as pd

    from wbray.aggregate import read_upstream_scores
    from wbray.dataset import example_dir
    from wbray.records import EVAL_COLUMNS
    from wbray.storage import RunLayout, discover_runs, is_s3, read_evaluations, read_generations

    frames: list[pd.DataFrame] = []
    gens: list[pd.DataFrame] = []
    runs: list[str] = []
    files: list[str] = []
    exports: list[Path] = []
    owners: dict[str, str] = {}
    for item in inputs:
        item = str(example_dir() / "results") if item == "example" else item
        found = discover_runs(item) if is_s3(item) or Path(item).is_dir() else []
        if not found:
            if is_s3(item):
                raise WbrayError(f"{item}: no wbray run (manifest.json) under this prefix")
            files.append(item)
            if Path(item).is_dir() and (Path(item) / "responses").is_dir():
                exports.append(Path(item))
            continue
        for run in found:
            layout = RunLayout.at(run)
            # Reasons and errors are what the page is for, so every evaluation column is read.
            frame = read_evaluations(layout, judge, columns=list(EVAL_COLUMNS))
            for model in frame["model"].astype(str).unique():
                if model in owners:
                    raise WbrayError(f"model {model!r} appears twice: {owners[model]} and {run}")
                owners[model] = run
            frames.append(frame)
            table = read_generations(layout, _GEN_COLUMNS, committed_only=True, current_only=True)
            if table is not None:
                gens.append(table.to_pandas())
            runs.append(run)
    for path in _score_files(files):
        model = path.name.removesuffix(".jsonl")
        if model in owners:
            raise WbrayError(f"model {model!r} appears twice: {owners[model]} and {path}; rename one file")
        owners[model] = str(path)
        # One file at a time through the upstream reader: it keeps the reasons, which the page
        # shows and aggregation's bulk reader may leave out.
        frames.append(read_upstream_scores(path, model))
    evaluations = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(EVAL_COLUMNS))
    if evaluations.empty:
        raise WbrayError(f"no evaluations found in {', '.join(inputs)}")
    return evaluations, (pd.concat(gens, ignore_index=True) if gens else None), runs, exports


def _score_files(items: list[str]) -> list[Path]:
    """Upstream score files named by files, directories of them, or export directories (scores/)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_file():
            out.append(p)
        elif p.is_dir():
            base = p / "scores" if (p / "scores").is_dir() else p
            found = sorted(base.glob("*.jsonl"))
            if not found:
                raise WbrayError(f"{p}: no score files (*.jsonl) and no wbray run found")
            out += found
        else:
            raise WbrayError(f"{item}: no such file, directory or run")
    return out


def _read_responses(paths: list[Path]) -> pd.DataFrame | None:
    import pandas as pd

    from wbray.aggregate import read_upstream_responses

    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            base = p / "responses" if (p / "responses").is_dir() else p
            files += sorted(base.glob("*.jsonl"))
        elif p.is_file():
            files.append(p)
        else:
            raise WbrayError(f"--responses {p}: no such file or directory")
    if not files:
        return None
    return pd.concat([read_upstream_responses(f) for f in files], ignore_index=True)


def _run_data_source(manifest: object) -> str | None:
    """The data directory a run was made on (its manifest's ``data.source``), when recorded.

    Read by attribute or by key: the manifest is a plain mapping in older runs and a typed record
    in newer ones.
    """
    data = manifest.get("data") if isinstance(manifest, dict) else getattr(manifest, "data", None)
    source = data.get("source") if isinstance(data, dict) else getattr(data, "source", None)
    return source if isinstance(source, str) and source else None


def _run(args: argparse.Namespace) -> int:
    import pandas as pd
    from rich.console import Console

    from wbray.browse import write_browser
    from wbray.dataset import load_benchmark
    from wbray.injection import count_flags, flag_responses
    from wbray.stats import bootstrap_cis
    from wbray.storage import RunLayout, read_manifest

    if args.resamples < 0:
        raise WbrayError(f"--resamples must be 0 or more, got {args.resamples}")
    evaluations, generations, runs, exports = _read_inputs(args.inputs, args.judge)
    out = args.out
    if out is None:
        if len(runs) != 1 or len(args.inputs) != 1:
            raise WbrayError(
                "browse: give --out FILE.html (it defaults to <run>/reports/browse.html for one run)"
            )
        out = RunLayout.at(runs[0]).report("browse.html")
    data_dir = args.data_dir
    if data_dir is None and len(runs) == 1:
        data_dir = _run_data_source(read_manifest(RunLayout.at(runs[0])))
    if data_dir is None and args.inputs == ["example"]:
        data_dir = "example"
    bench = load_benchmark(data_dir)

    extra = _read_responses([Path(p) for p in args.responses] + exports)
    if extra is not None:
        generations = extra if generations is None else pd.concat([generations, extra], ignore_index=True)
    flags = flag_responses(generations) if generations is not None else None
    cis = bootstrap_cis(
        evaluations, bench.queries, bench.requirements, resamples=args.resamples, seed=args.seed
    )
    title = args.title or "WritingBench results: " + ", ".join(
        Path(i.rstrip("/")).name or i for i in args.inputs
    )
    write_browser(evaluations, generations, bench, out, flags=flags, cis=cis, title=title)
    console = Console()
    if flags is not None:
        counts = count_flags(flags)
        flagged = counts[counts["flagged"] > 0]
        for rec in flagged.to_dict("records"):
            console.print(
                f"[yellow]{rec['model']}: {rec['flagged']} of {rec['responses']} responses flagged[/]"
            )
    console.print(f"wrote {out}")
    return 0
