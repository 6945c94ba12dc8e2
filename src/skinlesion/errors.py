"""The base of every error skinlesion reports to a user as a message (no traceback)."""


class SkinlesionError(Exception):
    """A problem with the user's input or environment; the message names it and the remedy."""


def original_message(exc: BaseException) -> str:
    """The message of ``exc``; for an exception re-raised from a DataLoader worker ("Caught X in DataLoader
    worker process 0. Original Traceback ...: msg"), the original one-line message without the traceback."""
    text = str(exc)
    if "Original Traceback" not in text:
        return text
    last = [line for line in text.splitlines() if line.strip()][-1].strip()
    head, sep, rest = last.partition(": ")
    return rest if sep and head.replace(".", "").replace("_", "").isalnum() else last


class Interrupted(BaseException):
    """The process was asked to stop (SIGINT: Ctrl-C, SIGTERM: a batch scheduler's pre-emption or time limit).
    A BaseException, like KeyboardInterrupt, so no ``except Exception`` swallows it; the CLI exits with
    128 + the signal number and prints ``message``."""

    def __init__(self, signum: int, message: str = ""):
        import signal
        self.signum = signum
        self.name = signal.Signals(signum).name
        super().__init__(message or f"interrupted by {self.name}")
