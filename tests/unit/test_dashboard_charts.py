"""The dashboard's chart arithmetic (pure functions): axes, durations, the colour scale."""

from __future__ import annotations

import time

import pytest

from qfleet_server.dashboard import charts


@pytest.mark.parametrize(
    ("value", "ceiling"), [(0, 1), (0.07, 0.1), (0.0333, 0.05), (1, 1), (1.2, 2), (2.2, 2.5), (360.5, 500), (9e6, 1e7)]
)
def test_axis_tops_are_round_numbers_at_or_above_the_data(value: float, ceiling: float) -> None:
    assert charts.nice_ceiling(value) == pytest.approx(ceiling)


@pytest.mark.parametrize(
    ("seconds", "text"), [(0, "0 s"), (0.0004, "400 µs"), (0.2534, "253 ms"), (4.21, "4.2 s"), (253.4, "4 min 13 s")]
)
def test_durations_read_as_a_person_says_them(seconds: float, text: str) -> None:
    assert charts.duration(seconds) == text


def test_time_ticks_fall_on_whole_minutes_and_stay_in_the_plot() -> None:
    end = 1_764_000_000 + 37.0  # 37 s past a whole minute
    chart = charts.time_chart("tasks done", "per s", [1.0] * 30, end, 10)
    labels = [label for _, label in chart.x_ticks]
    assert len(labels) == 5
    assert labels == [time.strftime("%H:%M", time.gmtime(end - end % 60 - 60 * k)) for k in range(4, -1, -1)]
    assert all(chart.left <= x <= chart.right for x, _ in chart.x_ticks)
    assert [label for _, label in chart.y_ticks] == ["0", "0.5", "1"]


def test_bars_fill_the_plot_width_and_are_labelled_with_their_hour() -> None:
    chart = charts.hourly_chart("circuit evaluations", "per hour", [0.0] * 23 + [110.0])
    assert len(chart.bars) == 24 and chart.bars[-1]["h"] > 0 and chart.bars[0]["h"] == 0
    assert chart.bars[-1]["x"] + chart.bars[-1]["w"] <= chart.right + 1e-6
    assert chart.latest == "110" and chart.peak == "110"


def test_the_chip_scale_gets_lighter_as_the_error_grows() -> None:
    def lightness(colour: str) -> float:
        r, g, b = (int(colour[i : i + 2], 16) for i in (1, 3, 5))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    steps = [lightness(charts.viridis(x / 20)) for x in range(21)]
    assert steps == sorted(steps)  # reads in grey, without telling red from green
    scale = charts.scale("readout error", [0.031, 0.0798])
    assert scale.top == pytest.approx(0.1) and [t for _, t in scale.ticks][-1] == "0.1"
