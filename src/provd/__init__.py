"""provd: the provisioning client daemon of a COMfortel D-series class SIP desk phone."""

