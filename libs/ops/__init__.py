"""The only package that touches compiled or optional kernels (libs._C, mamba-ssm, causal-conv1d)."""
