"""What dfly reads from systemd's environment (notify.py): the socket address and
the watchdog interval, pure functions of the environment and the process id."""
from dfly.notify import Notifier, parse_watchdog_s, socket_address


def test_abstract_names_get_a_leading_nul_and_paths_stay_as_given():
    assert socket_address("@dfly/notify") == "\0dfly/notify"
    assert socket_address("/run/systemd/notify") == "/run/systemd/notify"
    for text in ("", "@", "relative/path", "vsock:2:123"):
        assert socket_address(text) is None


def test_the_watchdog_interval_is_ours_only_when_the_pid_matches_or_is_absent():
    assert parse_watchdog_s({"WATCHDOG_USEC": "30000000"}, 42) == 30.0
    assert parse_watchdog_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "42"}, 42) == 30.0
    assert parse_watchdog_s({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "7"}, 42) is None
    for bad in ("", "0", "-5", "soon"):
        assert parse_watchdog_s({"WATCHDOG_USEC": bad}, 42) is None


def test_without_a_socket_there_is_no_watchdog_and_sending_does_nothing():
    quiet = Notifier.from_environ({"WATCHDOG_USEC": "1000000"})
    assert quiet.ping_every_s is None
    quiet.ready("x")   # no socket: nothing to send, nothing raised
    assert Notifier("/run/x", 10.0).ping_every_s == 5.0
