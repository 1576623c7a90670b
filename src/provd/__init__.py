"""provd: the provisioning client daemon of a COMfortel D-series class SIP desk phone."""

__version__ = "0.1.0"
# The clock is not trusted before this date (docs/design.md §6: "not before the package's build date"); set at release.
BUILD_DATE = "2026-11-29"
