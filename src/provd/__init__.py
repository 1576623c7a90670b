"""provd: the provisioning client daemon of a COMfortel D-series class SIP desk phone."""


__version__ = "0.1.0"
