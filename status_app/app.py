"""The Agent Factory status page: `agent-factory status-page` (or `streamlit run status_app/app.py`).

Rendering only: the data comes from `status_app.data` (the state store,
read-only) and what to say about it from `status_app.model`. The page has no
login and shows no secret; it listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pandas as pd
import streamlit as st

from agent_factory.errors import ConfigError, StateStoreMissingError
from status_app.data import PageSettings, Snapshot, load_snapshot, page_settings, utcnow
from status_app.model import (
    StreamLag,
    WINDOWS,
    Banner,
    ago,
    backup_table,
    banner,
    daily_uptime,
    describe_rpo,
    duration,
    hours,
    latency_series,
    provider_states,
    rpos,
    stream_lags,
)
from status_app.text import plain
from status_app.timeline import timeline

if TYPE_CHECKING:
    from streamlit.elements.lib.mutable_expander_container import ExpanderContainer

# Icons from Streamlit's own Material Symbols font: emoji need a font the viewer may not have.
_BANNERS = {
    "operational": (st.success, ":material/check_circle:"),
    "degraded": (st.warning, ":material/warning:"),
    "outage": (st.error, ":material/error:"),
    "unknown": (st.warning, ":material/help:"),
    "empty": (st.info, ":material/info:"),
    "missing": (st.info, ":material/info:"),
}
_OK, _BAD = ":material/check_circle:", ":material/warning:"


@st.cache_data(ttl=30, show_spinner=False)
def load(state_dir: str, retention_s: float) -> Snapshot:
    """Read the state store (cached 30 s per state dir)."""
    return load_snapshot(state_dir, utcnow(), timedelta(seconds=retention_s))


def display_tz() -> tzinfo:
    """Return the viewer's time zone when the browser told it, else UTC."""
    name = st.context.timezone
    try:
        return ZoneInfo(name) if name else timezone.utc
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def when(value: datetime | pd.Timestamp | None, tz: tzinfo) -> str:
    """Return a time as "2026-11-24 20:05 UTC" in the display time zone."""
    if value is None or pd.isna(value):
        return "—"
    local = pd.Timestamp(value).tz_convert(tz)
    return f"{local:%Y-%m-%d %H:%M} {local.tzname() or ''}".strip()


def times(frame: pd.DataFrame, tz: tzinfo, *columns: str) -> pd.DataFrame:
    """Return `frame` with datetime columns as display text."""
    frame = frame.copy()
    for column in columns:
        frame[column] = frame[column].map(lambda v: when(v, tz))
    return frame


def table_view(label: str, key: str) -> ExpanderContainer:
    """Return a collapsed table view whose `.open` says whether to fill it (the page reruns when it opens).

    A closed view costs nothing: its table is neither built nor sent, so the browser does not draw four
    data grids nobody opened (0.37 s of renderer CPU on the first visit, docs/BENCHMARKS.md).
    """
    return st.expander(label, key=key, on_change="rerun")


def show_banner(verdict: Banner, now: datetime, tz: tzinfo) -> None:
    render, icon = _BANNERS[verdict.level]
    render(plain(verdict.text), icon=icon)
    if verdict.updated_at is not None:
        st.caption(f"Last updated {when(verdict.updated_at, tz)} ({ago(verdict.updated_at, now)})")
    else:
        st.caption("Last updated: never")


def show_providers(snap: Snapshot, settings: PageSettings, now: datetime, verdict: Banner, tz: tzinfo) -> None:
    st.header("Providers")
    if verdict.updated_at is not None:
        st.caption(f"As the monitor saw them at {when(verdict.updated_at, tz)}.")
    states = provider_states(snap, settings, now)
    for column, p in zip(st.columns(max(len(states), 1)), states, strict=False):
        with column.container(border=True):
            st.subheader(plain(p.name), anchor=False)
            if p.primary:
                st.badge("primary", icon=":material/star:", color="blue")
            if p.serving:
                st.badge("serving", icon=":material/check_circle:", color="green")
            state = "no data" if p.up is None else "Up" if p.up else "Down"
            icon = ":material/help:" if p.up is None else ":material/check_circle:" if p.up else ":material/cancel:"
            st.metric(f"{plain(p.name)} status", state, icon=icon)
            if p.error:
                st.caption(f"Error: {plain(p.error)}")
            st.metric(f"{plain(p.name)} latency now", f"{p.latency_ms:.1f} ms" if p.latency_ms is not None else "—")
            for label, u in p.uptime.items():
                st.metric(f"{plain(p.name)} uptime {label}", str(u),
                          help=f"{u.samples} samples; coverage {u.coverage * 100:.0f} % of {label}")
            st.caption("Coverage: " + " · ".join(f"{label} {u.coverage * 100:.0f} %" for label, u in p.uptime.items()))
    rows = [{"provider": p.name, "state": "no data" if p.up is None else "up" if p.up else "down",
             "primary": p.primary, "serving": p.serving, "latency_ms": p.latency_ms, "error": p.error,
             **{f"uptime {k}": str(u) for k, u in p.uptime.items()},
             **{f"coverage {k}": f"{u.coverage * 100:.0f} %" for k, u in p.uptime.items()}} for p in states]
    if (view := table_view("Providers as a table", "providers_table")).open:
        view.dataframe(pd.DataFrame(rows), hide_index=True)


