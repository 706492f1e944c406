"""The model as the stages see it: the base model folder (base), loading it for inference (loading), what runs on
this machine (runtime: backend, device, dtype, quantization) and the chat template training and evaluation share.

Imports: lab.core."""
