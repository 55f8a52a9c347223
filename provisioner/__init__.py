"""provisioner: takes fresh Debian/Ubuntu servers to hardened production hosts over SSH."""

__version__ = "0.1.0"