def show_uptime(snap: Snapshot, settings: PageSettings, now: datetime, tz: tzinfo) -> None:
    days = max(1, round(settings.retention / timedelta(days=1)))
    st.header(f"Uptime per day ({days} days)")
    daily = daily_uptime(snap.samples, now, days, tz)
    from status_app import charts  # altair takes ~0.3 s to import: after the banner, so a cold start shows it sooner

    st.altair_chart(charts.uptime_bars(daily), alt=charts.uptime_alt(daily), width="stretch")
    if (view := table_view("Daily uptime as a table", "uptime_table")).open:
        view.dataframe(daily.assign(uptime=daily["uptime"].round(2)), hide_index=True)


def show_latency(snap: Snapshot, now: datetime, tz: tzinfo) -> None:
    st.header("Latency")
    window = st.segmented_control("Window", list(WINDOWS), default="24 h", key="latency_window") or "24 h"
    series = latency_series(snap.samples, now, WINDOWS[window])
    from status_app import charts
    if series.empty:
        st.caption(f"No latency samples in the last {window}.")
        return
    st.altair_chart(charts.latency_chart(series), alt=charts.latency_alt(series, window), width="stretch")
    if (view := table_view("Latency as a table", "latency_table")).open:
        view.dataframe(times(series.assign(latency_ms=series["latency_ms"].round(2)), tz, "time"), hide_index=True)


def show_backups(snap: Snapshot, settings: PageSettings, now: datetime, tz: tzinfo) -> None:
    st.header("Backups and RPO")
    found = rpos(snap, settings, now)
    for column, r in zip(st.columns(max(len(found), 1)), found, strict=False):
        with column:
            st.metric(f"RPO {plain(r.provider)}", hours(r.age) if r.age is not None else "no verified backup",
                      help="Age of the newest verified backup, from when it was taken")
            mark = "" if r.target is None else f"{_BAD} overdue: " if r.overdue else f"{_OK} "
            st.caption(mark + plain(describe_rpo(r) + (f" ({r.backup.path})" if r.backup else "")))
    table = backup_table(snap.backups)
    if table.empty:
        st.caption("No backup recorded yet: run `agent-factory backup`.")
    else:
        st.dataframe(times(table, tz, "started", "pruned_at"), hide_index=True)


def show_sync(snap: Snapshot, settings: PageSettings, now: datetime, tz: tzinfo) -> None:
    st.header("Stream lag")
    lags = stream_lags(snap, settings, now)
    if not snap.syncs and not snap.streams:
        st.caption("No stream or sync recorded yet.")
    for column, lag in zip(st.columns(max(len(lags), 1)), lags, strict=False):
        with column:
            if isinstance(lag, StreamLag):
                show_stream(lag, tz)
                continue
            st.metric(f"Sync lag {plain(lag.target)}", duration(lag.behind) if lag.behind is not None
                      else "no sync recorded yet", help=f"Target: at most {duration(lag.max_lag)} behind")
            if lag.last_at is None:
                continue
            status = "ok" if lag.ok else f"failed: {lag.error or 'no reason recorded'}"
            st.caption(f"{_BAD + ' over' if lag.over else _OK + ' within'} the {duration(lag.max_lag)} target; "
                       + plain(f"last sync from {lag.source} {when(lag.last_at, tz)}, {status}"))
    show_divergence(snap, now, tz)


