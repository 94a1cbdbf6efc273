"""``report.html``: one self-contained page about one results folder.

The page holds everything inline: pictures are PNG data URIs, styles and
the one small script are in the page, and a Content-Security-Policy forbids
any other source, so it opens from a file:// URL with no network. For the
whole run: the variants' latency CDFs together and where their latency
goes. Then per variant: the budget verdicts and the plain-rule diagnosis
(``sim.check``'s own functions, on the folder's summary.json), the key
metrics with 95% intervals, the latency CDF with the budget lines, the
per-stage breakdown (transfer, wait, service at p50 and p99), utilisation
and queues over time (the recorded time series, or, for measured runs,
rebuilt from the per-request table and said so), batch-size histograms,
and the scenario as run (``resolved/<variant>.yaml``).

The script only records, on ``<body>``, how many pictures decoded and any
script error, so that a headless browser can tell the page rendered.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Optional

from sim.check.budgets import budgets_of
from sim.check.gate import check_measured
from sim.check.verdict import Verdict
from sim.metrics.summary import Estimate
from sim.model.timeseries import read_timeseries
from sim.report import run_plots
from sim.report.columns import read_requests, resolved_scenario, stage_graph, stage_names
from sim.results import SummaryFile, read_summary

STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0 auto;max-width:1100px;padding:1em 2em;
color:#222;line-height:1.4}
h1{font-size:1.5em;margin-bottom:.2em}h2{border-bottom:2px solid #4c78a8;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin:1.4em 0 .4em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}th,td{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th:first-child,td:first-child{text-align:left}thead th{background:#f3f5f8}
.PASS{color:#1a7f37;font-weight:600}.FAIL,.REGRESSED{color:#cf222e;font-weight:600}.INCONCLUSIVE{color:#9a6700;font-weight:600}
tr.up td{background:#fff1f0}tr.down td{background:#f0fff4}tr.same td{color:#666}
figure{margin:.6em 0}figure img{max-width:100%;height:auto;border:1px solid #eee}figcaption{font-size:.8em;color:#555}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.78em;max-height:32em}
.note{background:#fff8c5;border-left:4px solid #d4a72c;padding:.4em .8em;font-size:.9em}
.finding{font-family:ui-monospace,monospace;font-size:.85em}nav a{margin-right:1em}
"""

# Nothing may load from anywhere but the page itself (data: pictures, inline style and script).
POLICY = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

PROBE = """
window.addEventListener('error', function (e) {
  var b = document.body; b.dataset.errors = (b.dataset.errors ? b.dataset.errors + ' | ' : '') + e.message;
});
window.addEventListener('load', function () {
  var images = Array.prototype.slice.call(document.images);
  document.body.dataset.images = images.length;
  document.body.dataset.imagesDecoded = images.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.dataset.rendered = 'yes';
});
"""


def page(title: str, body: str) -> str:
    return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{POLICY}\">"
            f"<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>{escape(title)}</title><style>{STYLE}</style><script>{PROBE}</script></head>\n"
            f"<body><h1>{escape(title)}</h1>\n{body}\n</body></html>\n")


def section(ident: str, title: str, inner: str) -> str:
    return f"<section id='{escape(ident)}'><h2>{escape(title)}</h2>\n{inner}\n</section>"


def figure(uri: str, kind: str, caption: str) -> str:
    return (f"<figure class='plot' data-plot='{escape(kind)}'><img src='{uri}' alt='{escape(caption)}'>"
            f"<figcaption>{escape(caption)}</figcaption></figure>")


def show(metric: str, value: float, signed: bool = False) -> str:
    """A metric's value in its unit, as ``dgsim check`` shows it (plain digits for a name it does not know)."""
    from sim.check.budgets import show as show_metric

    if value is None or math.isnan(value):
        return "-"
    from sim.contract.metric_keys import MetricKey

    try:
        key = MetricKey.parse(metric)
    except (ValueError, KeyError):
        key = None
    return show_metric(key, value, signed) if key is not None else f"{value:{'+' if signed else ''}.4g}"


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value * 1e3:.3f} ms"


