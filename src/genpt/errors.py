"""The one exception type that reaches users: a message naming what was wrong and where."""


class GenptError(Exception):
    """A problem with the user's input (file, setting, checkpoint) rather than a bug.

    The CLI prints the message on one line and exits with status 2; library callers can catch it.
    """


class Interrupted(Exception):
    """A run stopped by SIGTERM or Ctrl-C after saving a checkpoint at the end of its step.

    Not an error: the CLI prints the message and exits with 128 + the signal's number, as a process
    killed by that signal would, so schedulers see a pre-emption.
    """

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
