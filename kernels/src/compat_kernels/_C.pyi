# The compiled operator library. It exports nothing to Python: importing it
# registers the ops, which are then reached through torch.ops.compat_kernels.
