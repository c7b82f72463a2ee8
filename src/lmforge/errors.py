"""The one exception type the CLI turns into a one-line message and exit code 2."""


class LmforgeError(Exception):
    """A problem the user can fix (bad config, missing file, malformed record...).

    The message must be one line and say what is wrong and where (file:line or config
    key path). Anything else escaping to the CLI is a bug and keeps its traceback.
    """
