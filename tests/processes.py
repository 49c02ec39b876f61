"""A dfly command run as a real process, its listening address read from its log."""
import signal
import subprocess
import sys
import threading


class Process:
    """A dfly command whose address is read from its 'listening on' log line."""

    def __init__(self, *args):
        self.proc = subprocess.Popen([sys.executable] + list(args), stderr=subprocess.PIPE, text=True)
        self.address = None
        self.lines = []
        found = threading.Event()

        def watch():
            for line in self.proc.stderr:
                self.lines.append(line)
                if self.address is None and "listening on " in line:
                    self.address = line.split("listening on ")[1].split(",")[0].split(" ")[0]
                    found.set()
        self._watch = threading.Thread(target=watch, daemon=True, name="dfly-log")
        self._watch.start()
        assert found.wait(30), "no address reported:\n" + "".join(self.lines)

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(15)
        self._watch.join(10)
        return code
