"""Read what an AppTest run of the page shows: metrics, tables, chart data and every text at once."""

from __future__ import annotations

import re
import string
from typing import Any

import pandas as pd
import pyarrow as pa
from streamlit.testing.v1 import AppTest

from status_app.text import WORD_JOINER

_ESCAPED = re.compile(r"\\([" + re.escape(string.punctuation) + "])")


def shown(markdown: str) -> str:
    """The characters a Markdown source escaped by `status_app.text.plain` renders as (escapes removed)."""
    return _ESCAPED.sub(r"\1", markdown).replace(WORD_JOINER, "")


def metrics(at: AppTest) -> dict[str, str]:
    """Every metric, label: value."""
    return {shown(m.label): m.value for m in at.metric}


def charts(at: AppTest) -> list[Any]:
    """The Vega-Lite (Altair) chart elements, in page order."""
    return list(at.get("vega_lite_chart"))


def chart_data(chart: Any) -> list[pd.DataFrame]:
    """The Arrow datasets of a chart element, as DataFrames."""
    return [pa.ipc.open_stream(d.data.data).read_all().to_pandas() for d in chart.proto.datasets]


def table(at: AppTest, column: str) -> pd.DataFrame:
    """The first table with `column`."""
    return next(df.value for df in at.dataframe if column in df.value.columns)


def everything(at: AppTest) -> str:
    """Every text the page shows (elements, table cells, chart alt text, spec and data), as one string."""
    kinds = ("title", "header", "subheader", "markdown", "caption", "success", "warning", "error", "info")
    parts = [shown(str(e.value)) for kind in kinds for e in getattr(at, kind)]
    parts += [shown(f"{m.label} {m.value} {m.proto.help}") for m in at.metric]
    parts += [df.value.to_csv() for df in at.dataframe]
    for chart in charts(at):
        parts += [chart.proto.alt, chart.proto.spec] + [d.to_csv() for d in chart_data(chart)]
    return "\n".join(parts)
