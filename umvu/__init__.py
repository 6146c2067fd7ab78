"""umvu: a partial virtual machine in user space (after VUOS's umvu)."""

__version__ = "0.1.0"
