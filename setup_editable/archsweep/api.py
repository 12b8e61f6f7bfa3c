"""``archsweep.api`` of an editable install: the checkout's api.py."""

import archsweep  # noqa: F401  (puts the checkout on sys.path)
from api import *  # noqa: F403
from api import __all__  # noqa: F401
