"""SelfSup Workbench engine: a plain PyTorch library for self-supervised learning.

It never imports Qt or anything from ``app``; the GUI is one client of it, the CLI
(``python -m engine``) another. Importing this package is cheap: torch loads only when
a submodule that trains is imported.
"""

__version__ = "0.1.0"
