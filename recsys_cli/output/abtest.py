"""A/B test and bandit reports as rich tables for a person (`recsys abtest`, `recsys abtest bandit`)."""

from __future__ import annotations

import math


def _pct(x, digits: int = 2) -> str:
    return "" if x is None or not math.isfinite(x) else f"{100 * x:.{digits}f}%"


def _pp(x) -> str:
    """A CTR difference in percentage points."""
    return "" if x is None or not math.isfinite(x) else f"{100 * x:+.2f}"


def _rel(x) -> str:
    return "" if x is None or not math.isfinite(x) else f"{100 * x:+.1f}%"


def _ci(lo, hi, fmt) -> str:
    if lo is None or hi is None or (isinstance(lo, float) and math.isnan(lo)):
        return ""
    left = "-inf" if lo == -math.inf else fmt(lo)
    right = "+inf" if hi == math.inf else fmt(hi)
    return f"[{left}, {right}]"


def _p(x) -> str:
    return "" if x is None or not math.isfinite(x) else (f"{x:.4f}" if x >= 1e-4 else f"{x:.2e}")


def _num(x, digits: int = 3) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.{digits}f}"


def _model_text(model: dict) -> str:
    params = ", ".join(f"{k}={v}" for k, v in model.items() if k != "name")
    return f"{model['name']}({params})"


