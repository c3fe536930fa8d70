"""Charts as data for the templates to draw in SVG: line and bar charts with axes, units and
time labels, and the wukong72 chip on a colour-blind-safe scale with a legend. Nothing here
writes markup; the templates do, so every label is escaped."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WIDTH, HEIGHT = 360, 140  # the whole chart, in px
LEFT, RIGHT, TOP, BOTTOM = 58, 18, 8, 30  # margins around the plot area: axis labels live there


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is at least ``value`` (1 for 0)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10 * power


def duration(seconds: float) -> str:
    """A duration as a person reads it: 850 ms, 4.2 s, 4 min 13 s, 2 h 5 min."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs" if seconds > 0 else "0 s"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60)} min"


def age(timestamp: float | None, now: float | None = None) -> str:
    """How long ago: "3 s ago", "4 min 2 s ago"."""
    if timestamp is None:
        return "never"
    return f"{duration(max(0.0, (now or time.time()) - timestamp))} ago"


def number(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}".rstrip("0").rstrip(".")
    return f"{value:.2f}".rstrip("0").rstrip(".")


@dataclass
class Chart:
    """One chart ready to draw: plot coordinates, tick labels, and its latest value in words."""

    title: str
    unit: str  # for the y axis: "per s", "seconds", "tasks"
    kind: str  # "line" or "bars"
    points: str = ""  # polyline, for lines
    bars: list[dict[str, Any]] = field(default_factory=list)  # x, y, w, h, label
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_caption: str = "time (UTC)"
    latest: str = ""
    peak: str = ""
    width: int = WIDTH
    height: int = HEIGHT
    left: int = LEFT
    top: int = TOP
    right: int = WIDTH - RIGHT
    bottom: int = HEIGHT - BOTTOM


def time_chart(
    title: str,
    unit: str,
    values: Sequence[float],
    end: float,
    bucket_s: float,
    fmt: Callable[[float], str] = number,
    kind: str = "line",
    tick_s: float = 60,
    clock: str = "%H:%M",
) -> Chart:
    """``values[i]`` belongs to the bucket ending ``(len - 1 - i) * bucket_s`` before ``end``.
    Time ticks fall on whole multiples of ``tick_s`` (UTC), labelled with ``clock``."""
    n = len(values)
    chart = Chart(title=title, unit=unit, kind=kind)
    plot_w, plot_h = chart.right - chart.left, chart.bottom - chart.top
    top = nice_ceiling(max(values, default=0.0))
    chart.y_ticks = [(chart.bottom - plot_h * f, fmt(top * f)) for f in (0.0, 0.5, 1.0)]
    chart.latest = fmt(values[-1]) if n else fmt(0.0)
    chart.peak = fmt(max(values, default=0.0))
    # a line's points sit at bucket ends; bars span their buckets
    t0 = end - (n if kind == "bars" else n - 1) * bucket_s
    span = max(end - t0, 1e-9)

    def x_of(t: float) -> float:
        return chart.left + (t - t0) / span * plot_w

    def y_of(v: float) -> float:
        return chart.bottom - plot_h * min(1.0, v / top)

    if kind == "line":
        chart.points = " ".join(f"{x_of(end - (n - 1 - i) * bucket_s):.1f},{y_of(v):.1f}" for i, v in enumerate(values))
    else:
        slot = plot_w / max(1, n)
        for i, v in enumerate(values):
            started = t0 + i * bucket_s
            chart.bars.append(
                {
                    "x": round(x_of(started) + 1, 1),
                    "y": round(y_of(v), 1),
                    "w": round(max(1.0, slot - 2), 1),
                    "h": round(chart.bottom - y_of(v), 1),
                    "label": f"{time.strftime('%H:%M', time.gmtime(started))} UTC: {fmt(v)}",
                }
            )
    tick = math.ceil(t0 / tick_s) * tick_s
    while tick <= end + 1e-6:
        chart.x_ticks.append((round(x_of(tick), 1), time.strftime(clock, time.gmtime(tick))))
        tick += tick_s
    return chart


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else 0.0


