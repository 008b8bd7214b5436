"""Altair charts of the status page and their text alternatives: frames in, chart objects and sentences out."""

from __future__ import annotations

from typing import cast

import altair as alt
import pandas as pd

from .model import BANDS

# Colour is never the only signal: every band has a name in the legend, the tooltip and the table.
_BAND_COLOURS = ["#1a9850", "#91cf60", "#fc8d59", "#d73027", "#bdbdbd"]


def uptime_bars(daily: pd.DataFrame) -> alt.Chart:
    """Return one bar per provider per day, coloured by uptime band (grey: no data), with a tooltip."""
    data = daily.assign(uptime_text=daily["uptime"].map(lambda v: "no data" if pd.isna(v) else f"{v:.2f} %"))
    return alt.Chart(data).mark_rect(cornerRadius=2, stroke="white", strokeWidth=1).encode(
        x=alt.X("day:O", title="Day", axis=alt.Axis(labelAngle=-45, labelOverlap=True)),
        y=alt.Y("provider:N", title=None, sort=list(dict.fromkeys(daily["provider"]))),
        color=alt.Color("band:N", title="Uptime", scale=alt.Scale(domain=BANDS, range=_BAND_COLOURS),
                        legend=alt.Legend(orient="bottom")),
        tooltip=[alt.Tooltip("provider:N", title="Provider"), alt.Tooltip("day:O", title="Day"),
                 alt.Tooltip("uptime_text:N", title="Uptime"), alt.Tooltip("minutes_down:Q", title="Minutes down"),
                 alt.Tooltip("samples:Q", title="Samples")],
    ).properties(height=alt.Step(28))


def uptime_alt(daily: pd.DataFrame) -> str:
    """Return a sentence describing the daily uptime bars."""
    days = daily["day"].nunique()
    parts = []
    for provider, own in daily.groupby("provider", sort=False):
        measured = own[own["samples"] > 0]
        # pandas-stubs types idxmin() as any Hashable, which .loc[] does not take
        worst = measured.loc[measured["uptime"].idxmin()] if not measured.empty else None  # type: ignore[call-overload]
        part = f"{provider}: {len(measured)} of {days} days with data"
        if worst is not None:
            part += f", lowest {worst['uptime']:.2f} % on {worst['day']}"
        parts.append(part)
    return f"Daily uptime over {days} days. " + "; ".join(parts) + "."


def latency_chart(series: pd.DataFrame) -> alt.Chart:
    """Return latency over time per provider; hourly p50 solid and p95 dashed when aggregated."""
    span = series["time"].max() - series["time"].min() if not series.empty else pd.Timedelta(0)
    fmt = "%H:%M" if span <= pd.Timedelta(hours=24) else "%b %d"
    base = alt.Chart(series).encode(
        x=alt.X("time:T", title="Time", axis=alt.Axis(format=fmt, labelOverlap=True)),
        y=alt.Y("latency_ms:Q", title="Latency (ms)"),
        color=alt.Color("provider:N", title="Provider"),
        tooltip=[alt.Tooltip("provider:N", title="Provider"),
                 alt.Tooltip("time:T", title="Time", format="%Y-%m-%d %H:%M"),
                 alt.Tooltip("stat:N", title="Statistic"), alt.Tooltip("latency_ms:Q", title="ms", format=".1f")],
    )
    if (series["stat"] == "sample").all():
        return base.mark_line(point=False, interpolate="step-after").properties(height=260)
    return base.mark_line().encode(strokeDash=alt.StrokeDash("stat:N", title="Statistic")).properties(height=260)


def latency_alt(series: pd.DataFrame, window: str) -> str:
    """Return a sentence describing the latency chart."""
    if series.empty:
        return f"Latency over {window}: no samples."
    parts = [f"{provider} median {own['latency_ms'].median():.1f} ms, highest {own['latency_ms'].max():.1f} ms"
             for provider, own in series.groupby("provider", sort=False)]
    kind = "each sample" if (series["stat"] == "sample").all() else "hourly p50 and p95"
    return f"Health-check latency over {window} ({kind}): " + "; ".join(parts) + "."


def size_chart(sizes: pd.DataFrame) -> alt.LayerChart:
    """Return each provider's database size over time (hourly peak, MB) with its quota as a dashed line."""
    data = sizes.assign(size_mb=sizes["database_bytes"] / 1048576, quota_mb=sizes["quota_bytes"] / 1048576)
    x = alt.X("at:T", title="Time", axis=alt.Axis(format="%b %d", labelOverlap=True))
    colour = alt.Color("provider:N", title="Provider")
    size = alt.Chart(data).mark_line(point=len(data) < 50).encode(
        x=x, y=alt.Y("size_mb:Q", title="Size (MB)"), color=colour,
        tooltip=[alt.Tooltip("provider:N", title="Provider"),
                 alt.Tooltip("at:T", title="Hour", format="%Y-%m-%d %H:%M"),
                 alt.Tooltip("size_mb:Q", title="MB", format=".1f"), alt.Tooltip("quota_mb:Q", title="Quota MB")])
    quota = alt.Chart(data.dropna(subset=["quota_mb"])).mark_line(strokeDash=[6, 4]).encode(
        x=x, y="quota_mb:Q", color=colour)
    return cast(alt.LayerChart, alt.layer(size, quota).properties(height=260))


def size_alt(sizes: pd.DataFrame) -> str:
    """Return a sentence describing the size chart."""
    parts = []
    for provider, own in sizes.groupby("provider", sort=False):
        last = own.iloc[-1]
        part = f"{provider} {last['database_bytes'] / 1048576:.1f} MB"
        if pd.notna(last["quota_bytes"]) and last["quota_bytes"]:
            part += f" of a {last['quota_bytes'] / 1048576:.0f} MB quota " \
                    f"({100 * last['database_bytes'] / last['quota_bytes']:.0f} %)"
        parts.append(part)
    return "Database size per provider over time against its quota (dashed): " + "; ".join(parts) + "."
