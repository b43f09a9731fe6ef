"""abtest (compare two runs), abtest plan (sample size / MDE), abtest bandit (adaptive allocation)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from recsys_cli.cli.common import ArtifactsDirOpt, DataDirOpt, FormatOpt, JsonOpt, SeedOpt, command_group

DEFAULT_SALT = "recsys-abtest"  # same as recsys_cli.abtest.assignment.DEFAULT_SALT (kept import-free here)
SUBCOMMANDS_USAGE = "RUN_A RUN_B [OPTIONS] | plan [OPTIONS] | bandit RUN_A RUN_B [RUN_C ...] [OPTIONS]"

HELP = """Simulated A/B tests between trained runs, sample-size planning and bandits.

`recsys abtest RUN_A RUN_B` is short for `recsys abtest run RUN_A RUN_B`: every user with
held-out ratings in the runs' split is assigned to A or B by a salted hash of the user id,
sees that arm's top-K, and clicks according to a click model over the held-out ratings.
The report gives CTR per arm, the lift with confidence intervals, Welch's t-test on
per-user CTR (primary: the user is the randomisation unit), a two-proportion z-test, a
bootstrap CI, a sample-ratio-mismatch check, the winner, and Holm-corrected segments.

Examples:

  recsys abtest svd-ml-100k-random popularity-ml-100k-random --dataset ml-100k

  recsys abtest svd-ml-100k-random popularity-ml-100k-random --click-model position --eta 1 --format json

  recsys abtest plan --baseline-ctr 0.10 --mde 0.01

  recsys abtest bandit svd-ml-100k-random popularity-ml-100k-random --policy thompson --rounds 50
"""


class AbtestGroup(TyperGroup):
    """Routes `abtest RUN_A RUN_B ...` to the `run` subcommand; `plan` and `bandit` stay subcommands."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["run", *args]
        return super().parse_args(ctx, args)

    def format_usage(self, ctx, formatter) -> None:
        formatter.write_usage(ctx.command_path, SUBCOMMANDS_USAGE)

    def format_options(self, ctx, formatter) -> None:
        run = self.commands.get("run")
        if run is not None:
            # Show the comparison's options here: `recsys abtest --help` documents the default form.
            sub = type(ctx)(run, info_name="run", parent=ctx)
            with formatter.section("Options of `recsys abtest RUN_A RUN_B`"):
                formatter.write_dl([rec for p in run.get_params(sub) if (rec := p.get_help_record(sub))])
        self.format_commands(ctx, formatter)


abtest_app = command_group(AbtestGroup, HELP)

DatasetOpt = Annotated[Optional[str], typer.Option("--dataset", "-d", help="Dataset of the runs (default: the runs' own; must match).")]
KOpt = Annotated[int, typer.Option("--k", "-k", help="Items shown per user (top-K, seen items excluded).")]
ClickModelOpt = Annotated[str, typer.Option("--click-model", help="threshold (click when held-out rating >= threshold), position or cascade (probabilistic, position-biased).")]
ThresholdOpt = Annotated[Optional[float], typer.Option("--click-threshold", help="threshold model: lowest held-out rating that clicks (default 4), within the ratings' scale; its minimum makes every held-out rating a click.")]
EtaOpt = Annotated[float, typer.Option("--eta", help="position model, power decay: P(examine rank r) = 1/r^eta.")]
DecayOpt = Annotated[str, typer.Option("--decay", help="position model: power (1/r^eta) or geometric (gamma^(r-1)).")]
GammaOpt = Annotated[float, typer.Option("--gamma", help="position model, geometric decay: examination ratio per rank.")]
NoiseOpt = Annotated[float, typer.Option("--noise", help="position/cascade: click probability of an unrated or lowest-rated item.")]
ReportFormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", "-f", help="Output format: table, json or jsonl (default: table on a terminal, json when piped)."),
]
AlternativeOpt = Annotated[str, typer.Option("--alternative", help="two-sided, greater (B > A) or less (B < A).")]


def _resolve(fmt: str | None, as_json: bool) -> str:
    from recsys_cli.errors import UsageError
    from recsys_cli.output import resolve_format

    fmt = resolve_format(fmt, as_json)
    if fmt == "csv":
        raise UsageError("this report is nested: use --format table, json or jsonl")
    return fmt


