"""The one exception type that reaches users: a message naming what was wrong and where."""


class GenptError(Exception):
    """A problem with the user's input (file, setting, checkpoint) rather than a bug.

    The CLI prints the message on one line and exits with status 2; library callers can catch it.
    """
