"""Sphinx configuration for the convkit docs (MyST markdown)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

project = "convkit"
author = "convkit developers"
copyright = "2026, convkit developers"  # noqa: A001

extensions = ["myst_parser", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx.ext.viewcode"]
source_suffix = {".md": "markdown"}
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3
exclude_patterns = ["_build"]
html_theme = "alabaster"
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"undoc-members": False}
napoleon_google_docstring = True
nitpicky = False
# "ref.python": an unqualified annotation such as ``Reply`` matches both convkit.Reply and the
# loopback server's convkit.testing.Reply; the link goes to one of them (not checked).
suppress_warnings = ["myst.xref_missing", "ref.python"]
