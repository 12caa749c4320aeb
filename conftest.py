"""pytest for the whole repository: the notebooks run under nbval with the smoke profile unless GRLIB_PROFILE says
otherwise, and everything a test writes (results, checkpoints) goes to a fresh temporary build folder, never to the
repository's build/, so a test never reads a stale cache."""
import os
import shutil
import tempfile

os.environ.setdefault("GRLIB_PROFILE", "smoke")
_BUILD = tempfile.mkdtemp(prefix="grlib-test-build-")
os.environ["GRLIB_BUILD"] = _BUILD


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_BUILD, ignore_errors=True)
