"""The one exception type for bad input: a user-facing message, not a traceback."""


class InputError(Exception):
    """Bad input (data, configuration or a source) that the user must fix.

    The message is a complete paragraph naming the file or key and what is wrong; the
    scripts print it without a traceback and exit non-zero.
    """
