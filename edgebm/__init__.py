"""edgebm: beam-prediction models for 5G/6G UEs, from PyTorch training to a budget-checked,
device-profiled ONNX bundle, a torch-free runtime and a UE emulator.

Importing ``edgebm`` imports nothing heavy; use the subpackages (``edgebm.sim``, ``edgebm.data``,
``edgebm.runtime``, ...).
"""

__version__ = "0.1.0"
