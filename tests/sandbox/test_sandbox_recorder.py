"""The recorder's peak rate: the most requests an account received of a family in any second."""

from __future__ import annotations

from sandbox.recorder import PeakRate


def test_the_peak_is_the_busiest_one_second_window():
    peaks = PeakRate()
    # Three calls within a second, a pause, then five in 0.9 s: the peak is 5.
    for now in (0.0, 0.4, 0.8, 5.0, 5.2, 5.4, 5.6, 5.9):
        peaks.note("111111111111", "iam", now)
    # Another family and account are counted apart.
    peaks.note("111111111111", "sts", 5.9)
    peaks.note("222222222222", "iam", 5.9)
    assert peaks.by_account() == {
        "111111111111": {"iam": 5, "sts": 1},
        "222222222222": {"iam": 1},
    }


def test_a_window_is_one_second_long_not_more():
    peaks = PeakRate()
    # Evenly 8 a second (exact in binary): a call a second after another is in the next window.
    for tick in range(40):
        peaks.note("111111111111", "iam", tick / 8)
    assert peaks.by_account()["111111111111"]["iam"] == 8


def test_the_control_endpoint_reports_the_peaks(client, control) -> None:
    control.reset_calls()
    iam = client("iam")
    for _ in range(3):
        iam.list_users()
    client("sts").get_caller_identity()
    peaks = control.calls()["peak_per_second"]
    assert peaks["123456789012"]["iam"] == 3
    assert peaks["123456789012"]["sts"] == 1
    control.reset_calls()
    assert control.calls()["peak_per_second"] == {}
