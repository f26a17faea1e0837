"""Typed Cython kernels: nogil loops over C-contiguous float32/float64 buffers.

Nothing here validates its inputs; `cbackprop._validation` does that first.
"""