def render_abtest(result: dict, console) -> None:
    """Print the A/B report: settings, arms, tests, verdict and segments."""
    from rich import box
    from rich.table import Table

    from recsys_cli.output import fit_table, names_say_models

    s = result["settings"]
    a, b = result["arms"]
    console.print(f"[bold]A/B test[/bold] on {s['dataset']} (split {s['split']}): "
                  f"A = {a['run']} ({a['model']})  vs  B = {b['run']} ({b['model']})")
    console.print(f"users: {s['sampled_users']:,} of {s['eligible_users']:,} with held-out ratings; top-{s['k']} "
                  f"per user; B traffic {s['traffic']:.0%}; salt {s['salt']!r}; seed {s['seed']}")
    console.print(f"click model: {_model_text(result['click_model'])}")
    arms = Table(title="Arms", title_justify="left", box=box.SIMPLE_HEAD)
    model = not names_say_models(result["arms"])  # the model column only when a run's name does not say it
    for col in ("arm", "run", *(["model"] if model else []), "users", "impressions", "clicks", "CTR", "per-user CTR"):
        arms.add_column(col, justify="right" if col not in ("arm", "run", "model") else "left")
    for arm in result["arms"]:
        arms.add_row(arm["arm"], arm["run"], *([str(arm["model"])] if model else []), f"{arm['users']:,}",
                     f"{arm['impressions']:,}", f"{arm['clicks']:,}", _pct(arm["ctr"]), _pct(arm["user_ctr_mean"]))
    console.print(fit_table(arms, console.width))
    level = 1 - s["alpha"]
    tests = Table(title=f"Lift of B over A ({s['alternative']}, {level:.0%} CI)", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("test", "unit", "statistic", "p-value", "lift (pp) [CI]", "relative [CI]"):
        tests.add_column(col, justify="left" if col in ("test", "unit") else "right", no_wrap=col == "test")
    names = {"user_welch_t": "Welch t (primary)", "impression_z": "two-proportion z"}
    for key, t in result["tests"].items():
        if key == "bootstrap":
            name, unit, stat, p = f"bootstrap ({t['n_boot']:,})", "user", "", ""
            rel = _ci(t["rel_ci_low"], t["rel_ci_high"], _rel)
        else:
            name, unit, p = names.get(key, key), t["unit"], _p(t["p_value"])
            stat = _num(t["statistic"]) + (f" (df {t['df']:.0f})" if t.get("df") and math.isfinite(t["df"]) else "")
            rel = f"{_rel(t['rel_lift'])} {_ci(t['rel_ci_low'], t['rel_ci_high'], _rel)}"
        lift = f"{_pp(t['diff'])} {_ci(t['ci_low'], t['ci_high'], _pp)}"
        tests.add_row(name, unit, stat, p, lift, rel)
    console.print(fit_table(tests, console.width))
    console.print(f"[dim]{result['primary_note']}[/dim]")
    if "bootstrap" in result["tests"]:
        console.print(f"bootstrap: B better in {result['tests']['bootstrap']['prob_b_better']:.1%} of resamples")
    srm = result["srm"]
    console.print(f"sample ratio check: chi-square {srm['chi2']:.3f}, p = {_p(srm['p_value'])}"
                  + (" [bold red]MISMATCH[/bold red]" if srm["mismatch"] else " (ok)"))
    w = result["winner"]
    style = "bold green" if w["winner"] else "bold"
    console.print(f"[{style}]verdict: {w['message']}[/{style}]")
    segments = result.get("segments")
    if segments:
        table = Table(title="Segments (per-user CTR)", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("segment", "users A/B", "CTR A", "CTR B", "lift (pp)", "p", "p (Holm)"):
            table.add_column(col, justify="left" if col == "segment" else "right", no_wrap=col != "segment")
        for r in segments:
            value = r["value"].replace(" ratings)", ")")
            table.add_row(f"{r['segment']}: {value}", f"{r['users_a']}/{r['users_b']}", _pct(r["ctr_a"], 1),
                          _pct(r["ctr_b"], 1), _pp(r["lift"]), _p(r["p_value"]),
                          _p(r["p_holm"]) + (" *" if r["significant"] else "  "))
        console.print(fit_table(table, console.width))
        console.print(f"[dim]{result['segments_note']}; * = significant[/dim]")


def render_bandit(result: dict, console) -> None:
    """Print the bandit report: arms, traffic share over time, clicks and regret vs an equal split."""
    from rich import box
    from rich.table import Table

    from recsys_cli.output import fit_table, names_say_models

    s = result["settings"]
    console.print(f"[bold]bandit[/bold] {s['policy']} on {s['dataset']} (split {s['split']}): {s['rounds']} rounds x "
                  f"{s['batch']} users, top-{s['k']}, seed {s['seed']}")
    console.print(f"click model: {_model_text(result['click_model'])}")
    arms = Table(title="Arms", title_justify="left", box=box.SIMPLE_HEAD)
    model = not names_say_models(result["arms"])
    for col in ("arm", "run", *(["model"] if model else []), "true CTR", "users", "share", "clicks", "observed CTR"):
        arms.add_column(col, justify="left" if col in ("arm", "run", "model") else "right")
    for arm in result["arms"]:
        arms.add_row(arm["arm"] + (" (best)" if arm["best"] else ""), arm["run"], *([str(arm["model"])] if model else []),
                     _pct(arm["true_ctr"]), f"{arm['users_served']:,}", _pct(arm["share"], 1), f"{arm['clicks']:,}",
                     _pct(arm["observed_ctr"]))
    console.print(fit_table(arms, console.width))
    labels = [arm["arm"] for arm in result["arms"]]
    alloc = Table(title="Share of traffic over time", title_justify="left", box=box.SIMPLE_HEAD)
    alloc.add_column("period")
    for lab in labels:
        alloc.add_column(lab, justify="right")
    for row in result["allocation"]:
        alloc.add_row(row["period"], *[_pct(row[lab], 1) for lab in labels])
    console.print(fit_table(alloc, console.width))
    summary = Table(title="Policy vs fixed equal split", title_justify="left", box=box.SIMPLE_HEAD)
    for col in ("allocation", "users", "clicks", "CTR", "best-arm share", "regret", "regret (realised)"):
        summary.add_column(col, justify="left" if col == "allocation" else "right")
    for name, r in ((s["policy"], result["policy"]), ("equal split", result["equal_split"])):
        summary.add_row(name, f"{r['users']:,}", f"{r['clicks']:,}", _pct(r["ctr"]), _pct(r["best_arm_share"], 1),
                        f"{r['regret']:.1f}", f"{r['regret_realized']:.0f}")
    console.print(fit_table(summary, console.width))
    gain = result["clicks_gained_vs_equal_split"]
    console.print(f"[bold]{s['policy']} got {gain:+,} clicks vs the equal split; best arm {result['best_arm']}[/bold]")
    console.print(f"[dim]{result['regret_note']}[/dim]")
