"""SelfSup Workbench GUI (PySide6). The only Qt code in the project."""
