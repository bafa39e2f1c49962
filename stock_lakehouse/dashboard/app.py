"""The dashboard's page: Dash layout, Plotly figures, callbacks, and the server.

Why Dash (over Streamlit and Panel), weighed for this project:

- Start-up: a plain WSGI app. Importing Dash and Plotly takes about a second; ``stock-lakehouse
  dashboard`` answers 3-4 s after it starts on a 2-core machine, most of it the CLI's own imports
  (Dagster). Streamlit starts a Tornado server and re-runs the whole script on every interaction; Panel
  brings Bokeh's server.
- Testing in a real browser: the page is ordinary DOM with stable ids, and Plotly draws SVG (one
  ``g.trace`` per series, one ``path.point`` per point), so a Selenium test asserts on the charts'
  series and the tables' text. Streamlit's own charts (Vega-Lite) and Bokeh's draw on canvases, which a
  test can only look at as pixels.
- Dependencies: Flask, Werkzeug and Plotly, pure Python; large on disk (about 100 MB, mostly Plotly's
  bundled JavaScript and validators), which the wheels serve locally: no CDN, works offline. No
  telemetry to turn off (Streamlit collects usage statistics by default). Waitress (pure Python, no
  dependencies) serves it instead of Flask's development server.
- Charts are Plotly figures built in Python: no hand-written JavaScript.

The page reads nothing itself: ``data.LakeData`` reads, ``shaping`` computes, ``query`` checks a link's
values, this module lays out. Every error shown or logged goes through ``redact`` first, so no key reaches
the page or a log; every text shown is a text node (Dash never renders a string as HTML).
"""

from __future__ import annotations

import logging
import numbers
import re
from collections.abc import Callable
from datetime import date, datetime

import dash
import numpy as np
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, dcc, html
from plotly.subplots import make_subplots

from stock_lakehouse.dashboard import query, shaping
from stock_lakehouse.dashboard.data import LakeData
from stock_lakehouse.market_calendar import EXCHANGE_TZ
from stock_lakehouse.quality.rules import RulesError
from stock_lakehouse.runs.root_cause import redact
from stock_lakehouse.symbols import InvalidSymbolError, validate_symbol

logger = logging.getLogger("stock_lakehouse.dashboard")

_PAGE = {"fontFamily": "system-ui, sans-serif", "maxWidth": "1200px", "margin": "0 auto", "padding": "0 16px"}
_TABLE = {"borderCollapse": "collapse", "fontSize": "13px", "width": "100%"}
_CELL = {"borderBottom": "1px solid #ddd", "padding": "3px 8px", "textAlign": "left", "verticalAlign": "top"}
_WITHHELD = {"backgroundColor": "#fde2e1"}
_NOTE = {"color": "#555", "fontSize": "13px"}
_LINK_NOTE = {"color": "#8a4b00", "fontSize": "13px"}
_WRAPPED = {"detail", "reasons", "dq_reason"}


def _problem(exc: BaseException) -> str:
    """An error as one short line for the page and the log: keys replaced by ``***`` and the terminal
    colours delta-rs puts in its messages removed."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
    return redact(f"{type(exc).__name__}: {text}"[:400])


def _parse_day(value: str | None) -> date | None:
    """A date from the date picker (``YYYY-MM-DD``, sometimes with a time); a link's are ``query``'s."""
    if not value:
        return None
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def _fmt(value: object, column: str = "") -> str:
    """A cell as text: prices with 2 decimals, volumes with separators, shares in %, dates without time."""
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return "—"
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, pd.Timestamp | datetime | date):
        return pd.Timestamp(value).strftime("%Y-%m-%d" if column.endswith("date") else "%Y-%m-%d %H:%M")
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        if column == "share":
            return f"{100 * float(value):.2f} %"
        return f"{float(value):,.0f}" if "volume" in column else f"{float(value):,.2f}"
    return str(value)


def _cell_style(column: str) -> dict[str, str]:
    """Values stay on one line, except the free-text columns that would otherwise widen the page."""
    return _CELL if column in _WRAPPED else {**_CELL, "whiteSpace": "nowrap"}


def frame_table(df: pd.DataFrame, table_id: str, empty: str, highlight: str | None = None) -> html.Div:
    """``df`` as an HTML table; its cells formatted for reading (prices, volumes, shares, dates).

    Args:
        df: the rows, columns in display order.
        table_id: the element id (tests and links find the table by it).
        empty: the sentence shown instead of a table without rows.
        highlight: a boolean column; rows where it is true are tinted (withheld partitions).
    """
    if df.empty:
        return html.Div(html.P(empty, style=_NOTE), id=table_id)
    head = html.Thead(html.Tr([html.Th(c.replace("_", " "), style=_cell_style(c)) for c in df.columns]))
    body = []
    for row in df.itertuples(index=False):
        style = _WITHHELD if highlight and bool(getattr(row, highlight)) else None
        cells = [html.Td(_fmt(v, c), style=_cell_style(c)) for c, v in zip(df.columns, row, strict=True)]
        body.append(html.Tr(cells, style=style))
    return html.Div(html.Table([head, html.Tbody(body)], style=_TABLE), id=table_id)


def _empty_note(fig: go.Figure, daily: pd.DataFrame, column: str, label: str, axes: str = "") -> None:
    """Say why a series has no points (windows need enough trading days) instead of an empty axis.

    ``axes`` is the subplot's axis suffix ("" for the first, "2" for the second)."""
    if daily.empty or daily[column].notna().any():
        return
    fig.add_annotation(
        text=f"{label}: no values yet (too few trading days for its window)",
        showarrow=False,
        xref=f"x{axes} domain",
        yref=f"y{axes} domain",
        x=0.5,
        y=0.9,
        font={"color": "#888"},
    )


