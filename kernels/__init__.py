"""Triton kernels of fastgan, one module per op (installed as fastgan.kernels).

Importing a module here imports triton: set TRITON_INTERPRET=1 before that to run the kernels on CPU tensors.
"""
