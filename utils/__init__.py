"""Helpers for the sequence-models course.

Small modules, each named for what it holds:

- ``runtime``   seeding and device choice (``seed_everything``, ``get_device``, ``in_grading``)
- ``training``  a training loop with a progress bar, loss history, clipping and evaluation
- ``plots``     training curves, labelled heatmaps, gradient norm against time step
- ``data``      synthetic sequence tasks and a character vocabulary
- ``real_data`` real series and texts that ship with installed packages or with Python itself
- ``checks``    student-facing comparisons that say where and by how much two tensors differ
- ``notebooks`` the notebook conventions, their checker and the fork re-pointing command
- ``lstm_checks``, ``mha_checks``  the assignments' visible tests; ``torch_parts`` PyTorch's own earlier parts
  for them (no answer key: the instructors' tools are in ``instructor/``, never shipped)
"""

__version__ = "0.1.0"
