"""Task collections tasks.py takes in (``invoke sandbox.*``), kept as light as task_flags:
invoke and the standard library at import, so ``invoke --list`` stays quick; each task imports
the command layer (cli/) it runs."""
