"""The base of every error skinlesion reports to a user as a message (no traceback)."""


class SkinlesionError(Exception):
    """A problem with the user's input or environment; the message names it and the remedy."""


class DataError(SkinlesionError, ValueError):
    """A user error: the data, a file or an option is unusable as given; the message names the file, row or
    field and a remedy that works. The CLI prints it in one line and exits with status 2."""


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


def stop_on_signals() -> dict:
    """SIGTERM (a scheduler's pre-emption or time limit) and SIGINT stop the command with errors.Interrupted:
    exit 143 / 130 and one line, never a silent 0. In child processes that inherit the handler (DataLoader
    workers) the signals are ignored: the main process stops them. Training replaces the handler while it
    fits, to save a resumable checkpoint first (training/interrupt.py)."""
    import os
    import signal
    import threading
    if threading.current_thread() is not threading.main_thread():
        return {}
    main_pid = os.getpid()

    def handler(signum, frame):
        if os.getpid() != main_pid:
            return
        raise Interrupted(signum, f"interrupted by {signal.Signals(signum).name}; nothing half-written is kept (a "
                                  "training run keeps its last saved checkpoint: `--resume` continues it)")

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    for sig in previous:
        signal.signal(sig, handler)
    return previous