def show_stream(lag: StreamLag, tz: tzinfo) -> None:
    """Show one backup kept warm by its stream: the lag the monitor measured, and the stream's state."""
    behind = lag.behind.total_seconds() if lag.behind is not None else None
    st.metric(f"Stream lag {plain(lag.target)}", "unknown" if behind is None
              else f"{behind:.1f} s" if behind < 60 else duration(lag.behind),  # type: ignore[arg-type]
              help=f"Target: at most {duration(lag.max_lag)} behind (STREAM_LAG_ALERT_SECONDS)")
    st.caption(f"{_BAD + ' over' if lag.over else _OK + ' within'} the {duration(lag.max_lag)} target; "
               + plain(f"stream from {lag.source} {lag.status.replace('_', ' ')}, measured {when(lag.at, tz)}: "
                       f"{lag.detail}"))


def show_divergence(snap: Snapshot, now: datetime, tz: tzinfo) -> None:
    """Show, per backup, the rows it held that the primary lacked at the monitor's last merge."""
    if not snap.divergence:
        return
    for column, d in zip(st.columns(len(snap.divergence)), snap.divergence, strict=True):
        with column:
            st.metric(f"Not on the primary: {plain(d.backup)}", "unknown" if d.rows is None else f"{d.rows} rows",
                      help="Rows this backup held that the primary lacked at the monitor's last run (writes of "
                           "processes that served from it); the monitor merges them into the primary.")
            st.caption(f"{_OK if d.rows == 0 else _BAD} " + plain(f"{d.summary(now)} ({when(d.at, tz)})"))


def show_restores(snap: Snapshot, tz: tzinfo) -> None:
    st.header("Restores")
    r = snap.restore
    if r is None:
        st.caption("No restore recorded.")
        return
    st.metric("Last restore RTO", f"{r.duration_s:.1f} s" if r.duration_s is not None else "—")
    st.caption(plain(f"{when(r.started_at, tz)}: {r.provider} from {r.backup_path}, {r.status}"
                     + (f": {r.error}" if r.error else "")))


def show_timeline(snap: Snapshot, settings: PageSettings, now: datetime, tz: tzinfo) -> None:
    st.header(f"Timeline ({max(1, round(settings.retention / timedelta(days=1)))} days, newest first)")
    events = timeline(snap, now)
    if events.empty:
        st.caption("Nothing happened: no outage, failover, alert or failure recorded.")
    else:
        st.dataframe(times(events, tz, "at"), hide_index=True)


def show_capacity(snap: Snapshot, tz: tzinfo) -> None:
    st.header("Storage against quota")
    if snap.sizes.empty:
        st.caption("No size recorded yet: the monitor records each provider's size every run.")
        return
    from status_app import charts

    st.altair_chart(charts.size_chart(snap.sizes), alt=charts.size_alt(snap.sizes), width="stretch")
    if (view := table_view("Sizes as a table", "sizes_table")).open:
        view.dataframe(times(snap.sizes, tz, "at"), hide_index=True)


@st.fragment(run_every="30s")
def body() -> None:
    """Render everything below the title; reruns every 30 s on its own."""
    now, tz = utcnow(), display_tz()
    try:
        settings = page_settings()
    except ConfigError as exc:
        st.error(f"Configuration error: {plain(exc)}", icon=":material/error:")
        return
    try:
        snap = load(str(settings.state_dir.absolute()), settings.retention.total_seconds())
    except StateStoreMissingError:
        show_banner(Banner("missing", f"No state store at {(settings.state_dir / 'state.db').absolute()}"), now, tz)
        st.caption("Run `agent-factory monitor --once`, or point AGENT_FACTORY_STATE_DIR (`--state-dir`) at it.")
        return
    verdict = banner(snap, settings, now)
    show_banner(verdict, now, tz)
    if snap.empty:
        return
    show_providers(snap, settings, now, verdict, tz)
    show_uptime(snap, settings, now, tz)
    show_latency(snap, now, tz)
    show_backups(snap, settings, now, tz)
    show_sync(snap, settings, now, tz)
    show_capacity(snap, tz)
    show_restores(snap, tz)
    show_timeline(snap, settings, now, tz)


st.set_page_config(page_title="Agent Factory status", page_icon=":material/monitor_heart:", layout="wide")
st.title("Agent Factory status")
body()