def _estimate(metric: str, e: Optional[Estimate]) -> str:
    if e is None or math.isnan(e.mean):
        return "-"
    text = show(metric, e.mean)
    return text + (f" ± {show(metric, e.half_width)}" if not math.isnan(e.half_width) else "")


KEY_METRICS = ("throughput", "goodput", "latency.mean", "latency.p50", "latency.p90", "latency.p99", "latency.p999",
               "rate.filter", "rate.drop", "rate.miss", "rate.unfinished", "rate.fail")


class _Variant:
    """What the page shows of one variant, read from the folder."""

    def __init__(self, folder: Path, summary: SummaryFile, name: str):
        self.name = name
        self.estimates = summary.variants[name]
        self.scenario, self.missing = resolved_scenario(folder, name)
        run = self.scenario.run if self.scenario is not None else None
        self.window = (run.warmup, run.duration) if run is not None else None
        table = folder / "requests" / f"{name}.parquet"
        self.frame = read_requests(folder, name) if table.exists() else None
        if self.frame is not None:
            self.graph = stage_graph(self.scenario, stage_names(self.frame))
            self.served = run_plots.served_in_window(self.frame, self.window)
            self.times = run_plots.stage_components(self.served, self.graph)
            self.shares = run_plots.latency_shares(self.served, self.times)
        else:
            self.shares = {c: math.nan for c in ("wait", "service", "transfer")}
        self.series = read_timeseries(folder, name)
        self.check = None
        if self.scenario is not None:
            self.check = check_measured(self.scenario, str(folder), summary.source, summary.seed, name,
                                        self.estimates, budgets_of(self.scenario.slo))
        resolved = folder / "resolved" / f"{name}.yaml"
        self.resolved_text = resolved.read_text() if resolved.exists() else None

    @property
    def latency_budgets(self) -> dict[str, float]:
        if self.scenario is None:
            return {}
        latency = self.scenario.slo.latency
        return {k: getattr(latency, k) for k in type(latency).model_fields if getattr(latency, k) is not None}


def _verdicts(v: _Variant) -> str:
    if v.scenario is None:
        return f"<p class='note'>No budgets judged: {escape(v.missing or '')}</p>"
    if not v.check.outcomes:
        return "<p>The scenario sets no budgets (<code>slo</code>); nothing to judge.</p>"
    rows = "".join(
        f"<tr><td>{escape(o.budget.label)}</td><td>{escape(o.budget.text)}</td>"
        f"<td>{escape(_estimate(str(o.budget.metric), o.estimate))}</td>"
        f"<td class='{o.word}'>{o.word}</td></tr>" for o in v.check.outcomes)
    text = (f"<table class='verdicts'><thead><tr><th>budget</th><th>bound</th><th>measured (95% CI)</th>"
            f"<th>verdict</th></tr></thead><tbody>{rows}</tbody></table>"
            f"<p>{v.check.replications} replication(s); a verdict needs the whole 95% interval on one side of the "
            f"bound, otherwise it is INCONCLUSIVE (as <code>dgsim check --results</code> judges it).</p>")
    if v.check.findings:
        text += "<h3>Why (plain rules)</h3><ul>" + "".join(
            f"<li class='finding'>{escape(f)}</li>" for f in v.check.findings) + "</ul>"
    elif any(o.verdict is Verdict.FAIL for o in v.check.outcomes):
        text += "<p>No rule of thumb explains the failure; see the breakdown below.</p>"
    return text


def _metrics(v: _Variant) -> str:
    names = [m for m in KEY_METRICS if m in v.estimates]
    names += sorted(m for m in v.estimates if m.startswith(("utilisation.", "queue.", "batch.")) or m.endswith(".batch"))
    rows = "".join(f"<tr><td>{escape(m)}</td><td>{escape(_estimate(m, v.estimates[m]))}</td></tr>" for m in names)
    return f"<table class='metrics'><thead><tr><th>metric</th><th>mean ± 95% CI half-width</th></tr></thead>" \
           f"<tbody>{rows}</tbody></table>"