def _warn(messages: list[str]) -> None:
    from recsys_cli.output import console_err

    console = console_err()
    for message in messages:
        style = "bold red" if "MISMATCH" in message else "yellow"
        console.print(f"[{style}]warning: {message}[/{style}]", highlight=False)


@abtest_app.command(
    "run",
    help="Compare two runs in a simulated A/B test (`recsys abtest RUN_A RUN_B` is the short form).\n\n"
    "Example:\n\n  recsys abtest run svd-ml-100k-random popularity-ml-100k-random --dataset ml-100k --users 500",
)
def run_cmd(
    run_a: Annotated[str, typer.Argument(metavar="RUN_A", help="Run shown to arm A (control).")],
    run_b: Annotated[str, typer.Argument(metavar="RUN_B", help="Run shown to arm B (treatment).")],
    dataset: DatasetOpt = None,
    k: KOpt = 10,
    traffic: Annotated[float, typer.Option("--traffic", help="Share of users in arm B.")] = 0.5,
    salt: Annotated[str, typer.Option("--salt", help="Salt of the assignment hash; a new salt, a new assignment.")] = DEFAULT_SALT,
    users: Annotated[Optional[int], typer.Option("--users", help="Sample this many users with the seed, at most the eligible ones (default: all with held-out ratings).")] = None,
    click_model: ClickModelOpt = "threshold",
    click_threshold: ThresholdOpt = None,
    eta: EtaOpt = 1.0,
    decay: DecayOpt = "power",
    gamma: GammaOpt = 0.85,
    noise: NoiseOpt = 0.02,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.05,
    alternative: AlternativeOpt = "two-sided",
    bootstrap: Annotated[int, typer.Option("--bootstrap", help="Bootstrap resamples of users for the lift CI (0: off).")] = 2000,
    segments: Annotated[bool, typer.Option("--segments/--no-segments", help="Per-segment tables (activity, demographics).")] = True,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the CTR per arm and the lift distribution to this .png or .svg (needs matplotlib).", show_default=False)] = None,
    seed: SeedOpt = 42,
    data_dir: DataDirOpt = None,
    artifacts_dir: ArtifactsDirOpt = None,
    fmt: ReportFormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    from recsys_cli.abtest.report import check_plot_path, plot_abtest
    from recsys_cli.api.experiments import abtest
    from recsys_cli.output import console_out, emit
    from recsys_cli.output.abtest import render_abtest

    fmt = _resolve(fmt, as_json)
    if plot is not None:
        check_plot_path(plot)
    result = abtest(run_a, run_b, dataset=dataset, k=k, traffic=traffic, salt=salt, users=users,
                    click_model=click_model, click_threshold=click_threshold, eta=eta, decay=decay, gamma=gamma,
                    noise=noise, alpha=alpha, alternative=alternative, bootstrap=bootstrap, segments=segments,
                    seed=seed, data_dir=data_dir, artifacts_dir=artifacts_dir)
    if fmt != "table":  # the table's header already says it; on a terminal it was printed twice
        for line in result.notes:
            typer.echo(line, err=True)
    _warn(result["warnings"])
    if fmt == "table":
        render_abtest(result.data, console_out())
    else:
        emit(result.to_dict(), fmt)
    if plot is not None:
        typer.echo(f"wrote {plot_abtest(result.data, plot)}", err=True)


@abtest_app.command(
    "plan",
    help="Users needed per arm for an effect (--mde), or the effect detectable with --users per arm.\n\n"
    "Formula: Fleiss' two-proportion normal approximation without continuity correction.\n\n"
    "Examples:\n\n  recsys abtest plan --baseline-ctr 0.10 --mde 0.01\n\n"
    "  recsys abtest plan --baseline-ctr 0.10 --mde 0.05 --relative --power 0.9\n\n"
    "  recsys abtest plan --baseline-ctr 0.10 --users 5000",
)
def plan_cmd(
    baseline_ctr: Annotated[float, typer.Option("--baseline-ctr", help="CTR of arm A (control), e.g. 0.10.")],
    mde: Annotated[Optional[float], typer.Option("--mde", help="Effect to detect: absolute CTR change (0.01 = one point), or relative with --relative.")] = None,
    relative: Annotated[bool, typer.Option("--relative", help="--mde is relative to the baseline (0.05 = +5%).")] = False,
    users: Annotated[Optional[int], typer.Option("--users", help="Users in arm A instead of --mde: report the minimum detectable effect.")] = None,
    alpha: Annotated[float, typer.Option("--alpha", help="Significance level.")] = 0.05,
    power: Annotated[float, typer.Option("--power", help="Probability of detecting the effect.")] = 0.8,
    ratio: Annotated[float, typer.Option("--ratio", help="Users in B per user in A.")] = 1.0,
    alternative: AlternativeOpt = "two-sided",
    impressions_per_user: Annotated[Optional[int], typer.Option("--impressions-per-user", help="Count impressions (K per user) instead of users.")] = None,
    icc: Annotated[float, typer.Option("--icc", help="With --impressions-per-user: correlation of clicks within a user (design effect 1 + (K-1) icc).")] = 0.0,
    fmt: FormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    from recsys_cli.api.experiments import abtest_plan
    from recsys_cli.output import emit, resolve_format

    fmt = resolve_format(fmt, as_json)
    out = abtest_plan(baseline_ctr, mde=mde, users=users, relative=relative, alpha=alpha, power=power, ratio=ratio,
               alternative=alternative, impressions_per_user=impressions_per_user, icc=icc)
    if fmt == "table":
        emit([{"quantity": key, "value": value} for key, value in out.items()], fmt, title="A/B test plan")
    else:
        emit(out, fmt)


@abtest_app.command(
    "bandit",
    help="Simulate adaptive allocation (thompson, ucb, epsilon-greedy) between runs, against a fixed equal split.\n\n"
    "Example:\n\n  recsys abtest bandit svd-ml-100k-random popularity-ml-100k-random --dataset ml-100k --rounds 50 --batch 100",
)
def bandit_cmd(
    runs: Annotated[list[str], typer.Argument(metavar="RUNS", help="Two or more runs (arms A, B, C, ...).")],
    dataset: DatasetOpt = None,
    policy: Annotated[str, typer.Option("--policy", help="thompson, ucb or epsilon-greedy.")] = "thompson",
    rounds: Annotated[int, typer.Option("--rounds", help="Rounds of arrivals; the policy updates after each.")] = 50,
    batch: Annotated[int, typer.Option("--batch", help="Users arriving per round (sampled with the seed).")] = 100,
    epsilon: Annotated[float, typer.Option("--epsilon", help="epsilon-greedy: exploration probability.")] = 0.1,
    k: KOpt = 10,
    click_model: ClickModelOpt = "threshold",
    click_threshold: ThresholdOpt = None,
    eta: EtaOpt = 1.0,
    decay: DecayOpt = "power",
    gamma: GammaOpt = 0.85,
    noise: NoiseOpt = 0.02,
    seed: SeedOpt = 42,
    data_dir: DataDirOpt = None,
    artifacts_dir: ArtifactsDirOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw each arm's share per round to this .png or .svg (needs matplotlib).", show_default=False)] = None,
    fmt: ReportFormatOpt = None,
    as_json: JsonOpt = False,
) -> None:
    from recsys_cli.api.experiments import bandit
    from recsys_cli.output import console_out, emit
    from recsys_cli.output.abtest import render_bandit
    from recsys_cli.progress import make_progress

    fmt = _resolve(fmt, as_json)
    if plot is not None:
        from recsys_cli.figures.plots import check_plot_path

        check_plot_path(plot)  # before the simulation: a bad suffix or folder fails now
    progress = make_progress(verbose=False)
    try:
        report = bandit(runs, dataset=dataset, policy=policy, rounds=rounds, batch=batch, epsilon=epsilon, k=k,
                        click_model=click_model, click_threshold=click_threshold, eta=eta, decay=decay, gamma=gamma,
                        noise=noise, seed=seed, data_dir=data_dir, artifacts_dir=artifacts_dir, progress=progress)
    finally:
        progress.close()
    if fmt != "table":  # the table's header already says it
        for line in report.notes:
            typer.echo(line, err=True)
    result = report.to_dict()
    if plot is not None:
        from recsys_cli.figures.plots import plot_bandit

        typer.echo(f"wrote {plot_bandit(result, plot)}", err=True)
    if fmt == "table":
        render_bandit(result, console_out())
    else:
        emit(result, fmt)


def register(app: typer.Typer) -> None:
    app.add_typer(
        abtest_app,
        name="abtest",
        help=HELP,
    )
