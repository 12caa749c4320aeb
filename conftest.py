"""pytest for the whole repository: the notebooks run under nbval with the smoke profile unless GRLIB_PROFILE says otherwise."""
import os

os.environ.setdefault("GRLIB_PROFILE", "smoke")
