"""Why a package could not be made ready; each message is for the user who asked for it."""


class PackageRefused(Exception):
    """This runtime does not install such a package (its registry type or registry, an option
    it does not support, an installer it lacks); nothing was attempted."""


class PackageInstallFailed(Exception):
    """The installer ran and failed (no such package or version, no entry point); the message
    carries the installer's own words."""