def price_figure(daily: pd.DataFrame, symbol: str) -> go.Figure:
    """Close with VWAP, SMA 5/20 and the Bollinger bands (``shaping.daily_view``'s columns)."""
    fig = go.Figure()
    x = _days(daily)
    fig.add_trace(go.Scatter(x=x, y=daily["bb_upper"], name="Bollinger upper", line={"color": "#9ab", "width": 1}))
    fig.add_trace(
        go.Scatter(
            x=x,
            y=daily["bb_lower"],
            name="Bollinger lower",
            line={"color": "#9ab", "width": 1},
            fill="tonexty",
            fillcolor="rgba(150,170,190,0.15)",
        )
    )
    fig.add_trace(go.Scatter(x=x, y=daily["sma_20"], name="SMA 20", line={"color": "#e69f00", "width": 1.5}))
    fig.add_trace(go.Scatter(x=x, y=daily["sma_5"], name="SMA 5", line={"color": "#009e73", "width": 1.5}))
    fig.add_trace(go.Scatter(x=x, y=daily["vwap"], name="VWAP", line={"color": "#cc79a7", "dash": "dot"}))
    fig.add_trace(go.Scatter(x=x, y=daily["close"], name="close", mode="lines+markers", line={"color": "#0072b2"}))
    _empty_note(fig, daily, "bb_upper", "Bollinger bands and SMA 20")
    fig.update_layout(title=f"{symbol}: close, VWAP, SMA and Bollinger bands", height=380, yaxis_title="price")
    return _style(fig, daily)


def volume_figure(daily: pd.DataFrame, symbol: str) -> go.Figure:
    """Daily volume as bars with its 7-day average."""
    fig, x = go.Figure(), _days(daily)
    fig.add_trace(go.Bar(x=x, y=daily["volume"], name="volume", marker_color="#8fb3d9"))
    fig.add_trace(go.Scatter(x=x, y=daily["volume_7d_avg"], name="7-day average", line={"color": "#d55e00"}))
    fig.update_layout(title=f"{symbol}: volume and its 7-day average", height=300, yaxis_title="shares")
    return _style(fig, daily)


def risk_figure(daily: pd.DataFrame, symbol: str) -> go.Figure:
    """Volatility score (BI) and RSI 14 (signals, with its 30/70 bounds) side by side."""
    fig, x = make_subplots(rows=1, cols=2, subplot_titles=("volatility score (annualized %)", "RSI 14")), _days(daily)
    fig.add_trace(
        go.Scatter(x=x, y=daily["volatility_score"], name="volatility score", line={"color": "#555"}), row=1, col=1
    )
    fig.add_trace(go.Scatter(x=x, y=daily["rsi_14"], name="RSI 14", line={"color": "#7b3294"}), 1, 2)
    for level in (30, 70):
        fig.add_hline(y=level, line={"color": "#bbb", "dash": "dash", "width": 1}, row=1, col=2)
    fig.update_yaxes(range=[0, 100], row=1, col=2)
    _empty_note(fig, daily, "volatility_score", "volatility score")
    _empty_note(fig, daily, "rsi_14", "RSI 14", axes="2")
    fig.update_layout(title=f"{symbol}: volatility and RSI", height=300, showlegend=False)
    return _style(fig, daily, labels=5)