def _breakdown(v: _Variant) -> str:
    p50, p99 = run_plots.percentiles(v.times, 50), run_plots.percentiles(v.times, 99)
    counts = {t.name: len(t.service) for t in v.times}
    picture = figure(run_plots.breakdown_figure(p50, p99, f"{v.name}: per-stage time, p50 (plain) and p99 (hatched)"),
                     "breakdown", "Per stage: input transfer, queue wait and service; each component's own "
                                  "percentile, stacked (a stack is not the percentile of the sum).")
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{counts[name]}</td>"
        + "".join(f"<td>{_ms(p[name][c])}</td>" for c in run_plots.COMPONENTS for p in (p50, p99))
        + "</tr>" for name in p50)
    head = "".join(f"<th>{c} p50</th><th>{c} p99</th>" for c in run_plots.COMPONENTS)
    return picture + (f"<table class='breakdown'><thead><tr><th>stage</th><th>requests</th>{head}</tr></thead>"
                      f"<tbody>{rows}</tbody></table>")


def _occupancy(v: _Variant, measured: bool) -> str:
    if v.series is not None and len(v.series):
        first = v.series[v.series["replication"] == v.series["replication"].min()]
        return figure(run_plots.occupancy_figure(first, v.window, f"{v.name}: replication "
                                                 f"{int(first['replication'].iloc[0]) + 1}, sampled during the run"),
                      "occupancy", "Sampled during the run: utilisation (busy servers / servers) and jobs queued "
                                   "per pool; busy channels "
                                   "and messages in flight per link; instantaneous samples, smoothed over 5; "
                                   "the shaded span is the measurement window.")
    why = ("Measured run: the harness records no time series." if measured
           else "This results folder has no time series (timeseries/<variant>.parquet).")
    step = max((v.window[1] - v.window[0]) / 500, 1e-3) if v.window else 0.01
    rebuilt = run_plots.occupancy_from_table(v.frame, int(v.frame["replication"].min()), step)
    if not len(rebuilt):
        return f"<p class='note'>{escape(why)} Nothing to show over time.</p>"
    return (f"<p class='note'>{escape(why)} Shown instead: batches in service and jobs queued per pool, "
            f"rebuilt from the per-request table (links are not shown: the table does not time them).</p>"
            + figure(run_plots.occupancy_figure(rebuilt, v.window, f"{v.name}: replication 1, from the request table"),
                     "occupancy", "Batches in service and jobs waiting per pool, rebuilt from per-request timestamps."))


def _batches(v: _Variant) -> str:
    sizes = {k: s for k, s in run_plots.batch_sizes(v.frame).items() if len(s) and s.max() > 1}
    if not sizes:
        return "<p>No stage launched a batch of more than one request.</p>"
    return figure(run_plots.batch_figure(sizes, f"{v.name}: batch sizes (all replications)"), "batches",
                  "Batches launched per size, per stage that batched.")


def _variant_section(v: _Variant, measured: bool) -> str:
    scenario = ["<h3>The scenario as run</h3>",
                (f"<details><summary>resolved/{escape(v.name)}.yaml</summary><pre>{escape(v.resolved_text)}</pre>"
                 f"</details>" if v.resolved_text else f"<p class='note'>{escape(v.missing or 'no resolved scenario')}</p>")]
    if v.frame is None:
        parts = ["<h3>Budgets</h3>", _verdicts(v), "<h3>Key metrics</h3>", _metrics(v),
                 f"<p class='note'>No per-request table (requests/{escape(v.name)}.parquet; the run was written with "
                 f"<code>--records none</code>?): no latency distribution, breakdown or batches to show.</p>",
                 *scenario]
        return section(f"variant-{v.name}", f"Variant {v.name}", "\n".join(parts))
    parts = ["<h3>Budgets</h3>", _verdicts(v), "<h3>Key metrics</h3>", _metrics(v), "<h3>Latency</h3>",
             figure(run_plots.cdf_figure({v.name: run_plots.latencies(v.frame, v.window)}, v.latency_budgets,
                                         f"{v.name}: latency CDF, served requests in the window"),
                    "cdf", "Latency CDF of served requests that arrived in the measurement window, all "
                           "replications; red: the scenario's latency budgets."),
             "<h3>Where each stage's time goes</h3>", _breakdown(v),
             "<h3>Where latency goes</h3>", _shares_table({v.name: v.shares}),
             "<h3>Utilisation and queues over time</h3>", _occupancy(v, measured),
             "<h3>Batch sizes</h3>", _batches(v), *scenario]
    return section(f"variant-{v.name}", f"Variant {v.name}", "\n".join(parts))


