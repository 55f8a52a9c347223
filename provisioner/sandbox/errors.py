"""The one exception the sandbox raises for problems a person can fix."""

from provisioner.errors import ProvisionerError


class SandboxError(ProvisionerError):
    """The sandbox could not do what was asked; the message says what to do about it."""
