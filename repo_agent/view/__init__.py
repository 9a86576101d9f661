"""`repo-agent view`: runs, rollouts and steps as a static site (Jinja2 templates, one render function)."""

from .load import ViewInputError
from .render import SiteWriteError
from .site import SiteResult, render_site

__all__ = ["render_site", "SiteResult", "ViewInputError", "SiteWriteError"]
