"""The AWS resources ``postbag provision`` creates and ``teardown`` removes, one module each."""
