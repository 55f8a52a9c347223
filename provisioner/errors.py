"""The exceptions a person can cause, each carrying one message that says what to do next.

Everything raised for bad input derives from ProvisionerError so that tasks.py can turn it into a
clean message with exit code 2; anything else is a bug and keeps its traceback.
"""


class ProvisionerError(Exception):
    """A user-facing failure: the message is complete and is printed without a traceback."""


class InventoryError(ProvisionerError):
    """The inventory file (or a CLI selection of it) is invalid; nothing was contacted."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path, self.key, self.problem = path, key, problem
        where = f"{path}, at {key}" if key else path
        super().__init__(f"Inventory error in {where}: {problem}")


class RoleError(ProvisionerError):
    """A role is missing, malformed, or asked for a variable nobody defined."""


class ConnectError(ProvisionerError):
    """A host could not be reached or refused our credentials or presented an unknown key."""


class LoginRefused(ConnectError):
    """The host answered and refused our credentials (or its key did not match): logging in
    again with the same ones cannot succeed, and each try counts toward the host's ban rules."""


class CommandTimedOut(ConnectError):
    """A command outlived its deadline; the login it ran on was aborted, so nothing queued on
    it can still reach the host later."""


class SessionNotStarted(ConnectError):
    """The connection failed before a command was sent: nothing ran, so trying again is safe."""


class ShellGone(ConnectError):
    """A keeper's kept root shell had ended (or never started) before a script was sent:
    nothing ran, so running it another way is safe."""
