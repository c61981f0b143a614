"""DiffusEmp pipeline library: pure functions and classes, no CLI, no hard-coded paths."""
