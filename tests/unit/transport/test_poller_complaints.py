"""Which failures of a polling connection are logged (issue 10: 105 lines in 21 minutes)."""

from agent.transport.poller import Complaints


def test_the_same_failure_is_logged_at_its_first_then_each_doubling() -> None:
    complaints = Complaints()
    logged = [n for n in range(1, 106) if complaints.failed("connection refused")]
    assert logged == [1, 2, 4, 8, 16, 32, 64]


def test_a_changed_failure_is_logged_at_once() -> None:
    complaints = Complaints()
    errors = ("refused", "refused", "refused", "timed out", "timed out", "refused")
    decisions = [complaints.failed(error) for error in errors]
    assert decisions == [True, True, False, True, False, True]


def test_a_recovery_reports_how_many_failures_it_ends_and_starts_afresh() -> None:
    complaints = Complaints()
    assert complaints.recovered() == 0  # nothing to report: it never failed
    for _ in range(5):
        complaints.failed("refused")
    assert complaints.recovered() == 5
    assert complaints.failed("refused")  # the first failure after a recovery is logged again