def _days(daily: pd.DataFrame) -> pd.Series:
    """The charts' x values: each trade date as ``YYYY-MM-DD``, a category of the x axis (see ``_style``)."""
    return daily["trade_date"].dt.strftime("%Y-%m-%d")


def _style(fig: go.Figure, daily: pd.DataFrame, labels: int = 10) -> go.Figure:
    """The charts' common look; ``labels``: at most this many dates on an x axis (fewer on half-width ones)."""
    if daily.empty:
        # A symbol whose days were all withheld (or not materialized past silver) has no daily rows.
        fig.add_annotation(
            text="no gold rows in this range (see the quarantine table below)",
            showarrow=False,
            xref="paper",
            yref="paper",
            x=0.5,
            y=0.5,
            font={"color": "#888"},
        )
        fig.update_xaxes(visible=False)
        fig.update_yaxes(visible=False)
    # Trading days as categories: one slot per day, dates as labels (no 00:00/12:00 ticks), no gap for a
    # weekend or a holiday. A trading day without values (withheld, never delivered) keeps its slot, and
    # the lines break there (``shaping.on_trading_days``) rather than join its neighbours. At most
    # ``labels`` dates: months of days would otherwise stand on end over the legend.
    fig.update_xaxes(type="category", categoryorder="category ascending", nticks=labels)
    fig.update_layout(margin={"l": 50, "r": 20, "t": 50, "b": 40}, template="plotly_white", legend={"orientation": "h"})
    return fig


def _section(title: str, *children) -> html.Section:
    return html.Section([html.H2(title, style={"fontSize": "18px", "marginTop": "28px"}), *children])


