"""Numba kernels, each with a plain-NumPy reference twin named `<kernel>_ref`."""
