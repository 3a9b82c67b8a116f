"""The one exception the stack raises for anything a user must act on."""


class StackError(RuntimeError):
    """A service could not be started, stopped or reached.

    The message is a single line naming the service and, where there is one, its log file:
    the CLI prints it as is, without a traceback.
    """
