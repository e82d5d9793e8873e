"""Only for the build step setup.cfg cannot declare: the top-level ``experiments/`` directory (the user-facing
layout of a checkout) is copied into the package as ``chaosscheduler/experiments/`` when a wheel is built, so that
``pip install chaosscheduler`` ships the experiments and their var files without a second copy in the source tree.
An editable install or a checkout reads the top-level directory itself (``chaosscheduler.shipped``)."""

import glob
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PATTERNS = ("experiments/*.json", "experiments/vars/*.json")


class BuildWithExperiments(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads <checkout>/experiments directly
        for pattern in PATTERNS:
            for source in sorted(glob.glob(os.path.join(HERE, pattern))):
                target = os.path.join(self.build_lib, "chaosscheduler", os.path.relpath(source, HERE))
                os.makedirs(os.path.dirname(target), exist_ok=True)
                shutil.copyfile(source, target)


setup(cmdclass={"build_py": BuildWithExperiments})
