"""dbt's `modules` namespace for the lint (the Python modules the project's macros use)."""

import datetime  # noqa: F401
import re  # noqa: F401

import pytz  # noqa: F401
