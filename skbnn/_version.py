"""The package version, and the warning for a pickle made under another one."""

__version__ = "0.1.0"


class InconsistentVersionWarning(UserWarning):
    """A fitted estimator was unpickled under another skbnn version than it was saved with.

    Its fitted state may not mean the same thing, or work at all, under this version; refit it,
    or load it with the version named in the message.
    """

    def __init__(self, estimator_name, current_version, original_version):
        self.estimator_name = estimator_name
        self.current_version = current_version
        self.original_version = original_version

    def __str__(self):
        return (
            f"Trying to unpickle estimator {self.estimator_name} from skbnn version "
            f"{self.original_version} when using version {self.current_version}. This might "
            "lead to breaking code or invalid results. Use at your own risk."
        )