def create_app(data: LakeData) -> dash.Dash:
    """The Dash app (its Flask server is ``app.server``).

    Args:
        data: the lake and settings to show. The layout is built on every page load, so a symbol
            materialized since shows on a reload of the page.
    """
    app = dash.Dash(__name__, title="stock-lakehouse dashboard", update_title=None, serve_locally=True)

    def layout() -> html.Div:
        try:
            symbols, problem = data.symbols(), None
        except Exception as exc:  # the page says why it is empty; the log gets one line, never a key
            symbols, problem = [], f"cannot read the lake: {_problem(exc)}"
            logger.error("dashboard: listing the symbols failed: %s", problem)
        rules = (
            f"anomalies: |price change| > {data.anomaly_price_change_pct:g} % or volume > "
            f"{data.anomaly_volume_multiple:g}x its 7-day average; withheld: more than "
            f"{100 * data.max_invalid_share:.2f} % of a partition's bars fail a row-quality rule"
        )
        return html.Div(
            [
                dcc.Location(id="url", refresh=False),
                dcc.Store(id="asked"),
                # Re-reads the lake and redraws the view (the refresh callback), so today's view follows the
                # session; the Freshness section says when it read and how far the newest bar is behind.
                dcc.Interval(
                    id="tick", interval=max(data.refresh_seconds, 1) * 1000, disabled=data.refresh_seconds <= 0
                ),
                html.H1("stock-lakehouse", style={"fontSize": "24px", "marginBottom": "0"}),
                html.P(
                    [html.Span("lake: "), html.Code(data.lake.uri, id="lake-uri"), html.Span(f"   ({rules})")],
                    style=_NOTE,
                ),
                html.Div(
                    [
                        html.Label("symbol ", htmlFor="symbol"),
                        dcc.Dropdown(
                            id="symbol",
                            options=symbols,
                            value=symbols[0] if symbols else None,
                            clearable=False,
                            style={"width": "160px"},
                        ),
                        dcc.DatePickerRange(
                            id="dates", display_format="YYYY-MM-DD", clearable=True, style={"width": "320px"}
                        ),
                        html.Button("reload", id="reload", n_clicks=0),
                    ],
                    style={"display": "flex", "gap": "12px", "alignItems": "center", "flexWrap": "wrap"},
                ),
                html.Div(id="link-notes", style=_LINK_NOTE),
                html.Div(
                    problem or ("" if symbols else f"no symbol has bars in silver under {data.lake.uri} yet"),
                    id="status",
                    style=_NOTE,
                ),
                dcc.Loading(
                    [
                        dcc.Graph(id="price-chart", config={"displaylogo": False}),
                        dcc.Graph(id="volume-chart", config={"displaylogo": False}),
                        dcc.Graph(id="risk-chart", config={"displaylogo": False}),
                    ],
                    delay_show=300,
                ),
                _section("Recent anomalies", html.Div(id="anomalies")),
                _section(
                    "Quarantined bars per partition",
                    html.P(
                        "Silver's invalid bars (is_valid = false) by partition, and the row-quality gate's verdict: "
                        "a withheld partition is kept out of gold and BI.",
                        style=_NOTE,
                    ),
                    html.Div(id="quarantine"),
                    html.Details([html.Summary("latest quarantined bars"), html.Div(id="quarantined-bars")]),
                ),
                _section(
                    "Freshness",
                    html.P(
                        "Per table, the symbol's latest trade date and latest bar (New York time); gold, BI and "
                        "signals hold one row per day.",
                        style=_NOTE,
                    ),
                    html.Div(id="freshness"),
                ),
            ],
            style=_PAGE,
        )

    app.layout = layout

    @app.callback(
        Output("symbol", "value"),
        Output("dates", "start_date"),
        Output("dates", "end_date"),
        Output("asked", "data"),
        Input("url", "search"),
        dash.State("symbol", "value"),
        dash.State("symbol", "options"),
    )
    def from_url(search: str | None, current: str | None, options: list[str] | None):
        """``?symbol=NVDA&start=2024-03-01&end=2024-03-12`` picks what is shown (links can be shared);
        without it, the first symbol over its whole history. Each value the page does not take as given
        gets a note (``query.resolve``), kept with the view it resolved to."""

        def bounds(symbol: str) -> tuple[date | None, date | None]:
            try:
                return data.date_bounds(symbol)
            except Exception:
                return None, None  # the main callback reports the store's error

        asked = query.resolve(search, options or [], current, bounds)
        start, end = (day.isoformat() if day else None for day in (asked.start, asked.end))
        stored = {"symbol": asked.symbol, "start": start, "end": end, "notes": list(asked.notes)}
        return asked.symbol, start, end, stored

    @app.callback(
        Output("link-notes", "children"),
        Input("symbol", "value"),
        Input("dates", "start_date"),
        Input("dates", "end_date"),
        Input("asked", "data"),
    )
    def show_link_notes(symbol: str | None, start: str | None, end: str | None, asked: dict | None):
        return [html.Div(note) for note in link_notes(symbol, start, end, asked)]

    @app.callback(
        Output("price-chart", "figure"),
        Output("volume-chart", "figure"),
        Output("risk-chart", "figure"),
        Output("anomalies", "children"),
        Output("quarantine", "children"),
        Output("quarantined-bars", "children"),
        Output("freshness", "children"),
        Output("status", "children"),
        Input("symbol", "value"),
        Input("dates", "start_date"),
        Input("dates", "end_date"),
        Input("reload", "n_clicks"),
        Input("tick", "n_intervals"),
    )
    def refresh(symbol: str | None, start: str | None, end: str | None, _clicks: int, _ticks: int | None):
        if not symbol:
            return (*_blank(), dash.no_update)  # the layout said why
        return view(data, symbol, _parse_day(start), _parse_day(end))

    return app


def link_notes(symbol: str | None, start: str | None, end: str | None, asked: dict | None) -> list[str]:
    """The link's notes (``query.resolve``) while the page shows the view the link resolved to; none once
    another symbol or range is picked (the link no longer describes the page).

    Args:
        symbol, start, end: the picker's symbol and dates.
        asked: what ``from_url`` stored: the resolved ``symbol``, ``start``, ``end`` and the ``notes``.
    """
    if not asked:
        return []
    shown = (symbol, _parse_day(start), _parse_day(end))
    if shown != (asked.get("symbol"), _parse_day(asked.get("start")), _parse_day(asked.get("end"))):
        return []
    return list(asked.get("notes") or [])


def _in_range(days: list[date], start: date | None, end: date | None) -> list[date]:
    return [d for d in days if (start is None or start <= d) and (end is None or d <= end)]


