"""polc: policy-as-code for Chinese medical-insurance benefit rules."""

__version__ = "0.1.0"