def recent_charts(
    tasks: list[dict[str, Any]], failures: list[dict[str, Any]], minutes: int = 5, bucket_s: int = 10
) -> list[Chart]:
    """Throughput, latency and failures over the last minutes, from the recent-task list."""
    now = time.time()
    n = minutes * 60 // bucket_s
    count = [0] * n
    circuits = [0] * n
    failed = [0] * n
    durations: list[list[float]] = [[] for _ in range(n)]
    waits: list[list[float]] = [[] for _ in range(n)]
    for t in tasks:
        i = n - 1 - int((now - t["t"]) // bucket_s)
        if 0 <= i < n:
            count[i] += 1
            circuits[i] += t["circuits"]
            durations[i].append(t["seconds"])
            waits[i].append(t["wait"])
    for f in failures:
        i = n - 1 - int((now - f["t"]) // bucket_s)
        if 0 <= i < n:
            failed[i] += 1
    per_s = [
        ("circuit evaluations", "per s", [c / bucket_s for c in circuits]),
        ("tasks done", "per s", [c / bucket_s for c in count]),
    ]
    times = [
        ("task time p50", "seconds", [percentile(d, 50) for d in durations]),
        ("task time p99", "seconds", [percentile(d, 99) for d in durations]),
        ("queue wait p50", "seconds", [percentile(w, 50) for w in waits]),
    ]
    charts = [time_chart(t, u, v, now, bucket_s) for t, u, v in per_s]
    charts += [time_chart(t, u, v, now, bucket_s, fmt=duration) for t, u, v in times]
    charts.append(time_chart("tasks failed", f"per {bucket_s} s", failed, now, bucket_s, kind="bars"))
    return charts


def hourly_chart(title: str, unit: str, values: list[float], fmt: Callable[[float], str] = number) -> Chart:
    """Bars for the last ``len(values)`` whole hours, the current one last."""
    end = (time.time() // 3600 + 1) * 3600
    return time_chart(title, unit, values, end, 3600, fmt=fmt, kind="bars", tick_s=6 * 3600)


# -- the chip ------------------------------------------------------------------------

# Viridis (matplotlib's, sampled): ordered by lightness, so it reads in grey and for the
# common colour-vision deficiencies, unlike a red-to-green scale.
_VIRIDIS = [
    (68, 1, 84),
    (72, 40, 120),
    (62, 74, 137),
    (49, 104, 142),
    (38, 130, 142),
    (31, 158, 137),
    (53, 183, 121),
    (109, 205, 89),
    (180, 222, 44),
    (253, 231, 37),
]


def viridis(x: float) -> str:
    """The colour for ``x`` in [0, 1]: dark purple (0) to yellow (1)."""
    x = min(1.0, max(0.0, x)) * (len(_VIRIDIS) - 1)
    i = min(int(x), len(_VIRIDIS) - 2)
    f = x - i
    r, g, b = (round(a + (b - a) * f) for a, b in zip(_VIRIDIS[i], _VIRIDIS[i + 1]))
    return f"#{r:02x}{g:02x}{b:02x}"


def _ink(x: float) -> str:
    """Text colour that reads on viridis(x): white on the dark end, near-black on the light end."""
    return "#ffffff" if x < 0.6 else "#1d2330"


@dataclass
class Scale:
    """A colour scale from 0 to ``top`` (a round number at or above the largest value)."""

    name: str
    top: float
    ticks: list[tuple[float, str]]
    stops: list[tuple[str, str]]  # gradient offset %, colour
    width: int = 300

    def colour(self, value: float) -> str:
        return viridis(value / self.top)

    def ink(self, value: float) -> str:
        return _ink(value / self.top)


def scale(name: str, values: list[float]) -> Scale:
    top = nice_ceiling(max(values, default=0.0))
    width = 300
    ticks = [(round(width * f, 1), f"{top * f:.3g}") for f in (0.0, 0.25, 0.5, 0.75, 1.0)]
    stops = [(f"{100 * k / 9:.0f}", viridis(k / 9)) for k in range(10)]
    return Scale(name=name, top=top, ticks=ticks, stops=stops, width=width)


def device_map(calibration: dict[str, Any], cols: int, rows: int) -> dict[str, Any]:
    """The chip as shapes: qubits coloured by readout error, couplers by CZ error, each on its
    own absolute scale from 0 (so a good chip does not look half bad); disabled couplers dashed."""
    step, pad = 46, 24
    readout = scale("readout error", [q["readout_error"] for q in calibration["qubits"]])
    cz = scale("CZ error", [c["cz_error"] for c in calibration["couplers"] if c["enabled"]])

    def xy(q: int) -> tuple[int, int]:
        return pad + (q % cols) * step, pad + (q // cols) * step

    couplers = []
    for c in calibration["couplers"]:
        a, b = c["pair"]
        (x1, y1), (x2, y2) = xy(a), xy(b)
        enabled = bool(c["enabled"])
        couplers.append(
            {
                "x1": x1,
                "y1": y1,
                "x2": x2,
                "y2": y2,
                "enabled": enabled,
                "colour": cz.colour(c["cz_error"]) if enabled else "#9aa1b1",
                "label": f"CZ {a}-{b}: error {c['cz_error']:.4f}" if enabled else f"coupler {a}-{b}: disabled",
            }
        )
    qubits = []
    for q in calibration["qubits"]:
        x, y = xy(q["qubit"])
        qubits.append(
            {
                "x": x,
                "y": y,
                "n": q["qubit"],
                "colour": readout.colour(q["readout_error"]),
                "ink": readout.ink(q["readout_error"]),
                "label": f"Q{q['qubit']}: T1 {q['t1_us']} µs, T2 {q['t2_us']} µs, readout error "
                f"{q['readout_error']:.4f}, SX error {q['sx_error']:.4f}, {q['frequency_ghz']} GHz",
            }
        )
    worst = sorted(calibration["qubits"], key=lambda q: -q["readout_error"])[:5]
    return {
        "width": 2 * pad + (cols - 1) * step,
        "height": 2 * pad + (rows - 1) * step,
        "couplers": couplers,
        "qubits": qubits,
        "scales": [readout, cz],
        "worst": [f"Q{q['qubit']} {q['readout_error']:.4f}" for q in worst],
    }