def _blank() -> tuple:
    """Empty figures and tables (the status line says why)."""
    daily = shaping.daily_view(pd.DataFrame(), pd.DataFrame())
    return (price_figure(daily, ""), volume_figure(daily, ""), risk_figure(daily, ""), None, None, None, None)


def view(data: LakeData, symbol: str, start: date | None, end: date | None) -> tuple:
    """Figures, tables and the status line for one symbol and date range; a page without data says why:
    a symbol outside the grammar, a start after the end, no bars of the symbol in the range, or a lake
    that cannot be read."""
    try:
        symbol = validate_symbol(symbol, "the symbol picker")
    except InvalidSymbolError as exc:  # a forged request only: the picker offers silver's symbols
        return (*_blank(), str(exc))
    if start is not None and end is not None and start > end:
        return (*_blank(), f"the start {start} is after the end {end}: nothing to show; pick an earlier start")
    try:
        days = data.trade_dates(symbol)
        out = _render(data, symbol, start, end, days)
    except Exception as exc:  # the page says what failed; the log gets one line, never a key
        message = _problem(exc)
        logger.error("dashboard: reading %s failed: %s", symbol, message)
        return (*_blank(), f"cannot read the lake: {message}")
    if not days:
        return (*out[:-1], f"{symbol} has no bars in silver under {data.lake.uri}")
    if not _in_range(days, start, end):
        span = f"from {start} to {end}" if start and end else f"from {start} on" if start else f"up to {end}"
        return (*out[:-1], f"no bars of {symbol} {span}: it has bars from {days[0]} to {days[-1]}")
    return out


def _render(data: LakeData, symbol: str, start: date | None, end: date | None, days: list[date]) -> tuple:
    """Figures, tables and a status line for one symbol and date range (``days``: its days in silver)."""
    bi = data.read("bi", symbol, start, end)
    daily = shaping.daily_view(bi, data.read("signals", symbol, start, end))
    if shown := _in_range(days, start, end):
        # Every trading day from the first to the last day with bars: a day without a gold row shows as a gap.
        daily = shaping.on_trading_days(daily, [*data.sessions(shown[0], shown[-1]), *shown])
    anomalies = shaping.anomaly_table(bi, data.anomaly_price_change_pct, data.anomaly_volume_multiple)
    quarantine = data.read("quarantine", symbol, start, end)
    status = ""
    try:
        verdicts = shaping.verdict_frame(data.verdicts(symbol, start, end))
    except RulesError as exc:  # the quarantined bars are still worth showing
        verdicts, status = shaping.verdict_frame([]), f"withheld partitions unknown: {_problem(exc)}"
    partitions = shaping.quarantine_table(quarantine, verdicts)
    freshness = shaping.freshness_table(data.freshness(symbol))
    span = f"{start or 'first day'} to {end or 'last day'}"
    return (
        price_figure(daily, symbol),
        volume_figure(daily, symbol),
        risk_figure(daily, symbol),
        frame_table(anomalies, "anomalies-table", f"No anomalies for {symbol} from {span}."),
        frame_table(partitions, "quarantine-table", f"No quarantined bars for {symbol} from {span}.", "withheld"),
        frame_table(shaping.quarantined_bars(quarantine), "quarantined-bars-table", "None."),
        html.Div(
            [
                html.P(
                    shaping.lag_line(freshness, _now_in_new_york(data), data.refresh_seconds), id="lag", style=_NOTE
                ),
                frame_table(freshness, "freshness-table", "No tables yet."),
            ]
        ),
        status,
    )


def _now_in_new_york(data: LakeData) -> pd.Timestamp:
    """Now on the deployment's clock, as New York's wall clock (naive), the clock of the bar times the page shows."""
    return pd.Timestamp(data.clock.now()).tz_convert(EXCHANGE_TZ).tz_localize(None)


def serve(data: LakeData, host: str = "127.0.0.1", port: int = 8050, ready: Callable[[], None] | None = None) -> None:
    """Serve the dashboard with Waitress until interrupted (Ctrl+C, SIGTERM).

    Args:
        data: the lake and settings to show.
        host: address to listen on; loopback by default (the page has no login).
        port: port to listen on.
        ready: called once the port is bound (to announce the URL only when it works).

    Raises:
        OSError: the address cannot be bound (port taken, not an address of this machine).
    """
    from waitress import create_server

    server = create_server(create_app(data).server, host=host, port=port, threads=4, ident="stock-lakehouse")
    if ready is not None:
        ready()
    try:
        server.run()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