def _shares_table(shares: dict[str, dict[str, float]]) -> str:
    rows = "".join(f"<tr><td>{escape(n)}</td>" + "".join(
        f"<td>{'-' if math.isnan(s[c]) else f'{s[c]:.1%}'}</td>" for c in ("wait", "service", "transfer")) + "</tr>"
        for n, s in shares.items())
    return ("<table class='shares'><thead><tr><th>variant</th><th>in queues</th><th>in service</th>"
            f"<th>in transfers and joins</th></tr></thead><tbody>{rows}</tbody></table>")


def report_html(folder: Path) -> str:
    """The page for a results folder (raises ResultsError for a folder that cannot be read)."""
    summary = read_summary(folder)
    measured = summary.source != "simulation"
    variants = [_Variant(folder, summary, name) for name in summary.variants]
    nav = "<nav>" + "".join(f"<a href='#variant-{escape(v.name)}'>{escape(v.name)}</a>" for v in variants) + "</nav>"
    verdicts = []
    for v in variants:
        words = [o.word for o in v.check.outcomes] if v.check else []
        overall = ("FAIL" if "FAIL" in words or "REGRESSED" in words else "INCONCLUSIVE" if "INCONCLUSIVE" in words
                   else "PASS" if words else "-")
        verdicts.append(f"<tr><td>{escape(v.name)}</td><td class='{overall}'>{overall}</td>"
                        f"<td>{escape(_estimate('latency.p99', v.estimates.get('latency.p99')))}</td>"
                        f"<td>{escape(_estimate('throughput', v.estimates.get('throughput')))}</td></tr>")
    intro = (f"<p>Scenario <b>{escape(summary.scenario)}</b>, {escape(summary.source)}, seed {summary.seed}, "
             f"folder <code>{escape(str(folder))}</code>.</p>{nav}"
             + ("<p class='note'>Measured results (<code>dgsim hil run</code>): times are real timestamps; "
                "no time series were recorded.</p>" if measured else "")
             + "<table class='overview'><thead><tr><th>variant</th><th>budgets</th><th>latency p99</th>"
               f"<th>throughput</th></tr></thead><tbody>{''.join(verdicts)}</tbody></table>")
    budgets = next((v.latency_budgets for v in variants if v.latency_budgets), {})
    tabled = [v for v in variants if v.frame is not None]
    kept = _records_kept(folder)
    if kept != "all":
        intro += (f"<p class='note'>The per-request tables hold {escape(kept)} of the rows (<code>dgsim run --records"
                  f"</code>): distributions below are from those rows; the metrics and verdicts from every request."
                  f"</p>")
    pictures = [
        figure(run_plots.cdf_figure({v.name: run_plots.latencies(v.frame, v.window) for v in tabled}, budgets,
                                    "latency CDF, served requests in the window"),
               "cdf-all", "Latency CDFs of every variant; red: the latency budgets of the first variant with any."),
        figure(run_plots.shares_figure({v.name: v.shares for v in tabled}), "shares",
               "Share of served requests' total latency spent waiting in queues, in service, and in transfers "
               "(including waits for parallel branches and the reply)."),
        _shares_table({v.name: v.shares for v in tabled})] if tabled else [
        "<p class='note'>No per-request tables in this folder: no distributions to draw.</p>"]
    overview = section("overview", "All variants", "\n".join(pictures))
    body = intro + overview + "\n".join(_variant_section(v, measured) for v in variants)
    return page(f"dgsim report: {summary.scenario}", body)


def _records_kept(folder: Path) -> str:
    """Which per-request rows the folder's tables hold: ``all``, ``sample:N`` or ``none`` (summary.json)."""
    import json

    try:
        return str(json.loads((folder / "summary.json").read_text()).get("records_kept", "all"))
    except (OSError, ValueError, AttributeError):
        return "all"


def write_report(folder: Path, out: Optional[Path] = None) -> Path:
    path = out or folder / "report.html"
    text = report_html(folder)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
